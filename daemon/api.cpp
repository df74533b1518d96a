#include "somrated/api.hpp"

#include <algorithm>
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

/// One endpoint of the route table.
struct route {
  std::string_view path;                     ///< Exact, percent-decoded path.
  std::span<const std::string_view> params;  ///< Accepted query parameters besides `pretty`.
  endpoint_fn handler;                       ///< Answers a validated request.
  bool reads_store = true;                   ///< False: answered on the network thread.
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

/// Every endpoint, in the order the index lists them.
constexpr route routes[] = {
    {"/", {}, handle_index, false},
    {"/api/v1/latest", latest_params, handle_latest},
    {"/api/v1/history", history_params, handle_history},
    {"/api/v1/sources", {}, handle_sources},
    {"/healthz", {}, handle_healthz, false},
    {"/readyz", {}, handle_readyz},
};

/// Query parameters are decoded without turning '+' into a space.
///
/// '+' is meaningful in our values (RFC 3339 offsets such as "+06:00"), while a space
/// never is, so form-style decoding would only break times sent without %2B.
boost::urls::encoding_opts query_decoding() {
  return boost::urls::encoding_opts(/*space_as_plus=*/false, /*lower_case=*/false,
                                    /*disallow_null=*/false);
}

/// The route for a percent-decoded path, or null.
const route* find_route(std::string_view path) {
  auto it = std::find_if(std::begin(routes), std::end(routes),
                         [&](const route& r) { return r.path == path; });
  return it == std::end(routes) ? nullptr : &*it;
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

/// The error response with optional indentation.
http_response error_response(unsigned version, http::status status, std::string_view code,
                             std::string_view message, bool pretty) {
  return make_response(version, status, "application/json; charset=utf-8",
                       error_body(code, message, pretty));
}

http_response handle_index(const request_context& ctx) {
  json_writer w(ctx.pretty);
  w.begin_object();
  w.key("name").value("somrated");
  w.key("version").value(somrated::version);
  w.key("endpoints").begin_array();
  for (const route& r : routes) w.value(r.path);
  w.end_array();
  w.end_object();
  return json_response(ctx, http::status::ok, std::move(w).release());
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

api::api(std::shared_ptr<const config> cfg, const source_board& board)
    : cfg_(std::move(cfg)), board_(board) {}

http_response api::handle(const http_request& req, store& db) const {
  return *respond(req, &db);
}

std::optional<http_response> api::handle_without_store(const http_request& req) const {
  return respond(req, nullptr);
}

std::optional<http_response> api::respond(const http_request& req, store* db) const {
  bool pretty = false;
  try {
    auto url = parse_target(req.target());
    if (!url) {
      throw api_error(http::status::bad_request, "invalid_target",
                      fmt::format("the request target {} is not a path such as /api/v1/latest",
                                  quote(req.target())));
    }
    pretty = wants_pretty(*url);
    const std::string path = url->path();
    const route* r = find_route(path);
    if (!r) {
      throw api_error(http::status::not_found, "not_found",
                      fmt::format("no endpoint at {}; GET / lists them", quote(path)));
    }
    if (req.method() != http::verb::get && req.method() != http::verb::head) {
      auto res = error_response(
          req.version(), http::status::method_not_allowed, "method_not_allowed",
          fmt::format("{} is not allowed on {}; use GET or HEAD", req.method_string(), r->path),
          pretty);
      res.set(http::field::allow, "GET, HEAD");
      return res;
    }
    if (r->reads_store && !db) return std::nullopt;
    const query_params params = collect_params(*url, *r);
    const request_context ctx{req, db, *cfg_, board_, params, pretty, now()};
    return r->handler(ctx);
  } catch (const api_error& e) {
    return error_response(req.version(), e.status(), e.code(), e.what(), pretty);
  } catch (const store_error& e) {
    return error_response(req.version(), http::status::service_unavailable, "database_unavailable",
                          fmt::format("database error: {}", e.what()), pretty);
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
