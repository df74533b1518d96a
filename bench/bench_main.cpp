// somrated_bench: generates a store with years of 1-minute observations and measures,
// in one run, ingest rate, the API's latency over loopback and the daemon's idle RSS.
// It prints figures; it asserts nothing. Usage:
//   somrated_bench [--years N] [--daemon PATH] [--requests N] [--dir DIR]
#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <fmt/core.h>
#include <poll.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "somrated/decimal.hpp"
#include "somrated/store.hpp"
#include "somrated/time.hpp"

extern char** environ;

namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using clock_type = std::chrono::steady_clock;

/// A unix datagram socket standing in for systemd's notification socket.
class notify_socket {
 public:
  /// Binds path (replacing a stale file).
  explicit notify_socket(std::string path) : path_(std::move(path)) {
    std::filesystem::remove(path_);
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (fd_ < 0 || path_.size() >= sizeof addr.sun_path) throw std::runtime_error("notify socket");
    std::copy(path_.begin(), path_.end(), addr.sun_path);
    if (::bind(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0)
      throw std::runtime_error("cannot bind " + path_);
  }
  ~notify_socket() {
    if (fd_ >= 0) ::close(fd_);
    std::filesystem::remove(path_);
  }
  notify_socket(const notify_socket&) = delete;
  notify_socket& operator=(const notify_socket&) = delete;

  /// Waits up to timeout for a datagram with a READY=1 line; true when one came.
  bool wait_ready(std::chrono::milliseconds timeout) {
    const auto deadline = clock_type::now() + timeout;
    char buf[4096];
    while (clock_type::now() < deadline) {
      pollfd p{fd_, POLLIN, 0};
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock_type::now());
      if (::poll(&p, 1, static_cast<int>(std::max<long>(1, left.count()))) <= 0) continue;
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) continue;
      const std::string msg(buf, static_cast<std::size_t>(n));
      if (msg == "READY=1" || msg.starts_with("READY=1\n") ||
          msg.find("\nREADY=1") != std::string::npos)
        return true;
    }
    return false;
  }

  /// The socket's path, for NOTIFY_SOCKET.
  const std::string& path() const { return path_; }

 private:
  std::string path_;  ///< The bound path.
  int fd_ = -1;       ///< The socket.
};

/// Command-line settings.
struct options {
  int years = 5;
  int requests = 2000;
  std::string daemon = "build/somrated";
  std::string dir = "/tmp/somrated-bench";
  bool keep = false;
};

/// Milliseconds as a double, for printing.
double ms(clock_type::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

/// The p-th percentile of sorted samples.
double percentile(std::vector<double>& v, double p) {
  std::sort(v.begin(), v.end());
  return v[static_cast<std::size_t>(p * static_cast<double>(v.size() - 1))];
}

/// Resident memory of a process: "VmRSS KiB (anon A KiB, file F KiB)". File pages are
/// shared library code and mapped database pages, which the kernel can drop at will.
std::string rss(pid_t pid) {
  std::ifstream status(fmt::format("/proc/{}/status", pid));
  std::string line;
  long total = -1, anon = -1, file = -1;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) total = std::stol(line.substr(6));
    if (line.rfind("RssAnon:", 0) == 0) anon = std::stol(line.substr(8));
    if (line.rfind("RssFile:", 0) == 0) file = std::stol(line.substr(8));
  }
  return fmt::format("{:>8} KiB (anon {} KiB, file-backed {} KiB)", total, anon, file);
}

/// A 1-minute random walk per currency where every sample changes (the worst case).
void generate(const std::string& path, int years) {
  somrated::store db(path);
  const auto minutes = static_cast<std::int64_t>(years) * 365 * 24 * 60;
  const auto start = somrated::now() - std::chrono::minutes(minutes);
  std::mt19937 rng(42);
  struct series {
    const char* code;
    std::int64_t cents;
  };
  std::int64_t total = 0;
  const auto t0 = clock_type::now();
  for (series s : {series{"USD", 8745}, series{"EUR", 9956}, series{"RUB", 110}}) {
    std::vector<somrated::history_point> batch;
    batch.reserve(100000);
    for (std::int64_t i = 0; i < minutes; ++i) {
      // +-1 cent steps that never repeat the previous value and never reach zero.
      s.cents += (rng() & 1) ? 1 : -1;
      if (s.cents < 50) s.cents += 2;
      auto rate = somrated::decimal::parse(fmt::format("{}.{:02}", s.cents / 100, s.cents % 100));
      batch.push_back({start + std::chrono::minutes(i), *rate});
      if (batch.size() == batch.capacity() || i + 1 == minutes) {
        db.import_changes("24kg", s.code, batch);
        total += static_cast<std::int64_t>(batch.size());
        batch.clear();
      }
    }
  }
  const double secs = ms(clock_type::now() - t0) / 1000;
  fmt::print("{:<44} {:>14.0f} obs/s ({} change points in {:.1f} s)\n", "ingest, bulk import",
             total / secs, total, secs);

  // The live path: one record() per scrape, one transaction each (synchronous=FULL).
  const int live = 300;
  std::vector<somrated::rate_quote> quotes;
  const auto t1 = clock_type::now();
  for (int i = 0; i < live; ++i) {
    quotes = {{"USD", *somrated::decimal::parse(fmt::format("88.{:02}", i % 100))},
              {"EUR", *somrated::decimal::parse(fmt::format("99.{:02}", i % 100))},
              {"RUB", *somrated::decimal::parse(fmt::format("1.{:02}", i % 100))}};
    db.record("live", somrated::now(), quotes, std::nullopt, 0.25);
  }
  const double live_secs = ms(clock_type::now() - t1) / 1000;
  fmt::print("{:<44} {:>14.0f} obs/s ({} scrapes x 3 rates, fsync per scrape)\n",
             "ingest, record() per scrape", live * 3 / live_secs, live);
}

/// Sends GET target over one keep-alive connection `n` times; returns latencies in ms.
std::vector<double> measure(unsigned short port, const std::string& target, int n,
                            std::size_t& bytes) {
  net::io_context ioc;
  beast::tcp_stream stream(ioc);
  stream.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
  std::vector<double> out;
  out.reserve(static_cast<std::size_t>(n));
  beast::flat_buffer buffer;
  for (int i = 0; i < n; ++i) {
    http::request<http::empty_body> req{http::verb::get, target, 11};
    req.set(http::field::host, "127.0.0.1");
    const auto t0 = clock_type::now();
    http::write(stream, req);
    http::response<http::string_body> res;
    http::read(stream, buffer, res);
    out.push_back(ms(clock_type::now() - t0));
    if (res.result() != http::status::ok)
      throw std::runtime_error(fmt::format("{} -> {}: {}", target, res.result_int(), res.body()));
    bytes = res.body().size();
  }
  return out;
}

/// A free loopback port (the daemon binds it right after; fine for a benchmark).
unsigned short free_port() {
  net::io_context ioc;
  tcp::acceptor a(ioc, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0));
  return a.local_endpoint().port();
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    if (k == "--years")
      o.years = std::stoi(argv[i + 1]);
    else if (k == "--requests")
      o.requests = std::stoi(argv[i + 1]);
    else if (k == "--daemon")
      o.daemon = argv[i + 1];
    else if (k == "--dir")
      o.dir = argv[i + 1];
    else {
      fmt::print(stderr,
                 "usage: somrated_bench [--years N] [--requests N] [--daemon PATH] [--dir DIR]\n");
      return 2;
    }
  }
  std::filesystem::create_directories(o.dir);
  const std::string db = o.dir + "/bench.db";
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(db + suffix);

  fmt::print("somrated benchmark: {} years of 1-minute USD/EUR/RUB, every sample a change\n",
             o.years);
  generate(db, o.years);
  fmt::print("{:<44} {:>14.1f} MiB\n", "database size",
             static_cast<double>(std::filesystem::file_size(db)) / (1 << 20));

  const unsigned short port = free_port();
  const std::string listen = fmt::format("127.0.0.1:{}", port);
  std::vector<std::string> args = {
      o.daemon, "--db", db, "--listen", listen, "--config", o.dir + "/bench.toml"};
  {
    // Sources that never succeed quickly: the bench measures the API, not scraping.
    std::ofstream cfg(o.dir + "/bench.toml");
    cfg << "[log]\nlevel = \"error\"\n\n[[source]]\nname = \"24kg\"\nkind = \"24kg\"\nurl = "
           "\"file://"
        << o.dir << "/missing.html\"\ninterval = \"1h\"\n";
  }
  std::vector<char*> cargs;
  for (auto& a : args) cargs.push_back(a.data());
  cargs.push_back(nullptr);
  // The daemon tells a notification socket when it is ready, as it tells systemd.
  notify_socket ready(o.dir + "/notify.sock");
  std::string notify_env = "NOTIFY_SOCKET=" + ready.path();
  std::vector<char*> env;
  for (char** e = environ; *e; ++e) {
    if (!std::string_view(*e).starts_with("NOTIFY_SOCKET=")) env.push_back(*e);
  }
  env.push_back(notify_env.data());
  env.push_back(nullptr);
  pid_t pid = 0;
  const auto spawned = clock_type::now();
  if (posix_spawn(&pid, o.daemon.c_str(), nullptr, nullptr, cargs.data(), env.data()) != 0) {
    fmt::print(stderr, "cannot start {}\n", o.daemon);
    return 1;
  }
  if (ready.wait_ready(std::chrono::seconds(60))) {
    fmt::print("{:<44} {:>14.1f} ms (with the {}-year store)\n", "startup to READY=1",
               ms(clock_type::now() - spawned), o.years);
  } else {
    fmt::print("{:<44} no READY=1 within 60 s\n", "startup to READY=1");
  }
  // Wait until it answers.
  const auto deadline = clock_type::now() + std::chrono::seconds(30);
  while (true) {
    try {
      std::size_t b = 0;
      measure(port, "/healthz", 1, b);
      break;
    } catch (const std::exception&) {
      if (clock_type::now() > deadline) {
        kill(pid, SIGKILL);
        fmt::print(stderr, "daemon did not come up\n");
        return 1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  fmt::print("{:<44} {}\n", "daemon RSS after start (idle)", rss(pid));

  const std::string from = somrated::format_rfc3339(somrated::now() - std::chrono::hours(24 * 365));
  struct query {
    const char* name;
    std::string target;
  };
  const std::vector<query> queries = {
      {"GET /api/v1/latest", "/api/v1/latest"},
      {"GET /api/v1/history 1y step=9h (974 pts)",
       "/api/v1/history?currency=USD&from=" + from + "&step=9h"},
      {"GET /api/v1/history 1y step=1d ohlc (366 pts)",
       "/api/v1/history?currency=USD&from=" + from + "&step=1d&agg=ohlc"},
  };
  int status = 0;
  for (const auto& q : queries) {
    try {
      std::size_t bytes = 0;
      const int n =
          q.target.find("ohlc") != std::string::npos ? std::max(20, o.requests / 20) : o.requests;
      measure(port, q.target, 5, bytes);  // warm-up
      auto lat = measure(port, q.target, n, bytes);
      const double mean =
          std::accumulate(lat.begin(), lat.end(), 0.0) / static_cast<double>(lat.size());
      fmt::print("{:<44} median {:7.3f} ms  p99 {:7.3f} ms  mean {:7.3f} ms  ({} B, n={})\n",
                 q.name, percentile(lat, 0.5), percentile(lat, 0.99), mean, bytes, n);
    } catch (const std::exception& e) {
      fmt::print("{:<44} failed: {}\n", q.name, e.what());
      status = 1;
    }
  }
  fmt::print("{:<44} {}\n", "daemon RSS after the queries", rss(pid));
  kill(pid, SIGTERM);
  int ws = 0;
  waitpid(pid, &ws, 0);
  return status;
}
