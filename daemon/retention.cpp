#include "somrated/retention.hpp"

#include <algorithm>
#include <exception>
#include <string>
#include <utility>

#include <boost/asio/post.hpp>

namespace somrated {

namespace net = boost::asio;
using namespace std::chrono_literals;

log_retention::log_retention(net::any_io_executor ex, db_worker& writer,
                             std::chrono::milliseconds keep, logger& log, std::size_t batch_rows)
    : ex_(std::move(ex)),
      writer_(writer),
      keep_(keep),
      log_(log),
      batch_rows_(std::max<std::size_t>(1, batch_rows)),
      timer_(ex_) {}

std::chrono::milliseconds log_retention::period(std::chrono::milliseconds keep) {
  return std::clamp<std::chrono::milliseconds>(keep / 10, 1s, 1h);
}

void log_retention::start() {
  running_ = true;
  pass();
}

void log_retention::stop() {
  running_ = false;
  timer_.cancel();
}

void log_retention::set_keep(std::chrono::milliseconds keep) {
  keep_ = keep;
  if (keep_.count() == 0) {
    timer_.cancel();
  } else if (in_pass_) {
    again_ = true;
  } else {
    // A new period starts now, so a shorter keep applies without waiting out the old one.
    pass();
  }
}

void log_retention::pass() {
  if (!running_ || in_pass_ || keep_.count() == 0) return;
  timer_.cancel();
  in_pass_ = true;
  post_batch(now() - keep_, 0);
}

void log_retention::post_batch(timestamp cutoff, std::size_t total) {
  writer_.post([this, cutoff, total](store& db) {
    std::size_t deleted = 0;
    std::string error;
    try {
      deleted = db.prune_scrape_log(cutoff, batch_rows_);
    } catch (const std::exception& e) {
      error = e.what();
    }
    net::post(ex_, [this, cutoff, total, deleted, error = std::move(error)]() mutable {
      batch_done(cutoff, total, deleted, std::move(error));
    });
  });
}

void log_retention::batch_done(timestamp cutoff, std::size_t total, std::size_t deleted,
                               std::string error) {
  total += deleted;
  if (running_ && error.empty() && deleted >= batch_rows_) return post_batch(cutoff, total);
  in_pass_ = false;
  if (again_ && error.empty()) {
    again_ = false;
    if (running_ && keep_.count() > 0) return pass();
  }
  if (!error.empty()) {
    log_.log(log_level::warning, "scrape-log retention failed (retrying in {}): {}",
             format_duration(period(keep_)), error);
  }
  if (total > 0) {
    // A routine pass deletes a few rows; only a catch-up (a new or shorter keep) is news.
    log_.log(total >= batch_rows_ ? log_level::info : log_level::debug,
             "deleted {} scrape-log rows from before {} (keep_scrape_log = {})", total,
             format_rfc3339(cutoff), format_duration(keep_));
  }
  schedule();
}

void log_retention::schedule() {
  if (!running_ || keep_.count() == 0) return;
  timer_.expires_after(period(keep_));
  timer_.async_wait([this](boost::system::error_code ec) {
    if (!ec) pass();
  });
}

}  // namespace somrated
