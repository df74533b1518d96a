#pragma once

#include <cstdio>
#include <optional>
#include <string_view>

#include <fmt/core.h>

namespace somrated {

/// Severity, numbered as syslog/journald priorities.
enum class log_level { error = 3, warning = 4, notice = 5, info = 6, debug = 7 };

/// Parses "error", "warning", "notice", "info", "debug".
std::optional<log_level> parse_log_level(std::string_view s);

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
  log_level level() const noexcept { return min_; }

  /// True when lines carry journald priority prefixes.
  bool journal() const noexcept { return journal_; }

  /// Type-erased sink: formats and writes one line.
  void vlog(log_level l, fmt::string_view f, fmt::format_args args);

  /// Logs one event with a checked format string.
  template <class... T>
  void log(log_level l, fmt::format_string<T...> f, T&&... args) {
    if (l <= min_) vlog(l, f, fmt::make_format_args(args...));
  }

 private:
  log_level min_;
  std::FILE* out_;
  bool journal_ = false;
};

}  // namespace somrated
