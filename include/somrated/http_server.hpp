#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string_view>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

namespace somrated {

class metrics;

class logger;

namespace http = boost::beast::http;

/// The request type the server hands to handlers.
using http_request = http::request<http::string_body>;
/// The response type handlers give back.
using http_response = http::response<http::string_body>;

/// Produces the response to a request, possibly on another thread; calls done once.
/// The transport sets Content-Length, keep-alive and strips the body for HEAD.
using request_handler =
    std::function<void(http_request req, std::function<void(http_response)> done)>;

/// Builds the response for a request the transport itself rejected (413, 431, 400, 503).
using error_responder = std::function<http_response(http::status status, std::string_view message)>;

/// Limits and deadlines of the listening side.
struct server_limits {
  /// Open connections at most. A new connection beyond it takes the place of the one
  /// idle the longest, else of the one stalled the longest (see stall_grace), or gets
  /// 503 and is closed. Lowered at start to what the open file limit allows.
  std::size_t max_connections = 1024;
  std::size_t header_limit = 16 * 1024;  ///< Request line and headers; larger gets 431.
  std::size_t body_limit = 64 * 1024;    ///< Request body; larger gets 413.
  std::chrono::milliseconds read_timeout{
      std::chrono::seconds(15)};  ///< Per request: from first byte to complete request.
  std::chrono::milliseconds idle_timeout{
      std::chrono::seconds(60)};  ///< Keep-alive wait for the next request.
  std::chrono::milliseconds write_timeout{std::chrono::seconds(15)};
  /// A connection reading its request or writing its response for longer than this is
  /// stalled: at max_connections, it may be closed for a new connection.
  std::chrono::milliseconds stall_grace{std::chrono::seconds(1)};
};

/// The HTTP/1.1 listener and its sessions (keep-alive, limits, deadlines).
///
/// Sessions only read, time out and write; what to answer comes from the handler.
/// Memory per connection is bounded: requests are read one at a time into a buffer of
/// at most header_limit plus one read, the next is not read before the previous answer
/// is written, and an idle connection keeps at most a few KiB.
/// One io_context thread runs all sessions; handlers may finish on other threads and
/// their responses are posted back to the session's executor.
class http_server {
 public:
  /// Binds endpoint (throws boost::system::system_error when it cannot). Both
  /// constructors raise the soft open file limit when max_connections needs it; stats
  /// (may be null) counts evictions, 503s and failed accepts.
  http_server(boost::asio::io_context& ioc, const boost::asio::ip::tcp::endpoint& endpoint,
              server_limits limits, request_handler handler, error_responder on_error, logger& log,
              metrics* stats = nullptr);
  /// Adopts an already listening socket (socket activation).
  http_server(boost::asio::io_context& ioc, int listening_fd, server_limits limits,
              request_handler handler, error_responder on_error, logger& log,
              metrics* stats = nullptr);
  ~http_server();
  http_server(const http_server&) = delete;
  http_server& operator=(const http_server&) = delete;

  /// Starts accepting.
  void start();

  /// Turns new clients away and closes the listener a moment later (a connection
  /// already in its queue is served), lets in-flight requests finish for up to grace,
  /// then closes the rest. Calls done (on the io_context) once the listener is closed
  /// and every session is gone.
  void stop(std::chrono::milliseconds grace, std::function<void()> done);

  /// The bound address (useful with port 0).
  boost::asio::ip::tcp::endpoint local_endpoint() const;

  /// Number of open connections.
  std::size_t connections() const noexcept;

 private:
  struct impl;
  std::shared_ptr<impl> impl_;
};

}  // namespace somrated
