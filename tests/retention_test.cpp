#include "somrated/retention.hpp"

#include <unistd.h>

#include <doctest/doctest.h>
#include <fmt/core.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <random>
#include <string>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include "somrated/sqlite.hpp"

using somrated::db_worker;
using somrated::log_retention;
using somrated::logger;
using somrated::store;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

/// A database file in the temp directory, removed (with its side files) at scope end.
class temp_db {
 public:
  temp_db() {
    std::random_device rd;
    path_ = (fs::temp_directory_path() /
             fmt::format("somrated-retention-test-{}-{:08x}{:08x}.db", ::getpid(), rd(), rd()))
                .string();
  }
  ~temp_db() {
    std::error_code ec;
    for (const char* suffix : {"", "-wal", "-shm", "-journal"}) fs::remove(path_ + suffix, ec);
  }
  temp_db(const temp_db&) = delete;
  temp_db& operator=(const temp_db&) = delete;

  /// The file's path.
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

/// Logs n successful scrapes of source, the first at start, one millisecond apart.
void log_scrapes(store& db, const char* source, somrated::timestamp start, int n) {
  for (int i = 0; i < n; ++i) {
    somrated::scrape_record r;
    r.source = source;
    r.started_at = start + std::chrono::milliseconds(i);
    r.outcome = "ok";
    db.log_scrape(r);
  }
}

/// Scrape-log rows that started before t, and in all.
std::pair<std::int64_t, std::int64_t> counts(const std::string& path, somrated::timestamp t) {
  somrated::sqlite::connection c(path, somrated::sqlite::connection::open_mode::read_only);
  somrated::sqlite::statement st(
      c, "SELECT count(*) FILTER (WHERE started_at < ?1), count(*) FROM scrape_log");
  st.bind(1, static_cast<std::int64_t>(t.time_since_epoch().count()));
  REQUIRE(st.step());
  return {st.column_int64(0), st.column_int64(1)};
}

/// Runs the loop until no scrape-log row is older than t (or 30 s pass). The loop is
/// kept from running out of work while a batch is on the writer.
void run_until_pruned(boost::asio::io_context& ioc, const std::string& path,
                      somrated::timestamp t) {
  auto guard = boost::asio::make_work_guard(ioc);
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (counts(path, t).first > 0 && std::chrono::steady_clock::now() < deadline) {
    ioc.run_for(20ms);
  }
}

}  // namespace

TEST_CASE("log_retention::period") {
  CHECK(log_retention::period(std::chrono::days(90)) == 1h);
  CHECK(log_retention::period(5h) == 30min);
  CHECK(log_retention::period(20s) == 2s);
  CHECK(log_retention::period(3s) == 1s);
}

TEST_CASE("log_retention deletes old scrape-log rows in batches on the writer") {
  temp_db file;
  const auto now = somrated::now();
  const auto hour_ago = now - 1h;
  {
    store db(file.path());
    log_scrapes(db, "24kg", now - 3h, 2500);
    log_scrapes(db, "24kg", now - 10min, 3);
  }
  REQUIRE(counts(file.path(), hour_ago) == std::pair<std::int64_t, std::int64_t>{2500, 2503});
  logger log(somrated::log_level::error, stderr);
  boost::asio::io_context ioc;
  db_worker writer(file.path(), store::mode::read_write, log);

  SUBCASE("rows older than keep go, newer ones stay") {
    log_retention retention(ioc.get_executor(), writer, 1h, log, 1000);
    retention.start();
    run_until_pruned(ioc, file.path(), hour_ago);
    retention.stop();
    writer.stop();
    ioc.restart();
    ioc.run();  // the last batch's report, if any; nothing is scheduled after stop()
    CHECK(counts(file.path(), hour_ago) == std::pair<std::int64_t, std::int64_t>{0, 3});
  }
  SUBCASE("keep = 0 keeps everything") {
    log_retention retention(ioc.get_executor(), writer, 0ms, log, 1000);
    retention.start();
    ioc.run();  // returns at once: nothing was posted or armed
    writer.stop();
    CHECK(counts(file.path(), hour_ago) == std::pair<std::int64_t, std::int64_t>{2500, 2503});
  }
  SUBCASE("set_keep turns it on, and a new keep set during a pass applies at its end") {
    log_retention retention(ioc.get_executor(), writer, 0ms, log, 1000);
    retention.start();
    // With 5 h nothing is due; the 1 h that follows while that pass is still on the
    // writer runs right after it, not a period (30 min) later.
    retention.set_keep(5h);
    retention.set_keep(1h);
    run_until_pruned(ioc, file.path(), hour_ago);
    retention.stop();
    writer.stop();
    ioc.restart();
    ioc.run();
    CHECK(counts(file.path(), hour_ago) == std::pair<std::int64_t, std::int64_t>{0, 3});
  }
}
