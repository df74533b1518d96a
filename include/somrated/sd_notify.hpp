#pragma once

#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "somrated/time.hpp"

namespace somrated {

// The daemon's side of systemd's service protocol: readiness and status notifications
// (sd_notify(3)), the watchdog (sd_watchdog_enabled(3)) and socket activation
// (sd_listen_fds(3)), written out here rather than linked from libsystemd. Each is a
// few lines over environment variables and one AF_UNIX datagram socket, and systemd
// declares the protocol stable (https://systemd.io/PORTABILITY_AND_STABILITY/), so the
// library would add a dependency without removing any risk. See INTEGRATIONS.md §4.1-4.2.

/// Where $NOTIFY_SOCKET points, as a socket address of its exact length.
struct notify_address {
  sockaddr_un addr{};    ///< AF_UNIX; an abstract name starts with a NUL byte.
  socklen_t length = 0;  ///< offsetof(sun_path) plus the name's bytes, no padding.
};

/// Parses $NOTIFY_SOCKET: an absolute path ("/run/systemd/notify") or a Linux abstract
/// socket ("@name", the '@' becoming a NUL byte). The length counts the name only: for
/// an abstract name every byte up to the length is part of it, so sizeof(sockaddr_un)
/// would name a different socket. Nullopt for anything else (empty, relative, too long,
/// "vsock:CID:PORT", which this daemon does not speak).
std::optional<notify_address> parse_notify_address(std::string_view text);

/// The first descriptor systemd passes (SD_LISTEN_FDS_START).
inline constexpr int listen_fds_start = 3;

/// How many sockets $LISTEN_FDS passes to this process: the count when $LISTEN_PID is
/// self, 0 when either is missing, malformed or meant for another process.
int parse_listen_fds(std::optional<std::string_view> fds, std::optional<std::string_view> pid,
                     pid_t self);

/// The watchdog timeout systemd enforces on this process: $WATCHDOG_USEC when it is a
/// positive number of microseconds and $WATCHDOG_PID is unset or self; nullopt otherwise.
std::optional<std::chrono::microseconds> parse_watchdog(std::optional<std::string_view> usec,
                                                        std::optional<std::string_view> pid,
                                                        pid_t self);

/// How often to send WATCHDOG=1 for a timeout: every half of it, as sd_watchdog_enabled(3)
/// recommends, and never more often than every millisecond.
std::chrono::milliseconds watchdog_ping_interval(std::chrono::microseconds timeout);

/// CLOCK_MONOTONIC now, the clock MONOTONIC_USEC is read on.
std::chrono::microseconds monotonic_now() noexcept;

/// "RELOADING=1\nMONOTONIC_USEC=<µs>": the one datagram a reload starts with.
std::string reloading_message(std::chrono::microseconds monotonic);

/// "STATUS=<text>", with line breaks and other control characters turned into spaces:
/// a status is one line.
std::string status_message(std::string_view text);

/// One source's last scrape, for the status line.
struct source_status {
  std::string name;                       ///< The source's name.
  std::optional<timestamp> last_attempt;  ///< None: not scraped yet.
  bool ok = false;                        ///< The last attempt succeeded.
  int consecutive_failures = 0;           ///< Failures in a row, when it did not.
};

/// The one-line summary systemctl status shows: "24kg ok 2025-06-10T10:52:00Z, nbkr
/// failed 2025-06-10T10:50:00Z (3 in a row); 1 alert firing", prefixed by note (a failed
/// reload) when not empty.
std::string format_status(const std::vector<source_status>& sources, std::size_t firing,
                          std::string_view note);

/// What the service manager told this process through its environment.
struct service_environment {
  std::optional<std::string> notify_socket;           ///< $NOTIFY_SOCKET, if set.
  std::optional<std::chrono::microseconds> watchdog;  ///< The timeout, if it applies to us.
  int listen_fds = 0;  ///< Sockets passed from fd 3 on, for this process.
};

/// Reads $NOTIFY_SOCKET, $WATCHDOG_USEC/$WATCHDOG_PID and $LISTEN_FDS/$LISTEN_PID, marks
/// the passed sockets close-on-exec, and unsets all of them (and $LISTEN_FDNAMES) so that
/// the commands exec notifiers run neither inherit the sockets nor speak for the daemon.
/// Touches the process environment: call once, before any other thread starts.
service_environment take_service_environment();

/// Sends notifications to the service manager's socket.
///
/// One datagram per notify(), from a close-on-exec socket opened once; sending never
/// blocks (a full queue drops the message, as a busy manager would not read it in time
/// anyway). notify() may be called from any thread.
class sd_notifier {
 public:
  /// Notifies nobody: every notify() succeeds without sending.
  sd_notifier() = default;
  /// Sends to address, in $NOTIFY_SOCKET's syntax. Throws std::invalid_argument for an
  /// address parse_notify_address() rejects and std::system_error when no socket opens.
  explicit sd_notifier(std::string_view address);
  ~sd_notifier();
  sd_notifier(const sd_notifier&) = delete;
  sd_notifier& operator=(const sd_notifier&) = delete;

  /// True when there is a socket to send to.
  bool enabled() const noexcept { return fd_ >= 0; }

  /// Sends message ("KEY=VALUE" lines) as one datagram; the error when it could not be
  /// sent, none when it was or when notifications are disabled.
  std::error_code notify(std::string_view message) const noexcept;

 private:
  int fd_ = -1;               ///< Owned datagram socket; -1 when disabled.
  notify_address address_{};  ///< Where every datagram goes.
};

}  // namespace somrated
