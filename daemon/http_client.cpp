#include "somrated/http_client.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
#include <optional>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/core.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core/bind_handler.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>

#include "excerpt.hpp"
#include "http_url.hpp"
#include "somrated/time.hpp"
#include "somrated/version.hpp"

namespace somrated {

namespace {

namespace net = boost::asio;
namespace ssl = net::ssl;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using detail::excerpt;

/// Largest response header accepted; Beast's 8 KiB default is tight for some CDNs.
constexpr std::uint32_t header_limit = 64 * 1024;

/// The read buffer holds at most a header plus one read's worth of body.
constexpr std::size_t buffer_limit = 2 * header_limit;

/// The whole fetch, redirects included, gets this many per-operation timeouts.
///
/// Each read of the body only has to make progress within the timeout, so a peer that
/// trickles a byte now and then would otherwise keep the fetch alive indefinitely.
constexpr int total_deadline_factor = 4;

/// Longest per-operation timeout honoured; keeps the timer arithmetic far from overflow.
constexpr std::chrono::milliseconds max_timeout = std::chrono::hours(24);

/// Bound on the TLS close_notify exchange after a complete response.
constexpr std::chrono::milliseconds shutdown_timeout = std::chrono::seconds(2);

/// Bound on interim (1xx) responses skipped before the final one.
constexpr int max_interim_responses = 8;

/// Sent with every GET: the pages we scrape are HTML or XML.
constexpr std::string_view accept_value = "text/html,application/xml;q=0.9,*/*;q=0.8";

/// Sent with every POST unless the caller names its own Accept: receivers answer as they like.
constexpr std::string_view post_accept_value = "*/*";

/// Request headers that frame the message or the connection; only the client sets them.
constexpr std::string_view framing_headers[] = {"Host", "Content-Length", "Transfer-Encoding",
                                                "Connection"};

/// The User-Agent used when the request names none.
std::string default_user_agent() {
  return fmt::format("somrated/{} (exchange-rate tracker)", version);
}

/// True when value could not be sent as one header field value (CR, LF or NUL).
bool breaks_header(std::string_view value) {
  return value.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos;
}

/// True when name is an HTTP token (RFC 9110 section 5.6.2), as a field name must be.
bool is_token(std::string_view name) {
  constexpr std::string_view specials = "!#$%&'*+-.^_`|~";
  return !name.empty() && std::all_of(name.begin(), name.end(), [&](char c) {
    const auto byte = static_cast<unsigned char>(c);
    return (byte >= '0' && byte <= '9') || (byte >= 'a' && byte <= 'z') ||
           (byte >= 'A' && byte <= 'Z') || specials.find(c) != std::string_view::npos;
  });
}

/// True for the statuses a GET follows to their Location.
bool is_redirect(int status) {
  return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

/// Why req cannot be sent as asked, or "" when it can.
///
/// Checked before anything touches the network. A header value is never quoted back:
/// it may be a credential (Authorization).
std::string request_problem(const fetch_request& req) {
  if (req.timeout <= std::chrono::milliseconds::zero())
    return fmt::format("invalid timeout of {} ms", req.timeout.count());
  if (req.method != "GET" && req.method != "POST")
    return fmt::format("unsupported method '{}'", excerpt(req.method, 20));
  if (req.method == "GET" && !req.body.empty()) return "a GET request cannot carry a body";
  if (breaks_header(req.etag) || breaks_header(req.last_modified) || breaks_header(req.user_agent))
    return "invalid request header value (CR, LF or NUL)";
  for (const auto& [name, value] : req.headers) {
    if (!is_token(name)) return fmt::format("invalid request header name '{}'", excerpt(name, 60));
    for (std::string_view framing : framing_headers) {
      if (beast::iequals(name, framing))
        return fmt::format("request header '{}' is set by the client", framing);
    }
    if (breaks_header(value))
      return fmt::format("invalid value for request header '{}' (CR, LF or NUL)", name);
  }
  return {};
}

/// The text for an errno value; thread-safe, unlike strerror.
std::string errno_text(int err) {
  return std::error_code(err, std::system_category()).message();
}

/// The OpenSSL reason for an asio.ssl error, without the library name Asio appends.
std::string ssl_reason(const beast::error_code& ec) {
  if (ec.category() == net::error::get_ssl_category()) {
    if (const char* reason = ERR_reason_error_string(static_cast<unsigned long>(ec.value())))
      return reason;
  }
  return ec.message();
}

/// s without leading and trailing ASCII whitespace.
std::string_view trim_space(std::string_view s) {
  constexpr std::string_view space = " \t\r\n";
  const auto first = s.find_first_not_of(space);
  if (first == std::string_view::npos) return {};
  return s.substr(first, s.find_last_not_of(space) - first + 1);
}

/// The month number (1..12) of an English month abbreviation, or 0.
unsigned month_number(std::string_view name) {
  constexpr std::string_view months[] = {"jan", "feb", "mar", "apr", "may", "jun",
                                         "jul", "aug", "sep", "oct", "nov", "dec"};
  if (name.size() < 3) return 0;
  for (unsigned i = 0; i < 12; ++i) {
    if (boost::beast::iequals(name.substr(0, 3), months[i])) return i + 1;
  }
  return 0;
}

/// Parses an HTTP date in any of the three forms RFC 9110 section 5.6.7 requires
/// recipients to accept: "Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37
/// GMT" and "Sun Nov  6 08:49:37 1994". The tokens are told apart by shape, not place.
std::optional<timestamp> parse_http_date(std::string_view text) {
  int year = -1;
  unsigned month = 0, day = 0;
  int hh = -1, mm = -1, ss = -1;
  auto number = [](std::string_view s) -> std::optional<int> {
    int v = 0;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc{} || end != s.data() + s.size() || v < 0) return std::nullopt;
    return v;
  };
  std::size_t pos = 0;
  while (pos < text.size()) {
    const std::size_t start = text.find_first_not_of(" ,-", pos);
    if (start == std::string_view::npos) break;
    pos = text.find_first_of(" ,-", start);
    if (pos == std::string_view::npos) pos = text.size();
    const std::string_view tok = text.substr(start, pos - start);
    if (tok.size() == 8 && tok[2] == ':' && tok[5] == ':') {
      const auto h = number(tok.substr(0, 2)), m = number(tok.substr(3, 2)),
                 s = number(tok.substr(6, 2));
      if (!h || !m || !s) return std::nullopt;
      hh = *h, mm = *m, ss = *s;
    } else if (const auto n = number(tok)) {
      if (tok.size() == 4) {
        year = *n;
      } else if (day == 0 && tok.size() <= 2) {
        day = static_cast<unsigned>(*n);
      } else if (tok.size() == 2) {
        year = *n < 70 ? 2000 + *n : 1900 + *n;  // RFC 850's two-digit year
      } else {
        return std::nullopt;
      }
    } else if (const unsigned m = month_number(tok); m != 0 && tok.size() == 3) {
      month = m;
    }
    // Weekday names and "GMT" carry nothing we need.
  }
  if (year < 1970 || month == 0 || day == 0 || hh < 0 || hh > 23 || mm > 59 || ss > 60) {
    return std::nullopt;
  }
  const std::chrono::year_month_day ymd{std::chrono::year{year}, std::chrono::month{month},
                                        std::chrono::day{day}};
  if (!ymd.ok()) return std::nullopt;
  return timestamp{std::chrono::sys_days{ymd}} + std::chrono::hours(hh) + std::chrono::minutes(mm) +
         std::chrono::seconds(std::min(ss, 59));
}

/// Closes a stdio stream.
struct file_closer {
  void operator()(std::FILE* f) const noexcept { std::fclose(f); }
};

/// An open stdio stream.
using file_ptr = std::unique_ptr<std::FILE, file_closer>;

/// Reads a file:// target whole, refusing anything larger than max_body.
///
/// O_NONBLOCK keeps a FIFO at that path from blocking the open; only regular files and
/// character devices are read, and reading stops one byte past the cap, so /dev/zero
/// fails cleanly too.
fetch_result read_file(const detail::fetch_target& t, std::size_t max_body) {
  fetch_result r;
  r.final_url = t.url;
  const std::string& path = t.file_path;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    r.error = fmt::format("open {}: {}", path, errno_text(errno));
    return r;
  }
  file_ptr f(::fdopen(fd, "rb"));
  if (!f) {
    r.error = fmt::format("open {}: {}", path, errno_text(errno));
    ::close(fd);
    return r;
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    r.error = fmt::format("stat {}: {}", path, errno_text(errno));
    return r;
  }
  if (S_ISDIR(st.st_mode)) {
    r.error = fmt::format("read {}: {}", path, errno_text(EISDIR));
    return r;
  }
  if (!S_ISREG(st.st_mode) && !S_ISCHR(st.st_mode)) {
    r.error = fmt::format("read {}: not a regular file", path);
    return r;
  }
  if (S_ISREG(st.st_mode) && static_cast<std::uint64_t>(st.st_size) > max_body) {
    r.error = fmt::format("file exceeds {} bytes", max_body);
    return r;
  }
  char chunk[16 * 1024];
  for (;;) {
    const std::size_t n = std::fread(chunk, 1, sizeof chunk, f.get());
    if (n == 0) break;
    if (r.body.size() + n > max_body) {
      r.body.clear();
      r.error = fmt::format("file exceeds {} bytes", max_body);
      return r;
    }
    r.body.append(chunk, n);
  }
  if (std::ferror(f.get())) {
    r.body.clear();
    r.error = fmt::format("read {}: {}", path, errno_text(errno));
  }
  return r;
}

class fetch_op;

/// What an http_client shares with its in-flight fetches.
///
/// Operations hold it by shared_ptr, so it outlives the http_client while they finish.
/// Its methods may be called from any thread.
class client_state : public std::enable_shared_from_this<client_state> {
 public:
  /// Completions go to ex.
  explicit client_state(net::any_io_executor ex) : ex_(std::move(ex)) {}

  /// The executor completions run on.
  const net::any_io_executor& executor() const noexcept { return ex_; }

  /// The verifying client context for ca_file, created on first use; null plus error
  /// when the trust anchors cannot be loaded.
  ///
  /// Contexts are cached for the client's lifetime: a CA file replaced on disk is read
  /// again only by a new http_client.
  std::shared_ptr<ssl::context> tls_context(const std::string& ca_file, std::string& error);

  /// Remembers op so close() can cancel it.
  void track(const std::shared_ptr<fetch_op>& op);

  /// Marks the client destroyed and cancels every tracked fetch.
  void close();

  /// True once the http_client has been destroyed.
  bool closed() const noexcept { return closed_.load(); }

  /// Runs done(r) on the executor, unless the client is destroyed by then.
  void deliver(http_client::handler done, fetch_result r);

 private:
  net::any_io_executor ex_;                                        ///< Where done callbacks run.
  std::atomic<bool> closed_{false};                                ///< Set by ~http_client.
  std::mutex mutex_;                                               ///< Guards contexts_ and live_.
  std::map<std::string, std::shared_ptr<ssl::context>> contexts_;  ///< By ca_file.
  std::vector<std::weak_ptr<fetch_op>> live_;  ///< Fetches that may still be running.
};

/// One http(s) fetch: resolve, connect, handshake, write, read, maybe redirect.
///
/// All of its steps run on its own strand, so it is safe even when the client's
/// executor is a multi-threaded pool. Every step is bounded by req.timeout, and the whole
/// fetch by total_deadline_factor times that.
class fetch_op : public std::enable_shared_from_this<fetch_op> {
 public:
  /// Prepares a fetch of target; nothing happens until start().
  fetch_op(std::shared_ptr<client_state> client, fetch_request req, detail::fetch_target target,
           http_client::handler done);

  /// The strand that every step of this fetch runs on.
  const net::strand<net::any_io_executor>& strand() const noexcept { return strand_; }

  /// Arms the total deadline and starts the first hop. Call on strand().
  void start();

  /// Stops the fetch at the next step and fails it with why. Call on strand().
  void abort(std::string why);

 private:
  /// The HTTPS transport.
  using tls_stream = beast::ssl_stream<beast::tcp_stream>;

  /// The TCP stream under the current connection, which carries the deadlines.
  beast::tcp_stream& lowest() { return tls_ ? beast::get_lowest_layer(*tls_) : *plain_; }
  /// Calls f with the current connection's top stream, plain or TLS.
  template <class F>
  void with_stream(F&& f) {
    if (tls_) {
      f(*tls_);
    } else {
      f(*plain_);
    }
  }

  /// Starts one request/response exchange with target_: resets state, resolves.
  void begin_hop();
  /// Sets up the stream (TLS: SNI and host check) and connects.
  void on_resolve(beast::error_code ec, tcp::resolver::results_type results);
  /// Starts the TLS handshake, or goes straight to writing.
  void on_connect(beast::error_code ec, const tcp::endpoint&);
  /// Goes on to writing once the peer is verified.
  void on_handshake(beast::error_code ec);
  /// Sends the request: GET, or POST with its body.
  void do_write();
  /// Goes on to reading the response.
  void on_write(beast::error_code ec, std::size_t);
  /// Reads the status line and header with a fresh, bounded parser.
  void do_read_header();
  /// Decides by status: 304, redirect, body, or error (whose body is read as well).
  void on_read_header(beast::error_code ec, std::size_t);
  /// Moves to the next hop after a 3xx, within max_redirects.
  void follow(int status, std::string_view location);
  /// Reads the next piece of the body, with its own deadline.
  void do_read_body();
  /// Loops until the body is complete.
  void on_read_body(beast::error_code ec, std::size_t);
  /// Delivers the complete response: the 2xx body, or the refusal with what it said.
  void on_complete();
  /// The error result for a final status that is not a success: "HTTP 503 Service
  /// Unavailable (Retry-After: 5)", or for a POST "HTTP 302 Found (redirects are not
  /// followed for POST)"; status and retry_after set, body empty.
  fetch_result refusal(const http::response<http::string_body>& res) const;
  /// True when a response with this status ends in refusal() rather than a body, a 304
  /// or a redirect followed.
  bool refuses(int status) const;

  /// Fails the fetch if it was aborted or ec is set; true when it did.
  bool failed(beast::error_code ec);
  /// Fails the fetch with "<step>: <reason>".
  void fail(std::string reason);
  /// Delivers an error result and drops the connection.
  void fail_with(fetch_result r);
  /// Delivers the result of a complete response and closes the connection politely.
  void succeed(fetch_result r);
  /// Hands r to the client, once.
  void finish(fetch_result r);
  /// The reason text for an I/O error in the current step.
  std::string describe(const beast::error_code& ec) const;
  /// The HTTP status read so far, or 0.
  int status_read() const;
  /// The Retry-After header read so far, or "".
  std::string retry_after_read() const;

  std::shared_ptr<client_state> client_;       ///< TLS contexts, and where done goes.
  net::strand<net::any_io_executor> strand_;   ///< Serialises every step of this fetch.
  fetch_request req_;                          ///< What was asked for.
  detail::fetch_target target_;                ///< The current hop.
  http_client::handler done_;                  ///< Moved out by finish().
  tcp::resolver resolver_;                     ///< Name lookup for the current hop.
  net::steady_timer resolve_timer_;            ///< The resolver has no deadline of its own.
  net::steady_timer total_timer_;              ///< Bounds the whole fetch.
  std::shared_ptr<ssl::context> tls_context_;  ///< Declared before tls_, which uses it.
  std::unique_ptr<beast::tcp_stream> plain_;   ///< The connection, for http.
  std::unique_ptr<tls_stream> tls_;            ///< The connection, for https.
  beast::flat_buffer buffer_{buffer_limit};    ///< Bytes read but not yet parsed.
  http::request<http::string_body> request_;   ///< Kept alive while it is written.
  std::optional<http::response_parser<http::string_body>> parser_;  ///< One per response.
  std::optional<fetch_result> refusal_;  ///< A non-2xx result waiting for its body to be read.
  std::string step_;                ///< What is being done, for error texts: "connect host:port".
  std::string abort_reason_;        ///< Set once the fetch is being torn down.
  int redirects_ = 0;               ///< Redirects followed so far.
  int interim_ = 0;                 ///< 1xx responses skipped on this hop.
  bool resolving_ = false;          ///< A lookup is pending; resolve_timer_ may cancel it.
  bool resolve_timed_out_ = false;  ///< resolve_timer_ fired before the lookup finished.
  bool host_mismatch_ = false;      ///< The chain verified but the leaf does not name the host.
  bool finished_ = false;           ///< done_ has been handed over.
};

std::shared_ptr<ssl::context> client_state::tls_context(const std::string& ca_file,
                                                        std::string& error) {
  std::lock_guard lock(mutex_);
  if (auto it = contexts_.find(ca_file); it != contexts_.end()) return it->second;
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
  SSL_CTX_set_min_proto_version(ctx->native_handle(), TLS1_2_VERSION);
  beast::error_code ec;
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_compression, ec);
  ctx->set_default_verify_paths(ec);
  if (ec) {
    error = fmt::format("load system trust store: {}", ssl_reason(ec));
    return nullptr;
  }
  if (!ca_file.empty()) {
    ctx->load_verify_file(ca_file, ec);
    if (ec) {
      error = fmt::format("load CA file {}: {}", ca_file, ssl_reason(ec));
      return nullptr;
    }
  }
  ctx->set_verify_mode(ssl::verify_peer, ec);
  if (ec) {
    error = fmt::format("TLS setup: {}", ssl_reason(ec));
    return nullptr;
  }
  contexts_.emplace(ca_file, ctx);
  return ctx;
}

void client_state::track(const std::shared_ptr<fetch_op>& op) {
  std::lock_guard lock(mutex_);
  std::erase_if(live_, [](const std::weak_ptr<fetch_op>& w) { return w.expired(); });
  live_.push_back(op);
}

void client_state::close() {
  closed_ = true;
  std::vector<std::weak_ptr<fetch_op>> live;
  {
    std::lock_guard lock(mutex_);
    live.swap(live_);
  }
  for (const auto& w : live) {
    if (auto op = w.lock())
      net::post(op->strand(), [op] { op->abort("fetch cancelled: http_client destroyed"); });
  }
}

void client_state::deliver(http_client::handler done, fetch_result r) {
  net::post(ex_, [self = shared_from_this(), done = std::move(done), r = std::move(r)]() mutable {
    if (!self->closed()) done(std::move(r));
  });
}

fetch_op::fetch_op(std::shared_ptr<client_state> client, fetch_request req,
                   detail::fetch_target target, http_client::handler done)
    : client_(std::move(client)),
      strand_(net::make_strand(client_->executor())),
      req_(std::move(req)),
      target_(std::move(target)),
      done_(std::move(done)),
      resolver_(strand_),
      resolve_timer_(strand_),
      total_timer_(strand_) {}

void fetch_op::start() {
  total_timer_.expires_after(req_.timeout * total_deadline_factor);
  total_timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
    if (ec || self->finished_) return;
    self->abort(fmt::format("total deadline of {} ms exceeded",
                            (self->req_.timeout * total_deadline_factor).count()));
  });
  begin_hop();
}

void fetch_op::abort(std::string why) {
  if (!finished_ && abort_reason_.empty()) abort_reason_ = std::move(why);
  // Whatever is pending now completes with operation_aborted, and failed() then reports
  // abort_reason_. A completion already queued sees abort_reason_ the same way.
  resolver_.cancel();
  resolve_timer_.cancel();
  if (plain_ || tls_) lowest().close();
}

void fetch_op::begin_hop() {
  tls_.reset();
  plain_.reset();
  parser_.reset();
  refusal_.reset();
  buffer_.consume(buffer_.size());
  host_mismatch_ = false;
  interim_ = 0;
  if (target_.scheme == detail::url_scheme::https) {
    std::string error;
    tls_context_ = client_->tls_context(req_.ca_file, error);
    if (!tls_context_) {
      fetch_result r;
      r.error = std::move(error);
      return fail_with(std::move(r));
    }
  }
  step_ = fmt::format("resolve {}", target_.host);
  resolving_ = true;
  resolve_timed_out_ = false;
  resolve_timer_.expires_after(req_.timeout);
  resolve_timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
    if (ec || !self->resolving_) return;
    self->resolve_timed_out_ = true;
    self->resolver_.cancel();
  });
  resolver_.async_resolve(target_.host, target_.port,
                          beast::bind_front_handler(&fetch_op::on_resolve, shared_from_this()));
}

void fetch_op::on_resolve(beast::error_code ec, tcp::resolver::results_type results) {
  resolving_ = false;
  resolve_timer_.cancel();
  if (resolve_timed_out_ && abort_reason_.empty())
    return fail(fmt::format("timed out after {} ms", req_.timeout.count()));
  if (failed(ec)) return;
  if (results.empty()) return fail("no addresses");

  if (target_.scheme == detail::url_scheme::https) {
    tls_ = std::make_unique<tls_stream>(strand_, *tls_context_);
    // SNI carries host names only (RFC 6066 section 3); an IP literal goes without it.
    if (!target_.ip_literal &&
        !SSL_set_tlsext_host_name(tls_->native_handle(), target_.host.c_str()))
      return fail("cannot set SNI");
    tls_->set_verify_mode(ssl::verify_peer);
    // host_name_verification checks DNS names and IP SANs. Wrapping it records a name
    // mismatch so the error can say so, and tags the chain with the matching X509 error.
    tls_->set_verify_callback([this, check = ssl::host_name_verification(target_.host)](
                                  bool preverified, ssl::verify_context& vc) {
      const bool ok = check(preverified, vc);
      if (preverified && !ok) {
        host_mismatch_ = true;
        X509_STORE_CTX_set_error(vc.native_handle(), target_.ip_literal
                                                         ? X509_V_ERR_IP_ADDRESS_MISMATCH
                                                         : X509_V_ERR_HOSTNAME_MISMATCH);
      }
      return ok;
    });
  } else {
    plain_ = std::make_unique<beast::tcp_stream>(strand_);
  }
  step_ = fmt::format("connect {}", target_.authority);
  lowest().expires_after(req_.timeout);
  lowest().async_connect(results,
                         beast::bind_front_handler(&fetch_op::on_connect, shared_from_this()));
}

void fetch_op::on_connect(beast::error_code ec, const tcp::endpoint&) {
  if (failed(ec)) return;
  if (!tls_) return do_write();
  step_ = fmt::format("TLS handshake with {}", target_.authority);
  lowest().expires_after(req_.timeout);
  tls_->async_handshake(ssl::stream_base::client,
                        beast::bind_front_handler(&fetch_op::on_handshake, shared_from_this()));
}

void fetch_op::on_handshake(beast::error_code ec) {
  if (failed(ec)) return;
  do_write();
}

void fetch_op::do_write() {
  step_ = fmt::format("send request to {}", target_.authority);
  const bool post = req_.method == "POST";
  request_ = {};
  request_.method(post ? http::verb::post : http::verb::get);
  request_.target(target_.target);
  request_.version(11);
  request_.set(http::field::host, target_.host_header);
  request_.set(http::field::user_agent,
               req_.user_agent.empty() ? default_user_agent() : req_.user_agent);
  request_.set(http::field::accept, post ? post_accept_value : accept_value);
  request_.set(http::field::accept_encoding, "identity");
  request_.set(http::field::connection, "close");
  if (!req_.etag.empty()) request_.set(http::field::if_none_match, req_.etag);
  if (!req_.last_modified.empty()) request_.set(http::field::if_modified_since, req_.last_modified);
  // The caller's headers come last, in order. One that names a default (User-Agent,
  // Accept, ...) replaces it; the defaults are erased first so that a name the caller
  // repeats is sent as often as given.
  for (const auto& header : req_.headers) request_.erase(header.first);
  for (const auto& [name, value] : req_.headers) request_.insert(name, value);
  if (post) {
    request_.body() = req_.body;
    request_.content_length(request_.body().size());
  }
  lowest().expires_after(req_.timeout);
  with_stream([this](auto& s) {
    http::async_write(s, request_,
                      beast::bind_front_handler(&fetch_op::on_write, shared_from_this()));
  });
}

void fetch_op::on_write(beast::error_code ec, std::size_t) {
  if (failed(ec)) return;
  do_read_header();
}

void fetch_op::do_read_header() {
  step_ = fmt::format("read response header from {}", target_.authority);
  parser_.emplace();
  parser_->header_limit(header_limit);
  parser_->body_limit(req_.max_body);
  lowest().expires_after(req_.timeout);
  with_stream([this](auto& s) {
    http::async_read_header(
        s, buffer_, *parser_,
        beast::bind_front_handler(&fetch_op::on_read_header, shared_from_this()));
  });
}

void fetch_op::on_read_header(beast::error_code ec, std::size_t) {
  if (failed(ec)) return;
  const auto& res = parser_->get();
  const int status = res.result_int();

  if (status >= 100 && status < 200) {
    // An interim response (RFC 9110 section 15.2) precedes the real one.
    if (++interim_ > max_interim_responses) return fail("too many interim responses");
    return do_read_header();
  }
  if (status == 304) {
    fetch_result r;
    r.status = status;
    r.retry_after = std::string(res[http::field::retry_after]);
    if (req_.etag.empty() && req_.last_modified.empty()) {
      r.error = "HTTP 304 Not Modified to an unconditional request";
      return fail_with(std::move(r));
    }
    // A 304 need not repeat the validators; the caller's stay valid then.
    r.not_modified = true;
    const auto etag = res[http::field::etag];
    const auto last_modified = res[http::field::last_modified];
    r.etag = etag.empty() ? req_.etag : std::string(etag);
    r.last_modified = last_modified.empty() ? req_.last_modified : std::string(last_modified);
    return succeed(std::move(r));
  }
  if (!refuses(status)) {
    if (is_redirect(status)) return follow(status, res[http::field::location]);
    return do_read_body();
  }
  // The body of a refusal is read too, under the same bounds, so that the caller can
  // report what the receiver said; on_complete() then delivers refusal_ with it.
  refusal_ = refusal(res);
  do_read_body();
}

fetch_result fetch_op::refusal(const http::response<http::string_body>& res) const {
  fetch_result r;
  r.status = res.result_int();
  r.retry_after = std::string(res[http::field::retry_after]);
  const std::string_view reason =
      res.reason().empty() ? http::obsolete_reason(res.result()) : res.reason();
  r.error = fmt::format("HTTP {} {}", r.status, excerpt(reason, 60));
  if (is_redirect(r.status)) {
    r.error += fmt::format(" (redirects are not followed for {})", req_.method);
  } else if (!r.retry_after.empty()) {
    r.error += fmt::format(" (Retry-After: {})", excerpt(r.retry_after, 40));
  }
  return r;
}

bool fetch_op::refuses(int status) const {
  if (status < 300 || status == 304) return false;
  return !(is_redirect(status) && req_.method == "GET");
}

void fetch_op::follow(int status, std::string_view location) {
  fetch_result r;
  r.status = status;
  r.retry_after = std::string(parser_->get()[http::field::retry_after]);
  if (location.empty()) {
    r.error = fmt::format("HTTP {} redirect without a Location", status);
    return fail_with(std::move(r));
  }
  if (redirects_ >= std::max(req_.max_redirects, 0)) {
    r.error = fmt::format("too many redirects ({})", std::max(req_.max_redirects, 0));
    return fail_with(std::move(r));
  }
  auto next = detail::resolve_redirect(target_, location);
  if (!next.target) {
    r.error = std::move(next.error);
    return fail_with(std::move(r));
  }
  ++redirects_;
  beast::error_code ignored;
  lowest().socket().close(ignored);
  target_ = std::move(*next.target);
  begin_hop();
}

void fetch_op::do_read_body() {
  step_ = fmt::format("read body from {}", target_.authority);
  if (parser_->is_done()) return on_complete();
  // A fresh deadline per read: the body only has to keep flowing; total_timer_ bounds
  // the whole.
  lowest().expires_after(req_.timeout);
  with_stream([this](auto& s) {
    http::async_read_some(s, buffer_, *parser_,
                          beast::bind_front_handler(&fetch_op::on_read_body, shared_from_this()));
  });
}

void fetch_op::on_read_body(beast::error_code ec, std::size_t) {
  if (failed(ec)) return;
  do_read_body();
}

void fetch_op::on_complete() {
  auto res = parser_->release();
  if (refusal_) {
    fetch_result r = std::move(*refusal_);
    r.body = std::move(res.body());
    return succeed(std::move(r));
  }
  fetch_result r;
  r.status = res.result_int();
  r.retry_after = std::string(res[http::field::retry_after]);
  r.etag = std::string(res[http::field::etag]);
  r.last_modified = std::string(res[http::field::last_modified]);
  r.content_type = std::string(res[http::field::content_type]);
  r.body = std::move(res.body());
  succeed(std::move(r));
}

bool fetch_op::failed(beast::error_code ec) {
  if (!ec && abort_reason_.empty()) return false;
  if (refusal_) {
    // The status is the news; a refusal whose body cannot be read in full (too large,
    // too slow, cut off) is still reported as such, with the body left empty.
    fail_with(std::move(*refusal_));
    return true;
  }
  if (!abort_reason_.empty()) {
    fail(abort_reason_);
    return true;
  }
  if (ec == http::error::body_limit) {
    // A Content-Length over the limit fails at the end of the header, before the parser
    // calls it done; the status line and every field have been read by then.
    const auto& res = parser_->get();
    if (refuses(res.result_int())) {
      fail_with(refusal(res));
      return true;
    }
    fetch_result r;
    r.status = res.result_int();
    r.retry_after = std::string(res[http::field::retry_after]);
    r.error = fmt::format("body exceeds {} bytes", req_.max_body);
    fail_with(std::move(r));
    return true;
  }
  fail(describe(ec));
  return true;
}

void fetch_op::fail(std::string reason) {
  fetch_result r;
  r.status = status_read();
  r.retry_after = retry_after_read();
  r.error = fmt::format("{}: {}", step_, reason);
  fail_with(std::move(r));
}

void fetch_op::fail_with(fetch_result r) {
  finish(std::move(r));
  if (plain_ || tls_) lowest().close();
}

void fetch_op::succeed(fetch_result r) {
  finish(std::move(r));
  if (plain_) {
    beast::error_code ignored;
    plain_->socket().shutdown(tcp::socket::shutdown_both, ignored);
    plain_->close();
    return;
  }
  // The response is complete and delivered, so nothing can be truncated any more:
  // eof or stream_truncated from a peer that skips close_notify is benign here, as is
  // any other shutdown error (see the stream_truncated comment in Beast's
  // example/http/client/async-ssl/http_client_async_ssl.cpp).
  lowest().expires_after(std::min(req_.timeout, shutdown_timeout));
  tls_->async_shutdown([self = shared_from_this()](beast::error_code) { self->lowest().close(); });
}

void fetch_op::finish(fetch_result r) {
  if (finished_) return;
  finished_ = true;
  resolve_timer_.cancel();
  total_timer_.cancel();
  r.final_url = target_.url;
  client_->deliver(std::move(done_), std::move(r));
}

std::string fetch_op::describe(const beast::error_code& ec) const {
  if (ec == beast::error::timeout)
    return fmt::format("timed out after {} ms", req_.timeout.count());
  if (ec == http::error::header_limit)
    return fmt::format("response header exceeds {} bytes", header_limit);
  if (ec.category() == net::error::get_ssl_category()) {
    std::string reason = ssl_reason(ec);
    if (host_mismatch_)
      return fmt::format("{} (certificate is not valid for '{}')", reason, target_.host);
    if (tls_) {
      const long verify = SSL_get_verify_result(tls_->native_handle());
      if (verify != X509_V_OK)
        return fmt::format("{} ({})", reason, X509_verify_cert_error_string(verify));
    }
    return reason;
  }
  return ec.message();
}

int fetch_op::status_read() const {
  return parser_ && parser_->is_header_done() ? parser_->get().result_int() : 0;
}

std::string fetch_op::retry_after_read() const {
  return parser_ && parser_->is_header_done()
             ? std::string(parser_->get()[http::field::retry_after])
             : std::string();
}

}  // namespace

std::optional<std::chrono::milliseconds> parse_retry_after(std::string_view value) {
  value = trim_space(value);
  if (value.empty()) return std::nullopt;
  if (value.find_first_not_of("0123456789") == std::string_view::npos) {
    // Beyond a year is as good as a year; callers cap the wait far lower.
    constexpr std::int64_t year_seconds = 365 * 86400;
    if (value.size() > 9) return std::chrono::seconds(year_seconds);
    std::int64_t secs = 0;
    std::from_chars(value.data(), value.data() + value.size(), secs);
    return std::chrono::seconds(std::min(secs, year_seconds));
  }
  const auto when = parse_http_date(value);
  if (!when) return std::nullopt;
  return std::max(*when - now(), std::chrono::milliseconds::zero());
}

/// The client's shared state; fetch_op holds it as client_state.
struct http_client::impl : client_state {
  using client_state::client_state;
};

http_client::http_client(boost::asio::any_io_executor ex)
    : impl_(std::make_shared<impl>(std::move(ex))) {}

// Destroying the client cancels every fetch still in flight: each stops at its next step
// and closes its connection. Their done callbacks, and any completion already queued but
// not yet run, are dropped rather than called, so a callback may safely capture the
// object that owns the client.
http_client::~http_client() {
  impl_->close();
}

void http_client::async_fetch(fetch_request req, handler done) {
  auto fail_now = [this, &req, &done](std::string error) {
    fetch_result r;
    r.final_url = req.url;
    r.error = std::move(error);
    impl_->deliver(std::move(done), std::move(r));
  };
  if (std::string problem = request_problem(req); !problem.empty())
    return fail_now(std::move(problem));
  req.timeout = std::min(req.timeout, max_timeout);

  auto parsed = detail::parse_fetch_url(req.url);
  if (!parsed.target) return fail_now(std::move(parsed.error));

  if (parsed.target->scheme == detail::url_scheme::file) {
    if (req.method != "GET")
      return fail_now(fmt::format("file:// URLs take GET only, not {}", req.method));
    // Local files are small and capped, so they are read on the executor; the post keeps
    // done from ever running inside async_fetch.
    net::post(impl_->executor(), [state = impl_, target = std::move(*parsed.target),
                                  max_body = req.max_body, done = std::move(done)]() {
      if (state->closed()) return;
      done(read_file(target, max_body));
    });
    return;
  }

  auto op =
      std::make_shared<fetch_op>(impl_, std::move(req), std::move(*parsed.target), std::move(done));
  impl_->track(op);
  net::post(op->strand(), [op] { op->start(); });
}

}  // namespace somrated
