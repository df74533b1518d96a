#include "somrated/notify.hpp"

#include <chrono>
#include <cstddef>
#include <fstream>
#include <iterator>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <doctest/doctest.h>
#include <fmt/format.h>
#include <boost/json.hpp>

#include "somrated/time.hpp"

namespace {

namespace json = boost::json;
using namespace std::chrono_literals;
using somrated::alert_condition;
using somrated::alert_event;
using somrated::delivery_verdict;
using somrated::event_kind;
using somrated::fetch_result;
using somrated::notifier_config;
using somrated::notifier_kind;
using somrated::timestamp;

constexpr std::string_view external_url = "http://rates.example:8080";

/// True when text contains part.
bool contains(std::string_view text, std::string_view part) {
  return text.find(part) != std::string_view::npos;
}

/// A time given as RFC 3339 text.
timestamp at(std::string_view text) {
  const auto t = somrated::parse_time(text);
  REQUIRE_MESSAGE(t.has_value(), "bad time ", text);
  return *t;
}

/// Reads a file under tests/data/integrations/ and parses it as JSON.
json::value read_fixture(const std::string& name) {
  const std::string path = std::string{SOMRATED_TEST_DATA} + "/integrations/" + name;
  std::ifstream in{path, std::ios::binary};
  REQUIRE_MESSAGE(in, "cannot open ", path);
  return json::parse(std::string{std::istreambuf_iterator<char>{in}, {}});
}

/// A JSON string's text; a value of another kind gives a marker that matches nothing.
std::string text_of(const json::value& v) {
  return v.is_string() ? std::string(v.get_string()) : "<not a string>";
}

/// Number of Unicode code points in UTF-8 text.
std::size_t code_points(std::string_view s) {
  std::size_t n = 0;
  for (const char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return n;
}

/// A rule's event as the engine would make it: firing 15 minutes after the episode
/// started; a resolved one ends 13 minutes later.
alert_event make_event(alert_condition c, event_kind k) {
  alert_event e;
  e.id = 7;
  e.event_id = "5f0c6a9e-3a1b-4c2d-9e8f-0123456789ab";
  e.kind = k;
  e.condition = c;
  e.starts_at = at("2026-11-28T10:37:00Z");
  e.at = at("2026-11-28T10:52:00Z");
  e.source = "24kg";
  e.currency = "USD";
  e.rate = "91.20";
  switch (c) {
    case alert_condition::above:
      e.rule = "usd-above-90";
      e.threshold = "90";
      e.value = "91.20";
      break;
    case alert_condition::below:
      e.rule = "usd-below-85";
      e.threshold = "85";
      e.value = "84.10";
      e.rate = "84.10";
      break;
    case alert_condition::change_pct:
      e.rule = "usd-move";
      e.threshold = "2";
      e.value = "2.31";
      break;
    case alert_condition::spread_pct:
      e.rule = "usd-spread";
      e.threshold = "1.5";
      e.value = "1.8";
      e.against = "nbkr";
      break;
    case alert_condition::stale:
      e.rule = "24kg-stale";
      e.threshold = "2h";
      e.value = "7500";
      e.currency.clear();
      e.rate.clear();
      break;
  }
  if (k == event_kind::resolved) {
    e.at = at("2026-11-28T11:05:00Z");
    e.ends_at = e.at;
  }
  if (k == event_kind::test) e.starts_at = e.at;
  e.labels = {{"alertname", e.rule},
              {"source", e.source},
              {"condition", std::string(somrated::condition_name(c))},
              {"severity", "warning"}};
  if (!e.currency.empty()) e.labels["currency"] = e.currency;
  if (k == event_kind::test) e.labels["test"] = "true";
  return e;
}

/// A notifier of a kind with a loopback URL.
notifier_config make_notifier(notifier_kind k, std::string language = "en") {
  notifier_config n;
  n.name = "hook";
  n.kind = k;
  n.url = "http://127.0.0.1:9000/hook";
  n.language = std::move(language);
  return n;
}

/// The value of a header, or nullopt; names compare exactly.
std::optional<std::string> header(const somrated::outgoing_request& r, std::string_view name) {
  for (const auto& [k, v] : r.headers) {
    if (k == name) return v;
  }
  return std::nullopt;
}

/// The keys of an object, in order.
std::vector<std::string> keys(const json::object& o) {
  std::vector<std::string> out;
  for (const auto& kv : o) out.emplace_back(kv.key());
  return out;
}

/// Checks that got has want's keys in want's order, each value of the same JSON kind.
void check_same_shape(const json::object& got, const json::object& want) {
  CHECK(keys(got) == keys(want));
  for (const auto& kv : want) {
    CAPTURE(kv.key());
    const auto* g = got.if_contains(kv.key());
    REQUIRE(g != nullptr);
    CHECK(g->kind() == kv.value().kind());
  }
}

/// Every condition, for loops.
constexpr alert_condition all_conditions[] = {alert_condition::above, alert_condition::below,
                                              alert_condition::change_pct,
                                              alert_condition::spread_pct, alert_condition::stale};
/// Every event kind, for loops.
constexpr event_kind all_kinds[] = {event_kind::firing, event_kind::reminder, event_kind::resolved,
                                    event_kind::test};

}  // namespace

TEST_CASE("alert_fingerprint matches Alertmanager") {
  SUBCASE("the captured alert") {
    const json::value fixture = read_fixture("alertmanager-0.25-webhook-firing.json");
    const json::object& alert = fixture.at("alerts").at(0).as_object();
    std::map<std::string, std::string> labels;
    for (const auto& kv : alert.at("labels").as_object()) {
      labels.emplace(kv.key(), std::string(kv.value().as_string()));
    }
    CHECK(somrated::alert_fingerprint(labels) == "587e76018b335179");
    CHECK(somrated::alert_fingerprint(labels) == alert.at("fingerprint").as_string());
  }
  SUBCASE("no labels is the FNV-1a offset basis") {
    CHECK(somrated::alert_fingerprint({}) == "cbf29ce484222325");
  }
  SUBCASE("names and values are separated") {
    CHECK(somrated::alert_fingerprint({{"ab", "c"}}) != somrated::alert_fingerprint({{"a", "bc"}}));
    CHECK(somrated::alert_fingerprint({{"a", "1"}}).size() == 16);
  }
}

TEST_CASE("webhook body has Alertmanager 0.25's shape") {
  const notifier_config n = make_notifier(notifier_kind::webhook);

  SUBCASE("firing") {
    const json::value fixture = read_fixture("alertmanager-0.25-webhook-firing.json");
    const alert_event e = make_event(alert_condition::above, event_kind::firing);
    const auto req = somrated::build_request(n, e, external_url);
    CHECK(req.method == "POST");
    CHECK(req.url == n.url);
    CHECK(header(req, "Content-Type") == "application/json");
    CHECK(header(req, "X-Somrated-Event-Id") == e.event_id);

    const json::object body = json::parse(req.body).as_object();
    json::object want = fixture.as_object();
    want.emplace("eventId", "");
    check_same_shape(body, want);
    check_same_shape(body.at("alerts").at(0).as_object(), fixture.at("alerts").at(0).as_object());
    CHECK(body.at("alerts").as_array().size() == 1);

    const json::object& alert = body.at("alerts").at(0).as_object();
    CHECK(body.at("receiver") == "hook");
    CHECK(body.at("status") == "firing");
    CHECK(body.at("version") == "4");
    CHECK(body.at("groupKey") == "{}:{alertname=\"usd-above-90\"}");
    CHECK(body.at("truncatedAlerts") == 0);
    CHECK(body.at("externalURL") == "http://rates.example:8080");
    CHECK(text_of(body.at("eventId")) == e.event_id);
    CHECK(body.at("groupLabels") == json::object{{"alertname", "usd-above-90"}});
    CHECK(alert.at("status") == "firing");
    CHECK(alert.at("startsAt") == "2026-11-28T10:37:00Z");
    CHECK(alert.at("endsAt") == "0001-01-01T00:00:00Z");
    CHECK(alert.at("generatorURL") == "http://rates.example:8080/api/v1/alerts");
    CHECK(text_of(alert.at("fingerprint")) == somrated::alert_fingerprint(e.labels));
    CHECK(alert.at("labels") == body.at("commonLabels"));
    CHECK(alert.at("annotations") == body.at("commonAnnotations"));
    CHECK(alert.at("labels") == json::object{{"alertname", "usd-above-90"},
                                             {"condition", "above"},
                                             {"currency", "USD"},
                                             {"severity", "warning"},
                                             {"source", "24kg"}});
    const json::object& annotations = alert.at("annotations").as_object();
    CHECK(keys(annotations) == std::vector<std::string>{"rate", "summary", "threshold", "value"});
    CHECK(text_of(annotations.at("summary")) == somrated::render_message(n, e));
    CHECK(annotations.at("value") == "91.20");
    CHECK(annotations.at("threshold") == "90");
    CHECK(annotations.at("rate") == "91.20");
  }

  SUBCASE("resolved") {
    const json::value fixture = read_fixture("alertmanager-0.25-webhook-resolved.json");
    const alert_event e = make_event(alert_condition::above, event_kind::resolved);
    const json::object body =
        json::parse(somrated::build_request(n, e, "http://rates.example:8080/").body).as_object();
    json::object want = fixture.as_object();
    want.emplace("eventId", "");
    check_same_shape(body, want);
    const json::object& alert = body.at("alerts").at(0).as_object();
    check_same_shape(alert, fixture.at("alerts").at(0).as_object());
    CHECK(body.at("status") == "resolved");
    CHECK(alert.at("status") == "resolved");
    CHECK(alert.at("endsAt") == "2026-11-28T11:05:00Z");
    CHECK(body.at("externalURL") == "http://rates.example:8080");
  }

  SUBCASE("the fixture's labels give the fixture's fingerprint and group key") {
    const json::value fixture = read_fixture("alertmanager-0.25-webhook-firing.json");
    alert_event e = make_event(alert_condition::change_pct, event_kind::firing);
    e.labels = {{"alertname", "FxRateMoved"},
                {"pair", "EURUSD"},
                {"severity", "warning"},
                {"source", "fxrated"}};
    const json::object body =
        json::parse(somrated::build_request(n, e, external_url).body).as_object();
    CHECK(body.at("alerts").at(0).at("fingerprint") == "587e76018b335179");
    CHECK(body.at("alerts").at(0).at("labels") == fixture.at("alerts").at(0).at("labels"));
    CHECK(body.at("commonLabels") == fixture.at("commonLabels"));
  }

  SUBCASE("reminder and test events are firing") {
    for (const event_kind k : {event_kind::reminder, event_kind::test}) {
      const json::object body =
          json::parse(
              somrated::build_request(n, make_event(alert_condition::above, k), external_url).body)
              .as_object();
      CHECK(body.at("status") == "firing");
      CHECK(body.at("alerts").at(0).at("endsAt") == "0001-01-01T00:00:00Z");
    }
  }

  SUBCASE("empty numbers are left out of the annotations") {
    alert_event e = make_event(alert_condition::stale, event_kind::firing);
    const json::object body =
        json::parse(somrated::build_request(n, e, external_url).body).as_object();
    CHECK(keys(body.at("commonAnnotations").as_object()) ==
          std::vector<std::string>{"summary", "threshold", "value"});
  }
}

TEST_CASE("alertmanager request posts one postableAlert") {
  notifier_config n = make_notifier(notifier_kind::alertmanager);
  n.resend = 1min;
  n.url = "http://127.0.0.1:9093";

  SUBCASE("URL") {
    const alert_event e = make_event(alert_condition::above, event_kind::firing);
    CHECK(somrated::build_request(n, e, external_url).url == "http://127.0.0.1:9093/api/v2/alerts");
    n.url = "http://127.0.0.1:9093/";
    CHECK(somrated::build_request(n, e, external_url).url == "http://127.0.0.1:9093/api/v2/alerts");
    n.url = "http://127.0.0.1:9093/am/";
    CHECK(somrated::build_request(n, e, external_url).url ==
          "http://127.0.0.1:9093/am/api/v2/alerts");
    n.url = "http://127.0.0.1:9093/?tenant=kg";
    CHECK(somrated::build_request(n, e, external_url).url ==
          "http://127.0.0.1:9093/api/v2/alerts?tenant=kg");
  }

  SUBCASE("firing, reminder and test end four resend periods ahead") {
    for (const event_kind k : {event_kind::firing, event_kind::reminder, event_kind::test}) {
      CAPTURE(somrated::event_kind_name(k));
      const alert_event e = make_event(alert_condition::above, k);
      const auto req = somrated::build_request(n, e, external_url);
      CHECK(req.method == "POST");
      CHECK(header(req, "Content-Type") == "application/json");
      CHECK(header(req, "X-Somrated-Event-Id") == e.event_id);
      const json::value body = json::parse(req.body);
      REQUIRE(body.is_array());
      REQUIRE(body.as_array().size() == 1);
      const json::object& alert = body.at(0).as_object();
      // postableAlert: startsAt, endsAt, annotations, plus alert's labels and generatorURL.
      CHECK(keys(alert) == std::vector<std::string>{"labels", "annotations", "startsAt", "endsAt",
                                                    "generatorURL"});
      for (const char* set : {"labels", "annotations"}) {
        for (const auto& kv : alert.at(set).as_object()) CHECK(kv.value().is_string());
      }
      CHECK(alert.at("labels").at("alertname") == "usd-above-90");
      CHECK(text_of(alert.at("annotations").at("summary")) == somrated::render_message(n, e));
      CHECK(somrated::parse_time(alert.at("startsAt").as_string()) == e.starts_at);
      CHECK(somrated::parse_time(alert.at("endsAt").as_string()) == e.at + 4min);
      CHECK(alert.at("generatorURL") == "http://rates.example:8080/api/v1/alerts");
      if (k == event_kind::test) CHECK(alert.at("labels").at("test") == "true");
    }
  }

  SUBCASE("resolved ends at its end") {
    const alert_event e = make_event(alert_condition::above, event_kind::resolved);
    const json::value body = json::parse(somrated::build_request(n, e, external_url).body);
    CHECK(body.at(0).at("endsAt") == "2026-11-28T11:05:00Z");
  }

  SUBCASE("a snapshot without alertname still names the alert") {
    alert_event e = make_event(alert_condition::above, event_kind::firing);
    e.labels.clear();
    const json::value body = json::parse(somrated::build_request(n, e, external_url).body);
    CHECK(body.at(0).at("labels") == json::object{{"alertname", "usd-above-90"}});
  }
}

TEST_CASE("slack request") {
  const notifier_config n = make_notifier(notifier_kind::slack);
  const alert_event e = make_event(alert_condition::above, event_kind::firing);
  const auto req = somrated::build_request(n, e, external_url);
  CHECK(req.method == "POST");
  CHECK(req.url == n.url);
  CHECK(
      req.body ==
      R"({"text":"usd-above-90 is firing: USD at 24kg is 91.20, above 90. Since 2026-11-28 10:37 UTC."})");
  CHECK(req.headers ==
        std::vector<std::pair<std::string, std::string>>{{"Content-Type", "application/json"},
                                                         {"X-Somrated-Event-Id", e.event_id}});
}

TEST_CASE("telegram request") {
  notifier_config n = make_notifier(notifier_kind::telegram, "ru");
  n.url.clear();
  n.bot_token = "123456:ABC-def";
  n.chat_id = "-100123";
  const alert_event e = make_event(alert_condition::above, event_kind::firing);

  SUBCASE("exact request") {
    const auto req = somrated::build_request(n, e, external_url);
    CHECK(req.method == "POST");
    CHECK(req.url == "https://api.telegram.org/bot123456:ABC-def/sendMessage");
    CHECK(
        req.body ==
        R"({"chat_id":-100123,"text":"Сработало оповещение usd-above-90: курс USD по данным 24kg — 91.20, выше 90. Активно с 2026-11-28 10:37 UTC.","parse_mode":"HTML","disable_web_page_preview":true})");
    CHECK(req.headers ==
          std::vector<std::pair<std::string, std::string>>{{"Content-Type", "application/json"},
                                                           {"X-Somrated-Event-Id", e.event_id}});
  }

  SUBCASE("a local Bot API server and a channel name") {
    n.url = "http://127.0.0.1:8081/";
    n.chat_id = "@rates_kg";
    const auto req = somrated::build_request(n, e, external_url);
    CHECK(req.url == "http://127.0.0.1:8081/bot123456:ABC-def/sendMessage");
    CHECK(json::parse(req.body).at("chat_id") == "@rates_kg");
  }

  SUBCASE("a token that is not valid in a path is sent as it is, without throwing") {
    n.bot_token = "12:a%zz";
    CHECK(somrated::build_request(n, e, external_url).url ==
          "https://api.telegram.org/bot12:a%zz/sendMessage");
  }

  SUBCASE("HTML is escaped") {
    n.template_firing = "<b>{rule}</b> & {rate} > 90";
    const auto body = json::parse(somrated::build_request(n, e, external_url).body);
    CHECK(body.at("text") == "&lt;b&gt;usd-above-90&lt;/b&gt; &amp; 91.20 &gt; 90");
  }

  SUBCASE("long text is cut at 4096 code points, not bytes") {
    std::string text;
    for (int i = 0; i < 5000; ++i) text += "ж";
    n.template_firing = text;
    const auto body = json::parse(somrated::build_request(n, e, external_url).body);
    const std::string_view sent = body.at("text").as_string();
    CHECK(code_points(sent) == 4096);
    CHECK(sent.size() == 4095 * 2 + 3);
    CHECK(sent.substr(sent.size() - 3) == "\u2026");
    CHECK(sent.substr(0, 2) == "ж");
  }

  SUBCASE("text of exactly 4096 code points is kept whole") {
    std::string text;
    for (int i = 0; i < 4096; ++i) text += "ы";
    n.template_firing = text;
    const auto body = json::parse(somrated::build_request(n, e, external_url).body);
    CHECK(text_of(body.at("text")) == text);
  }

  SUBCASE("the cut comes before escaping, so no entity is split") {
    std::string text;
    for (int i = 0; i < 4094; ++i) text += "я";
    n.template_firing = text + "&&&&";
    const auto body = json::parse(somrated::build_request(n, e, external_url).body);
    CHECK(text_of(body.at("text")) == text + "&amp;\u2026");
  }
}

TEST_CASE("ntfy request") {
  notifier_config n = make_notifier(notifier_kind::ntfy);
  n.url = "http://127.0.0.1:8090/rates";

  SUBCASE("firing, English") {
    const alert_event e = make_event(alert_condition::above, event_kind::firing);
    const auto req = somrated::build_request(n, e, external_url);
    CHECK(req.method == "POST");
    CHECK(req.url == n.url);
    CHECK(req.body ==
          "usd-above-90 is firing: USD at 24kg is 91.20, above 90. Since 2026-11-28 "
          "10:37 UTC.");
    CHECK(req.headers == std::vector<std::pair<std::string, std::string>>{
                             {"Content-Type", "text/plain; charset=utf-8"},
                             {"Title", "USD above 90: firing"},
                             {"Priority", "high"},
                             {"Tags", "warning"},
                             {"X-Somrated-Event-Id", e.event_id}});
  }

  SUBCASE("defaults per kind") {
    auto req = somrated::build_request(n, make_event(alert_condition::above, event_kind::resolved),
                                       external_url);
    CHECK(header(req, "Title") == "USD above 90: resolved");
    CHECK(header(req, "Priority") == "default");
    CHECK(header(req, "Tags") == "white_check_mark");
    req = somrated::build_request(n, make_event(alert_condition::above, event_kind::reminder),
                                  external_url);
    CHECK(header(req, "Priority") == "default");
    CHECK(header(req, "Tags") == "warning");
    req = somrated::build_request(n, make_event(alert_condition::above, event_kind::test),
                                  external_url);
    CHECK(header(req, "Title") == "USD above 90: test");
    CHECK(header(req, "Tags") == "information_source");
  }

  SUBCASE("the notifier's priority and tags win") {
    n.priority = "5";
    n.tags = {"rotating_light", "kgs"};
    const auto req = somrated::build_request(
        n, make_event(alert_condition::above, event_kind::firing), external_url);
    CHECK(header(req, "Priority") == "5");
    CHECK(header(req, "Tags") == "rotating_light,kgs");
  }

  SUBCASE("non-ASCII titles are RFC 2047 encoded") {
    n.language = "ru";
    auto req = somrated::build_request(n, make_event(alert_condition::above, event_kind::firing),
                                       external_url);
    // base64 of "USD выше 90: сработало".
    CHECK(header(req, "Title") == "=?UTF-8?B?VVNEINCy0YvRiNC1IDkwOiDRgdGA0LDQsdC+0YLQsNC70L4=?=");
    CHECK(contains(req.body, "Сработало оповещение usd-above-90"));

    // "24kg: 2 саат бою жаңыртуу жок: иштеди" is 61 bytes: two words, cut between characters.
    n.language = "ky";
    req = somrated::build_request(n, make_event(alert_condition::stale, event_kind::firing),
                                  external_url);
    CHECK(header(req, "Title") ==
          "=?UTF-8?B?MjRrZzogMiDRgdCw0LDRgiDQsdC+0Y4g0LbQsNKj0YvRgNGC0YPRgyDQttC+?= "
          "=?UTF-8?B?0Lo6INC40YjRgtC10LTQuA==?=");
  }
}

TEST_CASE("notifier headers follow the event id and may replace built-in ones") {
  notifier_config n = make_notifier(notifier_kind::webhook);
  n.headers = {{"Authorization", "Bearer abc"},
               {"content-type", "application/vnd.hook+json"},
               {"x-somrated-event-id", "forged"}};
  const alert_event e = make_event(alert_condition::above, event_kind::firing);
  const auto req = somrated::build_request(n, e, external_url);
  CHECK(req.headers == std::vector<std::pair<std::string, std::string>>{
                           {"X-Somrated-Event-Id", e.event_id},
                           {"Authorization", "Bearer abc"},
                           {"content-type", "application/vnd.hook+json"}});
}

TEST_CASE("built-in messages: every language, kind and condition") {
  for (const char* lang : {"en", "ru", "ky"}) {
    const notifier_config n = make_notifier(notifier_kind::slack, lang);
    for (const event_kind k : all_kinds) {
      for (const alert_condition c : all_conditions) {
        CAPTURE(lang);
        CAPTURE(somrated::event_kind_name(k));
        CAPTURE(somrated::condition_name(c));
        const alert_event e = make_event(c, k);
        const std::string text = somrated::render_message(n, e);
        CAPTURE(text);
        CHECK(text.find_first_of("{}") == std::string::npos);
        CHECK(contains(text, e.rule));
        CHECK(contains(text, k == event_kind::test ? "10:52 UTC" : "10:37 UTC"));
        CHECK_FALSE(contains(text, "  "));
        CHECK_FALSE(contains(text, ".."));
        if (c != alert_condition::stale) {
          CHECK(contains(text, e.currency));
          CHECK(contains(text, e.threshold));
        }
        if (c == alert_condition::spread_pct) CHECK(contains(text, "nbkr"));
        if (k != event_kind::test && (c == alert_condition::above || c == alert_condition::below))
          CHECK(contains(text, e.value));
        if (k != event_kind::test && c == alert_condition::change_pct)
          CHECK(contains(text, "+2.31%"));
        if (k != event_kind::test && c == alert_condition::spread_pct)
          CHECK(contains(text, "1.8%"));
        if (k == event_kind::test && c != alert_condition::stale) CHECK(contains(text, e.rate));
      }
    }
  }
}

TEST_CASE("built-in messages: exact texts") {
  const notifier_config en = make_notifier(notifier_kind::slack, "en");
  const notifier_config ru = make_notifier(notifier_kind::slack, "ru");
  const notifier_config ky = make_notifier(notifier_kind::slack, "ky");
  auto render = [](const notifier_config& n, alert_condition c, event_kind k) {
    return somrated::render_message(n, make_event(c, k));
  };

  CHECK(render(en, alert_condition::above, event_kind::firing) ==
        "usd-above-90 is firing: USD at 24kg is 91.20, above 90. Since 2026-11-28 10:37 UTC.");
  CHECK(render(en, alert_condition::below, event_kind::reminder) ==
        "usd-below-85 is still firing: USD at 24kg is 84.10, below 85. Firing since 2026-11-28 "
        "10:37 UTC.");
  CHECK(render(en, alert_condition::change_pct, event_kind::firing) ==
        "usd-move is firing: USD at 24kg moved +2.31% (threshold 2%). Current rate: 91.20. Since "
        "2026-11-28 10:37 UTC.");
  CHECK(render(en, alert_condition::spread_pct, event_kind::resolved) ==
        "usd-spread is resolved: USD at 24kg differs from nbkr by 1.8%, under the 1.5% threshold. "
        "Current rate: 91.20. It fired from 2026-11-28 10:37 UTC to 2026-11-28 11:05 UTC.");
  CHECK(render(en, alert_condition::stale, event_kind::firing) ==
        "24kg-stale is firing: no successful scrape of 24kg for 2 hours 5 minutes (limit 2 hours). "
        "Since 2026-11-28 10:37 UTC.");
  CHECK(render(en, alert_condition::above, event_kind::test) ==
        "Test notification from usd-above-90: it fires when USD at 24kg goes above 90. Current "
        "rate: 91.20. Sent at 2026-11-28 10:52 UTC.");

  CHECK(render(ru, alert_condition::above, event_kind::firing) ==
        "Сработало оповещение usd-above-90: курс USD по данным 24kg — 91.20, выше 90. Активно с "
        "2026-11-28 10:37 UTC.");
  CHECK(render(ru, alert_condition::stale, event_kind::firing) ==
        "Сработало оповещение 24kg-stale: нет успешного обновления курсов с 24kg уже 2 ч 5 мин "
        "(порог 2 ч). Активно с 2026-11-28 10:37 UTC.");
  CHECK(render(ru, alert_condition::below, event_kind::resolved) ==
        "Оповещение usd-below-85 снято: курс USD по данным 24kg — 84.10, уже не ниже 85. Было "
        "активно с 2026-11-28 10:37 UTC по 2026-11-28 11:05 UTC.");

  CHECK(render(ky, alert_condition::above, event_kind::firing) ==
        "usd-above-90 эскертүүсү иштеди: USD курсу 24kg маалыматы боюнча 91.20, бул 90 чегинен "
        "жогору. Башталышы: 2026-11-28 10:37 UTC.");
  CHECK(render(ky, alert_condition::stale, event_kind::firing) ==
        "24kg-stale эскертүүсү иштеди: 24kg булагынан акыркы ийгиликтүү жаңыртуудан бери 2 саат 5 "
        "мүнөт өттү (чек: 2 саат). Башталышы: 2026-11-28 10:37 UTC.");
  CHECK(render(ky, alert_condition::change_pct, event_kind::test) ==
        "usd-move эскертүүсүнүн сыноо билдирүүсү: эскертүү USD курсу 24kg маалыматы боюнча 2% же "
        "андан көп өзгөргөндө иштейт. Учурдагы курс: 91.20. Жөнөтүлгөн убакыт: 2026-11-28 10:52 "
        "UTC.");
}

TEST_CASE("built-in messages: details") {
  const notifier_config en = make_notifier(notifier_kind::slack, "en");

  SUBCASE("stale durations read naturally") {
    alert_event e = make_event(alert_condition::stale, event_kind::firing);
    const std::pair<const char*, const char*> cases[] = {
        {"3600", "for 1 hour (limit"},   {"90061", "for 1 day 1 hour (limit"},
        {"45", "for 45 seconds (limit"}, {"7260", "for 2 hours 1 minute (limit"},
        {"172800", "for 2 days (limit"}, {"61.9", "for 1 minute 1 second (limit"},
    };
    for (const auto& [value, want] : cases) {
      e.value = value;
      CAPTURE(value);
      CHECK(contains(somrated::render_message(en, e), want));
    }
    e.threshold = "90m";
    e.value = "5400";
    CHECK(contains(somrated::render_message(en, e),
                   "for 1 hour 30 minutes (limit 1 hour 30 minutes)"));
  }

  SUBCASE("a fall keeps its minus sign") {
    alert_event e = make_event(alert_condition::change_pct, event_kind::firing);
    e.value = "-2.5";
    CHECK(contains(somrated::render_message(en, e), "moved -2.5% (threshold 2%)"));
  }

  SUBCASE("an unknown language falls back to English") {
    const notifier_config xx = make_notifier(notifier_kind::slack, "xx");
    const alert_event e = make_event(alert_condition::above, event_kind::firing);
    CHECK(somrated::render_message(xx, e) == somrated::render_message(en, e));
  }

  SUBCASE("known_language") {
    CHECK(somrated::known_language("en"));
    CHECK(somrated::known_language("ru"));
    CHECK(somrated::known_language("ky"));
    CHECK_FALSE(somrated::known_language("kk"));
    CHECK_FALSE(somrated::known_language(""));
    CHECK_FALSE(somrated::known_language("EN"));
  }
}

TEST_CASE("custom templates") {
  notifier_config n = make_notifier(notifier_kind::slack, "ru");
  n.template_firing =
      "{status}: {rule} {currency}@{source} {condition} {threshold} {value} {rate} [{against}] "
      "{time} {starts_at} {{literal}}";
  n.template_resolved = "OK {rule} {value}";

  SUBCASE("firing, reminder and test use template_firing") {
    for (const event_kind k : {event_kind::firing, event_kind::reminder, event_kind::test}) {
      const alert_event e = make_event(alert_condition::above, k);
      const std::string text = somrated::render_message(n, e);
      if (k == event_kind::test) {
        CHECK(text ==
              "firing: usd-above-90 USD@24kg above 90 91.20 91.20 [] 2026-11-28 10:52 UTC "
              "2026-11-28 10:52 UTC {literal}");
      } else {
        CHECK(text ==
              "firing: usd-above-90 USD@24kg above 90 91.20 91.20 [] 2026-11-28 10:52 UTC "
              "2026-11-28 10:37 UTC {literal}");
      }
    }
  }

  SUBCASE("resolved uses template_resolved") {
    alert_event e = make_event(alert_condition::above, event_kind::resolved);
    e.value = "89.40";
    CHECK(somrated::render_message(n, e) == "OK usd-above-90 89.40");
  }

  SUBCASE("an empty template means the built-in one") {
    n.template_resolved.clear();
    CHECK(somrated::render_message(n, make_event(alert_condition::above, event_kind::resolved))
              .starts_with("Оповещение usd-above-90 снято"));
  }

  SUBCASE("a broken template falls back to the built-in one") {
    n.template_firing = "{rule} {oops}";
    CHECK(somrated::render_message(n, make_event(alert_condition::above, event_kind::firing))
              .starts_with("Сработало оповещение usd-above-90"));
    n.template_firing = "{rule";
    CHECK(somrated::render_message(n, make_event(alert_condition::above, event_kind::firing))
              .starts_with("Сработало оповещение usd-above-90"));
  }

  SUBCASE("format specs apply") {
    n.template_firing = "[{currency:>5}]";
    CHECK(somrated::render_message(n, make_event(alert_condition::above, event_kind::firing)) ==
          "[  USD]");
  }
}

TEST_CASE("template_problem") {
  CHECK_FALSE(somrated::template_problem("").has_value());
  CHECK_FALSE(somrated::template_problem("{rule}: {currency} {value} > {threshold}").has_value());
  CHECK_FALSE(somrated::template_problem("{{not a placeholder}} {rate:>8}").has_value());
  CHECK_FALSE(somrated::template_problem(
                  "{rule}{currency}{source}{condition}{threshold}{value}{rate}{against}{status}"
                  "{time}{starts_at}")
                  .has_value());

  auto problem = [](std::string_view tpl) {
    const auto p = somrated::template_problem(tpl);
    REQUIRE_MESSAGE(p.has_value(), "no problem found in ", tpl);
    return *p;
  };
  CHECK(problem("{rule} {ruel}").starts_with("unknown placeholder {ruel} at offset 7"));
  CHECK(problem("{what}").starts_with("unknown placeholder {what}"));
  CHECK(problem("{}").starts_with("positional placeholder {} at offset 0"));
  CHECK(problem("x {0}").starts_with("positional placeholder {0} at offset 2"));
  CHECK(problem("{rule} }") == "unmatched '}' in format string");
  CHECK(contains(problem("{rule"), "'}'"));
  CHECK(contains(problem("{value:d}"), "invalid"));
}

TEST_CASE("event_json") {
  SUBCASE("firing") {
    const alert_event e = make_event(alert_condition::spread_pct, event_kind::firing);
    const json::object o = json::parse(somrated::event_json(e, "the text")).as_object();
    CHECK(keys(o) == std::vector<std::string>{"id", "rule", "kind", "status", "at", "starts_at",
                                              "ends_at", "condition", "currency", "source",
                                              "against", "threshold", "value", "rate", "labels",
                                              "text"});
    CHECK(text_of(o.at("id")) == e.event_id);
    CHECK(o.at("rule") == "usd-spread");
    CHECK(o.at("kind") == "firing");
    CHECK(o.at("status") == "firing");
    CHECK(o.at("at") == "2026-11-28T10:52:00Z");
    CHECK(o.at("starts_at") == "2026-11-28T10:37:00Z");
    CHECK(o.at("ends_at").is_null());
    CHECK(o.at("condition") == "spread_pct");
    CHECK(o.at("currency") == "USD");
    CHECK(o.at("source") == "24kg");
    CHECK(o.at("against") == "nbkr");
    CHECK(o.at("threshold") == "1.5");
    CHECK(o.at("value") == "1.8");
    CHECK(o.at("rate") == "91.20");
    CHECK(o.at("labels").at("alertname") == "usd-spread");
    CHECK(o.at("labels").as_object().size() == e.labels.size());
    CHECK(o.at("text") == "the text");
  }
  SUBCASE("resolved stale, with nothing to say about currency, rate or against") {
    const alert_event e = make_event(alert_condition::stale, event_kind::resolved);
    const json::object o = json::parse(somrated::event_json(e, "")).as_object();
    CHECK(o.at("kind") == "resolved");
    CHECK(o.at("status") == "resolved");
    CHECK(o.at("ends_at") == "2026-11-28T11:05:00Z");
    CHECK(o.at("currency").is_null());
    CHECK(o.at("against").is_null());
    CHECK(o.at("rate").is_null());
    CHECK(o.at("value") == "7500");
    CHECK(o.at("threshold") == "2h");
  }
  SUBCASE("test events are firing") {
    const json::object o =
        json::parse(somrated::event_json(make_event(alert_condition::above, event_kind::test), ""))
            .as_object();
    CHECK(o.at("kind") == "test");
    CHECK(o.at("status") == "firing");
    CHECK(o.at("labels").at("test") == "true");
  }
}

TEST_CASE("build_exec") {
  notifier_config n = make_notifier(notifier_kind::exec);
  n.url.clear();
  n.command = {"/usr/local/bin/notify", "--channel", "ops"};

  SUBCASE("firing") {
    const alert_event e = make_event(alert_condition::above, event_kind::firing);
    const auto spec = somrated::build_exec(n, e, external_url);
    const std::string text = somrated::render_message(n, e);
    CHECK(spec.argv == n.command);
    CHECK(spec.env == std::vector<std::pair<std::string, std::string>>{
                          {"SOMRATED_EVENT_ID", e.event_id},
                          {"SOMRATED_RULE", "usd-above-90"},
                          {"SOMRATED_KIND", "firing"},
                          {"SOMRATED_STATUS", "firing"},
                          {"SOMRATED_CONDITION", "above"},
                          {"SOMRATED_CURRENCY", "USD"},
                          {"SOMRATED_SOURCE", "24kg"},
                          {"SOMRATED_THRESHOLD", "90"},
                          {"SOMRATED_VALUE", "91.20"},
                          {"SOMRATED_RATE", "91.20"},
                          {"SOMRATED_STARTS_AT", "2026-11-28T10:37:00Z"},
                          {"SOMRATED_ENDS_AT", ""},
                          {"SOMRATED_TEXT", text},
                          {"SOMRATED_URL", "http://rates.example:8080/api/v1/alerts"}});
    CHECK(spec.stdin_data == somrated::event_json(e, text));
  }
  SUBCASE("resolved") {
    const alert_event e = make_event(alert_condition::above, event_kind::resolved);
    const auto spec = somrated::build_exec(n, e, "http://rates.example:8080/");
    std::map<std::string, std::string> env(spec.env.begin(), spec.env.end());
    CHECK(env["SOMRATED_KIND"] == "resolved");
    CHECK(env["SOMRATED_STATUS"] == "resolved");
    CHECK(env["SOMRATED_ENDS_AT"] == "2026-11-28T11:05:00Z");
    CHECK(env["SOMRATED_URL"] == "http://rates.example:8080/api/v1/alerts");
  }
}

TEST_CASE("classify_response") {
  using verdict = delivery_verdict::kind;
  const notifier_config hook = make_notifier(notifier_kind::webhook);
  const notifier_config slack = make_notifier(notifier_kind::slack);
  const notifier_config telegram = make_notifier(notifier_kind::telegram);

  auto response = [](int status, std::string body, std::string error = "",
                     std::string retry_after = "") {
    fetch_result r;
    r.status = status;
    r.body = std::move(body);
    r.error = std::move(error);
    r.retry_after = std::move(retry_after);
    return r;
  };

  SUBCASE("no response: retry") {
    const auto v = somrated::classify_response(
        hook, response(0, "", "connect 127.0.0.1:9000: Connection refused"));
    CHECK(v.result == verdict::retry);
    CHECK(v.error == "connect 127.0.0.1:9000: Connection refused");
    CHECK_FALSE(v.retry_after.has_value());
  }

  SUBCASE("2xx: delivered") {
    for (const int status : {200, 201, 202, 204}) {
      const auto v = somrated::classify_response(hook, response(status, "whatever"));
      CHECK(v.result == verdict::delivered);
      CHECK(v.error.empty());
    }
  }

  SUBCASE("2xx whose body broke off") {
    const auto r = response(200, "", "read body from 127.0.0.1:9000: timed out");
    CHECK(somrated::classify_response(hook, r).result == verdict::delivered);
    const auto v = somrated::classify_response(slack, r);
    CHECK(v.result == verdict::retry);
    CHECK(v.error == "read body from 127.0.0.1:9000: timed out");
  }

  SUBCASE("slack wants ok") {
    CHECK(somrated::classify_response(slack, response(200, "ok\n")).result == verdict::delivered);
    const auto v = somrated::classify_response(slack, response(200, "invalid_payload"));
    CHECK(v.result == verdict::failed);
    CHECK(v.error == "HTTP 200 without \"ok\": invalid_payload");
    const auto gone =
        somrated::classify_response(slack, response(404, "no_service", "HTTP 404 Not Found"));
    CHECK(gone.result == verdict::failed);
    CHECK(gone.error == "HTTP 404 Not Found: no_service");
  }

  SUBCASE("telegram wants ok:true") {
    CHECK(somrated::classify_response(telegram,
                                      response(200, R"({"ok":true,"result":{"message_id":5}})"))
              .result == verdict::delivered);
    auto v = somrated::classify_response(
        telegram, response(200, R"({"ok":false,"error_code":400,"description":"odd"})"));
    CHECK(v.result == verdict::failed);
    CHECK(v.error == "HTTP 200 without \"ok\":true: odd");
    v = somrated::classify_response(telegram, response(200, "<html>proxy</html>"));
    CHECK(v.result == verdict::failed);
    CHECK(contains(v.error, "<html>proxy</html>"));
    v = somrated::classify_response(
        telegram,
        response(400,
                 R"({"ok":false,"error_code":400,"description":"Bad Request: chat not found"})",
                 "HTTP 400 Bad Request"));
    CHECK(v.result == verdict::failed);
    CHECK(v.error == "HTTP 400 Bad Request: Bad Request: chat not found");
  }

  SUBCASE("telegram's retry_after") {
    const auto v = somrated::classify_response(
        telegram,
        response(
            429,
            R"({"ok":false,"error_code":429,"description":"Too Many Requests: retry after 7","parameters":{"retry_after":7}})",
            "HTTP 429 Too Many Requests"));
    CHECK(v.result == verdict::retry);
    CHECK(v.retry_after == std::chrono::milliseconds(7s));
    CHECK(v.error == "HTTP 429 Too Many Requests: Too Many Requests: retry after 7");
  }

  SUBCASE("retryable statuses") {
    for (const int status : {408, 425, 429, 500, 502, 503, 504, 599}) {
      CAPTURE(status);
      const auto v = somrated::classify_response(hook, response(status, "busy"));
      CHECK(v.result == verdict::retry);
      CHECK(v.error == fmt::format("HTTP {}: busy", status));
      CHECK_FALSE(v.retry_after.has_value());
    }
  }

  SUBCASE("final statuses") {
    for (const int status : {300, 301, 302, 307, 308, 400, 401, 403, 404, 410, 413, 422}) {
      CAPTURE(status);
      const auto v = somrated::classify_response(hook, response(status, ""));
      CHECK(v.result == verdict::failed);
      CHECK(v.error == fmt::format("HTTP {}", status));
    }
  }

  SUBCASE("the error names the status and an excerpt of the body") {
    const auto v = somrated::classify_response(
        hook, response(503, "  upstream\r\ndown" + std::string(500, 'x') + "\n",
                       "HTTP 503 Service Unavailable (Retry-After: 30)", "30"));
    CHECK(v.result == verdict::retry);
    CHECK(v.error.starts_with("HTTP 503 Service Unavailable (Retry-After: 30): upstream??downxxx"));
    CHECK(v.error.ends_with("x..."));
    CHECK(v.error.size() < 300);
    CHECK(v.retry_after == std::chrono::milliseconds(30s));
  }

  SUBCASE("Retry-After forms") {
    auto wait = [&](std::string value) {
      return somrated::classify_response(hook, response(429, "", "", std::move(value))).retry_after;
    };
    CHECK(wait("120") == std::chrono::milliseconds(120s));
    CHECK(wait(" 0 ") == std::chrono::milliseconds(0));
    CHECK(wait("99999999999999") == std::chrono::milliseconds(std::chrono::days(365)));
    // Dates in the past mean now; in the future, the time left.
    CHECK(wait("Sun, 06 Nov 1994 08:49:37 GMT") == std::chrono::milliseconds(0));
    CHECK(wait("Sunday, 06-Nov-94 08:49:37 GMT") == std::chrono::milliseconds(0));
    CHECK(wait("Sun Nov  6 08:49:37 1994") == std::chrono::milliseconds(0));
    const auto future = wait("Fri, 31 Dec 9999 23:59:59 GMT");
    REQUIRE(future.has_value());
    CHECK(*future > std::chrono::milliseconds(std::chrono::days(365 * 1000)));
    // Anything else is no hint.
    CHECK_FALSE(wait("").has_value());
    CHECK_FALSE(wait("soon").has_value());
    CHECK_FALSE(wait("-5").has_value());
    CHECK_FALSE(wait("Sun, 31 Feb 2021 08:49:37 GMT").has_value());
    CHECK_FALSE(wait("Sun, 06 Nov 1994 25:49:37 GMT").has_value());
  }
}
