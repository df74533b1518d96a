#pragma once

#include <memory>
#include <string>
#include <utility>

#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>

#include "somrated/store.hpp"

namespace somrated {

/// An active object that owns one store on one thread.
///
/// SQLite work never runs on the network thread: callers post a job, the job runs on
/// this worker's own thread with the store, and the job posts its result back where it
/// is needed (the session's or scheduler's executor). One connection, one thread, so
/// the connection is never touched concurrently (STYLE.md, pattern 8).
class db_worker {
 public:
  /// Opens the store at path on the calling thread (so startup errors throw here).
  db_worker(const std::string& path, store::mode m) : store_(std::make_unique<store>(path, m)) {}

  ~db_worker() { stop(); }
  db_worker(const db_worker&) = delete;
  db_worker& operator=(const db_worker&) = delete;

  /// Runs job(store&) on the worker thread, after every job posted before it.
  template <class Job>
  void post(Job&& job) {
    boost::asio::post(pool_, [this, job = std::forward<Job>(job)]() mutable { job(*store_); });
  }

  /// Finishes the queued jobs, then stops the thread and closes the store.
  void stop() {
    pool_.join();
    store_.reset();
  }

 private:
  std::unique_ptr<store> store_;
  boost::asio::thread_pool pool_{1};
};

}  // namespace somrated
