#pragma once

#include <memory>
#include <string_view>

#include "somrated/config.hpp"
#include "somrated/http_server.hpp"

namespace somrated {

class store;
class source_board;

/// The HTTP API: a route table of pure functions from a parsed request (plus the store
/// and the scheduler's board) to a response. It never sees a socket, so it is tested
/// without I/O. Runs on a database reader thread.
class api {
 public:
  /// Serves cfg's sources; board tells when each is scraped next.
  api(std::shared_ptr<const config> cfg, const source_board& board);

  /// Answers one request using db for reads.
  http_response handle(const http_request& req, store& db) const;

  /// A JSON error response {"error":{"code":…,"message":…}} for status.
  static http_response error(unsigned http_version, http::status status, std::string_view code,
                             std::string_view message);

 private:
  std::shared_ptr<const config> cfg_;
  const source_board& board_;
};

}  // namespace somrated
