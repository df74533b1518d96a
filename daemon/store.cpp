#include "somrated/store.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <iterator>
#include <limits>
#include <utility>

#include <fmt/core.h>

#include "somrated/config.hpp"
#include "somrated/migrations.hpp"
#include "somrated/sqlite.hpp"
#include "store_impl.hpp"

namespace somrated {

namespace {

using sqlite::statement;
using store_detail::change_row;
using store_detail::from_ms;
using store_detail::hold_row;
using store_detail::stored_decimal;
using store_detail::to_ms;

/// How long a statement waits for another connection's lock.
constexpr std::chrono::milliseconds busy_timeout{5000};

/// The schema version this binary brings: the last embedded migration's.
constexpr int known_version =
    std::size(migrations::all) == 0 ? 0 : std::end(migrations::all)[-1].version;

/// A date as stored: "2025-06-10".
std::string date_text(std::chrono::sys_days d) {
  const std::chrono::year_month_day ymd{d};
  return fmt::format("{:04}-{:02}-{:02}", static_cast<int>(ymd.year()),
                     static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()));
}

/// Parses a stored date; nullopt for anything that is not a valid "YYYY-MM-DD".
std::optional<std::chrono::sys_days> parse_date_text(std::string_view s) {
  if (s.size() != 10 || s[4] != '-' || s[7] != '-') return std::nullopt;
  int y = 0;
  unsigned m = 0, d = 0;
  const auto field = [&](std::size_t pos, std::size_t len, auto& out) {
    const auto* first = s.data() + pos;
    const auto r = std::from_chars(first, first + len, out);
    return r.ec == std::errc{} && r.ptr == first + len;
  };
  if (!field(0, 4, y) || !field(5, 2, m) || !field(8, 2, d)) return std::nullopt;
  const std::chrono::year_month_day ymd{std::chrono::year{y}, std::chrono::month{m},
                                        std::chrono::day{d}};
  if (!ymd.ok()) return std::nullopt;
  return std::chrono::sys_days{ymd};
}

/// Reads PRAGMA user_version.
int read_user_version(sqlite::connection& db) {
  statement st(db, "PRAGMA user_version");
  return st.step() ? static_cast<int>(st.column_int64(0)) : 0;
}

/// Runs a PRAGMA that answers with one number and returns it (0 without an answer).
std::int64_t pragma_int(sqlite::connection& db, std::string_view sql) {
  statement st(db, sql);
  return st.step() ? st.column_int64(0) : 0;
}

/// Sets a PRAGMA that answers with a row (journal_mode) and returns that answer.
std::string pragma_answer(sqlite::connection& db, std::string_view sql) {
  statement st(db, sql);
  return st.step() ? st.column_text(0) : std::string();
}

/// Refuses a database written by a newer somrated.
void check_not_newer(int version) {
  if (version > known_version) {
    throw store_error(
        fmt::format("database schema version {} is newer than this somrated (knows {})", version,
                    known_version));
  }
}

/// Applies every migration newer than the database, each in its own transaction.
void migrate(sqlite::connection& db) {
  for (const auto& m : migrations::all) {
    if (m.version <= read_user_version(db)) continue;
    sqlite::transaction tx(db, sqlite::transaction::kind::immediate);
    // Another process may have migrated between the check above and BEGIN IMMEDIATE.
    if (m.version <= read_user_version(db)) continue;
    try {
      db.exec(m.sql);
      // PRAGMA takes no bound parameters; the version is a constant built into the
      // binary, never input, so formatting it into the statement is safe.
      db.exec(fmt::format("PRAGMA user_version = {}", m.version));
      tx.commit();
    } catch (const sqlite::error& e) {
      throw sqlite::error(fmt::format("migration {}: {}", m.name, e.what()), e.code());
    }
  }
}

/// Opens and prepares the database: pragmas, then migrations (read_write) or the
/// version check (read_only).
///
/// synchronous=FULL because writes are rare (one transaction per scrape) and an
/// acknowledged write must survive power loss; in WAL mode NORMAL could lose the last
/// commits. The page cache stays at SQLite's 2 MB and memory mapping stays off: on the
/// 5-year benchmark store mmap cut history() from about 3 ms to 2 ms but left ~50 MB of
/// the file resident in the daemon, and the target is a daemon that stays small.
sqlite::connection open_database(const std::string& path, store::mode m) {
  sqlite::connection db(path, m == store::mode::read_only
                                  ? sqlite::connection::open_mode::read_only
                                  : sqlite::connection::open_mode::read_write_create);
  db.busy_timeout(busy_timeout);
  db.exec("PRAGMA cache_size = -2000");
  const int version = read_user_version(db);
  check_not_newer(version);
  if (m == store::mode::read_only) {
    if (version != known_version) {
      throw store_error(fmt::format(
          "database '{}' has schema version {}, this somrated needs {}; open it read-write once",
          path, version, known_version));
    }
    return db;
  }
  const auto journal = pragma_answer(db, "PRAGMA journal_mode = WAL");
  if (journal != "wal" && journal != "memory") {
    throw store_error(
        fmt::format("cannot enable WAL on '{}' (journal_mode is '{}')", path, journal));
  }
  db.exec("PRAGMA synchronous = FULL");
  db.exec("PRAGMA foreign_keys = ON");
  migrate(db);
  return db;
}

}  // namespace

store::impl::impl(const std::string& path, mode m) : db(open_database(path, m)) {
  default_max_pages = pragma_int(db, "PRAGMA max_page_count");
}

void store::impl::throw_if_full(const sqlite::error& e, std::string_view what) {
  if ((e.code() & 0xff) != SQLITE_FULL) return;
  if (max_size == 0) {
    throw store_full_error(
        fmt::format("{} not stored: database or disk is full (no space left on the disk holding "
                    "the database)",
                    what));
  }
  // How much the database holds, for the message; a failure to say does not hide the
  // error being reported.
  std::string holds;
  try {
    sqlite::reset_guard g1(page_count);
    sqlite::reset_guard g2(page_size);
    if (page_count.step() && page_size.step()) {
      holds = fmt::format(" and holds {}",
                          format_max_size(static_cast<std::uint64_t>(page_count.column_int64(0) *
                                                                     page_size.column_int64(0))));
    }
  } catch (const sqlite::error&) {
  }
  throw store_full_error(
      fmt::format("{} not stored: database or disk is full (the database may not grow beyond "
                  "[storage] max_size = {}{}; or the disk is full)",
                  what, format_max_size(max_size), holds));
}

std::optional<std::int64_t> store::impl::find_source(std::string_view name) {
  sqlite::reset_guard g(source_by_name);
  source_by_name.bind(1, name);
  if (!source_by_name.step()) return std::nullopt;
  return source_by_name.column_int64(0);
}

std::int64_t store::impl::source_for_write(std::string_view name) {
  if (auto id = find_source(name)) return *id;
  sqlite::reset_guard g(insert_source);
  insert_source.bind(1, name);
  insert_source.run();
  return db.last_insert_rowid();
}

std::optional<change_row> store::impl::newest(std::int64_t source_id, std::string_view currency) {
  sqlite::reset_guard g(newest_change);
  newest_change.bind(1, source_id);
  newest_change.bind(2, currency);
  if (!newest_change.step()) return std::nullopt;
  return change_row{newest_change.column_int64(0), newest_change.column_text(1)};
}

std::optional<change_row> store::impl::value_at(std::int64_t source_id, std::string_view currency,
                                                std::int64_t ms) {
  sqlite::reset_guard g(change_at);
  change_at.bind(1, source_id);
  change_at.bind(2, currency);
  change_at.bind(3, ms);
  if (!change_at.step()) return std::nullopt;
  return change_row{change_at.column_int64(0), change_at.column_text(1),
                    change_at.column_double(2)};
}

std::optional<change_row> store::impl::first_change_in(std::int64_t source_id,
                                                       std::string_view currency,
                                                       std::int64_t first, std::int64_t last) {
  sqlite::reset_guard g(changes_between);
  changes_between.bind(1, source_id);
  changes_between.bind(2, currency);
  changes_between.bind(3, first - 1);
  changes_between.bind(4, last);
  changes_between.bind(5, 1);
  if (!changes_between.step()) return std::nullopt;
  return change_row{changes_between.column_int64(0), changes_between.column_text(1),
                    changes_between.column_double(2)};
}

void store::impl::widen(std::int64_t source_id, std::string_view currency, std::int64_t first,
                        std::int64_t last, change_row& high, change_row& low) {
  sqlite::reset_guard g(range_values);
  range_values.bind(1, source_id);
  range_values.bind(2, currency);
  range_values.bind(3, first);
  range_values.bind(4, last);
  while (range_values.step()) {
    const double v = range_values.column_double(0);
    if (v > high.rate_num) high = change_row{0, range_values.column_text(1), v};
    if (v < low.rate_num) low = change_row{0, range_values.column_text(1), v};
  }
}

std::optional<std::int64_t> store::impl::first_since(std::int64_t source_id,
                                                     std::string_view currency) {
  sqlite::reset_guard g(oldest_change);
  oldest_change.bind(1, source_id);
  oldest_change.bind(2, currency);
  if (!oldest_change.step()) return std::nullopt;
  return oldest_change.column_int64(0);
}

std::optional<hold_row> store::impl::find_hold(std::int64_t source_id, std::string_view currency) {
  sqlite::reset_guard g(hold_by_currency);
  hold_by_currency.bind(1, source_id);
  hold_by_currency.bind(2, currency);
  if (!hold_by_currency.step()) return std::nullopt;
  hold_row h{hold_by_currency.column_text(0), hold_by_currency.column_int64(1), std::nullopt};
  if (!hold_by_currency.column_is_null(2)) h.effective_date = hold_by_currency.column_text(2);
  return h;
}

void store::impl::drop_hold(std::int64_t source_id, std::string_view currency) {
  sqlite::reset_guard g(delete_hold);
  delete_hold.bind(1, source_id);
  delete_hold.bind(2, currency);
  delete_hold.run();
}

void store::impl::insert_change(std::int64_t source_id, std::string_view currency,
                                std::int64_t since, const decimal& rate, std::int64_t observed_at,
                                const std::optional<std::string>& effective_date) {
  sqlite::reset_guard g(insert_change_stmt);
  insert_change_stmt.bind(1, source_id);
  insert_change_stmt.bind(2, currency);
  insert_change_stmt.bind(3, since);
  insert_change_stmt.bind_ref(4, rate.text());
  insert_change_stmt.bind(5, rate.to_double());
  insert_change_stmt.bind(6, observed_at);
  if (effective_date) {
    insert_change_stmt.bind_ref(7, *effective_date);
  } else {
    insert_change_stmt.bind_null(7);
  }
  insert_change_stmt.run();
}

/// Decides one quote.
///
/// Time going backwards (a clock step, or two scrapes racing) never rewrites history:
/// a confirmation older than observed_at leaves observed_at and the effective date as
/// they are, and a different value at or before the since of the value in force is
/// reported as a confirmation of that value and writes nothing (a pending hold stays).
/// So change points stay ascending and none is ever replaced.
record_result store::impl::record_one(std::int64_t source_id, const rate_quote& q, std::int64_t at,
                                      const std::optional<std::string>& effective_date,
                                      double max_jump) {
  const auto& currency = q.currency;
  const auto current = newest(source_id, currency);
  if (!current) {
    insert_change(source_id, currency, at, q.rate, at, effective_date);
    drop_hold(source_id, currency);
    return {currency, record_outcome::first, std::nullopt};
  }
  decimal previous = stored_decimal(current->rate);
  if (q.rate.text() == current->rate) {
    sqlite::reset_guard g(confirm_change);
    confirm_change.bind(1, source_id);
    confirm_change.bind(2, currency);
    confirm_change.bind(3, current->since);
    confirm_change.bind(4, at);
    if (effective_date) {
      confirm_change.bind_ref(5, *effective_date);
    } else {
      confirm_change.bind_null(5);
    }
    confirm_change.run();
    drop_hold(source_id, currency);
    return {currency, record_outcome::confirmed, std::move(previous)};
  }
  if (at <= current->since) return {currency, record_outcome::confirmed, std::move(previous)};
  // The ratio only decides plausibility; the stored values stay exact.
  const double before = previous.to_double();
  const double after = q.rate.to_double();
  const double jump = before == 0.0 ? (after == 0.0 ? 0.0 : std::numeric_limits<double>::infinity())
                                    : std::fabs(after - before) / before;
  if (max_jump > 0 && jump > max_jump) {
    auto hold = find_hold(source_id, currency);
    if (hold && hold->rate == q.rate.text()) {
      // Every new change point drops the hold, so first_seen is after the value in force;
      // should that ever not hold, the release dates from now and history stays ascending.
      const std::int64_t since = hold->first_seen > current->since ? hold->first_seen : at;
      insert_change(source_id, currency, since, q.rate, std::max(at, since),
                    effective_date ? effective_date : hold->effective_date);
      drop_hold(source_id, currency);
      return {currency, record_outcome::released, std::move(previous)};
    }
    sqlite::reset_guard g(upsert_hold);
    upsert_hold.bind(1, source_id);
    upsert_hold.bind(2, currency);
    upsert_hold.bind_ref(3, q.rate.text());
    upsert_hold.bind(4, at);
    if (effective_date) {
      upsert_hold.bind_ref(5, *effective_date);
    } else {
      upsert_hold.bind_null(5);
    }
    upsert_hold.run();
    return {currency, record_outcome::held, std::move(previous)};
  }
  insert_change(source_id, currency, at, q.rate, at, effective_date);
  drop_hold(source_id, currency);
  return {currency, record_outcome::changed, std::move(previous)};
}

std::vector<std::string> store::impl::currency_list(std::int64_t source_id) {
  // SQLite has no skip scan without ANALYZE statistics, so walk the distinct
  // currencies by hand: one seek per currency instead of reading every change point.
  std::vector<std::string> out;
  {
    sqlite::reset_guard g(first_currency);
    first_currency.bind(1, source_id);
    if (!first_currency.step()) return out;
    out.push_back(first_currency.column_text(0));
  }
  for (;;) {
    sqlite::reset_guard g(next_currency);
    next_currency.bind(1, source_id);
    next_currency.bind(2, out.back());
    if (!next_currency.step()) return out;
    out.push_back(next_currency.column_text(0));
  }
}

namespace {

/// max_points + 1 as an SQL LIMIT, so one extra row tells that the cap cut the answer.
std::int64_t limit_with_probe(std::size_t remaining) {
  constexpr auto max = static_cast<std::size_t>(std::numeric_limits<std::int64_t>::max() - 1);
  return static_cast<std::int64_t>(std::min(remaining, max)) + 1;
}

/// The buckets of a stepped history: [from + k*step, from + (k+1)*step), the last one
/// closed at to. Buckets wholly before first_known are skipped arithmetically, so a
/// query reaching far before the data costs nothing per empty bucket.
class buckets {
 public:
  /// Buckets of width step over [from, to], starting with the one holding first_known.
  buckets(std::int64_t from, std::int64_t to, std::int64_t step, std::int64_t first_known)
      : from_(from), to_(to), step_(step) {
    k_ = first_known > from ? (first_known - from) / step : 0;
  }

  /// True while the current bucket starts before to (the first one also when from == to).
  bool valid() const noexcept {
    return (start() < to_ || k_ == 0) && start() <= to_ && start() >= from_;
  }
  /// Start of the current bucket.
  std::int64_t start() const noexcept { return from_ + k_ * step_; }
  /// Last millisecond of the current bucket (to, inclusive, for the last one).
  std::int64_t end() const noexcept { return to_ - start() <= step_ ? to_ : start() + step_ - 1; }
  /// Moves to the next bucket.
  void next() noexcept { ++k_; }

 private:
  std::int64_t from_, to_, step_;
  std::int64_t k_ = 0;
};

}  // namespace

void store::impl::raw_history(std::int64_t source_id, const history_query& q, history_result& r) {
  const auto from = to_ms(q.from);
  const auto to = to_ms(q.to);
  if (auto in_force = value_at(source_id, q.currency, from)) {
    if (q.max_points == 0) {
      r.truncated = true;
      return;
    }
    r.points.push_back({q.from, stored_decimal(in_force->rate)});
  }
  sqlite::reset_guard g(changes_between);
  changes_between.bind(1, source_id);
  changes_between.bind(2, q.currency);
  changes_between.bind(3, from);
  changes_between.bind(4, to);
  changes_between.bind(5, limit_with_probe(q.max_points - r.points.size()));
  while (changes_between.step()) {
    if (r.points.size() >= q.max_points) {
      r.truncated = true;
      return;
    }
    r.points.push_back(
        {from_ms(changes_between.column_int64(0)), stored_decimal(changes_between.column_text(1))});
  }
}

void store::impl::sampled_history(std::int64_t source_id, const history_query& q,
                                  history_result& r) {
  const auto first = first_since(source_id, q.currency);
  const auto to = to_ms(q.to);
  if (!first || *first > to) return;
  for (buckets b(to_ms(q.from), to, q.step->count(), *first); b.valid(); b.next()) {
    auto v = value_at(source_id, q.currency, b.end());
    if (!v) continue;
    if (r.points.size() >= q.max_points) {
      r.truncated = true;
      return;
    }
    r.points.push_back({from_ms(b.start()), stored_decimal(v->rate)});
  }
}

void store::impl::ohlc_history(std::int64_t source_id, const history_query& q, history_result& r) {
  const auto first = first_since(source_id, q.currency);
  const auto to = to_ms(q.to);
  if (!first || *first > to) return;
  for (buckets b(to_ms(q.from), to, q.step->count(), *first); b.valid(); b.next()) {
    auto open = value_at(source_id, q.currency, b.start());
    if (!open) open = first_change_in(source_id, q.currency, b.start(), b.end());
    if (!open) continue;
    if (r.ohlc.size() >= q.max_points) {
      r.truncated = true;
      return;
    }
    change_row high = *open, low = *open;
    widen(source_id, q.currency, b.start(), b.end(), high, low);
    // open exists, so a value is in force at the bucket's end.
    const auto close = value_at(source_id, q.currency, b.end());
    r.ohlc.push_back({from_ms(b.start()), stored_decimal(open->rate), stored_decimal(high.rate),
                      stored_decimal(low.rate), stored_decimal(close ? close->rate : open->rate)});
  }
}

store::store(const std::string& path, mode m) : impl_(std::make_unique<impl>(path, m)) {}

store::~store() = default;

std::vector<record_result> store::record(std::string_view source, timestamp at,
                                         std::span<const rate_quote> quotes,
                                         std::optional<std::chrono::sys_days> effective_date,
                                         double max_jump) try {
  auto& s = *impl_;
  sqlite::transaction tx(s.db);
  const auto source_id = s.source_for_write(source);
  std::optional<std::string> date;
  if (effective_date) date = date_text(*effective_date);
  std::vector<record_result> out;
  out.reserve(quotes.size());
  for (const auto& q : quotes) out.push_back(s.record_one(source_id, q, to_ms(at), date, max_jump));
  tx.commit();
  return out;
} catch (const sqlite::error& e) {
  impl_->throw_if_full(e, fmt::format("rates of {}", source));
  throw;
}

void store::import_changes(std::string_view source, std::string_view currency,
                           std::span<const history_point> points) try {
  auto& s = *impl_;
  sqlite::transaction tx(s.db);
  const auto source_id = s.source_for_write(source);
  std::int64_t last = std::numeric_limits<std::int64_t>::min();
  if (auto newest = s.newest(source_id, currency)) last = newest->since;
  for (const auto& p : points) {
    const auto t = to_ms(p.time);
    if (t <= last) {
      throw store_error(
          fmt::format("import_changes {}/{}: point at {} ms is not after the previous one ({} ms)",
                      source, currency, t, last));
    }
    s.insert_change(source_id, currency, t, p.rate, t, std::nullopt);
    last = t;
  }
  // A hold was judged against a value these points supersede.
  s.drop_hold(source_id, currency);
  tx.commit();
} catch (const sqlite::error& e) {
  impl_->throw_if_full(e,
                       fmt::format("{} change points of {}/{}", points.size(), source, currency));
  throw;
}

void store::log_scrape(const scrape_record& r) try {
  auto& s = *impl_;
  sqlite::transaction tx(s.db);
  const auto source_id = s.source_for_write(r.source);
  {
    auto& st = s.insert_scrape;
    sqlite::reset_guard g(st);
    st.bind(1, source_id);
    st.bind(2, to_ms(r.started_at));
    st.bind(3, static_cast<std::int64_t>(r.duration.count()));
    st.bind(4, r.http_status);
    st.bind(5, std::string_view(r.outcome));
    st.bind(6, std::string_view(r.error));
    st.run();
  }
  tx.commit();
} catch (const sqlite::error& e) {
  impl_->throw_if_full(e, fmt::format("scrape log row of {}", r.source));
  throw;
}

std::vector<rate_point> store::latest(std::string_view source) {
  auto& s = *impl_;
  // One read transaction, so every currency comes from the same snapshot.
  sqlite::transaction tx(s.db, sqlite::transaction::kind::deferred);
  std::vector<rate_point> out;
  const auto source_id = s.find_source(source);
  if (!source_id) return out;
  for (auto& currency : s.currency_list(*source_id)) {
    auto& st = s.newest_change;
    sqlite::reset_guard g(st);
    st.bind(1, *source_id);
    st.bind(2, std::string_view(currency));
    if (!st.step()) continue;
    rate_point p{std::move(currency), stored_decimal(st.column_text(1)),
                 from_ms(st.column_int64(0)), from_ms(st.column_int64(2)), std::nullopt};
    if (!st.column_is_null(3)) p.effective_date = parse_date_text(st.column_text(3));
    out.push_back(std::move(p));
  }
  tx.commit();
  return out;
}

std::vector<rate_point> store::held(std::string_view source) {
  auto& s = *impl_;
  sqlite::transaction tx(s.db, sqlite::transaction::kind::deferred);
  std::vector<rate_point> out;
  const auto source_id = s.find_source(source);
  if (!source_id) return out;
  auto& st = s.holds_of_source;
  sqlite::reset_guard g(st);
  st.bind(1, *source_id);
  while (st.step()) {
    const auto first_seen = from_ms(st.column_int64(2));
    rate_point p{st.column_text(0), stored_decimal(st.column_text(1)), first_seen, first_seen,
                 std::nullopt};
    if (!st.column_is_null(3)) p.effective_date = parse_date_text(st.column_text(3));
    out.push_back(std::move(p));
  }
  tx.commit();
  return out;
}

history_result store::history(const history_query& q) {
  auto& s = *impl_;
  history_result r;
  // Nothing to answer for an empty range or a non-positive step; the API layer rejects
  // both before they get here. ohlc without step has no buckets and yields raw points.
  if (q.to < q.from || (q.step && q.step->count() <= 0)) return r;
  sqlite::transaction tx(s.db, sqlite::transaction::kind::deferred);
  const auto source_id = s.find_source(q.source);
  if (!source_id) return r;
  if (!q.step) {
    s.raw_history(*source_id, q, r);
  } else if (q.ohlc) {
    s.ohlc_history(*source_id, q, r);
  } else {
    s.sampled_history(*source_id, q, r);
  }
  tx.commit();
  return r;
}

source_health store::health(std::string_view source) {
  auto& s = *impl_;
  sqlite::transaction tx(s.db, sqlite::transaction::kind::deferred);
  source_health h;
  const auto source_id = s.find_source(source);
  if (!source_id) return h;
  {
    sqlite::reset_guard g(s.last_success);
    s.last_success.bind(1, *source_id);
    if (s.last_success.step() && !s.last_success.column_is_null(0)) {
      h.last_success = from_ms(s.last_success.column_int64(0));
    }
  }
  {
    sqlite::reset_guard g(s.last_failure);
    s.last_failure.bind(1, *source_id);
    if (s.last_failure.step()) {
      h.last_error_at = from_ms(s.last_failure.column_int64(0));
      h.last_error = s.last_failure.column_text(1);
    }
  }
  if (h.last_success && h.last_error_at) {
    h.last_attempt = std::max(*h.last_success, *h.last_error_at);
  } else {
    h.last_attempt = h.last_success ? h.last_success : h.last_error_at;
  }
  if (h.last_error_at) {
    sqlite::reset_guard g(s.failures_after);
    s.failures_after.bind(1, *source_id);
    s.failures_after.bind(
        2, h.last_success ? to_ms(*h.last_success) : std::numeric_limits<std::int64_t>::min());
    if (s.failures_after.step()) {
      h.consecutive_failures = static_cast<int>(std::min<std::int64_t>(
          s.failures_after.column_int64(0), std::numeric_limits<int>::max()));
    }
  }
  tx.commit();
  return h;
}

std::vector<std::string> store::currencies(std::string_view source) {
  auto& s = *impl_;
  sqlite::transaction tx(s.db, sqlite::transaction::kind::deferred);
  const auto source_id = s.find_source(source);
  if (!source_id) return {};
  auto out = s.currency_list(*source_id);
  tx.commit();
  return out;
}

void store::set_max_size(std::uint64_t max_bytes) {
  auto& s = *impl_;
  std::int64_t pages = s.default_max_pages;
  if (max_bytes != 0) {
    std::int64_t page_bytes = 0;
    {
      sqlite::reset_guard g(s.page_size);
      if (s.page_size.step()) page_bytes = s.page_size.column_int64(0);
    }
    if (page_bytes <= 0) throw store_error("set_max_size: cannot read the page size");
    // SQLite keeps the limit at no less than the pages in use, and never above its own.
    pages = std::clamp<std::int64_t>(
        static_cast<std::int64_t>(max_bytes / static_cast<std::uint64_t>(page_bytes)), 1,
        s.default_max_pages);
  }
  // PRAGMA takes no bound parameters; pages is a number computed here, never input text.
  s.db.exec(fmt::format("PRAGMA max_page_count = {}", pages));
  s.max_size = max_bytes;
}

int store::schema_version() {
  auto& st = impl_->user_version;
  sqlite::reset_guard g(st);
  return st.step() ? static_cast<int>(st.column_int64(0)) : 0;
}

bool store::ping() noexcept {
  try {
    auto& st = impl_->select_one;
    sqlite::reset_guard g(st);
    return st.step() && st.column_int64(0) == 1;
  } catch (...) {
    return false;
  }
}

std::string store::integrity_check() {
  auto& st = impl_->integrity;
  sqlite::reset_guard g(st);
  std::string out;
  while (st.step()) {
    if (!out.empty()) out += '\n';
    out += st.column_text(0);
  }
  return out;
}

}  // namespace somrated
