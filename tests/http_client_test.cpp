#include "somrated/http_client.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include <doctest/doctest.h>
#include <fmt/core.h>
#include <openssl/ssl.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>

#include "../daemon/excerpt.hpp"
#include "../daemon/http_url.hpp"
#include "somrated/version.hpp"

namespace {

namespace fs = std::filesystem;
namespace net = boost::asio;
namespace ssl = net::ssl;
namespace http = boost::beast::http;
using tcp = net::ip::tcp;
using namespace std::chrono_literals;
using somrated::fetch_request;
using somrated::fetch_result;
using somrated::http_client;

/// True when text contains part.
bool contains(std::string_view text, std::string_view part) {
  return text.find(part) != std::string_view::npos;
}

/// One accepted connection, as a test server's script sees it.
class test_conn {
 public:
  /// Wraps s, in TLS when tls is set.
  test_conn(tcp::socket s, ssl::context* tls, std::uint16_t port) : port(port) {
    if (tls) {
      tls_.emplace(std::move(s), *tls);
    } else {
      plain_.emplace(std::move(s));
    }
  }

  http::request<http::string_body> request;  ///< What the client sent.
  std::uint16_t port;                        ///< The server's port, for absolute Locations.

  /// Runs the server side of the TLS handshake; returns the SNI name, or "".
  net::awaitable<std::string> handshake() {
    co_await tls_->async_handshake(ssl::stream_base::server, net::use_awaitable);
    const char* name = SSL_get_servername(tls_->native_handle(), TLSEXT_NAMETYPE_host_name);
    co_return name ? name : "";
  }

  /// Reads one request into request.
  net::awaitable<void> read_request() {
    if (tls_) {
      co_await http::async_read(*tls_, buffer_, request, net::use_awaitable);
    } else {
      co_await http::async_read(*plain_, buffer_, request, net::use_awaitable);
    }
  }

  /// Writes raw bytes.
  net::awaitable<void> send(std::string_view bytes) {
    if (tls_) {
      co_await net::async_write(*tls_, net::buffer(bytes), net::use_awaitable);
    } else {
      co_await net::async_write(*plain_, net::buffer(bytes), net::use_awaitable);
    }
  }

  /// Waits d.
  net::awaitable<void> pause(std::chrono::milliseconds d) {
    net::steady_timer t(co_await net::this_coro::executor, d);
    co_await t.async_wait(net::use_awaitable);
  }

  /// Never answers: reads and discards until the client closes.
  net::awaitable<void> hold() {
    char sink[512];
    for (;;) {
      boost::system::error_code ec;
      if (tls_) {
        std::tie(ec, std::ignore) =
            co_await tls_->async_read_some(net::buffer(sink), net::as_tuple(net::use_awaitable));
      } else {
        std::tie(ec, std::ignore) =
            co_await plain_->async_read_some(net::buffer(sink), net::as_tuple(net::use_awaitable));
      }
      if (ec) co_return;
    }
  }

  /// Ends the connection politely (close_notify over TLS).
  net::awaitable<void> close() {
    if (tls_) {
      co_await tls_->async_shutdown(net::as_tuple(net::use_awaitable));
    } else {
      boost::system::error_code ignored;
      plain_->shutdown(tcp::socket::shutdown_send, ignored);
    }
  }

 private:
  std::optional<tcp::socket> plain_;             ///< Set for plain HTTP.
  std::optional<ssl::stream<tcp::socket>> tls_;  ///< Set for HTTPS.
  boost::beast::flat_buffer buffer_;             ///< For reading the request.
};

/// What a test server does with each connection once the request is read.
using script = std::function<net::awaitable<void>(test_conn&)>;

/// A scripted HTTP(S) server on 127.0.0.1 with an ephemeral port, on its own thread.
class test_server {
 public:
  /// Serves every connection with s; TLS when tls is set; read_request = false hands
  /// the connection to s before anything is read.
  explicit test_server(script s, ssl::context* tls = nullptr, bool read_request = true)
      : script_(std::move(s)),
        tls_(tls),
        read_request_(read_request),
        acceptor_(ioc_, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0)),
        port_(acceptor_.local_endpoint().port()) {
    net::co_spawn(ioc_, accept_loop(), net::detached);
    thread_ = std::thread([this] { ioc_.run(); });
  }

  /// Stops the I/O thread; open connections are dropped.
  ~test_server() {
    ioc_.stop();
    thread_.join();
  }

  test_server(const test_server&) = delete;
  test_server& operator=(const test_server&) = delete;

  /// The listening port.
  std::uint16_t port() const { return port_; }

  /// An http:// (or https:// for a TLS server) URL for path on 127.0.0.1.
  std::string url(std::string_view path, std::string_view host = "127.0.0.1") const {
    return fmt::format("{}://{}:{}{}", tls_ ? "https" : "http", host, port_, path);
  }

  /// The requests read so far.
  std::vector<http::request<http::string_body>> requests() const {
    std::lock_guard lock(mutex_);
    return requests_;
  }

  /// The SNI names of TLS handshakes so far ("" when none was sent).
  std::vector<std::string> server_names() const {
    std::lock_guard lock(mutex_);
    return server_names_;
  }

  /// Connections that have ended on the server side.
  int sessions_ended() const { return ended_.load(); }

 private:
  /// Accepts forever, one session coroutine per connection.
  net::awaitable<void> accept_loop() {
    for (;;) {
      tcp::socket s = co_await acceptor_.async_accept(net::use_awaitable);
      net::co_spawn(ioc_, session(std::move(s)), net::detached);
    }
  }

  /// Handshakes, reads and records the request, then runs the script.
  net::awaitable<void> session(tcp::socket s) {
    test_conn c(std::move(s), tls_, port_);
    try {
      if (tls_) {
        std::string name = co_await c.handshake();
        std::lock_guard lock(mutex_);
        server_names_.push_back(std::move(name));
      }
      if (read_request_) {
        co_await c.read_request();
        std::lock_guard lock(mutex_);
        requests_.push_back(c.request);
      }
      co_await script_(c);
      co_await c.close();
    } catch (const std::exception&) {
      // The client went away or failed the handshake; that is what some tests want.
    }
    ++ended_;
  }

  script script_;             ///< Declared before ioc_: coroutine frames refer to it.
  ssl::context* tls_;         ///< Null for plain HTTP.
  bool read_request_;         ///< Read a request before running the script.
  net::io_context ioc_;       ///< Run by thread_ only.
  tcp::acceptor acceptor_;    ///< On 127.0.0.1, ephemeral port.
  std::uint16_t port_;        ///< acceptor_'s port.
  mutable std::mutex mutex_;  ///< Guards requests_ and server_names_.
  std::vector<http::request<http::string_body>> requests_;  ///< In arrival order.
  std::vector<std::string> server_names_;                   ///< SNI per TLS handshake.
  std::atomic<int> ended_{0};                               ///< Sessions finished.
  std::thread thread_;                                      ///< Runs ioc_.
};

/// A complete response with a Content-Length; extra holds further "Name: value\r\n" lines.
std::string response(int status, std::string_view reason, std::string_view body,
                     std::string_view extra = "") {
  return fmt::format("HTTP/1.1 {} {}\r\nContent-Length: {}\r\nConnection: close\r\n{}\r\n{}",
                     status, reason, body.size(), extra, body);
}

/// A request for url with a short per-operation timeout.
fetch_request get(std::string url, std::chrono::milliseconds timeout = 3s) {
  fetch_request r;
  r.url = std::move(url);
  r.timeout = timeout;
  return r;
}

/// A POST of body to url with a short per-operation timeout.
fetch_request post(std::string url, std::string body,
                   std::vector<std::pair<std::string, std::string>> headers = {}) {
  fetch_request r = get(std::move(url));
  r.method = "POST";
  r.body = std::move(body);
  r.headers = std::move(headers);
  return r;
}

/// One fetch driven to completion on a private io_context.
struct outcome {
  fetch_result result;
  int calls = 0;             ///< How often done ran.
  bool inline_call = false;  ///< done ran inside async_fetch.
  bool on_executor = false;  ///< done ran on the client's executor.
  std::chrono::milliseconds elapsed{};
};

/// Runs one fetch of req and returns what done saw.
outcome fetch(fetch_request req) {
  net::io_context ioc;
  http_client client(ioc.get_executor());
  outcome out;
  const auto t0 = std::chrono::steady_clock::now();
  client.async_fetch(std::move(req), [&](fetch_result r) {
    ++out.calls;
    out.on_executor = ioc.get_executor().running_in_this_thread();
    out.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - t0);
    out.result = std::move(r);
  });
  out.inline_call = out.calls != 0;
  ioc.run_for(30s);
  return out;
}

/// A directory under the system temp dir, removed with its contents.
class temp_dir {
 public:
  /// Creates a fresh, empty directory.
  temp_dir() {
    std::string pattern = (fs::temp_directory_path() / "somrated-client-XXXXXX").string();
    if (!::mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  /// Removes the directory and everything in it.
  ~temp_dir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;

  /// The directory.
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

/// Writes bytes to path.
void write_file(const fs::path& path, std::string_view bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

/// Runs a shell command with its output discarded; true on exit status 0.
bool run(const std::string& command) {
  return std::system(("(" + command + ") >/dev/null 2>&1").c_str()) == 0;
}

/// Creates a throwaway CA (ca.crt, ca.key) in dir with the openssl command-line tool.
bool make_ca(const fs::path& dir) {
  return run(fmt::format(
      "cd '{}' && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -noenc "
      "-keyout ca.key -out ca.crt -days 2 -subj '/CN=somrated test CA' "
      "-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign",
      dir.string()));
}

/// Issues NAME.crt/NAME.key from the CA in dir for subjectAltName san.
bool issue(const fs::path& dir, std::string_view name, std::string_view san) {
  write_file(dir / fmt::format("{}.ext", name),
             fmt::format("subjectAltName={}\nbasicConstraints=CA:FALSE\n"
                         "extendedKeyUsage=serverAuth\n",
                         san));
  return run(
      fmt::format("cd '{0}' && openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -noenc "
                  "-keyout {1}.key -out {1}.csr -subj '/CN={1}' && "
                  "openssl x509 -req -in {1}.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 "
                  "-extfile {1}.ext -out {1}.crt",
                  dir.string(), name));
}

/// A TLS server context presenting NAME.crt from dir.
ssl::context server_context(const fs::path& dir, std::string_view name) {
  ssl::context ctx(ssl::context::tls_server);
  ctx.use_certificate_chain_file((dir / fmt::format("{}.crt", name)).string());
  ctx.use_private_key_file((dir / fmt::format("{}.key", name)).string(), ssl::context::pem);
  return ctx;
}

/// True when "localhost" resolves to 127.0.0.1 and nothing else, so tests that use the
/// name never reach another address.
bool localhost_is_loopback_only() {
  net::io_context ioc;
  tcp::resolver resolver(ioc);
  boost::system::error_code ec;
  const auto results = resolver.resolve("localhost", "1", ec);
  if (ec || results.empty()) return false;
  for (const auto& e : results)
    if (e.endpoint().address() != net::ip::make_address("127.0.0.1")) return false;
  return true;
}

/// A script answering 200 with body.
script serve(std::string body, std::string extra = "") {
  return [body, extra](test_conn& c) -> net::awaitable<void> {
    co_await c.send(response(200, "OK", body, extra));
  };
}

}  // namespace

TEST_CASE("http_client fetches a 200 and sends a well-formed request") {
  test_server srv(serve("hello",
                        "ETag: \"v1\"\r\nLast-Modified: Tue, 10 Jun 2025 08:00:00 GMT\r\n"
                        "Content-Type: text/html; charset=windows-1251\r\n"));

  SUBCASE("body, validators and the request headers") {
    const auto url = srv.url("/english/?page=1");
    const auto out = fetch(get(url));
    CHECK(out.calls == 1);
    CHECK_FALSE(out.inline_call);
    CHECK(out.on_executor);
    CHECK(out.result.ok());
    CHECK(out.result.error == "");
    CHECK(out.result.status == 200);
    CHECK_FALSE(out.result.not_modified);
    CHECK(out.result.body == "hello");
    CHECK(out.result.etag == "\"v1\"");
    CHECK(out.result.last_modified == "Tue, 10 Jun 2025 08:00:00 GMT");
    CHECK(out.result.content_type == "text/html; charset=windows-1251");
    CHECK(out.result.final_url == url);

    const auto seen = srv.requests();
    REQUIRE(seen.size() == 1);
    const auto& req = seen[0];
    CHECK(req.method() == http::verb::get);
    CHECK(req.target() == "/english/?page=1");
    CHECK(req.version() == 11);
    CHECK(req[http::field::host] == fmt::format("127.0.0.1:{}", srv.port()));
    CHECK(req[http::field::user_agent] ==
          fmt::format("somrated/{} (exchange-rate tracker)", somrated::version));
    CHECK(req[http::field::accept] == "text/html,application/xml;q=0.9,*/*;q=0.8");
    CHECK(req[http::field::accept_encoding] == "identity");
    CHECK(req[http::field::connection] == "close");
    CHECK(req.count(http::field::if_none_match) == 0);
    CHECK(req.count(http::field::if_modified_since) == 0);
  }
  SUBCASE("an empty path is sent as /") {
    const auto out = fetch(get(srv.url("")));
    CHECK(out.result.ok());
    REQUIRE(srv.requests().size() == 1);
    CHECK(srv.requests()[0].target() == "/");
  }
  SUBCASE("a configured User-Agent replaces the default") {
    auto req = get(srv.url("/"));
    req.user_agent = "rates-bot/2";
    CHECK(fetch(req).result.ok());
    REQUIRE(srv.requests().size() == 1);
    CHECK(srv.requests()[0][http::field::user_agent] == "rates-bot/2");
  }
}

TEST_CASE("http_client sends validators and reports 304 as not modified") {
  test_server srv([](test_conn& c) -> net::awaitable<void> {
    if (c.request[http::field::if_none_match] == "\"v1\"") {
      co_await c.send("HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nConnection: close\r\n\r\n");
    } else if (!c.request[http::field::if_modified_since].empty()) {
      co_await c.send("HTTP/1.1 304 Not Modified\r\nConnection: close\r\n\r\n");
    } else {
      co_await c.send(response(304, "Not Modified", ""));
    }
  });

  SUBCASE("If-None-Match") {
    auto req = get(srv.url("/"));
    req.etag = "\"v1\"";
    const auto out = fetch(req);
    CHECK(out.result.ok());
    CHECK(out.result.not_modified);
    CHECK(out.result.status == 304);
    CHECK(out.result.body.empty());
    CHECK(out.result.etag == "\"v1\"");
    REQUIRE(srv.requests().size() == 1);
    CHECK(srv.requests()[0][http::field::if_none_match] == "\"v1\"");
  }
  SUBCASE("If-Modified-Since; validators the 304 omits are kept") {
    auto req = get(srv.url("/"));
    req.last_modified = "Tue, 10 Jun 2025 08:00:00 GMT";
    const auto out = fetch(req);
    CHECK(out.result.ok());
    CHECK(out.result.not_modified);
    CHECK(out.result.last_modified == "Tue, 10 Jun 2025 08:00:00 GMT");
    CHECK(out.result.etag == "");
    REQUIRE(srv.requests().size() == 1);
    CHECK(srv.requests()[0][http::field::if_modified_since] == "Tue, 10 Jun 2025 08:00:00 GMT");
    CHECK(srv.requests()[0].count(http::field::if_none_match) == 0);
  }
  SUBCASE("a 304 to an unconditional request is an error") {
    const auto out = fetch(get(srv.url("/")));
    CHECK_FALSE(out.result.ok());
    CHECK_FALSE(out.result.not_modified);
    CHECK(out.result.status == 304);
    CHECK(out.result.error == "HTTP 304 Not Modified to an unconditional request");
  }
}

TEST_CASE("http_client reports HTTP error statuses") {
  test_server srv([](test_conn& c) -> net::awaitable<void> {
    if (c.request.target() == "/500") {
      co_await c.send(response(500, "Internal Server Error", "oops"));
    } else if (c.request.target() == "/503") {
      co_await c.send(response(503, "Service Unavailable", "busy", "Retry-After: 5\r\n"));
    } else {
      co_await c.send("HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n");
    }
  });

  SUBCASE("500, with the body the server sent") {
    const auto out = fetch(get(srv.url("/500")));
    CHECK_FALSE(out.result.ok());
    CHECK(out.result.error == "HTTP 500 Internal Server Error");
    CHECK(out.result.status == 500);
    CHECK(out.result.body == "oops");
    CHECK(out.result.retry_after == "");
    CHECK(out.calls == 1);
  }
  SUBCASE("503 with Retry-After") {
    const auto out = fetch(get(srv.url("/503")));
    CHECK(out.result.error == "HTTP 503 Service Unavailable (Retry-After: 5)");
    CHECK(out.result.status == 503);
    CHECK(out.result.retry_after == "5");
    CHECK(out.result.body == "busy");
  }
  SUBCASE("an empty reason phrase falls back to the standard one") {
    const auto out = fetch(get(srv.url("/missing")));
    CHECK(out.result.error == "HTTP 404 Not Found");
    CHECK(out.result.status == 404);
  }
}

TEST_CASE("parse_retry_after reads delay-seconds and HTTP dates") {
  using somrated::parse_retry_after;
  CHECK(parse_retry_after("5") == std::chrono::milliseconds(5s));
  CHECK(parse_retry_after(" 120 ") == std::chrono::milliseconds(120s));
  CHECK(parse_retry_after("0") == std::chrono::milliseconds(0));
  CHECK(parse_retry_after("99999999999") ==
        std::chrono::milliseconds(std::chrono::hours(24 * 365)));
  CHECK(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT") == std::chrono::milliseconds(0));
  const auto future = parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT");
  REQUIRE(future.has_value());
  CHECK(*future > std::chrono::hours(24 * 365));
  CHECK_FALSE(parse_retry_after("").has_value());
  CHECK_FALSE(parse_retry_after("-5").has_value());
  CHECK_FALSE(parse_retry_after("soon").has_value());
  CHECK_FALSE(parse_retry_after("Sun, 31 Feb 2021 08:49:37 GMT").has_value());
}

TEST_CASE("http_client follows redirects within a bound") {
  test_server srv([](test_conn& c) -> net::awaitable<void> {
    const std::string target(c.request.target());
    if (target == "/start") {
      co_await c.send(response(302, "Found", "", "Location: next?x=1\r\n"));
    } else if (target == "/abs") {
      co_await c.send(response(301, "Moved", "",
                               fmt::format("Location: http://127.0.0.1:{}/next?x=1\r\n", c.port)));
    } else if (target.starts_with("/code/")) {
      co_await c.send(
          response(std::stoi(target.substr(6)), "Redirect", "", "Location: /next?x=1#frag\r\n"));
    } else if (target == "/loop") {
      co_await c.send(response(302, "Found", "", "Location: /loop\r\n"));
    } else if (target == "/nowhere") {
      co_await c.send(response(302, "Found", ""));
    } else if (target == "/tofile") {
      co_await c.send(response(302, "Found", "", "Location: file:///etc/hostname\r\n"));
    } else if (target == "/next?x=1") {
      co_await c.send(response(200, "OK", "landed"));
    } else {
      co_await c.send(response(404, "Not Found", ""));
    }
  });

  SUBCASE("relative Location") {
    const auto out = fetch(get(srv.url("/start")));
    CHECK(out.result.ok());
    CHECK(out.result.body == "landed");
    CHECK(out.result.status == 200);
    CHECK(out.result.final_url == srv.url("/next?x=1"));
    const auto seen = srv.requests();
    REQUIRE(seen.size() == 2);
    CHECK(seen[1].target() == "/next?x=1");
  }
  SUBCASE("absolute Location") {
    const auto out = fetch(get(srv.url("/abs")));
    CHECK(out.result.ok());
    CHECK(out.result.body == "landed");
    CHECK(out.result.final_url == srv.url("/next?x=1"));
  }
  SUBCASE("every redirect status") {
    for (int code : {301, 302, 303, 307, 308}) {
      CAPTURE(code);
      const auto out = fetch(get(srv.url(fmt::format("/code/{}", code))));
      CHECK(out.result.ok());
      CHECK(out.result.body == "landed");
      CHECK(out.result.final_url == srv.url("/next?x=1"));
    }
  }
  SUBCASE("a loop ends after max_redirects") {
    const auto out = fetch(get(srv.url("/loop")));
    CHECK_FALSE(out.result.ok());
    CHECK(out.result.error == "too many redirects (5)");
    CHECK(out.result.status == 302);
    CHECK(srv.requests().size() == 6);
  }
  SUBCASE("max_redirects = 0 follows none") {
    auto req = get(srv.url("/start"));
    req.max_redirects = 0;
    const auto out = fetch(req);
    CHECK(out.result.error == "too many redirects (0)");
    CHECK(srv.requests().size() == 1);
  }
  SUBCASE("a redirect without Location") {
    const auto out = fetch(get(srv.url("/nowhere")));
    CHECK(out.result.error == "HTTP 302 redirect without a Location");
    CHECK(out.result.status == 302);
  }
  SUBCASE("a redirect to a local file is refused") {
    const auto out = fetch(get(srv.url("/tofile")));
    CHECK(out.result.error == "redirect to unsupported URL scheme 'file'");
    CHECK(out.result.body.empty());
    CHECK(srv.requests().size() == 1);
  }
}

TEST_CASE("http_client caps the body") {
  test_server srv([](test_conn& c) -> net::awaitable<void> {
    const std::string target(c.request.target());
    if (target == "/length/2000") {
      // The header alone must be enough to fail: the body never comes.
      co_await c.send("HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n");
      co_await c.hold();
    } else if (target == "/length/1000") {
      co_await c.send(response(200, "OK", std::string(1000, 'b')));
    } else if (target.starts_with("/chunked/")) {
      const int chunks = std::stoi(target.substr(9));
      co_await c.send("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
      for (int i = 0; i < chunks; ++i)
        co_await c.send(fmt::format("12c\r\n{}\r\n", std::string(300, static_cast<char>('0' + i))));
      co_await c.send("0\r\n\r\n");
    } else if (target.starts_with("/eof/")) {
      co_await c.send("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
      co_await c.send(std::string(std::stoul(target.substr(5)), 'e'));
    }
  });
  auto capped = [&](std::string_view path) {
    auto req = get(srv.url(path));
    req.max_body = 1000;
    return fetch(req);
  };

  SUBCASE("Content-Length above the cap fails before the body is read") {
    const auto out = capped("/length/2000");
    CHECK(out.result.error == "body exceeds 1000 bytes");
    CHECK(out.result.status == 200);
    CHECK(out.result.body.empty());
    CHECK(out.elapsed < 2s);
  }
  SUBCASE("exactly at the cap is fine") {
    const auto out = capped("/length/1000");
    CHECK(out.result.ok());
    CHECK(out.result.body == std::string(1000, 'b'));
  }
  SUBCASE("chunked above the cap") {
    const auto out = capped("/chunked/5");
    CHECK(out.result.error == "body exceeds 1000 bytes");
    CHECK(out.result.status == 200);
  }
  SUBCASE("chunked within the cap is reassembled") {
    const auto out = capped("/chunked/3");
    CHECK(out.result.ok());
    CHECK(out.result.body == std::string(300, '0') + std::string(300, '1') + std::string(300, '2'));
  }
  SUBCASE("a body delimited by the end of the connection") {
    CHECK(capped("/eof/700").result.body == std::string(700, 'e'));
    CHECK(capped("/eof/1500").result.error == "body exceeds 1000 bytes");
  }
}

TEST_CASE("http_client puts a deadline on every step") {
  SUBCASE("a server that never answers") {
    test_server srv([](test_conn& c) -> net::awaitable<void> { co_await c.hold(); });
    const auto out = fetch(get(srv.url("/"), 300ms));
    CHECK(
        out.result.error ==
        fmt::format("read response header from 127.0.0.1:{}: timed out after 300 ms", srv.port()));
    CHECK(out.result.status == 0);
    CHECK(out.elapsed >= 250ms);
    CHECK(out.elapsed < 3s);
  }
  SUBCASE("a TLS peer that never completes the handshake") {
    test_server srv([](test_conn& c) -> net::awaitable<void> { co_await c.hold(); }, nullptr,
                    false);
    const auto out = fetch(get(fmt::format("https://127.0.0.1:{}/", srv.port()), 300ms));
    CHECK(out.result.error ==
          fmt::format("TLS handshake with 127.0.0.1:{}: timed out after 300 ms", srv.port()));
    CHECK(out.elapsed < 3s);
  }
  SUBCASE("a body trickled one byte per 100 ms hits the total deadline") {
    test_server srv([](test_conn& c) -> net::awaitable<void> {
      co_await c.send("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n");
      for (int i = 0; i < 100; ++i) {
        co_await c.pause(100ms);
        co_await c.send("x");
      }
    });
    const auto out = fetch(get(srv.url("/"), 300ms));
    CHECK(
        out.result.error ==
        fmt::format("read body from 127.0.0.1:{}: total deadline of 1200 ms exceeded", srv.port()));
    CHECK(out.result.status == 200);
    CHECK(out.result.body.empty());
    CHECK(out.elapsed >= 1100ms);
    CHECK(out.elapsed < 4s);
  }
}

TEST_CASE("http_client reports connection failures") {
  SUBCASE("connection refused") {
    std::uint16_t port = 0;
    {
      net::io_context ioc;
      tcp::acceptor a(ioc, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0));
      port = a.local_endpoint().port();
    }
    const auto out = fetch(get(fmt::format("http://127.0.0.1:{}/", port)));
    CHECK(out.result.error == fmt::format("connect 127.0.0.1:{}: Connection refused", port));
    CHECK(out.result.status == 0);
    CHECK(out.calls == 1);
  }
  SUBCASE("the connection drops mid-body") {
    test_server srv([](test_conn& c) -> net::awaitable<void> {
      co_await c.send("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789");
    });
    const auto out = fetch(get(srv.url("/")));
    CHECK(out.result.error ==
          fmt::format("read body from 127.0.0.1:{}: partial message", srv.port()));
    CHECK(out.result.body.empty());
  }
  SUBCASE("a header larger than 64 KiB") {
    test_server srv([](test_conn& c) -> net::awaitable<void> {
      co_await c.send(
          response(200, "OK", "x", fmt::format("X-Big: {}\r\n", std::string(70000, 'h'))));
    });
    const auto out = fetch(get(srv.url("/")));
    CHECK(out.result.error ==
          fmt::format("read response header from 127.0.0.1:{}: response header exceeds 65536 bytes",
                      srv.port()));
  }
  SUBCASE("not HTTP at all") {
    test_server srv(
        [](test_conn& c) -> net::awaitable<void> { co_await c.send("SSH-2.0-x\r\n\r\n"); });
    const auto out = fetch(get(srv.url("/")));
    CHECK(out.result.error.starts_with(
        fmt::format("read response header from 127.0.0.1:{}: ", srv.port())));
    CHECK(out.result.status == 0);
  }
}

TEST_CASE("http_client reads file:// URLs") {
  temp_dir dir;
  const fs::path file = dir.path() / "nbkr daily.xml";
  write_file(file, "<CurrencyRates/>");
  const std::string encoded = "file://" + (dir.path() / "nbkr%20daily.xml").string();

  SUBCASE("an existing file, percent-decoded path") {
    const auto out = fetch(get(encoded));
    CHECK(out.calls == 1);
    CHECK_FALSE(out.inline_call);
    CHECK(out.on_executor);
    CHECK(out.result.ok());
    CHECK(out.result.body == "<CurrencyRates/>");
    CHECK(out.result.status == 0);
    CHECK(out.result.final_url == encoded);
  }
  SUBCASE("file://localhost/ names the same file") {
    const auto out = fetch(get("file://localhost" + (dir.path() / "nbkr%20daily.xml").string()));
    CHECK(out.result.body == "<CurrencyRates/>");
  }
  SUBCASE("a remote host is refused") {
    const auto out =
        fetch(get("file://server.example" + (dir.path() / "nbkr%20daily.xml").string()));
    CHECK(out.result.error == "file URL with a remote host 'server.example'");
  }
  SUBCASE("missing") {
    const auto missing = dir.path() / "absent.xml";
    const auto out = fetch(get("file://" + missing.string()));
    CHECK(out.result.error == fmt::format("open {}: No such file or directory", missing.string()));
    CHECK(out.calls == 1);
  }
  SUBCASE("a directory") {
    const auto out = fetch(get("file://" + dir.path().string()));
    CHECK(out.result.error == fmt::format("read {}: Is a directory", dir.path().string()));
  }
  SUBCASE("larger than max_body") {
    auto req = get(encoded);
    req.max_body = 15;
    CHECK(fetch(req).result.error == "file exceeds 15 bytes");
    req.max_body = 16;
    CHECK(fetch(req).result.body == "<CurrencyRates/>");
  }
}

TEST_CASE("http_client rejects bad requests without touching the network") {
  auto error_for = [](fetch_request req) {
    const auto out = fetch(std::move(req));
    CHECK(out.calls == 1);
    CHECK_FALSE(out.inline_call);
    return out.result.error;
  };
  CHECK(error_for(get("ftp://127.0.0.1/rates")) == "unsupported URL scheme 'ftp'");
  CHECK(contains(error_for(get("not a url")), "invalid URL 'not a url'"));
  CHECK(error_for(get("http:///path")) == "URL without a host 'http:///path'");
  CHECK(error_for(get("http://127.0.0.1:99999/")) == "invalid port '99999' in URL");
  auto injected = get("http://127.0.0.1:9/");
  injected.etag = "\"v1\"\r\nX-Evil: 1";
  CHECK(error_for(injected) == "invalid request header value (CR, LF or NUL)");
  CHECK(error_for(get("http://127.0.0.1:9/", 0ms)) == "invalid timeout of 0 ms");
}

TEST_CASE("http_client sends POST requests") {
  test_server srv([](test_conn& c) -> net::awaitable<void> {
    const std::string target(c.request.target());
    if (target.starts_with("/hook")) {
      co_await c.send(response(202, "Accepted", "queued", "Retry-After: 1\r\n"));
    } else if (target == "/busy") {
      co_await c.send(response(503, "Service Unavailable", "try later",
                               "Retry-After: Wed, 21 Oct 2025 07:28:00 GMT\r\n"));
    } else if (target == "/bad") {
      co_await c.send(response(400, "Bad Request", "{\"error\":\"missing text\"}"));
    } else if (target == "/chunked-404") {
      co_await c.send("HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n");
      co_await c.send("3\r\nno \r\n4\r\nsuch\r\n0\r\n\r\n");
    } else if (target == "/moved") {
      co_await c.send(response(302, "Found", "", "Location: /hook\r\n"));
    } else if (target == "/see-other") {
      co_await c.send(response(303, "See Other", "", "Location: /hook\r\n"));
    } else if (target == "/huge-error") {
      co_await c.send(
          "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 5000\r\n"
          "Retry-After: 30\r\n\r\n");
      co_await c.hold();
    } else if (target == "/huge-chunked-error") {
      co_await c.send("HTTP/1.1 502 Bad Gateway\r\nTransfer-Encoding: chunked\r\n\r\n");
      for (int i = 0; i < 5; ++i)
        co_await c.send(fmt::format("12c\r\n{}\r\n", std::string(300, 'x')));
      co_await c.send("0\r\n\r\n");
    } else if (target == "/stalled-error") {
      co_await c.send("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 100\r\n\r\nhalf");
      co_await c.hold();
    } else {
      co_await c.send(response(200, "OK", "ok"));
    }
  });

  SUBCASE("the body and headers arrive exactly") {
    const std::string body = "{\"eventId\":\"e-1\",\"text\":\"USD > 90\\r\\n\u00e9\"}";
    const auto out = fetch(post(srv.url("/hook?x=1"), body,
                                {{"Content-Type", "application/json"},
                                 {"Authorization", "Bearer abc"},
                                 {"X-Somrated-Event-Id", "e-1"},
                                 {"X-Tag", "one"},
                                 {"X-Tag", "two"}}));
    CHECK(out.result.error == "");
    CHECK(out.result.ok());
    CHECK(out.result.status == 202);
    CHECK(out.result.body == "queued");
    CHECK(out.result.retry_after == "1");

    const auto seen = srv.requests();
    REQUIRE(seen.size() == 1);
    const auto& req = seen[0];
    CHECK(req.method() == http::verb::post);
    CHECK(req.target() == "/hook?x=1");
    CHECK(req.body() == body);
    CHECK(req[http::field::content_length] == std::to_string(body.size()));
    CHECK(req[http::field::content_type] == "application/json");
    CHECK(req[http::field::authorization] == "Bearer abc");
    CHECK(req["X-Somrated-Event-Id"] == "e-1");
    CHECK(req[http::field::host] == fmt::format("127.0.0.1:{}", srv.port()));
    CHECK(req[http::field::user_agent] ==
          fmt::format("somrated/{} (exchange-rate tracker)", somrated::version));
    CHECK(req[http::field::accept] == "*/*");
    CHECK(req[http::field::connection] == "close");
    CHECK(req.count(http::field::transfer_encoding) == 0);
    std::vector<std::string> tags;
    for (const auto& f : req) {
      if (f.name_string() == "X-Tag") tags.emplace_back(f.value());
    }
    CHECK(tags == std::vector<std::string>{"one", "two"});
  }
  SUBCASE("an empty body is sent with Content-Length 0") {
    const auto out = fetch(post(srv.url("/"), ""));
    CHECK(out.result.ok());
    REQUIRE(srv.requests().size() == 1);
    CHECK(srv.requests()[0][http::field::content_length] == "0");
    CHECK(srv.requests()[0].body() == "");
  }
  SUBCASE("a header the caller names replaces the default") {
    const auto out = fetch(post(srv.url("/"), "x", {{"accept", "application/json"}}));
    CHECK(out.result.ok());
    REQUIRE(srv.requests().size() == 1);
    CHECK(srv.requests()[0].count(http::field::accept) == 1);
    CHECK(srv.requests()[0][http::field::accept] == "application/json");
  }
  SUBCASE("503 keeps its body and Retry-After") {
    const auto out = fetch(post(srv.url("/busy"), "x"));
    CHECK_FALSE(out.result.ok());
    CHECK(out.result.status == 503);
    CHECK(out.result.error ==
          "HTTP 503 Service Unavailable (Retry-After: Wed, 21 Oct 2025 07:28:00 GMT)");
    CHECK(out.result.retry_after == "Wed, 21 Oct 2025 07:28:00 GMT");
    CHECK(out.result.body == "try later");
  }
  SUBCASE("a 4xx keeps its body, chunked or not") {
    const auto bad = fetch(post(srv.url("/bad"), "{}"));
    CHECK(bad.result.error == "HTTP 400 Bad Request");
    CHECK(bad.result.status == 400);
    CHECK(bad.result.body == "{\"error\":\"missing text\"}");
    CHECK(bad.result.retry_after == "");
    const auto missing = fetch(post(srv.url("/chunked-404"), "{}"));
    CHECK(missing.result.error == "HTTP 404 Not Found");
    CHECK(missing.result.body == "no such");
  }
  SUBCASE("redirects are not followed") {
    for (const std::string path : {"/moved", "/see-other"}) {
      CAPTURE(path);
      const auto out = fetch(post(srv.url(path), "x"));
      CHECK_FALSE(out.result.ok());
      CHECK(out.result.final_url == srv.url(path));
    }
    CHECK(fetch(post(srv.url("/moved"), "x")).result.error ==
          "HTTP 302 Found (redirects are not followed for POST)");
    CHECK(fetch(post(srv.url("/moved"), "x")).result.status == 302);
    CHECK(fetch(post(srv.url("/see-other"), "x")).result.error ==
          "HTTP 303 See Other (redirects are not followed for POST)");
    const auto seen = srv.requests();
    CHECK(std::none_of(seen.begin(), seen.end(),
                       [](const auto& r) { return r.target() == "/hook"; }));
  }
  SUBCASE("an error body over max_body keeps the status and the error, not the body") {
    auto req = post(srv.url("/huge-error"), "x");
    req.max_body = 1000;
    const auto declared = fetch(req);
    CHECK(declared.result.error == "HTTP 500 Internal Server Error (Retry-After: 30)");
    CHECK(declared.result.status == 500);
    CHECK(declared.result.retry_after == "30");
    CHECK(declared.result.body.empty());
    CHECK(declared.elapsed < 2s);
    req.url = srv.url("/huge-chunked-error");
    const auto chunked = fetch(req);
    CHECK(chunked.result.error == "HTTP 502 Bad Gateway");
    CHECK(chunked.result.status == 502);
    CHECK(chunked.result.body.empty());
  }
  SUBCASE("an error body that stalls is bounded by the read deadline") {
    auto req = post(srv.url("/stalled-error"), "x");
    req.timeout = 300ms;
    const auto out = fetch(req);
    CHECK(out.result.error == "HTTP 503 Service Unavailable");
    CHECK(out.result.status == 503);
    CHECK(out.result.body.empty());
    CHECK(out.elapsed >= 250ms);
    CHECK(out.elapsed < 3s);
  }
}

TEST_CASE("http_client refuses a bad POST before connecting") {
  // A listener that never accepts: a connection attempt would wait in its queue.
  net::io_context ioc;
  tcp::acceptor listener(ioc, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0));
  const auto url = fmt::format("http://127.0.0.1:{}/hook", listener.local_endpoint().port());
  auto error_for = [&](fetch_request req) {
    const auto out = fetch(std::move(req));
    CHECK(out.calls == 1);
    CHECK(out.result.status == 0);
    return out.result.error;
  };

  CHECK(error_for(post(url, "x", {{"X-Evil", "a\r\nX-Injected: 1"}})) ==
        "invalid value for request header 'X-Evil' (CR, LF or NUL)");
  CHECK(error_for(post(url, "x", {{"X-Evil", "a\nb"}})) ==
        "invalid value for request header 'X-Evil' (CR, LF or NUL)");
  CHECK(error_for(post(url, "x", {{"X-Evil", std::string("a\0b", 3)}})) ==
        "invalid value for request header 'X-Evil' (CR, LF or NUL)");
  CHECK(error_for(post(url, "x", {{"X-Evil\r\nX-Injected", "1"}})) ==
        "invalid request header name 'X-Evil??X-Injected'");
  CHECK(error_for(post(url, "x", {{"Bad Name", "1"}})) == "invalid request header name 'Bad Name'");
  CHECK(error_for(post(url, "x", {{"X-Colon:", "1"}})) == "invalid request header name 'X-Colon:'");
  CHECK(error_for(post(url, "x", {{"", "1"}})) == "invalid request header name ''");
  CHECK(error_for(post(url, "x", {{"content-length", "1"}})) ==
        "request header 'Content-Length' is set by the client");
  CHECK(error_for(post(url, "x", {{"Host", "other.example"}})) ==
        "request header 'Host' is set by the client");
  CHECK(error_for(post(url, "x", {{"Transfer-Encoding", "chunked"}})) ==
        "request header 'Transfer-Encoding' is set by the client");
  auto put = post(url, "x");
  put.method = "PUT";
  CHECK(error_for(put) == "unsupported method 'PUT'");
  put.method = "post";
  CHECK(error_for(put) == "unsupported method 'post'");
  auto get_with_body = get(url);
  get_with_body.body = "x";
  CHECK(error_for(get_with_body) == "a GET request cannot carry a body");
  auto get_with_header = get(url);
  get_with_header.headers = {{"X-Evil", "a\r\nb"}};
  CHECK(error_for(get_with_header) == "invalid value for request header 'X-Evil' (CR, LF or NUL)");

  listener.non_blocking(true);
  boost::system::error_code ec;
  tcp::socket pending(ioc);
  listener.accept(pending, ec);
  CHECK(ec == net::error::would_block);
}

TEST_CASE("http_client sends file:// URLs GET only") {
  temp_dir dir;
  write_file(dir.path() / "f", "x");
  const auto out = fetch(post("file://" + (dir.path() / "f").string(), "payload"));
  CHECK(out.result.error == "file:// URLs take GET only, not POST");
  CHECK(out.calls == 1);
}

TEST_CASE("fetch URLs are taken apart for the wire") {
  using somrated::detail::parse_fetch_url;
  using somrated::detail::resolve_redirect;
  using somrated::detail::url_scheme;

  SUBCASE("IPv6 literal with a port") {
    const auto p = parse_fetch_url("http://[::1]:8080/x?y=1#frag");
    REQUIRE(p.target);
    CHECK(p.target->scheme == url_scheme::http);
    CHECK(p.target->host == "::1");
    CHECK(p.target->port == "8080");
    CHECK(p.target->authority == "[::1]:8080");
    CHECK(p.target->host_header == "[::1]:8080");
    CHECK(p.target->target == "/x?y=1");
    CHECK(p.target->ip_literal);
  }
  SUBCASE("default ports and names") {
    const auto p = parse_fetch_url("https://24.kg");
    REQUIRE(p.target);
    CHECK(p.target->port == "443");
    CHECK(p.target->host == "24.kg");
    CHECK(p.target->authority == "24.kg:443");
    CHECK(p.target->host_header == "24.kg");
    CHECK(p.target->target == "/");
    CHECK_FALSE(p.target->ip_literal);
    const auto v6 = parse_fetch_url("https://[2001:db8::1]/");
    REQUIRE(v6.target);
    CHECK(v6.target->authority == "[2001:db8::1]:443");
    CHECK(v6.target->host_header == "[2001:db8::1]");
    CHECK(v6.target->ip_literal);
    REQUIRE(parse_fetch_url("http://nbkr.kg/XML/daily.xml").target);
    CHECK(parse_fetch_url("http://nbkr.kg/XML/daily.xml").target->port == "80");
  }
  SUBCASE("redirect resolution") {
    const auto base = parse_fetch_url("https://24.kg/english/news/?p=2");
    REQUIRE(base.target);
    auto url_of = [&](std::string_view location) {
      auto r = resolve_redirect(*base.target, location);
      return r.target ? r.target->url : "error: " + r.error;
    };
    CHECK(url_of("../ru/") == "https://24.kg/english/ru/");
    CHECK(url_of("/kg/") == "https://24.kg/kg/");
    CHECK(url_of("?p=3") == "https://24.kg/english/news/?p=3");
    CHECK(url_of("//www.24.kg/x") == "https://www.24.kg/x");
    CHECK(url_of("https://[::1]:81/y") == "https://[::1]:81/y");
    CHECK(url_of("http://24.kg/english/") ==
          "error: refusing a redirect from https to plain http ('http://24.kg/english/')");
    const auto plain = parse_fetch_url("http://24.kg/");
    REQUIRE(plain.target);
    const auto upgraded = resolve_redirect(*plain.target, "https://24.kg/english/");
    REQUIRE(upgraded.target);
    CHECK(upgraded.target->url == "https://24.kg/english/");
    CHECK(url_of("file:///etc/passwd") == "error: redirect to unsupported URL scheme 'file'");
    CHECK(url_of("ftp://24.kg/") == "error: redirect to unsupported URL scheme 'ftp'");
    CHECK(url_of("http://bad host/").starts_with("error: invalid Location"));
  }
  SUBCASE("peer text is made printable") {
    CHECK(somrated::detail::excerpt("a\r\nb\x7f", 10) == "a??b?");
    CHECK(somrated::detail::excerpt("abcdef", 3) == "abc...");
  }
}

TEST_CASE("http_client verifies HTTPS peers") {
  REQUIRE(run("openssl version"));
  REQUIRE(localhost_is_loopback_only());
  temp_dir dir;
  REQUIRE(make_ca(dir.path()));
  REQUIRE(issue(dir.path(), "localhost", "DNS:localhost,IP:127.0.0.1"));
  REQUIRE(issue(dir.path(), "other", "DNS:other.example"));
  const std::string ca = (dir.path() / "ca.crt").string();

  SUBCASE("trusted through ca_file, with SNI") {
    auto tls = server_context(dir.path(), "localhost");
    test_server srv(serve("secure"), &tls);
    auto req = get(srv.url("/x", "localhost"));
    req.ca_file = ca;
    const auto out = fetch(req);
    CHECK(out.result.error == "");
    CHECK(out.result.body == "secure");
    CHECK(out.result.status == 200);
    CHECK(srv.server_names() == std::vector<std::string>{"localhost"});
    REQUIRE(srv.requests().size() == 1);
    CHECK(srv.requests()[0][http::field::host] == fmt::format("localhost:{}", srv.port()));
  }
  SUBCASE("a POST over TLS") {
    auto tls = server_context(dir.path(), "localhost");
    test_server srv(serve("{\"ok\":true}"), &tls);
    auto req = post(srv.url("/bot123:ABC/sendMessage", "localhost"), "{\"text\":\"hi\"}",
                    {{"Content-Type", "application/json"}});
    req.ca_file = ca;
    const auto out = fetch(req);
    CHECK(out.result.error == "");
    CHECK(out.result.status == 200);
    CHECK(out.result.body == "{\"ok\":true}");
    const auto requests = srv.requests();
    REQUIRE(requests.size() == 1);
    const auto& seen = requests[0];
    CHECK(seen.method() == http::verb::post);
    CHECK(seen.target() == "/bot123:ABC/sendMessage");
    CHECK(seen[http::field::content_type] == "application/json");
    CHECK(seen.body() == "{\"text\":\"hi\"}");
  }
  SUBCASE("an IP literal is checked against the IP SAN and gets no SNI") {
    auto tls = server_context(dir.path(), "localhost");
    test_server srv(serve("secure"), &tls);
    auto req = get(srv.url("/"));
    req.ca_file = ca;
    const auto out = fetch(req);
    CHECK(out.result.error == "");
    CHECK(out.result.body == "secure");
    CHECK(srv.server_names() == std::vector<std::string>{""});
  }
  SUBCASE("unknown CA without ca_file") {
    auto tls = server_context(dir.path(), "localhost");
    test_server srv(serve("secure"), &tls);
    const auto out = fetch(get(srv.url("/", "localhost")));
    CHECK(out.result.error == fmt::format("TLS handshake with localhost:{}: certificate verify "
                                          "failed (unable to get local issuer certificate)",
                                          srv.port()));
    CHECK(out.result.body.empty());
    CHECK(srv.requests().empty());
  }
  SUBCASE("a certificate for another name") {
    auto tls = server_context(dir.path(), "other");
    test_server srv(serve("secure"), &tls);
    auto req = get(srv.url("/", "localhost"));
    req.ca_file = ca;
    const auto out = fetch(req);
    CHECK(out.result.error ==
          fmt::format("TLS handshake with localhost:{}: certificate verify failed (certificate "
                      "is not valid for 'localhost')",
                      srv.port()));
    CHECK(srv.requests().empty());
  }
  SUBCASE("an IP literal the certificate does not list") {
    auto tls = server_context(dir.path(), "other");
    test_server srv(serve("secure"), &tls);
    auto req = get(srv.url("/"));
    req.ca_file = ca;
    CHECK(contains(fetch(req).result.error, "certificate is not valid for '127.0.0.1'"));
  }
  SUBCASE("an unreadable CA file") {
    auto req = get("https://127.0.0.1:9/");
    req.ca_file = (dir.path() / "absent.pem").string();
    const auto out = fetch(req);
    CHECK(out.result.error.starts_with(fmt::format("load CA file {}: ", req.ca_file)));
  }
}

TEST_CASE("http_client runs fetches side by side") {
  test_server srv([](test_conn& c) -> net::awaitable<void> {
    co_await c.send(response(200, "OK", std::string(c.request.target())));
  });
  constexpr int n = 6;

  auto run_all = [&](int threads) {
    net::io_context ioc;
    http_client client(ioc.get_executor());
    std::mutex mutex;
    std::vector<std::string> bodies;
    for (int i = 0; i < n; ++i) {
      client.async_fetch(get(srv.url(fmt::format("/{}", i))), [&](fetch_result r) {
        std::lock_guard lock(mutex);
        bodies.push_back(r.ok() ? r.body : r.error);
      });
    }
    std::vector<std::thread> pool;
    for (int t = 1; t < threads; ++t) pool.emplace_back([&] { ioc.run_for(30s); });
    ioc.run_for(30s);
    for (auto& t : pool) t.join();
    std::sort(bodies.begin(), bodies.end());
    return bodies;
  };
  const std::vector<std::string> expected{"/0", "/1", "/2", "/3", "/4", "/5"};
  SUBCASE("one thread") {
    CHECK(run_all(1) == expected);
  }
  SUBCASE("a pool of two threads") {
    CHECK(run_all(2) == expected);
  }
}

TEST_CASE("destroying http_client cancels fetches and drops their callbacks") {
  net::io_context ioc;
  auto client = std::make_unique<http_client>(ioc.get_executor());
  auto token = std::make_shared<int>(0);
  bool called = false;
  auto poll_until = [&](auto done) {
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!done() && std::chrono::steady_clock::now() < deadline) {
      if (ioc.stopped()) ioc.restart();
      ioc.run_for(10ms);
    }
    return done();
  };

  SUBCASE("a fetch waiting on the server") {
    test_server srv([](test_conn& c) -> net::awaitable<void> { co_await c.hold(); });
    client->async_fetch(get(srv.url("/"), 10s), [&called, token](fetch_result) { called = true; });
    REQUIRE(poll_until([&] { return srv.requests().size() == 1; }));
    const auto t0 = std::chrono::steady_clock::now();
    client.reset();
    // The connection closes promptly, long before the 10 s timeout, and the callback is
    // destroyed without being called.
    CHECK(poll_until([&] { return srv.sessions_ended() == 1 && token.use_count() == 1; }));
    CHECK(std::chrono::steady_clock::now() - t0 < 5s);
    CHECK_FALSE(called);
  }
  SUBCASE("a completion already queued") {
    temp_dir dir;
    write_file(dir.path() / "f", "x");
    client->async_fetch(get("file://" + (dir.path() / "f").string()),
                        [&called, token](fetch_result) { called = true; });
    client.reset();
    ioc.run_for(5s);
    CHECK_FALSE(called);
    CHECK(token.use_count() == 1);
  }
}
