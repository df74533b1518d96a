#include "somrated/log.hpp"

#include <sys/stat.h>

#include <charconv>
#include <cstdint>
#include <cstdlib>
#include <exception>

#include <fmt/format.h>

namespace somrated {

namespace {

/// Parses a whole string as a decimal unsigned integer.
std::optional<std::uintmax_t> parse_unsigned(std::string_view s) {
  std::uintmax_t v = 0;
  const auto* end = s.data() + s.size();
  const auto [ptr, ec] = std::from_chars(s.data(), end, v);
  if (s.empty() || ec != std::errc{} || ptr != end) return std::nullopt;
  return v;
}

/// "2025-06-10T10:52:00.123Z": the plain-mode timestamp, millisecond precision.
std::string format_log_time(timestamp at) {
  std::string s = format_rfc3339(at);
  s.pop_back();  // 'Z'
  const auto ms = (at - std::chrono::floor<std::chrono::seconds>(at)).count();
  fmt::format_to(std::back_inserter(s), ".{:03}Z", ms);
  return s;
}

}  // namespace

std::optional<log_level> parse_log_level(std::string_view s) {
  if (s == "error" || s == "err") return log_level::error;
  if (s == "warning" || s == "warn") return log_level::warning;
  if (s == "notice") return log_level::notice;
  if (s == "info") return log_level::info;
  if (s == "debug") return log_level::debug;
  return std::nullopt;
}

std::string_view to_string(log_level l) noexcept {
  switch (l) {
    case log_level::error:
      return "error";
    case log_level::warning:
      return "warning";
    case log_level::notice:
      return "notice";
    case log_level::info:
      return "info";
    case log_level::debug:
      return "debug";
  }
  return "unknown";
}

std::string format_log_line(log_level l, std::string_view message, timestamp at, bool journal) {
  while (!message.empty() && (message.back() == '\n' || message.back() == '\r')) {
    message.remove_suffix(1);
  }
  std::string out;
  out.reserve(message.size() + 40);
  const auto prefix = fmt::format("<{}>", static_cast<int>(l));
  if (journal) {
    out += prefix;
  } else {
    out += format_log_time(at);
    out += ' ';
    out += to_string(l);
    out += ": ";
  }
  std::size_t start = 0;
  while (true) {
    const auto nl = message.find('\n', start);
    auto line = message.substr(start, nl == std::string_view::npos ? nl : nl - start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    out += line;
    if (nl == std::string_view::npos) break;
    out += journal ? "\n" + prefix : std::string(" | ");
    start = nl + 1;
  }
  out += '\n';
  return out;
}

bool is_journal_stream(int fd) {
  const char* env = std::getenv("JOURNAL_STREAM");
  if (env == nullptr || fd < 0) return false;
  const std::string_view value{env};
  const auto colon = value.find(':');
  if (colon == std::string_view::npos) return false;
  const auto dev = parse_unsigned(value.substr(0, colon));
  const auto ino = parse_unsigned(value.substr(colon + 1));
  struct stat st {};
  if (!dev || !ino || ::fstat(fd, &st) != 0) return false;
  return static_cast<std::uintmax_t>(st.st_dev) == *dev &&
         static_cast<std::uintmax_t>(st.st_ino) == *ino;
}

logger::logger(log_level min, std::FILE* out)
    : min_(min), out_(out), journal_(out != nullptr && is_journal_stream(::fileno(out))) {}

void logger::vlog(log_level l, fmt::string_view f, fmt::format_args args) {
  if (l > min_ || out_ == nullptr) return;
  try {
    std::string line;
    try {
      line = format_log_line(l, fmt::vformat(f, args), now(), journal_);
    } catch (const fmt::format_error& e) {
      line = format_log_line(
          l, fmt::format("{} (format error: {})", std::string_view(f.data(), f.size()), e.what()),
          now(), journal_);
    }
    std::fwrite(line.data(), 1, line.size(), out_);
    std::fflush(out_);
  } catch (const std::exception&) {
    // Out of memory while logging: dropping the event is all that is left to do.
  }
}

}  // namespace somrated
