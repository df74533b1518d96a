#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <iterator>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <system_error>
#include <tuple>
#include <utility>
#include <vector>

#include <doctest/doctest.h>
#include <fmt/core.h>

#include "somrated/alert.hpp"
#include "somrated/migrations.hpp"
#include "somrated/sqlite.hpp"
#include "somrated/store.hpp"

using somrated::alert_condition;
using somrated::alert_event;
using somrated::alert_phase;
using somrated::alert_state;
using somrated::alert_update;
using somrated::decimal;
using somrated::delivery;
using somrated::delivery_attempt;
using somrated::delivery_status;
using somrated::event_kind;
using somrated::event_record;
using somrated::rate_quote;
using somrated::store;
using somrated::store_error;
using somrated::timestamp;
namespace sqlite = somrated::sqlite;
using namespace std::chrono_literals;

namespace {

/// The schema version the binary under test knows.
constexpr int known_version = std::end(somrated::migrations::all)[-1].version;

/// A database file in the temp directory, removed (with its -wal and -shm) at scope end.
class temp_db {
 public:
  temp_db() {
    std::random_device rd;
    path_ = (std::filesystem::temp_directory_path() /
             fmt::format("somrated-store-alerts-test-{}-{:08x}{:08x}.db", ::getpid(), rd(), rd()))
                .string();
  }
  ~temp_db() {
    std::error_code ec;
    for (const char* suffix : {"", "-wal", "-shm", "-journal"}) {
      std::filesystem::remove(path_ + suffix, ec);
    }
  }
  temp_db(const temp_db&) = delete;
  temp_db& operator=(const temp_db&) = delete;

  /// The file's path.
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

/// A time given in Unix milliseconds.
timestamp ms(std::int64_t v) {
  return timestamp{std::chrono::milliseconds{v}};
}

/// A decimal that must parse.
decimal dec(std::string_view text) {
  auto d = decimal::parse(text);
  REQUIRE(d);
  return *d;
}

/// Records one quote of "24kg".
void put(store& db, std::int64_t at, const char* currency, const char* rate, double max_jump = 0) {
  const std::vector<rate_quote> q{{currency, dec(rate)}};
  db.record("24kg", ms(at), q, std::nullopt, max_jump);
}

/// An event with every field set, distinct per argument.
alert_event make_event(const std::string& event_id, const std::string& rule, std::int64_t at,
                       event_kind kind = event_kind::firing) {
  alert_event e;
  e.event_id = event_id;
  e.rule = rule;
  e.kind = kind;
  e.at = ms(at);
  e.starts_at = ms(at - 100);
  if (kind == event_kind::resolved) e.ends_at = ms(at);
  e.condition = alert_condition::spread_pct;
  e.currency = "USD";
  e.source = "24kg";
  e.against = "nbkr";
  e.threshold = "1.5";
  e.value = "2.31";
  e.rate = "87.45";
  e.labels = {{"alertname", rule}, {"currency", "USD"}, {"severity", "warning"}};
  return e;
}

/// Checks that two events agree field by field.
void check_same(const alert_event& got, const alert_event& want) {
  CHECK(got.id == want.id);
  CHECK(got.event_id == want.event_id);
  CHECK(got.rule == want.rule);
  CHECK(got.kind == want.kind);
  CHECK(got.at == want.at);
  CHECK(got.starts_at == want.starts_at);
  CHECK(got.ends_at == want.ends_at);
  CHECK(got.condition == want.condition);
  CHECK(got.currency == want.currency);
  CHECK(got.source == want.source);
  CHECK(got.against == want.against);
  CHECK(got.threshold == want.threshold);
  CHECK(got.value == want.value);
  CHECK(got.rate == want.rate);
  CHECK(got.labels == want.labels);
}

/// Appends events, each delivered to notifiers, in one update; returns them with ids.
std::vector<alert_event> add_events(store& db, std::vector<alert_event> events,
                                    const std::vector<std::string>& notifiers) {
  alert_update u;
  for (auto& e : events) u.events.emplace_back(std::move(e), notifiers);
  db.apply_alert_update(u);
  std::vector<alert_event> out;
  for (auto& [e, n] : u.events) {
    CHECK(e.id > 0);
    out.push_back(std::move(e));
  }
  return out;
}

/// One attempt.
delivery_attempt attempt(std::int64_t at, const std::string& outcome, int http_status = 0,
                         const std::string& error = "") {
  return {ms(at), std::chrono::milliseconds{at % 1000 + 7}, http_status, outcome, error};
}

/// The (delivery id, notifier, event id) triples of due_deliveries(now).
std::vector<std::tuple<std::int64_t, std::string, std::string>> due(store& db, std::int64_t now) {
  std::vector<std::tuple<std::int64_t, std::string, std::string>> out;
  for (const auto& [d, e] : db.due_deliveries(ms(now))) {
    CHECK(d.event == e.id);
    out.emplace_back(d.id, d.notifier, e.event_id);
  }
  return out;
}

/// The event ids of records, in order.
std::vector<std::string> event_ids(const std::vector<event_record>& records) {
  std::vector<std::string> out;
  for (const auto& r : records) out.push_back(r.event.event_id);
  return out;
}

/// The count of status in delivery_counts().
std::int64_t count_of(store& db, delivery_status status) {
  for (const auto& [s, n] : db.delivery_counts()) {
    if (s == status) return n;
  }
  return -1;
}

/// A state with every optional set.
alert_state full_state(const std::string& rule) {
  alert_state s;
  s.rule = rule;
  s.phase = alert_phase::firing;
  s.since = ms(5000);
  s.started_at = ms(4000);
  s.last_notified = ms(6000);
  s.evaluated_at = ms(7000);
  s.value = "91.20";
  s.created_at = ms(1000);
  return s;
}

/// Writes one of everything: a rate, a rule, a state, an event with two deliveries, one
/// delivered after a retry and one pending.
void write_sample(store& db) {
  put(db, 1000, "USD", "87.45");
  db.save_rule("api-rule", R"({"above":"90"})", ms(1000));
  alert_update u;
  u.states.push_back(full_state("api-rule"));
  u.events.emplace_back(make_event("ev-1", "api-rule", 2000), std::vector<std::string>{"a", "b"});
  db.apply_alert_update(u);
  const auto heads = db.due_deliveries(ms(2000));
  REQUIRE(heads.size() == 2);
  db.record_attempt(heads[0].first.id, attempt(2000, "retry", 503, "HTTP 503"),
                    delivery_status::pending, ms(2500));
  db.record_attempt(heads[0].first.id, attempt(2500, "delivered", 200), delivery_status::delivered,
                    ms(2500));
}

/// Checks that db holds what write_sample wrote.
void check_sample(store& db) {
  CHECK(db.value_at("24kg", "USD", ms(1500)).value_or(dec("0")).text() == "87.45");
  CHECK(db.stored_rules() ==
        std::vector<std::pair<std::string, std::string>>{{"api-rule", R"({"above":"90"})"}});
  REQUIRE(db.alert_states().size() == 1);
  CHECK(db.alert_states()[0] == full_state("api-rule"));
  const auto events = db.alert_events(std::nullopt, "", 100);
  REQUIRE(events.size() == 1);
  auto want = make_event("ev-1", "api-rule", 2000);
  want.id = events[0].event.id;
  check_same(events[0].event, want);
  REQUIRE(events[0].deliveries.size() == 2);
  CHECK(events[0].deliveries[0].first.status == delivery_status::delivered);
  CHECK(events[0].deliveries[0].second.size() == 2);
  CHECK(events[0].deliveries[1].first.status == delivery_status::pending);
  const auto last = db.last_event("api-rule");
  REQUIRE(last);
  CHECK(last->event.event_id == "ev-1");
  REQUIRE(db.due_deliveries(ms(2000)).size() == 1);
  CHECK(db.due_deliveries(ms(2000))[0].first.notifier == "b");
  CHECK(db.next_delivery_due() == ms(2000));
  CHECK(count_of(db, delivery_status::delivered) == 1);
  CHECK(count_of(db, delivery_status::pending) == 1);
}

}  // namespace

TEST_CASE("store alerts: migrations") {
  temp_db file;

  SUBCASE("an empty file gets the alert tables") {
    store db(file.path());
    CHECK(db.schema_version() == known_version);
    CHECK(db.integrity_check() == "ok");
    sqlite::connection raw(file.path(), sqlite::connection::open_mode::read_only);
    sqlite::statement st(raw,
                         "SELECT name FROM sqlite_schema WHERE name LIKE 'alert%' ORDER BY name");
    std::vector<std::string> names;
    while (st.step()) names.push_back(st.column_text(0));
    CHECK(names == std::vector<std::string>{"alert_attempt", "alert_attempt_delivery",
                                            "alert_delivery", "alert_delivery_pending",
                                            "alert_event", "alert_event_at", "alert_event_rule",
                                            "alert_rule", "alert_state"});
  }

  SUBCASE("a version-1 database keeps its data and gains the alert tables") {
    const auto& first = somrated::migrations::all[0];
    REQUIRE(first.version == 1);
    {
      sqlite::connection raw(file.path(), sqlite::connection::open_mode::read_write_create);
      raw.exec("PRAGMA journal_mode = WAL");
      raw.exec(first.sql);
      raw.exec(
          "INSERT INTO source (id, name) VALUES (1, '24kg');"
          "INSERT INTO rate_change VALUES (1, 'USD', 1000, '87.45', 87.45, 1500, NULL);"
          "INSERT INTO rate_change VALUES (1, 'USD', 2000, '87.50', 87.5, 2000, '2025-06-10');"
          "INSERT INTO rate_hold VALUES (1, 'USD', '120', 3000, NULL);"
          "INSERT INTO scrape_log (source_id, started_at, duration_ms, http_status, outcome, "
          "error) VALUES (1, 2000, 12, 200, 'ok', ''), (1, 3000, 5, 0, 'error', 'refused');"
          "PRAGMA user_version = 1;");
    }
    store db(file.path());
    CHECK(db.schema_version() == known_version);
    CHECK(db.integrity_check() == "ok");
    const auto latest = db.latest("24kg");
    REQUIRE(latest.size() == 1);
    CHECK(latest[0].rate.text() == "87.50");
    CHECK(latest[0].since == ms(2000));
    REQUIRE(db.held("24kg").size() == 1);
    CHECK(db.held("24kg")[0].rate.text() == "120");
    const auto h = db.health("24kg");
    CHECK(h.last_success == ms(2000));
    CHECK(h.last_error == "refused");
    CHECK(h.consecutive_failures == 1);
    CHECK(db.value_at("24kg", "USD", ms(1999)).value_or(dec("0")).text() == "87.45");
    write_sample(db);
    check_sample(db);
  }
}

TEST_CASE("store alerts: value_at") {
  store db(":memory:");

  SUBCASE("no data") {
    CHECK_FALSE(db.value_at("24kg", "USD", ms(1000)));
    put(db, 1000, "USD", "87.45");
    CHECK_FALSE(db.value_at("nbkr", "USD", ms(1000)));
    CHECK_FALSE(db.value_at("24kg", "EUR", ms(1000)));
  }

  SUBCASE("the last change point at or before t") {
    put(db, 1000, "USD", "87.45");
    put(db, 2000, "USD", "87.45");  // a confirmation, not a change point
    put(db, 3000, "USD", "87.50");
    put(db, 3000, "EUR", "99.10");
    const auto at = [&](std::int64_t t) {
      const auto v = db.value_at("24kg", "USD", ms(t));
      return v ? v->text() : std::string("none");
    };
    CHECK(at(999) == "none");
    CHECK(at(1000) == "87.45");
    CHECK(at(2500) == "87.45");
    CHECK(at(2999) == "87.45");
    CHECK(at(3000) == "87.50");
    CHECK(at(1'000'000) == "87.50");
    CHECK(db.value_at("24kg", "EUR", ms(3000)).value_or(dec("0")).text() == "99.10");
  }

  SUBCASE("a held value is not a change point until released") {
    put(db, 1000, "USD", "80.00", 0.25);
    put(db, 2000, "USD", "120.00", 0.25);
    CHECK(db.value_at("24kg", "USD", ms(2500))->text() == "80.00");
    put(db, 3000, "USD", "120.00", 0.25);  // seen again: released, dated from first sight
    CHECK(db.value_at("24kg", "USD", ms(1999))->text() == "80.00");
    CHECK(db.value_at("24kg", "USD", ms(2000))->text() == "120.00");
  }
}

TEST_CASE("store alerts: API rules") {
  temp_db file;
  store db(file.path());
  CHECK(db.stored_rules().empty());
  db.save_rule("zeta", R"({"below":"85"})", ms(1000));
  db.save_rule("alpha", R"({"above":"90"})", ms(2000));
  using rules = std::vector<std::pair<std::string, std::string>>;
  CHECK(db.stored_rules() == rules{{"alpha", R"({"above":"90"})"}, {"zeta", R"({"below":"85"})"}});

  db.save_rule("zeta", R"({"below":"84.5"})", ms(3000));
  CHECK(db.stored_rules() ==
        rules{{"alpha", R"({"above":"90"})"}, {"zeta", R"({"below":"84.5"})"}});
  {
    // Replacing keeps the creation time and moves the update time.
    sqlite::connection raw(file.path(), sqlite::connection::open_mode::read_only);
    sqlite::statement st(raw, "SELECT created_at, updated_at FROM alert_rule WHERE name = 'zeta'");
    REQUIRE(st.step());
    CHECK(st.column_int64(0) == 1000);
    CHECK(st.column_int64(1) == 3000);
  }

  CHECK(db.delete_rule("zeta"));
  CHECK_FALSE(db.delete_rule("zeta"));
  CHECK_FALSE(db.delete_rule("never"));
  CHECK(db.stored_rules() == rules{{"alpha", R"({"above":"90"})"}});
}

TEST_CASE("store alerts: rule states") {
  store db(":memory:");
  CHECK(db.alert_states().empty());

  alert_state bare;
  bare.rule = "b-bare";
  bare.phase = alert_phase::pending;
  bare.since = ms(10);
  bare.created_at = ms(5);
  alert_state resolved = full_state("c-resolved");
  resolved.phase = alert_phase::resolved;
  resolved.last_notified.reset();
  alert_update u;
  u.states = {full_state("a-full"), bare, resolved};
  db.apply_alert_update(u);
  CHECK(db.alert_states() == std::vector<alert_state>{full_state("a-full"), bare, resolved});

  // Every field round-trips, optionals both ways, and phases by name.
  for (auto phase :
       {alert_phase::inactive, alert_phase::pending, alert_phase::firing, alert_phase::resolved}) {
    alert_state s = full_state("a-full");
    s.phase = phase;
    s.started_at.reset();
    s.evaluated_at = ms(99);
    s.value = "";
    alert_update v;
    v.states = {s};
    db.apply_alert_update(v);
    REQUIRE(db.alert_states().size() == 3);
    CHECK(db.alert_states()[0] == s);
  }

  alert_update removal;
  removal.removed = {"b-bare", "no-such-rule"};
  db.apply_alert_update(removal);
  REQUIRE(db.alert_states().size() == 2);
  CHECK(db.alert_states()[1] == resolved);

  // A rule removed and given a state in the same update keeps the new state.
  alert_update both;
  both.removed = {"c-resolved"};
  both.states = {bare};
  both.states[0].rule = "c-resolved";
  db.apply_alert_update(both);
  REQUIRE(db.alert_states().size() == 2);
  CHECK(db.alert_states()[1] == both.states[0]);
}

TEST_CASE("store alerts: apply_alert_update is all or nothing") {
  store db(":memory:");
  const auto first = add_events(db, {make_event("ev-1", "r", 1000)}, {"hook"});
  REQUIRE(first.size() == 1);
  alert_update before;
  before.states = {full_state("r")};
  db.apply_alert_update(before);

  SUBCASE("a duplicate event_id keeps nothing") {
    alert_update u;
    auto changed = full_state("r");
    changed.phase = alert_phase::resolved;
    u.states = {changed, full_state("s")};
    u.removed = {"r"};
    u.events.emplace_back(make_event("ev-2", "r", 2000), std::vector<std::string>{"hook", "mail"});
    u.events.emplace_back(make_event("ev-1", "r", 2001), std::vector<std::string>{"hook"});
    CHECK_THROWS_WITH_AS(db.apply_alert_update(u), doctest::Contains("ev-1"), store_error);
    CHECK(u.events[0].first.id == 0);
    CHECK(u.events[1].first.id == 0);
  }

  SUBCASE("a notifier listed twice for one event keeps nothing") {
    alert_update u;
    u.states = {full_state("s")};
    u.events.emplace_back(make_event("ev-2", "r", 2000), std::vector<std::string>{"hook", "hook"});
    CHECK_THROWS_AS(db.apply_alert_update(u), store_error);
    CHECK(u.events[0].first.id == 0);
  }

  CHECK(event_ids(db.alert_events(std::nullopt, "", 100)) == std::vector<std::string>{"ev-1"});
  CHECK(db.alert_states() == std::vector<alert_state>{full_state("r")});
  CHECK(count_of(db, delivery_status::pending) == 1);
  CHECK(due(db, 5000).size() == 1);

  // The store is usable afterwards, and ids go on in order.
  const auto next = add_events(db, {make_event("ev-3", "r", 3000)}, {});
  CHECK(next[0].id > first[0].id);
}

TEST_CASE("store alerts: the outbox is FIFO per notifier") {
  store db(":memory:");
  CHECK(db.due_deliveries(ms(1'000'000)).empty());
  CHECK_FALSE(db.next_delivery_due());

  const auto e1 = add_events(db, {make_event("e1", "r", 1000)}, {"hook", "mail"})[0];
  const auto e2 = add_events(db, {make_event("e2", "r", 2000)}, {"hook"})[0];
  const auto e3 = add_events(db, {make_event("e3", "r", 2500)}, {"mail"})[0];

  // Deliveries are due from the event's time.
  CHECK(due(db, 999).empty());
  CHECK(db.next_delivery_due() == ms(1000));
  const auto heads = db.due_deliveries(ms(1000));
  REQUIRE(heads.size() == 2);
  CHECK(heads[0].first.notifier == "hook");
  CHECK(heads[1].first.notifier == "mail");
  CHECK(heads[0].first.id < heads[1].first.id);
  check_same(heads[0].second, e1);
  const auto& hook1 = heads[0].first;
  CHECK(hook1.event == e1.id);
  CHECK(hook1.status == delivery_status::pending);
  CHECK(hook1.attempts == 0);
  CHECK(hook1.created_at == ms(1000));
  CHECK(hook1.next_attempt_at == ms(1000));
  CHECK_FALSE(hook1.done_at);
  CHECK(hook1.last_error.empty());
  const auto mail1 = heads[1].first.id;

  // hook's head is retried in the future: e2 waits behind it although due at 2000.
  db.record_attempt(hook1.id, attempt(1000, "retry", 503, "HTTP 503"), delivery_status::pending,
                    ms(5000));
  using triples = std::vector<std::tuple<std::int64_t, std::string, std::string>>;
  CHECK(due(db, 3000) == triples{{mail1, "mail", "e1"}});
  CHECK(db.next_delivery_due() == ms(1000));

  // mail goes on independently.
  db.record_attempt(mail1, attempt(3000, "delivered", 200), delivery_status::delivered, ms(3000));
  const auto mail3 = due(db, 3000);
  REQUIRE(mail3.size() == 1);
  CHECK(std::get<2>(mail3[0]) == "e3");
  db.record_attempt(std::get<0>(mail3[0]), attempt(3000, "failed", 404, "HTTP 404"),
                    delivery_status::failed, ms(3000));
  CHECK(due(db, 4999).empty());
  CHECK(db.next_delivery_due() == ms(5000));

  // The retried head comes back when due, and only then does e2 follow.
  CHECK(due(db, 5000) == triples{{hook1.id, "hook", "e1"}});
  db.record_attempt(hook1.id, attempt(5000, "delivered", 204), delivery_status::delivered,
                    ms(5000));
  const auto hook2 = due(db, 5000);
  REQUIRE(hook2.size() == 1);
  CHECK(std::get<2>(hook2[0]) == "e2");
  CHECK(std::get<0>(hook2[0]) > mail1);
  CHECK(db.next_delivery_due() == ms(2000));
  db.record_attempt(std::get<0>(hook2[0]), attempt(5001, "failed", 0, "gave up"),
                    delivery_status::failed, ms(5001));
  CHECK(due(db, 1'000'000).empty());
  CHECK_FALSE(db.next_delivery_due());
  CHECK(e2.id > e1.id);
  CHECK(e3.id > e2.id);
}

TEST_CASE("store alerts: record_attempt") {
  store db(":memory:");
  add_events(db, {make_event("e1", "r", 1000)}, {"a", "b", "c"});
  const auto heads = db.due_deliveries(ms(1000));
  REQUIRE(heads.size() == 3);
  const auto a = heads[0].first.id, b = heads[1].first.id, c = heads[2].first.id;
  const auto deliveries = [&] {
    const auto records = db.alert_events(std::nullopt, "", 10);
    REQUIRE(records.size() == 1);
    REQUIRE(records[0].deliveries.size() == 3);
    return records[0].deliveries;
  };

  db.record_attempt(a, attempt(1000, "retry", 0, "connection refused"), delivery_status::pending,
                    ms(6000));
  db.record_attempt(a, attempt(6000, "retry", 429, "HTTP 429"), delivery_status::pending,
                    ms(16000));
  auto d = deliveries();
  CHECK(d[0].first.status == delivery_status::pending);
  CHECK(d[0].first.attempts == 2);
  CHECK(d[0].first.next_attempt_at == ms(16000));
  CHECK_FALSE(d[0].first.done_at);
  CHECK(d[0].first.last_error == "HTTP 429");

  db.record_attempt(a, attempt(16000, "delivered", 200), delivery_status::delivered, ms(16000));
  db.record_attempt(b, attempt(1200, "failed", 400, "HTTP 400 Bad Request"),
                    delivery_status::failed, ms(1200));
  d = deliveries();
  CHECK(d[0].first.status == delivery_status::delivered);
  CHECK(d[0].first.attempts == 3);
  CHECK(d[0].first.done_at == ms(16000));
  CHECK(d[0].first.last_error == "HTTP 429");  // the newest error seen stays visible
  REQUIRE(d[0].second.size() == 3);
  CHECK(d[0].second[0].at == ms(1000));
  CHECK(d[0].second[0].error == "connection refused");
  CHECK(d[0].second[0].http_status == 0);
  CHECK(d[0].second[0].outcome == "retry");
  CHECK(d[0].second[0].duration == 7ms);
  CHECK(d[0].second[1].http_status == 429);
  CHECK(d[0].second[2].outcome == "delivered");
  CHECK(d[0].second[2].error.empty());
  CHECK(d[1].first.status == delivery_status::failed);
  CHECK(d[1].first.attempts == 1);
  CHECK(d[1].first.done_at == ms(1200));
  CHECK(d[1].first.last_error == "HTTP 400 Bad Request");
  CHECK(d[1].second.size() == 1);
  CHECK(d[2].first.attempts == 0);
  CHECK(d[2].second.empty());

  // A finished or unknown delivery takes no more attempts, and nothing is written.
  CHECK_THROWS_WITH_AS(
      db.record_attempt(a, attempt(20000, "delivered", 200), delivery_status::delivered, ms(20000)),
      doctest::Contains("no longer pending"), store_error);
  CHECK_THROWS_AS(db.record_attempt(c + 1000, attempt(20000, "delivered", 200),
                                    delivery_status::delivered, ms(20000)),
                  store_error);
  d = deliveries();
  CHECK(d[0].first.attempts == 3);
  CHECK(d[0].second.size() == 3);
  CHECK(count_of(db, delivery_status::pending) == 1);
}

TEST_CASE("store alerts: events with deliveries and attempts") {
  store db(":memory:");
  CHECK(db.alert_events(std::nullopt, "", 100).empty());
  CHECK_FALSE(db.last_event("r1"));

  // ev-4 is older by its time than ev-3 (a clock step) but later in outbox order.
  add_events(db,
             {make_event("ev-1", "r1", 1000), make_event("ev-2", "r2", 2000),
              make_event("ev-3", "r1", 3000, event_kind::resolved),
              make_event("ev-4", "r2", 2500, event_kind::reminder),
              make_event("ev-5", "r1", 5000, event_kind::test)},
             {"zeta", "alpha"});
  using ids = std::vector<std::string>;
  const auto all = db.alert_events(std::nullopt, "", 100);
  CHECK(event_ids(all) == ids{"ev-1", "ev-2", "ev-3", "ev-4", "ev-5"});
  CHECK(std::is_sorted(all.begin(), all.end(),
                       [](const auto& x, const auto& y) { return x.event.id < y.event.id; }));
  REQUIRE(all.size() == 5);
  auto want = make_event("ev-3", "r1", 3000, event_kind::resolved);
  want.id = all[2].event.id;
  check_same(all[2].event, want);
  CHECK(all[2].event.ends_at == ms(3000));
  CHECK_FALSE(all[0].event.ends_at);

  CHECK(event_ids(db.alert_events(ms(2500), "", 100)) == ids{"ev-3", "ev-4", "ev-5"});
  CHECK(event_ids(db.alert_events(ms(2501), "", 100)) == ids{"ev-3", "ev-5"});
  CHECK(event_ids(db.alert_events(std::nullopt, "r1", 100)) == ids{"ev-1", "ev-3", "ev-5"});
  CHECK(event_ids(db.alert_events(ms(2000), "r2", 100)) == ids{"ev-2", "ev-4"});
  CHECK(event_ids(db.alert_events(ms(2001), "r2", 100)) == ids{"ev-4"});
  CHECK(event_ids(db.alert_events(std::nullopt, "r1", 2)) == ids{"ev-1", "ev-3"});
  CHECK(event_ids(db.alert_events(std::nullopt, "", 1)) == ids{"ev-1"});
  CHECK(event_ids(db.alert_events(ms(2000), "", 2)) == ids{"ev-2", "ev-3"});
  CHECK(db.alert_events(std::nullopt, "", 0).empty());
  CHECK(db.alert_events(std::nullopt, "r3", 100).empty());
  CHECK(db.alert_events(ms(6000), "", 100).empty());

  // Deliveries in the order the notifiers were listed; attempts oldest first.
  const auto heads = db.due_deliveries(ms(1000));
  REQUIRE(heads.size() == 2);
  const auto zeta = heads[0].first.id;
  CHECK(heads[0].first.notifier == "zeta");
  db.record_attempt(zeta, attempt(1000, "retry", 500, "HTTP 500"), delivery_status::pending,
                    ms(1100));
  db.record_attempt(zeta, attempt(1100, "retry", 502, "HTTP 502"), delivery_status::pending,
                    ms(1200));
  db.record_attempt(zeta, attempt(1200, "delivered", 200), delivery_status::delivered, ms(1200));
  const auto first = db.alert_events(std::nullopt, "", 1);
  REQUIRE(first.size() == 1);
  REQUIRE(first[0].deliveries.size() == 2);
  CHECK(first[0].deliveries[0].first.notifier == "zeta");
  CHECK(first[0].deliveries[1].first.notifier == "alpha");
  const auto& attempts = first[0].deliveries[0].second;
  REQUIRE(attempts.size() == 3);
  CHECK(attempts[0].http_status == 500);
  CHECK(attempts[1].http_status == 502);
  CHECK(attempts[2].http_status == 200);
  CHECK(first[0].deliveries[1].second.empty());
  for (const auto& r : db.alert_events(std::nullopt, "", 100)) {
    REQUIRE(r.deliveries.size() == 2);
    for (const auto& [d, a] : r.deliveries) CHECK(d.event == r.event.id);
  }

  // The newest event of a rule by outbox order, with its deliveries.
  const auto last1 = db.last_event("r1");
  REQUIRE(last1);
  CHECK(last1->event.event_id == "ev-5");
  CHECK(last1->event.kind == event_kind::test);
  CHECK(last1->deliveries.size() == 2);
  const auto last2 = db.last_event("r2");
  REQUIRE(last2);
  CHECK(last2->event.event_id == "ev-4");
  const auto again = db.last_event("r1");
  REQUIRE(again);
  CHECK(again->event.id == last1->event.id);
  CHECK_FALSE(db.last_event("r3"));

  // An event for no notifier has no deliveries.
  add_events(db, {make_event("ev-6", "r3", 6000)}, {});
  const auto last3 = db.last_event("r3");
  REQUIRE(last3);
  CHECK(last3->deliveries.empty());
}

TEST_CASE("store alerts: delivery counts") {
  store db(":memory:");
  using counts = std::vector<std::pair<delivery_status, std::int64_t>>;
  CHECK(db.delivery_counts() == counts{{delivery_status::pending, 0},
                                       {delivery_status::delivered, 0},
                                       {delivery_status::failed, 0}});
  add_events(db, {make_event("e1", "r", 1000), make_event("e2", "r", 1000)}, {"a", "b", "c"});
  const auto heads = db.due_deliveries(ms(1000));
  REQUIRE(heads.size() == 3);
  db.record_attempt(heads[0].first.id, attempt(1000, "delivered", 200), delivery_status::delivered,
                    ms(1000));
  db.record_attempt(heads[1].first.id, attempt(1000, "failed", 410, "HTTP 410"),
                    delivery_status::failed, ms(1000));
  db.record_attempt(heads[2].first.id, attempt(1000, "retry", 503, "HTTP 503"),
                    delivery_status::pending, ms(2000));
  CHECK(db.delivery_counts() == counts{{delivery_status::pending, 4},
                                       {delivery_status::delivered, 1},
                                       {delivery_status::failed, 1}});
}

TEST_CASE("store alerts: a read-only store reads what the writer wrote") {
  temp_db file;
  store writer(file.path());
  store reader(file.path(), store::mode::read_only);
  CHECK(reader.alert_events(std::nullopt, "", 100).empty());
  write_sample(writer);
  check_sample(reader);
  CHECK_THROWS_WITH_AS(reader.save_rule("x", "{}", ms(1)), doctest::Contains("readonly"),
                       store_error);
  alert_update u;
  u.events.emplace_back(make_event("ev-x", "r", 1), std::vector<std::string>{"a"});
  CHECK_THROWS_AS(reader.apply_alert_update(u), store_error);
  CHECK(u.events[0].first.id == 0);
  check_sample(writer);
}

TEST_CASE("store alerts: data survive close and reopen") {
  temp_db file;
  {
    store db(file.path());
    write_sample(db);
  }
  {
    store db(file.path());
    check_sample(db);
    // Outbox ids go on after the reopened ones.
    const auto before = db.alert_events(std::nullopt, "", 100);
    const auto next = add_events(db, {make_event("ev-2", "api-rule", 3000)}, {"a"});
    CHECK(next[0].id > before.back().event.id);
  }
  store db(file.path(), store::mode::read_only);
  CHECK(db.alert_events(std::nullopt, "api-rule", 100).size() == 2);
}

TEST_CASE("store alerts: damaged rows are reported by table and column") {
  temp_db file;
  store db(file.path());
  write_sample(db);
  sqlite::connection raw(file.path(), sqlite::connection::open_mode::read_write_create);
  // The schema's CHECKs keep such names out; only a foreign writer gets them in.
  raw.exec("PRAGMA ignore_check_constraints = ON");

  SUBCASE("a phase") {
    raw.exec("UPDATE alert_state SET phase = 'exploded'");
    CHECK_THROWS_WITH_AS(db.alert_states(), doctest::Contains("alert_state.phase"), store_error);
  }
  SUBCASE("an event kind") {
    raw.exec("UPDATE alert_event SET kind = 'shout'");
    CHECK_THROWS_WITH_AS(db.alert_events(std::nullopt, "", 10),
                         doctest::Contains("alert_event.kind"), store_error);
  }
  SUBCASE("a condition") {
    raw.exec("UPDATE alert_event SET condition = 'sideways'");
    CHECK_THROWS_WITH_AS(db.last_event("api-rule"), doctest::Contains("alert_event.condition"),
                         store_error);
  }
  SUBCASE("a delivery status") {
    raw.exec("UPDATE alert_delivery SET status = 'lost' WHERE status = 'delivered'");
    CHECK_THROWS_WITH_AS(db.delivery_counts(), doctest::Contains("alert_delivery.status"),
                         store_error);
  }
  SUBCASE("labels") {
    raw.exec("UPDATE alert_event SET labels = '[1]'");
    CHECK_THROWS_WITH_AS(db.due_deliveries(ms(1'000'000)), doctest::Contains("alert_event.labels"),
                         store_error);
  }
}

TEST_CASE("store alerts: a full database keeps each event whole with its deliveries") {
  temp_db file;
  store db(file.path());
  // A limit below the size holds the database at the size it has now.
  db.set_max_size(1);
  const std::vector<std::string> notifiers{"a", "b", "c"};

  std::size_t stored = 0;
  std::string message;
  for (int i = 0; i < 10'000 && message.empty(); ++i) {
    alert_update u;
    u.states = {full_state(fmt::format("rule-{:04}", i))};
    u.events.emplace_back(make_event(fmt::format("ev-{:04}", i), u.states[0].rule, 1000 + i),
                          notifiers);
    try {
      db.apply_alert_update(u);
      ++stored;
      CHECK(u.events[0].first.id > 0);
    } catch (const somrated::store_full_error& e) {
      message = e.what();
      CHECK(u.events[0].first.id == 0);
    }
  }
  REQUIRE_FALSE(message.empty());
  CHECK(message.find("1 alert states and 1 events not stored: database or disk is full (the "
                     "database may not grow beyond [storage] max_size = 1B") == 0);

  // Every stored event has all three deliveries and its state; the refused one has none.
  const auto events = db.alert_events(std::nullopt, "", 1000);
  CHECK(events.size() == stored);
  for (const auto& rec : events) {
    CAPTURE(rec.event.event_id);
    CHECK(rec.deliveries.size() == notifiers.size());
  }
  CHECK(db.alert_states().size() == stored);
  CHECK(count_of(db, delivery_status::pending) == static_cast<std::int64_t>(3 * stored));
  CHECK(db.alert_events(std::nullopt, fmt::format("rule-{:04}", stored), 10).empty());

  SUBCASE("an attempt that cannot be recorded leaves its delivery pending as it was") {
    const auto heads = db.due_deliveries(ms(1'000'000));
    REQUIRE_FALSE(heads.empty());
    const auto id = heads.front().first.id;
    int recorded = 0;
    CHECK_THROWS_AS(
        [&] {
          for (;; ++recorded) {
            REQUIRE(recorded < 10'000);
            db.record_attempt(id, attempt(2000 + recorded, "retry", 503, std::string(300, 'e')),
                              delivery_status::pending, ms(3000 + recorded));
          }
        }(),
        somrated::store_full_error);
    const auto after = db.due_deliveries(ms(1'000'000));
    REQUIRE_FALSE(after.empty());
    CHECK(after.front().first.id == id);
    CHECK(after.front().first.attempts == recorded);
    CHECK(after.front().first.status == delivery_status::pending);
  }

  SUBCASE("API rules are refused the same way") {
    int saved = 0;
    CHECK_THROWS_WITH_AS(
        [&] {
          for (;; ++saved) {
            REQUIRE(saved < 10'000);
            db.save_rule(fmt::format("api-{:04}", saved), std::string(300, '{'), ms(1));
          }
        }(),
        doctest::Contains("not stored: database or disk is full"), somrated::store_full_error);
    CHECK(db.stored_rules().size() == static_cast<std::size_t>(saved));
  }

  SUBCASE("once the limit is lifted the same update goes through") {
    db.set_max_size(0);
    alert_update u;
    u.states = {full_state("after")};
    u.events.emplace_back(make_event("ev-after", "after", 5000), notifiers);
    db.apply_alert_update(u);
    CHECK(db.alert_events(std::nullopt, "after", 10).at(0).deliveries.size() == 3);
  }
  CHECK(db.integrity_check() == "ok");
}
