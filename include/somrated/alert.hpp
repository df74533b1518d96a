#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "somrated/decimal.hpp"
#include "somrated/time.hpp"

namespace somrated {

/// What a rule watches; exactly one per rule.
enum class alert_condition {
  above,       ///< The rate went above `threshold`.
  below,       ///< The rate went below `threshold`.
  change_pct,  ///< The rate moved by at least `threshold` percent against `window` ago.
  spread_pct,  ///< The rate differs from `against`'s by at least `threshold` percent.
  stale,       ///< The source has had no successful scrape for `stale_after`.
};

/// Which moves a change_pct rule counts.
enum class alert_direction { either, up, down };

/// The config/API name of a condition: "above", "below", "change_pct", "spread_pct", "stale".
std::string_view condition_name(alert_condition c);

/// The config/API name of a direction: "either", "up", "down".
std::string_view direction_name(alert_direction d);

/// One alert rule, from `[[alert]]` or from `POST /api/v1/alerts`.
///
/// Semantics, shared by the evaluator and the documentation:
/// - above T: fires when rate > T; once firing, resolves when rate < resolve_below
///   (default T). At exactly the resolve level the state holds.
/// - below T: fires when rate < T; resolves when rate > resolve_above (default T).
/// - change_pct P over window W: change = (rate - rate in force W ago) / that * 100;
///   fires when the counted move (|change|, or change for up, -change for down) >= P;
///   resolves when it is < resolve_below (default P).
/// - spread_pct P against S: spread = |rate - rate of S| / rate of S * 100; fires when
///   spread >= P; resolves when spread < resolve_below (default P).
/// - stale D: fires when the last successful scrape of `source` (or, if none, the
///   time the rule was first evaluated) is at least D ago; resolves on the next success.
/// - hold_for ("for"): the condition must hold that long (pending) before it fires.
/// - repeat: while firing, a reminder every `repeat`; zero = never.
struct alert_rule {
  std::string name;                 ///< Unique across config and API rules; [A-Za-z0-9_.-]{1,64}.
  std::string currency;             ///< "USD"; empty for stale rules.
  std::string source;               ///< Source name; defaults to the first configured source.
  std::vector<std::string> notify;  ///< Notifier names; may be empty (state only).
  alert_condition condition = alert_condition::above;
  std::optional<decimal> threshold;      ///< above/below: a rate; change/spread: percent.
  std::optional<decimal> resolve_above;  ///< below only: hysteresis level.
  std::optional<decimal> resolve_below;  ///< above/change_pct/spread_pct: hysteresis level.
  std::chrono::milliseconds window{0};   ///< change_pct: how far back to compare.
  alert_direction direction = alert_direction::either;  ///< change_pct only.
  std::string against;                                  ///< spread_pct: the other source.
  std::chrono::milliseconds stale_after{0};             ///< stale: allowed silence.
  std::chrono::milliseconds hold_for{0};                ///< `for`: pending time before firing.
  std::chrono::milliseconds repeat{0};                  ///< Reminder period; 0 = never.
  std::map<std::string, std::string> labels;  ///< Extra labels for receivers (e.g. severity).
  bool from_config = true;                    ///< False for rules created through the API.

  /// Field by field.
  bool operator==(const alert_rule&) const = default;
};

/// The kinds of notifier.
enum class notifier_kind { webhook, alertmanager, slack, telegram, ntfy, exec };

/// The config name of a kind: "webhook", "alertmanager", "slack", "telegram", "ntfy", "exec".
std::string_view notifier_kind_name(notifier_kind k);

/// One `[[notifier]]`.
struct notifier_config {
  std::string name;  ///< Unique; referenced by alert rules' `notify`.
  notifier_kind kind = notifier_kind::webhook;
  /// webhook/slack: the full URL; alertmanager: its base URL (we POST {url}/api/v2/alerts);
  /// telegram: the Bot API base (default https://api.telegram.org); ntfy: the topic URL.
  std::string url;
  std::vector<std::pair<std::string, std::string>> headers;  ///< Extra HTTP headers, in order.
  std::string ca_file;  ///< Extra trust anchors (PEM) for a private CA.
  std::chrono::milliseconds timeout{std::chrono::seconds(10)};  ///< Per attempt (exec: run time).
  std::chrono::milliseconds give_up{std::chrono::hours(24)};    ///< Then the delivery fails.
  std::string language = "en";    ///< Built-in message templates: "en", "ru" or "ky".
  std::string template_firing;    ///< Custom text for firing/reminder/test; empty = built-in.
  std::string template_resolved;  ///< Custom text for resolved; empty = built-in.
  std::string chat_id;            ///< telegram: numeric id or "@channel".
  std::string bot_token;          ///< telegram: the bot token (from bot_token or its file).
  std::string bot_token_file;     ///< telegram: where bot_token was read from, if a file.
  std::string priority;           ///< ntfy: 1..5 or min/low/default/high/max/urgent; empty = unset.
  std::vector<std::string> tags;  ///< ntfy: tags (emoji short codes).
  std::chrono::milliseconds resend{std::chrono::minutes(1)};  ///< alertmanager: re-post period.
  std::vector<std::string> command;  ///< exec: argv; argv[0] is an absolute path.

  /// Field by field.
  bool operator==(const notifier_config&) const = default;
};

/// Where a rule is in its life. `resolved` behaves like `inactive` but remembers that
/// the last episode ended.
enum class alert_phase { inactive, pending, firing, resolved };

/// "inactive", "pending", "firing", "resolved".
std::string_view phase_name(alert_phase p);

/// The persisted state of one rule.
struct alert_state {
  std::string rule;
  alert_phase phase = alert_phase::inactive;
  timestamp since{};                       ///< When the current phase began.
  std::optional<timestamp> started_at;     ///< Firing episode start (kept after resolve).
  std::optional<timestamp> last_notified;  ///< Last firing or reminder event.
  std::optional<timestamp> evaluated_at;   ///< Last evaluation.
  std::string value;       ///< Last measured value ("91.20", "2.31", "7200"), or empty.
  timestamp created_at{};  ///< First evaluation (the stale baseline).

  /// Field by field.
  bool operator==(const alert_state&) const = default;
};

/// What an event says.
enum class event_kind { firing, reminder, resolved, test };

/// "firing", "reminder", "resolved", "test".
std::string_view event_kind_name(event_kind k);

/// One notification-worthy moment, with a snapshot of what receivers need, so it can be
/// delivered after its rule changed or was deleted.
struct alert_event {
  std::int64_t id = 0;   ///< Outbox order; assigned by the store.
  std::string event_id;  ///< Idempotency key sent to receivers (X-Somrated-Event-Id).
  std::string rule;
  event_kind kind = event_kind::firing;
  timestamp at{};                    ///< When it happened.
  timestamp starts_at{};             ///< Start of the firing episode.
  std::optional<timestamp> ends_at;  ///< Resolved events only.
  alert_condition condition = alert_condition::above;
  std::string currency;  ///< May be empty (stale).
  std::string source;
  std::string against;    ///< spread_pct only.
  std::string threshold;  ///< The rule's threshold as text ("90", "2.5", "2h").
  std::string value;      ///< The measured value as text: a rate, a percent or a duration.
  std::string rate;       ///< The current rate of currency at source, if known.
  std::map<std::string, std::string>
      labels;  ///< alertname, currency, source, condition, + rule labels.
};

/// The state of one event's delivery to one notifier.
enum class delivery_status { pending, delivered, failed };

/// "pending", "delivered", "failed".
std::string_view delivery_status_name(delivery_status s);

/// One attempt to deliver.
struct delivery_attempt {
  timestamp at{};
  std::chrono::milliseconds duration{0};
  int http_status = 0;  ///< 0 when no HTTP response (refused, timeout, exec).
  std::string outcome;  ///< "delivered", "retry" or "failed".
  std::string error;    ///< Why it was not delivered; empty on success.
};

/// One event's delivery to one notifier (an outbox row).
struct delivery {
  std::int64_t id = 0;
  std::int64_t event = 0;  ///< alert_event::id.
  std::string notifier;
  delivery_status status = delivery_status::pending;
  int attempts = 0;
  timestamp created_at{};
  timestamp next_attempt_at{};
  std::optional<timestamp> done_at;  ///< Delivered or failed.
  std::string last_error;
};

/// How one attempt ended, as the dispatcher decides from the response.
struct delivery_verdict {
  enum class kind { delivered, retry, failed } result = kind::delivered;
  std::string error;  ///< What went wrong ("HTTP 503 Service Unavailable", "ok:false ...").
  std::optional<std::chrono::milliseconds> retry_after;  ///< From Retry-After/retry_after.
};

}  // namespace somrated
