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
