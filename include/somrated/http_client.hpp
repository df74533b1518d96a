#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/asio/any_io_executor.hpp>

namespace somrated {

/// One document to fetch, or one request to send (notifications).
struct fetch_request {
  std::string url;             ///< https://, http:// or file:// (file:// only with GET)
  std::string method = "GET";  ///< "GET" or "POST"; a POST never follows redirects.
  std::string body;            ///< Request body (POST).
  std::vector<std::pair<std::string, std::string>> headers;  ///< Extra request headers, in order.
  std::string ca_file;  ///< Extra PEM trust anchors added to the system store; empty = system only.
  std::string etag;     ///< Sent as If-None-Match when not empty.
  std::string last_modified;  ///< Sent as If-Modified-Since when not empty.
  std::chrono::milliseconds timeout{
      std::chrono::seconds(20)};    ///< Per operation (resolve, connect, handshake, write, read).
  std::size_t max_body = 8u << 20;  ///< A larger body fails the fetch.
  int max_redirects = 5;
  std::string user_agent;  ///< Empty = "somrated/<version> (exchange-rate tracker)".
};

/// The outcome of a fetch: error set (perhaps with the body the peer sent), not_modified,
/// or a 2xx body.
struct fetch_result {
  std::string
      error;  ///< Empty on success; else what failed and where ("connect 127.0.0.1:8443: Connection
              ///< refused", "HTTP 500 Internal Server Error", "body exceeds 8388608 bytes", "too
              ///< many redirects (5)", "TLS handshake: certificate verify failed").
  int status = 0;             ///< Final HTTP status; 0 when none was read.
  bool not_modified = false;  ///< 304 to a conditional request.
  std::string body;           ///< The response body, for any status read (capped by max_body),
                              ///< so callers can report what a refusing receiver said.
  std::string retry_after;    ///< The Retry-After header of the response, as sent.
  std::string content_type;   ///< The Content-Type header of a 2xx response, as sent.
  std::string etag;           ///< Validators of the response, for the next request.
  std::string last_modified;
  std::string final_url;  ///< After redirects.

  /// True for a usable body or a 304.
  bool ok() const noexcept { return error.empty(); }
};

/// The wait a Retry-After header value asks for: delay-seconds (at most a year) or an
/// HTTP date in any of RFC 9110's three forms (a date in the past means now). nullopt
/// for anything else; callers bound the wait themselves.
std::optional<std::chrono::milliseconds> parse_retry_after(std::string_view value);

/// Fetches documents over HTTP(S) with Beast and OpenSSL, or from file:// URLs.
///
/// HTTPS verifies the peer against the system trust store (plus ca_file), checks the
/// host name and sends SNI. Every operation has its own deadline; bodies are capped;
/// redirects are followed up to a bound; connections are not reused. All completions
/// run on the executor given at construction. Not thread-safe: use from that executor.
class http_client {
 public:
  /// Callback receiving the outcome; called exactly once.
  using handler = std::function<void(fetch_result)>;

  /// Uses ex for all I/O and completions.
  explicit http_client(boost::asio::any_io_executor ex);
  ~http_client();
  http_client(const http_client&) = delete;
  http_client& operator=(const http_client&) = delete;

  /// Starts one fetch; done runs on the executor once it has finished or failed.
  /// Destroying the client cancels fetches in flight and drops their callbacks
  /// uncalled, so a callback may safely capture the client's owner.
  void async_fetch(fetch_request req, handler done);

 private:
  struct impl;
  std::shared_ptr<impl> impl_;
};

}  // namespace somrated
