#include "somrated/time.hpp"

#include <cstdint>

#include <fmt/core.h>

namespace somrated {

namespace {

using std::chrono::days;
using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::seconds;
using std::chrono::sys_days;
using std::chrono::weeks;

/// Reads exactly n ASCII digits at pos; nullopt if any is missing or not a digit.
std::optional<int> fixed_digits(std::string_view s, std::size_t pos, std::size_t n) {
  if (pos + n > s.size()) return std::nullopt;
  int v = 0;
  for (std::size_t i = pos; i < pos + n; ++i) {
    if (s[i] < '0' || s[i] > '9') return std::nullopt;
    v = v * 10 + (s[i] - '0');
  }
  return v;
}

/// True when c is an ASCII digit.
constexpr bool is_digit(char c) noexcept {
  return c >= '0' && c <= '9';
}

/// Splits a sys_days-based time into calendar date and time of day.
struct broken_down {
  std::chrono::year_month_day date;
  std::chrono::hh_mm_ss<milliseconds> tod;
};

/// Breaks t into date and time of day; floor keeps pre-1970 times on the right day.
broken_down break_down(timestamp t) {
  const auto day = std::chrono::floor<days>(t);
  return {std::chrono::year_month_day{day}, std::chrono::hh_mm_ss<milliseconds>{t - day}};
}

/// One unit of a duration string.
struct duration_unit {
  std::string_view suffix;
  milliseconds length;
};

/// Units from largest to smallest: format_duration takes the first exact one, and
/// parse_duration must test "ms" before "m".
constexpr duration_unit duration_units[] = {
    {"w", weeks(1)},   {"d", days(1)},    {"h", hours(1)},
    {"m", minutes(1)}, {"s", seconds(1)}, {"ms", milliseconds(1)},
};

}  // namespace

std::string format_rfc3339(timestamp t) {
  const auto [date, tod] = break_down(t);
  const int year = static_cast<int>(date.year());
  if (year < 0 || year > 9999) {
    return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z", year,
                       static_cast<unsigned>(date.month()), static_cast<unsigned>(date.day()),
                       tod.hours().count(), tod.minutes().count(), tod.seconds().count());
  }
  // Every history point prints one of these: fixed digits, without a format string.
  std::string out = "0000-00-00T00:00:00Z";
  auto put = [&out](std::size_t at, long value, int width) {
    for (int i = width - 1; i >= 0; --i, value /= 10)
      out[at + static_cast<std::size_t>(i)] = static_cast<char>('0' + value % 10);
  };
  put(0, year, 4);
  put(5, static_cast<unsigned>(date.month()), 2);
  put(8, static_cast<unsigned>(date.day()), 2);
  put(11, tod.hours().count(), 2);
  put(14, tod.minutes().count(), 2);
  put(17, tod.seconds().count(), 2);
  return out;
}

std::string format_date(sys_days d) {
  const std::chrono::year_month_day ymd{d};
  return fmt::format("{:04}-{:02}-{:02}", static_cast<int>(ymd.year()),
                     static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()));
}

std::optional<sys_days> parse_date(std::string_view text) {
  if (text.size() != 10 || text[4] != '-' || text[7] != '-') return std::nullopt;
  const auto y = fixed_digits(text, 0, 4);
  const auto m = fixed_digits(text, 5, 2);
  const auto d = fixed_digits(text, 8, 2);
  if (!y || !m || !d || *y < 1970) return std::nullopt;
  const std::chrono::year_month_day ymd{std::chrono::year{*y},
                                        std::chrono::month{static_cast<unsigned>(*m)},
                                        std::chrono::day{static_cast<unsigned>(*d)}};
  if (!ymd.ok()) return std::nullopt;
  return sys_days{ymd};
}

// Leap seconds (":60") are rejected: std::chrono's system clock has no place for them,
// and a query-string bound never needs one. Times that land before the Unix epoch once
// the offset is applied are rejected too, so every accepted form maps onto the same
// non-negative range as plain Unix seconds.
std::optional<timestamp> parse_time(std::string_view text) {
  if (text.empty()) return std::nullopt;

  // Unix seconds: up to 11 digits keeps the result below the year 9999 limit. 12 to 14
  // digits are Unix milliseconds, which is what Grafana's ${__from} and ${__to} give
  // (seconds that long would be past the year 9999 anyway, so nothing is ambiguous).
  bool all_digits = true;
  for (char c : text) all_digits = all_digits && is_digit(c);
  if (all_digits) {
    if (text.size() > 14) return std::nullopt;
    std::int64_t n = 0;
    for (char c : text) n = n * 10 + (c - '0');
    if (text.size() > 11) return timestamp{std::chrono::milliseconds(n)};
    return timestamp{seconds(n)};
  }

  const auto date = parse_date(text.substr(0, 10));
  if (!date) return std::nullopt;
  if (text.size() == 10) return timestamp{*date};

  // "T", "t" or a space, then HH:MM:SS.
  if (text.size() < 19) return std::nullopt;
  if (text[10] != 'T' && text[10] != 't' && text[10] != ' ') return std::nullopt;
  if (text[13] != ':' || text[16] != ':') return std::nullopt;
  const auto hh = fixed_digits(text, 11, 2);
  const auto mm = fixed_digits(text, 14, 2);
  const auto ss = fixed_digits(text, 17, 2);
  if (!hh || !mm || !ss || *hh > 23 || *mm > 59 || *ss > 59) return std::nullopt;
  timestamp t = timestamp{*date} + hours(*hh) + minutes(*mm) + seconds(*ss);

  // Fractional seconds: any number of digits, truncated to milliseconds.
  std::size_t pos = 19;
  if (pos < text.size() && text[pos] == '.') {
    ++pos;
    const std::size_t first = pos;
    int ms = 0;
    while (pos < text.size() && is_digit(text[pos])) {
      if (pos - first < 3) ms = ms * 10 + (text[pos] - '0');
      ++pos;
    }
    const std::size_t n = pos - first;
    if (n == 0 || n > 9) return std::nullopt;
    for (std::size_t i = n; i < 3; ++i) ms *= 10;
    t += milliseconds(ms);
  }

  // Zone: 'Z', 'z' or ±HH:MM.
  if (pos >= text.size()) return std::nullopt;
  const char zone = text[pos];
  if (zone == 'Z' || zone == 'z') {
    if (pos + 1 != text.size()) return std::nullopt;
  } else if (zone == '+' || zone == '-') {
    if (pos + 6 != text.size() || text[pos + 3] != ':') return std::nullopt;
    const auto oh = fixed_digits(text, pos + 1, 2);
    const auto om = fixed_digits(text, pos + 4, 2);
    if (!oh || !om || *oh > 23 || *om > 59) return std::nullopt;
    const auto offset = hours(*oh) + minutes(*om);
    // Local time minus a positive offset is UTC.
    t += zone == '+' ? -offset : offset;
  } else {
    return std::nullopt;
  }
  if (t.time_since_epoch().count() < 0) return std::nullopt;
  return t;
}

// Units may come in any order and repeat ("30m1h" is 90m), as in Go's time.ParseDuration.
// Each number is limited to 12 digits and the running total to max_duration, so no
// intermediate product can overflow.
std::optional<milliseconds> parse_duration(std::string_view text) {
  if (text.empty()) return std::nullopt;
  std::int64_t total = 0;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::int64_t n = 0;
    const std::size_t first = pos;
    while (pos < text.size() && is_digit(text[pos])) {
      if (pos - first >= 12) return std::nullopt;
      n = n * 10 + (text[pos] - '0');
      ++pos;
    }
    if (pos == first) return std::nullopt;
    const duration_unit* unit = nullptr;
    // "ms" first so that "10ms" is not read as minutes followed by garbage.
    if (text.substr(pos, 2) == "ms") {
      unit = &duration_units[5];
    } else {
      for (const auto& u : duration_units) {
        if (u.suffix.size() == 1 && pos < text.size() && text[pos] == u.suffix[0]) unit = &u;
      }
    }
    if (unit == nullptr) return std::nullopt;
    pos += unit->suffix.size();
    const std::int64_t per = unit->length.count();
    const std::int64_t room = max_duration.count() - total;
    if (n > room / per) return std::nullopt;
    total += n * per;
  }
  if (total == 0) return std::nullopt;
  return milliseconds(total);
}

std::string format_duration(milliseconds d) {
  if (d == milliseconds::zero()) return "0s";
  // Negative durations never come out of parse_duration; print them with a sign anyway.
  const bool negative = d < milliseconds::zero();
  const auto raw = static_cast<std::uint64_t>(d.count());
  const std::uint64_t v = negative ? 0 - raw : raw;  // no overflow for milliseconds::min()
  for (const auto& u : duration_units) {
    const auto per = static_cast<std::uint64_t>(u.length.count());
    if (v % per == 0) return fmt::format("{}{}{}", negative ? "-" : "", v / per, u.suffix);
  }
  return fmt::format("{}{}ms", negative ? "-" : "", v);  // unreachable: 1ms divides everything
}

}  // namespace somrated
