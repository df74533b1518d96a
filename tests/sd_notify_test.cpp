#include "somrated/sd_notify.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "somrated/app.hpp"
#include "somrated/config.hpp"

using namespace std::chrono_literals;
using somrated::notify_address;
using somrated::parse_listen_fds;
using somrated::parse_notify_address;
using somrated::parse_watchdog;
using somrated::sd_notifier;

namespace {

/// Sets or unsets an environment variable for one scope, then puts the old value back.
class env_guard {
 public:
  /// Sets name to value, or unsets it when value is nullopt.
  env_guard(const char* name, std::optional<std::string> value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value) {
      ::setenv(name, value->c_str(), 1);
    } else {
      ::unsetenv(name);
    }
  }
  env_guard(const env_guard&) = delete;
  env_guard& operator=(const env_guard&) = delete;
  /// Restores the value seen at construction.
  ~env_guard() {
    if (old_) {
      ::setenv(name_, old_->c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }

 private:
  const char* name_;                ///< Variable name (a literal).
  std::optional<std::string> old_;  ///< Value before, if set.
};

/// A datagram socket bound the way a service manager binds its notification socket.
class notify_listener {
 public:
  /// Binds address ($NOTIFY_SOCKET syntax); a path is removed again on destruction.
  explicit notify_listener(const std::string& address) : address_(address) {
    const auto parsed = parse_notify_address(address);
    REQUIRE(parsed);
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd_ >= 0);
    REQUIRE(::bind(fd_, reinterpret_cast<const sockaddr*>(&parsed->addr), parsed->length) == 0);
  }
  ~notify_listener() {
    ::close(fd_);
    if (address_.front() == '/') ::unlink(address_.c_str());
  }
  notify_listener(const notify_listener&) = delete;
  notify_listener& operator=(const notify_listener&) = delete;

  /// The next datagram, or nullopt when none arrives within 10 s (a generous bound for
  /// a failure, not a measurement: a passing test never waits).
  std::optional<std::string> receive() const {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, 10000) != 1) return std::nullopt;
    std::string buf(4096, '\0');
    const ssize_t n = ::recv(fd_, buf.data(), buf.size(), 0);
    if (n < 0) return std::nullopt;
    buf.resize(static_cast<std::size_t>(n));
    return buf;
  }

  /// True when a datagram is waiting right now.
  bool pending() const {
    pollfd p{fd_, POLLIN, 0};
    return ::poll(&p, 1, 0) == 1;
  }

 private:
  std::string address_;  ///< As given.
  int fd_ = -1;          ///< The bound socket.
};

/// A name no other test run uses at the same time.
std::string unique_name(const char* prefix) {
  std::random_device rd;
  return std::string(prefix) + std::to_string(::getpid()) + "-" + std::to_string(rd());
}

}  // namespace

TEST_CASE("parse_notify_address: paths and abstract names with their exact length") {
  SUBCASE("a path is copied with room for its NUL, length without padding") {
    const auto a = parse_notify_address("/run/systemd/notify");
    REQUIRE(a);
    CHECK(a->addr.sun_family == AF_UNIX);
    CHECK(std::string(a->addr.sun_path) == "/run/systemd/notify");
    CHECK(a->length == offsetof(sockaddr_un, sun_path) + 19);
  }
  SUBCASE("@name becomes a leading NUL and the length counts the name only") {
    const auto a = parse_notify_address("@fxtest-abs");
    REQUIRE(a);
    CHECK(a->addr.sun_path[0] == '\0');
    CHECK(std::string(a->addr.sun_path + 1, 10) == "fxtest-abs");
    CHECK(a->length == offsetof(sockaddr_un, sun_path) + 11);
    CHECK(a->length < sizeof(sockaddr_un));
  }
  SUBCASE("the longest names that fit") {
    const std::size_t room = sizeof(sockaddr_un{}.sun_path);
    CHECK(parse_notify_address("/" + std::string(room - 2, 'p')));
    CHECK_FALSE(parse_notify_address("/" + std::string(room - 1, 'p')));
    CHECK(parse_notify_address("@" + std::string(room - 1, 'a')));
    CHECK_FALSE(parse_notify_address("@" + std::string(room, 'a')));
  }
  SUBCASE("anything else is refused") {
    for (const char* bad : {"", "@", "/", "relative/notify", "vsock:2:1234", "notify"})
      CHECK_MESSAGE(!parse_notify_address(bad), bad);
  }
}

TEST_CASE("notification messages") {
  CHECK(somrated::reloading_message(123456789us) == "RELOADING=1\nMONOTONIC_USEC=123456789");
  CHECK(somrated::status_message("all good") == "STATUS=all good");
  CHECK(somrated::status_message("two\nlines\r\tand a tab") == "STATUS=two lines  and a tab");
  CHECK(somrated::status_message("") == "STATUS=");
  // UTF-8 passes through untouched.
  CHECK(somrated::status_message("курс сом") == "STATUS=курс сом");
}

TEST_CASE("monotonic_now reads CLOCK_MONOTONIC") {
  timespec ts{};
  REQUIRE(::clock_gettime(CLOCK_MONOTONIC, &ts) == 0);
  const auto before = std::chrono::seconds(ts.tv_sec);
  const auto now = somrated::monotonic_now();
  CHECK(now >= before);
  REQUIRE(::clock_gettime(CLOCK_MONOTONIC, &ts) == 0);
  CHECK(now <= std::chrono::seconds(ts.tv_sec + 1));
}

TEST_CASE("format_status") {
  using somrated::format_status;
  using somrated::source_status;
  const somrated::timestamp t{1749552720000ms};  // 2025-06-10T10:52:00Z
  std::vector<source_status> sources{
      {"24kg", t, true, 0}, {"nbkr", t - 2min, false, 3}, {"spare", std::nullopt, false, 0}};
  CHECK(format_status(sources, 0, "") ==
        "24kg ok 2025-06-10T10:52:00Z, nbkr failed 2025-06-10T10:50:00Z (3 in a row), spare not "
        "scraped yet; 0 alerts firing");
  CHECK(format_status({sources[0]}, 1, "") == "24kg ok 2025-06-10T10:52:00Z; 1 alert firing");
  CHECK(format_status({}, 2, "reload failed") == "reload failed; no sources; 2 alerts firing");
}

TEST_CASE("parse_watchdog honours WATCHDOG_PID") {
  const pid_t self = 4242;
  CHECK(parse_watchdog("1000000", std::nullopt, self) == std::chrono::microseconds(1000000));
  CHECK(parse_watchdog("30000000", "4242", self) == 30s);
  CHECK_FALSE(parse_watchdog("30000000", "4243", self));  // meant for another process
  CHECK_FALSE(parse_watchdog("30000000", "", self));
  CHECK_FALSE(parse_watchdog("30000000", "42x", self));
  CHECK_FALSE(parse_watchdog(std::nullopt, "4242", self));
  for (const char* bad : {"", "0", "-5", "1e6", " 1000", "1000 ", "99999999999999999999999"})
    CHECK_MESSAGE(!parse_watchdog(bad, std::nullopt, self), bad);
}

TEST_CASE("watchdog_ping_interval is half the timeout") {
  using somrated::watchdog_ping_interval;
  CHECK(watchdog_ping_interval(1s) == 500ms);
  CHECK(watchdog_ping_interval(30s) == 15s);
  CHECK(watchdog_ping_interval(std::chrono::microseconds(1500)) == 1ms);
  CHECK(watchdog_ping_interval(std::chrono::microseconds(1)) == 1ms);
}

TEST_CASE("parse_listen_fds needs LISTEN_PID to be this process") {
  const pid_t self = 777;
  CHECK(parse_listen_fds("1", "777", self) == 1);
  CHECK(parse_listen_fds("2", "777", self) == 2);
  CHECK(parse_listen_fds("1", "778", self) == 0);
  CHECK(parse_listen_fds("1", std::nullopt, self) == 0);
  CHECK(parse_listen_fds(std::nullopt, "777", self) == 0);
  CHECK(parse_listen_fds("x", "777", self) == 0);
  CHECK(parse_listen_fds("-1", "777", self) == 0);
  CHECK(parse_listen_fds("0", "777", self) == 0);
}

TEST_CASE("take_service_environment reads, marks close-on-exec and unsets") {
  const std::string pid = std::to_string(::getpid());
  SUBCASE("everything for this process") {
    // A socket standing in at fd 3, inheritable, as systemd passes it.
    const int saved = ::fcntl(3, F_DUPFD_CLOEXEC, 10);  // -1 when fd 3 was not open
    const int sock = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(sock >= 0);
    if (sock != 3) {  // the lowest free descriptor is 3 when fd 3 was not open
      REQUIRE(::dup2(sock, 3) == 3);
      ::close(sock);
    }
    REQUIRE((::fcntl(3, F_GETFD) & FD_CLOEXEC) == 0);
    {
      env_guard n("NOTIFY_SOCKET", "@somrated-test");
      env_guard u("WATCHDOG_USEC", "2000000");
      env_guard w("WATCHDOG_PID", pid);
      env_guard f("LISTEN_FDS", "1");
      env_guard p("LISTEN_PID", pid);
      env_guard names("LISTEN_FDNAMES", "http");
      const auto env = somrated::take_service_environment();
      CHECK(env.notify_socket == "@somrated-test");
      CHECK(env.watchdog == 2s);
      CHECK(env.listen_fds == 1);
      CHECK((::fcntl(3, F_GETFD) & FD_CLOEXEC) != 0);
      for (const char* name : {"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS",
                               "LISTEN_PID", "LISTEN_FDNAMES"})
        CHECK_MESSAGE(std::getenv(name) == nullptr, name);
    }
    if (saved >= 0) {
      ::dup2(saved, 3);
      ::close(saved);
    } else {
      ::close(3);
    }
  }
  SUBCASE("variables meant for another process are ignored, and still removed") {
    env_guard n("NOTIFY_SOCKET", std::nullopt);
    env_guard u("WATCHDOG_USEC", "2000000");
    env_guard w("WATCHDOG_PID", "1");
    env_guard f("LISTEN_FDS", "1");
    env_guard p("LISTEN_PID", "1");
    const auto env = somrated::take_service_environment();
    CHECK_FALSE(env.notify_socket);
    CHECK_FALSE(env.watchdog);
    CHECK(env.listen_fds == 0);
    CHECK(std::getenv("LISTEN_FDS") == nullptr);
    CHECK(std::getenv("WATCHDOG_USEC") == nullptr);
  }
}

TEST_CASE("sd_notifier sends one datagram per message") {
  SUBCASE("to an abstract socket") {
    const std::string address = "@" + unique_name("somrated-test-");
    notify_listener manager(address);
    sd_notifier n(address);
    CHECK(n.enabled());
    CHECK_FALSE(n.notify("READY=1\nSTATUS=Serving 42 pairs"));
    CHECK_FALSE(n.notify(somrated::reloading_message(367857771us)));
    CHECK(manager.receive() == "READY=1\nSTATUS=Serving 42 pairs");
    CHECK(manager.receive() == "RELOADING=1\nMONOTONIC_USEC=367857771");
  }
  SUBCASE("to a path") {
    const auto path = std::filesystem::temp_directory_path() / unique_name("somrated-notify-");
    notify_listener manager(path.string());
    sd_notifier n(path.string());
    CHECK_FALSE(n.notify("WATCHDOG=1"));
    CHECK_FALSE(n.notify("STOPPING=1"));
    CHECK(manager.receive() == "WATCHDOG=1");
    CHECK(manager.receive() == "STOPPING=1");
    CHECK_FALSE(manager.pending());
  }
  SUBCASE("an abstract name padded to sizeof(sockaddr_un) is another socket") {
    // What the old example got wrong: binding with the full size makes the trailing NULs
    // part of the name, and our exact-length address does not reach it.
    const std::string name = unique_name("somrated-pad-");
    const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    sockaddr_un padded{};
    padded.sun_family = AF_UNIX;
    std::copy(name.begin(), name.end(), padded.sun_path + 1);
    REQUIRE(::bind(fd, reinterpret_cast<const sockaddr*>(&padded), sizeof padded) == 0);
    sd_notifier n("@" + name);
    CHECK(n.notify("READY=1"));
    ::close(fd);
  }
  SUBCASE("nobody listening is an error, not a crash") {
    sd_notifier n("@" + unique_name("somrated-nobody-"));
    CHECK(n.notify("READY=1"));
  }
  SUBCASE("without a socket nothing is sent and nothing fails") {
    const sd_notifier n;
    CHECK_FALSE(n.enabled());
    CHECK_FALSE(n.notify("READY=1"));
  }
  SUBCASE("an unusable address is refused up front") {
    CHECK_THROWS_AS(sd_notifier("vsock:2:1234"), std::invalid_argument);
    CHECK_THROWS_AS(sd_notifier("relative"), std::invalid_argument);
  }
}

TEST_CASE("plan_reload keeps what needs a restart") {
  const somrated::config running = somrated::default_config();
  SUBCASE("an identical config changes nothing") {
    const auto plan = somrated::plan_reload(running, running);
    CHECK(plan.next == running);
    CHECK(plan.needs_restart.empty());
  }
  SUBCASE("listen, database, max_connections and log level keep their running values") {
    somrated::config next = running;
    next.server.listen = "127.0.0.1:9999";
    next.server.max_connections = 7;
    next.storage.path = "/elsewhere.db";
    next.log_level = "debug";
    next.server.token = "new-token";
    next.storage.max_size = std::uint64_t{64} << 20;
    next.storage.keep_scrape_log = std::chrono::hours(24);
    next.sources.pop_back();
    const auto plan = somrated::plan_reload(running, next);
    CHECK(plan.next.server.listen == running.server.listen);
    CHECK(plan.next.server.max_connections == running.server.max_connections);
    CHECK(plan.next.storage.path == running.storage.path);
    CHECK(plan.next.log_level == running.log_level);
    // What may change live does.
    CHECK(plan.next.server.token == "new-token");
    CHECK(plan.next.storage.max_size == std::uint64_t{64} << 20);
    CHECK(plan.next.storage.keep_scrape_log == std::chrono::hours(24));
    CHECK(plan.next.sources == next.sources);
    CHECK(plan.needs_restart ==
          std::vector<std::string>{"[server] listen: 127.0.0.1:8080 -> 127.0.0.1:9999",
                                   "[server] max_connections: 1024 -> 7",
                                   "[storage] path: ./somrated.db -> /elsewhere.db",
                                   "[log] level: info -> debug"});
  }
  SUBCASE("the [server] deadlines keep their running values") {
    somrated::config next = running;
    next.server.read_timeout = 2s;
    next.server.idle_timeout = 5min;
    next.server.write_timeout = 1500ms;
    const auto plan = somrated::plan_reload(running, next);
    CHECK(plan.next == running);
    CHECK(plan.needs_restart == std::vector<std::string>{"[server] read_timeout: 15s -> 2s",
                                                         "[server] idle_timeout: 1m -> 5m",
                                                         "[server] write_timeout: 15s -> 1500ms"});
  }
}
