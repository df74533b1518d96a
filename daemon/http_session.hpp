#pragma once

// Private to the HTTP transport: the per-connection session and the tracker that the
// listener (http_server.cpp) uses to count, stop and close sessions.

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/parser.hpp>

#include "somrated/http_server.hpp"

namespace somrated::server_detail {

namespace net = boost::asio;
namespace beast = boost::beast;

/// What every session of one server shares; immutable once the server is built.
struct session_context {
  server_limits limits;      ///< Sizes and deadlines.
  request_handler handler;   ///< Turns a request into a response.
  error_responder on_error;  ///< Builds the transport's own 4xx/503 answers.
  logger& log;               ///< Where session events go.
};

class http_session;

/// Knows every live session of one server: counts them, stops and closes them, picks
/// an idle or stalled one to make room for a new connection, and tells waiters when the
/// last one is gone.
///
/// Sessions run on their own strands while the listener runs on another, so the set is
/// guarded by a mutex; the count is an atomic so connections() can read it lock-free.
class connection_tracker {
 public:
  /// Waiters' callbacks are posted to ex.
  explicit connection_tracker(net::any_io_executor ex);

  /// Registers a session; counted sessions count towards max_connections.
  void add(const std::shared_ptr<http_session>& s, bool counted);
  /// Unregisters a session; wakes the waiters if it was the last one.
  void remove(const http_session* s);

  /// What a session is doing, as far as making room for a new connection goes.
  enum class activity {
    busy,      ///< The handler has its request, or it is closing: never evicted.
    idle,      ///< Waiting for a request: evicted first, longest idle first.
    transfer,  ///< Reading a request or writing a response: evicted once stalled.
  };

  /// Records what a counted session does from now on.
  void set_activity(const http_session* s, activity a);
  /// Takes a session out of the count and returns it, for the caller to evict: the one
  /// idle the longest, else the one whose transfer began the longest ago if that was
  /// before stalled_since; null when there is none.
  std::shared_ptr<http_session> take_for_room(std::chrono::steady_clock::time_point stalled_since);

  /// Number of counted sessions.
  std::size_t count() const noexcept { return counted_.load(std::memory_order_relaxed); }
  /// Number of sessions of either kind.
  std::size_t size() const;

  /// Asks every session to finish its current request and then close.
  void stop_all();
  /// Closes every session now.
  void close_all();
  /// Posts done once no session is left (right away if there is none).
  void when_empty(std::function<void()> done);

 private:
  /// Sessions in the order they entered their list.
  using session_list = std::list<const http_session*>;

  /// A registered session and whether it counts towards the limit.
  struct entry {
    std::weak_ptr<http_session> session;  ///< Weak: the tracker never keeps a session alive.
    bool counted;                         ///< Served session (true) or 503 reject/evicted (false).
    activity what;                        ///< Which list node is in.
    session_list::iterator node;          ///< The session's node; spliced, never reallocated.
    std::chrono::steady_clock::time_point since;  ///< When it entered that list.
  };

  /// The list that holds sessions doing a.
  session_list& list_of(activity a);
  /// Moves e's node to the end of the list for a.
  void move(entry& e, activity a);

  /// The registered sessions that are still alive, copied under the lock.
  std::vector<std::shared_ptr<http_session>> snapshot() const;
  /// Erases s; returns the waiters to wake if the map became empty.
  std::vector<std::function<void()>> erase(const http_session* s);

  net::any_io_executor ex_;   ///< Where waiters run.
  mutable std::mutex mutex_;  ///< Guards everything below but counted_.
  std::unordered_map<const http_session*, entry> sessions_;  ///< Keyed by address.
  session_list idle_;                                        ///< Idle sessions, longest idle first.
  session_list transfer_;  ///< Sessions reading or writing, longest at it first.
  session_list busy_;      ///< Every other session, rejects and evicted ones included.
  std::vector<std::function<void()>> waiters_;  ///< Waiting for an empty map.
  std::atomic<std::size_t> counted_{0};         ///< Counted entries in sessions_.
};

/// One accepted connection: reads a request, hands it to the handler, writes the
/// response, and repeats while keep-alive holds.
///
/// All member functions except the constructor run on the session's strand. The
/// handler may answer from any thread; its response is posted back to the strand.
class http_session : public std::enable_shared_from_this<http_session> {
 public:
  /// Takes over an accepted socket (bound to its own strand).
  http_session(net::ip::tcp::socket socket, std::shared_ptr<const session_context> ctx,
               std::shared_ptr<connection_tracker> tracker, bool counted);
  /// Unregisters the session if close() did not.
  ~http_session();
  http_session(const http_session&) = delete;
  http_session& operator=(const http_session&) = delete;

  /// The strand every operation of this session runs on.
  const net::any_io_executor& executor() const noexcept { return ex_; }

  /// Starts serving requests.
  void run();
  /// Answers 503 "too many connections" and closes.
  void reject();
  /// Server shutdown: close now if idle, otherwise finish the request with Connection: close.
  void stop();
  /// Room is needed for a new connection: close now if idle (unless a request is
  /// already arriving) or stalled reading or writing; otherwise close after the
  /// response in the works.
  void evict();
  /// Closes the socket now and unregisters; idempotent.
  void close() noexcept;

 private:
  /// Where the session is in its request cycle.
  enum class phase {
    idle,      ///< Waiting for the first byte of a request.
    reading,   ///< Bytes arrived; reading the rest of the request.
    handling,  ///< The handler has the request.
    writing,   ///< Writing a response.
    closing,   ///< Sent everything; draining the peer before closing.
    closed,    ///< Socket closed.
  };

  /// Prepares a fresh parser and waits (idle deadline) for the next request to begin.
  void do_wait_request();
  /// Reads the first bytes of the next request under the given deadline.
  void wait_first_bytes(std::chrono::milliseconds timeout);
  /// The first bytes of a request arrived (or the idle deadline passed).
  void on_first_bytes(beast::error_code ec, std::size_t n);
  /// stop() or evict() cancelled the idle read: serve a request already arriving,
  /// give a new connection a last moment at shutdown, or close.
  void on_interrupted();
  /// Reads the rest of the request under the read deadline.
  void do_read_request();
  /// A complete request, a parse error or a disconnect.
  void on_read(beast::error_code ec, std::size_t n);
  /// Hands the parsed request to the handler with a callback bound to this session.
  void handle_request();
  /// The handler's answer, back on the strand; seq names the request it answers.
  void on_response(std::uint64_t seq, http_response res);
  /// Answers a request the transport refused (431, 413, 400) and closes after it.
  void respond_error(http::status status, std::string_view message);
  /// Writes res_ under the given deadline.
  void do_write(std::chrono::milliseconds timeout);
  /// Response written: read the next request, or close.
  void on_write(beast::error_code ec, std::size_t n);
  /// Shuts down the sending side and drains the peer for a bounded time.
  void do_linger();
  /// Reads (into buffer_) and drops what the peer sends while lingering.
  void read_and_discard();
  /// Drained bytes or the end of the drain.
  void on_linger(beast::error_code ec, std::size_t n);

  /// Runs f, turning an escaping exception into a log line and a closed connection.
  template <class F>
  void guarded(const char* what, F&& f) noexcept;

  /// Stamps version, keep-alive, Server and Content-Length on the response to send.
  void finish_response(http_response& res, bool keep_alive);

  const net::any_io_executor ex_;  ///< The socket's strand; read from any thread by done().
  beast::tcp_stream stream_;       ///< The connection, with per-operation deadlines.
  beast::flat_buffer buffer_;      ///< Received bytes, including pipelined requests; bounded.
  std::optional<http::request_parser<http::string_body>> parser_;  ///< Fresh per request.
  std::string head_;   ///< res_'s status line and fields, serialized for the write.
  http_response res_;  ///< The response being written.
  std::shared_ptr<const session_context> ctx_;   ///< Limits, handler, logger.
  std::shared_ptr<connection_tracker> tracker_;  ///< Outlives the session.
  const bool counted_;                           ///< Was admitted under max_connections.

  phase phase_ = phase::idle;    ///< Where the request cycle is.
  bool stopping_ = false;        ///< The server is shutting down.
  bool evicted_ = false;         ///< Taken out of the count: close after the current request.
  bool interrupted_ = false;     ///< stop() or evict() cancelled the idle read.
  bool keep_alive_ = false;      ///< Whether the response being written keeps the connection.
  unsigned req_version_ = 11;    ///< Version of the request being answered.
  bool req_keep_alive_ = false;  ///< Whether the client asked to keep the connection.
  bool req_head_ = false;        ///< Whether the request being answered is a HEAD.
  std::uint64_t seq_ = 0;        ///< Identifies the request the handler holds.
  std::string peer_;             ///< "address:port" of the client, for log lines.
};

}  // namespace somrated::server_detail
