// The alerts section of the store: API rules, rule states, events and the delivery
// outbox (tables from sql/002_alerts.sql).

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/core.h>
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include "somrated/alert.hpp"
#include "somrated/sqlite.hpp"
#include "somrated/store.hpp"
#include "store_impl.hpp"

namespace somrated {

namespace {

using sqlite::statement;
using store_detail::alert_statements;
using store_detail::from_ms;
using store_detail::stored_decimal;
using store_detail::to_ms;

/// The alert_event columns read_event() reads, in its order; the table is aliased e.
constexpr std::string_view event_columns =
    "e.id, e.event_id, e.rule, e.kind, e.at, e.starts_at, e.ends_at, e.condition, e.currency, "
    "e.source, e.against, e.threshold, e.value, e.rate, e.labels";
/// How many columns event_columns names.
constexpr int event_column_count = 15;

/// The alert_delivery columns read_delivery() reads, in its order; the table is aliased d.
constexpr std::string_view delivery_columns =
    "d.id, d.event, d.notifier, d.status, d.attempts, d.created_at, d.next_attempt_at, "
    "d.done_at, d.last_error";
/// How many columns delivery_columns names.
constexpr int delivery_column_count = 9;

/// The alert_attempt columns read_attempt() reads, in its order; the table is aliased a.
/// a.id comes first so a LEFT JOIN's missing attempt shows as NULL there.
constexpr std::string_view attempt_columns =
    "a.id, a.at, a.duration_ms, a.http_status, a.outcome, a.error";

/// The head of each notifier's queue: a recursive CTE walking the distinct notifiers
/// with pending deliveries (one seek each on alert_delivery_pending, however many
/// deliveries wait), then the FROM clause joining each to its lowest-id pending delivery
/// (one more seek), aliased d. SQLite has no loose index scan of its own without
/// ANALYZE statistics, and GROUP BY notifier would read every pending row.
constexpr std::string_view pending_heads_with =
    "WITH RECURSIVE head (notifier) AS ("
    "SELECT min(notifier) FROM alert_delivery WHERE status = 'pending' "
    "UNION ALL "
    "SELECT (SELECT min(notifier) FROM alert_delivery "
    "WHERE status = 'pending' AND notifier > head.notifier) "
    "FROM head WHERE head.notifier IS NOT NULL) ";
/// See pending_heads_with.
constexpr std::string_view pending_heads_from =
    "FROM head JOIN alert_delivery AS d ON d.id = (SELECT min(id) FROM alert_delivery "
    "WHERE status = 'pending' AND notifier = head.notifier) ";

/// The inverse of condition_name.
std::optional<alert_condition> parse_condition(std::string_view s) {
  for (auto c : {alert_condition::above, alert_condition::below, alert_condition::change_pct,
                 alert_condition::spread_pct, alert_condition::stale}) {
    if (condition_name(c) == s) return c;
  }
  return std::nullopt;
}

/// The inverse of phase_name.
std::optional<alert_phase> parse_phase(std::string_view s) {
  for (auto p :
       {alert_phase::inactive, alert_phase::pending, alert_phase::firing, alert_phase::resolved}) {
    if (phase_name(p) == s) return p;
  }
  return std::nullopt;
}

/// The inverse of event_kind_name.
std::optional<event_kind> parse_event_kind(std::string_view s) {
  for (auto k :
       {event_kind::firing, event_kind::reminder, event_kind::resolved, event_kind::test}) {
    if (event_kind_name(k) == s) return k;
  }
  return std::nullopt;
}

/// The inverse of delivery_status_name.
std::optional<delivery_status> parse_delivery_status(std::string_view s) {
  for (auto st : {delivery_status::pending, delivery_status::delivered, delivery_status::failed}) {
    if (delivery_status_name(st) == s) return st;
  }
  return std::nullopt;
}

/// An enumeration name read from column (as "table.column") of st's row; a name that
/// does not parse means a damaged or foreign database.
template <typename E>
E stored_enum(std::optional<E> (*parse)(std::string_view), const statement& st, int index,
              std::string_view column) {
  const auto text = st.column_text(index);
  if (auto e = parse(text)) return *e;
  throw store_error(fmt::format("unknown value '{}' in {}", text, column));
}

/// A nullable time column.
std::optional<timestamp> column_time(const statement& st, int index) {
  if (st.column_is_null(index)) return std::nullopt;
  return from_ms(st.column_int64(index));
}

/// Binds a time, or NULL for none.
void bind_time(statement& st, int index, const std::optional<timestamp>& t) {
  if (t) {
    st.bind(index, to_ms(*t));
  } else {
    st.bind_null(index);
  }
}

/// Labels as stored: a JSON object of strings, keys in order.
std::string labels_json(const std::map<std::string, std::string>& labels) {
  boost::json::object o;
  for (const auto& [name, value] : labels) o[name] = value;
  return boost::json::serialize(o);
}

/// The inverse of labels_json; anything else means a damaged database.
std::map<std::string, std::string> stored_labels(const std::string& text) {
  boost::system::error_code ec;
  const auto v = boost::json::parse(text, ec);
  const auto corrupt = [&] {
    return store_error(fmt::format("corrupt labels '{}' in alert_event.labels", text));
  };
  if (ec || !v.is_object()) throw corrupt();
  std::map<std::string, std::string> out;
  for (const auto& [name, value] : v.get_object()) {
    if (!value.is_string()) throw corrupt();
    out.emplace(std::string(name), std::string(value.get_string()));
  }
  return out;
}

/// An event from event_columns starting at column first.
alert_event read_event(const statement& st, int first) {
  alert_event e;
  e.id = st.column_int64(first);
  e.event_id = st.column_text(first + 1);
  e.rule = st.column_text(first + 2);
  e.kind = stored_enum(parse_event_kind, st, first + 3, "alert_event.kind");
  e.at = from_ms(st.column_int64(first + 4));
  e.starts_at = from_ms(st.column_int64(first + 5));
  e.ends_at = column_time(st, first + 6);
  e.condition = stored_enum(parse_condition, st, first + 7, "alert_event.condition");
  e.currency = st.column_text(first + 8);
  e.source = st.column_text(first + 9);
  e.against = st.column_text(first + 10);
  e.threshold = st.column_text(first + 11);
  e.value = st.column_text(first + 12);
  e.rate = st.column_text(first + 13);
  e.labels = stored_labels(st.column_text(first + 14));
  return e;
}

/// A delivery from delivery_columns starting at column first.
delivery read_delivery(const statement& st, int first) {
  delivery d;
  d.id = st.column_int64(first);
  d.event = st.column_int64(first + 1);
  d.notifier = st.column_text(first + 2);
  d.status = stored_enum(parse_delivery_status, st, first + 3, "alert_delivery.status");
  d.attempts = static_cast<int>(
      std::clamp<std::int64_t>(st.column_int64(first + 4), 0, std::numeric_limits<int>::max()));
  d.created_at = from_ms(st.column_int64(first + 5));
  d.next_attempt_at = from_ms(st.column_int64(first + 6));
  d.done_at = column_time(st, first + 7);
  d.last_error = st.column_text(first + 8);
  return d;
}

/// An attempt from attempt_columns starting at column first (its id, skipped).
delivery_attempt read_attempt(const statement& st, int first) {
  delivery_attempt a;
  a.at = from_ms(st.column_int64(first + 1));
  a.duration = std::chrono::milliseconds{st.column_int64(first + 2)};
  a.http_status = static_cast<int>(st.column_int64(first + 3));
  a.outcome = st.column_text(first + 4);
  a.error = st.column_text(first + 5);
  return a;
}

/// A state from the columns of select_states.
alert_state read_state(const statement& st) {
  alert_state s;
  s.rule = st.column_text(0);
  s.phase = stored_enum(parse_phase, st, 1, "alert_state.phase");
  s.since = from_ms(st.column_int64(2));
  s.started_at = column_time(st, 3);
  s.last_notified = column_time(st, 4);
  s.evaluated_at = column_time(st, 5);
  s.value = st.column_text(6);
  s.created_at = from_ms(st.column_int64(7));
  return s;
}

/// A count as an SQL LIMIT.
std::int64_t sql_limit(std::size_t n) {
  constexpr auto max = static_cast<std::size_t>(std::numeric_limits<std::int64_t>::max());
  return static_cast<std::int64_t>(std::min(n, max));
}

/// Runs events (prepared and bound by the caller, who resets it) and reads the events it
/// yields in order, then every delivery and attempt of those events with one more query.
///
/// Two queries whatever the number of events: the event ids go to SQLite as one bound
/// JSON array (json_each), and attempts come joined to their deliveries.
std::vector<event_record> read_records(alert_statements& q, statement& events) {
  std::vector<event_record> out;
  while (events.step()) out.push_back({read_event(events, 0), {}});
  if (out.empty()) return out;
  boost::json::array ids;
  ids.reserve(out.size());
  for (const auto& r : out) ids.emplace_back(r.event.id);
  auto& st = q.deliveries_of_events;
  sqlite::reset_guard g(st);
  st.bind(1, boost::json::serialize(ids));
  // Both the events and the rows come in ascending event id, so one forward walk
  // pairs them; each delivery's rows are adjacent, attempts oldest first.
  auto record = out.begin();
  constexpr int attempt_first = delivery_column_count;
  while (st.step()) {
    const auto event = st.column_int64(1);
    while (record != out.end() && record->event.id < event) ++record;
    if (record == out.end() || record->event.id != event) {
      throw store_error(fmt::format("delivery of event {} not among the events read", event));
    }
    auto& deliveries = record->deliveries;
    if (deliveries.empty() || deliveries.back().first.id != st.column_int64(0)) {
      deliveries.emplace_back(read_delivery(st, 0), std::vector<delivery_attempt>{});
    }
    if (!st.column_is_null(attempt_first)) {
      deliveries.back().second.push_back(read_attempt(st, attempt_first));
    }
  }
  return out;
}

/// Appends one event and returns its id.
std::int64_t insert_event(alert_statements& q, sqlite::connection& db, const alert_event& e) {
  auto& st = q.insert_event;
  sqlite::reset_guard g(st);
  st.bind_ref(1, e.event_id);
  st.bind_ref(2, e.rule);
  st.bind(3, event_kind_name(e.kind));
  st.bind(4, to_ms(e.at));
  st.bind(5, to_ms(e.starts_at));
  bind_time(st, 6, e.ends_at);
  st.bind(7, condition_name(e.condition));
  st.bind_ref(8, e.currency);
  st.bind_ref(9, e.source);
  st.bind_ref(10, e.against);
  st.bind_ref(11, e.threshold);
  st.bind_ref(12, e.value);
  st.bind_ref(13, e.rate);
  st.bind(14, labels_json(e.labels));
  try {
    st.run();
  } catch (const sqlite::error& err) {
    throw sqlite::error(fmt::format("event '{}' of rule '{}': {}", e.event_id, e.rule, err.what()),
                        err.code());
  }
  return db.last_insert_rowid();
}

/// Adds the pending delivery of event to notifier, due at the event's time.
void insert_delivery(alert_statements& q, std::int64_t event, const alert_event& e,
                     const std::string& notifier) {
  auto& st = q.insert_delivery;
  sqlite::reset_guard g(st);
  st.bind(1, event);
  st.bind_ref(2, notifier);
  st.bind(3, to_ms(e.at));
  try {
    st.run();
  } catch (const sqlite::error& err) {
    throw sqlite::error(
        fmt::format("delivery of event '{}' to '{}': {}", e.event_id, notifier, err.what()),
        err.code());
  }
}

/// Creates or replaces one rule state.
void upsert_state(alert_statements& q, const alert_state& s) {
  auto& st = q.upsert_state;
  sqlite::reset_guard g(st);
  st.bind_ref(1, s.rule);
  st.bind(2, phase_name(s.phase));
  st.bind(3, to_ms(s.since));
  bind_time(st, 4, s.started_at);
  bind_time(st, 5, s.last_notified);
  bind_time(st, 6, s.evaluated_at);
  st.bind_ref(7, s.value);
  st.bind(8, to_ms(s.created_at));
  st.run();
}

}  // namespace

namespace store_detail {

alert_statements::alert_statements(sqlite::connection& db)
    : select_rules(db, "SELECT name, definition FROM alert_rule ORDER BY name"),
      upsert_rule(db,
                  "INSERT INTO alert_rule (name, definition, created_at, updated_at) "
                  "VALUES (?1, ?2, ?3, ?3) ON CONFLICT (name) DO UPDATE SET "
                  "definition = excluded.definition, updated_at = excluded.updated_at"),
      delete_rule(db, "DELETE FROM alert_rule WHERE name = ?1"),
      select_states(db,
                    "SELECT rule, phase, since, started_at, last_notified, evaluated_at, value, "
                    "created_at FROM alert_state ORDER BY rule"),
      upsert_state(db,
                   "INSERT INTO alert_state (rule, phase, since, started_at, last_notified, "
                   "evaluated_at, value, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) "
                   "ON CONFLICT (rule) DO UPDATE SET phase = excluded.phase, "
                   "since = excluded.since, started_at = excluded.started_at, "
                   "last_notified = excluded.last_notified, "
                   "evaluated_at = excluded.evaluated_at, value = excluded.value, "
                   "created_at = excluded.created_at"),
      delete_state(db, "DELETE FROM alert_state WHERE rule = ?1"),
      insert_event(db,
                   "INSERT INTO alert_event (event_id, rule, kind, at, starts_at, ends_at, "
                   "condition, currency, source, against, threshold, value, rate, labels) "
                   "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"),
      insert_delivery(db,
                      "INSERT INTO alert_delivery (event, notifier, status, attempts, "
                      "created_at, next_attempt_at) VALUES (?1, ?2, 'pending', 0, ?3, ?3)"),
      events_all(
          db, fmt::format("SELECT {} FROM alert_event AS e ORDER BY e.id LIMIT ?1", event_columns)),
      // Without INDEXED BY the planner walks the whole table in id order to save the
      // sort; a recent since (the usual query) would then read every older event.
      events_since(db, fmt::format("SELECT {} FROM alert_event AS e INDEXED BY alert_event_at "
                                   "WHERE e.at >= ?1 ORDER BY e.id LIMIT ?2",
                                   event_columns)),
      events_of_rule(db, fmt::format("SELECT {} FROM alert_event AS e "
                                     "WHERE e.rule = ?1 AND e.at >= ?2 ORDER BY e.id LIMIT ?3",
                                     event_columns)),
      newest_event_of_rule(db, fmt::format("SELECT {} FROM alert_event AS e WHERE e.rule = ?1 "
                                           "ORDER BY e.id DESC LIMIT 1",
                                           event_columns)),
      deliveries_of_events(db, fmt::format("SELECT {}, {} FROM alert_delivery AS d "
                                           "LEFT JOIN alert_attempt AS a ON a.delivery = d.id "
                                           "WHERE d.event IN (SELECT value FROM json_each(?1)) "
                                           "ORDER BY d.event, d.id, a.id",
                                           delivery_columns, attempt_columns)),
      due_heads(
          db, fmt::format("{}SELECT {}, {} {}JOIN alert_event AS e ON e.id = d.event "
                          "WHERE d.next_attempt_at <= ?1 ORDER BY d.id",
                          pending_heads_with, delivery_columns, event_columns, pending_heads_from)),
      earliest_head(db, fmt::format("{}SELECT min(d.next_attempt_at) {}", pending_heads_with,
                                    pending_heads_from)),
      insert_attempt(db,
                     "INSERT INTO alert_attempt (delivery, at, duration_ms, http_status, "
                     "outcome, error) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"),
      // last_error keeps the newest error seen: a success after retries leaves the
      // reason of the last failed attempt visible.
      update_delivery(db,
                      "UPDATE alert_delivery SET status = ?2, attempts = attempts + 1, "
                      "last_error = CASE WHEN ?3 = '' THEN last_error ELSE ?3 END, "
                      "next_attempt_at = ?4, done_at = ?5 "
                      "WHERE id = ?1 AND status = 'pending'"),
      count_deliveries(db, "SELECT status, count(*) FROM alert_delivery GROUP BY status") {}

}  // namespace store_detail

std::optional<decimal> store::value_at(std::string_view source, std::string_view currency,
                                       timestamp t) {
  auto& s = *impl_;
  sqlite::transaction tx(s.db, sqlite::transaction::kind::deferred);
  const auto source_id = s.find_source(source);
  if (!source_id) return std::nullopt;
  // rate_change holds only accepted change points; held values live in rate_hold.
  const auto row = s.value_at(*source_id, currency, to_ms(t));
  tx.commit();
  if (!row) return std::nullopt;
  return stored_decimal(row->rate);
}

std::vector<std::pair<std::string, std::string>> store::stored_rules() {
  auto& st = impl_->alerts.select_rules;
  sqlite::reset_guard g(st);
  std::vector<std::pair<std::string, std::string>> out;
  while (st.step()) out.emplace_back(st.column_text(0), st.column_text(1));
  return out;
}

void store::save_rule(std::string_view name, std::string_view definition, timestamp at) try {
  auto& st = impl_->alerts.upsert_rule;
  sqlite::reset_guard g(st);
  st.bind(1, name);
  st.bind(2, definition);
  st.bind(3, to_ms(at));
  st.run();
} catch (const sqlite::error& e) {
  impl_->throw_if_full(e, fmt::format("rule {}", name));
  throw;
}

bool store::delete_rule(std::string_view name) try {
  auto& s = *impl_;
  auto& st = s.alerts.delete_rule;
  sqlite::reset_guard g(st);
  st.bind(1, name);
  st.run();
  return s.db.changes() > 0;
} catch (const sqlite::error& e) {
  impl_->throw_if_full(e, fmt::format("deletion of rule {}", name));
  throw;
}

std::vector<alert_state> store::alert_states() {
  auto& st = impl_->alerts.select_states;
  sqlite::reset_guard g(st);
  std::vector<alert_state> out;
  while (st.step()) out.push_back(read_state(st));
  return out;
}

void store::apply_alert_update(alert_update& u) try {
  auto& s = *impl_;
  auto& q = s.alerts;
  sqlite::transaction tx(s.db);
  std::vector<std::int64_t> ids;
  ids.reserve(u.events.size());
  for (const auto& [event, notifiers] : u.events) {
    ids.push_back(insert_event(q, s.db, event));
    for (const auto& notifier : notifiers) insert_delivery(q, ids.back(), event, notifier);
  }
  // Removals first, so a rule both removed and given a state (gone and re-created under
  // the same name in one pass) keeps the new state.
  for (const auto& rule : u.removed) {
    sqlite::reset_guard g(q.delete_state);
    q.delete_state.bind_ref(1, rule);
    q.delete_state.run();
  }
  for (const auto& state : u.states) upsert_state(q, state);
  tx.commit();
  // Only a committed update hands out ids.
  for (std::size_t i = 0; i < ids.size(); ++i) u.events[i].first.id = ids[i];
} catch (const sqlite::error& e) {
  impl_->throw_if_full(
      e, fmt::format("{} alert states and {} events", u.states.size(), u.events.size()));
  throw;
}

std::vector<std::pair<delivery, alert_event>> store::due_deliveries(timestamp now) {
  auto& st = impl_->alerts.due_heads;
  sqlite::reset_guard g(st);
  st.bind(1, to_ms(now));
  std::vector<std::pair<delivery, alert_event>> out;
  while (st.step()) out.emplace_back(read_delivery(st, 0), read_event(st, delivery_column_count));
  return out;
}

std::optional<timestamp> store::next_delivery_due() {
  auto& st = impl_->alerts.earliest_head;
  sqlite::reset_guard g(st);
  if (!st.step()) return std::nullopt;
  return column_time(st, 0);
}

void store::record_attempt(std::int64_t delivery_id, const delivery_attempt& a,
                           delivery_status status, timestamp next_attempt_at) try {
  auto& s = *impl_;
  auto& q = s.alerts;
  sqlite::transaction tx(s.db);
  {
    auto& st = q.update_delivery;
    sqlite::reset_guard g(st);
    st.bind(1, delivery_id);
    st.bind(2, delivery_status_name(status));
    st.bind_ref(3, a.error);
    st.bind(4, to_ms(next_attempt_at));
    bind_time(st, 5, status == delivery_status::pending ? std::nullopt : std::optional(a.at));
    st.run();
    if (s.db.changes() == 0) {
      throw store_error(fmt::format(
          "record_attempt: delivery {} does not exist or is no longer pending", delivery_id));
    }
  }
  {
    auto& st = q.insert_attempt;
    sqlite::reset_guard g(st);
    st.bind(1, delivery_id);
    st.bind(2, to_ms(a.at));
    st.bind(3, static_cast<std::int64_t>(a.duration.count()));
    st.bind(4, a.http_status);
    st.bind_ref(5, a.outcome);
    st.bind_ref(6, a.error);
    st.run();
  }
  tx.commit();
} catch (const sqlite::error& e) {
  impl_->throw_if_full(e, fmt::format("attempt {} of delivery {}", a.outcome, delivery_id));
  throw;
}

std::vector<event_record> store::alert_events(std::optional<timestamp> since, std::string_view rule,
                                              std::size_t limit) {
  auto& s = *impl_;
  auto& q = s.alerts;
  if (limit == 0) return {};
  // One read transaction: the deliveries come from the events' snapshot.
  sqlite::transaction tx(s.db, sqlite::transaction::kind::deferred);
  auto& st = !rule.empty() ? q.events_of_rule : since ? q.events_since : q.events_all;
  sqlite::reset_guard g(st);
  if (!rule.empty()) {
    st.bind(1, rule);
    st.bind(2, since ? to_ms(*since) : std::numeric_limits<std::int64_t>::min());
    st.bind(3, sql_limit(limit));
  } else if (since) {
    st.bind(1, to_ms(*since));
    st.bind(2, sql_limit(limit));
  } else {
    st.bind(1, sql_limit(limit));
  }
  auto out = read_records(q, st);
  tx.commit();
  return out;
}

std::optional<event_record> store::last_event(std::string_view rule) {
  auto& s = *impl_;
  auto& q = s.alerts;
  sqlite::transaction tx(s.db, sqlite::transaction::kind::deferred);
  auto& st = q.newest_event_of_rule;
  sqlite::reset_guard g(st);
  st.bind(1, rule);
  auto records = read_records(q, st);
  tx.commit();
  if (records.empty()) return std::nullopt;
  return std::move(records.front());
}

std::vector<std::pair<delivery_status, std::int64_t>> store::delivery_counts() {
  auto& st = impl_->alerts.count_deliveries;
  sqlite::reset_guard g(st);
  std::vector<std::pair<delivery_status, std::int64_t>> out;
  for (auto status :
       {delivery_status::pending, delivery_status::delivered, delivery_status::failed}) {
    out.emplace_back(status, 0);
  }
  while (st.step()) {
    const auto status = stored_enum(parse_delivery_status, st, 0, "alert_delivery.status");
    for (auto& [s, n] : out) {
      if (s == status) n = st.column_int64(1);
    }
  }
  return out;
}

}  // namespace somrated
