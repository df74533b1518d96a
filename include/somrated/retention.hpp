#pragma once

#include <chrono>
#include <cstddef>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/steady_timer.hpp>

#include "somrated/db_worker.hpp"
#include "somrated/log.hpp"
#include "somrated/time.hpp"

namespace somrated {

/// Applies `[storage] keep_scrape_log`: deletes scrape-log rows older than keep on the
/// writer thread, a small batch per job (store::prune_scrape_log).
///
/// A pass starts at start() and then every period(keep). Each pass posts one batch job to
/// the writer and the next only after that one has finished and reported back here, so
/// scrapes and API writes queue between batches and no job holds the write lock long,
/// however far behind the log is (a first run on years of rows). Lives on the event
/// loop: start(), stop() and set_keep() are called there (or before the loop runs).
class log_retention {
 public:
  /// Prunes through writer, keeping keep (zero: forever, nothing runs); the timer and
  /// the batches' completions run on ex.
  log_retention(boost::asio::any_io_executor ex, db_worker& writer, std::chrono::milliseconds keep,
                logger& log, std::size_t batch_rows = 1000);

  log_retention(const log_retention&) = delete;
  log_retention& operator=(const log_retention&) = delete;

  /// Runs a pass now, then periodically.
  void start();

  /// Stops: no new batch is posted, the timer is cancelled. A batch already queued on
  /// the writer still runs.
  void stop();

  /// Changes how long rows are kept (a reload) and starts a pass with it: now, or at the
  /// end of the pass in progress.
  void set_keep(std::chrono::milliseconds keep);

  /// Time between passes: a tenth of keep, at least 1 s and at most 1 h.
  static std::chrono::milliseconds period(std::chrono::milliseconds keep);

 private:
  /// Starts a pass unless one is running (or retention is off).
  void pass();
  /// Posts one batch of the pass deleting rows older than cutoff; total so far.
  void post_batch(timestamp cutoff, std::size_t total);
  /// Handles a batch's result on the loop: next batch, or the end of the pass.
  void batch_done(timestamp cutoff, std::size_t total, std::size_t deleted, std::string error);
  /// Arms the timer for the next pass.
  void schedule();

  boost::asio::any_io_executor ex_;  ///< The event loop.
  db_worker& writer_;                ///< Where the deletes run.
  std::chrono::milliseconds keep_;   ///< Zero: keep forever.
  logger& log_;                      ///< Passes that deleted something, and failures.
  std::size_t batch_rows_;           ///< Rows per transaction.
  boost::asio::steady_timer timer_;  ///< Next pass.
  bool running_ = false;             ///< Between start() and stop().
  bool in_pass_ = false;             ///< A batch is on the writer.
  bool again_ = false;               ///< set_keep() during a pass: run another at its end.
};

}  // namespace somrated
