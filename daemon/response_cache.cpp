#include "somrated/response_cache.hpp"

#include <algorithm>

namespace somrated {

response_cache::response_cache(std::size_t max_entries, std::size_t max_body,
                               clock::duration max_age)
    : max_entries_(max_entries), max_body_(max_body), max_age_(max_age) {}

std::optional<std::pair<http_response, std::string_view>> response_cache::find(
    std::string_view target, unsigned http_version, cache_version version,
    clock::time_point now) const {
  const std::lock_guard lock(mutex_);
  for (const entry& e : entries_) {
    if (!e.answers(target, http_version)) continue;
    if (e.version != version || now - e.stored >= max_age_ || now < e.stored) return std::nullopt;
    return std::pair{e.res, e.route};
  }
  return std::nullopt;
}

void response_cache::store(std::string_view target, cache_version version, clock::time_point now,
                           std::string_view route, const http_response& res) {
  if (res.body().size() > max_body_ || max_entries_ == 0) return;
  const std::lock_guard lock(mutex_);
  auto it = std::find_if(entries_.begin(), entries_.end(),
                         [&](const entry& e) { return e.answers(target, res.version()); });
  if (it == entries_.end() && entries_.size() >= max_entries_) {
    it = std::min_element(entries_.begin(), entries_.end(),
                          [](const entry& a, const entry& b) { return a.stored < b.stored; });
  }
  if (it == entries_.end()) {
    entries_.push_back(entry{std::string(target), version, now, route, res});
    return;
  }
  // A slower reader may finish after a newer answer was stored: keep the newer one.
  if (it->answers(target, res.version()) && it->stored > now) return;
  *it = entry{std::string(target), version, now, route, res};
}

void response_cache::clear() {
  const std::lock_guard lock(mutex_);
  entries_.clear();
}

}  // namespace somrated
