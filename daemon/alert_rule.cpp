#include "somrated/alert_rule.hpp"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <limits>
#include <set>
#include <vector>

#include <fmt/format.h>
#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include "alert_rule_parts.hpp"
#include "somrated/json_writer.hpp"
#include "somrated/time.hpp"

namespace somrated {

namespace rule_parts {

namespace {

/// The longest rule or notifier name.
constexpr std::size_t max_name = 64;
/// The most significant digits a decimal keeps exactly.
constexpr int max_digits = 18;

/// The spellings of a zero duration: "0", "0s", "0m" and so on.
constexpr std::string_view zero_durations[] = {"0", "0ms", "0s", "0m", "0h", "0d", "0w"};

/// The directions of a change_pct rule, for suggestions.
constexpr std::string_view direction_names[] = {"either", "up", "down"};

/// True for '0' to '9'.
bool is_digit(char c) noexcept {
  return c >= '0' && c <= '9';
}

}  // namespace

std::optional<alert_condition> condition_of_key(std::string_view key) {
  if (key == "above") return alert_condition::above;
  if (key == "below") return alert_condition::below;
  if (key == "change_pct") return alert_condition::change_pct;
  if (key == "spread_pct") return alert_condition::spread_pct;
  if (key == "stale") return alert_condition::stale;
  return std::nullopt;
}

std::optional<std::string> misplaced_key(std::string_view key, alert_condition c) {
  const auto cond = condition_name(c);
  if (key == "currency" && c == alert_condition::stale) {
    return "currency does not apply to stale rules: they watch a source's scrapes, not a rate";
  }
  if ((key == "window" || key == "direction") && c != alert_condition::change_pct) {
    return fmt::format("{} applies only to change_pct rules, not {}", key, cond);
  }
  if (key == "against" && c != alert_condition::spread_pct) {
    return fmt::format("against applies only to spread_pct rules, not {}", cond);
  }
  if (key == "resolve_below" && (c == alert_condition::below || c == alert_condition::stale)) {
    return fmt::format(
        "resolve_below applies only to above, change_pct and spread_pct rules, not {}{}", cond,
        c == alert_condition::below ? " (a below rule resolves above resolve_above)"
                                    : " (a stale rule resolves on the next successful scrape)");
  }
  if (key == "resolve_above" && c != alert_condition::below) {
    return fmt::format("resolve_above applies only to below rules, not {}{}", cond,
                       c == alert_condition::stale
                           ? " (a stale rule resolves on the next successful scrape)"
                           : " (use resolve_below)");
  }
  return std::nullopt;
}

bool valid_name(std::string_view name) {
  if (name.empty() || name.size() > max_name) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '_' ||
           c == '.' || c == '-';
  });
}

std::string two_conditions(std::string_view first, std::string_view second) {
  return fmt::format(
      "{} and {} are both given, but a rule has exactly one condition (above, below, change_pct, "
      "spread_pct or stale); write one rule per condition",
      first, second);
}

std::string no_condition() {
  return "no condition: give exactly one of above, below, change_pct, spread_pct or stale";
}

// The checks come before decimal::parse so that each refusal says what is wrong instead
// of a bare "not a number".
std::variant<decimal, std::string> number_from_text(std::string_view field, std::string_view text) {
  if (text.empty()) return fmt::format("{} is empty; give a number like 89.75", field);
  if (text.front() == '-') {
    return fmt::format("{} {} is negative; it must be greater than 0", field, text);
  }
  const bool has_digit = std::any_of(text.begin(), text.end(), is_digit);
  if (has_digit && text.find_first_of("eE") != std::string_view::npos) {
    return fmt::format("{} {} has an exponent; write it as a plain decimal like 0.00001", field,
                       text);
  }
  if (const auto point = text.find_first_of(".,"); point != std::string_view::npos) {
    const auto fraction = text.substr(point + 1);
    if (std::all_of(fraction.begin(), fraction.end(), is_digit) &&
        fraction.size() > static_cast<std::size_t>(decimal::max_scale)) {
      return fmt::format("{} {} has {} digits after the point; at most {} are accepted", field,
                         text, fraction.size(), decimal::max_scale);
    }
  }
  if (std::all_of(text.begin(), text.end(),
                  [](char c) { return is_digit(c) || c == '.' || c == ','; })) {
    const auto first = text.find_first_not_of("0.,");
    int digits = 0;
    if (first != std::string_view::npos) {
      digits = static_cast<int>(
          std::count_if(text.begin() + static_cast<std::ptrdiff_t>(first), text.end(), is_digit));
    }
    if (digits > max_digits) {
      return fmt::format("{} {} has more than {} significant digits", field, text, max_digits);
    }
  }
  const auto d = decimal::parse(text);
  if (!d) return fmt::format("{} {:?} is not a number like 89.75", field, text);
  return *d;
}

std::variant<decimal, std::string> number_from_double(std::string_view field, double value) {
  if (std::isnan(value)) return fmt::format("{} is NaN; give a number like 89.75", field);
  if (std::signbit(value)) {
    return fmt::format("{} {} is negative; it must be greater than 0", field, value);
  }
  if (std::isinf(value)) return fmt::format("{} is infinite; give a number like 89.75", field);
  // "{}" is the shortest text that reads back as the same double: 90.0 -> "90".
  return number_from_text(field, fmt::format("{}", value));
}

std::variant<decimal, std::string> number_from_integer(std::string_view field, std::int64_t value) {
  return number_from_text(field, fmt::format("{}", value));
}

std::variant<std::chrono::milliseconds, std::string> positive_duration(std::string_view field,
                                                                       std::string_view text) {
  if (const auto d = parse_duration(text)) return *d;
  return fmt::format("{} {:?} is not a positive duration (use 30s, 10m, 1h, 1d)", field, text);
}

std::variant<std::chrono::milliseconds, std::string> duration_or_zero(std::string_view field,
                                                                      std::string_view text) {
  if (std::find(std::begin(zero_durations), std::end(zero_durations), text) !=
      std::end(zero_durations)) {
    return std::chrono::milliseconds{0};
  }
  if (const auto d = parse_duration(text)) return *d;
  return fmt::format("{} {:?} is not a duration (use 0, 30s, 10m, 1h, 1d)", field, text);
}

std::variant<alert_direction, std::string> direction_from_text(std::string_view text) {
  if (text == "either") return alert_direction::either;
  if (text == "up") return alert_direction::up;
  if (text == "down") return alert_direction::down;
  std::string message =
      fmt::format("direction {:?} is not one of \"either\", \"up\", \"down\"", text);
  if (const auto best = closest_match(text, direction_names)) {
    message += fmt::format("; did you mean \"{}\"?", *best);
  }
  return message;
}

}  // namespace rule_parts

namespace {

using namespace rule_parts;
namespace json = boost::json;

/// Currencies the 24.kg extractor publishes; a rule on a 24kg source can watch no other.
constexpr std::string_view kg24_currencies[] = {"USD", "EUR", "RUB"};

/// Label names that somrated sets on every event itself.
constexpr std::string_view reserved_labels[] = {"alertname", "currency", "source", "condition",
                                                "test"};

/// Shorthand for a rule_error.
rule_error error(std::string_view field, std::string message) {
  return rule_error{std::string(field), std::move(message)};
}

/// The configured source called name, or nullptr.
const source_config* find_source(const config& cfg, std::string_view name) {
  for (const auto& s : cfg.sources) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

/// "; did you mean "x"?" or " (configured: "a", "b")", after an unknown name; what names
/// the kind of thing ("sources", "notifiers") when none are configured.
std::string suggestion(std::string_view word, const std::vector<std::string_view>& known,
                       std::string_view what) {
  if (const auto best = closest_match(word, known)) {
    return fmt::format("; did you mean \"{}\"?", *best);
  }
  if (known.empty()) return fmt::format(" (no {} are configured)", what);
  std::string list;
  for (const auto k : known) {
    if (!list.empty()) list += ", ";
    list += fmt::format("\"{}\"", k);
  }
  return fmt::format(" (configured: {})", list);
}

/// The message for a source name that is not configured, under field.
std::string unknown_source(std::string_view field, std::string_view name, const config& cfg) {
  std::vector<std::string_view> names;
  for (const auto& s : cfg.sources) names.emplace_back(s.name);
  return fmt::format("{} {:?} is not a configured source{}", field, name,
                     suggestion(name, names, "sources"));
}

/// Why source s cannot give currency, or nullopt when it can.
std::optional<std::string> currency_problem(std::string_view field, const source_config& s,
                                            std::string_view currency) {
  if (s.kind != "24kg") return std::nullopt;
  if (std::find(std::begin(kg24_currencies), std::end(kg24_currencies), currency) !=
      std::end(kg24_currencies)) {
    return std::nullopt;
  }
  return fmt::format(
      "{}: source {:?} is of kind 24kg, which publishes only USD, EUR and RUB, not {:?}", field,
      s.name, currency);
}

/// True for three uppercase ASCII letters.
bool valid_currency(std::string_view c) {
  return c.size() == 3 &&
         std::all_of(c.begin(), c.end(), [](char ch) { return ch >= 'A' && ch <= 'Z'; });
}

/// True when name fits [a-zA-Z_][a-zA-Z0-9_]*.
bool valid_label_name(std::string_view name) {
  const auto letter = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
  };
  if (name.empty() || !letter(name.front())) return false;
  return std::all_of(name.begin(), name.end(),
                     [&](char c) { return letter(c) || (c >= '0' && c <= '9'); });
}

/// The rule's checks on `notify`: every name configured, none twice.
std::optional<rule_error> check_notify(const alert_rule& r, const config& cfg) {
  std::vector<std::string_view> names;
  for (const auto& n : cfg.notifiers) names.emplace_back(n.name);
  std::set<std::string_view> seen;
  for (const auto& n : r.notify) {
    if (std::find(names.begin(), names.end(), n) == names.end()) {
      return error("notify", fmt::format("notify names {:?}, which is not a configured notifier{}",
                                         n, suggestion(n, names, "notifiers")));
    }
    if (!seen.insert(n).second) {
      return error("notify", fmt::format("notify lists {:?} twice", n));
    }
  }
  return std::nullopt;
}

/// The rule's checks on its condition: the threshold or the stale duration, and the
/// companions of change_pct and spread_pct.
std::optional<rule_error> check_condition(const alert_rule& r, const config& cfg,
                                          const source_config& source) {
  const auto cond = condition_name(r.condition);
  if (r.condition == alert_condition::stale) {
    if (r.threshold) {
      return error("stale", "a stale rule has no threshold: it fires after the stale duration");
    }
    if (r.stale_after <= std::chrono::milliseconds::zero()) {
      return error("stale", "stale must be a positive duration like \"2h\"");
    }
  } else {
    if (!r.threshold) return error(cond, fmt::format("{} needs a value like 90", cond));
    if (r.threshold->mantissa() == 0) {
      return error(cond,
                   fmt::format("{} must be greater than 0, not {}", cond, r.threshold->text()));
    }
    if (r.stale_after != std::chrono::milliseconds::zero()) {
      return error("stale", two_conditions(cond, "stale"));
    }
  }

  if (r.condition == alert_condition::change_pct) {
    if (r.window <= std::chrono::milliseconds::zero()) {
      return error("window",
                   "window is required for change_pct rules: a positive duration like \"24h\"");
    }
  } else {
    if (r.window != std::chrono::milliseconds::zero()) {
      return error("window", *misplaced_key("window", r.condition));
    }
    if (r.direction != alert_direction::either) {
      return error("direction", *misplaced_key("direction", r.condition));
    }
  }

  if (r.condition == alert_condition::spread_pct) {
    if (r.against.empty()) {
      return error("against",
                   "against is required for spread_pct rules: another configured source");
    }
    const auto* other = find_source(cfg, r.against);
    if (other == nullptr) return error("against", unknown_source("against", r.against, cfg));
    if (other == &source) {
      return error("against",
                   fmt::format("against must name another source than source ({:?})", r.source));
    }
    if (const auto problem = currency_problem("against", *other, r.currency)) {
      return error("against", *problem);
    }
  } else if (!r.against.empty()) {
    return error("against", *misplaced_key("against", r.condition));
  }
  return std::nullopt;
}

/// The rule's hysteresis levels: on the right side of the threshold and of its condition.
std::optional<rule_error> check_hysteresis(const alert_rule& r) {
  if (r.resolve_below) {
    if (const auto why = misplaced_key("resolve_below", r.condition)) {
      return error("resolve_below", *why);
    }
    if (r.resolve_below->mantissa() == 0) {
      return error("resolve_below", "resolve_below must be greater than 0, not 0");
    }
    if (r.threshold && *r.resolve_below > *r.threshold) {
      return error(
          "resolve_below",
          fmt::format("resolve_below {} is above the threshold {} = {}; it must be at "
                      "most the threshold, since the rule resolves when the value "
                      "drops below it",
                      r.resolve_below->text(), condition_name(r.condition), r.threshold->text()));
    }
  }
  if (r.resolve_above) {
    if (const auto why = misplaced_key("resolve_above", r.condition)) {
      return error("resolve_above", *why);
    }
    if (r.threshold && *r.resolve_above < *r.threshold) {
      return error("resolve_above",
                   fmt::format("resolve_above {} is below the threshold below = {}; it must be at "
                               "least the threshold, since the rule resolves when the rate "
                               "rises above it",
                               r.resolve_above->text(), r.threshold->text()));
    }
  }
  return std::nullopt;
}

/// The rule's labels: valid names, none reserved, no empty values.
std::optional<rule_error> check_labels(const alert_rule& r) {
  for (const auto& [name, value] : r.labels) {
    if (!valid_label_name(name)) {
      return error("labels", fmt::format("label name {:?} is not valid: use a letter or '_', then "
                                         "letters, digits or '_'",
                                         name));
    }
    if (std::find(std::begin(reserved_labels), std::end(reserved_labels), name) !=
        std::end(reserved_labels)) {
      return error("labels", fmt::format("label name {:?} is reserved: somrated sets alertname, "
                                         "currency, source, condition and test itself",
                                         name));
    }
    if (name.starts_with("__")) {
      return error("labels",
                   fmt::format("label name {:?} is reserved: names starting with \"__\" are "
                               "for internal use",
                               name));
    }
    if (value.empty()) {
      return error("labels", fmt::format("label {:?} has an empty value; give it a value or "
                                         "leave it out",
                                         name));
    }
  }
  return std::nullopt;
}

/// "an object", "a string"...: the JSON type of v, for "expected X, not Y".
std::string_view json_type(const json::value& v) {
  switch (v.kind()) {
    case json::kind::object:
      return "an object";
    case json::kind::array:
      return "an array";
    case json::kind::string:
      return "a string";
    case json::kind::int64:
    case json::kind::uint64:
    case json::kind::double_:
      return "a number";
    case json::kind::bool_:
      return "a boolean";
    case json::kind::null:
      break;
  }
  return "null";
}

/// Reads the members of a JSON rule object into a rule, one key at a time.
class json_rule_reader {
 public:
  /// Reads from o.
  explicit json_rule_reader(const json::object& o) : o_(o) {}

  /// The string under key into out, if present.
  std::optional<rule_error> string(std::string_view key, std::string& out) const {
    const auto* v = o_.if_contains(key);
    if (v == nullptr) return std::nullopt;
    const auto* s = v->if_string();
    if (s == nullptr) {
      return error(key, fmt::format("{} must be a string, not {}", key, json_type(*v)));
    }
    out.assign(s->data(), s->size());
    return std::nullopt;
  }

  /// The number under key into out, if present: a JSON number or a numeric string.
  std::optional<rule_error> number(std::string_view key, std::optional<decimal>& out) const {
    const auto* v = o_.if_contains(key);
    if (v == nullptr) return std::nullopt;
    std::variant<decimal, std::string> parsed = std::string();
    switch (v->kind()) {
      case json::kind::int64:
        parsed = number_from_integer(key, v->get_int64());
        break;
      case json::kind::uint64:
        // Only values above INT64_MAX arrive as uint64; they have 19 or more digits.
        parsed = number_from_text(key, fmt::format("{}", v->get_uint64()));
        break;
      case json::kind::double_:
        parsed = number_from_double(key, v->get_double());
        break;
      case json::kind::string: {
        const auto& s = v->get_string();
        parsed = number_from_text(key, std::string_view(s.data(), s.size()));
        break;
      }
      default:
        return error(key, fmt::format("{} must be a number like 89.75 or a string like \"89.75\", "
                                      "not {}",
                                      key, json_type(*v)));
    }
    if (auto* message = std::get_if<std::string>(&parsed)) return error(key, std::move(*message));
    out = std::get<decimal>(parsed);
    return std::nullopt;
  }

  /// The duration under key into out, if present; zero_ok allows "0".
  std::optional<rule_error> duration(std::string_view key, bool zero_ok,
                                     std::chrono::milliseconds& out) const {
    const auto* v = o_.if_contains(key);
    if (v == nullptr) return std::nullopt;
    const auto* s = v->if_string();
    if (s == nullptr) {
      return error(key, fmt::format("{} must be a duration string like \"15m\", not {}", key,
                                    json_type(*v)));
    }
    const std::string_view text(s->data(), s->size());
    auto parsed = zero_ok ? duration_or_zero(key, text) : positive_duration(key, text);
    if (auto* message = std::get_if<std::string>(&parsed)) return error(key, std::move(*message));
    out = std::get<std::chrono::milliseconds>(parsed);
    return std::nullopt;
  }

  /// `notify`: an array of names.
  std::optional<rule_error> notify(std::vector<std::string>& out) const {
    const auto* v = o_.if_contains("notify");
    if (v == nullptr) return std::nullopt;
    const auto* a = v->if_array();
    if (a == nullptr) {
      return error("notify",
                   fmt::format("notify must be an array of notifier names, not {}", json_type(*v)));
    }
    for (const auto& item : *a) {
      const auto* s = item.if_string();
      if (s == nullptr) {
        return error("notify", fmt::format("notify must hold notifier names (strings), not {}",
                                           json_type(item)));
      }
      out.emplace_back(s->data(), s->size());
    }
    return std::nullopt;
  }

  /// `labels`: an object of strings.
  std::optional<rule_error> labels(std::map<std::string, std::string>& out) const {
    const auto* v = o_.if_contains("labels");
    if (v == nullptr) return std::nullopt;
    const auto* o = v->if_object();
    if (o == nullptr) {
      return error("labels", fmt::format("labels must be an object of strings like "
                                         "{{\"severity\": \"warning\"}}, not {}",
                                         json_type(*v)));
    }
    for (const auto& [name, value] : *o) {
      const auto* s = value.if_string();
      if (s == nullptr) {
        return error("labels",
                     fmt::format("label {:?} must be a string, not {}",
                                 std::string_view(name.data(), name.size()), json_type(value)));
      }
      out[std::string(name.data(), name.size())] = std::string(s->data(), s->size());
    }
    return std::nullopt;
  }

 private:
  const json::object& o_;  ///< The rule body.
};

/// Reads every key of the body into r, whose condition is already known.
std::optional<rule_error> read_json_rule(const json::object& o, alert_rule& r) {
  const json_rule_reader in{o};
  const auto cond = condition_name(r.condition);
  std::optional<rule_error> e;
  if ((e = in.string("name", r.name)) || (e = in.string("currency", r.currency)) ||
      (e = in.string("source", r.source)) || (e = in.notify(r.notify))) {
    return e;
  }
  if (r.condition == alert_condition::stale) {
    if ((e = in.duration("stale", false, r.stale_after))) return e;
  } else if ((e = in.number(cond, r.threshold))) {
    return e;
  }
  if ((e = in.duration("window", false, r.window))) return e;
  if (o.contains("direction")) {
    std::string text;
    if ((e = in.string("direction", text))) return e;
    auto d = direction_from_text(text);
    if (auto* message = std::get_if<std::string>(&d)) return error("direction", *message);
    r.direction = std::get<alert_direction>(d);
  }
  if ((e = in.string("against", r.against)) || (e = in.duration("for", true, r.hold_for)) ||
      (e = in.number("resolve_below", r.resolve_below)) ||
      (e = in.number("resolve_above", r.resolve_above)) ||
      (e = in.duration("repeat", true, r.repeat)) || (e = in.labels(r.labels))) {
    return e;
  }
  return std::nullopt;
}

}  // namespace

std::optional<rule_error> check_rule(const alert_rule& r, const config& cfg) {
  if (r.name.empty()) {
    return error("name", "name is required: 1 to 64 of A-Z, a-z, 0-9, '_', '.' and '-'");
  }
  if (!valid_name(r.name)) {
    return error("name", fmt::format("name {:?} is not valid: use 1 to 64 of A-Z, a-z, 0-9, '_', "
                                     "'.' and '-'",
                                     r.name));
  }
  const auto* source = find_source(cfg, r.source);
  if (source == nullptr) return error("source", unknown_source("source", r.source, cfg));

  if (r.condition == alert_condition::stale) {
    if (!r.currency.empty()) return error("currency", *misplaced_key("currency", r.condition));
  } else {
    if (r.currency.empty()) {
      return error("currency", fmt::format("currency is required for {} rules: 3 uppercase "
                                           "letters like \"USD\"",
                                           condition_name(r.condition)));
    }
    if (!valid_currency(r.currency)) {
      return error("currency", fmt::format("currency {:?} is not 3 uppercase letters like \"USD\"",
                                           r.currency));
    }
    if (const auto problem = currency_problem("currency", *source, r.currency)) {
      return error("currency", *problem);
    }
  }
  if (auto e = check_notify(r, cfg)) return e;
  if (auto e = check_condition(r, cfg, *source)) return e;
  if (r.hold_for < std::chrono::milliseconds::zero()) {
    return error("for", "for must not be negative (0 fires at once)");
  }
  if (auto e = check_hysteresis(r)) return e;
  if (r.repeat < std::chrono::milliseconds::zero()) {
    return error("repeat", "repeat must not be negative (0 never reminds)");
  }
  return check_labels(r);
}

std::variant<alert_rule, rule_error> alert_rule_from_json(std::string_view body,
                                                          const config& cfg) {
  boost::system::error_code ec;
  const json::value doc = json::parse(body, ec);
  if (ec) return error("", fmt::format("the body is not valid JSON: {}", ec.message()));
  const auto* o = doc.if_object();
  if (o == nullptr) {
    return error("", fmt::format("the body must be a JSON object, not {}", json_type(doc)));
  }

  std::string_view condition_key;
  for (const auto& member : *o) {
    const std::string_view key(member.key().data(), member.key().size());
    if (std::find(std::begin(alert_keys), std::end(alert_keys), key) == std::end(alert_keys)) {
      std::string message = fmt::format("unknown key {:?}", key);
      if (const auto best = closest_match(key, alert_keys)) {
        message += fmt::format("; did you mean \"{}\"?", *best);
      } else {
        message += " (known: ";
        for (const auto k : alert_keys) {
          if (k != alert_keys[0]) message += ", ";
          message += k;
        }
        message += ")";
      }
      return error(key, std::move(message));
    }
    if (condition_of_key(key)) {
      if (!condition_key.empty()) return error(key, two_conditions(condition_key, key));
      condition_key = key;
    }
  }
  if (condition_key.empty()) return error("", no_condition());

  alert_rule r;
  r.from_config = false;
  r.condition = *condition_of_key(condition_key);
  for (const auto& member : *o) {
    const std::string_view key(member.key().data(), member.key().size());
    if (auto why = misplaced_key(key, r.condition)) return error(key, std::move(*why));
  }
  if (!cfg.sources.empty()) r.source = cfg.sources.front().name;
  if (auto e = read_json_rule(*o, r)) return *e;
  if (auto e = check_rule(r, cfg)) return *e;
  return r;
}

std::string alert_rule_to_json(const alert_rule& r) {
  json_writer w;
  w.begin_object();
  w.key("name").value(r.name);
  if (r.condition != alert_condition::stale) w.key("currency").value(r.currency);
  w.key("source").value(r.source);
  w.key("notify").begin_array();
  for (const auto& n : r.notify) w.value(n);
  w.end_array();
  if (r.condition == alert_condition::stale) {
    w.key("stale").value(format_duration(r.stale_after));
  } else if (r.threshold) {
    w.key(condition_name(r.condition)).value(r.threshold->text());
  }
  if (r.condition == alert_condition::change_pct) {
    w.key("window").value(format_duration(r.window));
    w.key("direction").value(direction_name(r.direction));
  }
  if (r.condition == alert_condition::spread_pct) w.key("against").value(r.against);
  w.key("for").value(format_duration(r.hold_for));
  if (r.resolve_below) w.key("resolve_below").value(r.resolve_below->text());
  if (r.resolve_above) w.key("resolve_above").value(r.resolve_above->text());
  w.key("repeat").value(format_duration(r.repeat));
  if (!r.labels.empty()) {
    w.key("labels").begin_object();
    for (const auto& [name, value] : r.labels) w.key(name).value(value);
    w.end_object();
  }
  w.end_object();
  return std::move(w).release();
}

}  // namespace somrated
