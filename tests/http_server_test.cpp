#include "somrated/http_server.hpp"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <boost/asio/connect.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/field.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/system/system_error.hpp>

#include "somrated/log.hpp"
#include "somrated/metrics.hpp"

using namespace std::chrono_literals;
using somrated::exposition_writer;
using somrated::http_request;
using somrated::http_response;
using somrated::http_server;
using somrated::log_level;
using somrated::logger;
using somrated::metrics;
using somrated::request_handler;
using somrated::server_limits;

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using steady = std::chrono::steady_clock;

namespace {

/// Generous bound for anything that should happen "soon"; tests never wait this long
/// unless the behaviour under test is broken.
constexpr auto patience = 5s;

/// Closes a FILE*.
struct file_closer {
  void operator()(std::FILE* f) const noexcept { std::fclose(f); }
};
/// An anonymous temporary file, deleted when closed.
using file_ptr = std::unique_ptr<std::FILE, file_closer>;

/// A named temporary file, removed at the end of the scope.
class temp_file {
 public:
  temp_file() {
    const int fd = ::mkstemp(path_.data());
    REQUIRE(fd >= 0);
    file_.reset(::fdopen(fd, "w"));
    REQUIRE(file_ != nullptr);
    reader_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    REQUIRE(reader_ >= 0);
  }
  ~temp_file() {
    ::close(reader_);
    ::unlink(path_.c_str());
  }
  temp_file(const temp_file&) = delete;
  temp_file& operator=(const temp_file&) = delete;

  /// The stream to write to.
  std::FILE* get() const { return file_.get(); }

  /// The whole file, read through a descriptor opened up front: it works when no new
  /// descriptor can be opened, and leaves the writer's position alone.
  std::string text() const {
    std::string out;
    char chunk[4096];
    for (ssize_t n;
         (n = ::pread(reader_, chunk, sizeof chunk, static_cast<off_t>(out.size()))) > 0;) {
      out.append(chunk, static_cast<std::size_t>(n));
    }
    return out;
  }

 private:
  std::string path_ = "/tmp/somrated-http-test-XXXXXX";
  file_ptr file_;
  int reader_ = -1;
};

/// Lowers the soft RLIMIT_NOFILE for one scope, then puts the old limit back.
class fd_limit_guard {
 public:
  explicit fd_limit_guard(rlim_t soft) {
    REQUIRE(::getrlimit(RLIMIT_NOFILE, &saved_) == 0);
    rlimit lowered = saved_;
    lowered.rlim_cur = soft;
    REQUIRE(::setrlimit(RLIMIT_NOFILE, &lowered) == 0);
  }
  ~fd_limit_guard() { restore(); }
  fd_limit_guard(const fd_limit_guard&) = delete;
  fd_limit_guard& operator=(const fd_limit_guard&) = delete;

  /// Puts the old limit back early.
  void restore() {
    if (restored_) return;
    restored_ = true;
    ::setrlimit(RLIMIT_NOFILE, &saved_);
  }

 private:
  rlimit saved_{};
  bool restored_ = false;
};

/// Closes the descriptors it holds at the end of the scope.
struct descriptors {
  std::vector<int> fds;  ///< Owned descriptors.
  ~descriptors() {
    for (const int fd : fds) ::close(fd);
  }
};

/// Polls pred every millisecond until it holds or limit passes; true if it held.
template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds limit = patience) {
  const auto until = steady::now() + limit;
  while (!pred()) {
    if (steady::now() > until) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

/// Milliseconds since start.
long long ms_since(steady::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - start).count();
}

/// True while something listens on 127.0.0.1:port (from /proc/net/tcp).
bool listening_on(std::uint16_t port) {
  std::ifstream in("/proc/net/tcp");
  std::string line;
  std::getline(in, line);  // the header
  char local[32];
  const std::string want = fmt::format("0100007F:{:04X}", port);
  while (std::getline(in, line)) {
    unsigned state = 0;
    if (std::sscanf(line.c_str(), "%*s %31s %*s %x", local, &state) == 2 && local == want &&
        state == 0x0A)
      return true;
  }
  return false;
}

/// Short limits so the deadline tests finish quickly.
server_limits quick_limits() {
  server_limits l;
  l.max_connections = 200;
  l.header_limit = 1024;
  l.body_limit = 1024;
  l.read_timeout = 2s;
  l.idle_timeout = 2s;
  l.write_timeout = 2s;
  return l;
}

/// A 200 whose body names the request: "hello <target>".
http_response hello(const http_request& req) {
  http_response res{http::status::ok, 11};
  res.set(http::field::content_type, "text/plain");
  res.body() = "hello " + std::string(req.target());
  return res;
}

/// Answers every request at once with hello().
request_handler hello_handler() {
  return [](http_request req, std::function<void(http_response)> done) { done(hello(req)); };
}

/// The error responder the daemon would pass: the message as the body.
http_response error_body(http::status status, std::string_view message) {
  http_response res{status, 11};
  res.set(http::field::content_type, "text/plain");
  res.body() = std::string(message);
  return res;
}

/// A server on 127.0.0.1:0 with its io_context running on a thread of its own.
class server_harness {
 public:
  /// Binds and starts the server.
  server_harness(server_limits limits, request_handler handler)
      : log_(log_level::debug, log_file_.get()) {
    server_.emplace(ioc_, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0), limits,
                    std::move(handler), error_body, log_, &stats_);
    start();
  }

  /// Adopts listening_fd and starts the server.
  server_harness(int listening_fd, server_limits limits, request_handler handler)
      : log_(log_level::debug, log_file_.get()) {
    server_.emplace(ioc_, listening_fd, limits, std::move(handler), error_body, log_, &stats_);
    start();
  }

  ~server_harness() {
    if (!stopped_) {
      std::atomic<bool> done{false};
      server_->stop(100ms, [&] { done = true; });
      eventually([&] { return done.load(); });
    }
    work_.reset();
    ioc_.stop();
    thread_.join();
  }

  server_harness(const server_harness&) = delete;
  server_harness& operator=(const server_harness&) = delete;

  http_server& server() { return *server_; }
  std::uint16_t port() const { return server_->local_endpoint().port(); }
  /// Everything the server logged so far.
  std::string log_text() const { return log_file_.text(); }

  /// How often the server counted event (evicted, rejected, accept_failed), as /metrics
  /// shows it.
  std::uint64_t pressure_count(std::string_view event) const {
    std::string text;
    exposition_writer w(text);
    stats_.write(w);
    const std::string series =
        fmt::format("somrated_http_connection_events_total{{event=\"{}\"}} ", event);
    const auto at = text.find(series);
    REQUIRE(at != std::string::npos);
    return std::stoull(text.substr(at + series.size()));
  }

  /// Calls stop(grace) and returns a flag that turns true when its callback runs.
  std::shared_ptr<std::atomic<int>> stop(std::chrono::milliseconds grace) {
    stopped_ = true;
    auto calls = std::make_shared<std::atomic<int>>(0);
    server_->stop(grace, [calls] { ++*calls; });
    return calls;
  }

 private:
  void start() {
    server_->start();
    thread_ = std::thread([this] { ioc_.run(); });
  }

  net::io_context ioc_;
  net::executor_work_guard<net::io_context::executor_type> work_{ioc_.get_executor()};
  temp_file log_file_;
  logger log_;
  metrics stats_;
  std::optional<http_server> server_;
  std::thread thread_;
  bool stopped_ = false;
};

/// A blocking-style loopback client whose every read has a deadline.
class test_client {
 public:
  /// Connects to 127.0.0.1:port, unless told to wait for connect().
  explicit test_client(std::uint16_t port, bool connect_now = true) : port_(port) {
    socket_.open(tcp::v4());
    if (connect_now) connect();
  }

  /// Connects the already open socket.
  void connect() {
    beast::error_code ec;
    socket_.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port_), ec);
    REQUIRE_MESSAGE(!ec, ec.message());
  }

  /// Writes bytes; false when the connection is gone.
  bool send(std::string_view bytes) {
    beast::error_code ec;
    net::write(socket_, net::buffer(bytes.data(), bytes.size()), ec);
    return !ec;
  }

  /// Outcome of reading one response.
  struct reply {
    beast::error_code ec;                   ///< Set on failure or timeout.
    http::response<http::string_body> res;  ///< The response when ec is clear.
  };

  /// Reads one response (without a body when it answers a HEAD).
  reply read_response(bool head = false, std::chrono::milliseconds limit = patience) {
    http::response_parser<http::string_body> parser;
    parser.skip(head);
    parser.body_limit(1 << 20);
    reply r;
    r.ec = run_for(
        [&](auto handler) { http::async_read(socket_, buffer_, parser, std::move(handler)); },
        limit);
    if (!r.ec) r.res = parser.release();
    return r;
  }

  /// Every byte until the server closes the connection (buffered bytes first), or
  /// nullopt if it is still open after limit.
  std::optional<std::string> read_until_closed(std::chrono::milliseconds limit = patience) {
    std::string out(static_cast<const char*>(buffer_.data().data()), buffer_.size());
    buffer_.consume(buffer_.size());
    const auto until = steady::now() + limit;
    for (;;) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(until - steady::now());
      if (left <= 0ms) return std::nullopt;
      char chunk[4096];
      std::size_t got = 0;
      const auto ec = run_for(
          [&](auto handler) {
            socket_.async_read_some(
                net::buffer(chunk),
                [&got, handler = std::move(handler)](beast::error_code e, std::size_t n) mutable {
                  got = n;
                  handler(e, n);
                });
          },
          left);
      out.append(chunk, got);
      if (ec == net::error::eof || ec == net::error::connection_reset) return out;
      if (ec) return std::nullopt;
    }
  }

  /// Closes the client's end.
  void close() {
    beast::error_code ignored;
    socket_.close(ignored);
  }

  /// True once the server has closed the connection, false if still open after limit.
  bool closed_within(std::chrono::milliseconds limit) {
    return read_until_closed(limit).has_value();
  }

 private:
  /// Starts an operation on ioc_ and runs it for at most limit; timeout if it did not end.
  template <class Start>
  beast::error_code run_for(Start start, std::chrono::milliseconds limit) {
    beast::error_code result;
    bool finished = false;
    ioc_.restart();
    start([&](beast::error_code ec, std::size_t) {
      result = ec;
      finished = true;
    });
    ioc_.run_for(limit);
    if (finished) return result;
    beast::error_code ignored;
    socket_.cancel(ignored);
    ioc_.restart();
    ioc_.run();
    return beast::error::timeout;
  }

  std::uint16_t port_;
  net::io_context ioc_;
  tcp::socket socket_{ioc_};
  beast::flat_buffer buffer_;
};

/// "GET target HTTP/1.1" with a Host header and optional extra header lines.
std::string get(std::string_view target, std::string_view extra = "") {
  return "GET " + std::string(target) + " HTTP/1.1\r\nHost: test\r\n" + std::string(extra) + "\r\n";
}

}  // namespace

TEST_CASE("http_server answers requests and keeps connections alive") {
  server_harness h(quick_limits(), hello_handler());

  SUBCASE("a GET gets the handler's body with its Content-Length and a Server header") {
    test_client c(h.port());
    REQUIRE(c.send(get("/x")));
    const auto r = c.read_response();
    REQUIRE_MESSAGE(!r.ec, r.ec.message());
    CHECK(r.res.result() == http::status::ok);
    CHECK(r.res.body() == "hello /x");
    CHECK(r.res[http::field::content_length] == "8");
    CHECK(r.res[http::field::server].starts_with("somrated/"));
    CHECK(r.res.keep_alive());
  }

  SUBCASE("two requests on one keep-alive connection") {
    test_client c(h.port());
    REQUIRE(c.send(get("/one")));
    const auto r1 = c.read_response();
    REQUIRE(!r1.ec);
    CHECK(r1.res.body() == "hello /one");
    REQUIRE(c.send(get("/two")));
    const auto r2 = c.read_response();
    REQUIRE(!r2.ec);
    CHECK(r2.res.body() == "hello /two");
    CHECK(h.server().connections() == 1);
  }

  SUBCASE("Connection: close is honoured") {
    test_client c(h.port());
    REQUIRE(c.send(get("/bye", "Connection: close\r\n")));
    const auto r = c.read_response();
    REQUIRE(!r.ec);
    CHECK(r.res.body() == "hello /bye");
    CHECK_FALSE(r.res.keep_alive());
    const auto rest = c.read_until_closed();
    REQUIRE(rest.has_value());
    CHECK(rest->empty());
  }

  SUBCASE("HTTP/1.0 without keep-alive is answered in 1.0 and closed") {
    test_client c(h.port());
    REQUIRE(c.send("GET /old HTTP/1.0\r\n\r\n"));
    const auto r = c.read_response();
    REQUIRE(!r.ec);
    CHECK(r.res.version() == 10);
    CHECK(r.res.body() == "hello /old");
    CHECK(c.closed_within(patience));
  }

  SUBCASE("HTTP/1.0 with keep-alive stays open") {
    test_client c(h.port());
    REQUIRE(c.send("GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
    const auto r1 = c.read_response();
    REQUIRE(!r1.ec);
    CHECK(r1.res.keep_alive());
    REQUIRE(c.send("GET /b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
    const auto r2 = c.read_response();
    REQUIRE(!r2.ec);
    CHECK(r2.res.body() == "hello /b");
  }

  SUBCASE("connections() counts open connections") {
    {
      test_client a(h.port());
      test_client b(h.port());
      CHECK(eventually([&] { return h.server().connections() == 2; }));
    }
    CHECK(eventually([&] { return h.server().connections() == 0; }));
  }
}

TEST_CASE("http_server keeps the handler's own headers") {
  server_harness h(quick_limits(), [](http_request req, std::function<void(http_response)> done) {
    auto res = hello(req);
    res.set(http::field::server, "custom");
    res.set(http::field::connection, "close");
    done(std::move(res));
  });
  test_client c(h.port());
  REQUIRE(c.send(get("/")));
  const auto r = c.read_response();
  REQUIRE(!r.ec);
  CHECK(r.res[http::field::server] == "custom");
  CHECK_FALSE(r.res.keep_alive());
  CHECK(c.closed_within(patience));
}

TEST_CASE("http_server takes responses from other threads") {
  net::thread_pool worker(1);
  // Like the database worker: the answer is produced and delivered on worker's thread.
  const auto on_worker = [&worker](http_request req, std::function<void(http_response)> done) {
    net::post(worker, [req = std::move(req), done = std::move(done)] { done(hello(req)); });
  };
  server_harness h(quick_limits(), on_worker);

  SUBCASE("one request") {
    test_client c(h.port());
    REQUIRE(c.send(get("/db")));
    const auto r = c.read_response();
    REQUIRE(!r.ec);
    CHECK(r.res.body() == "hello /db");
  }

  SUBCASE("100 concurrent connections are all answered") {
    constexpr int n = 100;
    std::vector<std::unique_ptr<test_client>> clients;
    for (int i = 0; i < n; ++i) clients.push_back(std::make_unique<test_client>(h.port()));
    CHECK(eventually([&] { return h.server().connections() == n; }));
    for (int i = 0; i < n; ++i) REQUIRE(clients[i]->send(get("/" + std::to_string(i))));
    int answered = 0;
    for (int i = 0; i < n; ++i) {
      const auto r = clients[i]->read_response();
      if (!r.ec && r.res.body() == "hello /" + std::to_string(i)) ++answered;
    }
    CHECK(answered == n);
  }
  worker.join();
}

TEST_CASE("http_server answers pipelined requests in order") {
  net::thread_pool worker(1);
  // The first answer is the slowest: answers must still come back in request order.
  const auto delayed = [&worker](http_request req, std::function<void(http_response)> done) {
    const auto delay = req.target() == "/a" ? 80ms : req.target() == "/b" ? 20ms : 0ms;
    auto timer = std::make_shared<net::steady_timer>(worker, delay);
    timer->async_wait(
        [timer, req = std::move(req), done = std::move(done)](auto) { done(hello(req)); });
  };
  server_harness h(quick_limits(), delayed);
  test_client c(h.port());
  REQUIRE(c.send(get("/a") + get("/b") + get("/c")));
  for (const char* target : {"/a", "/b", "/c"}) {
    CAPTURE(target);
    const auto r = c.read_response();
    REQUIRE_MESSAGE(!r.ec, r.ec.message());
    CHECK(r.res.body() == "hello " + std::string(target));
  }
  worker.join();
}

TEST_CASE("http_server sends HEAD responses without a body") {
  server_harness h(quick_limits(), hello_handler());

  test_client get_client(h.port());
  REQUIRE(get_client.send(get("/page")));
  const auto got = get_client.read_response();
  REQUIRE(!got.ec);
  REQUIRE(got.res.body() == "hello /page");

  test_client c(h.port());
  REQUIRE(c.send("HEAD /page HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"));
  const auto raw = c.read_until_closed();
  REQUIRE(raw.has_value());
  const auto end_of_header = raw->find("\r\n\r\n");
  REQUIRE(end_of_header != std::string::npos);
  CHECK(raw->starts_with("HTTP/1.1 200 OK\r\n"));
  CHECK(raw->find("Content-Length: " + std::string(got.res[http::field::content_length])) !=
        std::string::npos);
  CHECK(raw->size() == end_of_header + 4);  // not a single body byte
}

TEST_CASE("http_server rejects oversized and malformed requests") {
  server_harness h(quick_limits(), hello_handler());
  test_client c(h.port());

  SUBCASE("header over the limit: 431, then close") {
    REQUIRE(c.send(get("/", "X-Big: " + std::string(2000, 'a') + "\r\n")));
    const auto r = c.read_response();
    REQUIRE_MESSAGE(!r.ec, r.ec.message());
    CHECK(r.res.result() == http::status::request_header_fields_too_large);
    CHECK(r.res.body() == "request header too large (limit 1024 bytes)");
    CHECK_FALSE(r.res.keep_alive());
    CHECK(c.closed_within(patience));
  }

  SUBCASE("body over the limit: 413, then close") {
    REQUIRE(c.send("POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: 4096\r\n\r\n" +
                   std::string(4096, 'b')));
    const auto r = c.read_response();
    REQUIRE_MESSAGE(!r.ec, r.ec.message());
    CHECK(r.res.result() == http::status::payload_too_large);
    CHECK(r.res.body() == "request body too large (limit 1024 bytes)");
    CHECK_FALSE(r.res.keep_alive());
    CHECK(c.closed_within(patience));
  }

  SUBCASE("chunked body over the limit: 413") {
    const std::string chunk(1000, 'c');
    REQUIRE(
        c.send("POST /upload HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
               "3e8\r\n" +
               chunk + "\r\n3e8\r\n" + chunk + "\r\n0\r\n\r\n"));
    const auto r = c.read_response();
    REQUIRE_MESSAGE(!r.ec, r.ec.message());
    CHECK(r.res.result() == http::status::payload_too_large);
    CHECK(c.closed_within(patience));
  }

  SUBCASE("garbage: 400, then close") {
    REQUIRE(c.send("\x01\x02 not http at all\r\n\r\n"));
    const auto r = c.read_response();
    REQUIRE_MESSAGE(!r.ec, r.ec.message());
    CHECK(r.res.result() == http::status::bad_request);
    CHECK(r.res.body().starts_with("malformed request: "));
    CHECK_FALSE(r.res.keep_alive());
    CHECK(c.closed_within(patience));
  }

  SUBCASE("bad version: 400") {
    REQUIRE(c.send("GET / HTTP/9.x\r\nHost: test\r\n\r\n"));
    const auto r = c.read_response();
    REQUIRE_MESSAGE(!r.ec, r.ec.message());
    CHECK(r.res.result() == http::status::bad_request);
    CHECK(c.closed_within(patience));
  }

  SUBCASE("a body within the limit reaches the handler") {
    REQUIRE(c.send("POST /ok HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n\r\nhello"));
    const auto r = c.read_response();
    REQUIRE(!r.ec);
    CHECK(r.res.result() == http::status::ok);
  }
}

TEST_CASE("http_server enforces its deadlines") {
  auto limits = quick_limits();

  SUBCASE("an idle keep-alive connection is closed after idle_timeout") {
    limits.idle_timeout = 200ms;
    server_harness h(limits, hello_handler());
    test_client c(h.port());
    REQUIRE(c.send(get("/")));
    REQUIRE(!c.read_response().ec);
    const auto start = steady::now();
    CHECK(c.closed_within(patience));
    CHECK(ms_since(start) >= 100);
    CHECK(eventually([&] { return h.server().connections() == 0; }));
  }

  SUBCASE("a request trickling in is cut off at read_timeout") {
    limits.idle_timeout = 10s;
    limits.read_timeout = 300ms;
    server_harness h(limits, hello_handler());
    test_client c(h.port());
    const std::string request = get("/", "X-Slow: " + std::string(200, 's') + "\r\n");
    const auto start = steady::now();
    std::size_t sent = 0;
    bool closed = false;
    // One byte every 50 ms: each byte would reset a per-read deadline, never a
    // per-request one.
    while (!closed && sent < request.size() && steady::now() - start < patience) {
      if (!c.send(std::string_view(request).substr(sent, 1))) break;
      ++sent;
      closed = c.closed_within(50ms);
    }
    const auto elapsed = ms_since(start);
    CHECK(sent < request.size());
    CHECK(elapsed >= 250);
    CHECK(elapsed < 5000);
    CHECK(eventually([&] { return h.server().connections() == 0; }));
  }
}

TEST_CASE("http_server makes room beyond max_connections") {
  auto limits = quick_limits();
  limits.max_connections = 3;

  SUBCASE("the connection idle the longest is closed for a new one") {
    server_harness h(limits, hello_handler());
    std::vector<std::unique_ptr<test_client>> admitted;
    for (int i = 0; i < 3; ++i) {
      admitted.push_back(std::make_unique<test_client>(h.port()));
      REQUIRE(eventually([&] { return h.server().connections() == admitted.size(); }));
    }
    // The first has been served since it connected: the second is now the longest idle.
    REQUIRE(admitted[0]->send(get("/used")));
    REQUIRE(!admitted[0]->read_response().ec);

    test_client fourth(h.port());
    REQUIRE(fourth.send(get("/fourth")));
    const auto r = fourth.read_response();
    REQUIRE_MESSAGE(!r.ec, r.ec.message());
    CHECK(r.res.result() == http::status::ok);
    CHECK(r.res.body() == "hello /fourth");
    CHECK(admitted[1]->closed_within(patience));
    CHECK(h.server().connections() == 3);
    for (const std::size_t i : {0u, 2u}) {
      REQUIRE(admitted[i]->send(get("/still")));
      const auto ok = admitted[i]->read_response();
      REQUIRE_MESSAGE(!ok.ec, ok.ec.message());
      CHECK(ok.res.body() == "hello /still");
    }
    CHECK(h.log_text().find("closing the longest idle ones") != std::string::npos);
    CHECK(h.pressure_count("evicted") == 1);
    CHECK(h.pressure_count("rejected") == 0);
  }

  SUBCASE("503 when every connection is mid-request") {
    limits.stall_grace = 1h;
    server_harness h(limits, hello_handler());
    std::vector<std::unique_ptr<test_client>> admitted;
    for (int i = 0; i < 3; ++i) {
      admitted.push_back(std::make_unique<test_client>(h.port()));
      REQUIRE(admitted.back()->send("GET /partial HTTP/1.1\r\nHost: test\r\n"));
    }
    REQUIRE(eventually([&] { return h.server().connections() == 3; }));

    test_client fourth(h.port());
    const auto r = fourth.read_response();
    REQUIRE_MESSAGE(!r.ec, r.ec.message());
    CHECK(r.res.result() == http::status::service_unavailable);
    CHECK(r.res.body() == "too many connections");
    CHECK_FALSE(r.res.keep_alive());
    CHECK(fourth.closed_within(patience));
    CHECK(h.server().connections() == 3);
    CHECK(h.pressure_count("rejected") == 1);
    CHECK(h.pressure_count("evicted") == 0);

    // None of them was cut off: each request completes and is answered.
    for (auto& c : admitted) {
      REQUIRE(c->send("\r\n"));
      const auto ok = c->read_response();
      REQUIRE_MESSAGE(!ok.ec, ok.ec.message());
      CHECK(ok.res.body() == "hello /partial");
    }

    // Once one admitted client leaves, a new one gets in.
    admitted.pop_back();
    REQUIRE(eventually([&] { return h.server().connections() == 2; }));
    test_client fifth(h.port());
    REQUIRE(fifth.send(get("/fifth")));
    const auto in = fifth.read_response();
    REQUIRE(!in.ec);
    CHECK(in.res.result() == http::status::ok);
  }

  SUBCASE("with none idle, the connection stalled the longest mid-request is closed") {
    limits.stall_grace = 200ms;
    limits.read_timeout = 1h;
    server_harness h(limits, hello_handler());
    std::vector<std::unique_ptr<test_client>> stalled;
    for (int i = 0; i < 3; ++i) {
      stalled.push_back(std::make_unique<test_client>(h.port()));
      REQUIRE(stalled.back()->send("GET /partial HTTP/1.1\r\nHost: test\r\n"));
      REQUIRE(eventually([&] { return h.server().connections() == stalled.size(); }));
    }
    // 503 until the oldest has been stalled for stall_grace, then served.
    std::optional<test_client::reply> served;
    REQUIRE(eventually([&] {
      test_client c(h.port());
      if (!c.send(get("/new"))) return false;
      auto r = c.read_response();
      if (r.ec || r.res.result() != http::status::ok) return false;
      served = std::move(r);
      return true;
    }));
    CHECK(served->res.body() == "hello /new");
    CHECK(stalled[0]->closed_within(patience));
    // The younger ones were not needed: they still complete their requests.
    for (std::size_t i = 1; i < 3; ++i) {
      REQUIRE(stalled[i]->send("\r\n"));
      const auto ok = stalled[i]->read_response();
      REQUIRE_MESSAGE(!ok.ec, ok.ec.message());
      CHECK(ok.res.body() == "hello /partial");
    }
  }

  SUBCASE("a connection whose request is already arriving is served, then closed") {
    // While the server's only thread is held, a fourth client connects and then the
    // longest idle one sends a request: when the thread resumes, the new connection
    // is admitted (evicting that one) before the request is read. It must still be
    // answered, with Connection: close, and only then closed.
    std::promise<void> gate;
    std::shared_future<void> open = gate.get_future().share();
    std::atomic<bool> blocked{false};
    server_harness g(limits, [&](http_request req, std::function<void(http_response)> done) {
      if (req.target() == "/block") {
        blocked = true;
        open.wait();
      }
      done(hello(req));
    });
    test_client oldest(g.port());
    REQUIRE(eventually([&] { return g.server().connections() == 1; }));
    test_client second(g.port());
    test_client blocker(g.port());
    REQUIRE(eventually([&] { return g.server().connections() == 3; }));
    REQUIRE(blocker.send(get("/block")));
    REQUIRE(eventually([&] { return blocked.load(); }));
    test_client fourth(g.port());
    REQUIRE(fourth.send(get("/fourth")));
    REQUIRE(oldest.send(get("/arriving")));
    gate.set_value();

    const auto r = oldest.read_response();
    REQUIRE_MESSAGE(!r.ec, r.ec.message());
    CHECK(r.res.body() == "hello /arriving");
    CHECK_FALSE(r.res.keep_alive());
    CHECK(oldest.closed_within(patience));
    const auto f = fourth.read_response();
    REQUIRE_MESSAGE(!f.ec, f.ec.message());
    CHECK(f.res.body() == "hello /fourth");
    REQUIRE(!blocker.read_response().ec);
    REQUIRE(second.send(get("/second")));
    const auto sr = second.read_response();
    REQUIRE_MESSAGE(!sr.ec, sr.ec.message());
    CHECK(sr.res.body() == "hello /second");
  }
}

TEST_CASE("http_server stops gracefully") {
  SUBCASE("with no connection, done comes at once") {
    server_harness h(quick_limits(), hello_handler());
    const auto start = steady::now();
    const auto done = h.stop(10s);
    CHECK(eventually([&] { return done->load() == 1; }));
    CHECK(ms_since(start) < 5000);
  }

  SUBCASE("an idle connection is closed, new ones are refused, done follows") {
    server_harness h(quick_limits(), hello_handler());
    test_client c(h.port());
    REQUIRE(c.send(get("/")));
    REQUIRE(!c.read_response().ec);
    const auto start = steady::now();
    const auto done = h.stop(10s);
    CHECK(c.closed_within(patience));
    CHECK(eventually([&] { return done->load() == 1; }));
    CHECK(ms_since(start) < 5000);  // well before the 10 s grace
    net::io_context client_ioc;
    tcp::socket late(client_ioc);
    beast::error_code ec;
    late.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), h.port()), ec);
    CHECK(ec == net::error::connection_refused);
  }

  SUBCASE("a new connection that has not sent its request yet is still answered") {
    server_harness h(quick_limits(), hello_handler());
    test_client c(h.port());
    REQUIRE(eventually([&] { return h.server().connections() == 1; }));
    const auto done = h.stop(10s);
    // The listener is closed (and the sessions told to stop) before the request goes.
    REQUIRE(eventually([&] { return !listening_on(h.port()); }));
    REQUIRE(c.send(get("/late")));
    const auto r = c.read_response();
    REQUIRE_MESSAGE(!r.ec, r.ec.message());
    CHECK(r.res.body() == "hello /late");
    CHECK_FALSE(r.res.keep_alive());
    CHECK(c.closed_within(patience));
    CHECK(eventually([&] { return done->load() == 1; }));
  }

  SUBCASE("connections still in the listen backlog are served, not reset") {
    std::promise<void> gate;
    std::shared_future<void> open = gate.get_future().share();
    std::atomic<bool> blocked{false};
    // The first request holds the server's only thread, so later connections wait in
    // the kernel's backlog, requests sent, until stop() runs.
    server_harness h(quick_limits(),
                     [&](http_request req, std::function<void(http_response)> done) {
                       if (req.target() == "/block") {
                         blocked = true;
                         open.wait();
                       }
                       done(hello(req));
                     });
    test_client first(h.port());
    REQUIRE(first.send(get("/block")));
    REQUIRE(eventually([&] { return blocked.load(); }));
    std::vector<std::unique_ptr<test_client>> waiting;
    for (int i = 0; i < 3; ++i) {
      waiting.push_back(std::make_unique<test_client>(h.port()));
      REQUIRE(waiting.back()->send(get("/queued" + std::to_string(i))));
    }
    const auto done = h.stop(5s);
    gate.set_value();
    const auto r = first.read_response();
    REQUIRE_MESSAGE(!r.ec, r.ec.message());
    CHECK(r.res.body() == "hello /block");
    for (int i = 0; i < 3; ++i) {
      const auto q = waiting[static_cast<std::size_t>(i)]->read_response();
      REQUIRE_MESSAGE(!q.ec, q.ec.message());
      CHECK(q.res.body() == "hello /queued" + std::to_string(i));
      CHECK_FALSE(q.res.keep_alive());
    }
    CHECK(eventually([&] { return done->load() == 1; }));
  }

  SUBCASE("an in-flight request still gets its full response, with Connection: close") {
    net::thread_pool worker(1);
    std::atomic<bool> called{false};
    server_harness h(quick_limits(),
                     [&](http_request req, std::function<void(http_response)> done) {
                       called = true;
                       auto timer = std::make_shared<net::steady_timer>(worker, 100ms);
                       timer->async_wait([timer, req = std::move(req), done](auto) {
                         auto res = hello(req);
                         res.body() += std::string(10000, '.');
                         done(std::move(res));
                       });
                     });
    test_client c(h.port());
    REQUIRE(c.send(get("/slow")));
    REQUIRE(eventually([&] { return called.load(); }));
    const auto done = h.stop(5s);
    const auto r = c.read_response();
    REQUIRE_MESSAGE(!r.ec, r.ec.message());
    CHECK(r.res.body() == "hello /slow" + std::string(10000, '.'));
    CHECK_FALSE(r.res.keep_alive());
    CHECK(c.closed_within(patience));
    c.close();
    CHECK(eventually([&] { return done->load() == 1; }));
    CHECK(h.server().connections() == 0);
    worker.join();
  }

  SUBCASE("a handler that never answers is cut off after grace") {
    std::mutex mutex;
    std::vector<std::function<void(http_response)>> parked;
    {
      server_harness h(quick_limits(), [&](http_request, std::function<void(http_response)> done) {
        const std::lock_guard lock(mutex);
        parked.push_back(std::move(done));
      });
      test_client c(h.port());
      REQUIRE(c.send(get("/never")));
      REQUIRE(eventually([&] {
        const std::lock_guard lock(mutex);
        return parked.size() == 1;
      }));
      const auto start = steady::now();
      const auto done = h.stop(200ms);
      CHECK(c.closed_within(patience));
      CHECK(ms_since(start) >= 150);
      CHECK(eventually([&] { return done->load() == 1; }));
      CHECK(h.server().connections() == 0);
      // A late answer after the connection is gone is dropped without harm.
      parked.front()(http_response{http::status::ok, 11});
      parked.clear();
    }
  }
}

TEST_CASE("http_server survives a throwing handler") {
  server_harness h(quick_limits(), [](http_request req, std::function<void(http_response)> done) {
    if (req.target() == "/throw") throw std::runtime_error("handler bug");
    done(hello(req));
  });
  test_client bad(h.port());
  REQUIRE(bad.send(get("/throw")));
  CHECK(bad.closed_within(patience));
  test_client good(h.port());
  REQUIRE(good.send(get("/fine")));
  const auto r = good.read_response();
  REQUIRE(!r.ec);
  CHECK(r.res.body() == "hello /fine");
}

TEST_CASE("http_server backs off when accept runs out of descriptors") {
  server_harness h(quick_limits(), hello_handler());
  const auto accept_failures = [&h] {
    const auto text = h.log_text();
    std::size_t n = 0;
    for (auto at = text.find("accept failed"); at != std::string::npos;
         at = text.find("accept failed", at + 1)) {
      ++n;
    }
    return n;
  };
  // Opened before the limit drops: only the server's accept needs a new descriptor.
  test_client c(h.port(), false);
  {
    // Take every free descriptor number below the limit, so accept() gets EMFILE.
    descriptors fillers;
    const int base = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    REQUIRE(base >= 0);
    fillers.fds.push_back(base);
    const int probe = ::dup(base);
    REQUIRE(probe >= 0);
    ::close(probe);
    fd_limit_guard limit(static_cast<rlim_t>(probe) + 64);
    for (int fd; (fd = ::fcntl(base, F_DUPFD_CLOEXEC, 0)) >= 0;) fillers.fds.push_back(fd);

    c.connect();
    const auto start = steady::now();
    // The retries keep coming but spaced out: a loop retrying at once would log its
    // third failure within microseconds, and thousands soon after.
    REQUIRE(eventually([&] { return accept_failures() >= 3; }));
    CHECK(ms_since(start) >= 100);
    CHECK(accept_failures() <= 10);
  }
  // Descriptors are back: the pending connection is accepted and served.
  REQUIRE(c.send(get("/later")));
  const auto r = c.read_response();
  REQUIRE_MESSAGE(!r.ec, r.ec.message());
  CHECK(r.res.body() == "hello /later");
  // Every failure is counted for /metrics, as the log shows each one.
  CHECK(h.pressure_count("accept_failed") == accept_failures());
  CHECK(h.pressure_count("evicted") == 0);
}

TEST_CASE("http_server closes idle connections when accept runs out of descriptors") {
  auto limits = quick_limits();
  limits.idle_timeout = 60s;  // only the shortage may close them
  server_harness h(limits, hello_handler());
  // Well below max_connections (200), but holding most descriptors.
  std::vector<std::unique_ptr<test_client>> idle;
  for (int i = 0; i < 40; ++i) {
    idle.push_back(std::make_unique<test_client>(h.port()));
    REQUIRE(eventually([&] { return h.server().connections() == idle.size(); }));
  }
  test_client c(h.port(), false);
  descriptors fillers;
  const int base = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  REQUIRE(base >= 0);
  fillers.fds.push_back(base);
  const int probe = ::dup(base);
  REQUIRE(probe >= 0);
  ::close(probe);
  fd_limit_guard limit(static_cast<rlim_t>(probe) + 64);
  for (int fd; (fd = ::fcntl(base, F_DUPFD_CLOEXEC, 0)) >= 0;) fillers.fds.push_back(fd);

  // Every descriptor is taken: only closing idle connections lets this one in.
  c.connect();
  REQUIRE(c.send(get("/in")));
  const auto r = c.read_response();
  REQUIRE_MESSAGE(!r.ec, r.ec.message());
  CHECK(r.res.body() == "hello /in");
  // The longest idle went first; the newest are still open.
  CHECK(idle.front()->closed_within(patience));
  REQUIRE(idle.back()->send(get("/still")));
  const auto still = idle.back()->read_response();
  REQUIRE_MESSAGE(!still.ec, still.ec.message());
  CHECK(still.res.body() == "hello /still");
  CHECK(h.server().connections() < 40);
  limit.restore();
}

TEST_CASE("http_server adopts a listening socket") {
  SUBCASE("a socket listening on 127.0.0.1") {
    net::io_context setup;
    tcp::acceptor acceptor(setup, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0));
    const auto port = acceptor.local_endpoint().port();
    const int fd = acceptor.release();
    server_harness h(fd, quick_limits(), hello_handler());
    CHECK(h.port() == port);
    CHECK(h.server().local_endpoint().address().is_v4());
    test_client c(port);
    REQUIRE(c.send(get("/adopted")));
    const auto r = c.read_response();
    REQUIRE(!r.ec);
    CHECK(r.res.body() == "hello /adopted");
  }

  SUBCASE("a socket that is not listening is refused") {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    net::io_context ioc;
    file_ptr log_file(std::tmpfile());
    logger log(log_level::debug, log_file.get());
    CHECK_THROWS_AS(http_server(ioc, fd, quick_limits(), hello_handler(), error_body, log),
                    boost::system::system_error);
    ::close(fd);
  }
}
