#include "somrated/dispatcher.hpp"

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>
#include <fmt/core.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

#include "somrated/alert_engine.hpp"
#include "somrated/db_worker.hpp"
#include "somrated/log.hpp"
#include "somrated/store.hpp"

using namespace somrated;
using namespace std::chrono_literals;
namespace net = boost::asio;
namespace beast = boost::beast;
using tcp = net::ip::tcp;

namespace {

/// One request the receiver got.
struct received {
  std::string target;
  std::string event_id;
  std::string body;
};

/// A blocking HTTP receiver on 127.0.0.1 that answers each request with the next
/// scripted status (200 once the script runs out) and records what it got.
class receiver {
 public:
  explicit receiver(std::deque<int> script) : script_(std::move(script)) {
    acceptor_.open(tcp::v4());
    acceptor_.set_option(tcp::acceptor::reuse_address(true));
    acceptor_.bind({net::ip::make_address("127.0.0.1"), 0});
    acceptor_.listen();
    port_ = acceptor_.local_endpoint().port();
    thread_ = std::thread([this] { serve(); });
  }
  ~receiver() {
    stop_ = true;
    // Wake the blocking accept with a connection of our own.
    boost::system::error_code ec;
    tcp::socket s(ioc_);
    s.connect({net::ip::make_address("127.0.0.1"), port_}, ec);
    thread_.join();
  }

  /// The URL of path on this receiver.
  std::string url(std::string_view path) const {
    return fmt::format("http://127.0.0.1:{}{}", port_, path);
  }

  /// What arrived so far.
  std::vector<received> got() const {
    std::lock_guard lock(mutex_);
    return got_;
  }

 private:
  void serve() {
    while (!stop_) {
      tcp::socket s(ioc_);
      boost::system::error_code ec;
      acceptor_.accept(s, ec);
      if (ec || stop_) return;
      beast::flat_buffer buf;
      beast::http::request<beast::http::string_body> req;
      beast::http::read(s, buf, req, ec);
      if (ec) continue;
      int status = 200;
      {
        std::lock_guard lock(mutex_);
        got_.push_back(
            {std::string(req.target()), std::string(req["X-Somrated-Event-Id"]), req.body()});
        if (!script_.empty()) {
          status = script_.front();
          script_.pop_front();
        }
      }
      beast::http::response<beast::http::string_body> res(static_cast<beast::http::status>(status),
                                                          11);
      res.body() = status == 200 ? "ok" : "no thanks";
      res.keep_alive(false);
      res.prepare_payload();
      beast::http::write(s, res, ec);
    }
  }

  net::io_context ioc_;
  tcp::acceptor acceptor_{ioc_};
  unsigned short port_ = 0;
  mutable std::mutex mutex_;
  std::deque<int> script_;
  std::vector<received> got_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

/// A database path in the temp directory, removed (with -wal and -shm) at scope end.
struct temp_path {
  std::string path;
  temp_path() {
    std::random_device rd;
    path = (std::filesystem::temp_directory_path() /
            fmt::format("somrated-dispatcher-test-{}-{:08x}.db", ::getpid(), rd()))
               .string();
  }
  ~temp_path() {
    for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path + suffix);
  }
};

/// A config with notifiers "hook" (-> /hook) and "other" (-> /other) on r, and one rule
/// "usd-high" notifying both.
std::shared_ptr<const config> two_notifiers(const receiver& r, std::chrono::milliseconds give_up) {
  config c = default_config();
  for (const char* name : {"hook", "other"}) {
    notifier_config n;
    n.name = name;
    n.kind = notifier_kind::webhook;
    n.url = r.url(fmt::format("/{}", name));
    n.timeout = 5s;
    n.give_up = give_up;
    c.notifiers.push_back(n);
  }
  alert_rule rule;
  rule.name = "usd-high";
  rule.currency = "USD";
  rule.source = "24kg";
  rule.notify = {"hook", "other"};
  rule.threshold = decimal::parse("90");
  c.alerts.push_back(rule);
  return std::make_shared<const config>(std::move(c));
}

/// The running pieces: a writer, an engine and a dispatcher on one io_context.
struct harness {
  std::FILE* sink = std::fopen("/dev/null", "w");
  logger log{log_level::error, sink};
  temp_path tmp;
  std::shared_ptr<const config> cfg;
  net::io_context ioc;
  alert_engine engine{cfg, log};
  db_worker writer{tmp.path, store::mode::read_write, log};
  dispatcher d{ioc, cfg, writer, engine, log};

  explicit harness(std::shared_ptr<const config> c) : cfg(std::move(c)) {}
  ~harness() {
    d.stop();
    writer.stop();
    std::fclose(sink);
  }

  /// Queues n test events through the writer, one after the other.
  void queue_tests(int n) {
    for (int i = 0; i < n; ++i)
      writer.post([this](store& db) { engine.test(db, "usd-high", now()); });
  }

  /// Runs the loop until pred() holds or 10 s pass; returns pred().
  template <class Pred>
  bool run_until(Pred pred) {
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!pred() && std::chrono::steady_clock::now() < deadline) {
      ioc.restart();
      ioc.run_for(20ms);
    }
    return pred();
  }

  /// Every event with its deliveries, read through a separate read-only connection.
  std::vector<event_record> events() {
    store db(tmp.path, store::mode::read_only);
    return db.alert_events(std::nullopt, "", 100);
  }

  /// True when no delivery is pending.
  bool settled() {
    for (const auto& e : events())
      for (const auto& [d, attempts] : e.deliveries)
        if (d.status == delivery_status::pending) return false;
    return true;
  }
};

}  // namespace

TEST_CASE("dispatcher: backoff doubles from 5 s, jitters, honours Retry-After, caps at 10 min") {
  CHECK(delivery_backoff(1, 1.0, std::nullopt) == 5s);
  CHECK(delivery_backoff(2, 1.0, std::nullopt) == 10s);
  CHECK(delivery_backoff(4, 1.0, std::nullopt) == 40s);
  CHECK(delivery_backoff(1, 0.8, std::nullopt) == 4s);
  CHECK(delivery_backoff(1, 1.2, std::nullopt) == 6s);
  CHECK(delivery_backoff(30, 1.0, std::nullopt) == 10min);
  CHECK(delivery_backoff(30, 1.2, std::nullopt) == 10min);
  CHECK(delivery_backoff(1, 1.0, 2min) == 2min);
  CHECK(delivery_backoff(3, 1.0, 1s) == 20s);  // a shorter Retry-After does not hurry us
  CHECK(delivery_backoff(1, 1.0, 24h) == 10min);
}

TEST_CASE("dispatcher: delivers each notifier's events in order with their ids") {
  receiver r({});
  harness h(two_notifiers(r, 24h));
  h.queue_tests(3);
  h.d.start();
  REQUIRE(h.run_until([&] { return r.got().size() == 6 && h.settled(); }));

  const auto events = h.events();
  REQUIRE(events.size() == 3);
  for (const char* path : {"/hook", "/other"}) {
    std::vector<std::string> ids;
    for (const received& x : r.got())
      if (x.target == path) ids.push_back(x.event_id);
    REQUIRE(ids.size() == 3);
    for (std::size_t i = 0; i < 3; ++i) CHECK(ids[i] == events[i].event.event_id);
  }
  for (const auto& e : events) {
    REQUIRE(e.deliveries.size() == 2);
    for (const auto& [d, attempts] : e.deliveries) {
      CHECK(d.status == delivery_status::delivered);
      REQUIRE(attempts.size() == 1);
      CHECK(attempts[0].outcome == "delivered");
      CHECK(attempts[0].http_status == 200);
    }
  }
  // The body carries the same id as the header.
  CHECK(r.got()[0].body.find(r.got()[0].event_id) != std::string::npos);
}

TEST_CASE("dispatcher: a 4xx is final and reported; the queue moves on") {
  receiver r({400});
  harness h(two_notifiers(r, 24h));
  h.queue_tests(2);
  h.d.start();
  REQUIRE(h.run_until([&] { return r.got().size() == 4 && h.settled(); }));
  const auto events = h.events();
  REQUIRE(events.size() == 2);
  int failed = 0;
  for (const auto& e : events) {
    for (const auto& [d, attempts] : e.deliveries) {
      if (d.status != delivery_status::failed) continue;
      ++failed;
      CHECK(d.last_error.find("400") != std::string::npos);
      REQUIRE(attempts.size() == 1);
      CHECK(attempts[0].http_status == 400);
      CHECK(attempts[0].outcome == "failed");
    }
  }
  CHECK(failed == 1);
}

TEST_CASE("dispatcher: a failing delivery past give_up is marked failed, never dropped") {
  // An attempt in the same millisecond as the event is still inside give_up, so each
  // notifier may get a second (last) attempt at the deadline.
  receiver r({503, 503, 503, 503});
  harness h(two_notifiers(r, 1ms));
  h.queue_tests(1);
  h.d.start();
  REQUIRE(h.run_until([&] { return r.got().size() >= 2 && h.settled(); }));
  const auto events = h.events();
  REQUIRE(events.size() == 1);
  for (const auto& [d, attempts] : events[0].deliveries) {
    CHECK(d.status == delivery_status::failed);
    CHECK(d.last_error.find("gave up") != std::string::npos);
    CHECK(d.last_error.find("503") != std::string::npos);
    REQUIRE((attempts.size() == 1 || attempts.size() == 2));
    CHECK(attempts.back().http_status == 503);
    CHECK(attempts.back().outcome == "failed");
  }
}

TEST_CASE("dispatcher: a retry that comes due while the poll's answer waits is still sent") {
  // The poll reads the outbox on the writer thread and the loop acts on the answer later;
  // a head not yet due when read but due when acted on must still get a timer.
  receiver r({});
  harness h(two_notifiers(r, 24h));
  const timestamp retry_at = now() + 300ms;
  h.writer.post([&](store& db) {
    h.engine.test(db, "usd-high", now());
    for (const auto& [d, e] : db.due_deliveries(now())) {
      delivery_attempt a;
      a.at = now();
      a.outcome = "retry";
      a.error = "HTTP 503 Service Unavailable";
      db.record_attempt(d.id, a, delivery_status::pending, retry_at);
    }
  });
  h.d.start();
  // The poll has answered (the writer runs jobs in order) before the loop runs ...
  std::promise<void> polled;
  h.writer.post([&](store&) { polled.set_value(); });
  REQUIRE(polled.get_future().wait_for(10s) == std::future_status::ready);
  CHECK(r.got().empty());
  // ... and the loop acts on the answer only once the retry has come due.
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (now() <= retry_at && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(5ms);
  REQUIRE(h.run_until([&] { return r.got().size() == 2 && h.settled(); }));
}

TEST_CASE("dispatcher: destroying it runs no exec command that had not started") {
  std::FILE* sink = std::fopen("/dev/null", "w");
  logger log{log_level::error, sink};
  temp_path tmp;
  const std::filesystem::path dir = tmp.path + "-exec";
  std::filesystem::create_directory(dir);
  const std::string runs = (dir / "runs").string();
  const std::string go = (dir / "go").string();

  // Two exec notifiers whose commands note that they ran, then wait for "go".
  config c = default_config();
  for (const char* name : {"a", "b"}) {
    notifier_config n;
    n.name = name;
    n.kind = notifier_kind::exec;
    n.command = {
        "/bin/sh", "-c",
        fmt::format("echo {} >> '{}'; while [ ! -e '{}' ]; do sleep 0.01; done", name, runs, go)};
    n.timeout = 20s;
    c.notifiers.push_back(n);
  }
  alert_rule rule;
  rule.name = "usd-high";
  rule.currency = "USD";
  rule.source = "24kg";
  rule.notify = {"a", "b"};
  rule.threshold = decimal::parse("90");
  c.alerts.push_back(rule);
  auto cfg = std::make_shared<const config>(std::move(c));

  const auto lines = [&] {
    std::ifstream in(runs);
    std::vector<std::string> out;
    for (std::string line; std::getline(in, line);) out.push_back(line);
    return out;
  };

  net::io_context ioc;
  alert_engine engine{cfg, log};
  db_worker writer{tmp.path, store::mode::read_write, log};
  std::optional<dispatcher> d;
  d.emplace(ioc, cfg, writer, engine, log);
  writer.post([&](store& db) { engine.test(db, "usd-high", now()); });
  d->start();
  // Both commands are queued at once; the exec thread runs one at a time.
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (lines().empty() && std::chrono::steady_clock::now() < deadline) {
    ioc.restart();
    ioc.run_for(20ms);
  }
  REQUIRE(lines().size() == 1);
  // Shutting down as the daemon does: the loop has stopped, the writer is drained, then
  // the dispatcher goes. The running command may finish; the queued one must not start.
  d->stop();
  writer.stop();
  std::ofstream(go).put('\n');
  d.reset();
  CHECK(lines().size() == 1);

  // Nothing was recorded for either: both stay pending, to be sent after a restart.
  store db(tmp.path, store::mode::read_only);
  const auto events = db.alert_events(std::nullopt, "", 10);
  REQUIRE(events.size() == 1);
  REQUIRE(events[0].deliveries.size() == 2);
  for (const auto& [dl, attempts] : events[0].deliveries) {
    CHECK(dl.status == delivery_status::pending);
    CHECK(attempts.empty());
  }
  std::filesystem::remove_all(dir);
  std::fclose(sink);
}
