#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <doctest/doctest.h>
#include <fmt/core.h>
#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include "somrated/alert_engine.hpp"
#include "somrated/api.hpp"
#include "somrated/log.hpp"
#include "somrated/source_board.hpp"
#include "somrated/store.hpp"

using namespace somrated;
using namespace std::chrono_literals;

namespace {

/// The write token the fixture configures.
constexpr std::string_view token = "0123456789abcdef-token";

/// A decimal from text that the test knows is valid.
decimal dec(std::string_view text) {
  auto d = decimal::parse(text);
  REQUIRE(d);
  return *d;
}

/// Sources 24kg and nbkr, a webhook notifier "hook", a config rule "usd-high" (USD
/// above 90 at 24kg) and, unless without_token, the write token.
std::shared_ptr<const config> alerts_config(bool with_token = true) {
  config c = default_config();
  if (with_token) c.server.token = std::string(token);
  notifier_config n;
  n.name = "hook";
  n.kind = notifier_kind::webhook;
  n.url = "http://127.0.0.1:9/hook";
  c.notifiers.push_back(n);
  alert_rule r;
  r.name = "usd-high";
  r.currency = "USD";
  r.source = "24kg";
  r.notify = {"hook"};
  r.threshold = dec("90");
  c.alerts.push_back(r);
  return std::make_shared<const config>(std::move(c));
}

/// An in-memory store with 24kg USD/EUR/RUB and nbkr USD/EUR, the engine and the api.
struct fixture {
  std::FILE* sink = std::fopen("/dev/null", "w");
  logger log{log_level::error, sink};
  store db{":memory:"};
  source_board board;
  std::shared_ptr<const config> cfg;
  alert_engine engine;
  int changed = 0;  ///< alerts_changed calls.
  api routes;

  explicit fixture(bool with_token = true)
      : cfg(alerts_config(with_token)),
        engine(cfg, log),
        routes(cfg, board, &engine, [this] { ++changed; }) {
    set_rates("91.20");
    std::vector<rate_quote> nb{{"USD", dec("89.50")}, {"EUR", dec("99.10")}};
    db.record("nbkr", now(), nb, std::nullopt, 10.0);
  }
  ~fixture() { std::fclose(sink); }

  /// Records 24kg's USD (EUR and RUB fixed).
  void set_rates(std::string_view usd) {
    std::vector<rate_quote> q{{"USD", dec(usd)}, {"EUR", dec("99.56")}, {"RUB", dec("1.10")}};
    db.record("24kg", now(), q, std::nullopt, 10.0);
  }

  /// A request with an optional bearer token and JSON body.
  static http_request request(http::verb method, std::string_view target, std::string body = {},
                              std::optional<std::string_view> bearer = token) {
    http_request req(method, target, 11);
    if (bearer) req.set(http::field::authorization, "Bearer " + std::string(*bearer));
    if (!body.empty()) {
      req.set(http::field::content_type, "application/json");
      req.body() = std::move(body);
      req.prepare_payload();
    }
    return req;
  }

  /// Answers like the daemon: on the network thread if possible, else with the store.
  http_response send(http::verb method, std::string_view target, std::string body = {},
                     std::optional<std::string_view> bearer = token) {
    const http_request req = request(method, target, std::move(body), bearer);
    if (auto quick = routes.handle_without_store(req)) return std::move(*quick);
    return routes.handle(req, db);
  }
};

/// The parsed JSON body.
boost::json::value json_of(const http_response& res) {
  return boost::json::parse(res.body());
}

/// The error code of an error response.
std::string error_code(const http_response& res) {
  return std::string(json_of(res).at("error").at("code").as_string());
}

/// The alert named name in a GET /api/v1/alerts answer, or null.
const boost::json::object* find_alert(const boost::json::value& v, std::string_view name) {
  for (const auto& a : v.at("alerts").as_array())
    if (a.at("name").as_string() == name) return &a.as_object();
  return nullptr;
}

/// A valid API rule body: EUR below 95 at 24kg.
constexpr std::string_view eur_low =
    R"({"name":"eur-low","currency":"EUR","below":95,"notify":["hook"]})";

}  // namespace

TEST_CASE("api alerts: GET lists config rules with their state") {
  fixture f;
  auto res = f.send(http::verb::get, "/api/v1/alerts", {}, std::nullopt);
  REQUIRE(res.result() == http::status::ok);
  auto v = json_of(res);
  const auto* a = find_alert(v, "usd-high");
  REQUIRE(a);
  CHECK(a->at("origin").as_string() == "config");
  CHECK(a->at("state").as_string() == "inactive");
  CHECK(a->at("rule").at("above").as_string() == "90");
  CHECK(a->at("last_event").is_null());

  f.engine.evaluate(f.db, now());
  v = json_of(f.send(http::verb::get, "/api/v1/alerts", {}, std::nullopt));
  a = find_alert(v, "usd-high");
  REQUIRE(a);
  CHECK(a->at("state").as_string() == "firing");
  CHECK(a->at("value").as_string() == "91.20");
  CHECK(a->at("started_at").is_string());
  const auto& last = a->at("last_event");
  CHECK(last.at("kind").as_string() == "firing");
  REQUIRE(last.at("deliveries").as_array().size() == 1);
  CHECK(last.at("deliveries").at(0).at("notifier").as_string() == "hook");
  CHECK(last.at("deliveries").at(0).at("status").as_string() == "pending");
}

TEST_CASE("api alerts: writes need the configured bearer token") {
  SUBCASE("no token configured: writes are disabled") {
    fixture f(false);
    auto res = f.send(http::verb::post, "/api/v1/alerts", std::string(eur_low));
    CHECK(res.result() == http::status::forbidden);
    CHECK(error_code(res) == "writes_disabled");
  }
  fixture f;
  SUBCASE("missing header") {
    auto res = f.send(http::verb::post, "/api/v1/alerts", std::string(eur_low), std::nullopt);
    CHECK(res.result() == http::status::unauthorized);
    CHECK(error_code(res) == "unauthorized");
    CHECK(res[http::field::www_authenticate].starts_with("Bearer"));
  }
  SUBCASE("wrong token, a prefix of it, and a longer one") {
    for (std::string_view bad : {std::string_view("wrong"), token.substr(0, 10),
                                 std::string_view("0123456789abcdef-token-and-more")}) {
      auto res = f.send(http::verb::post, "/api/v1/alerts", std::string(eur_low), bad);
      CHECK(res.result() == http::status::unauthorized);
    }
    auto res = f.send(http::verb::delete_, "/api/v1/alerts/usd-high", {}, "wrong");
    CHECK(res.result() == http::status::unauthorized);
  }
  SUBCASE("refused on the network thread; accepted ones go to the writer") {
    auto bad = fixture::request(http::verb::post, "/api/v1/alerts", std::string(eur_low), "no");
    CHECK(f.routes.handle_without_store(bad));
    auto good = fixture::request(http::verb::post, "/api/v1/alerts", std::string(eur_low));
    CHECK_FALSE(f.routes.handle_without_store(good));
    CHECK(f.routes.needs_writer(good));
    CHECK_FALSE(f.routes.needs_writer(fixture::request(http::verb::get, "/api/v1/alerts")));
  }
  SUBCASE("the scheme is case-insensitive") {
    auto req =
        fixture::request(http::verb::post, "/api/v1/alerts", std::string(eur_low), std::nullopt);
    req.set(http::field::authorization, "bearer " + std::string(token));
    CHECK(f.routes.handle(req, f.db).result() == http::status::created);
  }
}

TEST_CASE("api alerts: create, list, refuse duplicates, delete") {
  fixture f;
  auto res = f.send(http::verb::post, "/api/v1/alerts", std::string(eur_low));
  REQUIRE(res.result() == http::status::created);
  CHECK(res[http::field::location] == "/api/v1/alerts/eur-low");
  CHECK(f.changed == 1);
  auto v = json_of(res);
  CHECK(v.at("alert").at("name").as_string() == "eur-low");
  CHECK(v.at("alert").at("origin").as_string() == "api");
  CHECK(v.at("alert").at("rule").at("below").as_string() == "95");
  CHECK(v.at("alert").at("rule").at("source").as_string() == "24kg");
  // EUR is 99.56, not below 95: evaluated at once and inactive.
  CHECK(v.at("alert").at("state").as_string() == "inactive");

  v = json_of(f.send(http::verb::get, "/api/v1/alerts"));
  REQUIRE(find_alert(v, "eur-low"));
  CHECK(find_alert(v, "eur-low")->at("origin").as_string() == "api");

  res = f.send(http::verb::post, "/api/v1/alerts", std::string(eur_low));
  CHECK(res.result() == http::status::conflict);
  CHECK(error_code(res) == "exists");
  res = f.send(http::verb::post, "/api/v1/alerts",
               R"({"name":"usd-high","currency":"USD","above":95})");
  CHECK(res.result() == http::status::conflict);

  res = f.send(http::verb::delete_, "/api/v1/alerts/eur-low");
  CHECK(res.result() == http::status::no_content);
  CHECK(res.body().empty());
  v = json_of(f.send(http::verb::get, "/api/v1/alerts"));
  CHECK_FALSE(find_alert(v, "eur-low"));
  res = f.send(http::verb::delete_, "/api/v1/alerts/eur-low");
  CHECK(res.result() == http::status::not_found);
  res = f.send(http::verb::delete_, "/api/v1/alerts/usd-high");
  CHECK(res.result() == http::status::conflict);
  CHECK(error_code(res) == "read_only");
}

TEST_CASE("api alerts: bad rule bodies get a 400 naming the field") {
  fixture f;
  struct bad_case {
    std::string body;
    std::string field;
  };
  const bad_case cases[] = {
      {R"({"name":"x","currency":"USD","above":90)", ""},
      {R"([1,2])", ""},
      {R"({"name":"x","currency":"USD","notify":["hook"]})", ""},
      {R"({"name":"x","currency":"USD","above":90,"below":80})", "below"},
      {R"({"name":"x","currency":"USD","above":90,"notify":["hok"]})", "notify"},
      {R"({"name":"x","currency":"USD","change_pct":2,"window":"-1h"})", "window"},
      {R"({"name":"x","currency":"KZT","source":"nbkr","above":90})", "currency"},
      {R"({"name":"x","currency":"KZT","above":90})", "currency"},
      {R"({"name":"x","currency":"USD","above":90,"colour":"red"})", "colour"},
  };
  for (const bad_case& c : cases) {
    CAPTURE(c.body);
    auto res = f.send(http::verb::post, "/api/v1/alerts", c.body);
    CHECK(res.result() == http::status::bad_request);
    auto v = json_of(res);
    CHECK(v.at("error").at("code").as_string() == "invalid_rule");
    if (c.field.empty()) continue;
    // "two conditions" may name either of them.
    if (c.field == "below") {
      const std::string field(v.at("error").at("field").as_string());
      CHECK((field == "above" || field == "below"));
    } else {
      CHECK(v.at("error").at("field").as_string() == c.field);
    }
    CHECK(std::string(v.at("error").at("message").as_string()).find(c.field) != std::string::npos);
  }
  CHECK(f.changed == 0);
}

TEST_CASE("api alerts: deleting a firing API rule resolves it") {
  fixture f;
  auto res = f.send(http::verb::post, "/api/v1/alerts",
                    R"({"name":"usd-api","currency":"USD","above":"91","notify":["hook"]})");
  REQUIRE(res.result() == http::status::created);
  CHECK(json_of(res).at("alert").at("state").as_string() == "firing");
  res = f.send(http::verb::delete_, "/api/v1/alerts/usd-api");
  CHECK(res.result() == http::status::no_content);
  auto v = json_of(f.send(http::verb::get, "/api/v1/alerts/events?rule=usd-api"));
  const auto& events = v.at("events").as_array();
  REQUIRE(events.size() == 2);
  CHECK(events[0].at("kind").as_string() == "firing");
  CHECK(events[1].at("kind").as_string() == "resolved");
  CHECK(events[1].at("ends_at").is_string());
  CHECK(events[1].at("deliveries").at(0).at("notifier").as_string() == "hook");
}

TEST_CASE("api alerts: test notifications and the events log") {
  fixture f;
  auto res = f.send(http::verb::post, "/api/v1/alerts/usd-high/test");
  REQUIRE(res.result() == http::status::accepted);
  auto v = json_of(res);
  const std::string id(v.at("event_id").as_string());
  CHECK(v.at("notifiers").as_array().size() == 1);
  CHECK(f.changed == 1);

  res = f.send(http::verb::post, "/api/v1/alerts/nope/test");
  CHECK(res.result() == http::status::not_found);

  v = json_of(f.send(http::verb::get, "/api/v1/alerts/events"));
  const auto& events = v.at("events").as_array();
  REQUIRE(events.size() == 1);
  CHECK(events[0].at("event_id").as_string() == id);
  CHECK(events[0].at("kind").as_string() == "test");
  CHECK(events[0].at("rate").as_string() == "91.20");
  const auto& d = events[0].at("deliveries").at(0);
  CHECK(d.at("status").as_string() == "pending");
  CHECK(d.at("attempts").as_array().empty());
  CHECK(d.at("next_attempt_at").is_string());

  // Record a failed attempt and see it.
  const auto due = f.db.due_deliveries(now() + 1s);
  REQUIRE(due.size() == 1);
  delivery_attempt a;
  a.at = now();
  a.http_status = 503;
  a.outcome = "retry";
  a.error = "HTTP 503 Service Unavailable";
  f.db.record_attempt(due[0].first.id, a, delivery_status::pending, now() + 5s);
  v = json_of(f.send(http::verb::get, "/api/v1/alerts/events?rule=usd-high&limit=5"));
  const auto& attempts = v.at("events").at(0).at("deliveries").at(0).at("attempts").as_array();
  REQUIRE(attempts.size() == 1);
  CHECK(attempts[0].at("http_status").as_int64() == 503);
  CHECK(attempts[0].at("outcome").as_string() == "retry");

  CHECK(json_of(f.send(http::verb::get, "/api/v1/alerts/events?rule=other"))
            .at("events")
            .as_array()
            .empty());
  CHECK(json_of(f.send(http::verb::get, "/api/v1/alerts/events?since=2999-01-01"))
            .at("events")
            .as_array()
            .empty());
  CHECK(f.send(http::verb::get, "/api/v1/alerts/events?limit=0").result() ==
        http::status::bad_request);
  CHECK(f.send(http::verb::get, "/api/v1/alerts/events?since=yesterday").result() ==
        http::status::bad_request);
}

TEST_CASE("api alerts: methods are checked per path") {
  fixture f;
  auto res = f.send(http::verb::put, "/api/v1/alerts");
  CHECK(res.result() == http::status::method_not_allowed);
  CHECK(res[http::field::allow] == "GET, HEAD, POST");
  res = f.send(http::verb::get, "/api/v1/alerts/usd-high");
  CHECK(res.result() == http::status::method_not_allowed);
  CHECK(res[http::field::allow] == "DELETE");
  res = f.send(http::verb::post, "/api/v1/latest");
  CHECK(res.result() == http::status::method_not_allowed);
  CHECK(res[http::field::allow] == "GET, HEAD");
  CHECK(f.send(http::verb::delete_, "/api/v1/alerts/a/b/c").result() == http::status::not_found);
}

TEST_CASE("api alerts: a stored rule that no longer fits the config says why it cannot be tested") {
  fixture f;
  f.db.save_rule("old-rule",
                 R"({"name":"old-rule","currency":"USD","above":"90","notify":["gone"]})", now());
  auto v = json_of(f.send(http::verb::get, "/api/v1/alerts"));
  const auto* a = find_alert(v, "old-rule");
  REQUIRE(a);
  CHECK(a->at("state").as_string() == "broken");

  auto res = f.send(http::verb::post, "/api/v1/alerts/old-rule/test");
  CHECK(res.result() == http::status::conflict);
  CHECK(error_code(res) == "broken");
  const std::string message(json_of(res).at("error").at("message").as_string());
  CHECK(message.find("old-rule") != std::string::npos);
  CHECK(message.find("gone") != std::string::npos);
  CHECK(f.changed == 0);
}

TEST_CASE("api alerts: a full database answers 507 and keeps nothing of the write") {
  fixture f;
  f.engine.evaluate(f.db, now());
  // A limit below the size holds the database at the size it has now.
  f.db.set_max_size(1);
  const auto body = [](int i) {
    return fmt::format(
        R"({{"name":"eur-low-{:04}","currency":"EUR","below":95,"notify":["hook"]}})", i);
  };

  int created = 0;
  http_response refused;
  for (; created < 5000; ++created) {
    auto res = f.send(http::verb::post, "/api/v1/alerts", body(created));
    if (res.result() != http::status::created) {
      refused = std::move(res);
      break;
    }
  }
  REQUIRE(refused.result() == http::status::insufficient_storage);
  CHECK(error_code(refused) == "insufficient_storage");
  const std::string message(json_of(refused).at("error").at("message").as_string());
  CHECK(message.find(fmt::format("rule eur-low-{:04} not stored: database or disk is full (the "
                                 "database may not grow beyond [storage] max_size = 1B",
                                 created)) == 0);

  // Reads keep answering: every rule that got its 201 is there, the refused one is not.
  auto listed = f.send(http::verb::get, "/api/v1/alerts", {}, std::nullopt);
  REQUIRE(listed.result() == http::status::ok);
  const auto v = json_of(listed);
  CHECK(v.at("alerts").as_array().size() == static_cast<std::size_t>(created) + 1);
  CHECK(find_alert(v, fmt::format("eur-low-{:04}", created - 1)));
  CHECK_FALSE(find_alert(v, fmt::format("eur-low-{:04}", created)));

  // Test notifications too: each 202 is an event with its delivery, the 507 leaves none.
  std::size_t accepted = 0;
  http_response test_refused;
  for (; accepted < 5000; ++accepted) {
    auto res = f.send(http::verb::post, "/api/v1/alerts/usd-high/test");
    if (res.result() != http::status::accepted) {
      test_refused = std::move(res);
      break;
    }
  }
  CHECK(test_refused.result() == http::status::insufficient_storage);
  CHECK(error_code(test_refused) == "insufficient_storage");
  const auto events = f.db.alert_events(std::nullopt, "usd-high", 1000);
  std::size_t tests = 0;
  for (const auto& rec : events) {
    CHECK(rec.deliveries.size() == 1);
    if (rec.event.kind == event_kind::test) ++tests;
  }
  CHECK(tests == accepted);

  // Once there is room again the refused rule is created.
  f.db.set_max_size(0);
  CHECK(f.send(http::verb::post, "/api/v1/alerts", body(created)).result() ==
        http::status::created);
  CHECK(f.send(http::verb::post, "/api/v1/alerts/usd-high/test").result() ==
        http::status::accepted);
}
