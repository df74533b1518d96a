#include "somrated/api.hpp"

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <span>

#include <fmt/format.h>
#include <boost/url/parse.hpp>

#include "api_common.hpp"
#include "somrated/source_board.hpp"
#include "somrated/store.hpp"
#include "somrated/version.hpp"

namespace somrated {

namespace {

using namespace api_detail;

/// Most query parameters a request may carry.
constexpr std::size_t max_params = 64;

/// Which store a route needs, and so where it runs.
enum class access {
  none,    ///< Answered on the network thread.
  reader,  ///< A read-only store on a reader thread.
  writer,  ///< The read-write store on the writer thread; needs the bearer token.
};

/// One endpoint of the route table.
struct route {
  std::string_view path;  ///< Percent-decoded path; a "{name}" segment matches any one segment.
  http::verb method;      ///< GET routes answer HEAD too.
  std::span<const std::string_view> params;  ///< Accepted query parameters besides `pretty`.
  endpoint_fn handler;                       ///< Answers a validated request.
  access needs = access::reader;             ///< Where it runs.
  bool cached = false;  ///< Answers may be kept in the response cache (GET and HEAD).
};

/// `GET /`: name, version and the endpoint paths.
http_response handle_index(const request_context& ctx);
/// `GET /healthz`: the process answers; the store is not touched.
http_response handle_healthz(const request_context& ctx);
/// `GET /readyz`: the database answers and at least one source is fresh.
http_response handle_readyz(const request_context& ctx);

/// Parameters of `/api/v1/latest`.
constexpr std::string_view latest_params[] = {"source", "symbols"};
/// Parameters of `/api/v1/history`.
constexpr std::string_view history_params[] = {"currency", "source", "from",  "to",
                                               "step",     "agg",    "format"};
/// Parameters of `/api/v1/alerts/events`.
constexpr std::string_view events_params[] = {"since", "rule", "limit"};
/// Parameters of the Frankfurter-compatible paths.
constexpr std::string_view fx_params[] = {"base", "from", "symbols", "to", "amount", "source"};
/// Parameters of `/v1/currencies`.
constexpr std::string_view fx_currencies_params[] = {"source"};
/// Parameters of `/api/v1/convert`.
constexpr std::string_view convert_params[] = {"from", "to", "amount", "source", "date"};
/// Parameters of `/` (the page; the JSON index ignores them).
constexpr std::string_view page_params[] = {"lang"};
/// Parameters of `/chart/{CUR}.svg`.
constexpr std::string_view chart_params[] = {"range", "source", "lang"};

using enum http::verb;

/// Every endpoint, in the order the index lists them.
constexpr route routes[] = {
    {"/", get, page_params, handle_index},
    {"/api/v1/latest", get, latest_params, handle_latest, access::reader, true},
    {"/api/v1/history", get, history_params, handle_history},
    {"/api/v1/sources", get, {}, handle_sources},
    {"/api/v1/alerts", get, {}, handle_alerts},
    {"/api/v1/alerts", post, {}, handle_create_alert, access::writer},
    {"/api/v1/alerts/events", get, events_params, handle_alert_events},
    {"/api/v1/alerts/{name}", delete_, {}, handle_delete_alert, access::writer},
    {"/api/v1/alerts/{name}/test", post, {}, handle_test_alert, access::writer},
    {"/api/v1/convert", get, convert_params, handle_convert},
    {"/v1/latest", get, fx_params, handle_fx_latest, access::reader, true},
    {"/v1/currencies", get, fx_currencies_params, handle_fx_currencies},
    {"/v1/{name}", get, fx_params, handle_fx_dated},
    {"/grafana", get, {}, handle_grafana_health, access::none},
    {"/grafana/metrics", post, {}, handle_grafana_metrics},
    {"/grafana/metric-payload-options", post, {}, handle_grafana_payload_options},
    {"/grafana/query", post, {}, handle_grafana_query},
    {"/grafana/variable", post, {}, handle_grafana_variable},
    {"/grafana/tag-keys", post, {}, handle_grafana_tag_keys},
    {"/grafana/tag-values", post, {}, handle_grafana_tag_values},
    {"/metrics", get, {}, handle_metrics},
    {"/chart/{name}", get, chart_params, handle_chart},
    {"/healthz", get, {}, handle_healthz, access::none},
    {"/readyz", get, {}, handle_readyz},
};

/// Query parameters are decoded without turning '+' into a space.
///
/// '+' is meaningful in our values (RFC 3339 offsets such as "+06:00"), while a space
/// never is, so form-style decoding would only break times sent without %2B.
boost::urls::encoding_opts query_decoding() {
  return boost::urls::encoding_opts(/*space_as_plus=*/false, /*lower_case=*/false,
                                    /*disallow_null=*/false);
}

/// True when path matches pattern; a "{name}" segment captures one non-empty segment.
bool path_matches(std::string_view pattern, std::string_view path, std::string& captured) {
  while (!pattern.empty() && !path.empty()) {
    const auto pe = pattern.find('/', 1);
    const auto te = path.find('/', 1);
    const std::string_view pseg = pattern.substr(0, pe);
    const std::string_view tseg = path.substr(0, te);
    if (pseg == "/{name}") {
      if (tseg.size() < 2) return false;
      captured = tseg.substr(1);
    } else if (pseg != tseg) {
      return false;
    }
    pattern = pe == std::string_view::npos ? std::string_view() : pattern.substr(pe);
    path = te == std::string_view::npos ? std::string_view() : path.substr(te);
  }
  return pattern.empty() && path.empty();
}

/// Where a request goes: its route, the captured path segment, and, when the path is
/// known but not the method, the methods it allows.
struct route_match {
  const route* r = nullptr;
  std::string name;   ///< The "{name}" segment, if any.
  std::string allow;  ///< "GET, HEAD, POST" when the path matched but the method did not.
};

/// Finds the route for method and a percent-decoded path.
route_match find_route(http::verb method, std::string_view path) {
  route_match m;
  const http::verb wanted = method == http::verb::head ? http::verb::get : method;
  for (const route& r : routes) {
    std::string captured;
    if (!path_matches(r.path, path, captured)) continue;
    if (r.method == wanted) {
      m.r = &r;
      m.name = std::move(captured);
      return m;
    }
    m.allow += fmt::format("{}{}", m.allow.empty() ? "" : ", ", http::to_string(r.method));
    if (r.method == http::verb::get) m.allow += ", HEAD";
  }
  return m;
}

/// Parses the request target: origin-form ("/path?query"), or absolute-form, which
/// HTTP/1.1 servers must also accept (RFC 9112, section 3.2.2).
boost::system::result<boost::urls::url_view> parse_target(std::string_view target) {
  auto u = boost::urls::parse_origin_form(target);
  if (!u) u = boost::urls::parse_absolute_uri(target);
  return u;
}

/// True when the query mentions `pretty` (with any value or none).
bool wants_pretty(const boost::urls::url_view& u) {
  for (auto p : u.params(query_decoding())) {
    if (p.key == "pretty") return true;
  }
  return false;
}

/// Validates the query against r and returns it as a map; throws api_error.
query_params collect_params(const boost::urls::url_view& u, const route& r) {
  auto params = u.params(query_decoding());
  if (params.size() > max_params) {
    throw api_error(
        http::status::bad_request, "too_many_parameters",
        fmt::format("the query has {} parameters; the limit is {}", params.size(), max_params));
  }
  query_params out;
  for (auto p : params) {
    if (p.key.empty() && !p.has_value) continue;  // "?" alone, or "a&&b"
    const bool known =
        p.key == "pretty" || std::find(r.params.begin(), r.params.end(), p.key) != r.params.end();
    // Frankfurter ignores parameters it does not know, and its clients may send some.
    if (!known && r.path.starts_with("/v1/")) continue;
    if (!known) {
      std::vector<std::string> accepted(r.params.begin(), r.params.end());
      accepted.emplace_back("pretty");
      throw api_error(http::status::bad_request, "unknown_parameter",
                      fmt::format("{}: unknown parameter for {}; accepted: {}", quote(p.key),
                                  r.path, join_or_none(accepted)));
    }
    std::string key = p.key;
    if (!out.emplace(std::move(key), std::move(p.value)).second) {
      throw api_error(http::status::bad_request, "invalid_parameter",
                      fmt::format("{}: given more than once; give it once", p.key));
    }
  }
  return out;
}

/// The answer to a CORS preflight (or a plain OPTIONS) on a known path.
http_response preflight(const http_request& req, const std::string& allow) {
  http_response res{http::status::no_content, req.version()};
  res.set(http::field::allow, allow + ", OPTIONS");
  res.set(http::field::access_control_allow_origin, "*");
  res.set(http::field::access_control_allow_methods, allow + ", OPTIONS");
  // Echo the headers the browser asks for when they are plain header names.
  const std::string_view asked = req[http::field::access_control_request_headers];
  const bool plain = asked.size() <= 512 && std::all_of(asked.begin(), asked.end(), [](char c) {
                       return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == ',' ||
                              c == ' ' || c == '_';
                     });
  res.set(http::field::access_control_allow_headers,
          plain && !asked.empty() ? asked : "Accept, Content-Type, Authorization");
  res.set(http::field::access_control_max_age, "86400");
  res.prepare_payload();
  return res;
}

/// Adds a strong ETag (a hash of the body) to a 200 answer. Cache-Control stays
/// "no-cache": a cache may keep the answer but must revalidate, which costs a 304 and no
/// body.
void set_etag(http_response& res) {
  std::uint64_t h = 14695981039346656037ull;  // FNV-1a 64
  for (const char c : res.body()) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ull;
  }
  res.set(http::field::etag, fmt::format("\"{:016x}\"", h));
}

/// Turns an answer with an ETag into a 304 when the request's If-None-Match names it.
void apply_if_none_match(const http_request& req, http_response& res) {
  const std::string_view inm = req[http::field::if_none_match];
  if (inm.empty()) return;
  const std::string_view etag = res[http::field::etag];
  bool match = inm == "*";
  std::string_view rest = inm;
  while (!match && !rest.empty()) {
    const auto comma = rest.find(',');
    std::string_view tag = rest.substr(0, comma);
    while (!tag.empty() && tag.front() == ' ') tag.remove_prefix(1);
    while (!tag.empty() && tag.back() == ' ') tag.remove_suffix(1);
    if (tag.starts_with("W/")) tag.remove_prefix(2);  // weak comparison (RFC 9110, 13.1.2)
    match = tag == etag;
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
  }
  if (!match) return;
  res.result(http::status::not_modified);
  res.body().clear();
  res.erase(http::field::content_type);
  res.erase(http::field::content_length);
}

/// The error response with optional indentation.
http_response error_response(unsigned version, http::status status, std::string_view code,
                             std::string_view message, bool pretty) {
  return make_response(version, status, "application/json; charset=utf-8",
                       error_body(code, message, pretty));
}

http_response handle_index(const request_context& ctx) {
  // Browsers ask for HTML and get the page; curl and scripts get the JSON index.
  if (ctx.req[http::field::accept].find("text/html") != std::string_view::npos)
    return handle_page(ctx);
  json_writer w(ctx.pretty);
  w.begin_object();
  w.key("name").value("somrated");
  w.key("version").value(somrated::version);
  w.key("endpoints").begin_array();
  std::string_view last;
  for (const route& r : routes) {
    if (r.path != last) w.value(r.path);
    last = r.path;
  }
  w.end_array();
  w.end_object();
  auto res = json_response(ctx, http::status::ok, std::move(w).release());
  res.set(http::field::vary, "Accept");  // the same URL answers HTML to browsers
  return res;
}

http_response handle_healthz(const request_context& ctx) {
  json_writer w(ctx.pretty);
  w.begin_object().key("status").value("ok").end_object();
  return json_response(ctx, http::status::ok, std::move(w).release());
}

/// Why the daemon cannot serve current rates, or nullopt when it can.
std::optional<std::string> not_ready_reason(const request_context& ctx) {
  if (!ctx.db->ping()) return "database not answering";
  if (ctx.cfg.sources.empty()) return "no sources are configured";
  std::vector<std::string> seen;
  for (const source_config& src : ctx.cfg.sources) {
    std::optional<timestamp> last_success = ctx.db->health(src.name).last_success;
    if (!is_stale(src, last_success, ctx.now)) return std::nullopt;
    seen.push_back(fmt::format("{} last succeeded {} (interval {})", src.name,
                               last_success ? format_rfc3339(*last_success) : "never",
                               format_duration(src.interval)));
  }
  return fmt::format("no source scraped successfully within 3 intervals: {}", join_or_none(seen));
}

http_response handle_readyz(const request_context& ctx) {
  std::optional<std::string> reason;
  try {
    reason = not_ready_reason(ctx);
  } catch (const store_error& e) {
    reason = fmt::format("database error: {}", e.what());
  }
  json_writer w(ctx.pretty);
  w.begin_object();
  if (!reason) {
    w.key("status").value("ready");
  } else {
    w.key("status").value("not_ready");
    w.key("reason").value(*reason);
  }
  w.end_object();
  return json_response(ctx, reason ? http::status::service_unavailable : http::status::ok,
                       std::move(w).release());
}

}  // namespace

api::api(std::shared_ptr<const config> cfg, const source_board& board, alert_engine* engine,
         std::function<void()> alerts_changed, const metrics* stats,
         const std::atomic<std::uint64_t>* writes)
    : cfg_(std::move(cfg)),
      board_(board),
      engine_(engine),
      alerts_changed_(std::move(alerts_changed)),
      stats_(stats),
      writes_(writes) {}

void api::set_config(std::shared_ptr<const config> cfg) {
  const std::lock_guard lock(config_mutex_);
  cfg_ = std::move(cfg);
  reloads_.fetch_add(1, std::memory_order_release);
}

std::shared_ptr<const config> api::config_snapshot() const {
  const std::lock_guard lock(config_mutex_);
  return cfg_;
}

std::optional<api::cached_answer> api::cached(const http_request& req) const {
  if (!writes_ || (req.method() != http::verb::get && req.method() != http::verb::head))
    return std::nullopt;
  // The versions are read before the entry, as a computation reads them before the store.
  const cache_version version{writes_->load(std::memory_order_acquire),
                              reloads_.load(std::memory_order_acquire)};
  if (!version.settled()) return std::nullopt;  // a write is under way
  auto hit = cache_.find(req.target(), req.version(), version, response_cache::clock::now());
  if (!hit) return std::nullopt;
  apply_if_none_match(req, hit->first);
  return cached_answer{std::move(hit->first), hit->second};
}

http_response api::handle(const http_request& req, store& db) const {
  return *respond(req, &db);
}

std::optional<http_response> api::handle_without_store(const http_request& req) const {
  return respond(req, nullptr);
}

std::string_view api::route_name(const http_request& req) const {
  auto url = parse_target(req.target());
  if (!url) return "other";
  const route_match m = find_route(req.method(), url->path());
  return m.r ? m.r->path : "other";
}

bool api::needs_writer(const http_request& req) const {
  auto url = parse_target(req.target());
  if (!url) return false;
  const route_match m = find_route(req.method(), url->path());
  return m.r && m.r->needs == access::writer;
}

std::optional<http_response> api::respond(const http_request& req, store* db) const {
  bool pretty = false;
  const route* matched = nullptr;  // known once the path and method are
  // A browser page reading the API (Grafana's browser access) sees an error's message
  // only when the error allows its origin too; writes never do.
  auto readable_error = [&](http_response res) {
    if (!matched || matched->needs != access::writer)
      res.set(http::field::access_control_allow_origin, "*");
    return res;
  };
  try {
    auto url = parse_target(req.target());
    if (!url) {
      throw api_error(http::status::bad_request, "invalid_target",
                      fmt::format("the request target {} is not a path such as /api/v1/latest",
                                  quote(req.target())));
    }
    pretty = wants_pretty(*url);
    const std::string path = url->path();
    const route_match m = find_route(req.method(), path);
    if (!m.r && m.allow.empty()) {
      throw api_error(http::status::not_found, "not_found",
                      fmt::format("no endpoint at {}; GET / lists them", quote(path)));
    }
    if (!m.r && req.method() == http::verb::options) return preflight(req, m.allow);
    if (!m.r) {
      auto res = error_response(
          req.version(), http::status::method_not_allowed, "method_not_allowed",
          fmt::format("{} is not allowed on {}; use {}", req.method_string(), path, m.allow),
          pretty);
      res.set(http::field::allow, m.allow);
      res.set(http::field::access_control_allow_origin, "*");
      return res;
    }
    const route& r = *m.r;
    matched = &r;
    // Read before the configuration and the database are: an answer racing a write or
    // a reload is kept as older than it, so it is never served from the cache.
    const cache_version version{writes_ ? writes_->load(std::memory_order_acquire) : 0,
                                reloads_.load(std::memory_order_acquire)};
    const auto started = response_cache::clock::now();
    const std::shared_ptr<const config> cfg = config_snapshot();
    // Writes are authorised before they queue for the writer thread.
    if (r.needs == access::writer) check_bearer(req, cfg->server.token);
    if (r.needs != access::none && !db) return std::nullopt;
    const query_params params = collect_params(*url, r);
    const request_context ctx{req,   db,     *cfg,    board_,           params, pretty,
                              now(), m.name, engine_, &alerts_changed_, stats_};
    http_response res = r.handler(ctx);
    if (r.needs != access::writer) {
      // Reads may be used from a browser page on another origin (Grafana's browser
      // access, a dashboard) and cached by validators.
      res.set(http::field::access_control_allow_origin, "*");
      // Validators describe what GET returns; a POST (Grafana's queries) is answered anew.
      const bool safe = req.method() == http::verb::get || req.method() == http::verb::head;
      if (safe && res.result() == http::status::ok) {
        set_etag(res);
        if (r.cached && writes_ && version.settled()) {
          cache_.store(req.target(), version, started, r.path, res);
        }
        apply_if_none_match(req, res);
      }
    }
    return res;
  } catch (const api_error& e) {
    auto res = error_response(req.version(), e.status(), e.code(), e.what(), pretty);
    if (e.status() == http::status::unauthorized)
      res.set(http::field::www_authenticate, "Bearer realm=\"somrated\"");
    return readable_error(std::move(res));
  } catch (const store_error& e) {
    return readable_error(error_response(req.version(), http::status::service_unavailable,
                                         "database_unavailable",
                                         fmt::format("database error: {}", e.what()), pretty));
  }
}

http_response api::error(unsigned http_version, http::status status, std::string_view code,
                         std::string_view message) {
  return error_response(http_version, status, code, message, false);
}

http_response api::transport_error(http::status status, std::string_view message) {
  const std::string_view code = status == http::status::payload_too_large ? "payload_too_large"
                                : status == http::status::request_header_fields_too_large
                                    ? "header_too_large"
                                : status == http::status::service_unavailable ? "unavailable"
                                                                              : "bad_request";
  auto res = error_response(11, status, code, message, false);
  res.keep_alive(false);
  return res;
}

}  // namespace somrated
