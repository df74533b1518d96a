// Requests and commands that deliver alert events, and what receivers' answers mean.
#include "somrated/notify.hpp"

#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <fmt/format.h>
#include <boost/beast/core/string.hpp>
#include <boost/json.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/pct_string_view.hpp>
#include <boost/url/url.hpp>

#include "excerpt.hpp"
#include "notify_text.hpp"

namespace somrated {

namespace {

namespace json = boost::json;
using namespace std::string_view_literals;

/// Go's zero time.Time, which Alertmanager sends as endsAt of a firing alert.
constexpr std::string_view go_zero_time = "0001-01-01T00:00:00Z";

/// Telegram's limit on a message, in characters after entity parsing.
constexpr std::size_t telegram_max_chars = 4096;

/// How much of a receiver's answer goes into an error.
constexpr std::size_t answer_excerpt = 200;

/// The header carrying the idempotency key.
constexpr std::string_view event_id_header = "X-Somrated-Event-Id";

/// "firing" for firing, reminder and test events; "resolved" for resolved ones.
std::string_view status_of(const alert_event& e) {
  return e.kind == event_kind::resolved ? "resolved"sv : "firing"sv;
}

/// When a resolved event ended: its ends_at, or when it happened.
timestamp end_of(const alert_event& e) {
  return e.ends_at.value_or(e.at);
}

/// s without trailing slashes.
std::string_view without_trailing_slash(std::string_view s) {
  while (!s.empty() && s.back() == '/') s.remove_suffix(1);
  return s;
}

/// The link receivers get back to us: the alert list of the API.
std::string generator_url(std::string_view external_url) {
  return fmt::format("{}/api/v1/alerts", without_trailing_slash(external_url));
}

/// The event's labels; alertname is filled in from the rule if the snapshot lacks it,
/// since Alertmanager refuses alerts without labels.
std::map<std::string, std::string> labels_of(const alert_event& e) {
  auto labels = e.labels;
  labels.try_emplace("alertname", e.rule);
  return labels;
}

/// Alertmanager annotations: the message as summary, plus the numbers that are known.
/// A std::map, so the keys come out sorted as Go's encoding/json writes a map.
std::map<std::string, std::string> annotations_of(const alert_event& e, const std::string& text) {
  std::map<std::string, std::string> a{{"summary", text}};
  if (!e.value.empty()) a.emplace("value", e.value);
  if (!e.threshold.empty()) a.emplace("threshold", e.threshold);
  if (!e.rate.empty()) a.emplace("rate", e.rate);
  return a;
}

/// A string map as a JSON object.
json::object to_object(const std::map<std::string, std::string>& m) {
  json::object o;
  for (const auto& [k, v] : m) o.emplace(k, v);
  return o;
}

/// s as a JSON string, or null when empty.
json::value string_or_null(std::string_view s) {
  if (s.empty()) return nullptr;
  return json::string(s);
}

/// The path of base (a URL) extended by suffix, with no doubled slash; query and
/// fragment stay. Falls back to string concatenation for text Boost.URL cannot take
/// (config validation has already rejected such URLs), so this never throws.
std::string append_path(std::string_view base, std::string_view suffix) {
  const auto parsed = boost::urls::parse_uri_reference(base);
  if (!parsed) return fmt::format("{}{}", without_trailing_slash(base), suffix);
  boost::urls::url u(*parsed);
  const std::string path = fmt::format("{}{}", without_trailing_slash(u.encoded_path()), suffix);
  const auto encoded = boost::urls::make_pct_string_view(path);
  if (!encoded) return fmt::format("{}{}", without_trailing_slash(base), suffix);
  u.set_encoded_path(*encoded);
  return std::string(u.buffer());
}

/// The webhook body: Alertmanager 0.25's webhook v4 message with one alert, keys in the
/// order Alertmanager writes them, plus our "eventId" at the end.
std::string webhook_body(const notifier_config& n, const alert_event& e,
                         std::string_view external_url, const std::string& text) {
  const auto labels = labels_of(e);
  const json::object annotations = to_object(annotations_of(e, text));
  const bool resolved = e.kind == event_kind::resolved;

  json::object alert;
  alert.emplace("status", status_of(e));
  alert.emplace("labels", to_object(labels));
  alert.emplace("annotations", annotations);
  alert.emplace("startsAt", format_rfc3339(e.starts_at));
  alert.emplace("endsAt", resolved ? format_rfc3339(end_of(e)) : std::string(go_zero_time));
  alert.emplace("generatorURL", generator_url(external_url));
  alert.emplace("fingerprint", alert_fingerprint(labels));

  json::object body;
  body.emplace("receiver", n.name);
  body.emplace("status", status_of(e));
  body.emplace("alerts", json::array{std::move(alert)});
  body.emplace("groupLabels", json::object{{"alertname", labels.at("alertname")}});
  body.emplace("commonLabels", to_object(labels));
  body.emplace("commonAnnotations", annotations);
  body.emplace("externalURL", without_trailing_slash(external_url));
  body.emplace("version", "4");
  body.emplace("groupKey", fmt::format("{{}}:{{alertname=\"{}\"}}", labels.at("alertname")));
  body.emplace("truncatedAlerts", 0);
  body.emplace("eventId", e.event_id);
  return json::serialize(body);
}

/// The body of POST /api/v2/alerts: one postableAlert.
///
/// Alertmanager resolves an alert by itself at endsAt, so a firing one is posted with
/// endsAt four resend periods ahead and the dispatcher re-posts it every resend period;
/// losing three posts in a row is then needed for a false resolve.
std::string alertmanager_body(const notifier_config& n, const alert_event& e,
                              std::string_view external_url, const std::string& text) {
  const timestamp ends = e.kind == event_kind::resolved ? end_of(e) : e.at + 4 * n.resend;
  json::object alert;
  alert.emplace("labels", to_object(labels_of(e)));
  alert.emplace("annotations", to_object(annotations_of(e, text)));
  alert.emplace("startsAt", format_rfc3339(e.starts_at));
  alert.emplace("endsAt", format_rfc3339(ends));
  alert.emplace("generatorURL", generator_url(external_url));
  return json::serialize(json::array{std::move(alert)});
}

/// text with at most max code points: longer text is cut to max - 1 and ends with "…".
std::string truncate_code_points(std::string_view text, std::size_t max) {
  std::size_t count = 0;
  std::size_t cut = text.size();  // byte offset of code point max - 1
  for (std::size_t i = 0; i < text.size(); ++i) {
    if ((static_cast<unsigned char>(text[i]) & 0xC0) == 0x80) continue;
    if (count == max - 1) cut = i;
    if (++count > max) return fmt::format("{}\u2026", text.substr(0, cut));
  }
  return std::string(text);
}

/// text with <, > and & escaped for Telegram's HTML parse mode.
std::string html_escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    switch (c) {
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '&':
        out += "&amp;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

/// The sendMessage body. chat_id goes as a number when it is one ("-100123"), since
/// the Bot API documents it as "Integer or String"; "@channel" stays a string.
///
/// The message is cut to Telegram's 4096 characters before escaping: the limit counts
/// text after entity parsing, and cutting escaped text could split an "&amp;".
std::string telegram_body(const notifier_config& n, const std::string& text) {
  json::object body;
  std::int64_t numeric = 0;
  const char* first = n.chat_id.data();
  const char* last = first + n.chat_id.size();
  const auto [end, ec] = std::from_chars(first, last, numeric);
  if (!n.chat_id.empty() && ec == std::errc{} && end == last) {
    body.emplace("chat_id", numeric);
  } else {
    body.emplace("chat_id", n.chat_id);
  }
  body.emplace("text", html_escape(truncate_code_points(text, telegram_max_chars)));
  body.emplace("parse_mode", "HTML");
  body.emplace("disable_web_page_preview", true);
  return json::serialize(body);
}

/// value as is when it is printable ASCII, else as RFC 2047 encoded words
/// ("=?UTF-8?B?...?="), each under the 75-character limit and holding whole characters,
/// separated by spaces.
std::string header_text(std::string_view value) {
  const bool plain = std::all_of(value.begin(), value.end(), [](char c) {
    const auto b = static_cast<unsigned char>(c);
    return b >= 0x20 && b < 0x7F;
  });
  if (plain) return std::string(value);
  // 45 bytes become 60 base64 characters, 72 with the "=?UTF-8?B?" and "?=" around them.
  constexpr std::size_t max_chunk = 45;
  std::string out;
  while (!value.empty()) {
    std::size_t n = std::min(value.size(), max_chunk);
    while (n < value.size() && n > 0 && (static_cast<unsigned char>(value[n]) & 0xC0) == 0x80) --n;
    if (n == 0) n = std::min(value.size(), max_chunk);  // not UTF-8: cut anywhere
    std::array<unsigned char, 4 * max_chunk / 3 + 4> encoded{};
    const int len = EVP_EncodeBlock(
        encoded.data(), reinterpret_cast<const unsigned char*>(value.data()), static_cast<int>(n));
    if (!out.empty()) out += ' ';
    out += "=?UTF-8?B?";
    out.append(reinterpret_cast<const char*>(encoded.data()), static_cast<std::size_t>(len));
    out += "?=";
    value.remove_prefix(n);
  }
  return out;
}

/// ntfy's priority: the notifier's, else high for a firing event and default otherwise
/// (reminders included: the first notice was the urgent one).
std::string ntfy_priority(const notifier_config& n, const alert_event& e) {
  if (!n.priority.empty()) return n.priority;
  return e.kind == event_kind::firing ? "high" : "default";
}

/// ntfy's tags (emoji short codes): the notifier's, else one per event kind.
std::string ntfy_tags(const notifier_config& n, const alert_event& e) {
  if (!n.tags.empty()) return fmt::format("{}", fmt::join(n.tags, ","));
  switch (e.kind) {
    case event_kind::firing:
    case event_kind::reminder:
      return "warning";
    case event_kind::resolved:
      return "white_check_mark";
    case event_kind::test:
      return "information_source";
  }
  return "warning";
}

/// Adds the event id and then the notifier's own headers.
///
/// A notifier header replaces a built-in one of the same name (case-insensitively), so
/// Content-Type, or ntfy's Title, Priority and Tags, can be overridden from the config
/// (say "Content-Type: text/markdown" for ntfy). X-Somrated-Event-Id alone cannot: it
/// is the idempotency key receivers deduplicate on.
void add_headers(outgoing_request& req, const notifier_config& n, const alert_event& e) {
  req.headers.emplace_back(event_id_header, e.event_id);
  for (const auto& [name, value] : n.headers) {
    if (boost::beast::iequals(name, event_id_header)) continue;
    std::erase_if(req.headers,
                  [&name = name](const auto& h) { return boost::beast::iequals(h.first, name); });
  }
  for (const auto& [name, value] : n.headers) {
    if (!boost::beast::iequals(name, event_id_header)) req.headers.emplace_back(name, value);
  }
}

/// s without leading and trailing ASCII whitespace.
std::string_view trim(std::string_view s) {
  constexpr std::string_view space = " \t\r\n";
  const auto first = s.find_first_not_of(space);
  if (first == std::string_view::npos) return {};
  return s.substr(first, s.find_last_not_of(space) - first + 1);
}

/// What a Telegram answer says: its "ok", "description" and parameters.retry_after.
struct telegram_answer {
  bool parsed = false;  ///< The body was a JSON object.
  bool ok = false;
  std::string description;
  std::optional<std::chrono::milliseconds> retry_after;
};

/// Reads a Bot API answer ({"ok":false,"error_code":429,"description":"...",
/// "parameters":{"retry_after":5}}) without throwing.
telegram_answer read_telegram(std::string_view body) {
  telegram_answer a;
  boost::system::error_code ec;
  const json::value v = json::parse(body, ec);
  if (ec || !v.is_object()) return a;
  a.parsed = true;
  const json::object& o = v.get_object();
  if (const auto* ok = o.if_contains("ok"); ok && ok->is_bool()) a.ok = ok->get_bool();
  if (const auto* d = o.if_contains("description"); d && d->is_string()) {
    a.description = std::string(d->get_string());
  }
  if (const auto* p = o.if_contains("parameters"); p && p->is_object()) {
    if (const auto* r = p->get_object().if_contains("retry_after"); r && r->is_int64()) {
      a.retry_after = std::chrono::seconds(std::max<std::int64_t>(r->get_int64(), 0));
    }
  }
  return a;
}

/// "HTTP 503 Service Unavailable" (the client's text) or "HTTP 503", then what the
/// receiver said, as an excerpt.
std::string status_error(const fetch_result& r, std::string_view said) {
  std::string out = r.error.empty() ? fmt::format("HTTP {}", r.status) : r.error;
  said = trim(said);
  if (!said.empty()) out += fmt::format(": {}", detail::excerpt(said, answer_excerpt));
  return out;
}

/// True for statuses worth another try: timeouts, rate limits and server errors.
bool retryable_status(int status) {
  return status == 408 || status == 425 || status == 429 || (status >= 500 && status <= 599);
}

}  // namespace

std::string alert_fingerprint(const std::map<std::string, std::string>& labels) {
  constexpr std::uint64_t offset = 14695981039346656037ULL;
  constexpr std::uint64_t prime = 1099511628211ULL;
  std::uint64_t h = offset;
  auto add = [&](std::string_view s) {
    for (const char c : s) {
      h ^= static_cast<unsigned char>(c);
      h *= prime;
    }
  };
  auto separator = [&] {
    h ^= 0xFFu;
    h *= prime;
  };
  // std::map orders names bytewise, as Go's sort.Strings does.
  for (const auto& [name, value] : labels) {
    add(name);
    separator();
    add(value);
    separator();
  }
  return fmt::format("{:016x}", h);
}

std::string event_json(const alert_event& e, std::string_view text) {
  json::object o;
  o.emplace("id", e.event_id);
  o.emplace("rule", e.rule);
  o.emplace("kind", event_kind_name(e.kind));
  o.emplace("status", status_of(e));
  o.emplace("at", format_rfc3339(e.at));
  o.emplace("starts_at", format_rfc3339(e.starts_at));
  o.emplace("ends_at", e.kind == event_kind::resolved ? json::value(format_rfc3339(end_of(e)))
                                                      : json::value(nullptr));
  o.emplace("condition", condition_name(e.condition));
  o.emplace("currency", string_or_null(e.currency));
  o.emplace("source", e.source);
  o.emplace("against", string_or_null(e.against));
  o.emplace("threshold", e.threshold);
  o.emplace("value", string_or_null(e.value));
  o.emplace("rate", string_or_null(e.rate));
  o.emplace("labels", to_object(labels_of(e)));
  o.emplace("text", text);
  return json::serialize(o);
}

outgoing_request build_request(const notifier_config& n, const alert_event& e,
                               std::string_view external_url) {
  const std::string text = render_message(n, e);
  outgoing_request req;
  req.url = n.url;
  req.headers.emplace_back("Content-Type", "application/json");
  switch (n.kind) {
    case notifier_kind::webhook:
    case notifier_kind::exec:  // not sent over HTTP; a webhook body is the least surprise
      req.body = webhook_body(n, e, external_url, text);
      break;
    case notifier_kind::alertmanager:
      req.url = append_path(n.url, "/api/v2/alerts");
      req.body = alertmanager_body(n, e, external_url, text);
      break;
    case notifier_kind::slack:
      req.body = json::serialize(json::object{{"text", text}});
      break;
    case notifier_kind::telegram:
      req.url = append_path(n.url.empty() ? "https://api.telegram.org"sv : std::string_view(n.url),
                            fmt::format("/bot{}/sendMessage", n.bot_token));
      req.body = telegram_body(n, text);
      break;
    case notifier_kind::ntfy:
      req.headers = {{"Content-Type", "text/plain; charset=utf-8"},
                     {"Title", header_text(detail::event_title(n, e))},
                     {"Priority", ntfy_priority(n, e)},
                     {"Tags", ntfy_tags(n, e)}};
      req.body = text;
      break;
  }
  add_headers(req, n, e);
  return req;
}

exec_spec build_exec(const notifier_config& n, const alert_event& e,
                     std::string_view external_url) {
  const std::string text = render_message(n, e);
  exec_spec spec;
  spec.argv = n.command;
  spec.env = {
      {"SOMRATED_EVENT_ID", e.event_id},
      {"SOMRATED_RULE", e.rule},
      {"SOMRATED_KIND", std::string(event_kind_name(e.kind))},
      {"SOMRATED_STATUS", std::string(status_of(e))},
      {"SOMRATED_CONDITION", std::string(condition_name(e.condition))},
      {"SOMRATED_CURRENCY", e.currency},
      {"SOMRATED_SOURCE", e.source},
      {"SOMRATED_THRESHOLD", e.threshold},
      {"SOMRATED_VALUE", e.value},
      {"SOMRATED_RATE", e.rate},
      {"SOMRATED_STARTS_AT", format_rfc3339(e.starts_at)},
      {"SOMRATED_ENDS_AT", e.kind == event_kind::resolved ? format_rfc3339(end_of(e)) : ""},
      {"SOMRATED_TEXT", text},
      {"SOMRATED_URL", generator_url(external_url)},
  };
  spec.stdin_data = event_json(e, text);
  return spec;
}

// A 2xx whose body could not be read whole (a reset or a timeout mid-body, a body over
// the cap) counts as delivered where the status alone is the verdict, as Alertmanager's
// own notifiers treat it; Slack and Telegram answer in the body, so there it is retried.
delivery_verdict classify_response(const notifier_config& n, const fetch_result& r) {
  using verdict = delivery_verdict::kind;
  delivery_verdict v;
  const bool body_verdict = n.kind == notifier_kind::slack || n.kind == notifier_kind::telegram;

  if (r.status == 0) {
    v.result = r.error.empty() ? verdict::failed : verdict::retry;
    v.error = r.error.empty() ? "no HTTP response" : r.error;
    return v;
  }
  if (r.status >= 200 && r.status <= 299) {
    if (!r.error.empty()) {
      v.result = body_verdict ? verdict::retry : verdict::delivered;
      v.error = body_verdict ? r.error : "";
      return v;
    }
    if (n.kind == notifier_kind::slack && trim(r.body) != "ok") {
      v.result = verdict::failed;
      v.error = fmt::format("HTTP {} without \"ok\": {}", r.status,
                            detail::excerpt(trim(r.body), answer_excerpt));
    } else if (n.kind == notifier_kind::telegram) {
      const telegram_answer a = read_telegram(r.body);
      if (!a.ok) {
        v.result = verdict::failed;
        v.error = fmt::format(
            "HTTP {} without \"ok\":true: {}", r.status,
            detail::excerpt(
                a.parsed && !a.description.empty() ? std::string_view(a.description) : trim(r.body),
                answer_excerpt));
      }
    }
    return v;
  }

  std::string_view said = r.body;
  std::optional<std::chrono::milliseconds> telegram_wait;
  telegram_answer a;
  if (n.kind == notifier_kind::telegram) {
    a = read_telegram(r.body);
    if (!a.description.empty()) said = a.description;
    telegram_wait = a.retry_after;
  }
  v.error = status_error(r, said);
  if (retryable_status(r.status)) {
    v.result = verdict::retry;
    v.retry_after = parse_retry_after(r.retry_after);
    if (!v.retry_after) v.retry_after = telegram_wait;
  } else {
    v.result = verdict::failed;
  }
  return v;
}

}  // namespace somrated
