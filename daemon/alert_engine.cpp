#include "somrated/alert_engine.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <map>

#include <fmt/format.h>
#include <boost/multiprecision/cpp_int.hpp>
#include <boost/uuid/uuid_io.hpp>

#include "somrated/alert_rule.hpp"
#include "somrated/log.hpp"
#include "somrated/store.hpp"

namespace somrated {

namespace {

/// Integers wide enough for percent comparisons of decimals: 18-digit mantissas brought
/// to a common scale of at most 12, times 100, times another 18 digits stay below 10^50.
using wide = boost::multiprecision::int256_t;

/// A decimal as a long double, parsed from its text; for the shown value only.
long double approximate(const decimal& d) {
  return std::strtold(d.text().c_str(), nullptr);
}

/// 10^n, for n >= 0.
wide power_of_ten(int n) {
  wide v = 1;
  while (n-- > 0) v *= 10;
  return v;
}

/// d's mantissa at scale (at least d's own), exactly.
wide scaled(const decimal& d, int scale) {
  return wide(d.mantissa()) * power_of_ten(scale - d.scale());
}

/// Whether the move from base to x, in percent of base (base > 0), is at least level,
/// compared exactly: sign 1 counts rises, -1 falls and 0 either (the magnitude).
bool percent_at_least(const decimal& x, const decimal& base, int sign, const decimal& level) {
  const int scale = std::max(x.scale(), base.scale());
  const wide b = scaled(base, scale);
  wide moved = scaled(x, scale) - b;
  if (sign == 0 && moved < 0) moved = -moved;
  if (sign < 0) moved = -moved;
  // moved / b * 100 >= level  <=>  moved * 100 * 10^level.scale >= level.mantissa * b
  return moved * 100 * power_of_ten(level.scale()) >= wide(level.mantissa()) * b;
}

/// The rate of currency in a source's latest values, if present.
std::optional<decimal> find_rate(const std::vector<rate_point>& points, std::string_view currency) {
  for (const rate_point& p : points)
    if (p.currency == currency) return p.rate;
  return std::nullopt;
}

/// The names of the notifiers an earlier event of rule was sent to (for a rule that is
/// gone from the config and needs a last resolved message).
std::vector<std::string> last_notifiers(store& db, std::string_view rule) {
  std::vector<std::string> out;
  if (auto last = db.last_event(rule))
    for (const auto& [d, attempts] : last->deliveries) out.push_back(d.notifier);
  return out;
}

}  // namespace

measurement measure(const alert_rule& rule, const rule_inputs& in, timestamp now,
                    timestamp created_at) {
  measurement m;
  switch (rule.condition) {
    case alert_condition::above:
    case alert_condition::below: {
      if (!in.rate || !rule.threshold) return m;
      m.known = true;
      m.value = in.rate->text();
      if (rule.condition == alert_condition::above) {
        m.fire = *in.rate > *rule.threshold;
        m.clear = *in.rate < rule.resolve_below.value_or(*rule.threshold);
      } else {
        m.fire = *in.rate < *rule.threshold;
        m.clear = *in.rate > rule.resolve_above.value_or(*rule.threshold);
      }
      return m;
    }
    case alert_condition::change_pct: {
      if (!in.rate || !in.past || !rule.threshold || in.past->mantissa() == 0) return m;
      const long double past = approximate(*in.past);
      const long double pct = (approximate(*in.rate) - past) / past * 100;
      const int sign = rule.direction == alert_direction::up     ? 1
                       : rule.direction == alert_direction::down ? -1
                                                                 : 0;
      m.known = true;
      m.value = fmt::format("{:+.2f}", static_cast<double>(pct));
      m.fire = percent_at_least(*in.rate, *in.past, sign, *rule.threshold);
      m.clear =
          !percent_at_least(*in.rate, *in.past, sign, rule.resolve_below.value_or(*rule.threshold));
      return m;
    }
    case alert_condition::spread_pct: {
      if (!in.rate || !in.other || !rule.threshold || in.other->mantissa() == 0) return m;
      const long double other = approximate(*in.other);
      const long double spread = std::fabs(approximate(*in.rate) - other) / other * 100;
      m.known = true;
      m.value = fmt::format("{:.2f}", static_cast<double>(spread));
      m.fire = percent_at_least(*in.rate, *in.other, 0, *rule.threshold);
      m.clear =
          !percent_at_least(*in.rate, *in.other, 0, rule.resolve_below.value_or(*rule.threshold));
      return m;
    }
    case alert_condition::stale: {
      const timestamp base = in.last_success.value_or(created_at);
      const auto age = now - base;
      m.known = true;
      m.value = std::to_string(std::chrono::duration_cast<std::chrono::seconds>(age).count());
      m.fire = age >= rule.stale_after;
      m.clear = in.last_success && age < rule.stale_after;
      return m;
    }
  }
  return m;
}

step_result step(const alert_rule& rule, const alert_state& prev, const measurement& m,
                 timestamp now) {
  step_result r{prev, std::nullopt};
  alert_state& s = r.state;
  s.evaluated_at = now;
  if (!m.known) return r;
  s.value = m.value;

  auto fire = [&] {
    s.phase = alert_phase::firing;
    s.since = now;
    s.started_at = now;
    s.last_notified = now;
    r.event = event_kind::firing;
  };
  switch (prev.phase) {
    case alert_phase::inactive:
    case alert_phase::resolved:
      if (!m.fire) break;
      if (rule.hold_for.count() <= 0) {
        fire();
      } else {
        s.phase = alert_phase::pending;
        s.since = now;
      }
      break;
    case alert_phase::pending:
      if (!m.fire) {
        s.phase = alert_phase::inactive;
        s.since = now;
      } else if (now - prev.since >= rule.hold_for) {
        fire();
      }
      break;
    case alert_phase::firing:
      if (m.clear) {
        s.phase = alert_phase::resolved;
        s.since = now;
        r.event = event_kind::resolved;
      } else if (rule.repeat.count() > 0 && prev.last_notified &&
                 now - *prev.last_notified >= rule.repeat) {
        s.last_notified = now;
        r.event = event_kind::reminder;
      }
      break;
  }
  return r;
}

rule_set load_rules(store& db, const config& cfg) {
  rule_set out;
  out.rules = cfg.alerts;
  for (const auto& [name, definition] : db.stored_rules()) {
    // The config gained a rule of this name after the API rule was stored: one name, one
    // state, so only the config's is judged.
    if (std::any_of(cfg.alerts.begin(), cfg.alerts.end(),
                    [&name = name](const alert_rule& r) { return r.name == name; })) {
      out.broken.emplace_back(name,
                              "the config file now has a rule of the same name, which is "
                              "evaluated instead; delete this API rule");
      continue;
    }
    auto parsed = alert_rule_from_json(definition, cfg);
    if (auto* rule = std::get_if<alert_rule>(&parsed)) {
      rule->name = name;
      out.rules.push_back(std::move(*rule));
    } else {
      const rule_error& e = std::get<rule_error>(parsed);
      out.broken.emplace_back(name, e.message);
    }
  }
  return out;
}

alert_engine::alert_engine(std::shared_ptr<const config> cfg, logger& log)
    : cfg_(std::move(cfg)), log_(log) {}

void alert_engine::set_config(std::shared_ptr<const config> cfg) {
  cfg_ = std::move(cfg);
  warned_.clear();  // a stored rule may fit the new config, or break differently
}

alert_event alert_engine::make_event(const alert_rule& rule, const alert_state& state,
                                     event_kind kind, timestamp now, const std::string& rate) {
  alert_event e;
  e.event_id = boost::uuids::to_string(uuids_());
  e.rule = rule.name;
  e.kind = kind;
  e.at = now;
  e.starts_at = state.started_at.value_or(now);
  if (kind == event_kind::resolved) e.ends_at = now;
  e.condition = rule.condition;
  e.currency = rule.currency;
  e.source = rule.source;
  e.against = rule.against;
  e.threshold = rule.condition == alert_condition::stale ? format_duration(rule.stale_after)
                : rule.threshold                         ? rule.threshold->text()
                                                         : std::string();
  e.value = state.value;
  e.rate = rate;
  e.labels = rule.labels;
  e.labels["alertname"] = rule.name;
  e.labels["source"] = rule.source;
  e.labels["condition"] = std::string(condition_name(rule.condition));
  if (!rule.currency.empty()) e.labels["currency"] = rule.currency;
  if (kind == event_kind::test) e.labels["test"] = "true";
  return e;
}

std::pair<alert_event, std::vector<std::string>> alert_engine::resolve_unjudged(
    store& db, const alert_state& state, timestamp now) {
  alert_rule gone;
  gone.name = state.rule;
  alert_event e = make_event(gone, state, event_kind::resolved, now, {});
  if (auto prev = db.last_event(state.rule)) {
    e.condition = prev->event.condition;
    e.currency = prev->event.currency;
    e.source = prev->event.source;
    e.against = prev->event.against;
    e.threshold = prev->event.threshold;
    e.labels = prev->event.labels;
    e.labels.erase("test");
  }
  return {std::move(e), last_notifiers(db, state.rule)};
}

std::size_t alert_engine::evaluate(store& db, timestamp now) {
  const rule_set set = load_rules(db, *cfg_);
  for (const auto& [name, why] : set.broken) {
    if (warned_.insert(name).second)
      log_.log(log_level::warning, "alert {}: not evaluated: {}", name, why);
  }

  std::map<std::string, alert_state, std::less<>> states;
  for (alert_state& s : db.alert_states()) states.emplace(s.rule, std::move(s));

  std::map<std::string, std::vector<rate_point>, std::less<>> latest;
  auto latest_of = [&](const std::string& source) -> const std::vector<rate_point>& {
    auto it = latest.find(source);
    if (it == latest.end()) it = latest.emplace(source, db.latest(source)).first;
    return it->second;
  };

  alert_update update;
  std::set<std::string, std::less<>> evaluated;
  for (const alert_rule& rule : set.rules) {
    evaluated.insert(rule.name);
    alert_state prev;
    if (auto it = states.find(rule.name); it != states.end()) {
      prev = it->second;
    } else {
      prev.rule = rule.name;
      prev.since = now;
      prev.created_at = now;
    }

    rule_inputs in;
    if (!rule.currency.empty()) in.rate = find_rate(latest_of(rule.source), rule.currency);
    if (rule.condition == alert_condition::change_pct)
      in.past = db.value_at(rule.source, rule.currency, now - rule.window);
    if (rule.condition == alert_condition::spread_pct)
      in.other = find_rate(latest_of(rule.against), rule.currency);
    if (rule.condition == alert_condition::stale)
      in.last_success = db.health(rule.source).last_success;

    const measurement m = measure(rule, in, now, prev.created_at);
    const step_result r = step(rule, prev, m, now);
    if (r.state.phase != prev.phase) {
      const log_level level =
          r.state.phase == alert_phase::firing || prev.phase == alert_phase::firing
              ? log_level::notice
              : log_level::info;
      log_.log(level, "alert {}: {} -> {} (value {})", rule.name, phase_name(prev.phase),
               phase_name(r.state.phase), m.value.empty() ? "unknown" : m.value);
    }
    if (r.event) {
      update.events.emplace_back(
          make_event(rule, r.state, *r.event, now, in.rate ? in.rate->text() : std::string()),
          rule.notify);
    }
    update.states.push_back(r.state);
  }

  // States of rules that are gone: a firing one gets a last resolved event.
  for (const auto& [name, s] : states) {
    if (evaluated.contains(name)) continue;
    const bool broken = std::any_of(set.broken.begin(), set.broken.end(),
                                    [&name = name](const auto& b) { return b.first == name; });
    if (broken) continue;  // Kept until the rule is fixed or deleted.
    if (s.phase == alert_phase::firing) {
      log_.log(log_level::notice, "alert {}: rule removed while firing; sending resolved", name);
      update.events.push_back(resolve_unjudged(db, s, now));
    }
    update.removed.push_back(name);
  }

  if (update.states.empty() && update.removed.empty() && update.events.empty()) return 0;
  db.apply_alert_update(update);
  return update.events.size();
}

alert_engine::removal alert_engine::remove(store& db, std::string_view name, timestamp now) {
  const auto stored = db.stored_rules();
  const bool exists =
      std::any_of(stored.begin(), stored.end(), [&](const auto& s) { return s.first == name; });
  for (const alert_rule& r : cfg_->alerts) {
    if (r.name != name) continue;
    if (!exists) return removal::read_only;
    // An API rule that a config rule of the same name replaced (see load_rules): only
    // its definition goes; the state is the config rule's.
    db.delete_rule(name);
    warned_.erase(std::string(name));
    log_.log(log_level::notice, "alert {}: deleted the API rule the config rule replaced", name);
    return removal::removed;
  }
  if (!exists) return removal::not_found;
  const rule_set set = load_rules(db, *cfg_);

  alert_update update;
  update.removed.emplace_back(name);
  for (const alert_state& s : db.alert_states()) {
    if (s.rule != name || s.phase != alert_phase::firing) continue;
    auto rule = std::find_if(set.rules.begin(), set.rules.end(),
                             [&](const alert_rule& r) { return r.name == name; });
    if (rule != set.rules.end()) {
      update.events.emplace_back(make_event(*rule, s, event_kind::resolved, now, {}), rule->notify);
    } else {
      update.events.push_back(resolve_unjudged(db, s, now));  // it no longer fits the config
    }
  }
  // The state and the resolved event first, then the rule: a crash in between leaves a
  // rule that starts again from inactive, never a firing alert nobody resolves.
  db.apply_alert_update(update);
  db.delete_rule(name);
  warned_.erase(std::string(name));
  log_.log(log_level::notice, "alert {}: deleted", name);
  return removal::removed;
}

std::optional<alert_event> alert_engine::test(store& db, std::string_view name, timestamp now) {
  const rule_set set = load_rules(db, *cfg_);
  auto rule = std::find_if(set.rules.begin(), set.rules.end(),
                           [&](const alert_rule& r) { return r.name == name; });
  if (rule == set.rules.end()) return std::nullopt;

  alert_state state;
  state.rule = rule->name;
  for (const alert_state& s : db.alert_states())
    if (s.rule == rule->name) state = s;
  state.started_at = now;
  std::string rate;
  if (!rule->currency.empty())
    if (auto r = find_rate(db.latest(rule->source), rule->currency)) rate = r->text();
  alert_update update;
  update.events.emplace_back(make_event(*rule, state, event_kind::test, now, rate), rule->notify);
  db.apply_alert_update(update);
  log_.log(log_level::info, "alert {}: test notification queued for {} notifiers", rule->name,
           rule->notify.size());
  return update.events.front().first;
}

std::vector<std::pair<alert_event, std::vector<std::string>>> alert_engine::firing_snapshot(
    store& db, timestamp now) {
  std::vector<std::pair<alert_event, std::vector<std::string>>> out;
  const rule_set set = load_rules(db, *cfg_);
  for (const alert_state& s : db.alert_states()) {
    if (s.phase != alert_phase::firing) continue;
    auto rule = std::find_if(set.rules.begin(), set.rules.end(),
                             [&](const alert_rule& r) { return r.name == s.rule; });
    if (rule == set.rules.end()) continue;
    std::string rate;
    if (!rule->currency.empty())
      if (auto r = find_rate(db.latest(rule->source), rule->currency)) rate = r->text();
    out.emplace_back(make_event(*rule, s, event_kind::reminder, now, rate), rule->notify);
  }
  return out;
}

}  // namespace somrated
