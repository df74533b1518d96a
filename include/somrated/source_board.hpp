#pragma once

#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "somrated/time.hpp"

namespace somrated {

/// Failed scrapes whose scrape-log rows could not be written (the database refused
/// writes, e.g. when full): the API shows them over what the log says.
struct unlogged_failures {
  timestamp last_at;       ///< When the newest of them started.
  std::string last_error;  ///< What went wrong with it.
  int count = 0;           ///< How many, all after the newest logged attempt.
};

/// What only the scheduler knows about each source (when it scrapes next, failures the
/// scrape log could not take), shared with the API threads that report it. Thread-safe.
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

  /// Records a failed scrape of source whose scrape-log row could not be written.
  void add_unlogged_failure(std::string_view source, timestamp at, std::string error) {
    std::lock_guard lock(mutex_);
    auto& f = unlogged_[std::string(source)];
    f.last_at = at;
    f.last_error = std::move(error);
    ++f.count;
  }

  /// Forgets source's unlogged failures: an attempt after them made it into the log, or
  /// succeeded.
  void clear_unlogged_failures(std::string_view source) {
    std::lock_guard lock(mutex_);
    if (auto it = unlogged_.find(source); it != unlogged_.end()) unlogged_.erase(it);
  }

  /// source's failed scrapes missing from the scrape log, if any.
  std::optional<unlogged_failures> unlogged(std::string_view source) const {
    std::lock_guard lock(mutex_);
    auto it = unlogged_.find(source);
    if (it == unlogged_.end()) return std::nullopt;
    return it->second;
  }

 private:
  mutable std::mutex mutex_;
  std::map<std::string, timestamp, std::less<>> next_scrape_;
  std::map<std::string, unlogged_failures, std::less<>> unlogged_;  ///< By source.
};

}  // namespace somrated
