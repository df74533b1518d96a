#include "somrated/http_server.hpp"

#include <linux/filter.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <exception>
#include <iterator>
#include <utility>

#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/system/errc.hpp>
#include <boost/system/system_error.hpp>

#include "http_session.hpp"
#include "somrated/log.hpp"
#include "somrated/metrics.hpp"

namespace somrated {

namespace net = boost::asio;
using tcp = net::ip::tcp;
using server_detail::connection_tracker;
using server_detail::http_session;
using server_detail::session_context;

namespace {

/// First pause after a failing accept; doubles up to accept_backoff_max.
///
/// Errors such as EMFILE leave the pending connection in the backlog, so retrying at
/// once would fail again at once and spin the io thread. Pausing lets sessions finish
/// and release descriptors; the backlog holds new clients meanwhile.
constexpr std::chrono::milliseconds accept_backoff_min{50};
/// Longest pause between accept retries.
constexpr std::chrono::milliseconds accept_backoff_max{1000};

/// Connections taken from the backlog at shutdown, at most (the listen backlog's size).
constexpr std::size_t max_drained = 4096;

/// How long the listener stays open at shutdown, turning new clients away, so that a
/// handshake already under way can complete and be served (see turn_away_new()).
///
/// Such a handshake's SYN came before shutdown, so its last ACK follows within one
/// round trip of the client: microseconds on loopback, a millisecond on a LAN. A
/// client slower than this sees a reset, as it would from any listener that closes.
constexpr std::chrono::milliseconds handshake_wait{50};

/// Events that an abusive client can repeat at will (evictions, 503s, failed accepts)
/// are logged at most this often, with a count of what happened in between.
constexpr std::chrono::seconds pressure_log_interval{60};

/// Decides when a repeated event is logged again; counts the occurrences in between.
class log_throttle {
 public:
  /// Counts one occurrence; returns how many occurred since the last logged one
  /// (this one included) when a line is due, otherwise 0.
  std::size_t hit() {
    ++count_;
    const auto now = std::chrono::steady_clock::now();
    if (now < next_) return 0;
    next_ = now + pressure_log_interval;
    return std::exchange(count_, 0);
  }

 private:
  std::chrono::steady_clock::time_point next_{};  ///< Earliest time for the next line.
  std::size_t count_ = 0;                         ///< Occurrences not yet logged.
};

/// Idle connections closed at once when accept() runs out of descriptors; also how far
/// below the connections then open the admission cap goes.
constexpr std::size_t descriptor_shed = 16;

/// How long a cap lowered for lack of descriptors holds before max_connections applies
/// again (the next shortage lowers it again).
constexpr std::chrono::seconds cap_recovery{60};

/// File descriptors kept for everything but counted connections: the database, fetches,
/// notifiers, the listener, and connections being answered 503.
constexpr std::size_t descriptor_reserve = 256;

/// limits, with max_connections lowered to what RLIMIT_NOFILE leaves room for.
///
/// When the soft limit is too low for max_connections it is first raised to the hard
/// limit, as programs that need many descriptors are expected to do (the soft limit
/// stays low by default only for the sake of select(), which nothing here uses). Under
/// a system call filter that forbids setrlimit (the shipped unit) this fails quietly
/// and LimitNOFILE= decides. Admitting more connections than there are descriptors
/// would turn the overflow into accept() failures, where the oldest idle connection
/// can no longer be evicted to make room.
server_limits fit_descriptor_limit(server_limits limits, logger& log) {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return limits;
  const rlim_t wanted = static_cast<rlim_t>(limits.max_connections) + descriptor_reserve;
  if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < wanted && rl.rlim_cur < rl.rlim_max) {
    rlimit raised = rl;
    raised.rlim_cur = rl.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) {
      log.log(log_level::info, "http: raised the open file limit from {} to {}", rl.rlim_cur,
              raised.rlim_cur);
      rl = raised;
    }
  }
  if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= wanted) return limits;
  const auto fits = static_cast<std::size_t>(
      rl.rlim_cur > 2 * descriptor_reserve ? rl.rlim_cur - descriptor_reserve : rl.rlim_cur / 2);
  log.log(log_level::warning,
          "http: max_connections = {} needs about {} open files but the limit is {}: serving at "
          "most {} connections at once (raise LimitNOFILE= or ulimit -n)",
          limits.max_connections, wanted, rl.rlim_cur, std::max<std::size_t>(fits, 1));
  limits.max_connections = std::max<std::size_t>(fits, 1);
  return limits;
}

/// The TCP protocol (v4 or v6) of a listening descriptor; throws if fd is not one.
tcp protocol_of_listening_fd(int fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    throw boost::system::system_error(errno, boost::system::system_category(),
                                      "http_server: getsockname on adopted socket");
  }
  int listening = 0;
  socklen_t opt_len = sizeof listening;
  if (::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &opt_len) != 0) {
    throw boost::system::system_error(errno, boost::system::system_category(),
                                      "http_server: getsockopt on adopted socket");
  }
  if (listening == 0) {
    throw boost::system::system_error(EINVAL, boost::system::system_category(),
                                      "http_server: adopted socket is not listening");
  }
  if (addr.ss_family == AF_INET) return tcp::v4();
  if (addr.ss_family == AF_INET6) return tcp::v6();
  throw boost::system::system_error(EAFNOSUPPORT, boost::system::system_category(),
                                    "http_server: adopted socket is not IPv4 or IPv6");
}

}  // namespace

/// The listener: accepts connections, admits or rejects them, and runs shutdown.
///
/// Everything here runs on strand_; sessions run on strands of their own and are
/// reached only through the tracker.
struct http_server::impl : std::enable_shared_from_this<impl> {
  /// Prepares an acceptor that is not open yet.
  impl(net::io_context& ioc, server_limits limits, request_handler handler,
       error_responder on_error, logger& log, metrics* stats)
      : ioc_(ioc),
        stats_(stats),
        strand_(net::make_strand(ioc)),
        acceptor_(strand_),
        backoff_timer_(strand_),
        grace_timer_(strand_),
        close_timer_(strand_),
        ctx_(std::make_shared<const session_context>(session_context{
            fit_descriptor_limit(limits, log), std::move(handler), std::move(on_error), log})),
        tracker_(std::make_shared<connection_tracker>(strand_)),
        cap_(ctx_->limits.max_connections) {}

  /// Opens, binds and listens on endpoint.
  void bind(const tcp::endpoint& endpoint) {
    acceptor_.open(endpoint.protocol());
    acceptor_.set_option(net::socket_base::reuse_address(true));
    acceptor_.bind(endpoint);
    acceptor_.listen(net::socket_base::max_listen_connections);
    endpoint_ = acceptor_.local_endpoint();
  }

  /// Takes ownership of a socket that is already bound and listening.
  void adopt(int fd) {
    acceptor_.assign(protocol_of_listening_fd(fd), fd);
    endpoint_ = acceptor_.local_endpoint();
    adopted_ = true;
  }

  /// Accepts the next connection onto a strand of its own.
  void do_accept() {
    acceptor_.async_accept(
        net::make_strand(ioc_),
        [self = shared_from_this()](boost::system::error_code ec, tcp::socket socket) {
          self->accepting_ = false;
          self->on_accept(ec, std::move(socket));
        });
    accepting_ = true;
  }

  /// Starts a session for the new connection (or rejects it) and accepts again.
  void on_accept(boost::system::error_code ec, tcp::socket socket) noexcept {
    if (stopping_) return on_accept_stopping(ec, std::move(socket));
    if (ec == net::error::operation_aborted) return;
    if (ec == net::error::connection_aborted) return do_accept_guarded();
    if (ec) return back_off(ec);
    if (std::exchange(accept_failure_logged_, false)) {
      ctx_->log.log(log_level::notice, "http: accepting again after {} failed attempt(s)",
                    failed_accepts_);
    }
    failed_accepts_ = 0;
    backoff_ = std::chrono::milliseconds::zero();
    admit(std::move(socket));
    do_accept_guarded();
  }

  /// At shutdown: a connection whose handshake completed before new clients were turned
  /// away is waiting for an answer like any other, so it is served and then closed.
  /// Accepting goes on until the listener closes.
  void on_accept_stopping(boost::system::error_code ec, tcp::socket socket) noexcept {
    if (!ec) admit_to_finish(std::move(socket));
    const bool again = !ec || ec == net::error::connection_aborted;
    if (again && acceptor_.is_open()) return do_accept_guarded();
    finish_when_idle();
  }

  /// Starts a session that answers the request its client has sent or is sending, then
  /// closes (at shutdown).
  void admit_to_finish(tcp::socket socket) noexcept {
    if (auto session = admit(std::move(socket)))
      net::post(session->executor(), [session] { session->stop(); });
  }

  /// Starts a session for an accepted connection; when max_connections are open, first
  /// evicts an idle or stalled connection (make_room), or answers 503 if every one is
  /// busy. Null when no session could be made.
  std::shared_ptr<http_session> admit(tcp::socket socket) noexcept {
    try {
      const bool at_limit = tracker_->count() >= cap();
      const bool full = at_limit && (stopping_ || !make_room());
      auto session = std::make_shared<http_session>(std::move(socket), ctx_, tracker_, !full);
      tracker_->add(session, !full);
      if (full) {
        if (const auto n = rejects_.hit()) {
          ctx_->log.log(log_level::warning,
                        "http: {} connections open and none idle: answering new ones with 503 "
                        "({} since the last such line)",
                        cap_, n);
        }
        count(metrics::connection_event::rejected);
        session->reject();
      } else {
        session->run();
      }
      return session;
    } catch (const std::exception& e) {
      ctx_->log.log(log_level::error, "http: cannot start session: {}", e.what());
      return nullptr;
    }
  }

  /// Counts a pressure event for /metrics.
  void count(metrics::connection_event event) noexcept {
    if (stats_) stats_->count_connection(event);
  }

  /// Evicts the connection idle the longest, or else the one stalled the longest in
  /// reading its request or writing its response; false when there is neither.
  ///
  /// Like nginx reusing its keep-alive connections, a connection that waits for a
  /// request is the first to give way: idle connections, however many, cannot lock out
  /// a client with a request to make. Nor can connections that hold their slot by
  /// trickling a request in or by not reading their response, once they have been at
  /// it for stall_grace (1 s by default: long enough for any client on a working
  /// network to send a request or take a response).
  /// A request the handler is working on is never cut short.
  bool make_room() {
    auto victim =
        tracker_->take_for_room(std::chrono::steady_clock::now() - ctx_->limits.stall_grace);
    if (!victim) return false;
    net::post(victim->executor(), [victim] { victim->evict(); });
    count(metrics::connection_event::evicted);
    if (const auto n = evictions_.hit()) {
      ctx_->log.log(log_level::notice,
                    "http: {} connections open: closing the longest idle ones (or stalled ones) "
                    "to admit new ones ({} since the last such line)",
                    cap_, n);
    }
    return true;
  }

  /// Connections admitted at most now: max_connections, or less for a while after
  /// accept() ran out of descriptors.
  std::size_t cap() {
    if (cap_ < ctx_->limits.max_connections &&
        std::chrono::steady_clock::now() - cap_lowered_at_ >= cap_recovery) {
      cap_ = ctx_->limits.max_connections;
      ctx_->log.log(log_level::notice, "http: admitting up to {} connections again", cap_);
    }
    return cap_;
  }

  /// accept() ran out of descriptors while connections hold many of them: admits fewer
  /// for a while, so that a new connection replaces an idle one instead of waiting for
  /// a descriptor, and closes a few idle ones so that the next accepts succeed.
  ///
  /// Without this a flood of idle connections that reaches the descriptor limit before
  /// max_connections would keep everyone else in the backlog until idle_timeout. When
  /// few connections are open, something else holds the descriptors and the server
  /// only waits.
  void shed_for_descriptors() {
    const std::size_t open = tracker_->count();
    if (open < 2 * descriptor_shed) return;
    cap_ = open - descriptor_shed;
    cap_lowered_at_ = std::chrono::steady_clock::now();
    while (tracker_->count() > cap_ && make_room()) {
    }
  }

  /// Turns new clients away while the listener stays open: a socket filter drops every
  /// SYN, so a new client retries a moment later, finds the port closed and is refused.
  /// The last ACK of a handshake already under way still passes, so that connection
  /// completes and is served. False when no filter could be attached (not Linux), or
  /// for an adopted socket: the service manager keeps that one open, and what waits in
  /// it is for the next start.
  ///
  /// A filter that dropped every packet would also drop that last ACK: the client would
  /// count itself connected, and get a reset once the listener closed.
  bool turn_away_new() noexcept {
    if (adopted_) return false;
    // A TCP socket filter sees the TCP header at offset 0; byte 13 holds the flags.
    sock_filter drop_syn[] = {
        BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 13),
        BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, 0x02, 0, 1),  // SYN set: next, else skip one
        BPF_STMT(BPF_RET | BPF_K, 0),                      // drop
        BPF_STMT(BPF_RET | BPF_K, 0xffffffff),             // keep the whole packet
    };
    const sock_fprog program{static_cast<unsigned short>(std::size(drop_syn)), drop_syn};
    return ::setsockopt(acceptor_.native_handle(), SOL_SOCKET, SO_ATTACH_FILTER, &program,
                        sizeof program) == 0;
  }

  /// Closes the listener, first taking, without waiting, the connections the kernel has
  /// completed but nobody has accepted yet: closing a listening socket resets those,
  /// although their clients have connected and may have sent a request. Each becomes a
  /// session that answers and closes. Not for an adopted socket, whose queue is for the
  /// next start.
  void close_listener() noexcept {
    boost::system::error_code ec;
    if (!adopted_ && acceptor_.is_open()) {
      acceptor_.non_blocking(true, ec);
      // Bounded: a flood cannot keep shutdown accepting forever.
      for (std::size_t i = 0; !ec && i < max_drained; ++i) {
        tcp::socket socket(net::make_strand(ioc_));
        acceptor_.accept(socket, ec);
        if (!ec) admit_to_finish(std::move(socket));
      }
    }
    acceptor_.close(ec);
    finish_when_idle();
  }

  /// do_accept, logging instead of throwing; a failure here ends accepting.
  void do_accept_guarded() noexcept {
    try {
      do_accept();
    } catch (const std::exception& e) {
      ctx_->log.log(log_level::error, "http: accept stopped: {}", e.what());
    }
  }

  /// Waits a little after a failed accept (EMFILE and the like), then accepts again.
  /// The first failure of a run is a warning, the retries only debug lines.
  void back_off(boost::system::error_code ec) noexcept {
    backoff_ = std::clamp(backoff_ * 2, accept_backoff_min, accept_backoff_max);
    ++failed_accepts_;
    count(metrics::connection_event::accept_failed);
    if (ec == boost::system::errc::too_many_files_open ||
        ec == boost::system::errc::too_many_files_open_in_system) {
      shed_for_descriptors();
    }
    const bool warn = failed_accepts_ == 1 && accept_failures_.hit() > 0;
    accept_failure_logged_ = accept_failure_logged_ || warn;
    ctx_->log.log(warn ? log_level::warning : log_level::debug,
                  "http: accept failed: {}; retrying in {} ms (admitting at most {} connections)",
                  ec.message(), backoff_.count(), cap_);
    backoff_timer_.expires_after(backoff_);
    backoff_timer_.async_wait([self = shared_from_this()](boost::system::error_code wait_ec) {
      if (!wait_ec && !self->stopping_) self->do_accept_guarded();
    });
  }

  /// Turns new clients away, asks sessions to finish, and closes the listener once a
  /// handshake under way has had handshake_wait to complete; after grace closes the
  /// sessions still open. done runs once the listener is closed and every session gone.
  void begin_stop(std::chrono::milliseconds grace, std::function<void()> done) {
    if (done && done_) {
      done_ = [first = std::move(done_), then = std::move(done)] {
        first();
        then();
      };
    } else if (done) {
      done_ = std::move(done);
    }
    if (stopping_) return finish_when_idle();
    stopping_ = true;
    backoff_timer_.cancel();
    tracker_->stop_all();
    grace_timer_.expires_after(grace);
    grace_timer_.async_wait([self = shared_from_this()](boost::system::error_code wait_ec) {
      if (wait_ec) return;
      const auto left = self->tracker_->size();
      if (left == 0) return;
      self->ctx_->log.log(log_level::notice,
                          "http: closing {} connection(s) still open after the grace period", left);
      self->tracker_->close_all();
    });
    if (!started_ || !turn_away_new()) return close_listener();
    close_timer_.expires_after(handshake_wait);
    close_timer_.async_wait(
        [self = shared_from_this()](boost::system::error_code) { self->close_listener(); });
  }

  /// Calls done_ once the listener is closed, its last accept has completed, and no
  /// session is left. Until the listener's last accept has run, a connection can still
  /// join, so emptiness alone does not end the shutdown.
  void finish_when_idle() {
    if (!done_ || accepting_ || acceptor_.is_open()) return;
    // The waiter runs on strand_, so it may touch the timer; weak because a server
    // destroyed meanwhile has no timer left to cancel.
    tracker_->when_empty([weak = weak_from_this()] {
      auto self = weak.lock();
      if (!self || !self->done_) return;
      if (self->tracker_->size() > 0) return self->finish_when_idle();
      self->grace_timer_.cancel();
      std::exchange(self->done_, nullptr)();
    });
  }

  /// Closes the acceptor and every session at once (the server is being destroyed).
  void abandon() {
    stopping_ = true;
    boost::system::error_code ec;
    acceptor_.close(ec);
    backoff_timer_.cancel();
    close_timer_.cancel();
    grace_timer_.cancel();
    tracker_->close_all();
  }

  net::io_context& ioc_;                                ///< Where new sessions get their strands.
  metrics* stats_;                                      ///< Pressure counters (may be null).
  net::strand<net::io_context::executor_type> strand_;  ///< Serialises the listener.
  tcp::acceptor acceptor_;                              ///< The listening socket.
  tcp::endpoint endpoint_;           ///< Cached: readable from any thread, also after stop.
  net::steady_timer backoff_timer_;  ///< Pause after a failed accept.
  net::steady_timer grace_timer_;    ///< Ends the shutdown grace period.
  net::steady_timer close_timer_;    ///< Closes the listener at shutdown (handshake_wait).
  std::function<void()> done_;       ///< What stop() asked to run when it is over.
  std::shared_ptr<const session_context> ctx_;   ///< Shared with every session.
  std::shared_ptr<connection_tracker> tracker_;  ///< Shared with every session.
  std::chrono::milliseconds backoff_{0};  ///< Current accept retry pause; zero after success.
  std::size_t cap_;                       ///< Connections admitted at most now (see cap()).
  std::chrono::steady_clock::time_point cap_lowered_at_{};  ///< When cap_ was last lowered.
  std::size_t failed_accepts_ = 0;      ///< Accept failures since the last success.
  bool accept_failure_logged_ = false;  ///< This run of failures was logged as a warning.
  log_throttle accept_failures_;        ///< Runs of failed accepts, for the log.
  log_throttle evictions_;              ///< Idle connections closed to make room.
  log_throttle rejects_;                ///< Connections answered 503.
  bool started_ = false;                ///< start() ran.
  bool adopted_ = false;                ///< The socket was passed in (socket activation).
  bool stopping_ = false;               ///< stop() ran or the server is being destroyed.
  bool accepting_ = false;              ///< An async_accept is outstanding.
};

http_server::http_server(net::io_context& ioc, const tcp::endpoint& endpoint, server_limits limits,
                         request_handler handler, error_responder on_error, logger& log,
                         metrics* stats)
    : impl_(std::make_shared<impl>(ioc, limits, std::move(handler), std::move(on_error), log,
                                   stats)) {
  impl_->bind(endpoint);
}

http_server::http_server(net::io_context& ioc, int listening_fd, server_limits limits,
                         request_handler handler, error_responder on_error, logger& log,
                         metrics* stats)
    : impl_(std::make_shared<impl>(ioc, limits, std::move(handler), std::move(on_error), log,
                                   stats)) {
  impl_->adopt(listening_fd);
}

http_server::~http_server() {
  // Pending operations hold the impl; closing everything lets them finish and release it.
  // If the io_context no longer runs, the queued call is destroyed with it instead.
  try {
    net::post(impl_->strand_, [self = impl_] { self->abandon(); });
  } catch (...) {
  }
}

void http_server::start() {
  net::post(impl_->strand_, [self = impl_] {
    if (self->started_ || self->stopping_) return;
    self->started_ = true;
    self->do_accept_guarded();
  });
}

void http_server::stop(std::chrono::milliseconds grace, std::function<void()> done) {
  net::post(impl_->strand_, [self = impl_, grace, done = std::move(done)]() mutable {
    self->begin_stop(grace, std::move(done));
  });
}

tcp::endpoint http_server::local_endpoint() const {
  return impl_->endpoint_;
}

std::size_t http_server::connections() const noexcept {
  return impl_->tracker_->count();
}

}  // namespace somrated
