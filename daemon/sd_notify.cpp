#include "somrated/sd_notify.hpp"

#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

#include <fmt/format.h>

namespace somrated {

namespace {

/// A non-negative decimal integer with nothing around it, or nullopt.
std::optional<std::uint64_t> parse_unsigned(std::string_view text) {
  std::uint64_t value = 0;
  if (text.empty()) return std::nullopt;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

/// True when pid is a decimal process id equal to self.
bool names_self(std::string_view pid, pid_t self) {
  const auto value = parse_unsigned(pid);
  return value && *value == static_cast<std::uint64_t>(self);
}

/// The value of an environment variable, copied, or nullopt when unset.
std::optional<std::string> env(const char* name) {
  const char* value = std::getenv(name);
  if (!value) return std::nullopt;
  return std::string(value);
}

/// The view of an optional string.
std::optional<std::string_view> view(const std::optional<std::string>& s) {
  if (!s) return std::nullopt;
  return std::string_view(*s);
}

}  // namespace

std::optional<notify_address> parse_notify_address(std::string_view text) {
  notify_address out;
  out.addr.sun_family = AF_UNIX;
  const bool abstract = !text.empty() && text.front() == '@';
  if (!abstract && (text.empty() || text.front() != '/')) return std::nullopt;
  // A path needs its terminating NUL inside sun_path; an abstract name does not have one.
  const std::size_t room = sizeof(out.addr.sun_path) - (abstract ? 0 : 1);
  if (text.size() < 2 || text.size() > room) return std::nullopt;
  if (!abstract && text.find('\0') != std::string_view::npos) return std::nullopt;
  std::memcpy(out.addr.sun_path, text.data(), text.size());
  if (abstract) out.addr.sun_path[0] = '\0';
  out.length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + text.size());
  return out;
}

int parse_listen_fds(std::optional<std::string_view> fds, std::optional<std::string_view> pid,
                     pid_t self) {
  if (!fds || !pid || !names_self(*pid, self)) return 0;
  const auto n = parse_unsigned(*fds);
  // More than a few thousand descriptors is not something a service manager passes.
  if (!n || *n > 4096) return 0;
  return static_cast<int>(*n);
}

std::optional<std::chrono::microseconds> parse_watchdog(std::optional<std::string_view> usec,
                                                        std::optional<std::string_view> pid,
                                                        pid_t self) {
  if (!usec) return std::nullopt;
  if (pid && !names_self(*pid, self)) return std::nullopt;
  const auto value = parse_unsigned(*usec);
  if (!value || *value == 0 ||
      *value > static_cast<std::uint64_t>(std::chrono::microseconds::max().count()))
    return std::nullopt;
  return std::chrono::microseconds(static_cast<std::int64_t>(*value));
}

std::chrono::milliseconds watchdog_ping_interval(std::chrono::microseconds timeout) {
  return std::max(std::chrono::milliseconds(1),
                  std::chrono::duration_cast<std::chrono::milliseconds>(timeout / 2));
}

std::chrono::microseconds monotonic_now() noexcept {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return std::chrono::seconds(ts.tv_sec) + std::chrono::duration_cast<std::chrono::microseconds>(
                                               std::chrono::nanoseconds(ts.tv_nsec));
}

std::string reloading_message(std::chrono::microseconds monotonic) {
  return fmt::format("RELOADING=1\nMONOTONIC_USEC={}", monotonic.count());
}

std::string status_message(std::string_view text) {
  std::string out = "STATUS=";
  out.reserve(out.size() + text.size());
  for (const char c : text) out += static_cast<unsigned char>(c) < 0x20 || c == 0x7f ? ' ' : c;
  return out;
}

std::string format_status(const std::vector<source_status>& sources, std::size_t firing,
                          std::string_view note) {
  std::string out(note);
  if (!out.empty()) out += "; ";
  if (sources.empty()) out += "no sources";
  for (std::size_t i = 0; i < sources.size(); ++i) {
    const source_status& s = sources[i];
    if (i > 0) out += ", ";
    if (!s.last_attempt) {
      out += fmt::format("{} not scraped yet", s.name);
    } else if (s.ok) {
      out += fmt::format("{} ok {}", s.name, format_rfc3339(*s.last_attempt));
    } else {
      out += fmt::format("{} failed {} ({} in a row)", s.name, format_rfc3339(*s.last_attempt),
                         s.consecutive_failures);
    }
  }
  out += fmt::format("; {} alert{} firing", firing, firing == 1 ? "" : "s");
  return out;
}

service_environment take_service_environment() {
  const pid_t self = ::getpid();
  service_environment out;
  out.notify_socket = env("NOTIFY_SOCKET");
  out.watchdog = parse_watchdog(view(env("WATCHDOG_USEC")), view(env("WATCHDOG_PID")), self);
  out.listen_fds = parse_listen_fds(view(env("LISTEN_FDS")), view(env("LISTEN_PID")), self);
  for (int fd = listen_fds_start; fd < listen_fds_start + out.listen_fds; ++fd) {
    const int flags = ::fcntl(fd, F_GETFD);
    if (flags >= 0) ::fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
  }
  for (const char* name : {"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS",
                           "LISTEN_PID", "LISTEN_FDNAMES"})
    ::unsetenv(name);
  return out;
}

sd_notifier::sd_notifier(std::string_view address) {
  const auto parsed = parse_notify_address(address);
  if (!parsed)
    throw std::invalid_argument(fmt::format(
        "NOTIFY_SOCKET \"{}\" is not an absolute path or an @abstract socket name", address));
  address_ = *parsed;
  fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd_ < 0)
    throw std::system_error(errno, std::system_category(), "cannot open a notification socket");
}

sd_notifier::~sd_notifier() {
  if (fd_ >= 0) ::close(fd_);
}

std::error_code sd_notifier::notify(std::string_view message) const noexcept {
  if (fd_ < 0) return {};
  for (;;) {
    const ssize_t sent =
        ::sendto(fd_, message.data(), message.size(), MSG_NOSIGNAL,
                 reinterpret_cast<const sockaddr*>(&address_.addr), address_.length);
    if (sent >= 0) return {};
    if (errno != EINTR) return {errno, std::system_category()};
  }
}

}  // namespace somrated
