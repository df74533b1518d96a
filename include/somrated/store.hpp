#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
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

/// A write refused because the database may not grow: it reached the limit set with
/// store::set_max_size ([storage] max_size), or the disk is full. The write was rolled
/// back whole; reads keep working, and writes succeed again once there is room.
class store_full_error : public store_error {
 public:
  using store_error::store_error;
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

/// One change point with its source, as export writes it and import reads it.
struct change_record {
  std::string source;
  std::string currency;
  timestamp since;                                      ///< When the value appeared.
  decimal rate;                                         ///< As published.
  timestamp observed_at;                                ///< Last confirmation; >= since.
  std::optional<std::chrono::sys_days> effective_date;  ///< Source's own date (NBKR).
};

/// Which change points store::export_changes visits; an unset field selects all.
struct change_filter {
  std::optional<std::string> source = std::nullopt;
  std::optional<std::string> currency = std::nullopt;
  std::optional<timestamp> from = std::nullopt;  ///< since >= from.
  std::optional<timestamp> to = std::nullopt;    ///< since <= to.
};

/// What store::merge_changes did with one record.
enum class import_outcome {
  inserted,  ///< A new change point.
  extended,  ///< The same value was stored as starting later; its change point now starts here.
  present,   ///< Already known: the same value is in force at that time.
  conflict,  ///< Another value is stored at exactly that time; nothing was written.
};

/// store::merge_changes' verdict on one record.
struct import_verdict {
  import_outcome outcome = import_outcome::inserted;
  std::string stored_rate;  ///< For a conflict: the value stored at that time.
};

/// The typed database API; the only place in the project that knows SQL.
///
/// One store is one SQLite connection and must be used from one thread at a time
/// (see db_worker). The database runs in WAL mode, so a read-only store on another
/// thread reads while the writer writes. Methods throw store_error when SQLite fails
/// (store_full_error when a write finds the database or the disk full); a failed write
/// rolls back whole.
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

  // ---- day-two operations (store_ops.cpp) ----

  /// Calls visit for every change point f selects, ordered by source name, currency and
  /// since, from one read snapshot and one row at a time (memory does not grow with the
  /// history). Returns how many were visited.
  std::size_t export_changes(const change_filter& f,
                             const std::function<void(const change_record&)>& visit);

  /// Merges change points into the history in one transaction, in order, and says what
  /// happened to each (the result has one verdict per record).
  ///
  /// Records may be older than stored ones (a backfill) and come in any order. A record
  /// whose value (its text) is the one in force at its time is present: it only moves
  /// that change point's observed_at forward to its own, when later. A record at the
  /// exact time of a stored change point with another value is a conflict and writes
  /// nothing. Otherwise it is inserted, unless the next stored change point has the same
  /// value: then that one is extended back to start here (the value was in force
  /// earlier than known), so the history never holds two consecutive equal values.
  /// Importing the same records again changes nothing.
  std::vector<import_verdict> merge_changes(std::span<const change_record> records);

  /// Deletes at most max_rows scrape-log rows that started before cutoff, in one
  /// transaction, and returns how many it deleted (fewer than max_rows: nothing more
  /// is due). Rows health() reads are kept whatever their age: each source's newest
  /// success, its newest failure, and the failures after its newest success (the
  /// current streak). Change points are never touched.
  std::size_t prune_scrape_log(timestamp cutoff, std::size_t max_rows);

  /// Limits how large writes through this store may make the database ([storage]
  /// max_size): max_bytes rounded down to whole pages, never below the size it has
  /// now; 0 lifts the limit. A write that would need more throws store_full_error and
  /// leaves nothing of itself behind. Applies to this connection only.
  void set_max_size(std::uint64_t max_bytes);

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

/// How backup_database copies.
struct backup_options {
  bool overwrite = false;    ///< Replace an existing destination.
  int pages_per_step = 256;  ///< Pages copied per sqlite3_backup_step call.
  /// How long SQLITE_BUSY or SQLITE_LOCKED is retried, in total, before giving up.
  std::chrono::milliseconds busy_limit{std::chrono::seconds(10)};
  /// Called after each step that copied pages, with the pages left and the total.
  std::function<void(std::int64_t remaining, std::int64_t total)> progress = nullptr;
};

/// What backup_database wrote.
struct backup_result {
  std::int64_t pages = 0;  ///< Database pages copied.
  std::int64_t bytes = 0;  ///< Size of the copy.
  int steps = 0;           ///< sqlite3_backup_step calls that copied pages.
};

/// Copies the database at source to dest with SQLite's online backup API, while other
/// connections (the daemon) keep reading and writing it. Throws store_error.
///
/// The copy is one consistent snapshot: the source is read inside one read transaction,
/// which in WAL mode (somrated's) never blocks a writer, and which also keeps a write
/// between two steps from restarting the copy from the first page. It is written to a
/// temporary file next to dest, switched to a rollback journal (one self-contained
/// file), checked with PRAGMA integrity_check and synced, then renamed to dest, so dest
/// is never a partial copy. An existing dest is refused unless o.overwrite, and dest
/// is never the source itself.
backup_result backup_database(const std::string& source, const std::string& dest,
                              const backup_options& o = {});

/// What vacuum_database did.
struct vacuum_result {
  std::int64_t bytes_before = 0;  ///< Database file plus WAL before.
  std::int64_t bytes_after = 0;   ///< Database file plus WAL after.
  bool wal_truncated = false;     ///< The checkpoint emptied the WAL.
};

/// Rebuilds the database at path (VACUUM), then checkpoints and truncates its WAL.
/// Waits up to lock_wait for another connection's write lock; throws store_error saying
/// so, with nothing changed, when it is held longer (or the file is missing).
vacuum_result vacuum_database(const std::string& path, std::chrono::milliseconds lock_wait);

}  // namespace somrated
