#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string_view>
#include <utility>

#include "somrated/config.hpp"
#include "somrated/http_server.hpp"
#include "somrated/response_cache.hpp"

namespace somrated {

class alert_engine;
class metrics;
class store;
class source_board;

/// The HTTP API: a route table of pure functions from a parsed request (plus the store
/// and the scheduler's board) to a response. It never sees a socket, so it is tested
/// without I/O. Runs on a database reader thread.
class api {
 public:
  /// Serves cfg's sources; board tells when each is scraped next. Alert writes go to
  /// engine (null: alert writes answer 503), then alerts_changed runs (it wakes the
  /// notification dispatcher); stats (may be null) feeds /metrics' in-process counters.
  /// writes (may be null: no response cache) counts the writer's jobs before and after
  /// each (odd while one runs), so answers to `/api/v1/latest` can be reused on the
  /// network thread until the next write begins.
  api(std::shared_ptr<const config> cfg, const source_board& board, alert_engine* engine = nullptr,
      std::function<void()> alerts_changed = {}, const metrics* stats = nullptr,
      const std::atomic<std::uint64_t>* writes = nullptr);

  /// Serves cfg from the next request on (a configuration reload). Thread-safe: a
  /// request already being answered finishes with the configuration it started with.
  void set_config(std::shared_ptr<const config> cfg);

  /// Answers one request using db for reads.
  http_response handle(const http_request& req, store& db) const;

  /// Answers a request that needs no database (health, index, 404, 405, bad targets),
  /// so it can be answered on the network thread however busy the readers are; nullopt
  /// when the request must go to handle() on a reader thread.
  std::optional<http_response> handle_without_store(const http_request& req) const;

  /// A cached answer and the route pattern it belongs to.
  struct cached_answer {
    http_response res;       ///< The answer, a 304 when the request's validator matched.
    std::string_view route;  ///< As route_name() would name it.
  };

  /// The answer to a GET or HEAD of `/api/v1/latest` (or `/v1/latest`) from the response
  /// cache, when nothing it was computed from has changed since; nullopt otherwise.
  /// Cheap enough for the network thread: no parsing, no database.
  std::optional<cached_answer> cached(const http_request& req) const;

  /// The route pattern a request goes to ("/api/v1/alerts/{name}"), or "other": a
  /// label of bounded cardinality for request metrics.
  std::string_view route_name(const http_request& req) const;

  /// True when the request goes to a route that writes (creating or deleting an alert
  /// rule, a test notification): handle() must then be called on the writer thread with
  /// the read-write store.
  bool needs_writer(const http_request& req) const;

  /// A JSON error response {"error":{"code":…,"message":…}} for status.
  static http_response error(unsigned http_version, http::status status, std::string_view code,
                             std::string_view message);

  /// The answer to a request the transport refused (400, 413, 431, 503): an error()
  /// with a code for the status and Connection: close.
  static http_response transport_error(http::status status, std::string_view message);

 private:
  /// handle() and handle_without_store() in one: db may be null.
  std::optional<http_response> respond(const http_request& req, store* db) const;

  /// The configuration in use, copied under config_mutex_ once per request.
  std::shared_ptr<const config> config_snapshot() const;

  mutable std::mutex config_mutex_;        ///< Guards cfg_: reloads swap it while readers run.
  std::shared_ptr<const config> cfg_;      ///< Sources, in configured order.
  const source_board& board_;              ///< The scheduler's next-scrape times.
  alert_engine* engine_;                   ///< Alert writes; used on the writer thread only.
  std::function<void()> alerts_changed_;   ///< Called after an alert write queued events.
  const metrics* stats_;                   ///< Counters for /metrics (stats may be null).
  std::atomic<std::uint64_t> reloads_{0};  ///< set_config() calls.
  const std::atomic<std::uint64_t>*
      writes_;                    ///< The writer's job count (odd while one runs), or null.
  mutable response_cache cache_;  ///< Recent `/api/v1/latest` answers.
};

}  // namespace somrated
