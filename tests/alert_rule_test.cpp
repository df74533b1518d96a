#include "somrated/alert_rule.hpp"

#include <doctest/doctest.h>

#include <map>
#include <string>
#include <utility>
#include <variant>
#include <vector>

using namespace std::chrono_literals;
using somrated::alert_condition;
using somrated::alert_rule;
using somrated::config;
using somrated::decimal;
using somrated::rule_error;

namespace {

/// The default sources ("24kg", "nbkr") and two notifiers, "hook" and "pager".
config test_config() {
  config c = somrated::default_config();
  somrated::notifier_config hook;
  hook.name = "hook";
  hook.url = "http://127.0.0.1:9000/hook";
  somrated::notifier_config pager;
  pager.name = "pager";
  pager.kind = somrated::notifier_kind::slack;
  pager.url = "http://127.0.0.1:9000/slack";
  c.notifiers = {hook, pager};
  return c;
}

/// text as a decimal; the text must be valid.
decimal dec(std::string_view text) {
  const auto d = decimal::parse(text);
  REQUIRE(d);
  return *d;
}

/// A valid rule: USD above 90 on 24kg, notifying "hook".
alert_rule above_rule() {
  alert_rule r;
  r.name = "usd-above-90";
  r.currency = "USD";
  r.source = "24kg";
  r.notify = {"hook"};
  r.condition = alert_condition::above;
  r.threshold = dec("90");
  return r;
}

/// A valid rule of condition c, built on above_rule.
alert_rule rule_of(alert_condition c) {
  alert_rule r = above_rule();
  r.condition = c;
  switch (c) {
    case alert_condition::above:
    case alert_condition::below:
      break;
    case alert_condition::change_pct:
      r.threshold = dec("2.5");
      r.window = 24h;
      break;
    case alert_condition::spread_pct:
      r.threshold = dec("1.5");
      r.against = "nbkr";
      break;
    case alert_condition::stale:
      r.threshold.reset();
      r.currency.clear();
      r.stale_after = 2h;
      break;
  }
  return r;
}

/// check_rule's complaint about r, which must have one.
rule_error problem(const alert_rule& r) {
  const auto e = somrated::check_rule(r, test_config());
  REQUIRE(e);
  return *e;
}

/// The rule parsed from body, which must be valid.
alert_rule parsed(std::string_view body) {
  auto result = somrated::alert_rule_from_json(body, test_config());
  if (const auto* e = std::get_if<rule_error>(&result)) {
    FAIL_CHECK("unexpected error: field " << e->field << ": " << e->message);
    return {};
  }
  return std::get<alert_rule>(result);
}

/// The error alert_rule_from_json gives for body, which must be invalid.
rule_error json_problem(std::string_view body) {
  auto result = somrated::alert_rule_from_json(body, test_config());
  REQUIRE(std::holds_alternative<rule_error>(result));
  return std::get<rule_error>(result);
}

/// A JSON body with name, currency USD and the given members after them.
std::string body(std::string_view members) {
  return R"({"name":"r","currency":"USD",)" + std::string(members) + "}";
}

/// True when haystack contains needle.
bool has(const std::string& haystack, std::string_view needle) {
  return haystack.find(needle) != std::string::npos;
}

}  // namespace

TEST_CASE("check_rule accepts a valid rule of each condition") {
  const auto cfg = test_config();
  for (const auto c : {alert_condition::above, alert_condition::below, alert_condition::change_pct,
                       alert_condition::spread_pct, alert_condition::stale}) {
    CAPTURE(somrated::condition_name(c));
    CHECK_FALSE(somrated::check_rule(rule_of(c), cfg));
  }
  alert_rule full = above_rule();
  full.notify = {"hook", "pager"};
  full.resolve_below = dec("90");
  full.hold_for = 15min;
  full.repeat = 6h;
  full.labels = {{"severity", "warning"}, {"_team2", "fx"}};
  full.from_config = false;
  CHECK_FALSE(somrated::check_rule(full, cfg));
  alert_rule nbkr = above_rule();
  nbkr.source = "nbkr";
  nbkr.currency = "KZT";
  nbkr.notify.clear();
  CHECK_FALSE(somrated::check_rule(nbkr, cfg));
  alert_rule below = rule_of(alert_condition::below);
  below.resolve_above = dec("90.0");
  CHECK_FALSE(somrated::check_rule(below, cfg));
}

TEST_CASE("check_rule refuses what cannot work, naming the field") {
  SUBCASE("name") {
    alert_rule r = above_rule();
    r.name = "";
    CHECK(problem(r).field == "name");
    CHECK(problem(r).message == "name is required: 1 to 64 of A-Z, a-z, 0-9, '_', '.' and '-'");
    for (const char* bad : {"a b", "a/b", "ä", "x\n"}) {
      CAPTURE(bad);
      r.name = bad;
      CHECK(problem(r).field == "name");
      CHECK(has(problem(r).message, "is not valid"));
    }
    r.name = std::string(65, 'a');
    CHECK(problem(r).field == "name");
    r.name = std::string(64, 'a');
    CHECK_FALSE(somrated::check_rule(r, test_config()));
  }
  SUBCASE("source") {
    alert_rule r = above_rule();
    r.source = "24gk";
    CHECK(problem(r).field == "source");
    CHECK(problem(r).message ==
          "source \"24gk\" is not a configured source; did you mean \"24kg\"?");
    r.source = "";
    CHECK(problem(r).message ==
          "source \"\" is not a configured source (configured: \"24kg\", \"nbkr\")");
  }
  SUBCASE("currency") {
    alert_rule r = above_rule();
    r.currency = "";
    CHECK(problem(r).field == "currency");
    CHECK(problem(r).message ==
          "currency is required for above rules: 3 uppercase letters like \"USD\"");
    for (const char* bad : {"usd", "US", "USDT", "U$D"}) {
      CAPTURE(bad);
      r.currency = bad;
      CHECK(problem(r).field == "currency");
      CHECK(has(problem(r).message, "is not 3 uppercase letters"));
    }
    r.currency = "KZT";
    CHECK(problem(r).message ==
          "currency: source \"24kg\" is of kind 24kg, which publishes only USD, EUR and RUB, not "
          "\"KZT\"");
    alert_rule stale = rule_of(alert_condition::stale);
    stale.currency = "USD";
    CHECK(problem(stale).field == "currency");
    CHECK(problem(stale).message ==
          "currency does not apply to stale rules: they watch a source's scrapes, not a rate");
  }
  SUBCASE("notify") {
    alert_rule r = above_rule();
    r.notify = {"hook", "pagr"};
    CHECK(problem(r).field == "notify");
    CHECK(problem(r).message ==
          "notify names \"pagr\", which is not a configured notifier; did you mean \"pager\"?");
    r.notify = {"email"};
    CHECK(problem(r).message ==
          "notify names \"email\", which is not a configured notifier (configured: \"hook\", "
          "\"pager\")");
    r.notify = {"hook", "pager", "hook"};
    CHECK(problem(r).message == "notify lists \"hook\" twice");
    config none = test_config();
    none.notifiers.clear();
    const auto e = somrated::check_rule(above_rule(), none);
    REQUIRE(e);
    CHECK(has(e->message, "(no notifiers are configured)"));
  }
  SUBCASE("thresholds") {
    alert_rule r = above_rule();
    r.threshold.reset();
    CHECK(problem(r).field == "above");
    r.threshold = dec("0.000");
    CHECK(problem(r).field == "above");
    CHECK(problem(r).message == "above must be greater than 0, not 0.000");
    alert_rule change = rule_of(alert_condition::change_pct);
    change.threshold = dec("0");
    CHECK(problem(change).field == "change_pct");
    alert_rule stale = rule_of(alert_condition::stale);
    stale.threshold = dec("1");
    CHECK(problem(stale).field == "stale");
    CHECK(has(problem(stale).message, "a stale rule has no threshold"));
  }
  SUBCASE("stale and the other conditions do not mix") {
    alert_rule stale = rule_of(alert_condition::stale);
    stale.stale_after = 0ms;
    CHECK(problem(stale).field == "stale");
    CHECK(problem(stale).message == "stale must be a positive duration like \"2h\"");
    alert_rule r = above_rule();
    r.stale_after = 1h;
    CHECK(problem(r).field == "stale");
    CHECK(has(problem(r).message, "above and stale are both given"));
  }
  SUBCASE("window and direction belong to change_pct") {
    alert_rule change = rule_of(alert_condition::change_pct);
    change.window = 0ms;
    CHECK(problem(change).field == "window");
    CHECK(problem(change).message ==
          "window is required for change_pct rules: a positive duration like \"24h\"");
    change.window = -1h;
    CHECK(problem(change).field == "window");
    alert_rule r = above_rule();
    r.window = 1h;
    CHECK(problem(r).field == "window");
    CHECK(problem(r).message == "window applies only to change_pct rules, not above");
    r.window = 0ms;
    r.direction = somrated::alert_direction::up;
    CHECK(problem(r).field == "direction");
    CHECK(problem(r).message == "direction applies only to change_pct rules, not above");
    change.window = 1h;
    change.direction = somrated::alert_direction::down;
    CHECK_FALSE(somrated::check_rule(change, test_config()));
  }
  SUBCASE("against belongs to spread_pct and names another source") {
    alert_rule spread = rule_of(alert_condition::spread_pct);
    spread.against = "";
    CHECK(problem(spread).field == "against");
    CHECK(problem(spread).message ==
          "against is required for spread_pct rules: another configured source");
    spread.against = "nbrk";
    CHECK(problem(spread).message ==
          "against \"nbrk\" is not a configured source; did you mean \"nbkr\"?");
    spread.against = "24kg";
    CHECK(problem(spread).message == "against must name another source than source (\"24kg\")");
    spread.source = "nbkr";
    spread.currency = "KZT";
    CHECK(problem(spread).field == "against");
    CHECK(problem(spread).message ==
          "against: source \"24kg\" is of kind 24kg, which publishes only USD, EUR and RUB, not "
          "\"KZT\"");
    alert_rule r = above_rule();
    r.against = "nbkr";
    CHECK(problem(r).field == "against");
    CHECK(problem(r).message == "against applies only to spread_pct rules, not above");
  }
  SUBCASE("hysteresis on the right side of the threshold") {
    alert_rule r = above_rule();
    r.resolve_below = dec("90.01");
    CHECK(problem(r).field == "resolve_below");
    CHECK(has(problem(r).message, "resolve_below 90.01 is above the threshold above = 90"));
    r.resolve_below = dec("0");
    CHECK(problem(r).message == "resolve_below must be greater than 0, not 0");
    r.resolve_below.reset();
    r.resolve_above = dec("91");
    CHECK(problem(r).field == "resolve_above");
    CHECK(problem(r).message ==
          "resolve_above applies only to below rules, not above (use "
          "resolve_below)");
    alert_rule below = rule_of(alert_condition::below);
    below.resolve_above = dec("89.99");
    CHECK(problem(below).field == "resolve_above");
    CHECK(has(problem(below).message, "resolve_above 89.99 is below the threshold below = 90"));
    below.resolve_above.reset();
    below.resolve_below = dec("80");
    CHECK(problem(below).field == "resolve_below");
    CHECK(has(problem(below).message, "not below (a below rule resolves above resolve_above)"));
    alert_rule stale = rule_of(alert_condition::stale);
    stale.resolve_below = dec("1");
    CHECK(problem(stale).field == "resolve_below");
    alert_rule spread = rule_of(alert_condition::spread_pct);
    spread.resolve_below = dec("1.5");
    CHECK_FALSE(somrated::check_rule(spread, test_config()));
    spread.resolve_below = dec("1.6");
    CHECK(problem(spread).field == "resolve_below");
  }
  SUBCASE("for and repeat are not negative") {
    alert_rule r = above_rule();
    r.hold_for = -1s;
    CHECK(problem(r).field == "for");
    CHECK(problem(r).message == "for must not be negative (0 fires at once)");
    r.hold_for = 0s;
    r.repeat = -1s;
    CHECK(problem(r).field == "repeat");
  }
  SUBCASE("labels") {
    alert_rule r = above_rule();
    for (const char* bad : {"", "1a", "sev-erity", "a.b", "ä"}) {
      CAPTURE(bad);
      r.labels = {{bad, "x"}};
      CHECK(problem(r).field == "labels");
      CHECK(has(problem(r).message, "is not valid"));
    }
    for (const char* reserved : {"alertname", "currency", "source", "condition", "test"}) {
      CAPTURE(reserved);
      r.labels = {{reserved, "x"}};
      CHECK(problem(r).field == "labels");
      CHECK(has(problem(r).message, "is reserved"));
    }
    r.labels = {{"__name__", "x"}};
    CHECK(has(problem(r).message, "names starting with \"__\" are for internal use"));
    r.labels = {{"severity", ""}};
    CHECK(problem(r).message ==
          "label \"severity\" has an empty value; give it a value or leave it out");
  }
}

TEST_CASE("alert_rule_from_json reads every key") {
  SUBCASE("an above rule with every key") {
    const auto r = parsed(
        R"({"name":"usd-above-90","currency":"USD","source":"24kg","notify":["hook","pager"],)"
        R"("above":90.0,"for":"15m","resolve_below":"89.50","repeat":"6h",)"
        R"("labels":{"severity":"warning"}})");
    CHECK(r.name == "usd-above-90");
    CHECK(r.currency == "USD");
    CHECK(r.source == "24kg");
    CHECK(r.notify == std::vector<std::string>{"hook", "pager"});
    CHECK(r.condition == alert_condition::above);
    CHECK(r.threshold->text() == "90");
    CHECK(r.hold_for == 15min);
    CHECK(r.resolve_below->text() == "89.50");
    CHECK(r.repeat == 6h);
    CHECK(r.labels == std::map<std::string, std::string>{{"severity", "warning"}});
    CHECK_FALSE(r.from_config);
  }
  SUBCASE("defaults: the first source, no notifiers, no delay, no reminders") {
    config cfg = test_config();
    std::swap(cfg.sources[0], cfg.sources[1]);
    auto result = somrated::alert_rule_from_json(R"({"name":"k","currency":"KZT","below":5})", cfg);
    REQUIRE(std::holds_alternative<alert_rule>(result));
    const auto& r = std::get<alert_rule>(result);
    CHECK(r.source == "nbkr");
    CHECK(r.notify.empty());
    CHECK(r.hold_for == 0ms);
    CHECK(r.repeat == 0ms);
    CHECK(r.labels.empty());
    CHECK(r.threshold->text() == "5");
  }
  SUBCASE("each condition") {
    const auto change = parsed(
        body(R"("change_pct":"2.5","window":"1d","direction":"up","resolve_below":2,"for":"0")"));
    CHECK(change.condition == alert_condition::change_pct);
    CHECK(change.threshold->text() == "2.5");
    CHECK(change.window == 24h);
    CHECK(change.direction == somrated::alert_direction::up);
    CHECK(change.resolve_below->text() == "2");
    CHECK(change.hold_for == 0ms);
    const auto spread = parsed(body(R"("spread_pct":1.25,"against":"nbkr","repeat":"0s")"));
    CHECK(spread.condition == alert_condition::spread_pct);
    CHECK(spread.against == "nbkr");
    CHECK(spread.threshold->text() == "1.25");
    const auto below = parsed(body(R"("below":85,"resolve_above":"85.5")"));
    CHECK(below.condition == alert_condition::below);
    CHECK(below.resolve_above->text() == "85.5");
    const auto stale = parsed(R"({"name":"s","source":"nbkr","stale":"2h"})");
    CHECK(stale.condition == alert_condition::stale);
    CHECK(stale.stale_after == 2h);
    CHECK(stale.currency.empty());
    CHECK_FALSE(stale.threshold);
  }
  SUBCASE("numbers as JSON numbers or strings, through their shortest text") {
    const auto threshold = [](std::string_view value) {
      return parsed(body(R"("above":)" + std::string(value)))
          .threshold.value_or(decimal::parse("1").value())
          .text();
    };
    CHECK(threshold("90") == "90");
    CHECK(threshold("90.0") == "90");
    CHECK(threshold("89.75") == "89.75");
    CHECK(threshold("8.975e1") == "89.75");
    CHECK(threshold("0.1") == "0.1");
    CHECK(threshold("\"89.7500\"") == "89.7500");
    CHECK(threshold("\"0.000000000001\"") == "0.000000000001");
  }
}

TEST_CASE("alert_rule_from_json errors name the field") {
  SUBCASE("the body") {
    const auto e = json_problem(R"({"name":)");
    CHECK(e.field == "");
    CHECK(e.message == "the body is not valid JSON: incomplete JSON");
    CHECK(json_problem("").field == "");
    CHECK(json_problem("{} x").message == "the body is not valid JSON: extra data");
    CHECK(json_problem("[]").message == "the body must be a JSON object, not an array");
    CHECK(json_problem("\"x\"").message == "the body must be a JSON object, not a string");
    CHECK(json_problem("null").message == "the body must be a JSON object, not null");
  }
  SUBCASE("unknown keys suggest the closest") {
    const auto e = json_problem(body(R"("abvoe":90)"));
    CHECK(e.field == "abvoe");
    CHECK(e.message == "unknown key \"abvoe\"; did you mean \"above\"?");
    const auto far = json_problem(body(R"("above":90,"threshold":90)"));
    CHECK(far.field == "threshold");
    CHECK(has(far.message,
              "unknown key \"threshold\" (known: name, currency, source, notify, "
              "above,"));
  }
  SUBCASE("exactly one condition") {
    const auto none = json_problem(R"({"name":"r","currency":"USD"})");
    CHECK(none.field == "");
    CHECK(none.message ==
          "no condition: give exactly one of above, below, change_pct, spread_pct or stale");
    const auto two = json_problem(body(R"("below":85,"above":90)"));
    CHECK(two.field == "above");
    CHECK(has(two.message,
              "below and above are both given, but a rule has exactly one "
              "condition"));
  }
  SUBCASE("keys of another condition") {
    CHECK(json_problem(body(R"("above":90,"window":"1h")")).field == "window");
    CHECK(json_problem(body(R"("above":90,"direction":"up")")).message ==
          "direction applies only to change_pct rules, not above");
    CHECK(json_problem(body(R"("below":85,"against":"nbkr")")).field == "against");
    CHECK(json_problem(body(R"("below":85,"resolve_below":1)")).field == "resolve_below");
    CHECK(json_problem(body(R"("above":90,"resolve_above":91)")).field == "resolve_above");
    const auto stale = json_problem(R"({"name":"s","currency":"USD","stale":"1h"})");
    CHECK(stale.field == "currency");
    CHECK(has(stale.message, "currency does not apply to stale rules"));
  }
  SUBCASE("strings") {
    CHECK(json_problem(R"({"name":1,"currency":"USD","above":90})").message ==
          "name must be a string, not a number");
    CHECK(json_problem(R"({"currency":"USD","above":90})").field == "name");
    CHECK(json_problem(R"({"name":"r","currency":["USD"],"above":90})").message ==
          "currency must be a string, not an array");
    CHECK(json_problem(R"({"name":"r","currency":"usd","above":90})").field == "currency");
    CHECK(json_problem(body(R"("source":null,"above":90)")).message ==
          "source must be a string, not null");
    CHECK(json_problem(body(R"("source":"ecb","above":90)")).message ==
          "source \"ecb\" is not a configured source (configured: \"24kg\", \"nbkr\")");
    CHECK(json_problem(body(R"("spread_pct":1,"against":true)")).message ==
          "against must be a string, not a boolean");
    CHECK(json_problem(body(R"("spread_pct":1)")).field == "against");
  }
  SUBCASE("notify") {
    CHECK(json_problem(body(R"("above":90,"notify":"hook")")).message ==
          "notify must be an array of notifier names, not a string");
    CHECK(json_problem(body(R"("above":90,"notify":["hook",1])")).message ==
          "notify must hold notifier names (strings), not a number");
    const auto e = json_problem(body(R"("above":90,"notify":["hok"])"));
    CHECK(e.field == "notify");
    CHECK(e.message ==
          "notify names \"hok\", which is not a configured notifier; did you mean \"hook\"?");
  }
  SUBCASE("numbers") {
    const auto above = [](std::string_view value) {
      return json_problem(body(R"("above":)" + std::string(value)));
    };
    CHECK(above("true").field == "above");
    CHECK(above("true").message ==
          "above must be a number like 89.75 or a string like \"89.75\", not a boolean");
    CHECK(above("{}").field == "above");
    CHECK(above("0").message == "above must be greater than 0, not 0");
    CHECK(above("-1").message == "above -1 is negative; it must be greater than 0");
    CHECK(above("-0.5").message == "above -0.5 is negative; it must be greater than 0");
    CHECK(above("1e-7").message ==
          "above 1e-07 has an exponent; write it as a plain decimal like 0.00001");
    CHECK(above("1e400").message == "above is infinite; give a number like 89.75");
    CHECK(above("0.1234567890123").message ==
          "above 0.1234567890123 has 13 digits after the point; at most 12 are accepted");
    CHECK(above("18446744073709551615").message ==
          "above 18446744073709551615 has more than 18 significant digits");
    CHECK(above("\"abc\"").message == "above \"abc\" is not a number like 89.75");
    CHECK(above("\"-3\"").message == "above -3 is negative; it must be greater than 0");
    CHECK(above("\"NaN\"").message == "above \"NaN\" is not a number like 89.75");
    CHECK(json_problem(body(R"("change_pct":"x","window":"1h")")).field == "change_pct");
    CHECK(json_problem(body(R"("spread_pct":[],"against":"nbkr")")).field == "spread_pct");
    CHECK(json_problem(body(R"("above":90,"resolve_below":"9x")")).message ==
          "resolve_below \"9x\" is not a number like 89.75");
    CHECK(json_problem(body(R"("below":90,"resolve_above":false)")).field == "resolve_above");
    CHECK(json_problem(body(R"("above":90,"resolve_below":91)")).field == "resolve_below");
  }
  SUBCASE("durations") {
    CHECK(json_problem(body(R"("change_pct":1,"window":3600)")).message ==
          "window must be a duration string like \"15m\", not a number");
    CHECK(json_problem(body(R"("change_pct":1,"window":"0")")).message ==
          "window \"0\" is not a positive duration (use 30s, 10m, 1h, 1d)");
    CHECK(json_problem(body(R"("change_pct":1)")).field == "window");
    CHECK(json_problem(R"({"name":"s","stale":"0s"})").field == "stale");
    CHECK(json_problem(R"({"name":"s","stale":2})").field == "stale");
    CHECK(json_problem(body(R"("above":90,"for":"soon")")).message ==
          "for \"soon\" is not a duration (use 0, 30s, 10m, 1h, 1d)");
    CHECK(json_problem(body(R"("above":90,"for":0)")).field == "for");
    CHECK(json_problem(body(R"("above":90,"repeat":"1h-")")).field == "repeat");
    CHECK(json_problem(body(R"("above":90,"repeat":null)")).field == "repeat");
  }
  SUBCASE("direction") {
    const auto e = json_problem(body(R"("change_pct":1,"window":"1h","direction":"dwn")"));
    CHECK(e.field == "direction");
    CHECK(e.message ==
          "direction \"dwn\" is not one of \"either\", \"up\", \"down\"; did you mean \"down\"?");
    CHECK(json_problem(body(R"("change_pct":1,"window":"1h","direction":1)")).field == "direction");
  }
  SUBCASE("labels") {
    CHECK(json_problem(body(R"("above":90,"labels":["a"])")).message ==
          "labels must be an object of strings like {\"severity\": \"warning\"}, not an array");
    CHECK(json_problem(body(R"("above":90,"labels":{"severity":1})")).message ==
          "label \"severity\" must be a string, not a number");
    CHECK(json_problem(body(R"("above":90,"labels":{"source":"x"})")).field == "labels");
    CHECK(json_problem(body(R"("above":90,"labels":{"bad-name":"x"})")).field == "labels");
  }
}

TEST_CASE("alert_rule_to_json") {
  SUBCASE("compact, decimals and durations as strings, only the keys that apply") {
    alert_rule r = above_rule();
    r.threshold = dec("90.10");
    r.hold_for = 15min;
    r.resolve_below = dec("89.5");
    r.repeat = 0ms;
    CHECK(somrated::alert_rule_to_json(r) ==
          R"({"name":"usd-above-90","currency":"USD","source":"24kg","notify":["hook"],)"
          R"("above":"90.10","for":"15m","resolve_below":"89.5","repeat":"0s"})");
    alert_rule stale = rule_of(alert_condition::stale);
    stale.notify.clear();
    stale.labels = {{"severity", "page \"now\""}};
    CHECK(somrated::alert_rule_to_json(stale) ==
          R"({"name":"usd-above-90","source":"24kg","notify":[],"stale":"2h","for":"0s",)"
          R"("repeat":"0s","labels":{"severity":"page \"now\""}})");
    alert_rule change = rule_of(alert_condition::change_pct);
    change.window = 90min;
    CHECK(has(somrated::alert_rule_to_json(change),
              R"("change_pct":"2.5","window":"90m","direction":"either","for":"0s")"));
    CHECK(has(somrated::alert_rule_to_json(rule_of(alert_condition::spread_pct)),
              R"("spread_pct":"1.5","against":"nbkr","for":"0s")"));
  }
  SUBCASE("round trips through alert_rule_from_json") {
    const auto cfg = test_config();
    std::vector<alert_rule> rules;
    for (const auto c :
         {alert_condition::above, alert_condition::below, alert_condition::change_pct,
          alert_condition::spread_pct, alert_condition::stale}) {
      alert_rule r = rule_of(c);
      r.from_config = false;
      rules.push_back(r);
    }
    rules[0].resolve_below = dec("89.123456789012");
    rules[0].labels = {{"severity", "warning"}, {"team", "ünïcode \\ \"q\""}};
    rules[0].hold_for = 90s;
    rules[0].repeat = 1h + 30min;
    rules[1].resolve_above = dec("90.0");
    rules[1].notify = {"pager", "hook"};
    rules[2].direction = somrated::alert_direction::down;
    rules[2].window = 1500ms;
    rules[2].resolve_below = dec("1");
    rules[3].source = "nbkr";
    rules[3].against = "24kg";
    rules[3].currency = "EUR";
    rules[4].repeat = 7 * 24h;
    for (const auto& r : rules) {
      const auto text = somrated::alert_rule_to_json(r);
      CAPTURE(text);
      REQUIRE_FALSE(somrated::check_rule(r, cfg));
      auto back = somrated::alert_rule_from_json(text, cfg);
      REQUIRE(std::holds_alternative<alert_rule>(back));
      CHECK(std::get<alert_rule>(back) == r);
      // The decimals keep their published digits, not only their value.
      if (r.threshold) CHECK(std::get<alert_rule>(back).threshold->text() == r.threshold->text());
    }
  }
}
