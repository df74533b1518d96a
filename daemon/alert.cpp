#include "somrated/alert.hpp"

namespace somrated {

std::string_view condition_name(alert_condition c) {
  switch (c) {
    case alert_condition::above:
      return "above";
    case alert_condition::below:
      return "below";
    case alert_condition::change_pct:
      return "change_pct";
    case alert_condition::spread_pct:
      return "spread_pct";
    case alert_condition::stale:
      return "stale";
  }
  return "above";
}

std::string_view direction_name(alert_direction d) {
  switch (d) {
    case alert_direction::either:
      return "either";
    case alert_direction::up:
      return "up";
    case alert_direction::down:
      return "down";
  }
  return "either";
}

std::string_view notifier_kind_name(notifier_kind k) {
  switch (k) {
    case notifier_kind::webhook:
      return "webhook";
    case notifier_kind::alertmanager:
      return "alertmanager";
    case notifier_kind::slack:
      return "slack";
    case notifier_kind::telegram:
      return "telegram";
    case notifier_kind::ntfy:
      return "ntfy";
    case notifier_kind::exec:
      return "exec";
  }
  return "webhook";
}

std::string_view phase_name(alert_phase p) {
  switch (p) {
    case alert_phase::inactive:
      return "inactive";
    case alert_phase::pending:
      return "pending";
    case alert_phase::firing:
      return "firing";
    case alert_phase::resolved:
      return "resolved";
  }
  return "inactive";
}

std::string_view event_kind_name(event_kind k) {
  switch (k) {
    case event_kind::firing:
      return "firing";
    case event_kind::reminder:
      return "reminder";
    case event_kind::resolved:
      return "resolved";
    case event_kind::test:
      return "test";
  }
  return "firing";
}

std::string_view delivery_status_name(delivery_status s) {
  switch (s) {
    case delivery_status::pending:
      return "pending";
    case delivery_status::delivered:
      return "delivered";
    case delivery_status::failed:
      return "failed";
  }
  return "pending";
}

}  // namespace somrated
