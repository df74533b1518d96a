#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <doctest/doctest.h>
#include <fmt/format.h>
#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include "somrated/api.hpp"
#include "somrated/source_board.hpp"
#include "somrated/store.hpp"

using namespace somrated;
using namespace std::chrono_literals;

namespace {

/// 2025-06-10T00:00:00Z: the start of the stored test data.
constexpr timestamp t0{std::chrono::sys_days{std::chrono::year{2025} / 6 / 10}};

/// t0 in Unix milliseconds, as Grafana's datapoints carry it.
constexpr std::int64_t t0_ms = 1749513600000;

/// A decimal from text that the test knows is valid.
decimal dec(std::string_view text) {
  auto d = decimal::parse(text);
  REQUIRE(d);
  return *d;
}

/// Sources 24kg (first), nbkr (the official one) and "quiet" (never scraped), and one
/// config rule "usd-high".
std::shared_ptr<const config> grafana_config() {
  config c;
  for (auto [name, kind] : {std::pair{"24kg", "24kg"}, {"nbkr", "nbkr"}, {"quiet", "24kg"}}) {
    source_config s;
    s.name = name;
    s.kind = kind;
    s.url = "file:///dev/null";
    s.interval = kind == std::string_view("nbkr") ? 1h : 10min;
    c.sources.push_back(s);
  }
  alert_rule r;
  r.name = "usd-high";
  r.currency = "USD";
  r.source = "24kg";
  r.threshold = dec("88");
  c.alerts.push_back(r);
  return std::make_shared<const config>(std::move(c));
}

/// An alert event of rule "usd-high" (USD above 88 at 24kg).
alert_event usd_event(std::string id, event_kind kind, timestamp at, timestamp starts_at) {
  alert_event e;
  e.event_id = std::move(id);
  e.rule = "usd-high";
  e.kind = kind;
  e.at = at;
  e.starts_at = starts_at;
  if (kind == event_kind::resolved) e.ends_at = at;
  e.condition = alert_condition::above;
  e.currency = "USD";
  e.source = "24kg";
  e.threshold = "88";
  e.value = "88.07";
  e.rate = "88.07";
  return e;
}

/// An in-memory store and the api over it.
///
/// 24kg USD: 144 change points, one every 10 minutes from t0, 87.00 + i * 0.01 (87.00 …
/// 88.43); EUR 99.56 and RUB 1.10 from t0. nbkr USD: 24 hourly change points from t0,
/// 87.5000 + h * 0.0010; EUR 99.1234 from t0. 24kg scraped fine a minute ago; nbkr's
/// last attempt failed. Alert events of usd-high: firing at t0+17h, resolved at t0+20h,
/// and a firing event a year later, outside the queried range.
struct fixture {
  store db{":memory:"};
  source_board board;
  std::shared_ptr<const config> cfg = grafana_config();
  api routes{cfg, board};

  fixture() {
    std::vector<history_point> usd;
    for (int i = 0; i < 144; ++i)
      usd.push_back({t0 + i * 10min, dec(fmt::format("{}.{:02}", 87 + i / 100, i % 100))});
    db.import_changes("24kg", "USD", usd);
    db.import_changes("24kg", "EUR", std::vector<history_point>{{t0, dec("99.56")}});
    db.import_changes("24kg", "RUB", std::vector<history_point>{{t0, dec("1.10")}});
    std::vector<history_point> nb;
    for (int h = 0; h < 24; ++h) nb.push_back({t0 + h * 1h, dec(fmt::format("87.5{:02}0", h))});
    db.import_changes("nbkr", "USD", nb);
    db.import_changes("nbkr", "EUR", std::vector<history_point>{{t0, dec("99.1234")}});
    log("24kg", now() - 1min, "ok");
    log("nbkr", now() - 30min, "ok");
    log("nbkr", now() - 10min, "error", "HTTP 503");
    alert_update u;
    u.events.emplace_back(usd_event("e1", event_kind::firing, t0 + 17h, t0 + 17h),
                          std::vector<std::string>{});
    u.events.emplace_back(usd_event("e2", event_kind::resolved, t0 + 20h, t0 + 17h),
                          std::vector<std::string>{});
    u.events.emplace_back(usd_event("e3", event_kind::firing, t0 + 24h * 365, t0 + 24h * 365),
                          std::vector<std::string>{});
    db.apply_alert_update(u);
  }

  /// Appends a scrape log entry.
  void log(std::string_view source, timestamp at, std::string outcome, std::string error = {}) {
    scrape_record r;
    r.source = std::string(source);
    r.started_at = at;
    r.duration = 100ms;
    r.http_status = outcome == "ok" ? 200 : 503;
    r.outcome = std::move(outcome);
    r.error = std::move(error);
    db.log_scrape(r);
  }

  /// Answers method on target with body, like the daemon: on the network thread if
  /// possible, else with the store.
  http_response send(http::verb method, std::string_view target, std::string body = {}) {
    http_request req(method, target, 11);
    req.set(http::field::content_type, "application/json");
    req.body() = std::move(body);
    req.prepare_payload();
    if (auto quick = routes.handle_without_store(req)) return std::move(*quick);
    return routes.handle(req, db);
  }

  /// POSTs body to /grafana/{endpoint}.
  http_response post(std::string_view endpoint, std::string body) {
    return send(http::verb::post, fmt::format("/grafana/{}", endpoint), std::move(body));
  }
};

/// The parsed JSON body; fails the test when it is not JSON.
boost::json::value json_of(const http_response& res) {
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(res.body(), ec);
  INFO("body: ", res.body());
  REQUIRE_FALSE(ec);
  return v;
}

/// The body of a 200 answer, parsed; fails the test on another status.
boost::json::value ok_json(const http_response& res) {
  INFO("body: ", res.body());
  REQUIRE(res.result() == http::status::ok);
  CHECK(res[http::field::content_type] == "application/json; charset=utf-8");
  return json_of(res);
}

/// Checks res is a 400 (or status) error with code whose message starts with field;
/// returns the message.
std::string field_error(const http_response& res, std::string_view field,
                        std::string_view code = "invalid_field",
                        http::status status = http::status::bad_request) {
  INFO("body: ", res.body());
  CHECK(res.result() == status);
  const auto v = json_of(res);
  CHECK(v.at("error").at("code").as_string() == code);
  const std::string message(v.at("error").at("message").as_string());
  CHECK(message.starts_with(std::string(field) + ":"));
  return message;
}

/// The parts of a query_body, each as JSON text.
struct query_options {
  std::string_view from = "2025-06-10T00:00:00.000Z";  ///< range.from.
  std::string_view to = "2025-06-11T00:00:00.000Z";    ///< range.to.
  std::string_view max_points = "10";                  ///< maxDataPoints.
  std::string_view interval_ms = "60000";              ///< intervalMs.
  std::string_view filters = "[]";                     ///< filters.
  /// scopedVars: the ones Grafana always adds.
  std::string_view scoped = R"({"__interval":{"text":"1m","value":"1m"},)"
                            R"("__interval_ms":{"text":"60000","value":60000}})";
  std::string_view extra = "";  ///< More members, each preceded by a comma.
};

/// A /grafana/query body as Grafana 10 sends it: range with raw, rangeRaw, interval,
/// intervalMs, maxDataPoints, targets, scopedVars and filters, plus fields we ignore.
/// targets is a JSON array text.
std::string query_body(std::string_view targets, const query_options& o = {}) {
  return fmt::format(
      R"({{"app":"dashboard","requestId":"Q100","timezone":"browser","panelId":2,)"
      R"("dashboardUID":"somrated","range":{{"from":"{}","to":"{}",)"
      R"("raw":{{"from":"now-24h","to":"now"}}}},"rangeRaw":{{"from":"now-24h","to":"now"}},)"
      R"("interval":"1m","intervalMs":{},"maxDataPoints":{},"targets":{},"scopedVars":{},)"
      R"("startTime":1749600000000,"filters":{}{}}})",
      o.from, o.to, o.interval_ms, o.max_points, targets, o.scoped, o.filters, o.extra);
}

/// The value texts and times of the datapoints of the index-th series of body, read from
/// the raw text: parsing would turn 87.00 into a double and lose the published digits.
std::vector<std::pair<std::string, std::int64_t>> points_of(std::string_view body,
                                                            std::size_t index = 0) {
  std::size_t pos = 0;
  for (std::size_t i = 0; i <= index; ++i) {
    pos = body.find(R"("datapoints":[)", pos);
    REQUIRE(pos != std::string_view::npos);
    pos += 14;
  }
  std::vector<std::pair<std::string, std::int64_t>> out;
  while (body.at(pos) == '[') {
    const std::size_t comma = body.find(',', pos);
    const std::size_t close = body.find(']', comma);
    REQUIRE(close != std::string_view::npos);
    out.emplace_back(std::string(body.substr(pos + 1, comma - pos - 1)),
                     std::stoll(std::string(body.substr(comma + 1, close - comma - 1))));
    pos = close + 1;
    if (body.at(pos) == ',') ++pos;
  }
  CHECK(body.at(pos) == ']');
  return out;
}

/// The rows of the index-th table of body as raw text, one "[…]" each (rows whose
/// strings hold no brackets).
std::vector<std::string> rows_of(std::string_view body, std::size_t index = 0) {
  std::size_t pos = 0;
  for (std::size_t i = 0; i <= index; ++i) {
    pos = body.find(R"("rows":[)", pos);
    REQUIRE(pos != std::string_view::npos);
    pos += 8;
  }
  std::vector<std::string> out;
  while (body.at(pos) == '[') {
    const std::size_t close = body.find(']', pos);
    REQUIRE(close != std::string_view::npos);
    out.emplace_back(body.substr(pos, close - pos + 1));
    pos = close + 1;
    if (body.at(pos) == ',') ++pos;
  }
  CHECK(body.at(pos) == ']');
  return out;
}

/// True when haystack contains needle.
bool contains(std::string_view haystack, std::string_view needle) {
  return haystack.find(needle) != std::string_view::npos;
}

/// The "target" members of an answer, in order.
std::vector<std::string> targets_of(const boost::json::value& v) {
  std::vector<std::string> out;
  for (const auto& s : v.as_array()) out.emplace_back(s.at("target").as_string());
  return out;
}

}  // namespace

TEST_CASE("grafana: GET /grafana answers 200 without the store") {
  fixture f;
  http_request req(http::verb::get, "/grafana", 11);
  req.set(http::field::content_type, "application/json");  // the plugin sends it on GET too
  auto quick = f.routes.handle_without_store(req);
  REQUIRE(quick);
  CHECK(quick->result() == http::status::ok);
  CHECK(json_of(*quick).at("status").as_string() == "ok");
}

TEST_CASE("grafana: /metrics lists a metric per currency and source, spreads, alerts, health") {
  fixture f;
  for (std::string body :
       {std::string(), std::string("{}"),
        std::string(R"({"metric":"USD@nbkr","payload":{"aggregation":"last"}})")}) {
    CAPTURE(body);
    const auto v = ok_json(f.post("metrics", body));
    std::vector<std::string> values;
    for (const auto& m : v.as_array()) {
      values.emplace_back(m.at("value").as_string());
      CHECK(m.at("label").is_string());
      CHECK(m.at("payloads").is_array());
    }
    CHECK(values == std::vector<std::string>{"USD@24kg", "EUR@24kg", "RUB@24kg", "USD@nbkr",
                                             "EUR@nbkr", "spread:USD@24kg", "spread:EUR@24kg",
                                             "alerts", "health"});
    const auto& usd = v.as_array().at(0);
    CHECK(usd.at("label").as_string() == "USD (24kg)");
    const auto& payloads = usd.at("payloads").as_array();
    REQUIRE(payloads.size() == 2);
    CHECK(payloads.at(0).at("name").as_string() == "aggregation");
    CHECK(payloads.at(0).at("type").as_string() == "select");
    CHECK(payloads.at(1).at("name").as_string() == "format");
    const auto& spread = v.as_array().at(5);
    CHECK(spread.at("payloads").at(0).at("name").as_string() == "against");
    CHECK(spread.at("payloads").at(0).at("placeholder").as_string() == "nbkr");
  }
  SUBCASE("a body that is not a JSON object") {
    auto res = f.post("metrics", "{\"metric\":");
    CHECK(res.result() == http::status::bad_request);
    CHECK(json_of(res).at("error").at("code").as_string() == "invalid_body");
    field_error(f.post("metrics", "[1]"), "body", "invalid_body");
    field_error(f.post("metrics", R"({"metric":7})"), "metric");
  }
}

TEST_CASE("grafana: /metric-payload-options answers each payload the metrics name") {
  fixture f;
  auto values = [&](std::string body) {
    std::vector<std::string> out;
    const auto v = ok_json(f.post("metric-payload-options", std::move(body)));
    for (const auto& o : v.as_array()) {
      CHECK(o.at("label").is_string());
      out.emplace_back(o.at("value").as_string());
    }
    return out;
  };
  CHECK(values(R"({"metric":"USD@nbkr","payload":{},"name":"aggregation"})") ==
        std::vector<std::string>{"last", "open", "high", "low", "close", "ohlc"});
  CHECK(values(R"({"metric":"USD@nbkr","payload":{},"name":"format"})") ==
        std::vector<std::string>{"time_series", "table"});
  CHECK(values(R"({"metric":"spread:USD@24kg","payload":{},"name":"against"})") ==
        std::vector<std::string>{"nbkr", "quiet"});
  CHECK(values(R"({"metric":"alerts","payload":{},"name":"source"})") ==
        std::vector<std::string>{"24kg", "nbkr", "quiet"});
  CHECK(values(R"({"metric":"alerts","payload":{"source":"24kg"},"name":"rule"})") ==
        std::vector<std::string>{"usd-high"});

  const std::string m = field_error(
      f.post("metric-payload-options", R"({"metric":"USD@nbkr","payload":{},"name":"colour"})"),
      "name");
  CHECK(contains(m, "aggregation, format, against, source, rule"));
  field_error(f.post("metric-payload-options", R"({"metric":"USD@nbkr","payload":{}})"), "name",
              "missing_field");
  field_error(f.post("metric-payload-options", R"({"metric":"x","payload":[],"name":"format"})"),
              "payload");
  field_error(f.post("metric-payload-options", ""), "body", "invalid_body");
}

TEST_CASE("grafana: /query downsamples in the store to maxDataPoints on a round step") {
  fixture f;
  // 144 change points in the day; maxDataPoints 10 and intervalMs 1m ask for at least
  // 2.4h buckets: the step is 3h, giving 8 points at t0 + k*3h, each the rate in force at
  // its bucket's end (change point 18k+17).
  const auto first =
      f.post("query", query_body(R"([{"refId":"A","datasource":{"type":"simpod-json-datasource",)"
                                 R"("uid":"somrated"},"editorMode":"builder","target":"USD@24kg",)"
                                 R"("payload":{"aggregation":"last"}}])"));
  const auto v = ok_json(first);
  REQUIRE(v.as_array().size() == 1);
  const auto& s = v.as_array().at(0);
  CHECK(s.at("target").as_string() == "USD@24kg");
  CHECK(s.at("refId").as_string() == "A");
  CHECK(s.at("title").as_string() == "USD (24kg)");
  CHECK(s.at("tags").at("source").as_string() == "24kg");
  CHECK(s.at("tags").at("currency").as_string() == "USD");
  CHECK(s.at("tags").at("aggregation").as_string() == "last");
  const auto points = points_of(first.body());
  REQUIRE(points.size() == 8);
  for (int k = 0; k < 8; ++k) {
    CAPTURE(k);
    CHECK(points[k].second == t0_ms + k * 3 * 3600000LL);
    const int i = 18 * k + 17;
    CHECK(points[k].first == fmt::format("{}.{:02}", 87 + i / 100, i % 100));
  }
  // Values are the published digits as JSON numbers, not strings or binary doubles.
  CHECK(contains(first.body(), R"([87.17,1749513600000],)"));
  CHECK(contains(first.body(), R"([88.43,1749589200000]])"));

  SUBCASE("a range off the grid: buckets aligned to the step, never more than asked") {
    const auto w = f.post("query", query_body(R"([{"refId":"A","target":"USD@24kg"}])",
                                              {.from = "2025-06-10T04:07:13.250Z",
                                               .to = "2025-06-10T16:00:00.000Z",
                                               .max_points = "4",
                                               .interval_ms = "1000"}));
    ok_json(w);
    // 11h53m / 4 asks for 2h58m: 3h buckets from 03:00 would be 5, so the step is 6h,
    // from 00:00: 3 points, the last one the rate in force at range.to (change point 96).
    const auto p = points_of(w.body());
    REQUIRE(p.size() == 3);
    CHECK(p[0] == std::pair<std::string, std::int64_t>{"87.35", t0_ms});
    CHECK(p[1] == std::pair<std::string, std::int64_t>{"87.71", t0_ms + 6 * 3600000LL});
    CHECK(p[2] == std::pair<std::string, std::int64_t>{"87.96", t0_ms + 12 * 3600000LL});
  }
  SUBCASE("intervalMs coarser than range/maxDataPoints sets the step") {
    const auto w = f.post("query", query_body(R"([{"refId":"A","target":"USD@24kg"}])",
                                              {.max_points = "1000", .interval_ms = "21600000"}));
    ok_json(w);
    const auto p = points_of(w.body());
    REQUIRE(p.size() == 4);
    CHECK(p[1] == std::pair<std::string, std::int64_t>{"87.71", t0_ms + 6 * 3600000LL});
  }
  SUBCASE("Unix milliseconds for the range, no maxDataPoints: at most 1000 points") {
    const auto w = f.post(
        "query",
        fmt::format(R"({{"range":{{"from":{},"to":{}}},"targets":[{{"target":"USD@24kg"}}]}})",
                    t0_ms, t0_ms + 86400000));
    ok_json(w);
    // A day in at most 1000 buckets of at least 1s: 2m steps, 720 of them; the rate
    // moves every 10 minutes, so each value appears 5 times.
    const auto p = points_of(w.body());
    REQUIRE(p.size() == 720);
    CHECK(p[5] == std::pair<std::string, std::int64_t>{"87.01", t0_ms + 10 * 60000});
  }
}

TEST_CASE("grafana: /query aggregations, tables and spreads") {
  fixture f;
  SUBCASE("ohlc as time series: one series per column") {
    const auto res = f.post(
        "query",
        query_body(R"([{"refId":"B","target":"USD@24kg","payload":{"aggregation":"ohlc"}}])"));
    const auto v = ok_json(res);
    REQUIRE(v.as_array().size() == 4);
    std::vector<std::string> aggs;
    for (const auto& s : v.as_array())
      aggs.emplace_back(s.at("tags").at("aggregation").as_string());
    CHECK(aggs == std::vector<std::string>{"open", "high", "low", "close"});
    CHECK(v.as_array().at(1).at("title").as_string() == "USD (24kg) high");
    // The first 3h bucket holds change points 0..17: open 87.00, high 87.17, low 87.00.
    CHECK(points_of(res.body(), 0).front().first == "87.00");
    CHECK(points_of(res.body(), 1).front().first == "87.17");
    CHECK(points_of(res.body(), 2).front().first == "87.00");
    CHECK(points_of(res.body(), 3).front().first == "87.17");
  }
  SUBCASE("table format: one table for the target's series, rows in time order") {
    const auto res = f.post(
        "query",
        query_body(R"j([{"refId":"A","target":"USD@(24kg|nbkr)","payload":{"format":"table"}}])j"));
    const auto v = ok_json(res);
    REQUIRE(v.as_array().size() == 1);
    const auto& t = v.as_array().at(0);
    CHECK(t.at("type").as_string() == "table");
    CHECK(t.at("refId").as_string() == "A");
    std::vector<std::string> columns;
    for (const auto& c : t.at("columns").as_array()) columns.emplace_back(c.at("text").as_string());
    CHECK(columns == std::vector<std::string>{"time", "currency", "source", "rate"});
    CHECK(t.at("columns").at(0).at("type").as_string() == "time");
    CHECK(t.at("columns").at(3).at("type").as_string() == "number");
    const auto rows = rows_of(res.body());
    REQUIRE(rows.size() == 16);
    CHECK(rows.at(0) == R"([1749513600000,"USD","24kg",87.17])");
    CHECK(rows.at(1) == R"([1749513600000,"USD","nbkr",87.5020])");
    CHECK(rows.at(15) == R"([1749589200000,"USD","nbkr",87.5230])");
  }
  SUBCASE("legacy type: table, ohlc columns for a candlestick panel") {
    const auto res =
        f.post("query", query_body(R"([{"refId":"A","target":"USD@24kg","type":"table",)"
                                   R"("payload":{"aggregation":"ohlc"}}])"));
    const auto v = ok_json(res);
    CHECK(v.at(0).at("columns").as_array().size() == 7);
    CHECK(rows_of(res.body()).at(0) == R"([1749513600000,"USD","24kg",87.00,87.17,87.00,87.17])");
  }
  SUBCASE("spread against the official source, exact to 4 places") {
    const auto res = f.post("query", query_body(R"([{"refId":"S","target":"spread:USD@24kg"}])"));
    const auto v = ok_json(res);
    REQUIRE(v.as_array().size() == 1);
    const auto& s = v.as_array().at(0);
    CHECK(s.at("target").as_string() == "spread:USD@24kg");
    CHECK(s.at("unit").as_string() == "percent");
    CHECK(s.at("tags").at("against").as_string() == "nbkr");
    const auto p = points_of(res.body());
    REQUIRE(p.size() == 8);
    // |87.17 - 87.5020| / 87.5020 * 100 = 0.37942…; |88.43 - 87.5230| / 87.5230 = 1.03630…
    CHECK(p.front() == std::pair<std::string, std::int64_t>{"0.3794", t0_ms});
    CHECK(p[2].first == "0.0251");
    CHECK(p.back() == std::pair<std::string, std::int64_t>{"1.0363", t0_ms + 21 * 3600000LL});
    const std::string m =
        field_error(f.post("query", query_body(R"([{"refId":"S","target":"spread:USD@nbkr"}])")),
                    "targets[0].payload.against");
    CHECK(contains(m, "nbkr"));
    field_error(f.post("query",
                       query_body(R"([{"target":"spread:USD@24kg","payload":{"against":"ecb"}}])")),
                "targets[0].payload.against", "unknown_source");
  }
}

TEST_CASE("grafana: /query targets, variables and ad hoc filters") {
  fixture f;
  auto answer = [&](std::string_view targets, const query_options& o = {}) {
    return ok_json(f.post("query", query_body(targets, o)));
  };
  SUBCASE("USD alone is the first source; lists and * answer the pairs that have data") {
    CHECK(targets_of(answer(R"([{"refId":"A","target":"USD"}])")) ==
          std::vector<std::string>{"USD@24kg"});
    CHECK(targets_of(answer(R"j([{"refId":"A","target":"(USD|RUB)@(nbkr|24kg)"}])j")) ==
          std::vector<std::string>{"USD@nbkr", "USD@24kg", "RUB@24kg"});
    CHECK(targets_of(answer(R"([{"refId":"A","target":"*@nbkr"}])")) ==
          std::vector<std::string>{"USD@nbkr", "EUR@nbkr"});
    CHECK(targets_of(answer(R"([{"refId":"A","target":"eur@.*"}])")) ==
          std::vector<std::string>{"EUR@24kg", "EUR@nbkr"});
    // One currency at one source is answered even before it has data.
    const auto v = answer(R"([{"refId":"A","target":"RUB@nbkr"}])");
    CHECK(targets_of(v) == std::vector<std::string>{"RUB@nbkr"});
    CHECK(v.at(0).at("datapoints").as_array().empty());
  }
  SUBCASE("hidden and placeholder targets are skipped; none left is an empty answer") {
    CHECK(answer(R"([{"refId":"A","target":"USD@24kg","hide":true},{"refId":"B"}])")
              .as_array()
              .empty());
    CHECK(answer("[]").as_array().empty());
  }
  SUBCASE("scopedVars resolve variables Grafana left in the target") {
    // As the plugin sends them: dashboard variables by id, then Grafana's own.
    const query_options vars{
        .scoped = R"({"currency":{"selected":false,"text":"USD + EUR","value":["USD","EUR"]},)"
                  R"("src":{"selected":false,"text":"nbkr","value":"nbkr"},)"
                  R"("all":{"selected":false,"text":"All","value":"$__all"},)"
                  R"("__interval":{"text":"1m","value":"1m"}})"};
    CHECK(targets_of(answer(R"([{"refId":"A","target":"$currency@${src}"}])", vars)) ==
          std::vector<std::string>{"USD@nbkr", "EUR@nbkr"});
    CHECK(targets_of(answer(R"([{"refId":"A","target":"[[currency]]@24kg"}])", vars)) ==
          std::vector<std::string>{"USD@24kg", "EUR@24kg"});
    CHECK(targets_of(answer(R"([{"refId":"A","target":"USD@$all"}])", vars)) ==
          std::vector<std::string>{"USD@24kg", "USD@nbkr"});
    const std::string m =
        field_error(f.post("query", query_body(R"([{"refId":"A","target":"$nope@nbkr"}])")),
                    "targets[0].target");
    CHECK(contains(m, "$nope"));
  }
  SUBCASE("filters and adhocFilters narrow the series") {
    CHECK(targets_of(answer(R"([{"refId":"A","target":"*@*"}])",
                            {.filters = R"([{"key":"source","operator":"=","value":"nbkr"},)"
                                        R"({"key":"currency","operator":"!=","value":"eur"}])"})) ==
          std::vector<std::string>{"USD@nbkr"});
    // Older plugin versions send adhocFilters instead.
    CHECK(targets_of(answer(
              R"([{"refId":"A","target":"USD@*"}])",
              {.extra = R"(,"adhocFilters":[{"key":"source","operator":"!=","value":"nbkr"}])"})) ==
          std::vector<std::string>{"USD@24kg"});
    CHECK(targets_of(answer(
              R"([{"refId":"A","target":"*@24kg"}])",
              {.filters =
                   R"([{"key":"currency","operator":"=|","value":"","values":["RUB","EUR"]}])"})) ==
          std::vector<std::string>{"EUR@24kg", "RUB@24kg"});
    const std::string m = field_error(
        f.post("query",
               query_body(R"([{"target":"USD"}])",
                          {.filters = R"([{"key":"source","operator":"=~","value":"n.*"}])"})),
        "filters[0].operator");
    CHECK(contains(m, "=~"));
    field_error(f.post("query", query_body(R"([{"target":"USD"}])",
                                           {.filters = R"([{"key":"City","value":"Berlin"}])"})),
                "filters[0].key");
  }
}

TEST_CASE("grafana: /query annotations from alert events and the health table") {
  fixture f;
  auto answer = [&](std::string_view targets, const query_options& o = {}) {
    return ok_json(f.post("query", query_body(targets, o)));
  };
  SUBCASE("alerts: events in the range; a resolved one spans its episode") {
    const auto v = answer(R"([{"refId":"Anno","target":"alerts","payload":{}}])");
    REQUIRE(v.as_array().size() == 1);
    const auto& t = v.as_array().at(0);
    CHECK(t.at("type").as_string() == "table");
    std::vector<std::string> columns;
    for (const auto& c : t.at("columns").as_array()) columns.emplace_back(c.at("text").as_string());
    CHECK(columns == std::vector<std::string>{"time", "timeEnd", "title", "text", "tags"});
    const auto& rows = t.at("rows").as_array();
    REQUIRE(rows.size() == 2);
    const std::int64_t fired = t0_ms + 17 * 3600000LL;
    CHECK(rows.at(0).at(0).to_number<std::int64_t>() == fired);
    CHECK(rows.at(0).at(1).to_number<std::int64_t>() == fired);
    CHECK(rows.at(0).at(2).as_string() == "usd-high firing");
    CHECK(rows.at(0).at(3).as_string() == "USD at 24kg: above 88, measured 88.07");
    CHECK(rows.at(0).at(4).as_string() == "usd-high,firing,24kg,USD");
    CHECK(rows.at(1).at(0).to_number<std::int64_t>() == fired);
    CHECK(rows.at(1).at(1).to_number<std::int64_t>() == t0_ms + 20 * 3600000LL);
    CHECK(rows.at(1).at(2).as_string() == "usd-high resolved");
  }
  SUBCASE("alerts: narrowed by payload rule and source and by filters") {
    auto rows = [&](std::string_view targets, const query_options& o = {}) {
      return answer(targets, o).at(0).at("rows").as_array().size();
    };
    CHECK(rows(R"([{"target":"alerts","payload":{"rule":"usd-high"}}])") == 2);
    CHECK(rows(R"([{"target":"alerts","payload":{"rule":"other"}}])") == 0);
    CHECK(rows(R"([{"target":"alerts","payload":{"source":"nbkr"}}])") == 0);
    CHECK(rows(R"([{"target":"alerts"}])",
               {.filters = R"([{"key":"currency","operator":"=","value":"EUR"}])"}) == 0);
    CHECK(rows(R"([{"target":"alerts"}])",
               {.filters = R"([{"key":"source","operator":"=","value":"24kg"}])"}) == 2);
  }
  SUBCASE("health: a row per source") {
    const auto v = answer(R"([{"refId":"H","target":"health"}])");
    const auto& t = v.as_array().at(0);
    CHECK(t.at("columns").as_array().size() == 6);
    const auto& rows = t.at("rows").as_array();
    REQUIRE(rows.size() == 3);
    CHECK(rows.at(0).at(0).as_string() == "24kg");
    CHECK(rows.at(0).at(1).as_string() == "ok");
    CHECK(rows.at(0).at(4).to_number<int>() == 0);
    CHECK(rows.at(1).at(1).as_string() == "failing");
    CHECK(rows.at(1).at(4).to_number<int>() == 1);
    CHECK(rows.at(1).at(5).as_string() == "HTTP 503");
    CHECK(rows.at(2).at(1).as_string() == "never");
    CHECK(rows.at(2).at(2).as_string() == "");
    CHECK(answer(R"([{"target":"health"}])",
                 {.filters = R"([{"key":"source","operator":"=","value":"quiet"}])"})
              .at(0)
              .at("rows")
              .as_array()
              .size() == 1);
  }
}

TEST_CASE("grafana: /query refuses malformed bodies, naming the field") {
  fixture f;
  const std::string targets = R"([{"refId":"A","target":"USD@24kg"}])";
  field_error(f.post("query", ""), "body", "invalid_body");
  field_error(
      f.post("query", R"({"range":{"from":"2025-06-10T00:00:00Z","to":"2025-06-11T00:00:00Z"}})"),
      "targets", "missing_field");
  field_error(f.post("query", R"({"targets":[]})"), "range", "missing_field");
  field_error(f.post("query", R"({"targets":{},"range":{}})"), "targets");
  field_error(f.post("query", R"({"targets":[],"range":{"to":"2025-06-11T00:00:00Z"}})"),
              "range.from", "missing_field");
  // Relative times belong in range.raw; range.from must be resolved.
  const std::string m = field_error(
      f.post("query", R"({"targets":[],"range":{"from":"now-6h","to":"now"}})"), "range.from");
  CHECK(contains(m, R"("now-6h")"));
  field_error(f.post("query", query_body(targets, {.from = "2025-06-12T00:00:00Z"})), "range.from",
              "invalid_range");
  field_error(f.post("query", query_body(targets, {.max_points = R"("ten")"})), "maxDataPoints");
  field_error(f.post("query", query_body(targets, {.interval_ms = "-5"})), "intervalMs");
  field_error(f.post("query", query_body(targets, {.scoped = "[]"})), "scopedVars");
  field_error(f.post("query", query_body("[7]")), "targets[0]");
  field_error(
      f.post("query", query_body(R"([{"target":"USD@24kg","payload":{"aggregation":"avg"}}])")),
      "targets[0].payload.aggregation");
  field_error(f.post("query", query_body(R"([{"target":"USD@24kg","payload":"{not json"}])")),
              "targets[0].payload");
  field_error(f.post("query", query_body(R"([{"target":"USD@ecb"}])")), "targets[0].target",
              "unknown_source");
  field_error(f.post("query", query_body(R"([{"target":"dollars"}])")), "targets[0].target");
  field_error(f.post("query", query_body(R"([{"target":""}])")), "targets[0].target");
  field_error(f.post("query", query_body(R"([{"target":"(USD|)@24kg"}])")), "targets[0].target");

  // intervalMs past the year 9999 is refused (a huge one used to overflow the step).
  for (std::string_view huge : {"5000000000000000000", "9223372036854775807"}) {
    CAPTURE(huge);
    field_error(f.post("query", query_body(targets, {.interval_ms = huge})), "intervalMs");
  }

  // 41 targets of 5 series each: the 41st passes the limit of 200 series per request.
  std::string many = "[";
  for (int i = 0; i < 41; ++i) many += fmt::format("{}{{\"target\":\"*@*\"}}", i ? "," : "");
  many += "]";
  CHECK(contains(field_error(f.post("query", query_body(many, {.max_points = "1"})), "targets[40]",
                             "too_many_series"),
                 "200 series"));
}

TEST_CASE("grafana: /query bounds the work one body can ask for") {
  fixture f;
  SUBCASE("a target lists at most 256 names") {
    std::string codes;
    for (int i = 0; i < 257; ++i)
      codes +=
          fmt::format("{}{}{}{}", i ? "|" : "", char('A' + i / 26 % 26), char('A' + i % 26), 'X');
    const std::string m = field_error(
        f.post("query", query_body(fmt::format(R"([{{"target":"({})@24kg"}}])", codes))),
        "targets[0].target");
    CHECK(contains(m, "more than 256 currency names"));
    // 256 are fine: 255 of these and USD, which alone has data.
    codes.resize(codes.rfind('|'));
    codes.resize(codes.rfind('|'));
    const auto v = ok_json(
        f.post("query", query_body(fmt::format(R"([{{"target":"({}|USD)@24kg"}}])", codes))));
    CHECK(targets_of(v) == std::vector<std::string>{"USD@24kg"});
  }
  SUBCASE("variables may not multiply a target past 64 KiB") {
    const std::string value(2000, 'U');
    std::string target;
    for (int i = 0; i < 40; ++i) target += "$v";
    const std::string m = field_error(
        f.post("query", query_body(fmt::format(R"([{{"target":"{}"}}])", target),
                                   {.scoped = fmt::format(R"({{"v":{{"text":"v","value":"{}"}}}})",
                                                          value)})),
        "targets[0].target");
    CHECK(contains(m, "longer than 65536 bytes"));
  }
  SUBCASE("annotation and health targets count against the request's budget") {
    for (std::string_view target : {"alerts", "health"}) {
      CAPTURE(target);
      std::string many = "[";
      for (int i = 0; i < 201; ++i)
        many += fmt::format(R"({}{{"target":"{}"}})", i ? "," : "", target);
      many += "]";
      field_error(f.post("query", query_body(many)), "targets[200]", "too_many_series");
      // The last one alone is no problem.
      many.resize(many.rfind(','));
      CHECK(ok_json(f.post("query", query_body(many + "]"))).as_array().size() == 200);
    }
  }
}

TEST_CASE("grafana: /variable, /tag-keys and /tag-values") {
  fixture f;
  auto texts = [&](std::string_view endpoint, std::string body) {
    std::vector<std::string> out;
    const auto v = ok_json(f.post(endpoint, std::move(body)));
    for (const auto& o : v.as_array()) {
      if (endpoint == "variable") {
        CHECK(o.at("__text") == o.at("text"));
        CHECK(o.at("__value") == o.at("value"));
      }
      out.emplace_back(o.at("text").as_string());
    }
    return out;
  };
  const std::string range =
      R"("range":{"from":"2025-06-10T00:00:00.000Z","to":"2025-06-11T00:00:00.000Z",)"
      R"("raw":{"from":"now-24h","to":"now"}})";
  CHECK(texts("variable", fmt::format(R"({{"payload":{{"target":"currencies"}},{}}})", range)) ==
        std::vector<std::string>{"USD", "EUR", "RUB"});
  CHECK(texts("variable", R"({"payload":{"target":"currencies@nbkr"}})") ==
        std::vector<std::string>{"USD", "EUR"});
  CHECK(texts("variable", R"j({"payload":{"target":"currencies@(nbkr|quiet)"}})j") ==
        std::vector<std::string>{"USD", "EUR"});
  CHECK(texts("variable", R"({"payload":{"target":"sources"}})") ==
        std::vector<std::string>{"24kg", "nbkr", "quiet"});
  CHECK(texts("variable", R"({"payload":{"target":"rules"}})") ==
        std::vector<std::string>{"usd-high"});
  CHECK(texts("variable", R"({"payload":{"target":"metrics"}})").size() == 9);
  CHECK(texts("variable", R"({"payload":"sources"})").size() == 3);
  const std::string m =
      field_error(f.post("variable", R"({"payload":{"target":"cities"}})"), "payload.target");
  CHECK(contains(m, "currencies@SOURCE"));
  field_error(f.post("variable", R"({"payload":{}})"), "payload.target", "missing_field");
  field_error(f.post("variable", R"({"payload":{"target":"currencies@ecb"}})"), "payload.target",
              "unknown_source");

  CHECK(texts("tag-keys", "{}") == std::vector<std::string>{"source", "currency"});
  CHECK(texts("tag-keys", "") == std::vector<std::string>{"source", "currency"});
  CHECK(ok_json(f.post("tag-keys", "{}")).at(0).at("type").as_string() == "string");
  CHECK(texts("tag-values", R"({"key":"source"})") ==
        std::vector<std::string>{"24kg", "nbkr", "quiet"});
  CHECK(texts("tag-values", R"({"key":"currency"})") ==
        std::vector<std::string>{"USD", "EUR", "RUB"});
  CHECK(texts("tag-values",
              R"({"key":"currency","filters":[{"key":"source","operator":"=","value":"nbkr"}]})") ==
        std::vector<std::string>{"USD", "EUR"});
  field_error(f.post("tag-values", "{}"), "key", "missing_field");
  field_error(f.post("tag-values", R"({"key":"City"})"), "key");
}

TEST_CASE("grafana: CORS preflight and answers for browser access") {
  fixture f;
  http_request req(http::verb::options, "/grafana/query", 11);
  req.set(http::field::access_control_request_headers, "content-type");
  auto quick = f.routes.handle_without_store(req);
  REQUIRE(quick);
  CHECK(quick->result() == http::status::no_content);
  CHECK(contains((*quick)[http::field::access_control_allow_methods], "POST"));
  const auto res = f.post("query", query_body(R"([{"target":"USD"}])"));
  CHECK(res[http::field::access_control_allow_origin] == "*");

  // Errors too, so the plugin can show their message; writes never allow other origins.
  const auto refused = f.post("query", "");
  CHECK(refused.result() == http::status::bad_request);
  CHECK(refused[http::field::access_control_allow_origin] == "*");
  CHECK(f.send(http::verb::get, "/grafana/nope")[http::field::access_control_allow_origin] == "*");
  const auto write = f.send(http::verb::post, "/api/v1/alerts", "{}");
  CHECK(write.result() == http::status::forbidden);
  CHECK(write[http::field::access_control_allow_origin].empty());

  // A query is a POST: it carries no validator and is never answered 304.
  CHECK(res[http::field::etag].empty());
  http_request again(http::verb::post, "/grafana/query", 11);
  again.set(http::field::content_type, "application/json");
  again.set(http::field::if_none_match, "*");
  again.body() = query_body(R"([{"target":"USD"}])");
  again.prepare_payload();
  const auto answered = f.routes.handle(again, f.db);
  CHECK(answered.result() == http::status::ok);
  CHECK(answered.body() == res.body());
}
