#include "somrated/scheduler.hpp"

#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <doctest/doctest.h>
#include <fmt/core.h>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include "somrated/config.hpp"
#include "somrated/db_worker.hpp"
#include "somrated/log.hpp"
#include "somrated/source_board.hpp"
#include "somrated/sqlite.hpp"
#include "somrated/store.hpp"
#include "somrated/time.hpp"

namespace {

namespace fs = std::filesystem;
namespace net = boost::asio;
using namespace std::chrono_literals;
using somrated::retry_delay;
using somrated::source_config;
using somrated::store;
using somrated::timestamp;
using std::chrono::milliseconds;

/// True when text contains part.
bool contains(std::string_view text, std::string_view part) {
  return text.find(part) != std::string_view::npos;
}

/// A directory of its own in the temp directory, removed with its contents at scope end.
class temp_dir {
 public:
  temp_dir() {
    std::random_device rd;
    path_ = fs::temp_directory_path() /
            fmt::format("somrated-scheduler-test-{}-{:08x}{:08x}", ::getpid(), rd(), rd());
    fs::create_directory(path_);
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;

  /// The directory's path.
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

/// Closes a stdio stream.
struct file_closer {
  void operator()(std::FILE* f) const noexcept { std::fclose(f); }
};

/// Everything written so far to f, read through its descriptor so that the stream's
/// position (where the logger appends) is left alone.
std::string file_text(std::FILE* f) {
  std::string out;
  char chunk[4096];
  for (;;) {
    const ssize_t n = ::pread(::fileno(f), chunk, sizeof chunk, static_cast<off_t>(out.size()));
    if (n <= 0) return out;
    out.append(chunk, static_cast<std::size_t>(n));
  }
}

/// Replaces the file at path with text in one rename, so a reader sees the old or the
/// new page and never half of one.
void write_file(const fs::path& path, std::string_view text) {
  const fs::path tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    REQUIRE(out);
    out << text;
    REQUIRE(out.good());
  }
  fs::rename(tmp, path);
}

/// Writes a small 24.kg-like page whose header strip carries these three rates.
void write_strip(const fs::path& path, std::string_view usd, std::string_view eur,
                 std::string_view rub) {
  write_file(path, fmt::format("<!DOCTYPE html>\n<html lang=\"en\">\n<head><meta "
                               "charset=\"utf-8\"><title>24.kg</title></head>\n<body>\n"
                               "<header><div class=\"currency\">USD {} EUR {} RUB {}</div>"
                               "</header>\n<p>Bishkek news of the day</p>\n</body>\n</html>\n",
                               usd, eur, rub));
}

/// A file:// URL for an absolute path.
std::string file_url(const fs::path& path) {
  return "file://" + fs::absolute(path).string();
}

/// A source scraped every second.
source_config make_source(std::string name, std::string kind, std::string url,
                          double max_jump = 0.25) {
  source_config c;
  c.name = std::move(name);
  c.kind = std::move(kind);
  c.url = std::move(url);
  c.interval = 1s;
  c.max_jump = max_jump;
  c.timeout = 20s;
  return c;
}

/// Currency -> rate text of the values in force for source.
std::map<std::string, std::string> latest_rates(store& db, std::string_view source) {
  std::map<std::string, std::string> out;
  for (const auto& p : db.latest(source)) out.emplace(p.currency, p.rate.text());
  return out;
}

/// Currency -> rate text of the values held for plausibility for source.
std::map<std::string, std::string> held_rates(store& db, std::string_view source) {
  std::map<std::string, std::string> out;
  for (const auto& p : db.held(source)) out.emplace(p.currency, p.rate.text());
  return out;
}

/// Every change point of one currency as (since, text), without bucketing.
std::vector<std::pair<timestamp, std::string>> change_points(store& db, std::string_view source,
                                                             std::string_view currency) {
  const auto h = db.history({.source = std::string(source),
                             .currency = std::string(currency),
                             .from = timestamp{},
                             .to = timestamp{milliseconds{std::int64_t{1} << 50}},
                             .step = std::nullopt,
                             .max_points = std::numeric_limits<std::size_t>::max()});
  std::vector<std::pair<timestamp, std::string>> out;
  for (const auto& p : h.points) out.emplace_back(p.time, p.rate.text());
  return out;
}

/// The rate texts of change_points, oldest first.
std::vector<std::string> change_texts(store& db, std::string_view source,
                                      std::string_view currency) {
  std::vector<std::string> out;
  for (const auto& p : change_points(db, source, currency)) out.push_back(p.second);
  return out;
}

/// One row of the scrape log.
struct scrape_row {
  std::string outcome;
  std::string error;
  int http_status = 0;
};

/// The scrape log of source, oldest first, read on a connection of its own (the store's
/// API only summarises it).
std::vector<scrape_row> scrape_log(const std::string& db_path, std::string_view source) {
  somrated::sqlite::connection raw(db_path, somrated::sqlite::connection::open_mode::read_only);
  raw.busy_timeout(10s);
  somrated::sqlite::statement st(raw,
                                 "SELECT l.outcome, l.error, l.http_status FROM scrape_log l "
                                 "JOIN source s ON s.id = l.source_id WHERE s.name = ?1 "
                                 "ORDER BY l.id");
  st.bind(1, source);
  std::vector<scrape_row> out;
  while (st.step()) {
    out.push_back({st.column_text(0), st.column_text(1), static_cast<int>(st.column_int64(2))});
  }
  return out;
}

/// A scheduler wired as the daemon wires it: one io_context driven by the test thread,
/// a writer db_worker on a temp-file database, a source board, and a debug logger
/// writing to a temp file. A separate read-only store reads what the writer stored.
class scrape_rig {
 public:
  scrape_rig()
      : log_file_(std::tmpfile()),
        log_(somrated::log_level::debug, log_file_.get()),
        writer_(db_path(), store::mode::read_write, log_),
        reader_(db_path(), store::mode::read_only) {
    REQUIRE(log_file_ != nullptr);
  }

  ~scrape_rig() {
    // The writer's jobs reach into the scheduler, so they finish before it goes away;
    // what they post back to the io_context is destroyed with it, never run.
    if (scheduler_) scheduler_->stop();
    writer_.stop();
  }
  scrape_rig(const scrape_rig&) = delete;
  scrape_rig& operator=(const scrape_rig&) = delete;

  /// Creates the scheduler for sources and starts it.
  void start(std::vector<source_config> sources) {
    scheduler_.emplace(ioc_, std::move(sources), writer_, board_, log_);
    scheduler_->start();
  }

  /// Runs the io_context one handler (or a short wait) at a time until pred holds or
  /// timeout passes; true when it holds.
  template <class Pred>
  bool run_until(Pred pred, milliseconds timeout = 60s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!pred()) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      ioc_.run_one_for(20ms);
    }
    return true;
  }

  /// Runs the io_context for d, whatever happens.
  void run_for(milliseconds d) { ioc_.run_for(d); }

  /// The database file.
  std::string db_path() const { return (dir_.path() / "rates.db").string(); }
  /// A directory for pages.
  const fs::path& dir() const { return dir_.path(); }
  /// Everything logged so far.
  std::string log_text() const { return file_text(log_file_.get()); }
  /// The read-only store, used only by the test thread.
  store& db() { return reader_; }
  /// When the scheduler plans to scrape source next.
  std::optional<timestamp> next_scrape(std::string_view source) const {
    return board_.next_scrape(source);
  }
  /// The scheduler under test (after start()).
  somrated::scheduler& sched() { return *scheduler_; }

 private:
  temp_dir dir_;  ///< Declared first so it is removed last.
  std::unique_ptr<std::FILE, file_closer> log_file_;
  somrated::logger log_;
  net::io_context ioc_;
  net::executor_work_guard<net::io_context::executor_type> work_ = net::make_work_guard(ioc_);
  somrated::source_board board_;
  somrated::db_worker writer_;
  store reader_;
  std::optional<somrated::scheduler> scheduler_;
};

}  // namespace

TEST_CASE("scheduler_test: retry_delay grows from min(interval, 30s)") {
  SUBCASE("ten-minute interval: 30s, 60s, 120s, ... up to the interval") {
    CHECK(retry_delay(10min, 1, 1.0) == 30s);
    CHECK(retry_delay(10min, 2, 1.0) == 60s);
    CHECK(retry_delay(10min, 3, 1.0) == 120s);
    CHECK(retry_delay(10min, 4, 1.0) == 240s);
    CHECK(retry_delay(10min, 5, 1.0) == 480s);
    CHECK(retry_delay(10min, 6, 1.0) == 10min);
    CHECK(retry_delay(10min, 7, 1.0) == 10min);
    CHECK(retry_delay(10min, 50, 1.0) == 10min);
  }
  SUBCASE("never above the cap times the largest jitter") {
    for (int failures = 1; failures <= 1000; ++failures) {
      CAPTURE(failures);
      const auto d = retry_delay(10min, failures, 1.2);
      CHECK(d <= 12min);
      CHECK(d >= 36s);
    }
    CHECK(retry_delay(10min, 1000, 1.2) == 12min);
  }
  SUBCASE("one-second interval: 1s, 2s, 4s, then 5 base delays") {
    CHECK(retry_delay(1s, 1, 1.0) == 1s);
    CHECK(retry_delay(1s, 2, 1.0) == 2s);
    CHECK(retry_delay(1s, 3, 1.0) == 4s);
    CHECK(retry_delay(1s, 4, 1.0) == 5s);
    CHECK(retry_delay(1s, 5, 1.0) == 5s);
    CHECK(retry_delay(1s, 6, 1.0) == 5s);
    CHECK(retry_delay(1s, 100, 1.0) == 5s);
  }
  SUBCASE("an interval between 30s and 5 base delays is capped at 5 base delays") {
    // base 30s, cap max(60s, 150s) = 150s.
    CHECK(retry_delay(1min, 1, 1.0) == 30s);
    CHECK(retry_delay(1min, 2, 1.0) == 60s);
    CHECK(retry_delay(1min, 3, 1.0) == 120s);
    CHECK(retry_delay(1min, 4, 1.0) == 150s);
    CHECK(retry_delay(1min, 9, 1.0) == 150s);
    // base 20s (below 30s), cap 100s.
    CHECK(retry_delay(20s, 1, 1.0) == 20s);
    CHECK(retry_delay(20s, 3, 1.0) == 80s);
    CHECK(retry_delay(20s, 4, 1.0) == 100s);
  }
  SUBCASE("an interval above 5 base delays is the cap") {
    CHECK(retry_delay(24h, 1, 1.0) == 30s);
    CHECK(retry_delay(24h, 12, 1.0) == 61440s);
    CHECK(retry_delay(24h, 13, 1.0) == 24h);
    CHECK(retry_delay(24h, 1000, 1.0) == 24h);
  }
  SUBCASE("jitter scales the delay and is clamped to [0.8, 1.2]") {
    CHECK(retry_delay(10min, 1, 0.8) == 24s);
    CHECK(retry_delay(10min, 1, 1.2) == 36s);
    CHECK(retry_delay(10min, 1, 0.9) == 27s);
    CHECK(retry_delay(10min, 1, 0.0) == 24s);
    CHECK(retry_delay(10min, 1, -5.0) == 24s);
    CHECK(retry_delay(10min, 1, 2.0) == 36s);
    CHECK(retry_delay(10min, 1, 1e9) == 36s);
    CHECK(retry_delay(10min, 20, 0.8) == 8min);
    CHECK(retry_delay(10min, 20, 5.0) == 12min);
  }
  SUBCASE("never below one second") {
    CHECK(retry_delay(1s, 1, 0.8) == 1s);
    CHECK(retry_delay(1s, 2, 0.8) == 1600ms);
    CHECK(retry_delay(100ms, 1, 1.0) == 1s);
    CHECK(retry_delay(1ms, 3, 0.8) == 1s);
    CHECK(retry_delay(0ms, 1, 1.0) == 1s);
    CHECK(retry_delay(10min, 0, 1.0) == 30s);
    CHECK(retry_delay(10min, -3, 1.0) == 30s);
  }
  SUBCASE("no overflow for many failures") {
    for (const int failures : {31, 32, 33, 63, 64, 65, 1000, std::numeric_limits<int>::max()}) {
      CAPTURE(failures);
      CHECK(retry_delay(10min, failures, 1.0) == 10min);
      CHECK(retry_delay(1s, failures, 1.2) == 6s);
      CHECK(retry_delay(24h, failures, 0.8) == std::chrono::duration_cast<milliseconds>(24h * 0.8));
    }
  }
}

TEST_CASE("scheduler_test: retry_delay waits as long as Retry-After asks, within the cap") {
  SUBCASE("a longer wait than the backoff is honoured") {
    CHECK(retry_delay(10min, 1, 1.0, 120s) == 120s);
    CHECK(retry_delay(1s, 1, 0.8, 5s) == 5s);
    CHECK(retry_delay(1h, 1, 1.0, 50min) == 50min);
  }
  SUBCASE("a shorter wait than the backoff keeps the backoff") {
    CHECK(retry_delay(10min, 1, 1.0, 0s) == 30s);
    CHECK(retry_delay(10min, 4, 1.0, 10s) == 240s);
    CHECK(retry_delay(1s, 4, 1.2, 5s) == 6s);
  }
  SUBCASE("never longer than the longest backoff, however long the server asks") {
    CHECK(retry_delay(10min, 1, 1.0, 24h) == 10min);
    CHECK(retry_delay(1s, 1, 1.0, 3600s) == 5s);
    CHECK(retry_delay(1min, 1, 1.0, 24h) == 150s);
    CHECK(retry_delay(24h, 1, 1.0, std::chrono::hours(24 * 365)) == 24h);
  }
}

TEST_CASE("scheduler_test: scrapes a 24kg page, backs off on failure and recovers") {
  scrape_rig rig;
  const fs::path page = rig.dir() / "strip.html";
  const std::string name = "24kg-file";
  write_strip(page, "87.45", "99.56", "1.10");

  REQUIRE_FALSE(rig.next_scrape(name).has_value());
  const timestamp before_start = somrated::now();
  rig.start({make_source(name, "24kg", file_url(page))});
  const timestamp after_start = somrated::now();
  // The first scrape is planned right away.
  REQUIRE(rig.next_scrape(name).has_value());
  CHECK(*rig.next_scrape(name) >= before_start);
  CHECK(*rig.next_scrape(name) <= after_start);

  // a) The first scrape stores the strip, logs "ok" and plans the next one an interval on.
  const std::map<std::string, std::string> first = {
      {"EUR", "99.56"}, {"RUB", "1.10"}, {"USD", "87.45"}};
  REQUIRE(rig.run_until([&] { return latest_rates(rig.db(), name) == first; }));
  REQUIRE(rig.run_until([&] {
    const auto h = rig.db().health(name);
    const auto next = rig.next_scrape(name);
    return h.last_success && next && *next > *h.last_success;
  }));
  {
    const auto h = rig.db().health(name);
    CHECK(h.consecutive_failures == 0);
    CHECK_FALSE(h.last_error_at.has_value());
    CHECK(h.last_error.empty());
    const auto log = scrape_log(rig.db_path(), name);
    REQUIRE(log.size() == 1);
    CHECK(log[0].outcome == "ok");
    CHECK(log[0].error.empty());
    CHECK(log[0].http_status == 0);
    // last_success is when the scrape started, so the plan is at least one interval on.
    const auto ahead = *rig.next_scrape(name) - *h.last_success;
    CHECK(ahead >= 1s);
    CHECK(ahead <= 6s);
    CHECK(rig.db().held(name).empty());
  }

  // b) A changed page adds a change point.
  write_strip(page, "87.50", "99.56", "1.10");
  REQUIRE(rig.run_until([&] { return latest_rates(rig.db(), name).at("USD") == "87.50"; }));
  CHECK(change_texts(rig.db(), name, "USD") == std::vector<std::string>{"87.45", "87.50"});
  CHECK(change_texts(rig.db(), name, "EUR") == std::vector<std::string>{"99.56"});
  for (const auto& row : scrape_log(rig.db_path(), name)) CHECK(row.outcome == "ok");
  const std::map<std::string, std::string> second = {
      {"EUR", "99.56"}, {"RUB", "1.10"}, {"USD", "87.50"}};

  // c) A missing page is an error naming the file, stores nothing, and is retried with
  // growing delays. Each gap is measured from the failed scrape's start, so it is at
  // least the retry delay (1s interval: [1, 1.2]s, [1.6, 2.4]s, [3.2, 4.8]s); the upper
  // bounds allow a second for the fetch and the write.
  fs::remove(page);
  const std::size_t rows_before_failures = scrape_log(rig.db_path(), name).size();
  const milliseconds lowest[] = {1000ms, 1600ms, 3200ms};
  const milliseconds highest[] = {1200ms + 1s, 2400ms + 1s, 4800ms + 1s};
  std::vector<milliseconds> gaps;
  for (int k = 1; k <= 3; ++k) {
    CAPTURE(k);
    REQUIRE(rig.run_until([&] {
      const auto h = rig.db().health(name);
      const auto next = rig.next_scrape(name);
      return h.consecutive_failures >= k && h.last_error_at && next && *next > *h.last_error_at;
    }));
    const auto h = rig.db().health(name);
    CHECK(h.consecutive_failures == k);
    CHECK(contains(h.last_error, page.string()));
    CHECK(latest_rates(rig.db(), name) == second);
    const auto gap =
        std::chrono::duration_cast<milliseconds>(*rig.next_scrape(name) - *h.last_error_at);
    CAPTURE(gap.count());
    CHECK(gap >= lowest[k - 1]);
    CHECK(gap <= highest[k - 1]);
    gaps.push_back(gap);
  }
  CHECK(gaps[1] > gaps[0]);
  CHECK(gaps[2] > gaps[1]);
  {
    const auto log = scrape_log(rig.db_path(), name);
    REQUIRE(log.size() == rows_before_failures + 3);
    for (std::size_t i = rows_before_failures; i < log.size(); ++i) {
      CHECK(log[i].outcome == "error");
      CHECK(contains(log[i].error, page.string()));
    }
    CHECK(change_texts(rig.db(), name, "USD") == std::vector<std::string>{"87.45", "87.50"});
    const std::string text = rig.log_text();
    CHECK(contains(text, "scrape failed"));
    CHECK(contains(text, page.string()));
    CHECK(contains(text, "failure 3 in a row"));
  }

  // d) The page comes back: the next retry succeeds and the failure count is cleared.
  write_strip(page, "87.50", "99.56", "1.10");
  REQUIRE(rig.run_until([&] {
    const auto h = rig.db().health(name);
    const auto next = rig.next_scrape(name);
    return h.consecutive_failures == 0 && h.last_success && h.last_error_at &&
           *h.last_success > *h.last_error_at && next && *next > *h.last_success;
  }));
  {
    const auto h = rig.db().health(name);
    CHECK(latest_rates(rig.db(), name) == second);
    CHECK(change_texts(rig.db(), name, "USD") == std::vector<std::string>{"87.45", "87.50"});
    CHECK(scrape_log(rig.db_path(), name).back().outcome == "ok");
    const auto ahead = *rig.next_scrape(name) - *h.last_success;
    CHECK(ahead >= 1s);
    CHECK(ahead <= 6s);
  }

  // The backoff starts over: the next failure is retried after the first delay again,
  // not after the fourth (5 s with jitter, so at least 4 s).
  fs::remove(page);
  REQUIRE(rig.run_until([&] {
    const auto h = rig.db().health(name);
    const auto next = rig.next_scrape(name);
    return h.consecutive_failures == 1 && h.last_error_at && h.last_success &&
           *h.last_error_at > *h.last_success && next && *next > *h.last_error_at;
  }));
  {
    const auto h = rig.db().health(name);
    const auto gap =
        std::chrono::duration_cast<milliseconds>(*rig.next_scrape(name) - *h.last_error_at);
    CAPTURE(gap.count());
    CHECK(gap >= 1000ms);
    CHECK(gap <= 2200ms);
  }
}

TEST_CASE("scheduler_test: an implausible jump is held, then released when seen again") {
  scrape_rig rig;
  const fs::path page = rig.dir() / "strip.html";
  const std::string name = "24kg-jump";
  write_strip(page, "87.45", "99.56", "1.10");
  rig.start({make_source(name, "24kg", file_url(page), 0.25)});
  REQUIRE(rig.run_until([&] { return latest_rates(rig.db(), name).count("USD") == 1; }));
  // The scrape's log row is written just after its rates.
  REQUIRE(rig.run_until([&] { return scrape_log(rig.db_path(), name).size() == 1; }));
  const auto first_success = rig.db().health(name).last_success;
  REQUIRE(first_success.has_value());

  // 87.45 -> 122.43 is +40 %, more than max_jump 0.25.
  write_strip(page, "122.43", "99.56", "1.10");
  REQUIRE(rig.run_until([&] { return !rig.db().held(name).empty(); }));
  REQUIRE(rig.run_until([&] { return scrape_log(rig.db_path(), name).size() >= 2; }));
  timestamp held_since;
  {
    CHECK(held_rates(rig.db(), name) == std::map<std::string, std::string>{{"USD", "122.43"}});
    held_since = rig.db().held(name).front().since;
    CHECK(latest_rates(rig.db(), name).at("USD") == "87.45");
    const auto log = scrape_log(rig.db_path(), name);
    REQUIRE(log.size() == 2);
    CHECK(log[1].outcome == "held");
    CHECK(contains(log[1].error, "USD 122.43"));
    CHECK(contains(log[1].error, "87.45"));
    // A hold is not a failure.
    const auto h = rig.db().health(name);
    CHECK(h.consecutive_failures == 0);
    REQUIRE(h.last_success.has_value());
    CHECK(*h.last_success > *first_success);
    CHECK(contains(rig.log_text(), "implausible jump"));
  }

  // The next scrape sees the same page again and releases the value, dated from when it
  // was first seen.
  REQUIRE(rig.run_until([&] { return latest_rates(rig.db(), name).at("USD") == "122.43"; }));
  REQUIRE(rig.run_until([&] { return scrape_log(rig.db_path(), name).size() >= 3; }));
  CHECK(rig.db().held(name).empty());
  const auto points = change_points(rig.db(), name, "USD");
  REQUIRE(points.size() == 2);
  CHECK(points[0].second == "87.45");
  CHECK(points[1].second == "122.43");
  CHECK(points[1].first == held_since);
  const auto log = scrape_log(rig.db_path(), name);
  REQUIRE(log.size() == 3);
  CHECK(log[2].outcome == "ok");
  CHECK(log[2].error.empty());
}

TEST_CASE("scheduler_test: stop() ends scraping") {
  scrape_rig rig;
  const fs::path page = rig.dir() / "strip.html";
  const std::string name = "24kg-stop";
  write_strip(page, "87.45", "99.56", "1.10");
  rig.start({make_source(name, "24kg", file_url(page))});

  SUBCASE("no scrape after stop()") {
    REQUIRE(rig.run_until([&] {
      const auto h = rig.db().health(name);
      const auto next = rig.next_scrape(name);
      return h.last_success && next && *next > *h.last_success;
    }));
    const auto attempt = rig.db().health(name).last_attempt;
    const auto rows = scrape_log(rig.db_path(), name).size();
    const auto next = rig.next_scrape(name);
    REQUIRE(rows == 1);
    write_strip(page, "87.50", "99.56", "1.10");
    rig.sched().stop();
    // Two intervals and a half: without stop() this would be two more scrapes.
    rig.run_for(2500ms);
    CHECK(scrape_log(rig.db_path(), name).size() == rows);
    CHECK(rig.db().health(name).last_attempt == attempt);
    CHECK(rig.next_scrape(name) == next);
    CHECK(latest_rates(rig.db(), name).at("USD") == "87.45");
  }

  SUBCASE("a fetch in flight at stop() is dropped") {
    // The fetch has started once "fetching" is logged; the file is read by a handler
    // that has not run yet.
    REQUIRE(rig.run_until([&] { return contains(rig.log_text(), "fetching"); }));
    rig.sched().stop();
    rig.run_for(2500ms);
    CHECK(scrape_log(rig.db_path(), name).empty());
    CHECK(rig.db().latest(name).empty());
    CHECK_FALSE(rig.db().health(name).last_attempt.has_value());
  }
}

TEST_CASE("scheduler_test: an nbkr source stores rates with their effective date") {
  scrape_rig rig;
  const std::string name = "nbkr-file";
  const fs::path xml = fs::path(SOMRATED_TEST_DATA) / "nbkr" / "daily_2019-09-13_Daniiar-NBKR.xml";
  REQUIRE(fs::exists(xml));
  rig.start({make_source(name, "nbkr", file_url(xml))});
  REQUIRE(rig.run_until([&] { return rig.db().latest(name).size() == 4; }));
  const auto points = rig.db().latest(name);
  const std::map<std::string, std::string> want = {
      {"EUR", "77.0236"}, {"KZT", "0.1804"}, {"RUB", "1.0715"}, {"USD", "69.8500"}};
  CHECK(latest_rates(rig.db(), name) == want);
  const std::chrono::sys_days day = std::chrono::year{2019} / 9 / 13;
  for (const auto& p : points) {
    CAPTURE(p.currency);
    REQUIRE(p.effective_date.has_value());
    CHECK(*p.effective_date == day);
  }
  REQUIRE(rig.run_until([&] { return !scrape_log(rig.db_path(), name).empty(); }));
  const auto log = scrape_log(rig.db_path(), name);
  REQUIRE(log.size() == 1);
  CHECK(log[0].outcome == "ok");
}

TEST_CASE("scheduler_test: reconfigure keeps unchanged sources and restarts the rest") {
  scrape_rig rig;
  const fs::path page = rig.dir() / "strip.html";
  const fs::path other = rig.dir() / "other.html";
  write_strip(page, "87.45", "99.56", "1.10");
  write_strip(other, "88.00", "99.56", "1.10");
  auto hourly = [&](std::string name, const fs::path& p) {
    source_config c = make_source(std::move(name), "24kg", file_url(p));
    c.interval = 1h;
    return c;
  };
  const source_config kept = hourly("kept", page);
  const source_config changed = hourly("changed", page);
  const source_config removed = make_source("removed", "24kg", file_url(page));  // every 1s
  rig.start({kept, changed, removed});
  REQUIRE(rig.run_until([&] {
    for (const char* name : {"kept", "changed", "removed"})
      if (!rig.db().health(name).last_success) return false;
    return rig.next_scrape("kept") > rig.db().health("kept").last_success;
  }));
  const auto kept_next = rig.next_scrape("kept");

  source_config changed_now = hourly("changed", other);
  rig.sched().reconfigure({kept, changed_now, hourly("added", other)});
  const auto removed_rows = scrape_log(rig.db_path(), "removed").size();

  // The new and the changed source are scraped at once, the changed one from its new URL.
  REQUIRE(rig.run_until([&] {
    return rig.db().health("added").last_success &&
           scrape_log(rig.db_path(), "changed").size() == 2;
  }));
  CHECK(latest_rates(rig.db(), "added").at("USD") == "88.00");
  CHECK(latest_rates(rig.db(), "changed").at("USD") == "88.00");
  // Two intervals and a half of the removed source: without reconfigure() that would be
  // two more scrapes; a scrape already being stored at the switch may still land.
  rig.run_for(2500ms);
  CHECK(scrape_log(rig.db_path(), "removed").size() <= removed_rows + 1);
  // The unchanged source kept its schedule and was not scraped again.
  CHECK(scrape_log(rig.db_path(), "kept").size() == 1);
  CHECK(rig.next_scrape("kept") == kept_next);
}
