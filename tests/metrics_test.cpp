#include "somrated/metrics.hpp"

#include <chrono>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>
#include <fmt/format.h>

#include "somrated/api.hpp"
#include "somrated/config.hpp"
#include "somrated/source_board.hpp"
#include "somrated/store.hpp"
#include "somrated/version.hpp"

using namespace somrated;
using namespace std::chrono_literals;
using seconds_d = std::chrono::duration<double>;

namespace {

/// 2025-06-10T00:00:00Z (Unix 1749513600): the start of the stored test data.
constexpr timestamp t0{std::chrono::sys_days{std::chrono::year{2025} / 6 / 10}};

/// A decimal from text that the test knows is valid.
decimal dec(std::string_view text) {
  auto d = decimal::parse(text);
  REQUIRE(d);
  return *d;
}

/// What m writes.
std::string text_of(const metrics& m) {
  std::string out;
  exposition_writer w(out);
  m.write(w);
  return out;
}

/// True when text has line as one of its lines.
bool has_line(const std::string& text, std::string_view line) {
  return text.find(fmt::format("\n{}\n", line)) != std::string::npos ||
         text.starts_with(fmt::format("{}\n", line));
}

/// The value written for series (a name with its labels) in text, if it is there.
std::optional<std::string> value_of(const std::string& text, std::string_view series) {
  const std::string start = fmt::format("\n{} ", series);
  const auto at = text.find(start);
  if (at == std::string::npos) return std::nullopt;
  const auto from = at + start.size();
  return text.substr(from, text.find('\n', from) - from);
}

/// Sources 24kg (every 10m), nbkr (every 1h) and empty (never scraped); notifier hook.
config test_config() {
  config c;
  for (const auto& [name, interval] :
       {std::pair{"24kg", std::chrono::milliseconds(10min)}, {"nbkr", 1h}, {"empty", 10min}}) {
    source_config s;
    s.name = name;
    s.kind = name == std::string_view("nbkr") ? "nbkr" : "24kg";
    s.url = "file:///dev/null";
    s.interval = interval;
    c.sources.push_back(s);
  }
  notifier_config n;
  n.name = "hook";
  n.url = "http://127.0.0.1:9/hook";
  c.notifiers.push_back(n);
  return c;
}

/// The registry families for one source "24kg" and one notifier "hook" after two
/// scrapes that succeeded (0.25 s, and 1 s exactly on a bound), one that failed after
/// 100 s, a delivery to be retried, a 200 on /api/v1/latest (62.5 ms) and a 404
/// elsewhere (0.5 s).
constexpr std::string_view known_registry_text =
    R"(# HELP somrated_scrapes_total Scrapes of each source by outcome: ok, not_modified (HTTP 304), held (a jump waiting for confirmation) or error.
# TYPE somrated_scrapes_total counter
somrated_scrapes_total{source="24kg",outcome="error"} 1
somrated_scrapes_total{source="24kg",outcome="held"} 0
somrated_scrapes_total{source="24kg",outcome="not_modified"} 0
somrated_scrapes_total{source="24kg",outcome="ok"} 2
# HELP somrated_scrape_duration_seconds Time from the start of a source's fetch until its rates were stored.
# TYPE somrated_scrape_duration_seconds histogram
somrated_scrape_duration_seconds_bucket{source="24kg",le="0.05"} 0
somrated_scrape_duration_seconds_bucket{source="24kg",le="0.1"} 0
somrated_scrape_duration_seconds_bucket{source="24kg",le="0.25"} 1
somrated_scrape_duration_seconds_bucket{source="24kg",le="0.5"} 1
somrated_scrape_duration_seconds_bucket{source="24kg",le="1"} 2
somrated_scrape_duration_seconds_bucket{source="24kg",le="2.5"} 2
somrated_scrape_duration_seconds_bucket{source="24kg",le="5"} 2
somrated_scrape_duration_seconds_bucket{source="24kg",le="10"} 2
somrated_scrape_duration_seconds_bucket{source="24kg",le="20"} 2
somrated_scrape_duration_seconds_bucket{source="24kg",le="30"} 2
somrated_scrape_duration_seconds_bucket{source="24kg",le="60"} 2
somrated_scrape_duration_seconds_bucket{source="24kg",le="+Inf"} 3
somrated_scrape_duration_seconds_sum{source="24kg"} 101.25
somrated_scrape_duration_seconds_count{source="24kg"} 3
# HELP somrated_notifications_total Notification delivery attempts by notifier and outcome: delivered, retry (to be tried again) or failed (given up).
# TYPE somrated_notifications_total counter
somrated_notifications_total{notifier="hook",outcome="delivered"} 0
somrated_notifications_total{notifier="hook",outcome="failed"} 0
somrated_notifications_total{notifier="hook",outcome="retry"} 1
# HELP somrated_http_requests_total HTTP requests answered, by route pattern and status code.
# TYPE somrated_http_requests_total counter
somrated_http_requests_total{route="/api/v1/latest",code="200"} 1
somrated_http_requests_total{route="other",code="404"} 1
# HELP somrated_http_request_duration_seconds Time from a request's arrival until its answer was ready, by route pattern.
# TYPE somrated_http_request_duration_seconds histogram
somrated_http_request_duration_seconds_bucket{route="/api/v1/latest",le="0.00025"} 0
somrated_http_request_duration_seconds_bucket{route="/api/v1/latest",le="0.0005"} 0
somrated_http_request_duration_seconds_bucket{route="/api/v1/latest",le="0.001"} 0
somrated_http_request_duration_seconds_bucket{route="/api/v1/latest",le="0.0025"} 0
somrated_http_request_duration_seconds_bucket{route="/api/v1/latest",le="0.005"} 0
somrated_http_request_duration_seconds_bucket{route="/api/v1/latest",le="0.01"} 0
somrated_http_request_duration_seconds_bucket{route="/api/v1/latest",le="0.025"} 0
somrated_http_request_duration_seconds_bucket{route="/api/v1/latest",le="0.05"} 0
somrated_http_request_duration_seconds_bucket{route="/api/v1/latest",le="0.1"} 1
somrated_http_request_duration_seconds_bucket{route="/api/v1/latest",le="0.25"} 1
somrated_http_request_duration_seconds_bucket{route="/api/v1/latest",le="0.5"} 1
somrated_http_request_duration_seconds_bucket{route="/api/v1/latest",le="1"} 1
somrated_http_request_duration_seconds_bucket{route="/api/v1/latest",le="2.5"} 1
somrated_http_request_duration_seconds_bucket{route="/api/v1/latest",le="5"} 1
somrated_http_request_duration_seconds_bucket{route="/api/v1/latest",le="+Inf"} 1
somrated_http_request_duration_seconds_sum{route="/api/v1/latest"} 0.0625
somrated_http_request_duration_seconds_count{route="/api/v1/latest"} 1
somrated_http_request_duration_seconds_bucket{route="other",le="0.00025"} 0
somrated_http_request_duration_seconds_bucket{route="other",le="0.0005"} 0
somrated_http_request_duration_seconds_bucket{route="other",le="0.001"} 0
somrated_http_request_duration_seconds_bucket{route="other",le="0.0025"} 0
somrated_http_request_duration_seconds_bucket{route="other",le="0.005"} 0
somrated_http_request_duration_seconds_bucket{route="other",le="0.01"} 0
somrated_http_request_duration_seconds_bucket{route="other",le="0.025"} 0
somrated_http_request_duration_seconds_bucket{route="other",le="0.05"} 0
somrated_http_request_duration_seconds_bucket{route="other",le="0.1"} 0
somrated_http_request_duration_seconds_bucket{route="other",le="0.25"} 0
somrated_http_request_duration_seconds_bucket{route="other",le="0.5"} 1
somrated_http_request_duration_seconds_bucket{route="other",le="1"} 1
somrated_http_request_duration_seconds_bucket{route="other",le="2.5"} 1
somrated_http_request_duration_seconds_bucket{route="other",le="5"} 1
somrated_http_request_duration_seconds_bucket{route="other",le="+Inf"} 1
somrated_http_request_duration_seconds_sum{route="other"} 0.5
somrated_http_request_duration_seconds_count{route="other"} 1
# HELP somrated_http_connections HTTP connections open now.
# TYPE somrated_http_connections gauge
somrated_http_connections 7
# HELP somrated_http_connection_events_total What the HTTP listener did under connection pressure: accept_failed (accept() failed, e.g. out of file descriptors), evicted (an idle or stalled connection closed to admit a new one at max_connections) or rejected (a new connection answered 503 because max_connections busy ones were open).
# TYPE somrated_http_connection_events_total counter
somrated_http_connection_events_total{event="accept_failed"} 0
somrated_http_connection_events_total{event="evicted"} 2
somrated_http_connection_events_total{event="rejected"} 1
)";

/// An api over an in-memory store holding known rates, scrape health, alert states and
/// an outbox, with a registry for its in-process families.
///
/// 24kg: USD 87.45 at t0, 88.10 at t0+1h, 87.4500 at t0+2h+250ms; EUR 99.56 from t0;
/// last scraped fine at `recent` (2 minutes ago). nbkr: USD 87.4500 and EUR 99.1234
/// from t0; last success at t0, failed since (so down and stale). empty: never scraped.
/// Alert rules eur-low (pending) and usd-high (firing). Outbox: one event to hook and
/// to pager, delivered to hook.
struct metrics_fixture {
  std::shared_ptr<const config> cfg = std::make_shared<const config>(test_config());
  store db{":memory:"};
  source_board board;
  metrics stats{*cfg};
  api routes{cfg, board, nullptr, {}, &stats};
  timestamp recent = std::chrono::floor<std::chrono::seconds>(now()) - 2min;

  metrics_fixture() {
    auto kg = [&](timestamp at, std::string_view usd) {
      const std::vector<rate_quote> q{{"USD", dec(usd)}, {"EUR", dec("99.56")}};
      db.record("24kg", at, q, std::nullopt, 0.25);
    };
    kg(t0, "87.45");
    kg(t0 + 1h, "88.10");
    kg(t0 + 2h + 250ms, "87.4500");
    const std::vector<rate_quote> nb{{"USD", dec("87.4500")}, {"EUR", dec("99.1234")}};
    db.record("nbkr", t0, nb, std::nullopt, 0.25);
    log("nbkr", t0, "ok");
    log("nbkr", t0 + 1h, "error");
    log("24kg", recent, "ok");

    alert_update u;
    for (const auto& [rule, phase] :
         {std::pair{"usd-high", alert_phase::firing}, {"eur-low", alert_phase::pending}}) {
      alert_state s;
      s.rule = rule;
      s.phase = phase;
      s.since = t0;
      s.created_at = t0;
      u.states.push_back(s);
    }
    alert_event e;
    e.event_id = "ev-1";
    e.rule = "usd-high";
    e.at = e.starts_at = t0;
    e.currency = "USD";
    e.source = "24kg";
    u.events.emplace_back(e, std::vector<std::string>{"hook", "pager"});
    db.apply_alert_update(u);
    const auto due = db.due_deliveries(t0 + 1s);
    REQUIRE(due.size() == 2);
    delivery_attempt a{t0 + 1s, 15ms, 200, "delivered", ""};
    db.record_attempt(due[0].first.id, a, delivery_status::delivered, t0 + 1s);
  }

  /// Appends a scrape log entry.
  void log(std::string_view source, timestamp at, std::string outcome) {
    scrape_record r;
    r.source = std::string(source);
    r.started_at = at;
    r.duration = 150ms;
    r.http_status = outcome == "error" ? 500 : 200;
    r.outcome = std::move(outcome);
    r.error = r.outcome == "error" ? "HTTP 500" : "";
    db.log_scrape(r);
  }

  /// GET target, answered like the daemon does.
  http_response get(std::string_view target, http::verb method = http::verb::get) {
    http_request req(method, target, 11);
    if (auto quick = routes.handle_without_store(req)) return std::move(*quick);
    return routes.handle(req, db);
  }
};

/// The part of the fixture's /metrics read from the store; recent is the 24kg's last
/// success in Unix seconds.
std::string expected_store_text(std::int64_t recent) {
  return fmt::format(
      R"(# HELP somrated_build_info Always 1; the version label names the running release.
# TYPE somrated_build_info gauge
somrated_build_info{{version="{}"}} 1
# HELP somrated_rate The rate in force: som (KGS) per 1 unit of currency, exactly as the source published it.
# TYPE somrated_rate gauge
somrated_rate{{currency="EUR",source="24kg"}} 99.56
somrated_rate{{currency="USD",source="24kg"}} 87.4500
somrated_rate{{currency="EUR",source="nbkr"}} 99.1234
somrated_rate{{currency="USD",source="nbkr"}} 87.4500
# HELP somrated_rate_change_timestamp_seconds When the rate in force first appeared, as Unix time.
# TYPE somrated_rate_change_timestamp_seconds gauge
somrated_rate_change_timestamp_seconds{{currency="EUR",source="24kg"}} 1749513600
somrated_rate_change_timestamp_seconds{{currency="USD",source="24kg"}} 1749520800.25
somrated_rate_change_timestamp_seconds{{currency="EUR",source="nbkr"}} 1749513600
somrated_rate_change_timestamp_seconds{{currency="USD",source="nbkr"}} 1749513600
# HELP somrated_source_last_success_timestamp_seconds When the source was last scraped successfully, as Unix time; absent until it has been.
# TYPE somrated_source_last_success_timestamp_seconds gauge
somrated_source_last_success_timestamp_seconds{{source="24kg"}} {}
somrated_source_last_success_timestamp_seconds{{source="nbkr"}} 1749513600
# HELP somrated_source_up 1 when the source's last scrape succeeded, 0 when it failed or none has ended yet.
# TYPE somrated_source_up gauge
somrated_source_up{{source="24kg"}} 1
somrated_source_up{{source="nbkr"}} 0
somrated_source_up{{source="empty"}} 0
# HELP somrated_source_stale 1 when the source has not been scraped successfully within 3 of its intervals, else 0.
# TYPE somrated_source_stale gauge
somrated_source_stale{{source="24kg"}} 0
somrated_source_stale{{source="nbkr"}} 1
somrated_source_stale{{source="empty"}} 1
# HELP somrated_alert_state 1 for the state each alert rule is in and 0 for the others (inactive, pending, firing, resolved).
# TYPE somrated_alert_state gauge
somrated_alert_state{{alert="eur-low",state="inactive"}} 0
somrated_alert_state{{alert="eur-low",state="pending"}} 1
somrated_alert_state{{alert="eur-low",state="firing"}} 0
somrated_alert_state{{alert="eur-low",state="resolved"}} 0
somrated_alert_state{{alert="usd-high",state="inactive"}} 0
somrated_alert_state{{alert="usd-high",state="pending"}} 0
somrated_alert_state{{alert="usd-high",state="firing"}} 1
somrated_alert_state{{alert="usd-high",state="resolved"}} 0
# HELP somrated_outbox_deliveries Notification deliveries in the outbox by status: pending (to be sent or retried), delivered, or failed.
# TYPE somrated_outbox_deliveries gauge
somrated_outbox_deliveries{{status="pending"}} 1
somrated_outbox_deliveries{{status="delivered"}} 1
somrated_outbox_deliveries{{status="failed"}} 0
)",
      somrated::version, recent);
}

}  // namespace

TEST_CASE("exposition_writer: escaping, values and histogram layout") {
  std::string out;
  exposition_writer w(out);
  w.family("demo_events_total", "counter", "Help with a \\ backslash,\na newline and \"quotes\".");
  w.sample("demo_events_total", {{"a", "q\"uote"}, {"b", "back\\slash"}, {"c", "new\nline"}},
           std::uint64_t{3});
  w.sample("demo_events_total", {}, std::uint64_t{18446744073709551615u});
  w.family("demo_value", "gauge", "Values.");
  w.sample("demo_value", {{"kind", "decimal"}}, "87.4500");
  w.sample("demo_value", {{"kind", "double"}}, 0.1);
  w.sample("demo_value", {{"kind", "tiny"}}, 1e-05);
  w.sample("demo_value", {{"kind", "nan"}}, std::numeric_limits<double>::quiet_NaN());
  w.sample("demo_value", {{"kind", "inf"}}, -std::numeric_limits<double>::infinity());
  w.family("demo_seconds", "histogram", "A histogram without labels.");
  const double bounds[] = {0.5, 1};
  const std::uint64_t counts[] = {2, 0, 1};
  w.histogram("demo_seconds", {}, bounds, counts, 5.5);
  CHECK(out == R"(# HELP demo_events_total Help with a \\ backslash,\na newline and "quotes".
# TYPE demo_events_total counter
demo_events_total{a="q\"uote",b="back\\slash",c="new\nline"} 3
demo_events_total 18446744073709551615
# HELP demo_value Values.
# TYPE demo_value gauge
demo_value{kind="decimal"} 87.4500
demo_value{kind="double"} 0.1
demo_value{kind="tiny"} 1e-05
demo_value{kind="nan"} NaN
demo_value{kind="inf"} -Inf
# HELP demo_seconds A histogram without labels.
# TYPE demo_seconds histogram
demo_seconds_bucket{le="0.5"} 2
demo_seconds_bucket{le="1"} 2
demo_seconds_bucket{le="+Inf"} 3
demo_seconds_sum 5.5
demo_seconds_count 3
)");
}

TEST_CASE("metrics: exact text for a known state") {
  config c;
  source_config s;
  s.name = "24kg";
  c.sources.push_back(s);
  notifier_config n;
  n.name = "hook";
  c.notifiers.push_back(n);
  metrics m(c);
  m.count_scrape("24kg", "ok", seconds_d(0.25));
  m.count_scrape("24kg", "ok", 1s);
  m.count_scrape("24kg", "error", 100s);
  m.count_notification("hook", "retry");
  m.count_request("/api/v1/latest", 200, 62500us);
  m.count_request("other", 404, 500ms);
  m.count_connection(metrics::connection_event::evicted);
  m.count_connection(metrics::connection_event::rejected);
  m.count_connection(metrics::connection_event::evicted);
  m.watch_connections([] { return std::size_t{7}; });
  CHECK(text_of(m) == known_registry_text);
}

TEST_CASE("metrics: families are written even when empty, series only when counted") {
  metrics m;
  const std::string text = text_of(m);
  for (std::string_view family : {"somrated_scrapes_total", "somrated_scrape_duration_seconds",
                                  "somrated_notifications_total", "somrated_http_requests_total",
                                  "somrated_http_request_duration_seconds"}) {
    CAPTURE(family);
    CHECK(has_line(text, fmt::format("# TYPE {} {}", family,
                                     family.ends_with("_total") ? "counter" : "histogram")));
  }
  // The connection events are few and fixed: all three are there from the start.
  for (std::string_view event : {"accept_failed", "evicted", "rejected"}) {
    CHECK(has_line(text,
                   fmt::format(R"(somrated_http_connection_events_total{{event="{}"}} 0)", event)));
  }
  // Without a server to watch, there is no open connection gauge.
  CHECK(text.find("somrated_http_connections ") == std::string::npos);
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    CAPTURE(line);
    if (!line.starts_with("somrated_http_connection_events_total"))
      CHECK(line.find('{') == std::string::npos);
  }

  SUBCASE("label values from outside the config are escaped") {
    m.count_scrape("we\"ird\\\nname", "error", 0s);
    const std::string after = text_of(m);
    CHECK(has_line(after, R"(somrated_scrapes_total{source="we\"ird\\\nname",outcome="error"} 1)"));
    CHECK(has_line(
        after, R"(somrated_scrape_duration_seconds_bucket{source="we\"ird\\\nname",le="0.05"} 1)"));
  }
}

TEST_CASE("metrics: counting from several threads loses nothing") {
  metrics m;
  constexpr int threads = 4;
  constexpr int rounds = 2000;
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&m, t] {
      for (int i = 0; i < rounds; ++i) {
        m.count_request("/api/v1/latest", 200, 700us);
        m.count_request(t % 2 == 0 ? "/metrics" : "other", 500, 2s);
        m.count_scrape("24kg", i % 4 == 0 ? "error" : "ok", 500ms);
        m.count_notification("hook", "delivered");
      }
    });
  }
  // Scrapes of /metrics happen while the counters move (at least until one saw them).
  constexpr std::string_view other_count =
      R"(somrated_http_request_duration_seconds_count{route="other"})";
  std::string during;
  for (int i = 0; i < 50 || !value_of(during, other_count); ++i) during = text_of(m);
  for (auto& w : workers) w.join();
  const std::string text = text_of(m);
  constexpr int total = threads * rounds;
  CHECK(has_line(
      text, fmt::format(R"(somrated_http_requests_total{{route="/api/v1/latest",code="200"}} {})",
                        total)));
  CHECK(has_line(
      text,
      fmt::format(R"(somrated_http_requests_total{{route="/metrics",code="500"}} {})", total / 2)));
  CHECK(has_line(text, fmt::format(R"(somrated_http_requests_total{{route="other",code="500"}} {})",
                                   total / 2)));
  CHECK(has_line(
      text,
      fmt::format(
          R"(somrated_http_request_duration_seconds_bucket{{route="/api/v1/latest",le="0.001"}} {})",
          total)));
  CHECK(has_line(
      text,
      fmt::format(R"(somrated_http_request_duration_seconds_bucket{{route="other",le="1"}} 0)")));
  CHECK(has_line(
      text,
      fmt::format(R"(somrated_http_request_duration_seconds_bucket{{route="other",le="2.5"}} {})",
                  total / 2)));
  CHECK(has_line(
      text,
      fmt::format(R"(somrated_http_request_duration_seconds_sum{{route="other"}} {})", total)));
  CHECK(has_line(
      text, fmt::format(R"(somrated_http_request_duration_seconds_count{{route="/metrics"}} {})",
                        total / 2)));
  CHECK(has_line(text, fmt::format(R"(somrated_scrapes_total{{source="24kg",outcome="ok"}} {})",
                                   total * 3 / 4)));
  CHECK(has_line(text, fmt::format(R"(somrated_scrapes_total{{source="24kg",outcome="error"}} {})",
                                   total / 4)));
  CHECK(has_line(
      text, fmt::format(R"(somrated_scrape_duration_seconds_sum{{source="24kg"}} {})", total / 2)));
  CHECK(has_line(
      text, fmt::format(R"(somrated_notifications_total{{notifier="hook",outcome="delivered"}} {})",
                        total)));
  // Each scrape saw a consistent state: a histogram's +Inf bucket equals its count.
  const auto inf =
      value_of(during, R"(somrated_http_request_duration_seconds_bucket{route="other",le="+Inf"})");
  REQUIRE(inf);
  CHECK(inf == value_of(during, other_count));
}

TEST_CASE("GET /metrics: the whole answer for a fixture store") {
  metrics_fixture f;
  f.stats.count_scrape("24kg", "ok", 250ms);
  f.stats.count_request("/metrics", 200, 2ms);
  const http_response res = f.get("/metrics");
  REQUIRE(res.result() == http::status::ok);
  CHECK(res[http::field::content_type] == "text/plain; version=0.0.4; charset=utf-8");
  const std::int64_t recent =
      std::chrono::floor<std::chrono::seconds>(f.recent).time_since_epoch().count();
  CHECK(res.body() == expected_store_text(recent) + text_of(f.stats));
  // The registry part is the registry's own text (tested exactly above), which holds
  // every configured source and notifier at zero until counted.
  CHECK(has_line(res.body(), R"(somrated_scrapes_total{source="24kg",outcome="ok"} 1)"));
  CHECK(has_line(res.body(), R"(somrated_scrapes_total{source="empty",outcome="ok"} 0)"));
  CHECK(
      has_line(res.body(), R"(somrated_notifications_total{notifier="hook",outcome="failed"} 0)"));
  CHECK(has_line(res.body(), R"(somrated_http_requests_total{route="/metrics",code="200"} 1)"));

  SUBCASE("without a registry only the store's gauges are written") {
    api bare{f.cfg, f.board};
    const http_response r = bare.handle(http_request(http::verb::get, "/metrics", 11), f.db);
    REQUIRE(r.result() == http::status::ok);
    CHECK(r.body() == expected_store_text(recent));
  }
  SUBCASE("HEAD answers like GET") {
    const http_response head = f.get("/metrics", http::verb::head);
    CHECK(head.result() == http::status::ok);
    CHECK(head[http::field::content_type] == "text/plain; version=0.0.4; charset=utf-8");
  }
  SUBCASE("query parameters are refused like elsewhere") {
    CHECK(f.get("/metrics?format=json").result() == http::status::bad_request);
  }
}
