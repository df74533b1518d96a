#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "somrated/alert.hpp"
#include "somrated/config.hpp"

namespace somrated {

/// Why a rule cannot be used: the field (config/JSON key) and what is wrong with it.
struct rule_error {
  std::string field;    ///< "above", "notify", "currency", "window", ... or "" for the body.
  std::string message;  ///< A sentence naming the field, the value and what would be valid.
};

/// Checks a rule against the rest of the config: exactly one condition with its own
/// keys only, sources and `against` configured, notifiers configured, currency valid for
/// the source kind, durations positive, hysteresis on the right side of the threshold.
/// Shared by the config loader and the API, so both reject the same things the same way.
std::optional<rule_error> check_rule(const alert_rule& r, const config& cfg);

/// Parses a JSON rule body (POST /api/v1/alerts): the same keys as `[[alert]]`
/// (numbers may also be given as strings, durations as "15m"), then check_rule. The
/// rule's from_config is false. An omitted source defaults to the first configured one.
std::variant<alert_rule, rule_error> alert_rule_from_json(std::string_view body, const config& cfg);

/// A rule as a JSON object with the same keys (how API rules are stored, and shown).
/// alert_rule_from_json(alert_rule_to_json(r), cfg) == r for any valid API rule.
std::string alert_rule_to_json(const alert_rule& r);

}  // namespace somrated
