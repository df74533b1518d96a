#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "somrated/alert.hpp"
#include "somrated/decimal.hpp"

namespace somrated::rule_parts {

/// Every key of an `[[alert]]` table and of a JSON rule, in schema order.
inline constexpr std::string_view alert_keys[] = {
    "name",       "currency",      "source",        "notify",     "above",   "below",
    "change_pct", "window",        "direction",     "spread_pct", "against", "stale",
    "for",        "resolve_below", "resolve_above", "repeat",     "labels"};

/// The condition a key selects ("above" -> above), or nullopt for other keys.
std::optional<alert_condition> condition_of_key(std::string_view key);

/// Why key cannot appear in a rule with condition c ("window applies only to change_pct
/// rules, not above"), or nullopt when it can. Condition keys themselves are not judged.
std::optional<std::string> misplaced_key(std::string_view key, alert_condition c);

/// True when name fits [A-Za-z0-9_.-]{1,64}: rule and notifier names.
bool valid_name(std::string_view name);

/// The message for two condition keys in one rule: first was given, then second.
std::string two_conditions(std::string_view first, std::string_view second);

/// The message for a rule without any condition key.
std::string no_condition();

/// A threshold or percent given as text ("89.75"), checked: no sign, no exponent, at most
/// decimal::max_scale fraction digits. The error names field and the value.
std::variant<decimal, std::string> number_from_text(std::string_view field, std::string_view text);

/// A threshold given as a binary float: its shortest round-trip text (90.0 -> "90",
/// 89.75 -> "89.75"), then as number_from_text. NaN, infinities and values whose shortest
/// form needs an exponent are refused.
std::variant<decimal, std::string> number_from_double(std::string_view field, double value);

/// A threshold given as an integer.
std::variant<decimal, std::string> number_from_integer(std::string_view field, std::int64_t value);

/// A positive duration ("24h") for field, or the message naming the field and the text.
std::variant<std::chrono::milliseconds, std::string> positive_duration(std::string_view field,
                                                                       std::string_view text);

/// Like positive_duration, but "0" (or "0s", "0m", ...) is accepted as zero: `for`, `repeat`.
std::variant<std::chrono::milliseconds, std::string> duration_or_zero(std::string_view field,
                                                                      std::string_view text);

/// Parses "either", "up" or "down"; the error suggests the closest.
std::variant<alert_direction, std::string> direction_from_text(std::string_view text);

}  // namespace somrated::rule_parts
