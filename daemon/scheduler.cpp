#include "somrated/scheduler.hpp"

#include <algorithm>
#include <cmath>
#include <utility>

#include <fmt/format.h>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>

#include "somrated/db_worker.hpp"
#include "somrated/extract.hpp"
#include "somrated/log.hpp"
#include "somrated/metrics.hpp"
#include "somrated/source_board.hpp"

namespace somrated {

namespace net = boost::asio;
using namespace std::chrono_literals;

/// One source's schedule and the little it remembers between scrapes.
struct scheduler::source_state {
  explicit source_state(net::io_context& ioc, source_config c) : cfg(std::move(c)), timer(ioc) {}

  source_config cfg;
  net::steady_timer timer;
  std::string etag;  ///< Validators of the last 200, for conditional GETs.
  std::string last_modified;
  std::vector<rate_quote> last_quotes;  ///< What the last 200 said; a 304 confirms it again.
  int failures = 0;                     ///< Consecutive failed scrapes.
  bool retired = false;                 ///< Removed by reconfigure(): do nothing more.
};

namespace {

/// The first retry's delay before jitter: the interval, or 30 s for longer intervals.
std::chrono::milliseconds base_delay(std::chrono::milliseconds interval) {
  return std::min<std::chrono::milliseconds>(interval, 30s);
}

/// The longest backoff before jitter: the interval, or 5 base delays if that is longer.
std::chrono::milliseconds longest_backoff(std::chrono::milliseconds interval) {
  return std::max<std::chrono::milliseconds>(interval, 5 * base_delay(interval));
}

}  // namespace

std::chrono::milliseconds retry_delay(std::chrono::milliseconds interval, int failures,
                                      double jitter) {
  const auto base = base_delay(interval);
  const auto cap = longest_backoff(interval);
  const int doublings = std::clamp(failures - 1, 0, 30);
  // Doubling in floating point cannot overflow; the cap bounds the result anyway.
  const double raw = static_cast<double>(base.count()) * std::ldexp(1.0, doublings);
  const double capped = std::min(raw, static_cast<double>(cap.count()));
  const double jittered = capped * std::clamp(jitter, 0.8, 1.2);
  return std::chrono::milliseconds(std::max<std::int64_t>(1000, std::llround(jittered)));
}

std::chrono::milliseconds retry_delay(std::chrono::milliseconds interval, int failures,
                                      double jitter, std::chrono::milliseconds asked) {
  const auto backoff = retry_delay(interval, failures, jitter);
  return std::max(backoff, std::min(asked, longest_backoff(interval)));
}

scheduler::scheduler(net::io_context& ioc, std::vector<source_config> sources, db_worker& writer,
                     source_board& board, logger& log, after_scrape_fn after_scrape, metrics* stats)
    : ioc_(ioc),
      writer_(writer),
      board_(board),
      log_(log),
      after_scrape_(std::move(after_scrape)),
      stats_(stats),
      client_(ioc.get_executor()),
      rng_(std::random_device{}()) {
  for (auto& c : sources) sources_.push_back(std::make_shared<source_state>(ioc, std::move(c)));
}

scheduler::~scheduler() = default;

void scheduler::start() {
  started_ = true;
  for (auto& s : sources_) schedule(s, 0ms);
}

void scheduler::stop() {
  stopped_ = true;
  for (auto& s : sources_) s->timer.cancel();
}

void scheduler::reconfigure(std::vector<source_config> sources) {
  std::vector<state_ptr> next;
  std::vector<state_ptr> fresh;
  for (source_config& c : sources) {
    auto same = std::find_if(sources_.begin(), sources_.end(),
                             [&](const state_ptr& s) { return s && s->cfg == c; });
    if (same != sources_.end()) {
      next.push_back(std::move(*same));  // leaves a null behind: not retired below
      continue;
    }
    next.push_back(std::make_shared<source_state>(ioc_, std::move(c)));
    fresh.push_back(next.back());
  }
  for (const state_ptr& old : sources_) {
    if (!old) continue;
    old->retired = true;
    old->timer.cancel();
  }
  sources_ = std::move(next);
  if (started_)
    for (const state_ptr& s : fresh) schedule(s, 0ms);
}

void scheduler::schedule(const state_ptr& s, std::chrono::milliseconds delay) {
  if (stopped_ || s->retired) return;
  board_.set_next_scrape(s->cfg.name, now() + delay);
  s->timer.expires_after(delay);
  s->timer.async_wait([this, s](boost::system::error_code ec) {
    if (ec || stopped_ || s->retired) return;
    scrape(s);
  });
}

void scheduler::scrape(const state_ptr& s) {
  fetch_request req;
  req.url = s->cfg.url;
  req.ca_file = s->cfg.ca_file;
  req.timeout = s->cfg.timeout;
  req.max_body = std::min(s->cfg.max_body, max_document_bytes(s->cfg.kind));
  if (!s->last_quotes.empty()) {
    req.etag = s->etag;
    req.last_modified = s->last_modified;
  }
  const timestamp started = now();
  const auto t0 = std::chrono::steady_clock::now();
  log_.log(log_level::debug, "{}: fetching {}", s->cfg.name, s->cfg.url);
  client_.async_fetch(std::move(req), [this, s, started, t0](fetch_result r) {
    if (stopped_ || s->retired) return;
    on_fetched(s, std::move(r), started, t0);
  });
}

namespace {

/// Everything the writer thread needs about one fetch; it never touches source_state.
struct scrape_input {
  std::string name, kind;
  double max_jump;
  fetch_result fetched;
  std::vector<rate_quote> cached;  ///< The last 200's quotes, which a 304 confirms.
  timestamp started;
  std::chrono::steady_clock::time_point t0;
};

/// What a fetch came to once extracted and stored.
struct scrape_outcome {
  std::string error;                   ///< Empty on success.
  std::vector<rate_quote> quotes;      ///< What was read (or confirmed by a 304).
  std::vector<record_result> results;  ///< What the store did with each quote.
};

/// Extracts the rates (or takes the cached ones after a 304) and records them. Runs on
/// the writer thread; a failure of any step becomes outcome.error, nothing is thrown.
scrape_outcome extract_and_record(store& db, const scrape_input& in) {
  scrape_outcome out;
  if (!in.fetched.ok()) {
    out.error = in.fetched.error;
    return out;
  }
  std::optional<std::chrono::sys_days> effective_date;
  if (in.fetched.not_modified) {
    out.quotes = in.cached;
  } else {
    extraction e = extract_for_kind(in.kind, in.fetched.body, in.fetched.content_type);
    if (!e.ok()) {
      out.error = e.error.empty() ? std::string("no rates in document") : std::move(e.error);
      return out;
    }
    out.quotes = std::move(e.rates);
    effective_date = e.effective_date;
  }
  try {
    out.results = db.record(in.name, now(), out.quotes, effective_date, in.max_jump);
  } catch (const std::exception& ex) {
    out.error = fmt::format("storing rates failed: {}", ex.what());
    out.quotes.clear();
  }
  return out;
}

/// "USD 87.52, EUR 99.60" for the quotes whose record_result matches pred.
template <class Pred>
std::string describe(const scrape_outcome& o, Pred pred) {
  std::string text;
  for (const record_result& res : o.results) {
    if (!pred(res)) continue;
    auto q = std::find_if(o.quotes.begin(), o.quotes.end(),
                          [&](const rate_quote& x) { return x.currency == res.currency; });
    text += fmt::format("{}{} {}", text.empty() ? "" : ", ", res.currency,
                        q == o.quotes.end() ? std::string() : q->rate.text());
    if (res.outcome == record_outcome::held)
      text += fmt::format(" (was {})", res.previous ? res.previous->text() : "none");
  }
  return text;
}

}  // namespace

void scheduler::on_fetched(const state_ptr& s, fetch_result r, timestamp started,
                           std::chrono::steady_clock::time_point t0) {
  // RFC 9110 section 10.2.3 and RFC 6585 section 4: how long to wait after a 503 or 429.
  std::optional<std::chrono::milliseconds> retry_after;
  if (!r.ok() && (r.status == 429 || r.status == 503))
    retry_after = parse_retry_after(r.retry_after);
  auto in = std::make_shared<scrape_input>(scrape_input{s->cfg.name, s->cfg.kind, s->cfg.max_jump,
                                                        std::move(r), s->last_quotes, started, t0});
  // The guard keeps the io_context running while the job is away on the writer thread:
  // without it a loop with nothing else to do would return before the result comes back.
  // The job carries s only to hand it back: source_state is touched on the io_context.
  writer_.post([this, s, in, retry_after, guard = net::make_work_guard(ioc_)](store& db) mutable {
    scrape_outcome o = extract_and_record(db, *in);
    const std::string held =
        describe(o, [](const record_result& x) { return x.outcome == record_outcome::held; });
    const std::string changes = describe(o, [](const record_result& x) {
      return x.outcome != record_outcome::held && x.outcome != record_outcome::confirmed;
    });

    scrape_record rec;
    rec.source = in->name;
    rec.started_at = in->started;
    rec.http_status = in->fetched.status;
    const auto took = std::chrono::steady_clock::now() - in->t0;
    rec.duration = std::chrono::duration_cast<std::chrono::milliseconds>(took);
    if (!o.error.empty()) {
      rec.outcome = "error";
      rec.error = o.error;
    } else if (!held.empty()) {
      rec.outcome = "held";
      rec.error = fmt::format("held until confirmed: {}", held);
    } else {
      rec.outcome = in->fetched.not_modified ? "not_modified" : "ok";
    }
    if (stats_) stats_->count_scrape(rec.source, rec.outcome, took);
    try {
      db.log_scrape(rec);
      board_.clear_unlogged_failures(in->name);
    } catch (const std::exception& ex) {
      log_.log(log_level::error, "{}: cannot write the scrape log: {}", in->name, ex.what());
      // /api/v1/sources reads the log; keep the failure where it can still see it. An
      // unlogged success ends the streak as a logged one would.
      if (rec.outcome == "error") {
        board_.add_unlogged_failure(in->name, rec.started_at, rec.error);
      } else {
        board_.clear_unlogged_failures(in->name);
      }
    }

    if (!o.error.empty()) {
      log_.log(log_level::warning, "{}: scrape failed: {}", in->name, o.error);
    } else {
      if (!changes.empty()) log_.log(log_level::notice, "{}: new rates: {}", in->name, changes);
      if (!held.empty())
        log_.log(log_level::warning,
                 "{}: implausible jump held until the next scrape confirms it: {}", in->name, held);
      log_.log(log_level::info, "{}: scrape ok ({} rates, {} ms{})", in->name, o.quotes.size(),
               rec.duration.count(), in->fetched.not_modified ? ", not modified" : "");
    }
    if (after_scrape_) {
      try {
        after_scrape_(db);
      } catch (const std::exception& ex) {
        log_.log(log_level::error, "{}: after the scrape: {}", in->name, ex.what());
      }
    }
    const bool success = o.error.empty();
    net::post(ioc_, [this, s = std::move(s), success, quotes = std::move(o.quotes), retry_after,
                     etag = std::move(in->fetched.etag),
                     last_modified = std::move(in->fetched.last_modified),
                     not_modified = in->fetched.not_modified]() mutable {
      if (s->retired) return;
      if (success && !not_modified) {
        s->etag = std::move(etag);
        s->last_modified = std::move(last_modified);
      }
      on_stored(s, success, std::move(quotes), retry_after);
    });
  });
}

void scheduler::on_stored(const state_ptr& s, bool success, std::vector<rate_quote> quotes,
                          std::optional<std::chrono::milliseconds> retry_after) {
  if (success) {
    s->failures = 0;
    s->last_quotes = std::move(quotes);
    schedule(s, s->cfg.interval);
    return;
  }
  ++s->failures;
  std::uniform_real_distribution<double> jitter(0.8, 1.2);
  const auto delay = retry_after
                         ? retry_delay(s->cfg.interval, s->failures, jitter(rng_), *retry_after)
                         : retry_delay(s->cfg.interval, s->failures, jitter(rng_));
  log_.log(log_level::info, "{}: retrying in {} ms (failure {} in a row{})", s->cfg.name,
           delay.count(), s->failures,
           retry_after ? fmt::format("; Retry-After asked for {} ms", retry_after->count()) : "");
  schedule(s, delay);
}

}  // namespace somrated
