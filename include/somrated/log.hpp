#pragma once

#include <cstdio>
#include <optional>
#include <string>
#include <string_view>

#include <fmt/core.h>

#include "somrated/time.hpp"

namespace somrated {

/// Severity, numbered as syslog/journald priorities.
enum class log_level { error = 3, warning = 4, notice = 5, info = 6, debug = 7 };

/// Parses "error", "warning", "notice", "info", "debug" (also "err" and "warn").
std::optional<log_level> parse_log_level(std::string_view s);

/// The canonical name: "error", "warning", "notice", "info" or "debug".
std::string_view to_string(log_level l) noexcept;

/// Renders one event as the bytes logger writes, ending in '\n'.
///
/// Journal: every line of a multi-line message gets its own "<N>" prefix, so journald
/// files each at the event's priority (INTEGRATIONS.md §4.3). Plain: "2025-06-10T10:52:00.123Z
/// warning: message" with the message's lines joined by " | ", so one event stays one
/// line for grep and tail. Trailing newlines and carriage returns are dropped in both.
std::string format_log_line(log_level l, std::string_view message, timestamp at, bool journal);

/// True when $JOURNAL_STREAM ("<dev>:<ino>", decimal) names the file open on fd.
bool is_journal_stream(int fd);

/// Writes one line per event to a stream (stderr in the daemon).
///
/// When the stream is the journal ($JOURNAL_STREAM matches the fd's device and inode)
/// each line starts with "<N>" so journald files it at the right priority; otherwise
/// it starts with an RFC 3339 UTC timestamp and the level name. Thread-safe: each line
/// goes out in one write. Passed by reference to whoever logs; there is no global one.
class logger {
 public:
  /// Logs to out at min and above; journal detection looks at out's descriptor.
  explicit logger(log_level min = log_level::info, std::FILE* out = stderr);

  /// Messages below this level are dropped.
  void set_level(log_level min) noexcept { min_ = min; }
  /// The least severe level that is still written.
  log_level level() const noexcept { return min_; }

  /// True when lines carry journald priority prefixes.
  bool journal() const noexcept { return journal_; }

  /// Type-erased sink: formats and writes one event with one fwrite and one fflush.
  /// Never throws: a message that fails to format is logged as its format string.
  void vlog(log_level l, fmt::string_view f, fmt::format_args args);

  /// Logs one event with a checked format string.
  template <class... T>
  void log(log_level l, fmt::format_string<T...> f, T&&... args) {
    if (l <= min_) vlog(l, f, fmt::make_format_args(args...));
  }

 private:
  log_level min_;         ///< Least severe level written.
  std::FILE* out_;        ///< Not owned; stays open for the logger's lifetime.
  bool journal_ = false;  ///< Decided once, at construction.
};

}  // namespace somrated
