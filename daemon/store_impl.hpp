#pragma once

// The store's private parts, shared by store.cpp (rates, scrape log) and
// store_alerts.cpp (rules, states, events, outbox). Not part of the public interface.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include <fmt/core.h>

#include "somrated/sqlite.hpp"
#include "somrated/store.hpp"

namespace somrated {

namespace store_detail {

/// Unix milliseconds, the time column format.
inline std::int64_t to_ms(timestamp t) noexcept {
  return t.time_since_epoch().count();
}

/// The inverse of to_ms.
inline timestamp from_ms(std::int64_t ms) noexcept {
  return timestamp{std::chrono::milliseconds{ms}};
}

/// A rate read back from the database; a text that does not parse means corruption.
inline decimal stored_decimal(const std::string& text) {
  auto d = decimal::parse(text);
  if (!d) throw store_error(fmt::format("corrupt rate '{}' in database", text));
  return *std::move(d);
}

/// A change point as read back.
struct change_row {
  std::int64_t since = 0;
  std::string rate;
  double rate_num = 0;  ///< Only for ordering (OHLC high and low).
};

/// A held value as read back.
struct hold_row {
  std::string rate;
  std::int64_t first_seen = 0;
  std::optional<std::string> effective_date;
};

/// The prepared statements of the alerts section, prepared once at open.
///
/// Defined in store_alerts.cpp next to the code that runs them.
struct alert_statements {
  /// Prepares every statement on db.
  explicit alert_statements(sqlite::connection& db);

  /// Short name for the members below.
  using statement = sqlite::statement;

  /// API rules, ordered by name.
  statement select_rules;
  /// Creates a rule or replaces its definition; the first created_at stays.
  statement upsert_rule;
  /// Deletes a rule.
  statement delete_rule;

  /// Every rule state, ordered by rule.
  statement select_states;
  /// Creates or replaces a rule's state.
  statement upsert_state;
  /// Deletes a rule's state.
  statement delete_state;

  /// Appends an event.
  statement insert_event;
  /// Adds a pending delivery of an event, due when the event happened.
  statement insert_delivery;
  /// The first ?1 events in id order.
  statement events_all;
  /// The first ?2 events in id order with at >= ?1.
  statement events_since;
  /// The first ?3 events of rule ?1 in id order with at >= ?2.
  statement events_of_rule;
  /// The newest event of rule ?1.
  statement newest_event_of_rule;
  /// The deliveries of the events whose ids the JSON array ?1 lists, each joined with
  /// its attempts, ordered by event, delivery and attempt.
  statement deliveries_of_events;

  /// Each notifier's oldest pending delivery with its event, when due at ?1.
  statement due_heads;
  /// The earliest next_attempt_at over each notifier's oldest pending delivery.
  statement earliest_head;
  /// Appends an attempt.
  statement insert_attempt;
  /// Records an attempt's effect on a pending delivery.
  statement update_delivery;
  /// Deliveries per status.
  statement count_deliveries;
};

}  // namespace store_detail

/// The connection and every statement the store runs, prepared once at open.
///
/// Declaration order matters: statements are destroyed before the connection.
struct store::impl {
  /// Short names for the members below.
  using statement = sqlite::statement;
  /// See store_detail::change_row.
  using change_row = store_detail::change_row;
  /// See store_detail::hold_row.
  using hold_row = store_detail::hold_row;

  /// Opens the database and prepares the statements.
  impl(const std::string& path, mode m);

  /// Id of source, if it has been seen.
  std::optional<std::int64_t> find_source(std::string_view name);
  /// Id of source, creating its row; call inside a write transaction.
  std::int64_t source_for_write(std::string_view name);
  /// The newest change point of (source, currency), if any.
  std::optional<change_row> newest(std::int64_t source_id, std::string_view currency);
  /// The change point in force at ms (the last with since <= ms), if any.
  std::optional<change_row> value_at(std::int64_t source_id, std::string_view currency,
                                     std::int64_t ms);
  /// The oldest change point with first <= since <= last, if any.
  std::optional<change_row> first_change_in(std::int64_t source_id, std::string_view currency,
                                            std::int64_t first, std::int64_t last);
  /// Widens high and low by the change points with first <= since <= last.
  void widen(std::int64_t source_id, std::string_view currency, std::int64_t first,
             std::int64_t last, change_row& high, change_row& low);
  /// The time of the oldest change point, if any.
  std::optional<std::int64_t> first_since(std::int64_t source_id, std::string_view currency);
  /// The held value of (source, currency), if any.
  std::optional<hold_row> find_hold(std::int64_t source_id, std::string_view currency);
  /// Forgets the hold of (source, currency).
  void drop_hold(std::int64_t source_id, std::string_view currency);
  /// Inserts a change point.
  void insert_change(std::int64_t source_id, std::string_view currency, std::int64_t since,
                     const decimal& rate, std::int64_t observed_at,
                     const std::optional<std::string>& effective_date);
  /// Applies one quote of record(); see there.
  record_result record_one(std::int64_t source_id, const rate_quote& q, std::int64_t at,
                           const std::optional<std::string>& effective_date, double max_jump);
  /// The currencies of source, ascending, by a loose index scan over the primary key.
  std::vector<std::string> currency_list(std::int64_t source_id);
  /// history() without step.
  void raw_history(std::int64_t source_id, const history_query& q, history_result& r);
  /// history() with step, last value per bucket.
  void sampled_history(std::int64_t source_id, const history_query& q, history_result& r);
  /// history() with step and ohlc.
  void ohlc_history(std::int64_t source_id, const history_query& q, history_result& r);
  /// When e says the database or the disk is full, throws store_full_error saying that
  /// what was not stored and naming the size limit; otherwise returns (the caller
  /// rethrows e). Call it after the write's transaction has rolled back.
  void throw_if_full(const sqlite::error& e, std::string_view what);

  /// The one connection; declared first so every statement is finalized before it closes.
  sqlite::connection db;

  /// The schema version.
  statement user_version{db, "PRAGMA user_version"};
  /// SQLite's consistency check.
  statement integrity{db, "PRAGMA integrity_check"};
  /// The liveness probe.
  statement select_one{db, "SELECT 1"};
  /// The database's size in pages.
  statement page_count{db, "PRAGMA page_count"};
  /// The size of one page, bytes.
  statement page_size{db, "PRAGMA page_size"};
  /// SQLite's own page limit as the connection opened, which set_max_size(0) restores.
  std::int64_t default_max_pages = 0;
  /// The limit set by set_max_size, bytes; 0 for none.
  std::uint64_t max_size = 0;

  /// A source's id by name.
  statement source_by_name{db, "SELECT id FROM source WHERE name = ?1"};
  /// Creates a source.
  statement insert_source{db, "INSERT INTO source (name) VALUES (?1)"};

  // Every rate_change read below is a seek or a range scan on the primary key
  // (source_id, currency, since); none sorts.
  /// The value in force now, with its metadata.
  statement newest_change{db,
                          "SELECT since, rate, observed_at, effective_date FROM rate_change "
                          "WHERE source_id = ?1 AND currency = ?2 ORDER BY since DESC LIMIT 1"};
  /// The value in force at ?3.
  statement change_at{db,
                      "SELECT since, rate, rate_num FROM rate_change "
                      "WHERE source_id = ?1 AND currency = ?2 AND since <= ?3 "
                      "ORDER BY since DESC LIMIT 1"};
  /// The first change point's time.
  statement oldest_change{db,
                          "SELECT since FROM rate_change WHERE source_id = ?1 AND currency = ?2 "
                          "ORDER BY since LIMIT 1"};
  /// Change points in (?3, ?4], ascending, at most ?5 (-1: all).
  statement changes_between{db,
                            "SELECT since, rate, rate_num FROM rate_change "
                            "WHERE source_id = ?1 AND currency = ?2 AND since > ?3 AND since <= ?4 "
                            "ORDER BY since LIMIT ?5"};
  /// The values of the change points in [?3, ?4], for OHLC high and low: one pass over
  /// the bucket's rows (the text is read only for a new extreme).
  statement range_values{db,
                         "SELECT rate_num, rate FROM rate_change "
                         "WHERE source_id = ?1 AND currency = ?2 AND since >= ?3 AND since <= ?4"};
  /// The alphabetically first currency of a source.
  statement first_currency{db,
                           "SELECT currency FROM rate_change WHERE source_id = ?1 "
                           "ORDER BY currency LIMIT 1"};
  /// The currency after ?2.
  statement next_currency{db,
                          "SELECT currency FROM rate_change WHERE source_id = ?1 AND currency > ?2 "
                          "ORDER BY currency LIMIT 1"};
  /// Adds a change point.
  statement insert_change_stmt{db,
                               "INSERT INTO rate_change (source_id, currency, since, rate, "
                               "rate_num, observed_at, effective_date) "
                               "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"};
  /// Moves observed_at (never backwards) and the effective date.
  statement confirm_change{db,
                           "UPDATE rate_change SET observed_at = ?4, "
                           "effective_date = coalesce(?5, effective_date) "
                           "WHERE source_id = ?1 AND currency = ?2 AND since = ?3 "
                           "AND observed_at <= ?4"};

  /// The hold of one currency.
  statement hold_by_currency{db,
                             "SELECT rate, first_seen, effective_date FROM rate_hold "
                             "WHERE source_id = ?1 AND currency = ?2"};
  /// Every hold of a source.
  statement holds_of_source{db,
                            "SELECT currency, rate, first_seen, effective_date FROM rate_hold "
                            "WHERE source_id = ?1 ORDER BY currency"};
  /// Creates or replaces the hold of one currency.
  statement upsert_hold{
      db,
      "INSERT INTO rate_hold (source_id, currency, rate, first_seen, "
      "effective_date) VALUES (?1, ?2, ?3, ?4, ?5) "
      "ON CONFLICT (source_id, currency) DO UPDATE SET rate = excluded.rate, "
      "first_seen = excluded.first_seen, effective_date = excluded.effective_date"};
  /// Drops the hold of one currency.
  statement delete_hold{db, "DELETE FROM rate_hold WHERE source_id = ?1 AND currency = ?2"};

  /// Appends to the scrape log.
  statement insert_scrape{db,
                          "INSERT INTO scrape_log (source_id, started_at, duration_ms, "
                          "http_status, outcome, error) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"};
  // The WHERE terms repeat the partial indexes' conditions so the planner uses them.
  /// Time of the newest successful scrape.
  statement last_success{db,
                         "SELECT max(started_at) FROM scrape_log "
                         "WHERE source_id = ?1 AND outcome <> 'error'"};
  /// Time and text of the newest failed scrape.
  statement last_failure{db,
                         "SELECT started_at, error FROM scrape_log "
                         "WHERE source_id = ?1 AND outcome = 'error' "
                         "ORDER BY started_at DESC LIMIT 1"};
  /// Failed scrapes after ?2.
  statement failures_after{db,
                           "SELECT count(*) FROM scrape_log "
                           "WHERE source_id = ?1 AND outcome = 'error' AND started_at > ?2"};

  /// The statements of the alerts section (store_alerts.cpp).
  store_detail::alert_statements alerts{db};
};

}  // namespace somrated
