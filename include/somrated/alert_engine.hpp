#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/uuid/random_generator.hpp>

#include "somrated/alert.hpp"
#include "somrated/config.hpp"
#include "somrated/decimal.hpp"
#include "somrated/time.hpp"

namespace somrated {

class logger;
class store;

/// What the evaluator reads for one rule at one moment.
struct rule_inputs {
  std::optional<decimal> rate;            ///< The rate in force at the rule's source.
  std::optional<decimal> past;            ///< change_pct: the rate in force `window` ago.
  std::optional<decimal> other;           ///< spread_pct: the rate in force at `against`.
  std::optional<timestamp> last_success;  ///< stale: the source's last successful scrape.
};

/// A rule's condition judged against its inputs.
struct measurement {
  bool known = false;  ///< Enough data to judge; otherwise the state is left as it is.
  bool fire = false;   ///< The firing condition holds.
  bool clear = false;  ///< The resolve condition (hysteresis level) holds.
  std::string value;   ///< The measured quantity: a rate, a signed percent, or seconds.
};

/// Judges rule's condition; created_at is the stale baseline when nothing ever succeeded.
measurement measure(const alert_rule& rule, const rule_inputs& in, timestamp now,
                    timestamp created_at);

/// One step of the state machine: the new state and the event it produces, if any.
struct step_result {
  alert_state state;
  std::optional<event_kind> event;
};

/// Advances prev by one evaluation at now (see alert_rule for the semantics).
step_result step(const alert_rule& rule, const alert_state& prev, const measurement& m,
                 timestamp now);

/// Every rule: the config's, then the API's stored ones (parsed against cfg). A stored
/// rule that no longer fits the config (its notifier was removed, say) is returned in
/// broken with the reason, and is not evaluated.
struct rule_set {
  std::vector<alert_rule> rules;
  std::vector<std::pair<std::string, std::string>> broken;  ///< (name, why)
};

/// Loads the rule set from cfg and db.
rule_set load_rules(store& db, const config& cfg);

/// Evaluates alert rules and writes their states, events and outbox rows.
///
/// Runs only on the writer thread, which owns the read-write store: after every scrape
/// (so a new rate is judged at once) and on a timer (for `for`, `stale` and `repeat`).
/// Each pass reads what it needs and writes everything it decided in one transaction,
/// so a crash leaves either the old state or the new state with its events queued.
class alert_engine {
 public:
  /// Judges cfg's rules plus the API's; log receives transitions.
  alert_engine(std::shared_ptr<const config> cfg, logger& log);

  /// Evaluates every rule at now; returns how many events were queued.
  std::size_t evaluate(store& db, timestamp now);

  /// What remove() did.
  enum class removal { removed, not_found, read_only };

  /// Deletes an API rule; a firing one gets a resolved event first (sent to its notifiers).
  /// A name that is a config rule is read_only, unless an API rule of that name is stored
  /// from before the config had it: then that stored rule is deleted.
  removal remove(store& db, std::string_view name, timestamp now);

  /// Queues a test event for rule name through its notifiers; nullopt when no such rule.
  std::optional<alert_event> test(store& db, std::string_view name, timestamp now);

  /// Alertmanager expects firing alerts to be re-posted: a fresh (unqueued) reminder
  /// event for every firing rule, each with the rule's notifier names.
  std::vector<std::pair<alert_event, std::vector<std::string>>> firing_snapshot(store& db,
                                                                                timestamp now);

  /// The configuration in use.
  const config& cfg() const { return *cfg_; }

  /// Judges cfg's rules and notifiers from the next evaluation on (a configuration
  /// reload). Writer thread only, like evaluate(); rule states are kept, and a firing
  /// rule that is gone from cfg is resolved by the next evaluation.
  void set_config(std::shared_ptr<const config> cfg);

 private:
  /// An event of kind for rule in state at now.
  alert_event make_event(const alert_rule& rule, const alert_state& state, event_kind kind,
                         timestamp now, const std::string& rate);

  /// The resolved event of a firing rule that can no longer be judged (gone from the
  /// config, or stored but no longer fitting it), with the notifiers its last event went
  /// to; what the rule would have said comes from that event.
  std::pair<alert_event, std::vector<std::string>> resolve_unjudged(store& db,
                                                                    const alert_state& state,
                                                                    timestamp now);

  std::shared_ptr<const config> cfg_;          ///< Rules, notifiers and sources.
  logger& log_;                                ///< Transitions and broken rules.
  boost::uuids::random_generator uuids_;       ///< Event ids.
  std::set<std::string, std::less<>> warned_;  ///< Broken rules already reported.
};

}  // namespace somrated
