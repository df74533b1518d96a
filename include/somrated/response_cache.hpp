#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "somrated/http_server.hpp"

namespace somrated {

/// What a cached answer was computed from: the store's write count and the
/// configuration's reload count when the computation started.
struct cache_version {
  std::uint64_t data = 0;    ///< The writer's job count (db_worker::jobs_count()).
  std::uint64_t config = 0;  ///< Configuration reloads applied.
  bool operator==(const cache_version&) const = default;
  /// False while a writer job (and whatever it commits) is under way: the count is odd.
  bool settled() const { return data % 2 == 0; }
};

/// Recent answers to the hottest read (`/api/v1/latest`), so the network thread can
/// answer it without a trip to a database thread.
///
/// An entry is served only while nothing it was computed from has changed: the store
/// has committed no write since (the writer counts them after each commit), the
/// configuration was not reloaded, and it is younger than max_age, which bounds how late
/// a time-dependent field such as `stale` may flip. The version is read before the
/// database is, so an answer racing a write is stored under the older version and never
/// served. Bounded in entries and in body size, so varied query strings cannot grow it.
/// Thread-safe: readers store, the network thread finds.
class response_cache {
 public:
  using clock = std::chrono::steady_clock;

  /// Keeps at most max_entries answers, each at most max_body bytes, for max_age.
  explicit response_cache(std::size_t max_entries = 32, std::size_t max_body = 64 * 1024,
                          clock::duration max_age = std::chrono::seconds(1));

  /// A copy of the answer to target in HTTP/http_version (10 or 11) and its route label,
  /// if it was computed at version and is younger than max_age at now.
  std::optional<std::pair<http_response, std::string_view>> find(std::string_view target,
                                                                 unsigned http_version,
                                                                 cache_version version,
                                                                 clock::time_point now) const;

  /// Stores res, the answer to target in res.version(), as computed at version (read before the
  /// computation started at now), with route (a label that outlives the cache), replacing the
  /// oldest entry when full; does nothing for a body larger than max_body.
  void store(std::string_view target, cache_version version, clock::time_point now,
             std::string_view route, const http_response& res);

  /// Forgets every entry.
  void clear();

 private:
  /// One stored answer.
  struct entry {
    std::string target;        ///< The request target as sent (GET and HEAD share it).
    cache_version version;     ///< What it was computed from.
    clock::time_point stored;  ///< When it was computed.
    std::string_view route;    ///< The route's label, for request metrics.
    /// True when this is the answer to target in HTTP/http_version.
    bool answers(std::string_view t, unsigned http_version) const {
      return target == t && res.version() == http_version;
    }
    http_response res;  ///< The answer, before conditional-request handling.
  };

  const std::size_t max_entries_;  ///< Entry bound.
  const std::size_t max_body_;     ///< Largest body kept.
  const clock::duration max_age_;  ///< Age bound.
  mutable std::mutex mutex_;       ///< Guards entries_.
  std::vector<entry> entries_;     ///< Few, so searched in order.
};

}  // namespace somrated
