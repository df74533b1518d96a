#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace somrated {

/// A point in UTC with millisecond resolution; the one time type of the project.
using timestamp = std::chrono::sys_time<std::chrono::milliseconds>;

/// The current time.
inline timestamp now() {
  return std::chrono::time_point_cast<std::chrono::milliseconds>(std::chrono::system_clock::now());
}

/// Formats as RFC 3339 UTC with second precision: "2025-06-10T10:52:00Z".
std::string format_rfc3339(timestamp t);

/// Formats a calendar date as "2025-06-10".
std::string format_date(std::chrono::sys_days d);

/// Parses a query-string time: "2025-06-10" (midnight UTC), RFC 3339 with 'Z' or an
/// offset ("2025-06-10T10:52:00Z", "2025-06-10T16:52:00+06:00", fractional seconds
/// allowed, truncated to ms; 't', 'z' and a space for 'T' too), Unix seconds
/// ("1749552720", at most 11 digits) or Unix milliseconds ("1749552720000", 12 to 14
/// digits, as Grafana's ${__from} gives). Years 1970..9999, nothing before the epoch.
/// Returns nullopt for anything else.
std::optional<timestamp> parse_time(std::string_view text);

/// Parses "2025-06-10" only; years 1970..9999, real calendar dates.
std::optional<std::chrono::sys_days> parse_date(std::string_view text);

/// The longest duration parse_duration accepts (about 100 years); larger is a typo.
inline constexpr std::chrono::milliseconds max_duration = std::chrono::days(36500);

/// Parses a duration: an integer followed by ms, s, m, h, d or w ("30s", "10m", "1h",
/// "1d"), optionally several in a row ("1h30m"). Zero, negative, spaces and totals above
/// max_duration are rejected.
std::optional<std::chrono::milliseconds> parse_duration(std::string_view text);

/// Formats a duration in the largest exact unit: 600000ms -> "10m", 90000ms -> "90s",
/// 604800000ms -> "1w"; zero is "0s".
std::string format_duration(std::chrono::milliseconds d);

}  // namespace somrated
