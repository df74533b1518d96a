#include "somrated/db_worker.hpp"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

#include <doctest/doctest.h>
#include <fmt/core.h>

#include "somrated/decimal.hpp"
#include "somrated/log.hpp"
#include "somrated/observation.hpp"
#include "somrated/reader_pool.hpp"
#include "somrated/store.hpp"
#include "somrated/time.hpp"

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using somrated::db_worker;
using somrated::reader_pool;
using somrated::store;

/// How long any wait for another thread may take before the test gives up.
constexpr auto patience = 60s;

/// True when text contains part.
bool contains(std::string_view text, std::string_view part) {
  return text.find(part) != std::string_view::npos;
}

/// A database file in the temp directory, removed (with its -wal and -shm) at scope end.
class temp_db {
 public:
  temp_db() {
    std::random_device rd;
    path_ = (fs::temp_directory_path() /
             fmt::format("somrated-db-worker-test-{}-{:08x}{:08x}.db", ::getpid(), rd(), rd()))
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

/// Closes a stdio stream.
struct file_closer {
  void operator()(std::FILE* f) const noexcept { std::fclose(f); }
};

/// A logger writing to a temp file, so failed jobs can be read back and test output stays
/// clean.
class temp_log {
 public:
  temp_log() : file_(std::tmpfile()), log_(somrated::log_level::debug, file_.get()) {
    REQUIRE(file_ != nullptr);
  }

  /// The logger.
  somrated::logger& get() { return log_; }

  /// Everything logged so far, read through the descriptor so the stream's position
  /// (where the logger appends) is left alone.
  std::string text() const {
    std::string out;
    char chunk[4096];
    for (;;) {
      const ssize_t n =
          ::pread(::fileno(file_.get()), chunk, sizeof chunk, static_cast<off_t>(out.size()));
      if (n <= 0) return out;
      out.append(chunk, static_cast<std::size_t>(n));
    }
  }

 private:
  std::unique_ptr<std::FILE, file_closer> file_;
  somrated::logger log_;
};

/// A one-shot barrier: wait() blocks until open() (or the deadline; then false).
class gate {
 public:
  /// Lets every waiter through, now and later.
  void open() {
    {
      std::lock_guard lock(mutex_);
      open_ = true;
    }
    cv_.notify_all();
  }

  /// Waits until open; false when patience ran out first.
  bool wait() {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, patience, [this] { return open_; });
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool open_ = false;
};

/// Polls pred until it holds or patience runs out; true when it holds.
template <class Pred>
bool wait_until(Pred pred) {
  const auto deadline = std::chrono::steady_clock::now() + patience;
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::yield();
  }
  return true;
}

/// Writes USD/EUR for source "24kg" into the database at path.
void seed(const std::string& path) {
  store db(path, store::mode::read_write);
  const std::vector<somrated::rate_quote> quotes = {{"EUR", *somrated::decimal::parse("99.56")},
                                                    {"USD", *somrated::decimal::parse("87.45")}};
  db.record("24kg", somrated::now(), quotes, std::nullopt, 0.25);
}

}  // namespace

TEST_CASE("db_worker_test: jobs run in order on one thread of their own") {
  temp_db file;
  temp_log log;
  db_worker worker(file.path(), store::mode::read_write, log.get());
  constexpr int jobs = 200;
  // Touched only by the worker thread until stop() has joined it.
  std::vector<int> order;
  std::vector<std::thread::id> threads;
  // The first job holds the thread until every job is queued, so a second thread (or a
  // queue that is not first in, first out) would get to run the later ones first.
  gate all_posted;
  for (int i = 0; i < jobs; ++i) {
    worker.post([&, i](store& db) {
      if (i == 0) {
        CHECK(all_posted.wait());
        CHECK(db.ping());
      }
      order.push_back(i);
      threads.push_back(std::this_thread::get_id());
    });
  }
  all_posted.open();
  worker.stop();
  REQUIRE(order.size() == jobs);
  for (int i = 0; i < jobs; ++i) CHECK(order[static_cast<std::size_t>(i)] == i);
  for (const auto& id : threads) {
    CHECK(id == threads.front());
    CHECK(id != std::this_thread::get_id());
  }
}

TEST_CASE("db_worker_test: a job that throws is logged and later jobs still run") {
  temp_db file;
  temp_log log;
  db_worker worker(file.path(), store::mode::read_write, log.get());
  std::atomic<int> after{0};
  worker.post([](store&) { throw std::runtime_error("boom from job 1"); });
  worker.post([&](store&) { ++after; });
  worker.post([](store&) { throw 42; });
  worker.post([&](store&) { ++after; });
  // The store's own errors are jobs' exceptions too: a read-write store rejects a bad
  // import, and the worker survives it.
  worker.post([](store& db) {
    const std::vector<somrated::history_point> backwards = {
        {somrated::timestamp{2000ms}, *somrated::decimal::parse("1")},
        {somrated::timestamp{1000ms}, *somrated::decimal::parse("2")}};
    db.import_changes("24kg", "USD", backwards);
  });
  worker.post([&](store&) { ++after; });
  worker.stop();
  CHECK(after.load() == 3);
  const std::string text = log.text();
  CHECK(contains(text, "database job failed: boom from job 1"));
  CHECK(contains(text, "database job failed with an unknown exception"));
  CHECK(contains(text, "import_changes 24kg/USD"));
}

TEST_CASE("db_worker_test: stop() finishes the queued jobs before returning") {
  temp_db file;
  temp_log log;
  db_worker worker(file.path(), store::mode::read_write, log.get());
  gate release;
  std::atomic<bool> first_done{false};
  std::atomic<int> ran{0};
  worker.post([&](store&) {
    CHECK(release.wait());
    first_done = true;
  });
  // Queued behind the blocked first job: none can have started yet.
  for (int i = 0; i < 50; ++i) {
    worker.post([&](store& db) {
      // Each writes, so the store is still open while the queue drains.
      db.log_scrape({.source = "24kg",
                     .started_at = somrated::now(),
                     .duration = 1ms,
                     .http_status = 200,
                     .outcome = "ok",
                     .error = ""});
      ++ran;
    });
  }
  CHECK(ran.load() == 0);
  release.open();
  worker.stop();
  CHECK(first_done.load());
  CHECK(ran.load() == 50);
  store check(file.path(), store::mode::read_only);
  CHECK(check.health("24kg").last_success.has_value());

  // After stop() nothing runs any more; the destructor's second stop() is harmless.
  std::atomic<bool> late{false};
  worker.post([&](store&) { late = true; });
  CHECK_FALSE(late.load());
}

TEST_CASE("db_worker_test: reader_pool runs jobs on read-only stores") {
  temp_db file;
  temp_log log;
  seed(file.path());
  reader_pool pool(file.path(), 2, 8, log.get());

  std::promise<std::string> usd;
  std::promise<bool> write_refused;
  REQUIRE(pool.try_post([&](store& db) {
    std::string text;
    for (const auto& p : db.latest("24kg"))
      if (p.currency == "USD") text = p.rate.text();
    usd.set_value(text);
  }));
  REQUIRE(pool.try_post([&](store& db) {
    try {
      db.log_scrape({.source = "24kg",
                     .started_at = somrated::now(),
                     .duration = 1ms,
                     .http_status = 200,
                     .outcome = "ok",
                     .error = ""});
      write_refused.set_value(false);
    } catch (const somrated::store_error&) {
      write_refused.set_value(true);
    }
  }));
  auto usd_text = usd.get_future();
  auto refused = write_refused.get_future();
  REQUIRE(usd_text.wait_for(patience) == std::future_status::ready);
  REQUIRE(refused.wait_for(patience) == std::future_status::ready);
  CHECK(usd_text.get() == "87.45");
  CHECK(refused.get());
  pool.stop();
}

TEST_CASE("db_worker_test: reader_pool refuses work beyond max_queued waiting jobs") {
  temp_db file;
  temp_log log;
  seed(file.path());
  // One reader, so jobs wait behind a blocked one; at most two may wait.
  reader_pool pool(file.path(), 1, 2, log.get());
  gate release;
  std::atomic<bool> blocker_started{false};
  std::atomic<int> ran{0};
  auto counted = [&](store&) { ++ran; };

  REQUIRE(pool.try_post([&](store&) {
    blocker_started = true;
    CHECK(release.wait());
    ++ran;
  }));
  // A running job no longer counts as waiting.
  REQUIRE(wait_until([&] { return blocker_started.load(); }));
  CHECK(pool.queued() == 0);
  CHECK(pool.try_post(counted));
  CHECK(pool.try_post(counted));
  CHECK(pool.queued() == 2);
  // The third waiting job is refused, and dropped.
  CHECK_FALSE(pool.try_post(counted));
  CHECK_FALSE(pool.try_post(counted));
  CHECK(pool.queued() == 2);

  release.open();
  REQUIRE(wait_until([&] { return ran.load() == 3 && pool.queued() == 0; }));
  // Room again.
  CHECK(pool.try_post(counted));
  REQUIRE(wait_until([&] { return ran.load() == 4; }));
  pool.stop();
  CHECK(ran.load() == 4);
}

TEST_CASE("db_worker_test: reader_pool stop() drops jobs that have not started") {
  temp_db file;
  temp_log log;
  seed(file.path());
  reader_pool pool(file.path(), 1, 1u << 20, log.get());
  gate release;
  std::atomic<bool> blocker_started{false};
  std::atomic<int> blocker_done{0};
  std::atomic<int> dropped_ran{0};
  auto must_not_run = [&](store&) { ++dropped_ran; };

  REQUIRE(pool.try_post([&](store&) {
    blocker_started = true;
    CHECK(release.wait());
    ++blocker_done;
  }));
  REQUIRE(wait_until([&] { return blocker_started.load(); }));
  for (int i = 0; i < 5; ++i) REQUIRE(pool.try_post(must_not_run));

  // stop() on another thread: it marks the pool stopping, then waits for the blocked
  // job. try_post starts failing once the mark is set (the queue is nowhere near full),
  // and only then is the blocked job released.
  std::thread stopper([&] { pool.stop(); });
  const bool stopping = wait_until([&] { return !pool.try_post(must_not_run); });
  release.open();
  stopper.join();
  REQUIRE(stopping);

  CHECK(blocker_done.load() == 1);
  CHECK(dropped_ran.load() == 0);
  CHECK(pool.queued() == 0);
  CHECK_FALSE(pool.try_post(must_not_run));
  CHECK(dropped_ran.load() == 0);
}
