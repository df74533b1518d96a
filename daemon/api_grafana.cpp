// The Grafana JSON datasource (simpod-json-datasource) mounted at /grafana.
//
// Targets, as /grafana/metrics lists them and /grafana/query accepts them:
//   USD@nbkr          the rate of USD at source nbkr (KGS per unit)
//   USD               the same at the first configured source
//   spread:USD@24kg   |rate - official| / official * 100 (as spread_pct alert rules measure
//                     it), against payload `against` or the first NBKR source
//   alerts            alert events, as a table Grafana reads as annotations
//   health            one row per source: scrape status, last success, failures
// The currency and the source part may also be a list, "(USD|EUR)@(24kg|nbkr)" (what
// Grafana's regex format makes of a multi-value variable), or "*" for all; such a target
// answers one series per combination that has data.
//
// Payload (per target): aggregation last|open|high|low|close|ohlc, format
// time_series|table, against (spread), rule and source (alerts). Ad hoc filters
// (`filters`, or `adhocFilters` from older clients) on source and currency narrow every
// answer that has those keys. contrib/grafana/README.md documents all of it for users.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include "api_common.hpp"
#include "somrated/store.hpp"

namespace somrated::api_detail {

namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

/// Most points one series may have (the cap of /api/v1/history).
constexpr std::size_t max_points = 10000;
/// maxDataPoints when a request gives none.
constexpr std::size_t default_max_points = 1000;
/// Most series one /grafana/query may answer.
constexpr std::size_t max_series = 200;
/// Most buckets one /grafana/query may ask the store for, over all its series (each
/// bucket is one indexed lookup).
constexpr std::int64_t max_total_points = 200000;
/// Most alert events one annotation target reads.
constexpr std::size_t max_events = 1000;
/// Digits after the point of a spread percentage.
constexpr int spread_scale = 4;
/// Most currencies, or sources, one target may list (ISO 4217 has fewer than 200 codes).
constexpr std::size_t max_names = 256;
/// Longest a target may grow to once its variables are replaced (the transport's cap on a
/// whole body): "$v$v…" with a long value would otherwise multiply the body's size.
constexpr std::size_t max_target_size = 64 * 1024;
/// The latest time a number of milliseconds may name: 9999-12-31T23:59:59.999Z.
constexpr std::int64_t max_time_ms = 253402300799999;

/// History steps chosen for Grafana, smallest first; larger ones double the last.
///
/// Round steps keep bucket times on whole minutes, hours and days, so a refreshed panel
/// reuses the same grid and series from different sources line up point for point.
constexpr std::chrono::milliseconds step_ladder[] = {
    1s,    2s, 5s, 10s, 15s, 30s, 1min, 2min, 5min,    10min,    15min,
    30min, 1h, 2h, 3h,  6h,  12h, 24h,  48h,  7 * 24h, 14 * 24h, 30 * 24h};

/// The aggregations a rate target may ask for.
constexpr std::string_view aggregations[] = {"last", "open", "high", "low", "close", "ohlc"};
/// The tag keys of ad hoc filters.
constexpr std::string_view tag_keys[] = {"source", "currency"};
/// The payload names /grafana/metric-payload-options answers.
constexpr std::string_view payload_names[] = {"aggregation", "format", "against", "source", "rule"};
/// The queries /grafana/variable answers.
constexpr std::string_view variable_queries[] = {"sources", "currencies", "currencies@SOURCE",
                                                 "metrics", "rules"};

// ---- request bodies --------------------------------------------------------------

/// 400 invalid_field: the field at path holds something unusable.
api_error bad_field(std::string_view path, std::string_view problem) {
  return api_error(http::status::bad_request, "invalid_field",
                   fmt::format("{}: {}", path, problem));
}

/// 400 missing_field: the field at path is required.
api_error missing_field(std::string_view path, std::string_view what) {
  return api_error(http::status::bad_request, "missing_field",
                   fmt::format("{}: required, {}", path, what));
}

/// What kind of JSON value v is, for messages.
std::string_view kind_name(const json::value& v) {
  switch (v.kind()) {
    case json::kind::null:
      return "null";
    case json::kind::bool_:
      return "a boolean";
    case json::kind::int64:
    case json::kind::uint64:
    case json::kind::double_:
      return "a number";
    case json::kind::string:
      return "a string";
    case json::kind::array:
      return "an array";
    case json::kind::object:
      return "an object";
  }
  return "a value";
}

/// The request body as a JSON object; an empty body is {} unless required.
json::object parse_body(const request_context& ctx, bool required) {
  const std::string& body = ctx.req.body();
  if (body.find_first_not_of(" \t\r\n") == std::string::npos) {
    if (required) {
      throw api_error(http::status::bad_request, "invalid_body",
                      "body: required, a JSON object as Grafana's JSON datasource sends");
    }
    return {};
  }
  boost::system::error_code ec;
  json::value v = json::parse(body, ec);
  if (ec) {
    throw api_error(http::status::bad_request, "invalid_body",
                    fmt::format("body: not valid JSON ({})", ec.message()));
  }
  if (!v.is_object()) {
    throw api_error(http::status::bad_request, "invalid_body",
                    fmt::format("body: expected a JSON object, got {}", kind_name(v)));
  }
  return std::move(v.as_object());
}

/// The member key of o, or null when absent or JSON null.
const json::value* member(const json::object& o, std::string_view key) {
  auto it = o.find(key);
  if (it == o.end() || it->value().is_null()) return nullptr;
  return &it->value();
}

/// An optional string member; 400 naming path when it is another kind.
std::optional<std::string_view> string_member(const json::object& o, std::string_view key,
                                              std::string_view path) {
  const json::value* v = member(o, key);
  if (!v) return std::nullopt;
  if (!v->is_string())
    throw bad_field(path, fmt::format("expected a string, got {}", kind_name(*v)));
  return std::string_view(v->get_string());
}

/// An optional object member; 400 naming path when it is another kind.
const json::object* object_member(const json::object& o, std::string_view key,
                                  std::string_view path) {
  const json::value* v = member(o, key);
  if (!v) return nullptr;
  if (!v->is_object()) {
    throw bad_field(path, fmt::format("expected an object, got {}", kind_name(*v)));
  }
  return &v->get_object();
}

/// An optional array member; 400 naming path when it is another kind.
const json::array* array_member(const json::object& o, std::string_view key,
                                std::string_view path) {
  const json::value* v = member(o, key);
  if (!v) return nullptr;
  if (!v->is_array())
    throw bad_field(path, fmt::format("expected an array, got {}", kind_name(*v)));
  return &v->get_array();
}

/// An optional non-negative number member, rounded to an integer; 400 naming path when
/// it is not one.
std::optional<std::int64_t> count_member(const json::object& o, std::string_view key,
                                         std::string_view path) {
  const json::value* v = member(o, key);
  if (!v) return std::nullopt;
  // Capped like the other kinds: an unbounded intervalMs would overflow the step search.
  if (v->is_int64() && v->get_int64() >= 0 && v->get_int64() <= max_time_ms) return v->get_int64();
  if (v->is_uint64() && v->get_uint64() <= static_cast<std::uint64_t>(max_time_ms))
    return static_cast<std::int64_t>(v->get_uint64());
  if (v->is_double() && v->get_double() >= 0 && v->get_double() <= double(max_time_ms))
    return static_cast<std::int64_t>(v->get_double() + 0.5);
  throw bad_field(path, fmt::format("expected a non-negative number, got {}",
                                    v->is_number() ? "a negative or huge number" : kind_name(*v)));
}

/// A time member: an ISO 8601 string as Grafana sends, or Unix milliseconds.
timestamp time_member(const json::object& o, std::string_view key, std::string_view path) {
  constexpr std::string_view expected =
      "an ISO 8601 time such as 2025-06-10T00:00:00.000Z, or Unix milliseconds";
  const json::value* v = member(o, key);
  if (!v) throw missing_field(path, expected);
  if (v->is_string()) {
    if (auto t = parse_time(v->get_string())) return *t;
    throw bad_field(path, fmt::format("expected {}, got {}", expected,
                                      quote(std::string_view(v->get_string()))));
  }
  if (!v->is_number())
    throw bad_field(path, fmt::format("expected {}, got {}", expected, kind_name(*v)));
  const std::optional<std::int64_t> ms = count_member(o, key, path);
  if (*ms > max_time_ms) throw bad_field(path, "after the year 9999");
  return timestamp{std::chrono::milliseconds(*ms)};
}

// ---- names -----------------------------------------------------------------------

/// Position of USD, EUR and RUB at the head of a currency list; 3 for the others.
int lead_rank(std::string_view code) {
  return code == "USD" ? 0 : code == "EUR" ? 1 : code == "RUB" ? 2 : 3;
}

/// The currencies source has, the usual three first and the rest alphabetically.
std::vector<std::string> currencies_of(store& db, std::string_view source) {
  std::vector<std::string> out = db.currencies(source);
  std::sort(out.begin(), out.end(), [](const std::string& a, const std::string& b) {
    const int ra = lead_rank(a), rb = lead_rank(b);
    return ra != rb ? ra < rb : a < b;
  });
  return out;
}

/// The configured source named name, or null.
const source_config* find_source(const config& cfg, std::string_view name) {
  for (const source_config& s : cfg.sources)
    if (s.name == name) return &s;
  return nullptr;
}

/// The names of the configured sources, in order.
std::vector<std::string> source_names(const config& cfg) {
  std::vector<std::string> out;
  for (const source_config& s : cfg.sources) out.push_back(s.name);
  return out;
}

/// The source spreads are measured against when a target names none: the first NBKR
/// source (the official rate), else the first configured source; null without sources.
const source_config* official_source(const config& cfg) {
  for (const source_config& s : cfg.sources)
    if (s.kind == "nbkr") return &s;
  return cfg.sources.empty() ? nullptr : &cfg.sources.front();
}

/// Every alert rule name, from the config and the API, sorted and unique.
std::vector<std::string> rule_names(const request_context& ctx) {
  std::vector<std::string> out;
  for (const alert_rule& r : ctx.cfg.alerts) out.push_back(r.name);
  for (auto& [name, definition] : ctx.db->stored_rules()) out.push_back(name);
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

/// The metric name of currency at source: "USD@nbkr".
std::string rate_metric(std::string_view currency, std::string_view source) {
  return fmt::format("{}@{}", currency, source);
}

// ---- ad hoc filters --------------------------------------------------------------

/// One ad hoc filter: key (source or currency) equal to, or not equal to, one of values.
struct tag_filter {
  std::string key;                  ///< "source" or "currency".
  bool negate = false;              ///< != and !=|.
  std::vector<std::string> values;  ///< Currency codes upper-cased.

  /// True when value passes this filter.
  bool passes(std::string_view value) const {
    const bool listed = std::find(values.begin(), values.end(), value) != values.end();
    return listed != negate;
  }
};

/// The filters of a request: `filters` (Grafana 10+) and `adhocFilters` (older clients).
std::vector<tag_filter> parse_filters(const json::object& body) {
  std::vector<tag_filter> out;
  for (std::string_view field : {"filters", "adhocFilters"}) {
    const json::array* list = array_member(body, field, field);
    if (!list) continue;
    for (std::size_t i = 0; i < list->size(); ++i) {
      const std::string path = fmt::format("{}[{}]", field, i);
      const json::value& item = (*list)[i];
      if (!item.is_object()) {
        throw bad_field(path, fmt::format("expected an object {{key, operator, value}}, got {}",
                                          kind_name(item)));
      }
      const json::object& o = item.get_object();
      tag_filter f;
      const auto key = string_member(o, "key", path + ".key");
      if (!key) throw missing_field(path + ".key", "source or currency");
      if (std::find(std::begin(tag_keys), std::end(tag_keys), *key) == std::end(tag_keys)) {
        throw bad_field(path + ".key",
                        fmt::format("no tag {}; filter on source or currency", quote(*key)));
      }
      f.key = std::string(*key);
      const std::string_view op = string_member(o, "operator", path + ".operator").value_or("=");
      if (op == "=" || op == "!=") {
        const auto value = string_member(o, "value", path + ".value");
        if (!value) throw missing_field(path + ".value", "the value to compare with");
        f.values.emplace_back(*value);
      } else if (op == "=|" || op == "!=|") {
        const json::array* values = array_member(o, "values", path + ".values");
        if (!values) throw missing_field(path + ".values", "the values to compare with");
        for (std::size_t j = 0; j < values->size(); ++j) {
          if (!(*values)[j].is_string()) {
            throw bad_field(fmt::format("{}.values[{}]", path, j),
                            fmt::format("expected a string, got {}", kind_name((*values)[j])));
          }
          f.values.emplace_back((*values)[j].get_string());
        }
      } else {
        throw bad_field(path + ".operator",
                        fmt::format("{} is not supported; use =, !=, =| or !=|", quote(op)));
      }
      f.negate = op.starts_with("!");
      if (f.key == "currency") {
        for (std::string& v : f.values)
          if (auto code = currency_code(v)) v = *code;
      }
      out.push_back(std::move(f));
    }
  }
  return out;
}

/// True when a row with this source (and currency, when it has one) passes every filter;
/// a filter on a key the row does not have does not apply to it.
bool passes(const std::vector<tag_filter>& filters, std::string_view source,
            std::optional<std::string_view> currency) {
  for (const tag_filter& f : filters) {
    if (f.key == "source" && !f.passes(source)) return false;
    if (f.key == "currency" && currency && !f.passes(*currency)) return false;
  }
  return true;
}

// ---- targets ---------------------------------------------------------------------

/// A list of names in a target part, or any name ("*").
struct name_set {
  bool any = false;                ///< "*", ".*" or "$__all".
  std::vector<std::string> names;  ///< The names listed, in order, when not any.
};

/// Parses a target part: "USD", "(USD|EUR)" (Grafana's regex format, backslash escapes
/// removed), "USD|EUR", or "*". path and what name it in messages.
name_set parse_names(std::string_view text, std::string_view path, std::string_view what) {
  name_set out;
  if (text == "*" || text == ".*" || text == "$__all") {
    out.any = true;
    return out;
  }
  if (text.size() >= 2 && text.front() == '(' && text.back() == ')')
    text = text.substr(1, text.size() - 2);
  std::string current;
  std::size_t listed = 0;  // names read, repeats included
  auto finish = [&] {
    if (current.empty()) throw bad_field(path, fmt::format("an empty {} in the target", what));
    if (++listed > max_names) {
      throw bad_field(path,
                      fmt::format("lists more than {} {} names; use * for all", max_names, what));
    }
    if (std::find(out.names.begin(), out.names.end(), current) == out.names.end())
      out.names.push_back(current);
    current.clear();
  };
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\\' && i + 1 < text.size()) {
      current += text[++i];
    } else if (text[i] == '|') {
      finish();
    } else {
      current += text[i];
    }
  }
  finish();
  return out;
}

/// The text of one variable value: a string as is, a list as "(a|b)".
std::string variable_text(const json::value& v, std::string_view path, std::string_view name) {
  if (v.is_string()) return std::string(v.get_string());
  if (v.is_int64()) return fmt::format("{}", v.get_int64());
  if (v.is_uint64()) return fmt::format("{}", v.get_uint64());
  if (v.is_array()) {
    std::vector<std::string> items;
    for (const json::value& x : v.get_array()) items.push_back(variable_text(x, path, name));
    if (items.size() == 1) return items.front();
    if (std::find(items.begin(), items.end(), "$__all") != items.end()) return "*";
    return fmt::format("({})", fmt::join(items, "|"));
  }
  throw bad_field(
      path, fmt::format("scopedVars.{}.value is {}, not a string or list", name, kind_name(v)));
}

/// target with $name, ${name}, ${name:format} and [[name]] replaced by the values in
/// scopedVars ({"name": {"text": …, "value": …}}). Grafana replaces dashboard variables
/// before it sends a target; this covers the ones it leaves and other clients.
std::string resolve_variables(std::string_view target, const json::object* scoped,
                              std::string_view path) {
  auto is_name_char = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  };
  std::string out;
  std::size_t i = 0;
  while (i < target.size()) {
    std::string_view name;
    std::size_t end = i;
    if (target[i] == '$' && i + 1 < target.size() && target[i + 1] == '{') {
      const std::size_t close = target.find('}', i + 2);
      if (close != std::string_view::npos) {
        name = target.substr(i + 2, close - i - 2);
        name = name.substr(0, name.find(':'));
        end = close + 1;
      }
    } else if (target[i] == '$') {
      std::size_t j = i + 1;
      while (j < target.size() && is_name_char(target[j])) ++j;
      name = target.substr(i + 1, j - i - 1);
      end = j;
    } else if (target.substr(i).starts_with("[[")) {
      const std::size_t close = target.find("]]", i + 2);
      if (close != std::string_view::npos) {
        name = target.substr(i + 2, close - i - 2);
        name = name.substr(0, name.find(':'));
        end = close + 2;
      }
    }
    if (name.empty() || name == "__all") {
      out += target.substr(i, std::max<std::size_t>(end - i, 1));
      i += std::max<std::size_t>(end - i, 1);
      continue;
    }
    const json::value* var = scoped ? member(*scoped, name) : nullptr;
    const json::value* value =
        var && var->is_object() ? member(var->get_object(), "value") : nullptr;
    if (!value) {
      throw bad_field(path, fmt::format("${} is not a variable in scopedVars; check the dashboard "
                                        "variable's name",
                                        name));
    }
    out += variable_text(*value, path, name);
    if (out.size() > max_target_size) {
      throw bad_field(path, fmt::format("longer than {} bytes once its variables are replaced",
                                        max_target_size));
    }
    i = end;
  }
  return out;
}

/// What a target asks for.
enum class target_kind { rate, spread, alerts, health };

/// A parsed rate or spread target: which currencies at which sources.
struct series_spec {
  target_kind kind = target_kind::rate;
  name_set currencies;                        ///< Upper-cased codes, or any.
  std::vector<const source_config*> sources;  ///< Configured sources, in target order.
};

/// Parses "USD", "USD@nbkr", "spread:USD@24kg" and their lists; 400 naming path.
series_spec parse_series(std::string_view target, const config& cfg, std::string_view path) {
  series_spec spec;
  if (target.starts_with("spread:")) {
    spec.kind = target_kind::spread;
    target.remove_prefix(7);
  }
  const std::size_t at = target.find('@');
  const std::string_view cur_part = target.substr(0, at);
  spec.currencies = parse_names(cur_part, path, "currency");
  for (std::string& name : spec.currencies.names) {
    std::optional<std::string> code = currency_code(name);
    if (!code) {
      throw bad_field(path, fmt::format("{} is not a metric: expected a 3-letter currency code "
                                        "such as USD, then @ and a source (USD@nbkr), or one "
                                        "of spread:USD@SOURCE, alerts, health",
                                        quote(name)));
    }
    name = std::move(*code);
  }
  if (at == std::string_view::npos) {
    if (cfg.sources.empty()) {
      throw api_error(http::status::not_found, "unknown_source", "no sources are configured");
    }
    spec.sources.push_back(&cfg.sources.front());
    return spec;
  }
  const name_set srcs = parse_names(target.substr(at + 1), path, "source");
  if (srcs.any) {
    for (const source_config& s : cfg.sources) spec.sources.push_back(&s);
    return spec;
  }
  for (const std::string& name : srcs.names) {
    const source_config* s = find_source(cfg, name);
    if (!s) {
      throw api_error(http::status::bad_request, "unknown_source",
                      fmt::format("{}: no source named {}; configured: {}", path, quote(name),
                                  join_or_none(source_names(cfg))));
    }
    spec.sources.push_back(s);
  }
  return spec;
}

/// The (currency, source) pairs a spec names, filtered. A spec naming one currency at
/// one source yields that pair even without data; lists and "*" only pairs with data.
std::vector<std::pair<std::string, const source_config*>> expand(
    const series_spec& spec, store& db, const std::vector<tag_filter>& filters) {
  std::vector<std::pair<std::string, const source_config*>> out;
  const bool exact =
      !spec.currencies.any && spec.currencies.names.size() == 1 && spec.sources.size() == 1;
  for (const source_config* src : spec.sources) {
    const std::vector<std::string> known = currencies_of(db, src->name);
    const std::vector<std::string>& wanted = spec.currencies.any ? known : spec.currencies.names;
    for (const std::string& cur : wanted) {
      const bool has = std::find(known.begin(), known.end(), cur) != known.end();
      if ((has || exact) && passes(filters, src->name, cur)) out.emplace_back(cur, src);
    }
  }
  return out;
}

// ---- time window and step --------------------------------------------------------

/// The buckets a history from..to with step has: at least one.
std::int64_t bucket_count(std::int64_t from, std::int64_t to, std::int64_t step) {
  const std::int64_t span = to - from;
  return span <= 0 ? 1 : span / step + (span % step != 0 ? 1 : 0);
}

/// The bucket grid of a query: its first bucket's start (a multiple of step since the
/// epoch) and its width.
struct grid {
  timestamp from;                  ///< Aligned down to a multiple of step.
  std::chrono::milliseconds step;  ///< Bucket width.
};

/// The coarsest of intervalMs and (to - from) / maxDataPoints, rounded up to a step of
/// the ladder, such that the aligned buckets number at most max_points.
grid choose_grid(timestamp from, timestamp to, std::chrono::milliseconds interval,
                 std::size_t max_pts) {
  const std::int64_t f = from.time_since_epoch().count();
  const std::int64_t t = to.time_since_epoch().count();
  const auto n = static_cast<std::int64_t>(max_pts);
  const std::int64_t want =
      std::max({std::int64_t{1000}, interval.count(), (t - f) / n + ((t - f) % n != 0 ? 1 : 0)});
  auto fits = [&](std::int64_t step) { return bucket_count(f / step * step, t, step) <= n; };
  std::int64_t step = 0;
  for (std::chrono::milliseconds s : step_ladder) {
    if (s.count() >= want && fits(s.count())) {
      step = s.count();
      break;
    }
  }
  if (step == 0) {
    step = std::end(step_ladder)[-1].count();
    while (step < want || !fits(step)) step *= 2;
  }
  return {timestamp{std::chrono::milliseconds(f / step * step)}, std::chrono::milliseconds(step)};
}

// ---- series ----------------------------------------------------------------------

/// One answered series: a metric at one source, with one or more value columns.
struct series {
  std::string target;  ///< The metric name, "USD@24kg" or "spread:USD@24kg".
  std::string title;   ///< The legend text.
  std::string unit;    ///< A Grafana unit id, or empty.
  std::vector<std::pair<std::string, std::string>> tags;  ///< Labels, in column order.
  std::vector<std::string> columns;          ///< Value names: "rate", "open"…"close", "spread".
  std::vector<timestamp> times;              ///< Ascending.
  std::vector<std::vector<decimal>> values;  ///< One row of columns.size() per time.
};

/// 10^n for n in 0..18.
std::int64_t pow10(int n) {
  std::int64_t p = 1;
  while (n-- > 0) p *= 10;
  return p;
}

/// |rate - against| / against * 100, exact and rounded half up to spread_scale digits;
/// nullopt when against is zero or the arithmetic would overflow 64 bits.
std::optional<decimal> spread_percent(const decimal& rate, const decimal& against) {
  const int scale = std::max(rate.scale(), against.scale());
  std::int64_t a = 0, b = 0, num = 0;
  if (__builtin_mul_overflow(rate.mantissa(), pow10(scale - rate.scale()), &a) ||
      __builtin_mul_overflow(against.mantissa(), pow10(scale - against.scale()), &b) || b == 0) {
    return std::nullopt;
  }
  const std::int64_t diff = a > b ? a - b : b - a;
  if (__builtin_mul_overflow(diff, pow10(2 + spread_scale), &num)) return std::nullopt;
  std::int64_t q = num / b;
  const std::int64_t r = num % b;
  if (r >= b - r) ++q;
  const std::int64_t unit = pow10(spread_scale);
  return decimal::parse(fmt::format("{}.{:0{}}", q / unit, q % unit, spread_scale));
}

/// The bucketed history of currency at source over the grid up to to.
history_result bucketed(store& db, std::string_view source, std::string_view currency,
                        const grid& g, timestamp to, bool ohlc) {
  history_query q;
  q.source = std::string(source);
  q.currency = std::string(currency);
  q.from = g.from;
  q.to = to;
  q.step = g.step;
  q.ohlc = ohlc;
  q.max_points = max_points;
  return db.history(q);
}

/// The rate series of currency at source with aggregation agg.
series rate_series(store& db, const std::string& currency, const source_config& src,
                   std::string_view agg, const grid& g, timestamp to) {
  series s;
  s.target = rate_metric(currency, src.name);
  // ohlc's four columns each get their name appended when written.
  s.title = agg == "last" || agg == "ohlc" ? fmt::format("{} ({})", currency, src.name)
                                           : fmt::format("{} ({}) {}", currency, src.name, agg);
  s.tags = {{"currency", currency}, {"source", src.name}};
  const history_result h = bucketed(db, src.name, currency, g, to, agg != "last");
  if (agg == "last") {
    s.columns = {"rate"};
    for (const history_point& p : h.points) {
      s.times.push_back(p.time);
      s.values.push_back({p.rate});
    }
    return s;
  }
  s.columns = agg == "ohlc" ? std::vector<std::string>{"open", "high", "low", "close"}
                            : std::vector<std::string>{std::string(agg)};
  for (const ohlc_point& p : h.ohlc) {
    s.times.push_back(p.time);
    std::vector<decimal> row;
    for (const std::string& c : s.columns) {
      row.push_back(c == "open" ? p.open : c == "high" ? p.high : c == "low" ? p.low : p.close);
    }
    s.values.push_back(std::move(row));
  }
  return s;
}

/// The spread series of currency at src against other, on the same buckets.
series spread_series(store& db, const std::string& currency, const source_config& src,
                     const source_config& other, const grid& g, timestamp to) {
  series s;
  s.target = "spread:" + rate_metric(currency, src.name);
  s.title = fmt::format("{} spread {} vs {}", currency, src.name, other.name);
  s.unit = "percent";
  s.tags = {{"currency", currency}, {"source", src.name}, {"against", other.name}};
  s.columns = {"spread"};
  const history_result a = bucketed(db, src.name, currency, g, to, false);
  const history_result b = bucketed(db, other.name, currency, g, to, false);
  // Both histories sit on the same grid: walk them together, keeping common times.
  auto j = b.points.begin();
  for (const history_point& p : a.points) {
    while (j != b.points.end() && j->time < p.time) ++j;
    if (j == b.points.end()) break;
    if (j->time != p.time) continue;
    if (std::optional<decimal> pct = spread_percent(p.rate, j->rate)) {
      s.times.push_back(p.time);
      s.values.push_back({*pct});
    }
  }
  return s;
}

/// Milliseconds since the epoch, as Grafana's time fields want them.
std::int64_t epoch_ms(timestamp t) {
  return t.time_since_epoch().count();
}

/// Writes each value column of each series as a Grafana time series:
/// {target, refId, title, tags, unit?, datapoints: [[value, ms], …]}.
void write_time_series(json_writer& w, const std::vector<series>& all, std::string_view ref_id) {
  for (const series& s : all) {
    for (std::size_t c = 0; c < s.columns.size(); ++c) {
      w.begin_object();
      w.key("target").value(s.target);
      if (!ref_id.empty()) w.key("refId").value(ref_id);
      w.key("title").value(s.columns.size() > 1 ? fmt::format("{} {}", s.title, s.columns[c])
                                                : s.title);
      w.key("tags").begin_object();
      for (const auto& [k, v] : s.tags) w.key(k).value(v);
      if (s.unit.empty())
        w.key("aggregation").value(s.columns[c] == "rate" ? "last" : s.columns[c]);
      w.end_object();
      if (!s.unit.empty()) w.key("unit").value(s.unit);
      w.key("datapoints").begin_array();
      for (std::size_t i = 0; i < s.times.size(); ++i) {
        w.begin_array().value(s.values[i][c]).value(epoch_ms(s.times[i])).end_array();
      }
      w.end_array();
      w.end_object();
    }
  }
}

/// Writes the opening of a table answer and its columns, each {text, type}.
void begin_table(json_writer& w, std::string_view ref_id,
                 const std::vector<std::pair<std::string, std::string_view>>& columns) {
  w.begin_object();
  w.key("type").value("table");
  if (!ref_id.empty()) w.key("refId").value(ref_id);
  w.key("columns").begin_array();
  for (const auto& [text, type] : columns) {
    w.begin_object().key("text").value(text).key("type").value(type).end_object();
  }
  w.end_array();
  w.key("rows").begin_array();
}

/// Closes what begin_table opened.
void end_table(json_writer& w) {
  w.end_array();
  w.end_object();
}

/// Writes the series of one target as one table: time, the tags, the value columns;
/// rows in time order (series order within a time). Nothing when there are no series.
void write_table(json_writer& w, const std::vector<series>& all, std::string_view ref_id) {
  if (all.empty()) return;
  std::vector<std::pair<std::string, std::string_view>> columns{{"time", "time"}};
  for (const auto& tag : all.front().tags) columns.emplace_back(tag.first, "string");
  for (const std::string& c : all.front().columns) columns.emplace_back(c, "number");
  begin_table(w, ref_id, columns);
  std::vector<std::pair<std::size_t, std::size_t>> rows;  // (series, point)
  for (std::size_t s = 0; s < all.size(); ++s)
    for (std::size_t i = 0; i < all[s].times.size(); ++i) rows.emplace_back(s, i);
  std::stable_sort(rows.begin(), rows.end(), [&](const auto& a, const auto& b) {
    return all[a.first].times[a.second] < all[b.first].times[b.second];
  });
  for (const auto& [s, i] : rows) {
    w.begin_array();
    w.value(epoch_ms(all[s].times[i]));
    for (const auto& tag : all[s].tags) w.value(tag.second);
    for (const decimal& v : all[s].values[i]) w.value(v);
    w.end_array();
  }
  end_table(w);
}

// ---- one /query target -----------------------------------------------------------

/// What /grafana/query needs besides the target itself.
struct query_frame {
  const request_context& ctx;
  timestamp from, to;                           ///< range.from and range.to.
  grid buckets;                                 ///< The history grid for rate and spread targets.
  std::vector<tag_filter> filters;              ///< Ad hoc filters.
  const json::object* scoped_vars;              ///< scopedVars, or null.
  std::size_t series_left = max_series;         ///< Series this request may still answer.
  std::int64_t points_left = max_total_points;  ///< Buckets it may still ask for.
};

/// A target's payload: an object, or a JSON text of one as older clients send; `data`
/// is the pre-0.3 name. Null when there is none.
json::object target_payload(const json::object& t, std::string_view path) {
  for (std::string_view key : {"payload", "data"}) {
    const json::value* v = member(t, key);
    if (!v) continue;
    const std::string field = fmt::format("{}.{}", path, key);
    if (v->is_object()) return v->get_object();
    if (v->is_string()) {
      const std::string_view text = v->get_string();
      if (text.find_first_not_of(" \t\r\n") == std::string_view::npos) return {};
      boost::system::error_code ec;
      json::value parsed = json::parse(text, ec);
      if (!ec && parsed.is_object()) return std::move(parsed.get_object());
      throw bad_field(field, "expected a JSON object");
    }
    throw bad_field(field, fmt::format("expected an object, got {}", kind_name(*v)));
  }
  return {};
}

/// A payload choice: its value when set and non-empty, else fallback; 400 naming path
/// when it is not one of allowed.
std::string_view payload_choice(const json::object& payload, std::string_view key,
                                std::string_view path, std::span<const std::string_view> allowed,
                                std::string_view fallback) {
  const std::string field = fmt::format("{}.payload.{}", path, key);
  const std::optional<std::string_view> v = string_member(payload, key, field);
  if (!v || v->empty()) return fallback;
  for (std::string_view a : allowed)
    if (a == *v) return a;
  std::vector<std::string> names(allowed.begin(), allowed.end());
  throw bad_field(field, fmt::format("expected one of {}, got {}", join_or_none(names), quote(*v)));
}

/// Reserves n answers and as many points (store lookups, or rows) of the request's
/// budget; 400 too_many_series past it.
void take(query_frame& q, std::size_t n, std::int64_t points, std::string_view path) {
  if (n > q.series_left || points > q.points_left) {
    throw api_error(http::status::bad_request, "too_many_series",
                    fmt::format("{}: the targets ask for more than {} series or {} points; "
                                "name fewer currencies or sources, or lower maxDataPoints",
                                path, max_series, max_total_points));
  }
  q.series_left -= n;
  q.points_left -= points;
}

/// Reserves n series (of `sources` histories each) of the request's budget.
void take_series(query_frame& q, std::size_t n, int sources, std::string_view path) {
  take(q, n,
       static_cast<std::int64_t>(n) * sources *
           bucket_count(epoch_ms(q.buckets.from), epoch_ms(q.to), q.buckets.step.count()),
       path);
}

/// Answers a rate or spread target; path names the target ("targets[0]").
void write_series_target(json_writer& w, query_frame& q, std::string_view target,
                         const json::object& payload, bool table, std::string_view ref_id,
                         std::string_view path) {
  const series_spec spec = parse_series(target, q.ctx.cfg, fmt::format("{}.target", path));
  store& db = *q.ctx.db;
  const auto pairs = expand(spec, db, q.filters);
  take_series(q, pairs.size(), spec.kind == target_kind::spread ? 2 : 1, path);
  std::vector<series> out;
  if (spec.kind == target_kind::rate) {
    const std::string_view agg = payload_choice(payload, "aggregation", path, aggregations, "last");
    for (const auto& [cur, src] : pairs)
      out.push_back(rate_series(db, cur, *src, agg, q.buckets, q.to));
  } else {
    const std::string field = fmt::format("{}.payload.against", path);
    const std::optional<std::string_view> named = string_member(payload, "against", field);
    const source_config* other = official_source(q.ctx.cfg);
    if (named && !named->empty()) {
      other = find_source(q.ctx.cfg, *named);
      if (!other) {
        throw api_error(http::status::bad_request, "unknown_source",
                        fmt::format("{}: no source named {}; configured: {}", field, quote(*named),
                                    join_or_none(source_names(q.ctx.cfg))));
      }
    }
    for (const auto& [cur, src] : pairs) {
      if (src == other) {
        // A list may include the reference source itself; a single target may not.
        if (pairs.size() > 1) continue;
        throw bad_field(field, fmt::format("{} is the source itself; set payload.against to "
                                           "another source",
                                           quote(src->name)));
      }
      out.push_back(spread_series(db, cur, *src, *other, q.buckets, q.to));
    }
  }
  if (table) {
    write_table(w, out, ref_id);
  } else {
    write_time_series(w, out, ref_id);
  }
}

/// A one-line description of an event for an annotation's text.
std::string event_text(const alert_event& e) {
  const std::string subject =
      e.currency.empty() ? e.source : fmt::format("{} at {}", e.currency, e.source);
  std::string text = fmt::format("{}: {} {}", subject, condition_name(e.condition), e.threshold);
  if (!e.against.empty()) text += fmt::format(" against {}", e.against);
  if (!e.value.empty()) text += fmt::format(", measured {}", e.value);
  if (!e.rate.empty() && e.rate != e.value) text += fmt::format(", rate {}", e.rate);
  return text;
}

/// Answers "alerts": alert events in the range as an annotation table (time, timeEnd,
/// title, text, tags). A resolved event covers its episode, starts_at..ends_at.
void write_annotations(json_writer& w, query_frame& q, const json::object& payload,
                       std::string_view ref_id, std::string_view path) {
  const auto rule = string_member(payload, "rule", fmt::format("{}.payload.rule", path));
  const auto source = string_member(payload, "source", fmt::format("{}.payload.source", path));
  // Each annotation target reads up to max_events events: a body of many of them
  // would read and answer without bound.
  take(q, 1, static_cast<std::int64_t>(max_events), path);
  const std::vector<event_record> events =
      q.ctx.db->alert_events(q.from, rule.value_or(""), max_events);
  std::vector<const alert_event*> shown;
  for (const event_record& r : events) {
    const alert_event& e = r.event;
    if (e.at > q.to) continue;
    if (source && !source->empty() && e.source != *source) continue;
    std::optional<std::string_view> currency;
    if (!e.currency.empty()) currency = e.currency;
    if (!passes(q.filters, e.source, currency)) continue;
    shown.push_back(&e);
  }
  auto start = [](const alert_event* e) {
    return e->kind == event_kind::resolved ? e->starts_at : e->at;
  };
  std::stable_sort(shown.begin(), shown.end(),
                   [&](const alert_event* a, const alert_event* b) { return start(a) < start(b); });
  begin_table(w, ref_id,
              {{"time", "time"},
               {"timeEnd", "time"},
               {"title", "string"},
               {"text", "string"},
               {"tags", "string"}});
  for (const alert_event* e : shown) {
    std::string tags = fmt::format("{},{},{}", e->rule, event_kind_name(e->kind), e->source);
    if (!e->currency.empty()) tags += "," + e->currency;
    w.begin_array();
    w.value(epoch_ms(start(e)));
    w.value(epoch_ms(e->kind == event_kind::resolved && e->ends_at ? *e->ends_at : e->at));
    w.value(fmt::format("{} {}", e->rule, event_kind_name(e->kind)));
    w.value(event_text(*e));
    w.value(tags);
    w.end_array();
  }
  end_table(w);
}

/// Answers "health": one row per source (source, status, last_success, last_attempt,
/// consecutive_failures, last_error). Status is ok, stale (no success within 3
/// intervals), failing (the last attempts failed) or never (no success yet).
void write_health(json_writer& w, query_frame& q, std::string_view ref_id, std::string_view path) {
  take(q, 1, std::max<std::int64_t>(1, static_cast<std::int64_t>(q.ctx.cfg.sources.size())), path);
  begin_table(w, ref_id,
              {{"source", "string"},
               {"status", "string"},
               {"last_success", "string"},
               {"last_attempt", "string"},
               {"consecutive_failures", "number"},
               {"last_error", "string"}});
  for (const source_config& src : q.ctx.cfg.sources) {
    if (!passes(q.filters, src.name, std::nullopt)) continue;
    const source_health h = q.ctx.db->health(src.name);
    const std::string_view status = !h.last_success                            ? "never"
                                    : is_stale(src, h.last_success, q.ctx.now) ? "stale"
                                    : h.consecutive_failures > 0               ? "failing"
                                                                               : "ok";
    w.begin_array();
    w.value(src.name);
    w.value(status);
    w.value(h.last_success ? format_rfc3339(*h.last_success) : "");
    w.value(h.last_attempt ? format_rfc3339(*h.last_attempt) : "");
    w.value(h.consecutive_failures);
    w.value(h.last_error);
    w.end_array();
  }
  end_table(w);
}

/// Answers targets[index].
void write_target(json_writer& w, query_frame& q, const json::value& item, std::size_t index) {
  const std::string path = fmt::format("targets[{}]", index);
  if (!item.is_object()) {
    throw bad_field(path, fmt::format("expected an object {{target, refId, payload}}, got {}",
                                      kind_name(item)));
  }
  const json::object& t = item.get_object();
  if (const json::value* hide = member(t, "hide"); hide && hide->is_bool() && hide->get_bool())
    return;
  const std::string target_path = path + ".target";
  const std::optional<std::string_view> raw = string_member(t, "target", target_path);
  if (!raw) return;  // A placeholder target, as the plugin drops them too.
  const std::string_view ref_id = string_member(t, "refId", path + ".refId").value_or("");
  const json::object payload = target_payload(t, path);
  // The format is a payload choice; older clients send it as the target's `type`.
  static constexpr std::string_view formats[] = {"time_series", "table", "timeseries", "timeserie"};
  std::string_view format = payload_choice(payload, "format", path, formats, "");
  if (format.empty()) {
    const auto type = string_member(t, "type", path + ".type");
    format = type && *type == "table" ? "table" : "time_series";
  }
  const std::string target = resolve_variables(*raw, q.scoped_vars, target_path);
  if (target == "alerts") {
    write_annotations(w, q, payload, ref_id, path);
  } else if (target == "health") {
    write_health(w, q, ref_id, path);
  } else if (target.empty()) {
    throw bad_field(target_path, "empty; name a metric from /grafana/metrics, such as USD@nbkr");
  } else {
    write_series_target(w, q, target, payload, format == "table", ref_id, path);
  }
}

// ---- lists -----------------------------------------------------------------------

/// Writes one payload definition of a metric: a select the plugin fills through
/// /grafana/metric-payload-options.
void write_payload(json_writer& w, std::string_view name, std::string_view label,
                   std::string_view placeholder) {
  w.begin_object();
  w.key("name").value(name);
  w.key("label").value(label);
  w.key("type").value("select");
  w.key("placeholder").value(placeholder);
  w.end_object();
}

/// Writes one metric of /grafana/metrics with its payloads: rate, spread or other.
void write_metric(json_writer& w, std::string_view value, std::string_view label, target_kind kind,
                  std::string_view official) {
  w.begin_object();
  w.key("label").value(label);
  w.key("value").value(value);
  w.key("payloads").begin_array();
  switch (kind) {
    case target_kind::rate:
      write_payload(w, "aggregation", "Aggregation", "last");
      write_payload(w, "format", "Format", "time_series");
      break;
    case target_kind::spread:
      write_payload(w, "against", "Against", official);
      write_payload(w, "format", "Format", "time_series");
      break;
    case target_kind::alerts:
      write_payload(w, "rule", "Rule", "all rules");
      write_payload(w, "source", "Source", "all sources");
      break;
    case target_kind::health:
      break;
  }
  w.end_array();
  w.end_object();
}

/// Writes one {label, value} option.
void write_option(json_writer& w, std::string_view value, std::string_view label) {
  w.begin_object().key("label").value(label).key("value").value(value).end_object();
}

/// Every metric value /grafana/metrics lists, in its order, with label and kind.
struct metric_entry {
  std::string value;  ///< What a target names.
  std::string label;  ///< What the editor shows.
  target_kind kind;   ///< Which payloads it takes.
};

/// The metrics offered: each source's currencies, spreads against the official source,
/// then alerts and health.
std::vector<metric_entry> metric_list(const request_context& ctx) {
  std::vector<metric_entry> out;
  const source_config* official = official_source(ctx.cfg);
  std::vector<std::string> official_currencies;
  if (official) official_currencies = currencies_of(*ctx.db, official->name);
  std::vector<metric_entry> spreads;
  for (const source_config& src : ctx.cfg.sources) {
    for (const std::string& cur : currencies_of(*ctx.db, src.name)) {
      out.push_back(
          {rate_metric(cur, src.name), fmt::format("{} ({})", cur, src.name), target_kind::rate});
      if (&src == official || std::find(official_currencies.begin(), official_currencies.end(),
                                        cur) == official_currencies.end()) {
        continue;
      }
      spreads.push_back({"spread:" + rate_metric(cur, src.name),
                         fmt::format("{} spread {} vs {}, %", cur, src.name, official->name),
                         target_kind::spread});
    }
  }
  out.insert(out.end(), spreads.begin(), spreads.end());
  out.push_back({"alerts", "Alert events (annotations)", target_kind::alerts});
  out.push_back({"health", "Scrape health per source (table)", target_kind::health});
  return out;
}

/// Writes one /grafana/variable item; both spellings, as the plugin reads __text and
/// __value and the OpenAPI schema requires text and value.
void write_variable_item(json_writer& w, std::string_view text) {
  w.begin_object();
  w.key("__text").value(text);
  w.key("__value").value(text);
  w.key("text").value(text);
  w.key("value").value(text);
  w.end_object();
}

/// The currencies of the sources that pass filters (each code once, usual three first).
std::vector<std::string> all_currencies(const request_context& ctx,
                                        const std::vector<const source_config*>& sources) {
  std::vector<std::string> out;
  for (const source_config* src : sources) {
    for (std::string& cur : currencies_of(*ctx.db, src->name))
      if (std::find(out.begin(), out.end(), cur) == out.end()) out.push_back(std::move(cur));
  }
  std::stable_sort(out.begin(), out.end(), [](const std::string& a, const std::string& b) {
    const int ra = lead_rank(a), rb = lead_rank(b);
    return ra != rb ? ra < rb : a < b;
  });
  return out;
}

}  // namespace

http_response handle_grafana_health(const request_context& ctx) {
  json_writer w(ctx.pretty);
  w.begin_object().key("status").value("ok").end_object();
  return json_response(ctx, http::status::ok, std::move(w).release());
}

http_response handle_grafana_metrics(const request_context& ctx) {
  const json::object body = parse_body(ctx, false);
  // The current metric and payload only matter to backends whose lists depend on them.
  string_member(body, "metric", "metric");
  const source_config* official = official_source(ctx.cfg);
  json_writer w(ctx.pretty);
  w.begin_array();
  for (const metric_entry& m : metric_list(ctx))
    write_metric(w, m.value, m.label, m.kind, official ? std::string_view(official->name) : "");
  w.end_array();
  return json_response(ctx, http::status::ok, std::move(w).release());
}

http_response handle_grafana_payload_options(const request_context& ctx) {
  const json::object body = parse_body(ctx, true);
  const std::optional<std::string_view> name = string_member(body, "name", "name");
  if (!name) {
    throw missing_field(
        "name", fmt::format("the payload whose options are wanted: one of {}",
                            join_or_none({std::begin(payload_names), std::end(payload_names)})));
  }
  const std::string_view metric = string_member(body, "metric", "metric").value_or("");
  object_member(body, "payload", "payload");
  json_writer w(ctx.pretty);
  w.begin_array();
  if (*name == "aggregation") {
    write_option(w, "last", "last: the rate in force at each interval's end");
    write_option(w, "open", "open: the rate at each interval's start");
    write_option(w, "high", "high: the highest rate in each interval");
    write_option(w, "low", "low: the lowest rate in each interval");
    write_option(w, "close", "close: the rate at each interval's end");
    write_option(w, "ohlc", "ohlc: open, high, low and close");
  } else if (*name == "format") {
    write_option(w, "time_series", "Time series");
    write_option(w, "table", "Table");
  } else if (*name == "against" || *name == "source") {
    // A spread is never against its own source.
    std::string_view own;
    if (*name == "against" && metric.starts_with("spread:") && metric.find('@') != metric.npos)
      own = metric.substr(metric.find('@') + 1);
    for (const source_config& s : ctx.cfg.sources)
      if (s.name != own) write_option(w, s.name, fmt::format("{} ({})", s.name, s.kind));
  } else if (*name == "rule") {
    for (const std::string& r : rule_names(ctx)) write_option(w, r, r);
  } else {
    throw bad_field(
        "name", fmt::format("no payload named {}; known: {}", quote(*name),
                            join_or_none({std::begin(payload_names), std::end(payload_names)})));
  }
  w.end_array();
  return json_response(ctx, http::status::ok, std::move(w).release());
}

http_response handle_grafana_query(const request_context& ctx) {
  const json::object body = parse_body(ctx, true);
  const json::array* targets = array_member(body, "targets", "targets");
  if (!targets) throw missing_field("targets", "an array of {target, refId, payload}");
  const json::object* range = object_member(body, "range", "range");
  if (!range) throw missing_field("range", "an object {from, to} of ISO 8601 times");
  // range.raw may hold "now-6h"; from and to are always the resolved times.
  const timestamp from = time_member(*range, "from", "range.from");
  const timestamp to = time_member(*range, "to", "range.to");
  if (from > to) {
    throw api_error(http::status::bad_request, "invalid_range",
                    fmt::format("range.from: {} is after range.to {}", format_rfc3339(from),
                                format_rfc3339(to)));
  }
  const std::int64_t interval = count_member(body, "intervalMs", "intervalMs").value_or(0);
  std::int64_t max_pts = count_member(body, "maxDataPoints", "maxDataPoints")
                             .value_or(static_cast<std::int64_t>(default_max_points));
  if (max_pts == 0) max_pts = static_cast<std::int64_t>(default_max_points);
  max_pts = std::min(max_pts, static_cast<std::int64_t>(max_points));
  query_frame q{
      ctx,
      from,
      to,
      choose_grid(from, to, std::chrono::milliseconds(interval), static_cast<std::size_t>(max_pts)),
      parse_filters(body),
      object_member(body, "scopedVars", "scopedVars")};
  json_writer w(ctx.pretty);
  w.begin_array();
  for (std::size_t i = 0; i < targets->size(); ++i) write_target(w, q, (*targets)[i], i);
  w.end_array();
  return json_response(ctx, http::status::ok, std::move(w).release());
}

http_response handle_grafana_variable(const request_context& ctx) {
  const json::object body = parse_body(ctx, true);
  // {"payload": {"target": "…"}}; a string payload or a top-level target come from
  // older clients.
  std::optional<std::string_view> query;
  std::string path = "payload.target";
  if (const json::value* payload = member(body, "payload"); payload && payload->is_string()) {
    query = payload->get_string();
    path = "payload";
  } else if (const json::object* p = object_member(body, "payload", "payload")) {
    query = string_member(*p, "target", "payload.target");
  } else {
    query = string_member(body, "target", "target");
    path = "target";
  }
  const std::string known =
      join_or_none({std::begin(variable_queries), std::end(variable_queries)});
  if (!query || query->empty()) throw missing_field(path, fmt::format("one of {}", known));
  json_writer w(ctx.pretty);
  w.begin_array();
  if (*query == "sources") {
    for (const source_config& s : ctx.cfg.sources) write_variable_item(w, s.name);
  } else if (*query == "metrics") {
    for (const metric_entry& m : metric_list(ctx)) write_variable_item(w, m.value);
  } else if (*query == "rules") {
    for (const std::string& r : rule_names(ctx)) write_variable_item(w, r);
  } else if (*query == "currencies" || query->starts_with("currencies@")) {
    std::vector<const source_config*> sources;
    if (*query == "currencies") {
      for (const source_config& s : ctx.cfg.sources) sources.push_back(&s);
    } else {
      sources = parse_series("*" + std::string(query->substr(10)), ctx.cfg, path).sources;
    }
    for (const std::string& cur : all_currencies(ctx, sources)) write_variable_item(w, cur);
  } else {
    throw bad_field(path, fmt::format("unknown query {}; known: {}", quote(*query), known));
  }
  w.end_array();
  return json_response(ctx, http::status::ok, std::move(w).release());
}

http_response handle_grafana_tag_keys(const request_context& ctx) {
  parse_body(ctx, false);
  json_writer w(ctx.pretty);
  w.begin_array();
  for (std::string_view key : tag_keys) {
    w.begin_object().key("type").value("string").key("text").value(key).end_object();
  }
  w.end_array();
  return json_response(ctx, http::status::ok, std::move(w).release());
}

http_response handle_grafana_tag_values(const request_context& ctx) {
  const json::object body = parse_body(ctx, true);
  const std::optional<std::string_view> key = string_member(body, "key", "key");
  if (!key) throw missing_field("key", "source or currency");
  // Grafana sends the other filters of the dashboard too: currencies narrow to the
  // sources they allow.
  const std::vector<tag_filter> filters = parse_filters(body);
  std::vector<const source_config*> sources;
  for (const source_config& s : ctx.cfg.sources)
    if (passes(filters, s.name, std::nullopt)) sources.push_back(&s);
  json_writer w(ctx.pretty);
  w.begin_array();
  if (*key == "source") {
    for (const source_config* s : sources) w.begin_object().key("text").value(s->name).end_object();
  } else if (*key == "currency") {
    for (const std::string& cur : all_currencies(ctx, sources))
      w.begin_object().key("text").value(cur).end_object();
  } else {
    throw bad_field("key", fmt::format("no tag {}; known: source, currency", quote(*key)));
  }
  w.end_array();
  return json_response(ctx, http::status::ok, std::move(w).release());
}

}  // namespace somrated::api_detail
