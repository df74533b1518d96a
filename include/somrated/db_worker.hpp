#pragma once

#include <atomic>
#include <cstdint>
#include <exception>
#include <memory>
#include <string>
#include <utility>

#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>

#include "somrated/log.hpp"
#include "somrated/store.hpp"

namespace somrated {

/// An active object that owns one store on one thread.
///
/// SQLite work never runs on the network thread: callers post a job, the job runs on
/// this worker's own thread with the store, and the job posts its result back where it
/// is needed (the session's or scheduler's executor). One connection, one thread, so
/// the connection is never touched concurrently (STYLE.md, pattern 8). A job that
/// throws is logged and does not take the thread (or the process) down.
class db_worker {
 public:
  /// Opens the store at path on the calling thread (so startup errors throw here).
  db_worker(const std::string& path, store::mode m, logger& log)
      : store_(std::make_unique<store>(path, m)), log_(log) {}

  ~db_worker() { stop(); }
  db_worker(const db_worker&) = delete;
  db_worker& operator=(const db_worker&) = delete;

  /// Runs job(store&) on the worker thread, after every job posted before it. Jobs
  /// posted while stop() drains still run; jobs posted after it returns never do.
  template <class Job>
  void post(Job&& job) {
    boost::asio::post(pool_, [this, job = std::forward<Job>(job)]() mutable {
      // Counted before and after every job, whether or not it wrote: the count is odd
      // while a job (and whatever it commits) is under way, and a cache of what the store
      // held stays valid only while the count stands still at an even number.
      jobs_count_.fetch_add(1, std::memory_order_acq_rel);
      try {
        job(*store_);
      } catch (const std::exception& e) {
        log_.log(log_level::error, "database job failed: {}", e.what());
      } catch (...) {
        log_.log(log_level::error, "database job failed with an unknown exception");
      }
      jobs_count_.fetch_add(1, std::memory_order_release);
    });
  }

  /// Twice the jobs started, less one while a job runs: odd while one is under way.
  const std::atomic<std::uint64_t>& jobs_count() const { return jobs_count_; }

  /// Finishes the queued jobs, then stops the thread and closes the store. Call it from
  /// one thread, never from a job.
  void stop() {
    pool_.join();
    store_.reset();
  }

 private:
  std::unique_ptr<store> store_;              ///< Touched only by the pool's thread (and stop()).
  logger& log_;                               ///< Where failed jobs are reported.
  std::atomic<std::uint64_t> jobs_count_{0};  ///< Counted before and after each job.
  boost::asio::thread_pool pool_{1};          ///< The one thread; declared last so it stops first.
};

}  // namespace somrated
