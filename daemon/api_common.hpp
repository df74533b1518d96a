#pragma once

// Shared between the API's endpoint files; not part of the public interface.

#include <exception>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "somrated/config.hpp"
#include "somrated/http_server.hpp"
#include "somrated/json_writer.hpp"
#include "somrated/time.hpp"

namespace somrated {

class alert_engine;
class metrics;
class store;
class source_board;

namespace api_detail {

/// A request the API refuses: api::handle() turns it into an error response.
class api_error : public std::exception {
 public:
  /// code is the machine-readable name ("invalid_parameter"); message says what was
  /// wrong and what was expected, naming the parameter.
  api_error(http::status status, std::string code, std::string message)
      : status_(status), code_(std::move(code)), message_(std::move(message)) {}

  /// The HTTP status to answer with.
  http::status status() const noexcept { return status_; }
  /// The machine-readable error code.
  const std::string& code() const noexcept { return code_; }
  /// The human-readable message.
  const char* what() const noexcept override { return message_.c_str(); }

 private:
  http::status status_;  ///< See status().
  std::string code_;     ///< See code().
  std::string message_;  ///< See what().
};

/// Percent-decoded query parameters, each name present at most once (checked on entry).
using query_params = std::map<std::string, std::string, std::less<>>;

/// Everything an endpoint needs to answer one request.
struct request_context {
  const http_request& req;         ///< The request itself.
  store* db;                       ///< Reads go here; null for routes that do not read.
  const config& cfg;               ///< The configured sources, in order.
  const source_board& board;       ///< Next scrape times.
  const query_params& params;      ///< The validated query.
  bool pretty = false;             ///< Indent JSON output (`?pretty`).
  timestamp now;                   ///< The request's notion of the current time.
  std::string_view path_name;      ///< The "{name}" segment of the path, if the route has one.
  alert_engine* engine = nullptr;  ///< Alert writes (writer thread only); may be null.
  const std::function<void()>* alerts_changed = nullptr;  ///< Wakes the dispatcher.
  const metrics* stats = nullptr;  ///< In-process counters for /metrics; may be null.

  /// The value of param, if given.
  std::optional<std::string_view> param(std::string_view name) const;
};

/// An endpoint: answers a validated request or throws api_error.
using endpoint_fn = http_response (*)(const request_context&);

/// `GET /api/v1/latest`.
http_response handle_latest(const request_context& ctx);
/// `GET /api/v1/history`.
http_response handle_history(const request_context& ctx);
/// `GET /api/v1/sources`.
http_response handle_sources(const request_context& ctx);

/// `GET /api/v1/alerts`.
http_response handle_alerts(const request_context& ctx);
/// `POST /api/v1/alerts`.
http_response handle_create_alert(const request_context& ctx);
/// `GET /api/v1/alerts/events`.
http_response handle_alert_events(const request_context& ctx);
/// `DELETE /api/v1/alerts/{name}`.
http_response handle_delete_alert(const request_context& ctx);
/// `POST /api/v1/alerts/{name}/test`.
http_response handle_test_alert(const request_context& ctx);

// Grafana JSON datasource (simpod-json-datasource), mounted at /grafana.
/// `GET /grafana`: the datasource's health check.
http_response handle_grafana_health(const request_context& ctx);
/// `POST /grafana/metrics`: the metrics the query editor offers.
http_response handle_grafana_metrics(const request_context& ctx);
/// `POST /grafana/metric-payload-options`: choices for a metric's payload fields.
http_response handle_grafana_payload_options(const request_context& ctx);
/// `POST /grafana/query`: time series and tables for the panel's targets and range.
http_response handle_grafana_query(const request_context& ctx);
/// `POST /grafana/variable`: values for a dashboard variable.
http_response handle_grafana_variable(const request_context& ctx);
/// `POST /grafana/tag-keys`: ad hoc filter keys.
http_response handle_grafana_tag_keys(const request_context& ctx);
/// `POST /grafana/tag-values`: ad hoc filter values for a key.
http_response handle_grafana_tag_values(const request_context& ctx);

/// `GET /metrics`: Prometheus text format 0.0.4.
http_response handle_metrics(const request_context& ctx);

// Frankfurter v1 compatible paths and conversion.
/// `GET /v1/latest`.
http_response handle_fx_latest(const request_context& ctx);
/// `GET /v1/currencies`.
http_response handle_fx_currencies(const request_context& ctx);
/// `GET /v1/{date}`, `/v1/{date}..{date}` and `/v1/{date}..` (path_name holds the segment).
http_response handle_fx_dated(const request_context& ctx);
/// `GET /api/v1/convert?from=&to=&amount=`.
http_response handle_convert(const request_context& ctx);

/// `GET /` for a browser (Accept: text/html): the page with rates, alerts and charts.
http_response handle_page(const request_context& ctx);
/// `GET /chart/{CUR}.svg?range=30d|1y|all[&source=][&lang=]`: a server-rendered chart.
http_response handle_chart(const request_context& ctx);

/// Throws 403 writes_disabled when no token is configured, 401 unauthorized when the
/// request's `Authorization: Bearer` token is missing or differs (compared in constant
/// time).
void check_bearer(const http_request& req, std::string_view token);

/// A response with body and content_type, marked as not cacheable.
http_response make_response(unsigned version, http::status status, std::string_view content_type,
                            std::string body);

/// A JSON response with the usual headers.
http_response json_response(const request_context& ctx, http::status status, std::string body);

/// The `{"error":{…}}` body, indented when pretty.
std::string error_body(std::string_view code, std::string_view message, bool pretty);

/// The source named by `source=`, or the first configured one; 404 unknown_source otherwise.
const source_config& select_source(const request_context& ctx);

/// text upper-cased when it is 3 ASCII letters, else nullopt.
std::optional<std::string> currency_code(std::string_view text);

/// An upper-cased 3-letter currency code; 400 invalid_parameter naming param otherwise.
std::string parse_currency(std::string_view param, std::string_view text);

/// A source is stale when it has never scraped successfully or not within 3 intervals.
bool is_stale(const source_config& src, const std::optional<timestamp>& last_success,
              timestamp now);

/// Writes t as RFC 3339, or null when absent.
void write_time(json_writer& w, const std::optional<timestamp>& t);

/// text in double quotes, for echoing user input in messages (JSON escaping happens later).
std::string quote(std::string_view text);

/// Items joined with ", ", or "none" when there are none.
std::string join_or_none(const std::vector<std::string>& items);

}  // namespace api_detail
}  // namespace somrated
