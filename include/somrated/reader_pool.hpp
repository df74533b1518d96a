#pragma once

#include <atomic>
#include <cstddef>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "somrated/db_worker.hpp"

namespace somrated {

/// Read-only stores on their own threads for the HTTP API, with a bound on waiting work.
///
/// Requests are handed out round robin. When max_queued jobs are already waiting, a new
/// one is refused (the caller answers 503) instead of growing a queue that a burst of
/// slow queries could make minutes long; on stop, jobs that have not started are
/// dropped, so shutdown does not wait for queries nobody will read.
class reader_pool {
 public:
  /// Opens `threads` read-only stores on path. Throws store_error.
  reader_pool(const std::string& path, std::size_t threads, std::size_t max_queued, logger& log)
      : max_queued_(max_queued) {
    if (threads == 0) throw std::invalid_argument("reader_pool needs at least one thread");
    for (std::size_t i = 0; i < threads; ++i)
      workers_.push_back(std::make_unique<db_worker>(path, store::mode::read_only, log));
  }

  /// Runs job(store&) on a reader; false (and job dropped) when full or stopping.
  template <class Job>
  bool try_post(Job&& job) {
    if (stopping_.load()) return false;
    if (queued_.fetch_add(1) >= max_queued_) {
      queued_.fetch_sub(1);
      return false;
    }
    workers_[next_.fetch_add(1) % workers_.size()]->post(
        [this, job = std::forward<Job>(job)](store& db) mutable {
          queued_.fetch_sub(1);
          if (!stopping_.load()) job(db);
        });
    return true;
  }

  /// Jobs posted and not yet started.
  std::size_t queued() const noexcept { return queued_.load(); }

  /// Drops the jobs that have not started, waits for running ones, closes the stores.
  void stop() {
    stopping_.store(true);
    for (auto& w : workers_) w->stop();
  }

 private:
  const std::size_t max_queued_;                     ///< Bound on queued_.
  std::atomic<std::size_t> queued_{0};               ///< Posted and not yet started.
  std::atomic<std::size_t> next_{0};                 ///< Round-robin cursor.
  std::atomic<bool> stopping_{false};                ///< Set by stop().
  std::vector<std::unique_ptr<db_worker>> workers_;  ///< One thread and store each.
};

}  // namespace somrated
