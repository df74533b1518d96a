#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "somrated/config.hpp"
#include "somrated/http_client.hpp"
#include "somrated/observation.hpp"
#include "somrated/store.hpp"

namespace somrated {

class db_worker;
class logger;
class metrics;
class source_board;

/// The delay before retry number `failures` (1 = first failure) of a source scraped
/// every `interval`: exponential from min(interval, 30s), capped at max(interval, 5
/// base delays), scaled by jitter in [0.8, 1.2] so many daemons do not retry in step.
std::chrono::milliseconds retry_delay(std::chrono::milliseconds interval, int failures,
                                      double jitter);

/// The delay before retry number `failures` after a 429 or 503 whose Retry-After asked
/// for `asked`: retry_delay(), or what the server asked if that is longer, but never more
/// than the longest backoff (max(interval, 5 base delays)), so a server asking for hours
/// cannot silence a source for longer than an outage would.
std::chrono::milliseconds retry_delay(std::chrono::milliseconds interval, int failures,
                                      double jitter, std::chrono::milliseconds asked);

/// Scrapes every configured source on its own interval.
///
/// Fetches run on the io_context; extraction and storage run on the writer db_worker
/// (off the network thread), and the outcome comes back to the io_context to plan the
/// next scrape. A failure is retried with exponential backoff and jitter (retry_delay),
/// never in a tight loop; a 429 or 503 with Retry-After waits as asked, within bounds.
/// Validators (ETag/Last-Modified) are kept per source, and a 304 confirms the values
/// read last time.
class scheduler {
 public:
  /// Runs on the writer thread after each scrape has been stored (or has failed).
  using after_scrape_fn = std::function<void(store&)>;

  /// Scrapes sources, storing through writer; board and log are shared with the API;
  /// after_scrape (may be empty) runs on the writer thread after every scrape; stats
  /// (may be null) counts each scrape's outcome and duration.
  scheduler(boost::asio::io_context& ioc, std::vector<source_config> sources, db_worker& writer,
            source_board& board, logger& log, after_scrape_fn after_scrape = {},
            metrics* stats = nullptr);
  ~scheduler();
  scheduler(const scheduler&) = delete;
  scheduler& operator=(const scheduler&) = delete;

  /// Schedules the first scrape of every source right away.
  void start();

  /// Cancels timers; results of fetches still in flight are dropped.
  void stop();

  /// Switches to a new list of sources (a configuration reload), on the io_context's
  /// thread: a source whose settings are unchanged keeps its schedule, validators and
  /// failure count; a new or changed one is scraped at once; a removed one stops, and
  /// what its fetch in flight brings back is dropped.
  void reconfigure(std::vector<source_config> sources);

 private:
  struct source_state;
  /// Shared with the callbacks of its fetch and store steps, so a source removed by
  /// reconfigure() stays valid until they have run.
  using state_ptr = std::shared_ptr<source_state>;

  void schedule(const state_ptr& s, std::chrono::milliseconds delay);
  void scrape(const state_ptr& s);
  void on_fetched(const state_ptr& s, fetch_result r, timestamp started,
                  std::chrono::steady_clock::time_point t0);
  void on_stored(const state_ptr& s, bool success, std::vector<rate_quote> quotes,
                 std::optional<std::chrono::milliseconds> retry_after);

  boost::asio::io_context& ioc_;
  db_worker& writer_;
  source_board& board_;
  logger& log_;
  after_scrape_fn after_scrape_;
  metrics* stats_;  ///< Scrape counters; may be null.
  http_client client_;
  std::vector<state_ptr> sources_;
  std::mt19937 rng_;
  bool started_ = false;
  bool stopped_ = false;
};

}  // namespace somrated
