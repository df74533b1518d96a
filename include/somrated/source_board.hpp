#pragma once

#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "somrated/time.hpp"

namespace somrated {

/// What only the scheduler knows about each source (when it scrapes next), shared
/// with the API threads that report it. Thread-safe.
class source_board {
 public:
  /// Records when source will be scraped next.
  void set_next_scrape(std::string_view source, timestamp at) {
    std::lock_guard lock(mutex_);
    next_scrape_.insert_or_assign(std::string(source), at);
  }

  /// When source will be scraped next, if it is scheduled.
  std::optional<timestamp> next_scrape(std::string_view source) const {
    std::lock_guard lock(mutex_);
    auto it = next_scrape_.find(source);
    if (it == next_scrape_.end()) return std::nullopt;
    return it->second;
  }

 private:
  mutable std::mutex mutex_;
  std::map<std::string, timestamp, std::less<>> next_scrape_;
};

}  // namespace somrated
