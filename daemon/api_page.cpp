// `GET /` for browsers and `GET /chart/{CUR}.svg`: gathers what the page and the charts
// show from the store, and hands it to the renderers.
#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "api_common.hpp"
#include "somrated/alert_engine.hpp"
#include "somrated/chart_svg.hpp"
#include "somrated/page.hpp"
#include "somrated/store.hpp"

namespace somrated::api_detail {

namespace {

/// How far back the page looks for the rate a change is measured against.
///
/// 24 hours rather than "the end of the previous day": it needs no time zone, and the
/// change does not drop to zero at midnight while the rate has not moved since.
constexpr auto change_window = std::chrono::hours(24);

/// The shortest span an `all` chart covers, so a day-old install still reads as a chart.
constexpr auto min_all_span = std::chrono::days(1);

/// What a chart's name must end with.
constexpr std::string_view svg_suffix = ".svg";

/// Position of USD, EUR and RUB at the head of a list, as in /api/v1/latest; 3 for others.
int lead_rank(std::string_view code) {
  return code == "USD" ? 0 : code == "EUR" ? 1 : code == "RUB" ? 2 : 3;
}

/// The `lang` parameter; English when absent, 400 invalid_parameter when unknown.
page_language language_of(const request_context& ctx) {
  const std::optional<std::string_view> text = ctx.param("lang");
  if (!text) return page_language::en;
  if (auto lang = parse_page_language(*text)) return *lang;
  throw api_error(http::status::bad_request, "invalid_parameter",
                  fmt::format("lang: expected en, ru or ky, got {}", quote(*text)));
}

/// One source's rates (leading currencies first), each with the rate 24 hours earlier.
page_source source_of(const request_context& ctx, const source_config& src) {
  page_source out;
  out.name = src.name;
  std::vector<rate_point> latest = ctx.db->latest(src.name);
  std::stable_sort(latest.begin(), latest.end(), [](const rate_point& a, const rate_point& b) {
    return lead_rank(a.currency) < lead_rank(b.currency);
  });
  for (rate_point& p : latest) {
    std::optional<decimal> previous =
        ctx.db->value_at(src.name, p.currency, ctx.now - change_window);
    out.rates.push_back(page_rate{std::move(p.currency), std::move(p.rate), p.since,
                                  std::move(previous), p.effective_date});
  }
  out.last_success = ctx.db->health(src.name).last_success;
  out.stale = is_stale(src, out.last_success, ctx.now);
  return out;
}

/// The firing rules with their last measured value, in rule order.
std::vector<page_alert> firing_alerts(const request_context& ctx) {
  std::map<std::string, alert_state, std::less<>> states;
  for (alert_state& s : ctx.db->alert_states()) states.emplace(s.rule, std::move(s));
  std::vector<page_alert> out;
  for (alert_rule& rule : load_rules(*ctx.db, ctx.cfg).rules) {
    auto it = states.find(rule.name);
    if (it == states.end() || it->second.phase != alert_phase::firing) continue;
    out.push_back(page_alert{std::move(rule), it->second.value, it->second.started_at});
  }
  return out;
}

/// A chart per currency of the first source that has rates (the one the API reads by
/// default, unless it has none yet).
std::vector<page_chart> charts_of(const std::vector<page_source>& sources) {
  std::vector<page_chart> out;
  for (const page_source& s : sources) {
    if (s.rates.empty()) continue;
    for (const page_rate& r : s.rates) out.push_back(page_chart{r.currency, s.name});
    break;
  }
  return out;
}

/// The security headers both answers carry.
void set_security_headers(http_response& res, std::string_view policy) {
  res.set("Content-Security-Policy", policy);
  res.set("X-Content-Type-Options", "nosniff");
  res.set("Referrer-Policy", "no-referrer");
}

/// The currency of a chart name such as "USD.svg"; 400 when it is not one.
std::string chart_currency(std::string_view name) {
  if (name.size() <= svg_suffix.size() || !name.ends_with(svg_suffix)) {
    throw api_error(
        http::status::bad_request, "invalid_path",
        fmt::format("{}: a chart is named CUR.svg, such as /chart/USD.svg", quote(name)));
  }
  return parse_currency("currency", name.substr(0, name.size() - svg_suffix.size()));
}

/// The `range` parameter; 30 days when absent, 400 invalid_parameter when unknown.
chart_range range_of(const request_context& ctx) {
  const std::optional<std::string_view> text = ctx.param("range");
  if (!text) return chart_range::days_30;
  if (auto r = parse_chart_range(*text)) return *r;
  throw api_error(http::status::bad_request, "invalid_parameter",
                  fmt::format("range: expected 30d, 1y or all, got {}", quote(*text)));
}

/// The history a chart draws: every change point in [from, to] when there are at most
/// chart_max_points of them, else one sampled point per bucket, chosen by the store.
std::vector<history_point> chart_points(store& db, const history_query& base) {
  history_query q = base;
  q.max_points = chart_max_points;
  history_result r = db.history(q);
  if (!r.truncated) return std::move(r.points);
  q.step = chart_step(q.from, q.to);
  return std::move(db.history(q).points);
}

}  // namespace

http_response handle_page(const request_context& ctx) {
  page_data data;
  data.lang = language_of(ctx);
  for (const source_config& src : ctx.cfg.sources) data.sources.push_back(source_of(ctx, src));
  data.alerts = firing_alerts(ctx);
  data.charts = charts_of(data.sources);
  http_response res = make_response(ctx.req.version(), http::status::ok, "text/html; charset=utf-8",
                                    render_page(data));
  set_security_headers(res, page_content_security_policy());
  // The same URL answers JSON to other clients.
  res.set(http::field::vary, "Accept");
  return res;
}

http_response handle_chart(const request_context& ctx) {
  chart_data data;
  data.currency = chart_currency(ctx.path_name);
  data.range = range_of(ctx);
  data.lang = language_of(ctx);
  const source_config& src = select_source(ctx);
  data.source = src.name;
  const std::vector<std::string> known = ctx.db->currencies(src.name);
  if (std::find(known.begin(), known.end(), data.currency) == known.end()) {
    throw api_error(http::status::not_found, "unknown_currency",
                    fmt::format("no rates for {} from source {}; known: {}", data.currency,
                                src.name, join_or_none(known)));
  }

  history_query q;
  q.source = src.name;
  q.currency = data.currency;
  q.to = ctx.now;
  switch (data.range) {
    case chart_range::days_30:
      q.from = q.to - std::chrono::days(30);
      break;
    case chart_range::year_1:
      q.from = q.to - std::chrono::days(365);
      break;
    case chart_range::all: {
      // The first change point: nothing is in force at the epoch, so a raw history from
      // there starts with it.
      history_query first = q;
      first.from = timestamp{};
      first.max_points = 1;
      const history_result r = ctx.db->history(first);
      q.from = q.to - min_all_span;
      if (!r.points.empty()) q.from = std::min(q.from, r.points.front().time);
      break;
    }
  }
  data.from = q.from;
  data.to = q.to;
  data.points = chart_points(*ctx.db, q);

  http_response res =
      make_response(ctx.req.version(), http::status::ok, "image/svg+xml", render_chart_svg(data));
  // Opened on its own, the SVG is a document: no scripts, only its own style.
  set_security_headers(res, "default-src 'none'; style-src 'unsafe-inline'");
  return res;
}

}  // namespace somrated::api_detail
