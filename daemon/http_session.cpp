#include "http_session.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <exception>
#include <string>
#include <utility>

#include <fmt/format.h>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/field.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/rfc7230.hpp>

#include "somrated/log.hpp"
#include "somrated/version.hpp"

namespace somrated::server_detail {

namespace {

/// The Server header's value.
const std::string& server_name() {
  static const std::string name = fmt::format("somrated/{}", somrated::version);
  return name;
}

/// Puts res's status line and header fields, as they go on the wire, into out.
void write_head(const http_response& res, std::string& out) {
  out.clear();
  out += res.version() == 10 ? "HTTP/1.0 " : "HTTP/1.1 ";
  char code[4] = {};
  std::to_chars(code, code + 3, res.result_int());
  out.append(code, 3);
  out += ' ';
  out += res.reason();
  out += "\r\n";
  for (const auto& field : res) {
    out += field.name_string();
    out += ": ";
    out += field.value();
    out += "\r\n";
  }
  out += "\r\n";
}

using tcp = net::ip::tcp;

/// Longest time spent draining a peer after the last response, before closing.
///
/// Closing a socket whose receive queue still holds unread bytes makes the kernel send
/// RST, and the peer may then lose the response we just wrote (a 413 while it is still
/// uploading, a 503 to a client that already sent its request). So after the final
/// response the session shuts down its sending side and reads and drops whatever the
/// peer still sends until it closes, the way Apache's lingering close does; the bound
/// keeps a peer that never stops from holding the connection.
/// https://httpd.apache.org/docs/2.4/misc/perf-tuning.html#lingering-close-and-sending-buffers
constexpr std::chrono::milliseconds linger_limit{1000};

/// Deadline for writing the 503 to a connection over the limit.
constexpr std::chrono::milliseconds reject_write_limit{1000};

/// How long a connection without a request in progress may still take to send one once
/// the server is stopping.
constexpr std::chrono::milliseconds stop_request_wait{1000};

/// Chunk read while waiting for the first byte of a request: enough for most requests
/// in one read, and what an idle connection holds (the larger buffer a long request
/// needed is released when it is done).
constexpr std::size_t first_read_size = 1024;

/// Room the read buffer has beyond the header limit: one read's worth (Beast reads at
/// most 64 KiB at a time), which may hold the start of a pipelined request.
constexpr std::size_t read_slack = 64 * 1024;

/// Errors that only mean the peer went away or a deadline passed: close without noise.
bool is_disconnect(const beast::error_code& ec) {
  return ec == net::error::eof || ec == http::error::end_of_stream ||
         ec == http::error::partial_message || ec == net::error::operation_aborted ||
         ec == beast::error::timeout || ec == net::error::connection_reset ||
         ec == net::error::connection_aborted || ec == net::error::broken_pipe ||
         ec == net::error::bad_descriptor;
}

/// True for the errors Beast's HTTP parser reports (as opposed to socket errors).
bool is_parse_error(const beast::error_code& ec) {
  return ec.category() == http::make_error_code(http::error::bad_method).category();
}

/// True when the Connection header asks to close.
bool says_close(const http_response& res) {
  const auto it = res.find(http::field::connection);
  if (it == res.end()) return false;
  for (const auto token : http::token_list{it->value()}) {
    if (beast::iequals(token, "close")) return true;
  }
  return false;
}

/// "address:port", or "?" when the socket has no peer any more.
std::string describe_peer(const tcp::socket& s) {
  beast::error_code ec;
  const auto ep = s.remote_endpoint(ec);
  if (ec) return "?";
  if (ep.address().is_v6()) return fmt::format("[{}]:{}", ep.address().to_string(), ep.port());
  return fmt::format("{}:{}", ep.address().to_string(), ep.port());
}

/// The answer when the server was built without an error responder.
http_response plain_error(http::status status, std::string_view message) {
  http_response res{status, 11};
  res.set(http::field::content_type, "text/plain; charset=utf-8");
  res.body() = fmt::format("{}\n", message);
  return res;
}

}  // namespace

// ---------------------------------------------------------------------------------------
// connection_tracker

connection_tracker::connection_tracker(net::any_io_executor ex) : ex_(std::move(ex)) {}

void connection_tracker::add(const std::shared_ptr<http_session>& s, bool counted) {
  const std::lock_guard lock(mutex_);
  busy_.push_back(s.get());
  try {
    sessions_.emplace(s.get(), entry{s, counted, activity::busy, std::prev(busy_.end()),
                                     std::chrono::steady_clock::now()});
  } catch (...) {
    busy_.pop_back();
    throw;
  }
  if (counted) counted_.fetch_add(1, std::memory_order_relaxed);
}

std::vector<std::function<void()>> connection_tracker::erase(const http_session* s) {
  const std::lock_guard lock(mutex_);
  const auto it = sessions_.find(s);
  if (it == sessions_.end()) return {};
  if (it->second.counted) counted_.fetch_sub(1, std::memory_order_relaxed);
  list_of(it->second.what).erase(it->second.node);
  sessions_.erase(it);
  if (!sessions_.empty()) return {};
  return std::exchange(waiters_, {});
}

void connection_tracker::remove(const http_session* s) {
  for (auto& w : erase(s)) net::post(ex_, std::move(w));
}

connection_tracker::session_list& connection_tracker::list_of(activity a) {
  switch (a) {
    case activity::idle:
      return idle_;
    case activity::transfer:
      return transfer_;
    case activity::busy:
      break;
  }
  return busy_;
}

void connection_tracker::move(entry& e, activity a) {
  auto& to = list_of(a);
  to.splice(to.end(), list_of(e.what), e.node);
  e.what = a;
  e.since = std::chrono::steady_clock::now();
}

void connection_tracker::set_activity(const http_session* s, activity a) {
  const std::lock_guard lock(mutex_);
  const auto it = sessions_.find(s);
  // Rejects and evicted sessions hold no slot: there is nothing to gain from them.
  if (it == sessions_.end() || !it->second.counted) return;
  move(it->second, a);
}

std::shared_ptr<http_session> connection_tracker::take_for_room(
    std::chrono::steady_clock::time_point stalled_since) {
  const std::lock_guard lock(mutex_);
  for (;;) {
    session_list* from = nullptr;
    if (!idle_.empty()) {
      from = &idle_;
    } else if (!transfer_.empty() && sessions_.at(transfer_.front()).since <= stalled_since) {
      from = &transfer_;
    } else {
      return nullptr;
    }
    entry& e = sessions_.at(from->front());
    move(e, activity::busy);
    // A session being destroyed leaves by itself; it still counts until then.
    auto session = e.session.lock();
    if (!session) continue;
    e.counted = false;
    counted_.fetch_sub(1, std::memory_order_relaxed);
    return session;
  }
}

std::size_t connection_tracker::size() const {
  const std::lock_guard lock(mutex_);
  return sessions_.size();
}

std::vector<std::shared_ptr<http_session>> connection_tracker::snapshot() const {
  std::vector<std::shared_ptr<http_session>> out;
  const std::lock_guard lock(mutex_);
  out.reserve(sessions_.size());
  for (const auto& [key, e] : sessions_) {
    if (auto s = e.session.lock()) out.push_back(std::move(s));
  }
  return out;
}

void connection_tracker::stop_all() {
  for (auto& s : snapshot()) {
    net::post(s->executor(), [s] { s->stop(); });
  }
}

void connection_tracker::close_all() {
  for (auto& s : snapshot()) {
    net::post(s->executor(), [s] { s->close(); });
  }
}

void connection_tracker::when_empty(std::function<void()> done) {
  {
    const std::lock_guard lock(mutex_);
    if (!sessions_.empty()) {
      waiters_.push_back(std::move(done));
      return;
    }
  }
  net::post(ex_, std::move(done));
}

// ---------------------------------------------------------------------------------------
// http_session

http_session::http_session(tcp::socket socket, std::shared_ptr<const session_context> ctx,
                           std::shared_ptr<connection_tracker> tracker, bool counted)
    : ex_(socket.get_executor()),
      stream_(std::move(socket)),
      buffer_(ctx->limits.header_limit + read_slack),
      ctx_(std::move(ctx)),
      tracker_(std::move(tracker)),
      counted_(counted),
      peer_(describe_peer(stream_.socket())) {}

// A session can die without close(): the handler dropped its callback, or the
// io_context is being destroyed with operations pending. Either way it must leave the
// tracker so that stop() completes. Posting the waiters is safe even during io_context
// destruction: a strand that has shut down destroys what is posted to it.
http_session::~http_session() {
  if (phase_ == phase::closed) return;
  try {
    tracker_->remove(this);
  } catch (...) {
  }
}

template <class F>
void http_session::guarded(const char* what, F&& f) noexcept {
  try {
    std::forward<F>(f)();
  } catch (const std::exception& e) {
    try {
      ctx_->log.log(log_level::error, "http {}: {} failed: {}", peer_, what, e.what());
    } catch (...) {
    }
    close();
  } catch (...) {
    try {
      ctx_->log.log(log_level::error, "http {}: {} failed: unknown exception", peer_, what);
    } catch (...) {
    }
    close();
  }
}

void http_session::run() {
  net::dispatch(ex_, [self = shared_from_this()] {
    self->guarded("start", [&] { self->do_wait_request(); });
  });
}

void http_session::reject() {
  net::dispatch(ex_, [self = shared_from_this()] {
    self->guarded("reject", [&] {
      if (self->phase_ == phase::closed) return;
      self->req_version_ = 11;
      self->req_head_ = false;
      self->res_ =
          self->ctx_->on_error
              ? self->ctx_->on_error(http::status::service_unavailable, "too many connections")
              : plain_error(http::status::service_unavailable, "too many connections");
      self->finish_response(self->res_, false);
      self->do_write(std::min(self->ctx_->limits.write_timeout, reject_write_limit));
    });
  });
}

void http_session::stop() {
  guarded("stop", [&] {
    stopping_ = true;
    // Busy connections see stopping_ when they write their response and close after it.
    if (phase_ != phase::idle) return;
    // An idle one's read is cancelled and on_interrupted decides what to do.
    interrupted_ = true;
    stream_.cancel();
  });
}

void http_session::close() noexcept {
  if (phase_ == phase::closed) return;
  phase_ = phase::closed;
  try {
    stream_.close();
  } catch (...) {
  }
  try {
    tracker_->remove(this);
  } catch (...) {
  }
}

void http_session::evict() {
  guarded("evict", [&] {
    // One whose handler has the request sees evicted_ when it answers, and closes after.
    evicted_ = true;
    if (phase_ == phase::idle) {
      // An idle one's read is cancelled and on_interrupted decides what to do.
      interrupted_ = true;
      stream_.cancel();
    } else if (phase_ == phase::reading || phase_ == phase::writing) {
      // Stalled: a request trickling in or a response its client does not take.
      ctx_->log.log(log_level::debug,
                    "http {}: closing a connection stalled while {} to make room for a new one",
                    peer_, phase_ == phase::reading ? "reading" : "writing");
      close();
    }
  });
}

void http_session::do_wait_request() {
  if (stopping_) return close();
  // Evicted while a request was in flight: the client may already be sending its next
  // one, which closing outright would answer with a reset.
  if (evicted_) return do_linger();
  phase_ = phase::idle;
  parser_.emplace();
  parser_->header_limit(
      static_cast<std::uint32_t>(std::min<std::size_t>(ctx_->limits.header_limit, UINT32_MAX)));
  parser_->body_limit(ctx_->limits.body_limit);

  // A pipelined request is already (partly) in the buffer: its clock starts now.
  if (buffer_.size() > 0) return do_read_request();

  // An idle connection keeps no more than one first read's worth of buffer: a large
  // request must not pin its memory for as long as its connection stays open.
  if (buffer_.capacity() > first_read_size) buffer_.shrink_to_fit();

  // Otherwise wait for the first byte under the idle deadline, so that the read
  // deadline below measures the request itself and a slow sender cannot stretch it.
  // Until it comes, the connection may be evicted to make room for a new one.
  tracker_->set_activity(this, connection_tracker::activity::idle);
  wait_first_bytes(ctx_->limits.idle_timeout);
}

void http_session::wait_first_bytes(std::chrono::milliseconds timeout) {
  stream_.expires_after(timeout);
  stream_.async_read_some(buffer_.prepare(std::min(first_read_size, buffer_.max_size())),
                          [self = shared_from_this()](beast::error_code ec, std::size_t n) {
                            self->guarded("read", [&] { self->on_first_bytes(ec, n); });
                          });
}

void http_session::on_first_bytes(beast::error_code ec, std::size_t n) {
  if (phase_ == phase::closed) return;
  // A read that completed before the cancellation took effect brings its bytes: they
  // are served like any request, and stopping_ or evicted_ closes the connection after.
  if (ec == net::error::operation_aborted && std::exchange(interrupted_, false)) {
    return on_interrupted();
  }
  interrupted_ = false;
  if (ec) {
    ctx_->log.log(log_level::debug, "http {}: closing idle connection: {}", peer_, ec.message());
    return close();
  }
  buffer_.commit(n);
  do_read_request();
}

void http_session::on_interrupted() {
  beast::error_code ec;
  const std::size_t unread = stream_.socket().available(ec);
  // A request is already arriving: closing would reset it, so it is read (no received
  // byte was lost by the cancellation), answered with Connection: close, and then the
  // connection closes.
  if (!ec && unread > 0) {
    tracker_->set_activity(this, connection_tracker::activity::busy);
    return wait_first_bytes(stopping_ ? std::min(stop_request_wait, ctx_->limits.read_timeout)
                                      : ctx_->limits.read_timeout);
  }
  // At shutdown, a new connection has not sent its request yet but its client has
  // connected and is about to: the wait for it is cut to stop_request_wait.
  if (stopping_ && seq_ == 0) {
    return wait_first_bytes(std::min(stop_request_wait, ctx_->limits.idle_timeout));
  }
  // An idle keep-alive connection at shutdown, or an evicted one, has nothing to finish.
  if (evicted_) {
    ctx_->log.log(log_level::debug, "http {}: closing idle connection to make room for a new one",
                  peer_);
  }
  close();
}

void http_session::do_read_request() {
  phase_ = phase::reading;
  tracker_->set_activity(this, connection_tracker::activity::transfer);
  stream_.expires_after(ctx_->limits.read_timeout);
  http::async_read(stream_, buffer_, *parser_,
                   [self = shared_from_this()](beast::error_code ec, std::size_t n) {
                     self->guarded("read", [&] { self->on_read(ec, n); });
                   });
}

void http_session::on_read(beast::error_code ec, std::size_t /*n*/) {
  if (phase_ == phase::closed) return;
  if (!ec) return handle_request();

  if (ec == http::error::header_limit || ec == http::error::buffer_overflow) {
    return respond_error(
        http::status::request_header_fields_too_large,
        fmt::format("request header too large (limit {} bytes)", ctx_->limits.header_limit));
  }
  if (ec == http::error::body_limit) {
    return respond_error(
        http::status::payload_too_large,
        fmt::format("request body too large (limit {} bytes)", ctx_->limits.body_limit));
  }
  if (is_parse_error(ec) && !is_disconnect(ec)) {
    return respond_error(http::status::bad_request,
                         fmt::format("malformed request: {}", ec.message()));
  }
  ctx_->log.log(log_level::debug, "http {}: closing while reading: {}", peer_, ec.message());
  close();
}

void http_session::handle_request() {
  auto req = parser_->release();
  parser_.reset();
  req_version_ = req.version();
  req_keep_alive_ = req.keep_alive();
  req_head_ = req.method() == http::verb::head;
  phase_ = phase::handling;
  tracker_->set_activity(this, connection_tracker::activity::busy);
  const auto seq = ++seq_;

  // The handler may answer from any thread and at any time, even after the session
  // closed: the callback keeps the session alive and hops back onto its strand, where
  // on_response drops answers that no longer match the request in flight.
  auto done = [self = shared_from_this(), seq](http_response res) {
    net::post(self->ex_, [self, seq, res = std::move(res)]() mutable {
      self->guarded("respond", [&] { self->on_response(seq, std::move(res)); });
    });
  };
  ctx_->handler(std::move(req), std::move(done));
}

void http_session::on_response(std::uint64_t seq, http_response res) {
  if (phase_ != phase::handling || seq != seq_) return;
  const bool keep_alive = req_keep_alive_ && !says_close(res) && !stopping_ && !evicted_;
  res_ = std::move(res);
  finish_response(res_, keep_alive);
  do_write(ctx_->limits.write_timeout);
}

void http_session::respond_error(http::status status, std::string_view message) {
  ctx_->log.log(log_level::debug, "http {}: {} {}", peer_, static_cast<unsigned>(status), message);
  const bool header_done = parser_ && parser_->is_header_done();
  req_version_ = header_done && parser_->get().version() < 11 ? 10 : 11;
  req_head_ = header_done && parser_->get().method() == http::verb::head;
  parser_.reset();
  res_ = ctx_->on_error ? ctx_->on_error(status, message) : plain_error(status, message);
  finish_response(res_, false);
  do_write(ctx_->limits.write_timeout);
}

void http_session::finish_response(http_response& res, bool keep_alive) {
  keep_alive_ = keep_alive;
  res.version(req_version_);
  res.keep_alive(keep_alive);
  if (res.find(http::field::server) == res.end()) res.set(http::field::server, server_name());
  if (!req_head_) {
    res.prepare_payload();
    return;
  }
  // HEAD: announce the length the GET would have had, then send no body at all. An
  // empty body with a Content-Length already set means the handler computed it itself.
  if (!res.body().empty() || res.find(http::field::content_length) == res.end()) {
    res.prepare_payload();
  }
  res.body().clear();
}

void http_session::do_write(std::chrono::milliseconds timeout) {
  phase_ = phase::writing;
  tracker_->set_activity(this, connection_tracker::activity::transfer);
  stream_.expires_after(timeout);
  // Every answer has a string body with its Content-Length set (finish_response), so the
  // wire form is the head followed by the body: two buffers in one gathered write. Beast's
  // general serializer (chunking, body readers) cost more than a third of the network
  // thread's time per request; the fields themselves are still Beast's.
  write_head(res_, head_);
  const std::array<net::const_buffer, 2> wire{net::buffer(head_), net::buffer(res_.body())};
  net::async_write(stream_, wire, [self = shared_from_this()](beast::error_code ec, std::size_t n) {
    self->guarded("write", [&] { self->on_write(ec, n); });
  });
}

void http_session::on_write(beast::error_code ec, std::size_t /*n*/) {
  if (phase_ == phase::closed) return;
  res_ = {};
  if (ec) {
    ctx_->log.log(log_level::debug, "http {}: write failed: {}", peer_, ec.message());
    return close();
  }
  // The client was told to close: it may still be sending, so drain before closing.
  // A keep-alive response interrupted by stop() has nothing of the peer's to protect.
  if (!keep_alive_) return do_linger();
  if (stopping_) return close();
  do_wait_request();
}

void http_session::do_linger() {
  phase_ = phase::closing;
  tracker_->set_activity(this, connection_tracker::activity::busy);
  beast::error_code ec;
  stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
  if (ec) return close();
  stream_.expires_after(std::min(linger_limit, ctx_->limits.read_timeout));
  read_and_discard();
}

void http_session::read_and_discard() {
  // Nothing in the buffer matters any more; what it already holds is read into.
  buffer_.clear();
  const auto room = std::min(std::max(first_read_size, buffer_.capacity()), buffer_.max_size());
  stream_.async_read_some(buffer_.prepare(room),
                          [self = shared_from_this()](beast::error_code ec, std::size_t n) {
                            self->guarded("linger", [&] { self->on_linger(ec, n); });
                          });
}

void http_session::on_linger(beast::error_code ec, std::size_t /*n*/) {
  if (phase_ == phase::closed) return;
  if (ec) return close();
  // The deadline set in do_linger still runs: it bounds the whole drain.
  read_and_discard();
}

}  // namespace somrated::server_detail
