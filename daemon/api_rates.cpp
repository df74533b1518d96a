#include <algorithm>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "api_common.hpp"
#include "somrated/store.hpp"

namespace somrated::api_detail {

namespace {

/// Most points a history answer may have, bucketed or raw.
constexpr std::size_t max_points = 10000;

/// Default history window when `from` is not given.
constexpr auto default_window = std::chrono::days(30);

/// The codes listed in `symbols=USD,eur`, upper-cased, first occurrence kept.
std::vector<std::string> parse_symbols(std::string_view text) {
  std::vector<std::string> out;
  std::size_t pos = 0;
  while (true) {
    std::size_t comma = text.find(',', pos);
    std::string_view item = text.substr(pos, comma == std::string_view::npos ? comma : comma - pos);
    std::optional<std::string> code = currency_code(item);
    if (!code) {
      throw api_error(http::status::bad_request, "invalid_parameter",
                      fmt::format("symbols: expected 3-letter currency codes separated by commas, "
                                  "such as USD,EUR; got {}",
                                  quote(text)));
    }
    if (std::find(out.begin(), out.end(), *code) == out.end()) out.push_back(std::move(*code));
    if (comma == std::string_view::npos) break;
    pos = comma + 1;
  }
  return out;
}

/// 404 unknown_currency for code, listing the currencies source has.
api_error unknown_currency(std::string_view param, std::string_view code, const source_config& src,
                           const std::vector<std::string>& known) {
  return api_error(http::status::not_found, "unknown_currency",
                   fmt::format("{}: no rates for {} from source {}; known: {}", param, code,
                               src.name, join_or_none(known)));
}

/// Writes one `"USD":{"rate":…,"since":…,"observed_at":…}` member.
void write_rate(json_writer& w, const rate_point& p) {
  w.key(p.currency).begin_object();
  w.key("rate").value(p.rate);
  w.key("since").value(format_rfc3339(p.since));
  w.key("observed_at").value(format_rfc3339(p.observed_at));
  if (p.effective_date) w.key("effective_date").value(format_date(*p.effective_date));
  w.end_object();
}

/// A `from`/`to` value; 400 invalid_parameter when it is not a time.
timestamp parse_time_param(std::string_view name, std::string_view text) {
  if (auto t = parse_time(text)) return *t;
  throw api_error(
      http::status::bad_request, "invalid_parameter",
      fmt::format("{}: expected YYYY-MM-DD, RFC 3339 or Unix seconds or milliseconds, got {}", name, quote(text)));
}

/// The validated history parameters, plus how to render them.
struct history_request {
  history_query query;  ///< What to ask the store.
  bool csv = false;     ///< format=csv.
};

/// Validates the history query string; throws api_error.
history_request parse_history(const request_context& ctx, const source_config& src) {
  history_request hr;
  history_query& q = hr.query;
  q.source = src.name;
  q.max_points = max_points;

  std::optional<std::string_view> currency = ctx.param("currency");
  if (!currency) {
    throw api_error(http::status::bad_request, "missing_parameter",
                    "currency: required, a 3-letter code such as USD");
  }
  q.currency = parse_currency("currency", *currency);

  std::optional<std::string_view> from_text = ctx.param("from");
  std::optional<std::string_view> to_text = ctx.param("to");
  q.to = to_text ? parse_time_param("to", *to_text) : ctx.now;
  q.from = from_text ? parse_time_param("from", *from_text) : q.to - default_window;
  const std::string from_label = from_text ? std::string(*from_text) : format_rfc3339(q.from);
  const std::string to_label = to_text ? std::string(*to_text) : format_rfc3339(q.to);
  if (q.from > q.to) {
    throw api_error(http::status::bad_request, "invalid_range",
                    fmt::format("from {} is after to {}", from_label, to_label));
  }

  std::string_view agg = ctx.param("agg").value_or("last");
  if (agg != "last" && agg != "ohlc") {
    throw api_error(http::status::bad_request, "invalid_parameter",
                    fmt::format("agg: expected last or ohlc, got {}", quote(agg)));
  }
  q.ohlc = agg == "ohlc";

  if (std::optional<std::string_view> step_text = ctx.param("step")) {
    std::optional<std::chrono::milliseconds> step = parse_duration(*step_text);
    if (!step) {
      throw api_error(http::status::bad_request, "invalid_parameter",
                      fmt::format("step: expected a duration such as 10m, 1h or 1d, got {}",
                                  quote(*step_text)));
    }
    // ceil((to - from) / step) without overflow: both are positive millisecond counts.
    const std::int64_t span = (q.to - q.from).count();
    const std::int64_t width = step->count();
    const std::int64_t buckets = span / width + (span % width != 0 ? 1 : 0);
    if (buckets > static_cast<std::int64_t>(max_points)) {
      throw api_error(http::status::bad_request, "too_many_points",
                      fmt::format("step {} over {}..{} gives {} points; the limit is {}: use a "
                                  "larger step",
                                  *step_text, from_label, to_label, buckets, max_points));
    }
    q.step = *step;
  } else if (q.ohlc) {
    throw api_error(http::status::bad_request, "missing_parameter",
                    "step: required with agg=ohlc, e.g. step=1d");
  }

  std::string_view format = ctx.param("format").value_or("json");
  if (format != "json" && format != "csv") {
    throw api_error(http::status::bad_request, "invalid_parameter",
                    fmt::format("format: expected json or csv, got {}", quote(format)));
  }
  hr.csv = format == "csv";
  return hr;
}

/// A CSV field, quoted per RFC 4180 when it holds a separator, quote or line break.
std::string csv_field(std::string_view s) {
  if (s.find_first_of(",\"\r\n") == std::string_view::npos) return std::string(s);
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  out += '"';
  return out;
}

/// The history as CSV: a header line, then one line per point, LF-terminated.
std::string history_csv(const history_query& q, const history_result& r) {
  const std::string prefix = fmt::format("{},{}", csv_field(q.currency), csv_field(q.source));
  std::string out;
  if (q.ohlc) {
    out += "time,currency,source,open,high,low,close\n";
    for (const ohlc_point& p : r.ohlc) {
      out += fmt::format("{},{},{},{},{},{}\n", format_rfc3339(p.time), prefix, p.open.text(),
                         p.high.text(), p.low.text(), p.close.text());
    }
  } else {
    out += "time,currency,source,rate\n";
    for (const history_point& p : r.points) {
      out += fmt::format("{},{},{}\n", format_rfc3339(p.time), prefix, p.rate.text());
    }
  }
  return out;
}

/// The history as JSON.
std::string history_json(const history_query& q, const history_result& r, bool pretty) {
  json_writer w(pretty);
  w.begin_object();
  w.key("base").value("KGS");
  w.key("currency").value(q.currency);
  w.key("source").value(q.source);
  w.key("from").value(format_rfc3339(q.from));
  w.key("to").value(format_rfc3339(q.to));
  w.key("step");
  if (q.step) {
    w.value(format_duration(*q.step));
  } else {
    w.null();
  }
  w.key("agg").value(q.ohlc ? "ohlc" : "last");
  w.key("points").begin_array();
  if (q.ohlc) {
    for (const ohlc_point& p : r.ohlc) {
      w.begin_object();
      w.key("time").value(format_rfc3339(p.time));
      w.key("open").value(p.open);
      w.key("high").value(p.high);
      w.key("low").value(p.low);
      w.key("close").value(p.close);
      w.end_object();
    }
  } else {
    for (const history_point& p : r.points) {
      w.begin_object();
      w.key("time").value(format_rfc3339(p.time));
      w.key("rate").value(p.rate);
      w.end_object();
    }
  }
  w.end_array();
  w.key("truncated").value(r.truncated);
  w.end_object();
  return std::move(w).release();
}

/// Position of USD, EUR and RUB at the head of a latest answer; 3 for the others.
int lead_rank(std::string_view code) {
  return code == "USD" ? 0 : code == "EUR" ? 1 : code == "RUB" ? 2 : 3;
}

}  // namespace

http_response handle_latest(const request_context& ctx) {
  const source_config& src = select_source(ctx);
  std::optional<std::vector<std::string>> symbols;
  if (auto text = ctx.param("symbols")) symbols = parse_symbols(*text);

  const std::vector<rate_point> latest = ctx.db->latest(src.name);
  std::vector<const rate_point*> shown;
  if (symbols && !latest.empty()) {
    for (const std::string& code : *symbols) {
      auto it = std::find_if(latest.begin(), latest.end(),
                             [&](const rate_point& p) { return p.currency == code; });
      if (it == latest.end())
        throw unknown_currency("symbols", code, src, ctx.db->currencies(src.name));
      shown.push_back(&*it);
    }
  } else {
    // The currencies people look for first lead, as on the 24.kg strip; the rest
    // (NBKR publishes dozens) follow alphabetically.
    for (const rate_point& p : latest) shown.push_back(&p);
    std::stable_sort(shown.begin(), shown.end(), [](const rate_point* a, const rate_point* b) {
      return lead_rank(a->currency) < lead_rank(b->currency);
    });
  }
  const std::optional<timestamp> last_success = ctx.db->health(src.name).last_success;

  json_writer w(ctx.pretty);
  w.begin_object();
  w.key("base").value("KGS");
  w.key("source").value(src.name);
  w.key("rates").begin_object();
  for (const rate_point* p : shown) write_rate(w, *p);
  w.end_object();
  w.key("stale").value(is_stale(src, last_success, ctx.now));
  w.key("last_success");
  write_time(w, last_success);
  w.end_object();
  return json_response(ctx, http::status::ok, std::move(w).release());
}

http_response handle_history(const request_context& ctx) {
  const source_config& src = select_source(ctx);
  const history_request hr = parse_history(ctx, src);
  const std::vector<std::string> known = ctx.db->currencies(src.name);
  if (std::find(known.begin(), known.end(), hr.query.currency) == known.end()) {
    throw unknown_currency("currency", hr.query.currency, src, known);
  }

  const history_result result = ctx.db->history(hr.query);
  http_response res =
      hr.csv ? make_response(ctx.req.version(), http::status::ok, "text/csv; charset=utf-8",
                             history_csv(hr.query, result))
             : json_response(ctx, http::status::ok, history_json(hr.query, result, ctx.pretty));
  if (result.truncated) res.set("X-Somrated-Truncated", "true");
  return res;
}

}  // namespace somrated::api_detail
