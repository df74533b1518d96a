#include <unistd.h>

#include <doctest/doctest.h>
#include <fmt/core.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "somrated/sqlite.hpp"
#include "somrated/store.hpp"

using somrated::change_filter;
using somrated::change_record;
using somrated::decimal;
using somrated::import_outcome;
using somrated::import_verdict;
using somrated::scrape_record;
using somrated::store;
using somrated::store_error;
using somrated::timestamp;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

/// A fresh directory under the temp directory, removed with its contents at scope end.
class temp_dir {
 public:
  temp_dir() {
    std::random_device rd;
    path_ = fs::temp_directory_path() /
            fmt::format("somrated-ops-test-{}-{:08x}{:08x}", ::getpid(), rd(), rd());
    fs::create_directories(path_);
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;

  /// A path inside the directory.
  std::string file(std::string_view name) const { return (path_ / name).string(); }
  /// The directory.
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

/// A time given in Unix milliseconds.
timestamp ms(std::int64_t v) {
  return timestamp{std::chrono::milliseconds{v}};
}

/// A change point; observed defaults to since.
change_record rec(std::string source, std::string currency, std::int64_t since, const char* rate,
                  std::optional<std::int64_t> observed = std::nullopt,
                  std::optional<std::chrono::sys_days> date = std::nullopt) {
  return change_record{std::move(source),     std::move(currency),          ms(since),
                       *decimal::parse(rate), ms(observed.value_or(since)), date};
}

/// A change point as compared in tests: "source currency since rate observed [date]".
std::string text_of(const change_record& r) {
  std::string out =
      fmt::format("{} {} {} {} {}", r.source, r.currency, r.since.time_since_epoch().count(),
                  r.rate.text(), r.observed_at.time_since_epoch().count());
  if (r.effective_date) out += " " + somrated::format_date(*r.effective_date);
  return out;
}

/// Everything f selects, as text_of lines.
std::vector<std::string> dump(store& db, const change_filter& f = {}) {
  std::vector<std::string> out;
  db.export_changes(f, [&](const change_record& r) { out.push_back(text_of(r)); });
  return out;
}

/// The outcomes of a merge.
std::vector<import_outcome> outcomes(const std::vector<import_verdict>& v) {
  std::vector<import_outcome> out;
  for (const auto& x : v) out.push_back(x.outcome);
  return out;
}

/// Runs merge_changes on records.
std::vector<import_verdict> merge(store& db, const std::vector<change_record>& records) {
  return db.merge_changes(records);
}

constexpr auto inserted = import_outcome::inserted;
constexpr auto extended = import_outcome::extended;
constexpr auto present = import_outcome::present;
constexpr auto conflict = import_outcome::conflict;

/// Logs one scrape of source at t (ms) with outcome "ok" or "error".
void log_scrape(store& db, const std::string& source, std::int64_t t, const char* outcome) {
  scrape_record r;
  r.source = source;
  r.started_at = ms(t);
  r.outcome = outcome;
  if (std::string_view(outcome) == "error") r.error = fmt::format("failure at {}", t);
  db.log_scrape(r);
}

/// The started_at of source's scrape-log rows of one kind ("ok" or "error"), ascending.
std::vector<std::int64_t> log_times(const std::string& path, const std::string& source,
                                    const char* outcome) {
  somrated::sqlite::connection c(path, somrated::sqlite::connection::open_mode::read_only);
  somrated::sqlite::statement st(c,
                                 "SELECT l.started_at FROM scrape_log AS l JOIN source AS s "
                                 "ON s.id = l.source_id WHERE s.name = ?1 AND l.outcome = ?2 "
                                 "ORDER BY l.started_at");
  st.bind(1, std::string_view(source));
  st.bind(2, outcome);
  std::vector<std::int64_t> out;
  while (st.step()) out.push_back(st.column_int64(0));
  return out;
}

/// A one-row query's integer answer.
std::int64_t query_int(const std::string& path, const char* sql) {
  somrated::sqlite::connection c(path, somrated::sqlite::connection::open_mode::read_only);
  somrated::sqlite::statement st(c, sql);
  REQUIRE(st.step());
  return st.column_int64(0);
}

/// A one-row query's text answer.
std::string query_text(const std::string& path, const char* sql) {
  somrated::sqlite::connection c(path, somrated::sqlite::connection::open_mode::read_write);
  somrated::sqlite::statement st(c, sql);
  REQUIRE(st.step());
  return st.column_text(0);
}

/// The names in dir, sorted.
std::vector<std::string> listing(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

TEST_CASE("store: merge_changes") {
  store db(":memory:");
  const std::vector<change_record> first{rec("24kg", "USD", 1000, "87.45", 1500),
                                         rec("24kg", "USD", 2000, "87.50", 2500),
                                         rec("24kg", "EUR", 1000, "99.56")};

  SUBCASE("inserts into an empty store, and a second time changes nothing") {
    CHECK(outcomes(merge(db, first)) == std::vector{inserted, inserted, inserted});
    const auto before = dump(db);
    CHECK(before == std::vector<std::string>{"24kg EUR 1000 99.56 1000", "24kg USD 1000 87.45 1500",
                                             "24kg USD 2000 87.50 2500"});
    CHECK(outcomes(merge(db, first)) == std::vector{present, present, present});
    CHECK(dump(db) == before);
  }
  SUBCASE("another value at a stored time is a conflict and writes nothing") {
    merge(db, first);
    const auto before = dump(db);
    const auto v = merge(db, {rec("24kg", "USD", 2000, "87.51", 9000)});
    REQUIRE(v.size() == 1);
    CHECK(v[0].outcome == conflict);
    CHECK(v[0].stored_rate == "87.50");
    CHECK(dump(db) == before);
    SUBCASE("the text decides: 87.5 is not 87.50") {
      CHECK(outcomes(merge(db, {rec("24kg", "USD", 2000, "87.5")})) == std::vector{conflict});
    }
  }
  SUBCASE("conflicts inside one batch are found too; the rest of the batch is applied") {
    const auto v = merge(db, {rec("nbkr", "USD", 10, "1.1"), rec("nbkr", "USD", 10, "1.2"),
                              rec("nbkr", "USD", 20, "1.3")});
    CHECK(outcomes(v) == std::vector{inserted, conflict, inserted});
    CHECK(v[1].stored_rate == "1.1");
    CHECK(dump(db).size() == 2);
  }
  SUBCASE("a backfill goes before and between stored change points") {
    merge(db, first);
    CHECK(outcomes(
              merge(db, {rec("24kg", "USD", 500, "86.00"), rec("24kg", "USD", 1700, "87.47")})) ==
          std::vector{inserted, inserted});
    CHECK(dump(db, {.source = "24kg", .currency = "USD"}) ==
          std::vector<std::string>{"24kg USD 500 86.00 500", "24kg USD 1000 87.45 1500",
                                   "24kg USD 1700 87.47 1700", "24kg USD 2000 87.50 2500"});
  }
  SUBCASE("the value in force confirms: observed_at only moves forward") {
    merge(db, first);
    CHECK(outcomes(merge(
              db, {rec("24kg", "USD", 1200, "87.45", 1800), rec("24kg", "USD", 1100, "87.45", 1100),
                   rec("24kg", "USD", 1000, "87.45", 1000)})) ==
          std::vector{present, present, present});
    CHECK(dump(db, {.currency = "USD"}).front() == "24kg USD 1000 87.45 1800");
  }
  SUBCASE("an earlier start of a known value replaces the later change point") {
    merge(db, first);
    const auto date = std::chrono::sys_days{std::chrono::year{2025} / 6 / 10};
    CHECK(outcomes(merge(db, {rec("24kg", "USD", 1800, "87.50", 1900, date)})) ==
          std::vector{extended});
    // Observed later in the store, so its observation stays; the date fills the gap.
    CHECK(dump(db, {.currency = "USD"}) ==
          std::vector<std::string>{"24kg USD 1000 87.45 1500",
                                   "24kg USD 1800 87.50 2500 2025-06-10"});
    CHECK(outcomes(merge(db, {rec("24kg", "USD", 1800, "87.50", 1900, date)})) ==
          std::vector{present});
  }
  SUBCASE("a series of daily rows collapses to change points, in either order") {
    std::vector<change_record> days;
    for (int d = 1; d <= 30; ++d) {
      days.push_back(rec("nbkr", "KZT", d * 86'400'000LL, d <= 10 ? "0.1686" : "0.1701"));
    }
    const std::vector<std::string> expected{"nbkr KZT 86400000 0.1686 864000000",
                                            "nbkr KZT 950400000 0.1701 2592000000"};
    const auto count = [](const std::vector<import_verdict>& v, import_outcome o) {
      return std::count_if(v.begin(), v.end(), [o](const auto& x) { return x.outcome == o; });
    };
    SUBCASE("ascending") {
      const auto v = merge(db, days);
      CHECK(dump(db) == expected);
      CHECK(count(v, inserted) == 2);
      CHECK(count(v, present) == 28);
    }
    SUBCASE("descending") {
      std::reverse(days.begin(), days.end());
      const auto v = merge(db, days);
      CHECK(dump(db) == expected);
      CHECK(count(v, inserted) == 2);
      CHECK(count(v, extended) == 28);
    }
  }
  SUBCASE("sources and currencies are independent; export orders by source name") {
    merge(db, {rec("zz", "USD", 5, "1"), rec("aa", "USD", 5, "2"), rec("aa", "EUR", 7, "3")});
    CHECK(dump(db) == std::vector<std::string>{"aa EUR 7 3 7", "aa USD 5 2 5", "zz USD 5 1 5"});
  }
  SUBCASE("a new newest value drops a pending hold; an older one does not") {
    const std::vector<somrated::rate_quote> q{{"USD", *decimal::parse("87.45")}};
    const std::vector<somrated::rate_quote> jump{{"USD", *decimal::parse("200.00")}};
    db.record("24kg", ms(1000), q, std::nullopt, 0.25);
    db.record("24kg", ms(2000), jump, std::nullopt, 0.25);
    REQUIRE(db.held("24kg").size() == 1);
    merge(db, {rec("24kg", "USD", 500, "80.00")});
    CHECK(db.held("24kg").size() == 1);
    merge(db, {rec("24kg", "USD", 3000, "88.00")});
    CHECK(db.held("24kg").empty());
  }
}

TEST_CASE("store: export_changes filters") {
  store db(":memory:");
  db.merge_changes(std::vector{rec("24kg", "USD", 100, "87.45"), rec("24kg", "USD", 200, "87.46"),
                               rec("24kg", "USD", 300, "87.47"), rec("24kg", "EUR", 200, "99.56"),
                               rec("nbkr", "USD", 200, "80.9694", 250,
                                   std::chrono::sys_days{std::chrono::year{2022} / 7 / 18})});
  CHECK(dump(db).size() == 5);
  CHECK(dump(db, {.source = "nbkr"}) ==
        std::vector<std::string>{"nbkr USD 200 80.9694 250 2022-07-18"});
  CHECK(dump(db, {.currency = "USD"}).size() == 4);
  CHECK(dump(db, {.source = "24kg", .currency = "USD", .from = ms(200), .to = ms(300)}) ==
        std::vector<std::string>{"24kg USD 200 87.46 200", "24kg USD 300 87.47 300"});
  CHECK(dump(db, {.from = ms(201)}) == std::vector<std::string>{"24kg USD 300 87.47 300"});
  CHECK(dump(db, {.to = ms(100)}) == std::vector<std::string>{"24kg USD 100 87.45 100"});
  CHECK(dump(db, {.source = "none"}).empty());
  CHECK(dump(db, {.currency = "JPY"}).empty());
  CHECK(db.export_changes({}, [](const change_record&) {}) == 5);
}

TEST_CASE("store: prune_scrape_log") {
  temp_dir dir;
  const auto path = dir.file("r.db");
  store db(path);
  db.merge_changes(std::vector{rec("a", "USD", 1, "1.00")});
  // a: successes and failures, newest a success; b: failures only; c: a streak of
  // failures after its last success.
  for (std::int64_t t : {100, 200, 300}) log_scrape(db, "a", t, "ok");
  for (std::int64_t t : {150, 250}) log_scrape(db, "a", t, "error");
  for (std::int64_t t : {100, 200}) log_scrape(db, "b", t, "error");
  log_scrape(db, "c", 100, "ok");
  for (std::int64_t t : {50, 200, 300, 400}) log_scrape(db, "c", t, "error");
  const auto health_before = std::vector{db.health("a"), db.health("b"), db.health("c")};

  SUBCASE("only rows older than the cutoff") {
    CHECK(db.prune_scrape_log(ms(180), 1000) == 3);  // a: ok 100, error 150; c: error 50
    CHECK(log_times(path, "a", "ok") == std::vector<std::int64_t>{200, 300});
    CHECK(log_times(path, "a", "error") == std::vector<std::int64_t>{250});
    CHECK(log_times(path, "c", "error") == std::vector<std::int64_t>{200, 300, 400});
    CHECK(db.prune_scrape_log(ms(180), 1000) == 0);
  }
  SUBCASE("what health() reads survives any cutoff") {
    CHECK(db.prune_scrape_log(ms(1'000'000), 1000) == 4);
    CHECK(log_times(path, "a", "ok") == std::vector<std::int64_t>{300});
    CHECK(log_times(path, "a", "error") == std::vector<std::int64_t>{250});
    CHECK(log_times(path, "b", "error") == std::vector<std::int64_t>{100, 200});
    CHECK(log_times(path, "c", "ok") == std::vector<std::int64_t>{100});
    CHECK(log_times(path, "c", "error") == std::vector<std::int64_t>{200, 300, 400});
    const auto health_after = std::vector{db.health("a"), db.health("b"), db.health("c")};
    for (std::size_t i = 0; i < health_before.size(); ++i) {
      CAPTURE(i);
      CHECK(health_after[i].last_attempt == health_before[i].last_attempt);
      CHECK(health_after[i].last_success == health_before[i].last_success);
      CHECK(health_after[i].last_error_at == health_before[i].last_error_at);
      CHECK(health_after[i].last_error == health_before[i].last_error);
      CHECK(health_after[i].consecutive_failures == health_before[i].consecutive_failures);
    }
  }
  SUBCASE("change points and other tables are not touched") {
    db.prune_scrape_log(ms(1'000'000), 1000);
    CHECK(dump(db) == std::vector<std::string>{"a USD 1 1.00 1"});
    CHECK(query_int(path, "SELECT count(*) FROM source") == 3);
  }
  SUBCASE("at most max_rows per call") {
    for (std::int64_t t = 1000; t < 3500; ++t) log_scrape(db, "d", t, "ok");
    std::vector<std::size_t> batches;
    for (std::size_t n; (n = db.prune_scrape_log(ms(1'000'000), 1000)) > 0;) batches.push_back(n);
    CHECK(batches == std::vector<std::size_t>{1000, 1000, 503});  // d: 2499, a: 3, c: 1
    CHECK(log_times(path, "d", "ok") == std::vector<std::int64_t>{3499});
    CHECK(db.prune_scrape_log(ms(1'000'000), 0) == 0);
  }
}

TEST_CASE("backup_database") {
  temp_dir dir;
  const auto path = dir.file("rates.db");
  const auto copy = dir.file("copy.db");
  {
    store db(path);
    std::vector<change_record> rows;
    for (int i = 0; i < 3000; ++i) {
      rows.push_back(rec("24kg", "USD", 1000 + i, i % 2 == 0 ? "87.45" : "87.46"));
    }
    db.merge_changes(rows);
    log_scrape(db, "24kg", 5000, "ok");
  }

  SUBCASE("a checked, self-contained copy in small steps") {
    somrated::backup_options o;
    o.pages_per_step = 2;
    const auto r = somrated::backup_database(path, copy, o);
    CHECK(r.pages > 2);
    CHECK(r.steps > 1);
    CHECK(r.bytes == static_cast<std::int64_t>(fs::file_size(copy)));
    CHECK(listing(dir.path()) == std::vector<std::string>{"copy.db", "rates.db"});
    CHECK(query_text(copy, "PRAGMA journal_mode") == "delete");
    CHECK(query_text(copy, "PRAGMA integrity_check") == "ok");
    store original(path, store::mode::read_only);
    store backup(copy, store::mode::read_only);
    CHECK(dump(backup) == dump(original));
    CHECK(backup.health("24kg").last_success == ms(5000));
  }
  SUBCASE("an existing destination is kept unless overwrite") {
    { std::ofstream(copy) << "precious"; }
    CHECK_THROWS_WITH_AS(somrated::backup_database(path, copy),
                         fmt::format("'{}' exists", copy).c_str(), store_error);
    CHECK(fs::file_size(copy) == 8);
    somrated::backup_options o;
    o.overwrite = true;
    somrated::backup_database(path, copy, o);
    CHECK(query_text(copy, "PRAGMA integrity_check") == "ok");
    CHECK(listing(dir.path()) == std::vector<std::string>{"copy.db", "rates.db"});
  }
  SUBCASE("never onto the database itself, a directory or a live database") {
    somrated::backup_options o;
    o.overwrite = true;
    CHECK_THROWS_WITH_AS(somrated::backup_database(path, path, o),
                         fmt::format("'{}' is the database itself", path).c_str(), store_error);
    CHECK_THROWS_WITH_AS(somrated::backup_database(path, dir.path().string(), o),
                         fmt::format("'{}' is a directory", dir.path().string()).c_str(),
                         store_error);
    { std::ofstream(copy) << "x"; }
    { std::ofstream(copy + "-wal") << "x"; }
    CHECK_THROWS_AS(somrated::backup_database(path, copy, o), store_error);
    CHECK(fs::file_size(copy) == 1);
  }
  SUBCASE("a missing source") {
    CHECK_THROWS_AS(somrated::backup_database(dir.file("none.db"), copy), store_error);
    CHECK_FALSE(fs::exists(copy));
    CHECK_FALSE(fs::exists(dir.file("none.db")));
  }
}

TEST_CASE("backup_database copies one snapshot, whatever is written between steps") {
  temp_dir dir;
  const auto path = dir.file("rates.db");
  const auto copy = dir.file("copy.db");
  std::vector<std::string> at_start;
  {
    store db(path);
    std::vector<change_record> rows;
    for (int i = 0; i < 5000; ++i) rows.push_back(rec("seed", "USD", i, i % 2 ? "1.1" : "1.2"));
    db.merge_changes(rows);
    at_start = dump(db);
  }
  // Another connection writes after each of the first steps: without one read snapshot
  // over all steps, each write would restart the copy, and the copy would end up with
  // the rows written meanwhile.
  store other(path);
  int step = 0;
  std::vector<std::int64_t> remaining;
  somrated::backup_options o;
  o.pages_per_step = 1;
  o.progress = [&](std::int64_t left, std::int64_t total) {
    remaining.push_back(left);
    CHECK(total > 0);
    if (step < 20) {
      ++step;
      other.merge_changes(std::vector{rec("during", "EUR", step, step % 2 ? "2.1" : "2.2")});
    }
  };
  const auto r = somrated::backup_database(path, copy, o);
  CHECK(step == 20);
  CHECK(dump(other).size() == at_start.size() + 20);
  store backup(copy, store::mode::read_only);
  CHECK(dump(backup) == at_start);
  // One pass over the pages: the count of pages left only goes down.
  CHECK(r.steps == r.pages);
  CHECK(std::is_sorted(remaining.rbegin(), remaining.rend()));
}

TEST_CASE("backup_database while another thread writes") {
  temp_dir dir;
  const auto path = dir.file("rates.db");
  {
    // Enough pages that a copy at 4 pages per step takes many steps.
    store db(path);
    std::vector<change_record> rows;
    for (int i = 0; i < 20000; ++i) rows.push_back(rec("seed", "USD", i, i % 2 ? "1.1" : "1.2"));
    db.merge_changes(rows);
  }
  // Each write stores USD and EUR together in one transaction: a consistent snapshot
  // holds as many of one as of the other.
  std::atomic<bool> stop{false};
  std::atomic<int> writes{0};
  std::string writer_error;
  std::thread writer([&] {
    try {
      store db(path);
      for (int i = 0; !stop; ++i) {
        const auto rate = *decimal::parse(fmt::format("{}.{:02}", 80 + i % 7, i % 100));
        const std::vector<somrated::rate_quote> q{{"USD", rate}, {"EUR", rate}};
        db.record("live", ms(1'000'000 + i), q, std::nullopt, 0);
        ++writes;
      }
    } catch (const std::exception& e) {
      writer_error = e.what();
    }
  });
  // Wait (bounded) for the writer to get going.
  for (int i = 0; i < 2000 && writes == 0 && writer_error.empty(); ++i) {
    std::this_thread::sleep_for(5ms);
  }
  std::vector<std::pair<std::int64_t, std::int64_t>> counts;
  int steps = 0;
  for (int round = 0; round < 5; ++round) {
    const auto copy = dir.file(fmt::format("copy{}.db", round));
    somrated::backup_options o;
    o.pages_per_step = 4;
    const auto r = somrated::backup_database(path, copy, o);
    steps = std::max(steps, r.steps);
    CHECK(query_text(copy, "PRAGMA integrity_check") == "ok");
    counts.emplace_back(query_int(copy,
                                  "SELECT count(*) FROM rate_change WHERE currency = 'USD' "
                                  "AND source_id = (SELECT id FROM source WHERE name = 'live')"),
                        query_int(copy, "SELECT count(*) FROM rate_change WHERE currency = 'EUR'"));
  }
  stop = true;
  writer.join();
  CHECK(writer_error == "");
  CHECK(writes > 0);
  CHECK(steps > 10);
  for (const auto& [usd, eur] : counts) CHECK(usd == eur);
}

TEST_CASE("vacuum_database") {
  temp_dir dir;
  const auto path = dir.file("rates.db");
  std::vector<std::string> before;
  {
    store db(path);
    for (std::int64_t t = 0; t < 5000; ++t) log_scrape(db, "24kg", t, "ok");
    db.merge_changes(std::vector{rec("24kg", "USD", 1, "87.45")});
    db.prune_scrape_log(ms(1'000'000), 100000);
    before = dump(db);
  }
  SUBCASE("shrinks the file and truncates the WAL; the data stays") {
    const auto r = somrated::vacuum_database(path, 1s);
    CHECK(r.bytes_after < r.bytes_before);
    CHECK(r.wal_truncated);
    store db(path, store::mode::read_only);
    CHECK(dump(db) == before);
    CHECK(query_text(path, "PRAGMA integrity_check") == "ok");
  }
  SUBCASE("refuses while another connection holds the write lock") {
    somrated::sqlite::connection other(path, somrated::sqlite::connection::open_mode::read_write);
    somrated::sqlite::transaction tx(other, somrated::sqlite::transaction::kind::immediate);
    try {
      somrated::vacuum_database(path, 100ms);
      FAIL("expected store_error");
    } catch (const store_error& e) {
      CHECK(std::string(e.what()).find("the database stayed locked by another connection") == 0);
    }
    tx.commit();
    CHECK(somrated::vacuum_database(path, 1s).bytes_after > 0);
  }
  SUBCASE("a missing file") {
    CHECK_THROWS_AS(somrated::vacuum_database(dir.file("none.db"), 1s), store_error);
    CHECK_FALSE(fs::exists(dir.file("none.db")));
  }
}
