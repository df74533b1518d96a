// The HTML page: rates per source with their 24-hour change, freshness, firing alerts
// and charts, rendered from plain data.
#include "somrated/page.hpp"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>

#include <fmt/format.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <boost/url/url.hpp>

#include "page_assets.hpp"
#include "page_text.hpp"
#include "somrated/chart_svg.hpp"

namespace somrated {

namespace {

using page_text::texts;

/// 10^n for n in 0..18.
std::int64_t power_of_ten(int n) {
  std::int64_t p = 1;
  for (int i = 0; i < n; ++i) p *= 10;
  return p;
}

/// The mantissa of d at scale (>= d.scale()), or nullopt on overflow.
std::optional<std::int64_t> at_scale(const decimal& d, int scale) {
  std::int64_t out = 0;
  if (__builtin_mul_overflow(d.mantissa(), power_of_ten(scale - d.scale()), &out))
    return std::nullopt;
  return out;
}

/// A non-negative integer count of 10^-scale units as decimal text: 65, 2 -> "0.65".
std::string fixed_text(std::int64_t units, int scale) {
  std::string digits = std::to_string(units);
  if (scale == 0) return digits;
  const auto width = static_cast<std::size_t>(scale) + 1;
  if (digits.size() < width) digits.insert(0, width - digits.size(), '0');
  digits.insert(digits.size() - static_cast<std::size_t>(scale), 1, '.');
  return digits;
}

/// "2026-11-28 03:04 UTC": what the page shows before its script localises times.
std::string utc_text(timestamp t) {
  std::string s = format_rfc3339(t);  // 2026-11-28T03:04:09Z
  return fmt::format("{} {} UTC", s.substr(0, 10), s.substr(11, 5));
}

/// A `<time>` for an instant, which the page's script rewrites in local time.
std::string time_element(timestamp t) {
  return fmt::format(R"(<time class="instant" datetime="{}">{}</time>)", format_rfc3339(t),
                     utc_text(t));
}

/// A duration with a localised unit: "15 min", "2 ч", "1 күн".
std::string readable_duration(std::chrono::milliseconds d, const texts& t) {
  const std::string text = format_duration(d);  // "15m", "1500ms", "2w"
  std::size_t unit_at = text.size();
  while (unit_at > 0 && (text[unit_at - 1] < '0' || text[unit_at - 1] > '9')) --unit_at;
  const std::string_view unit = std::string_view(text).substr(unit_at);
  const std::string_view name = unit == "ms"  ? t.units.ms
                                : unit == "s" ? t.units.s
                                : unit == "m" ? t.units.m
                                : unit == "h" ? t.units.h
                                : unit == "d" ? t.units.d
                                : unit == "w" ? t.units.w
                                              : unit;
  return fmt::format("{} {}", text.substr(0, unit_at), name);
}

/// The URL of a chart image: /chart/USD.svg?range=30d&source=24kg[&lang=ru].
std::string chart_url(const page_chart& c, chart_range r, page_language lang) {
  boost::urls::url u;
  u.set_path(fmt::format("/chart/{}.svg", c.currency));
  u.params().append({"range", chart_range_name(r)});
  u.params().append({"source", c.source});
  if (lang != page_language::en) u.params().append({"lang", page_language_code(lang)});
  return std::string(u.buffer());
}

/// The page's `?lang=` link for lang.
std::string language_link(page_language lang, page_language current, std::string_view name) {
  const std::string_view code = page_language_code(lang);
  return fmt::format(R"(<a href="/?lang={0}" hreflang="{0}" lang="{0}"{1}>{2}</a>)", code,
                     lang == current ? R"( aria-current="page")" : "", name);
}

/// The change cell of a rate row: arrow, signed difference and percent, and words for
/// screen readers, so the direction reads without colour.
std::string change_cell(const page_rate& r, const texts& t) {
  std::optional<rate_change> c;
  if (r.previous) c = compare_rates(r.rate, *r.previous);
  if (!c) {
    return fmt::format(
        R"(<td class="num change unknown"><span aria-hidden="true">—</span><span class="sr">{}</span></td>)",
        markup_escape(t.trend_unknown));
  }
  const std::string_view cls = c->trend == rate_trend::up     ? "up"
                               : c->trend == rate_trend::down ? "down"
                                                              : "same";
  const std::string_view arrow = c->trend == rate_trend::up     ? "▲"
                                 : c->trend == rate_trend::down ? "▼"
                                                                : "=";
  const std::string_view words = c->trend == rate_trend::up     ? t.trend_up
                                 : c->trend == rate_trend::down ? t.trend_down
                                                                : t.trend_same;
  std::string percent;
  if (!c->percent.empty()) percent = fmt::format(" <small>({}%)</small>", c->percent);
  return fmt::format(
      R"(<td class="num change {}"><span class="sr">{} </span><span aria-hidden="true">{}</span> {}{}</td>)",
      cls, markup_escape(words), arrow, markup_escape(c->difference), percent);
}

/// One source's card: name, freshness badge, last read time and the rates table.
std::string source_card(const page_source& s, std::size_t index, const texts& t) {
  std::string out;
  out += fmt::format(
      R"(<section class="card source" aria-labelledby="src-{0}"><div class="card-head">)"
      R"(<h2 id="src-{0}">{1}</h2>)",
      index, markup_escape(s.name));
  if (s.stale) {
    out += fmt::format(
        R"(<span class="badge stale" title="{}"><span aria-hidden="true">⚠ </span>{}</span>)",
        markup_escape(t.stale_hint), markup_escape(t.stale));
  } else {
    out += fmt::format(
        R"(<span class="badge fresh" title="{}"><span aria-hidden="true">✓ </span>{}</span>)",
        markup_escape(t.fresh_hint), markup_escape(t.fresh));
  }
  out += "</div>";
  out += fmt::format(R"(<p class="meta">{} {}</p>)", markup_escape(t.last_read),
                     s.last_success ? time_element(*s.last_success) : markup_escape(t.never));
  std::optional<std::chrono::sys_days> effective;
  for (const page_rate& r : s.rates) {
    if (r.effective_date && (!effective || *r.effective_date > *effective))
      effective = r.effective_date;
  }
  if (effective) {
    out += fmt::format(R"(<p class="meta">{}</p>)",
                       markup_escape(fmt::format(fmt::runtime(t.rates_for),
                                                 fmt::arg("date", format_date(*effective)))));
  }
  if (s.rates.empty()) {
    out += fmt::format(R"(<p>{}</p></section>)", markup_escape(t.no_rates));
    return out;
  }
  out += fmt::format(
      R"(<table><thead><tr><th scope="col">{}</th><th scope="col" class="num">{}</th>)"
      R"(<th scope="col" class="num">{}</th><th scope="col" class="since">{}</th></tr></thead><tbody>)",
      markup_escape(t.col_currency), markup_escape(t.col_rate), markup_escape(t.col_change),
      markup_escape(t.col_since));
  for (const page_rate& r : s.rates) {
    out += fmt::format(
        R"(<tr data-currency="{0}"><th scope="row">{0}</th><td class="num rate">{1}</td>{2})"
        R"(<td class="since">{3}</td></tr>)",
        markup_escape(r.currency), markup_escape(r.rate.text()), change_cell(r, t),
        time_element(r.since));
  }
  out += "</tbody></table></section>";
  return out;
}

/// What a rule watches, in words, with every value escaped.
std::string condition_text(const alert_rule& rule, const texts& t) {
  std::string_view tpl = t.condition[static_cast<std::size_t>(rule.condition)];
  if (rule.condition == alert_condition::change_pct) {
    if (rule.direction == alert_direction::up) tpl = t.change_up;
    if (rule.direction == alert_direction::down) tpl = t.change_down;
  }
  return fmt::format(
      fmt::runtime(tpl), fmt::arg("currency", markup_escape(rule.currency)),
      fmt::arg("source", markup_escape(rule.source)),
      fmt::arg("threshold", markup_escape(rule.threshold ? rule.threshold->text() : "")),
      fmt::arg("window", markup_escape(readable_duration(rule.window, t))),
      fmt::arg("against", markup_escape(rule.against)),
      fmt::arg("limit", markup_escape(readable_duration(rule.stale_after, t))));
}

/// The measured value as shown: a rate as is, a percent with "%", seconds as a duration.
std::string value_text(const page_alert& a, const texts& t) {
  switch (a.rule.condition) {
    case alert_condition::change_pct:
    case alert_condition::spread_pct:
      return a.value + "%";
    case alert_condition::stale: {
      char* end = nullptr;
      const long long seconds = std::strtoll(a.value.c_str(), &end, 10);
      if (!a.value.empty() && end && *end == '\0' && seconds > 0)
        return readable_duration(std::chrono::seconds(seconds), t);
      return a.value;
    }
    case alert_condition::above:
    case alert_condition::below:
      break;
  }
  return a.value;
}

/// The firing alerts card.
std::string alerts_card(const std::vector<page_alert>& alerts, const texts& t) {
  std::string out = fmt::format(
      R"(<section class="card alerts" aria-labelledby="alerts-title"><h2 id="alerts-title">{}</h2>)",
      markup_escape(t.alerts));
  if (alerts.empty()) {
    out += fmt::format(R"(<p class="meta">{}</p></section>)", markup_escape(t.no_alerts));
    return out;
  }
  out += "<ul>";
  for (const page_alert& a : alerts) {
    out += fmt::format(R"(<li class="alert" data-rule="{0}"><strong>{0}</strong>: {1})",
                       markup_escape(a.rule.name), condition_text(a.rule, t));
    if (!a.value.empty()) {
      out += fmt::format(R"( <span class="meta">· {} {}</span>)", markup_escape(t.alert_value),
                         markup_escape(value_text(a, t)));
    }
    if (a.started_at) {
      out += fmt::format(R"( <span class="meta">· {} {}</span>)", markup_escape(t.alert_since),
                         time_element(*a.started_at));
    }
    out += "</li>";
  }
  out += "</ul></section>";
  return out;
}

/// One chart with its period links; the first period is shown.
std::string chart_figure(const page_chart& c, page_language lang, const texts& t) {
  constexpr chart_range ranges[] = {chart_range::days_30, chart_range::year_1, chart_range::all};
  auto alt = [&](chart_range r) {
    return fmt::format(fmt::runtime(t.chart_alt), fmt::arg("currency", c.currency),
                       fmt::arg("range", t.ranges[static_cast<std::size_t>(r)]),
                       fmt::arg("source", c.source));
  };
  std::string out = fmt::format(
      R"(<figure class="chart"><figcaption><span><strong>{}</strong> <span class="meta">{}</span></span>)"
      R"(<nav class="ranges" aria-label="{}">)",
      markup_escape(c.currency),
      markup_escape(fmt::format(fmt::runtime(t.chart_source), fmt::arg("source", c.source))),
      markup_escape(t.range_label));
  for (chart_range r : ranges) {
    out += fmt::format(R"(<a href="{}" data-range="{}" data-alt="{}"{}>{}</a>)",
                       markup_escape(chart_url(c, r, lang)), chart_range_name(r),
                       markup_escape(alt(r)),
                       r == chart_range::days_30 ? R"( aria-current="true")" : "",
                       markup_escape(t.ranges[static_cast<std::size_t>(r)]));
  }
  out += fmt::format(
      R"(</nav></figcaption><img src="{}" alt="{}" width="480" height="220" loading="lazy"></figure>)",
      markup_escape(chart_url(c, chart_range::days_30, lang)),
      markup_escape(alt(chart_range::days_30)));
  return out;
}

/// `'sha256-…'` for a CSP source list.
std::string csp_hash(std::string_view text) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(), digest);
  unsigned char encoded[4 * ((SHA256_DIGEST_LENGTH + 2) / 3) + 1];
  const int n = EVP_EncodeBlock(encoded, digest, SHA256_DIGEST_LENGTH);
  return fmt::format("'sha256-{}'", std::string_view(reinterpret_cast<const char*>(encoded),
                                                     static_cast<std::size_t>(n)));
}

}  // namespace

std::optional<page_language> parse_page_language(std::string_view code) {
  if (code == "en") return page_language::en;
  if (code == "ru") return page_language::ru;
  if (code == "ky") return page_language::ky;
  return std::nullopt;
}

std::string_view page_language_code(page_language lang) {
  switch (lang) {
    case page_language::ru:
      return "ru";
    case page_language::ky:
      return "ky";
    case page_language::en:
      break;
  }
  return "en";
}

std::string markup_escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::optional<rate_change> compare_rates(const decimal& now, const decimal& before) {
  const int scale = std::max(now.scale(), before.scale());
  const auto a = at_scale(now, scale);
  const auto b = at_scale(before, scale);
  if (!a || !b) return std::nullopt;
  const std::int64_t diff = *a - *b;  // both are non-negative, so this cannot overflow
  const std::int64_t magnitude = diff < 0 ? -diff : diff;
  rate_change c;
  c.trend = diff > 0 ? rate_trend::up : diff < 0 ? rate_trend::down : rate_trend::same;
  const std::string_view sign = diff > 0 ? "+" : diff < 0 ? "-" : "";
  c.difference = fmt::format("{}{}", sign, fixed_text(magnitude, scale));
  if (*b > 0) {
    // Hundredths of a percent, rounded half up: (|diff| * 10000 * 2 + before) / (2 * before).
    std::int64_t scaled = 0;
    std::int64_t twice = 0;
    if (__builtin_mul_overflow(magnitude, std::int64_t{20000}, &scaled) ||
        __builtin_add_overflow(scaled, *b, &scaled) ||
        __builtin_mul_overflow(*b, std::int64_t{2}, &twice))
      return std::nullopt;
    const std::int64_t hundredths = scaled / twice;
    c.percent = fmt::format("{}{}", hundredths == 0 ? "" : sign, fixed_text(hundredths, 2));
  }
  return c;
}

std::string render_page(const page_data& data) {
  const texts& t = page_text::for_language(data.lang);
  std::string out;
  out.reserve(16384);
  out += fmt::format(R"(<!DOCTYPE html>)"
                     "\n"
                     R"(<html lang="{}"><head><meta charset="utf-8">)"
                     R"(<meta name="viewport" content="width=device-width, initial-scale=1">)"
                     R"(<meta name="color-scheme" content="light dark">)"
                     R"(<meta name="referrer" content="no-referrer">)"
                     R"(<title>{}</title><link rel="icon" href="data:,"><style>{}</style></head>)"
                     "\n<body><header><h1>{}</h1>",
                     page_language_code(data.lang), markup_escape(t.title), page_assets::style,
                     markup_escape(t.title));
  out += fmt::format(R"(<nav class="langs" aria-label="{}">{}{}{}</nav></header>)",
                     markup_escape(t.language_label),
                     language_link(page_language::en, data.lang, "English"),
                     language_link(page_language::ru, data.lang, "Русский"),
                     language_link(page_language::ky, data.lang, "Кыргызча"));
  out += fmt::format(R"(<main><p class="note">{}</p>)", markup_escape(t.note));
  out += fmt::format(R"(<p id="offline" class="offline" role="status" hidden>{}</p>)",
                     markup_escape(t.offline));
  out += R"(<div id="live">)";
  out += alerts_card(data.alerts, t);
  for (std::size_t i = 0; i < data.sources.size(); ++i) out += source_card(data.sources[i], i, t);
  out += "</div>";
  if (!data.charts.empty()) {
    out += fmt::format(
        R"(<section class="charts" aria-labelledby="charts-title"><h2 id="charts-title">{}</h2>)"
        R"(<div class="chart-grid">)",
        markup_escape(t.charts));
    for (const page_chart& c : data.charts) out += chart_figure(c, data.lang, t);
    out += "</div></section>";
  }
  out += fmt::format(
      R"(</main><footer><p>{} {} <a href="/api/v1/latest">/api/v1/latest</a></p></footer>)",
      markup_escape(t.refresh_note), markup_escape(t.json_note));
  out += fmt::format("<script>{}</script></body></html>\n", page_assets::script);
  return out;
}

std::string page_content_security_policy() {
  return fmt::format(
      "default-src 'none'; script-src {}; style-src {}; img-src 'self' data:; "
      "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'self'",
      csp_hash(page_assets::script), csp_hash(page_assets::style));
}

}  // namespace somrated
