#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "somrated/alert.hpp"
#include "somrated/http_client.hpp"

namespace somrated {

/// An HTTP request to a receiver, ready to send.
struct outgoing_request {
  std::string method = "POST";
  std::string url;
  std::vector<std::pair<std::string, std::string>>
      headers;  ///< Content-Type and X-Somrated-Event-Id included.
  std::string body;
};

/// A command to run for an exec notifier.
struct exec_spec {
  std::vector<std::string> argv;
  std::vector<std::pair<std::string, std::string>>
      env;                 ///< SOMRATED_* variables, added to the daemon's.
  std::string stdin_data;  ///< The event as JSON.
};

/// Alertmanager's fingerprint of a label set: FNV-1a 64 over the label names in sorted
/// order, each as name 0xFF value 0xFF, printed as 16 lowercase hex digits.
std::string alert_fingerprint(const std::map<std::string, std::string>& labels);

/// The message text of an event for a notifier: its custom template if set, else the
/// built-in one in its language ("en", "ru", "ky").
std::string render_message(const notifier_config& n, const alert_event& e);

/// What is wrong with a custom template (an unknown placeholder, a stray brace), or
/// nullopt when it renders. Placeholders: {rule} {currency} {source} {condition}
/// {threshold} {value} {rate} {against} {status} {time} {starts_at}.
std::optional<std::string> template_problem(std::string_view tpl);

/// True for the languages with built-in templates: "en", "ru", "ky".
bool known_language(std::string_view lang);

/// The event as JSON (exec stdin, and the body's "event" object): id, rule, kind,
/// status, times, condition, currency, source, threshold, value, rate, labels, text.
std::string event_json(const alert_event& e, std::string_view text);

/// The request that delivers e through an HTTP notifier (every kind but exec).
///
/// - webhook: Alertmanager webhook v4 body with one alert, plus "eventId";
/// - alertmanager: POST {url}/api/v2/alerts with one postable alert; a firing or
///   reminder alert gets endsAt = e.at + 4 * resend, a resolved one its ends_at;
/// - slack: {"text": message}; telegram: sendMessage with chat_id, text (HTML-escaped,
///   at most 4096 characters), parse_mode HTML; ntfy: the text as body with Title,
///   Priority and Tags headers.
/// Every request carries X-Somrated-Event-Id and the notifier's own headers.
outgoing_request build_request(const notifier_config& n, const alert_event& e,
                               std::string_view external_url);

/// The command, environment and stdin that deliver e through an exec notifier.
exec_spec build_exec(const notifier_config& n, const alert_event& e, std::string_view external_url);

/// Classifies a receiver's answer: 2xx delivered (slack: only with body "ok";
/// telegram: only with "ok":true); 5xx, 429, timeouts and connection failures retry
/// (with Retry-After or telegram's retry_after when given); other 4xx and 3xx fail for
/// good. The error names the status and an excerpt of what the receiver said.
delivery_verdict classify_response(const notifier_config& n, const fetch_result& r);

}  // namespace somrated
