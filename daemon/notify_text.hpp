#pragma once

#include <string>

#include "somrated/alert.hpp"
#include "somrated/time.hpp"

namespace somrated::detail {

/// A time as messages show it: "2026-11-28 10:52 UTC".
std::string message_time(timestamp t);

/// A short headline of an event in n's language, for ntfy's Title: "USD above 90: firing".
std::string event_title(const notifier_config& n, const alert_event& e);

}  // namespace somrated::detail
