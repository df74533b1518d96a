// libFuzzer target: the alert rule JSON parser used by POST /api/v1/alerts.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <variant>

#include "somrated/alert.hpp"
#include "somrated/alert_rule.hpp"
#include "somrated/config.hpp"

/// One input: arbitrary bytes as a request body. A rule that parses must print back to
/// JSON that parses to the same rule.
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // Two sources and a notifier, so spread_pct rules (against) and notify lists can parse.
  static const somrated::config cfg = [] {
    somrated::config c;
    somrated::source_config kg;
    kg.name = "24kg";
    kg.kind = "24kg";
    kg.url = "https://24.kg/english/";
    somrated::source_config nbkr;
    nbkr.name = "nbkr";
    nbkr.kind = "nbkr";
    nbkr.url = "https://www.nbkr.kg/XML/daily.xml";
    c.sources = {kg, nbkr};
    somrated::notifier_config hook;
    hook.name = "hook";
    hook.url = "http://127.0.0.1:9000/hook";
    c.notifiers = {hook};
    return c;
  }();
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  auto parsed = somrated::alert_rule_from_json(body, cfg);
  if (const auto* rule = std::get_if<somrated::alert_rule>(&parsed)) {
    auto again = somrated::alert_rule_from_json(somrated::alert_rule_to_json(*rule), cfg);
    const auto* rule2 = std::get_if<somrated::alert_rule>(&again);
    if (rule2 == nullptr || !(*rule2 == *rule)) std::abort();
  }
  return 0;
}
