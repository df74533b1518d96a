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
