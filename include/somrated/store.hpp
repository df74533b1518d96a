#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "somrated/alert.hpp"
#include "somrated/decimal.hpp"
#include "somrated/observation.hpp"
#include "somrated/time.hpp"

namespace somrated {

/// A failure of the database: message names the operation and SQLite's error text.
class store_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// The value in force for one (source, currency).
struct rate_point {
  std::string currency;
  decimal rate;
  timestamp since;                                      ///< When this value first appeared.
  timestamp observed_at;                                ///< When a scrape last confirmed it.
  std::optional<std::chrono::sys_days> effective_date;  ///< Source's own date (NBKR).
};

/// What record() did with one quote.
enum class record_outcome {
  first,      ///< No earlier value: stored as the first change point.
  changed,    ///< A new change point.
  confirmed,  ///< Same value as in force: observed_at moved on.
  held,       ///< Jumped more than the plausibility share: held until confirmed.
  released,   ///< An earlier held value was seen again and is now a change point.
};

/// record()'s verdict for one currency.
struct record_result {
  std::string currency;
  record_outcome outcome;
  std::optional<decimal> previous;  ///< The value in force before, if any.
};

/// One scrape attempt, successful or not.
struct scrape_record {
  std::string source;
  timestamp started_at;
  std::chrono::milliseconds duration{0};
  int http_status = 0;  ///< 0 when no HTTP response was read (file://, connect error).
  std::string outcome;  ///< "ok", "not_modified", "held" or "error".
  std::string error;    ///< Why, when outcome is "error" (or what was held).
};

/// A source's scrape health, from the scrape log.
struct source_health {
  std::optional<timestamp> last_attempt;
  std::optional<timestamp> last_success;  ///< Last attempt with outcome ok/not_modified/held.
  std::optional<timestamp> last_error_at;
  std::string last_error;
  int consecutive_failures = 0;  ///< Errors since the last success.
};

/// A history request, already validated by the API layer.
struct history_query {
  std::string source;
  std::string currency;
  timestamp from;
  timestamp to;
  std::optional<std::chrono::milliseconds> step;  ///< Bucket width; none = raw change points.
  bool ohlc = false;                              ///< Open/high/low/close per bucket (needs step).
  std::size_t max_points = 10000;                 ///< Cap on returned points.
};

/// One point of a history: the value in force at time.
struct history_point {
  timestamp time;
  decimal rate;
};

/// One bucket of an OHLC history.
struct ohlc_point {
  timestamp time;  ///< Bucket start.
  decimal open, high, low, close;
};

/// A history answer: points (or ohlc when asked) in ascending time.
struct history_result {
  std::vector<history_point> points;
  std::vector<ohlc_point> ohlc;
  bool truncated = false;  ///< The cap cut the answer short.
};

/// One evaluator pass, written in one transaction by store::apply_alert_update.
struct alert_update {
  std::vector<alert_state> states;   ///< Upserted by rule name.
  std::vector<std::string> removed;  ///< Rules whose state is deleted (rule gone).
  /// Events to append, each with the notifiers to deliver it to (one pending delivery
  /// each, due at once). apply_alert_update assigns alert_event::id.
  std::vector<std::pair<alert_event, std::vector<std::string>>> events;
};

/// An event with its deliveries and each delivery's attempts (oldest first).
struct event_record {
  alert_event event;
  std::vector<std::pair<delivery, std::vector<delivery_attempt>>> deliveries;
};

/// The typed database API; the only place in the project that knows SQL.
///
/// One store is one SQLite connection and must be used from one thread at a time
/// (see db_worker). The database runs in WAL mode, so a read-only store on another
/// thread reads while the writer writes. Methods throw store_error when SQLite fails;
/// a failed write rolls back whole.
class store {
 public:
  /// How to open the database.
  enum class mode { read_write, read_only };

  /// Opens path (":memory:" for tests); read_write creates the file, enables WAL and
  /// applies pending migrations, each in its own transaction. Throws store_error.
  explicit store(const std::string& path, mode m = mode::read_write);
  ~store();
  store(const store&) = delete;
  store& operator=(const store&) = delete;

  /// Records one successful extraction from source at time at, in one transaction:
  /// a change point when a value's text differs from the one in force, a confirmation
  /// otherwise, and a hold when it moved by more than max_jump (a share, 0.25 = 25 %)
  /// from the last accepted value until a later record() sees it again.
  std::vector<record_result> record(std::string_view source, timestamp at,
                                    std::span<const rate_quote> quotes,
                                    std::optional<std::chrono::sys_days> effective_date,
                                    double max_jump);

  /// Bulk-loads change points for one (source, currency) in one transaction, for
  /// backfills and benchmarks. points must be ascending and later than any stored one;
  /// each becomes a change point whose observed_at equals its time.
  void import_changes(std::string_view source, std::string_view currency,
                      std::span<const history_point> points);

  /// Appends to the scrape log.
  void log_scrape(const scrape_record& r);

  /// The values in force for source, one per currency, ordered by currency.
  std::vector<rate_point> latest(std::string_view source);

  /// Values currently held for plausibility for source (not yet accepted).
  std::vector<rate_point> held(std::string_view source);

  /// The history of one (source, currency); see history_query.
  ///
  /// Without step: every change point in [from, to] plus the value in force at from
  /// (reported at from). With step: one point per bucket [from + k*step, ...), the
  /// value in force at the bucket's end (or, with ohlc, open/high/low/close over it),
  /// skipping buckets before the first known value.
  history_result history(const history_query& q);

  /// Scrape health of source.
  source_health health(std::string_view source);

  /// Currencies that have at least one stored value for source.
  std::vector<std::string> currencies(std::string_view source);

  // ---- alerts ----

  /// The value in force for (source, currency) at t (the last change point at or before
  /// t), or nullopt when none was known then.
  std::optional<decimal> value_at(std::string_view source, std::string_view currency, timestamp t);

  /// Rules created through the API: (name, JSON definition), ordered by name.
  std::vector<std::pair<std::string, std::string>> stored_rules();

  /// Inserts or replaces an API rule's definition.
  void save_rule(std::string_view name, std::string_view definition, timestamp at);

  /// Deletes an API rule; true when it existed.
  bool delete_rule(std::string_view name);

  /// Every persisted rule state, ordered by rule name.
  std::vector<alert_state> alert_states();

  /// Writes one evaluator pass in one transaction; sets each event's id.
  void apply_alert_update(alert_update& u);

  /// For each notifier, its oldest pending delivery when that one is due at now (strict
  /// per-notifier order: a later delivery waits while an earlier one is retried), with
  /// its event. Ordered by delivery id.
  std::vector<std::pair<delivery, alert_event>> due_deliveries(timestamp now);

  /// The earliest next_attempt_at among the oldest pending delivery of each notifier.
  std::optional<timestamp> next_delivery_due();

  /// Records one attempt and the delivery's new status: pending (a retry, due at
  /// next_attempt_at), delivered or failed (done_at = a.at). One transaction.
  void record_attempt(std::int64_t delivery_id, const delivery_attempt& a, delivery_status status,
                      timestamp next_attempt_at);

  /// Events in id order with deliveries and attempts: those at or after since (all when
  /// none), of rule when not empty, at most limit (the oldest such).
  std::vector<event_record> alert_events(std::optional<timestamp> since, std::string_view rule,
                                         std::size_t limit);

  /// The newest event of rule, with its deliveries.
  std::optional<event_record> last_event(std::string_view rule);

  /// Deliveries by status over all notifiers (for health and metrics).
  std::vector<std::pair<delivery_status, std::int64_t>> delivery_counts();

  /// The schema version (PRAGMA user_version).
  int schema_version();

  /// True when the database answers a trivial query.
  bool ping() noexcept;

  /// Runs PRAGMA integrity_check: "ok", or SQLite's findings one per line.
  std::string integrity_check();

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace somrated
