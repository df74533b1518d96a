#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>

#include "somrated/alert.hpp"
#include "somrated/config.hpp"
#include "somrated/http_client.hpp"

namespace somrated {

class alert_engine;
class db_worker;
class logger;
class metrics;

/// The delay before retry number `attempts` (1 = after the first failure) of a
/// delivery: 5 s doubling up to 10 min, scaled by jitter in [0.8, 1.2]; a receiver's
/// Retry-After is honoured when longer, up to the same cap.
std::chrono::milliseconds delivery_backoff(int attempts, double jitter,
                                           std::optional<std::chrono::milliseconds> retry_after);

/// Delivers the outbox: sends each notifier's oldest pending delivery, records every
/// attempt, and retries with backoff until delivered, refused for good, or given up.
///
/// Lives on the network thread; every database step goes through the writer db_worker,
/// and exec notifiers run on a thread of their own, so neither scraping nor the HTTP
/// API ever waits for a receiver. One request per notifier is in flight at a time,
/// which keeps each notifier's messages in order (a resolved never overtakes its
/// firing). A delivery is marked delivered only after the receiver said so, so a crash
/// in between sends it again with the same event id, which receivers can drop.
class dispatcher {
 public:
  /// Sends through cfg's notifiers; engine provides Alertmanager re-posts; stats (may
  /// be null) counts each attempt's outcome.
  dispatcher(boost::asio::io_context& ioc, std::shared_ptr<const config> cfg, db_worker& writer,
             alert_engine& engine, logger& log, metrics* stats = nullptr);
  ~dispatcher();
  dispatcher(const dispatcher&) = delete;
  dispatcher& operator=(const dispatcher&) = delete;

  /// Looks for due deliveries now and starts the Alertmanager re-post timer.
  void start();

  /// Looks for due deliveries soon; safe to call from any thread.
  void kick();

  /// Cancels timers; a send in flight is abandoned and stays pending in the outbox. (An
  /// exec command already running is waited for, up to its timeout, on destruction.)
  void stop();

  /// Uses cfg's notifiers from the next send on (a configuration reload), on the
  /// io_context's thread. Sends in flight finish with the notifier they started with; a
  /// pending delivery whose notifier is gone fails when it comes due.
  void set_config(std::shared_ptr<const config> cfg);

 private:
  /// Asks the writer for due deliveries (one poll at a time).
  void poll();
  /// Starts what is due and arms the timer for next, the earliest head that was not yet
  /// due when polled (none when the earliest was due: its finish() polls again).
  void on_due(std::vector<std::pair<delivery, alert_event>> due, std::optional<timestamp> next);
  /// Sends one delivery through its notifier.
  void send(const delivery& d, const alert_event& e);
  /// Records the attempt, decides retry or give-up, and polls again.
  void finish(const delivery& d, const alert_event& e, delivery_attempt a, delivery_verdict v);
  /// Re-posts firing alerts to Alertmanager notifiers, then re-arms.
  void resend_firing();
  /// Arms the re-post timer for the shortest Alertmanager resend period (none: disarmed).
  void arm_resend();
  /// The notifier named name, or null.
  const notifier_config* find_notifier(const std::string& name) const;

  boost::asio::io_context& ioc_;
  std::shared_ptr<const config> cfg_;  ///< Notifiers.
  db_worker& writer_;                  ///< The outbox lives in its store.
  alert_engine& engine_;               ///< Used only inside writer jobs.
  logger& log_;
  metrics* stats_;  ///< Delivery counters; may be null.
  http_client client_;
  boost::asio::steady_timer retry_timer_;                   ///< The next due retry.
  boost::asio::steady_timer resend_timer_;                  ///< Alertmanager re-posts.
  std::optional<std::chrono::milliseconds> resend_period_;  ///< What resend_timer_ was armed for.
  std::set<std::string> in_flight_;                         ///< Notifiers with a send in progress.
  bool polling_ = false;                                    ///< A poll is on the writer.
  bool repoll_ = false;                                     ///< Poll again when it returns.
  bool stopped_ = false;
  /// Attempts in a row whose outcome the store refused to record (a full database):
  /// the pause before a notifier sends again doubles with each.
  int unrecorded_ = 0;
  std::mt19937 rng_;
  boost::asio::thread_pool exec_pool_{1};  ///< Runs exec notifiers; declared last, joined first.
};

}  // namespace somrated
