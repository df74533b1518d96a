#include "somrated/alert_engine.hpp"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include <doctest/doctest.h>
#include <fmt/core.h>

#include "somrated/log.hpp"
#include "somrated/store.hpp"

using namespace somrated;
using namespace std::chrono_literals;

namespace {

/// An exact decimal from text; the test fails on bad text.
decimal dec(std::string_view text) {
  auto d = decimal::parse(text);
  REQUIRE(d);
  return *d;
}

/// A fixed point in time for the pure tests.
const timestamp t0 = timestamp(std::chrono::milliseconds(1'764'000'000'000));

/// An `above` rule on USD at 24kg.
alert_rule above(std::string_view threshold) {
  alert_rule r;
  r.name = "usd-high";
  r.currency = "USD";
  r.source = "24kg";
  r.condition = alert_condition::above;
  r.threshold = dec(threshold);
  return r;
}

/// The measurement of rule against a rate alone.
measurement at_rate(const alert_rule& r, std::string_view rate) {
  rule_inputs in;
  in.rate = dec(rate);
  return measure(r, in, t0, t0);
}

/// A fresh inactive state.
alert_state fresh() {
  alert_state s;
  s.rule = "usd-high";
  s.since = t0;
  s.created_at = t0;
  return s;
}

/// A logger that writes nowhere.
struct quiet_log {
  std::FILE* sink = std::fopen("/dev/null", "w");
  logger log{log_level::error, sink};
  ~quiet_log() { std::fclose(sink); }
};

/// A database file in the temp directory, removed (with -wal and -shm) at scope end.
struct temp_path {
  std::string path;
  temp_path() {
    std::random_device rd;
    path = (std::filesystem::temp_directory_path() /
            fmt::format("somrated-engine-test-{}-{:08x}.db", ::getpid(), rd()))
               .string();
  }
  ~temp_path() {
    for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path + suffix);
  }
};

/// Records USD = rate at 24kg at time at.
void set_usd(store& db, std::string_view rate, timestamp at) {
  const rate_quote q{"USD", dec(rate)};
  db.record("24kg", at, std::span(&q, 1), std::nullopt, 10.0);
}

/// A config with a 24kg and an nbkr source, one webhook notifier, and rules.
std::shared_ptr<const config> config_with(std::vector<alert_rule> rules) {
  config c = default_config();
  notifier_config n;
  n.name = "hook";
  n.kind = notifier_kind::webhook;
  n.url = "http://127.0.0.1:9/hook";
  c.notifiers.push_back(n);
  for (auto& r : rules) r.notify = {"hook"};
  c.alerts = std::move(rules);
  return std::make_shared<const config>(std::move(c));
}

/// The kinds of every event stored, oldest first.
std::vector<std::string> event_kinds(store& db) {
  std::vector<std::string> out;
  for (const auto& rec : db.alert_events(std::nullopt, "", 1000))
    out.emplace_back(event_kind_name(rec.event.kind));
  return out;
}

}  // namespace

TEST_CASE("alert_engine: above and below compare exact decimals with hysteresis") {
  SUBCASE("above fires strictly above and holds at the resolve level") {
    const alert_rule r = above("90");
    CHECK(at_rate(r, "90.01").fire);
    CHECK_FALSE(at_rate(r, "90").fire);
    CHECK_FALSE(at_rate(r, "90.0000").fire);
    CHECK_FALSE(at_rate(r, "90").clear);  // at the level: the state holds
    CHECK(at_rate(r, "89.99").clear);
    CHECK(at_rate(r, "89.99").value == "89.99");
  }
  SUBCASE("resolve_below widens the band") {
    alert_rule r = above("90");
    r.resolve_below = dec("89.5");
    CHECK_FALSE(at_rate(r, "89.6").clear);
    CHECK_FALSE(at_rate(r, "89.5").clear);
    CHECK(at_rate(r, "89.49").clear);
  }
  SUBCASE("below mirrors above") {
    alert_rule r = above("85");
    r.condition = alert_condition::below;
    r.resolve_above = dec("85.5");
    CHECK(at_rate(r, "84.99").fire);
    CHECK_FALSE(at_rate(r, "85").fire);
    CHECK_FALSE(at_rate(r, "85.5").clear);
    CHECK(at_rate(r, "85.51").clear);
  }
  SUBCASE("no rate yet is unknown") {
    CHECK_FALSE(measure(above("90"), {}, t0, t0).known);
  }
}

TEST_CASE("alert_engine: change_pct and spread_pct measure percent moves") {
  alert_rule r = above("2");
  r.condition = alert_condition::change_pct;
  r.window = 24h;
  rule_inputs in;
  in.past = dec("90");

  SUBCASE("a move of exactly the threshold counts, either way") {
    in.rate = dec("91.8");  // +2 %
    auto m = measure(r, in, t0, t0);
    CHECK(m.known);
    CHECK(m.fire);
    CHECK(m.value == "+2.00");
    in.rate = dec("88.2");  // -2 %
    m = measure(r, in, t0, t0);
    CHECK(m.fire);
    CHECK(m.value == "-2.00");
    in.rate = dec("91.79");
    CHECK_FALSE(measure(r, in, t0, t0).fire);
  }
  SUBCASE("direction counts one way only") {
    r.direction = alert_direction::up;
    in.rate = dec("88.2");
    CHECK_FALSE(measure(r, in, t0, t0).fire);
    r.direction = alert_direction::down;
    CHECK(measure(r, in, t0, t0).fire);
  }
  SUBCASE("resolve_below sets the level it must fall under") {
    r.resolve_below = dec("1");
    in.rate = dec("91.0");  // +1.11 %
    CHECK_FALSE(measure(r, in, t0, t0).clear);
    in.rate = dec("90.8");  // +0.89 %
    CHECK(measure(r, in, t0, t0).clear);
  }
  SUBCASE("no value a window ago is unknown") {
    in.past.reset();
    in.rate = dec("91.8");
    CHECK_FALSE(measure(r, in, t0, t0).known);
  }
  SUBCASE("percent comparisons are exact, with no tolerance either way") {
    // +2 % exactly is not at least 2.000000000001 %.
    r.threshold = dec("2.000000000001");
    in.rate = dec("91.8");
    CHECK_FALSE(measure(r, in, t0, t0).fire);
    // A move a hair under 2 % is not 2 %: (101999.999999999999 - 100000) / 100000.
    r.threshold = dec("2");
    in.past = dec("100000");
    in.rate = dec("101999.999999999999");
    CHECK_FALSE(measure(r, in, t0, t0).fire);
    in.rate = dec("102000.000000000000");
    CHECK(measure(r, in, t0, t0).fire);
    // At exactly the resolve level the state holds; a hair under, it clears.
    r.resolve_below = dec("1");
    in.past = dec("90");
    in.rate = dec("90.9");  // +1 % exactly
    CHECK_FALSE(measure(r, in, t0, t0).clear);
    in.rate = dec("90.899999999999");
    CHECK(measure(r, in, t0, t0).clear);
    // The same for a spread.
    r.condition = alert_condition::spread_pct;
    r.against = "nbkr";
    r.resolve_below.reset();
    r.threshold = dec("1.500000000001");
    in.other = dec("87");
    in.rate = dec("88.305");  // 1.5 % exactly
    CHECK_FALSE(measure(r, in, t0, t0).fire);
    r.threshold = dec("1.5");
    CHECK(measure(r, in, t0, t0).fire);
    CHECK_FALSE(measure(r, in, t0, t0).clear);
  }
  SUBCASE("spread against another source") {
    r.condition = alert_condition::spread_pct;
    r.threshold = dec("1.5");
    r.against = "nbkr";
    in.other = dec("87.00");
    in.rate = dec("88.305");  // +1.5 %
    auto m = measure(r, in, t0, t0);
    CHECK(m.fire);
    CHECK(m.value == "1.50");
    in.rate = dec("85.695");  // -1.5 %
    CHECK(measure(r, in, t0, t0).fire);
    in.rate = dec("88");
    CHECK(measure(r, in, t0, t0).clear);
  }
}

TEST_CASE("alert_engine: stale counts from the last success, or from the first evaluation") {
  alert_rule r;
  r.name = "24kg-stale";
  r.source = "24kg";
  r.condition = alert_condition::stale;
  r.stale_after = 2h;
  rule_inputs in;
  SUBCASE("never succeeded: measured from the rule's first evaluation") {
    CHECK_FALSE(measure(r, in, t0 + 1h, t0).fire);
    const auto m = measure(r, in, t0 + 2h, t0);
    CHECK(m.fire);
    CHECK(m.value == "7200");
    CHECK_FALSE(m.clear);
  }
  SUBCASE("a recent success clears it") {
    in.last_success = t0 - 3h;
    CHECK(measure(r, in, t0, t0).fire);
    in.last_success = t0 - 1min;
    const auto m = measure(r, in, t0, t0);
    CHECK_FALSE(m.fire);
    CHECK(m.clear);
  }
}

TEST_CASE("alert_engine: the state machine fires once, reminds, and resolves") {
  alert_rule r = above("90");

  SUBCASE("without for: inactive -> firing -> resolved -> firing") {
    auto s1 = step(r, fresh(), at_rate(r, "91"), t0);
    CHECK(s1.state.phase == alert_phase::firing);
    REQUIRE(s1.event);
    CHECK(*s1.event == event_kind::firing);
    CHECK(s1.state.started_at == t0);

    auto s2 = step(r, s1.state, at_rate(r, "92"), t0 + 1min);
    CHECK(s2.state.phase == alert_phase::firing);
    CHECK_FALSE(s2.event);  // no message per observation while it holds
    CHECK(s2.state.value == "92");

    auto s3 = step(r, s2.state, at_rate(r, "89"), t0 + 2min);
    CHECK(s3.state.phase == alert_phase::resolved);
    REQUIRE(s3.event);
    CHECK(*s3.event == event_kind::resolved);
    CHECK(s3.state.started_at == t0);  // kept for the resolved message

    auto s4 = step(r, s3.state, at_rate(r, "89"), t0 + 3min);
    CHECK(s4.state.phase == alert_phase::resolved);
    CHECK_FALSE(s4.event);

    auto s5 = step(r, s4.state, at_rate(r, "90.5"), t0 + 4min);
    CHECK(s5.state.phase == alert_phase::firing);
    CHECK(s5.state.started_at == t0 + 4min);
  }

  SUBCASE("for: pending first, firing once it held long enough") {
    r.hold_for = 15min;
    auto s1 = step(r, fresh(), at_rate(r, "91"), t0);
    CHECK(s1.state.phase == alert_phase::pending);
    CHECK_FALSE(s1.event);
    auto s2 = step(r, s1.state, at_rate(r, "91"), t0 + 14min);
    CHECK(s2.state.phase == alert_phase::pending);
    CHECK_FALSE(s2.event);
    auto s3 = step(r, s2.state, at_rate(r, "91"), t0 + 15min);
    CHECK(s3.state.phase == alert_phase::firing);
    CHECK(s3.event == event_kind::firing);
  }

  SUBCASE("for: a blip shorter than for sends nothing") {
    r.hold_for = 15min;
    auto s1 = step(r, fresh(), at_rate(r, "91"), t0);
    auto s2 = step(r, s1.state, at_rate(r, "90"), t0 + 5min);
    CHECK(s2.state.phase == alert_phase::inactive);
    CHECK_FALSE(s2.event);
    auto s3 = step(r, s2.state, at_rate(r, "91"), t0 + 20min);
    CHECK(s3.state.phase == alert_phase::pending);  // the clock starts again
    CHECK(s3.state.since == t0 + 20min);
  }

  SUBCASE("repeat reminds while firing, counted from the last notification") {
    r.repeat = 6h;
    auto s = step(r, fresh(), at_rate(r, "91"), t0).state;
    auto a = step(r, s, at_rate(r, "91"), t0 + 6h - 1s);
    CHECK_FALSE(a.event);
    auto b = step(r, a.state, at_rate(r, "91"), t0 + 6h);
    CHECK(b.event == event_kind::reminder);
    CHECK(b.state.last_notified == t0 + 6h);
    CHECK(b.state.started_at == t0);
    auto c = step(r, b.state, at_rate(r, "91"), t0 + 11h);
    CHECK_FALSE(c.event);
  }

  SUBCASE("unknown data leaves every phase alone") {
    auto firing = step(r, fresh(), at_rate(r, "91"), t0).state;
    auto s = step(r, firing, measurement{}, t0 + 1h);
    CHECK(s.state.phase == alert_phase::firing);
    CHECK_FALSE(s.event);
    CHECK(s.state.evaluated_at == t0 + 1h);
  }
}

TEST_CASE("alert_engine: evaluate persists state, so a restart neither re-sends nor forgets") {
  quiet_log q;
  temp_path tmp;
  alert_rule slow = above("90");
  slow.name = "usd-slow";
  slow.hold_for = 10min;
  auto cfg = config_with({above("90"), slow});

  {
    store db(tmp.path);
    alert_engine engine(cfg, q.log);
    set_usd(db, "89", t0);
    CHECK(engine.evaluate(db, t0) == 0);
    set_usd(db, "91", t0 + 1min);
    CHECK(engine.evaluate(db, t0 + 1min) == 1);  // usd-high fires; usd-slow is pending
    CHECK(engine.evaluate(db, t0 + 2min) == 0);
  }
  SUBCASE("restart while firing and pending") {
    store db(tmp.path);
    alert_engine engine(cfg, q.log);
    CHECK(engine.evaluate(db, t0 + 3min) == 0);  // no second firing after the restart
    // The pending rule keeps its start across the restart: it fires 10 min after it began.
    CHECK(engine.evaluate(db, t0 + 10min) == 0);
    CHECK(engine.evaluate(db, t0 + 11min) == 1);
    CHECK(event_kinds(db) == std::vector<std::string>{"firing", "firing"});
    const auto events = db.alert_events(std::nullopt, "", 10);
    REQUIRE(events.size() == 2);
    CHECK(events[0].event.rule == "usd-high");
    CHECK(events[1].event.rule == "usd-slow");
    CHECK(events[0].event.labels.at("alertname") == "usd-high");
    CHECK(events[0].event.labels.at("currency") == "USD");
    CHECK(events[0].event.value == "91");
    CHECK(events[0].event.threshold == "90");
    REQUIRE(events[0].deliveries.size() == 1);
    CHECK(events[0].deliveries[0].first.notifier == "hook");
    CHECK(events[0].deliveries[0].first.status == delivery_status::pending);
  }
  SUBCASE("restart after resolving does not resolve again") {
    {
      store db(tmp.path);
      alert_engine engine(cfg, q.log);
      set_usd(db, "89", t0 + 4min);
      CHECK(engine.evaluate(db, t0 + 4min) == 1);  // usd-high resolves; usd-slow drops out
    }
    store db(tmp.path);
    alert_engine engine(cfg, q.log);
    CHECK(engine.evaluate(db, t0 + 5min) == 0);
    CHECK(event_kinds(db) == std::vector<std::string>{"firing", "resolved"});
    const auto states = db.alert_states();
    REQUIRE(states.size() == 2);
    CHECK(states[0].rule == "usd-high");
    CHECK(states[0].phase == alert_phase::resolved);
    CHECK(states[1].rule == "usd-slow");
    CHECK(states[1].phase == alert_phase::inactive);
  }
  SUBCASE("a rule removed from the config while firing is resolved once") {
    store db(tmp.path);
    alert_engine engine(config_with({slow}), q.log);
    CHECK(engine.evaluate(db, t0 + 3min) == 1);
    CHECK(event_kinds(db) == std::vector<std::string>{"firing", "resolved"});
    const auto events = db.alert_events(std::nullopt, "usd-high", 10);
    REQUIRE(events.size() == 2);
    CHECK(events[1].event.labels.at("currency") == "USD");
    REQUIRE(events[1].deliveries.size() == 1);
    CHECK(events[1].deliveries[0].first.notifier == "hook");
    CHECK(engine.evaluate(db, t0 + 4min) == 0);
  }
}

TEST_CASE("alert_engine: change_pct reads the value in force a window ago") {
  quiet_log q;
  store db(":memory:");
  alert_rule r = above("2");
  r.name = "usd-move";
  r.condition = alert_condition::change_pct;
  r.window = 24h;
  alert_engine engine(config_with({r}), q.log);
  set_usd(db, "90", t0);
  set_usd(db, "91", t0 + 20h);
  CHECK(engine.evaluate(db, t0 + 20h) == 0);  // nothing known 24 h before
  CHECK(engine.evaluate(db, t0 + 24h) == 0);  // +1.11 %
  set_usd(db, "91.80", t0 + 25h);
  CHECK(engine.evaluate(db, t0 + 25h) == 1);  // +2.00 % against 90 in force at t0 + 1h
  const auto events = db.alert_events(std::nullopt, "", 10);
  REQUIRE(events.size() == 1);
  CHECK(events[0].event.value == "+2.00");
  CHECK(events[0].event.rate == "91.80");
}

TEST_CASE("alert_engine: test events and removal of API rules") {
  quiet_log q;
  store db(":memory:");
  auto cfg = config_with({above("90")});
  alert_engine engine(cfg, q.log);
  set_usd(db, "91", t0);

  SUBCASE("a test event carries test=true and goes to the rule's notifiers") {
    auto e = engine.test(db, "usd-high", t0);
    REQUIRE(e);
    CHECK(e->kind == event_kind::test);
    CHECK(e->labels.at("test") == "true");
    CHECK(e->rate == "91");
    CHECK_FALSE(engine.test(db, "nope", t0));
    const auto events = db.alert_events(std::nullopt, "", 10);
    REQUIRE(events.size() == 1);
    CHECK(events[0].deliveries.size() == 1);
  }
  SUBCASE("config rules are read-only; unknown rules are not found") {
    CHECK(engine.remove(db, "usd-high", t0) == alert_engine::removal::read_only);
    CHECK(engine.remove(db, "nope", t0) == alert_engine::removal::not_found);
  }
}

TEST_CASE("alert_engine: an API rule named like a config rule is not evaluated twice") {
  // The config gained a rule of the same name after the API rule was stored; judging both
  // under one state would make them overwrite each other and fire on every pass.
  quiet_log q;
  store db(":memory:");
  alert_engine engine(config_with({above("90")}), q.log);
  db.save_rule("usd-high", R"({"name":"usd-high","currency":"USD","above":"95"})", t0);
  set_usd(db, "92", t0);

  CHECK(engine.evaluate(db, t0) == 1);
  CHECK(engine.evaluate(db, t0 + 1min) == 0);
  CHECK(engine.evaluate(db, t0 + 2min) == 0);
  CHECK(event_kinds(db) == std::vector<std::string>{"firing"});

  const rule_set set = load_rules(db, engine.cfg());
  REQUIRE(set.rules.size() == 1);
  CHECK(set.rules[0].from_config);
  REQUIRE(set.broken.size() == 1);
  CHECK(set.broken[0].first == "usd-high");
  CHECK(set.broken[0].second.find("config") != std::string::npos);

  SUBCASE("deleting it removes the stored rule and leaves the config rule alone") {
    CHECK(engine.remove(db, "usd-high", t0 + 3min) == alert_engine::removal::removed);
    CHECK(db.stored_rules().empty());
    const auto states = db.alert_states();
    REQUIRE(states.size() == 1);
    CHECK(states[0].phase == alert_phase::firing);
    CHECK(event_kinds(db) == std::vector<std::string>{"firing"});
    CHECK(engine.remove(db, "usd-high", t0 + 4min) == alert_engine::removal::read_only);
  }
}

TEST_CASE("alert_engine: deleting a firing API rule that no longer fits the config resolves it") {
  quiet_log q;
  store db(":memory:");
  const rate_quote usd{"USD", dec("92")};
  db.record("nbkr", t0, std::span(&usd, 1), std::nullopt, 10.0);
  db.save_rule("nbkr-high",
               R"({"name":"nbkr-high","currency":"USD","source":"nbkr","above":"90",)"
               R"("notify":["hook"],"labels":{"team":"fx"}})",
               t0);
  auto cfg = config_with({});
  {
    alert_engine engine(cfg, q.log);
    CHECK(engine.evaluate(db, t0) == 1);
  }
  // The nbkr source is gone from the config: the stored rule is broken while firing.
  config without_nbkr = *cfg;
  std::erase_if(without_nbkr.sources, [](const source_config& s) { return s.name == "nbkr"; });
  alert_engine engine(std::make_shared<const config>(without_nbkr), q.log);
  REQUIRE(load_rules(db, engine.cfg()).broken.size() == 1);
  CHECK(engine.evaluate(db, t0 + 1min) == 0);  // kept firing, not judged

  CHECK(engine.remove(db, "nbkr-high", t0 + 2min) == alert_engine::removal::removed);
  CHECK(event_kinds(db) == std::vector<std::string>{"firing", "resolved"});
  const auto events = db.alert_events(std::nullopt, "nbkr-high", 10);
  REQUIRE(events.size() == 2);
  const alert_event& resolved = events[1].event;
  CHECK(resolved.ends_at == t0 + 2min);
  CHECK(resolved.starts_at == t0);
  CHECK(resolved.source == "nbkr");
  CHECK(resolved.labels.at("team") == "fx");
  REQUIRE(events[1].deliveries.size() == 1);
  CHECK(events[1].deliveries[0].first.notifier == "hook");
  CHECK(db.alert_states().empty());
  CHECK(db.stored_rules().empty());
}
