#include "somrated/dispatcher.hpp"

#include <algorithm>
#include <map>
#include <memory>

#include <fmt/format.h>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>

#include "somrated/alert_engine.hpp"
#include "somrated/db_worker.hpp"
#include "somrated/exec_runner.hpp"
#include "somrated/log.hpp"
#include "somrated/metrics.hpp"
#include "somrated/notify.hpp"

namespace somrated {

namespace net = boost::asio;
using namespace std::chrono_literals;

namespace {

/// The first retry comes after this long.
constexpr std::chrono::milliseconds first_retry = 5s;
/// Retries never wait longer than this.
constexpr std::chrono::milliseconds max_retry = 10min;
/// The longest pause of a notifier whose attempts the store cannot record (see finish()).
constexpr std::chrono::milliseconds max_unrecorded_pause = 1min;
/// A receiver's answer is read up to this size (enough for any error message).
constexpr std::size_t max_receiver_body = 64 * 1024;

/// The time until t, at least zero.
std::chrono::milliseconds until(timestamp t) {
  return std::max(std::chrono::milliseconds(0), t - now());
}

/// How receivers link back to us: [server] external_url, or http://<listen>.
std::string external_url(const config& cfg) {
  return cfg.server.external_url.empty() ? "http://" + cfg.server.listen : cfg.server.external_url;
}

/// The HTTP client's request for a notification to n: no redirects, a small answer cap.
fetch_request to_fetch(outgoing_request out, const notifier_config& n) {
  fetch_request req;
  req.url = std::move(out.url);
  req.method = std::move(out.method);
  req.body = std::move(out.body);
  req.headers = std::move(out.headers);
  req.ca_file = n.ca_file;
  req.timeout = n.timeout;
  req.max_body = max_receiver_body;
  req.max_redirects = 0;
  return req;
}

/// The shortest re-post period of cfg's Alertmanager notifiers; none without one.
std::optional<std::chrono::milliseconds> resend_period(const config& cfg) {
  std::optional<std::chrono::milliseconds> period;
  for (const notifier_config& n : cfg.notifiers)
    if (n.kind == notifier_kind::alertmanager)
      period = std::min(period.value_or(n.resend), n.resend);
  return period;
}

}  // namespace

std::chrono::milliseconds delivery_backoff(int attempts, double jitter,
                                           std::optional<std::chrono::milliseconds> retry_after) {
  std::chrono::milliseconds delay = first_retry;
  for (int i = 1; i < attempts && delay < max_retry; ++i) delay *= 2;
  delay = std::min(delay, max_retry);
  delay = std::chrono::milliseconds(
      static_cast<std::int64_t>(static_cast<double>(delay.count()) * jitter));
  if (retry_after && *retry_after > delay) delay = *retry_after;
  return std::min(delay, max_retry);
}

dispatcher::dispatcher(net::io_context& ioc, std::shared_ptr<const config> cfg, db_worker& writer,
                       alert_engine& engine, logger& log, metrics* stats)
    : ioc_(ioc),
      cfg_(std::move(cfg)),
      writer_(writer),
      engine_(engine),
      log_(log),
      stats_(stats),
      client_(ioc.get_executor()),
      retry_timer_(ioc),
      resend_timer_(ioc),
      rng_(std::random_device{}()) {}

dispatcher::~dispatcher() {
  // A command already running finishes (bounded by its timeout); queued ones are dropped
  // and stay pending, since their results could no longer be recorded.
  exec_pool_.stop();
  exec_pool_.join();
}

void dispatcher::start() {
  poll();
  resend_firing();
}

void dispatcher::set_config(std::shared_ptr<const config> cfg) {
  cfg_ = std::move(cfg);
  if (stopped_) return;
  // An unchanged period keeps its clock: reloading often must not hold re-posts back.
  if (resend_period(*cfg_) != resend_period_) arm_resend();
}

void dispatcher::kick() {
  net::post(ioc_, [this] { poll(); });
}

void dispatcher::stop() {
  stopped_ = true;
  retry_timer_.cancel();
  resend_timer_.cancel();
}

const notifier_config* dispatcher::find_notifier(const std::string& name) const {
  for (const notifier_config& n : cfg_->notifiers)
    if (n.name == name) return &n;
  return nullptr;
}

void dispatcher::poll() {
  if (stopped_) return;
  if (polling_) {
    repoll_ = true;
    return;
  }
  polling_ = true;
  writer_.post([this, guard = net::make_work_guard(ioc_)](store& db) {
    const timestamp at = now();
    auto due = db.due_deliveries(at);
    auto next = db.next_delivery_due();
    // The earliest head is in due when it was due at `at`, and its finish() polls again;
    // otherwise the timer is needed even if it has come due by the time on_due runs.
    if (next && *next <= at) next.reset();
    net::post(ioc_, [this, due = std::move(due), next]() mutable { on_due(std::move(due), next); });
  });
}

void dispatcher::on_due(std::vector<std::pair<delivery, alert_event>> due,
                        std::optional<timestamp> next) {
  polling_ = false;
  if (stopped_) return;
  for (const auto& [d, e] : due)
    if (!in_flight_.contains(d.notifier)) send(d, e);
  if (repoll_) {
    repoll_ = false;
    return poll();
  }
  // The earliest head in the future, if it was not due when polled (see poll()).
  if (next) {
    retry_timer_.expires_after(until(*next));
    retry_timer_.async_wait([this](boost::system::error_code ec) {
      if (!ec) poll();
    });
  }
}

void dispatcher::send(const delivery& d, const alert_event& e) {
  delivery_attempt a;
  a.at = now();
  const notifier_config* n = find_notifier(d.notifier);
  in_flight_.insert(d.notifier);
  if (!n) {
    delivery_verdict v;
    v.result = delivery_verdict::kind::failed;
    v.error = fmt::format("notifier {} is no longer configured", d.notifier);
    return finish(d, e, std::move(a), std::move(v));
  }
  const std::string external = external_url(*cfg_);
  const auto t0 = std::chrono::steady_clock::now();
  if (n->kind == notifier_kind::exec) {
    exec_request req;
    exec_spec spec = build_exec(*n, e, external);
    req.argv = std::move(spec.argv);
    req.env = std::move(spec.env);
    req.stdin_data = std::move(spec.stdin_data);
    req.timeout = n->timeout;
    net::post(exec_pool_, [this, d, e, a, req = std::move(req), t0,
                           guard = net::make_work_guard(ioc_)]() mutable {
      exec_result r = run_command(req);
      net::post(ioc_, [this, d, e, a, r = std::move(r), t0]() mutable {
        a.duration = std::chrono::duration_cast<std::chrono::milliseconds>(
            std::chrono::steady_clock::now() - t0);
        delivery_verdict v;
        if (!r.ok()) {
          // A command that ran and failed may succeed next time (the disk was full,
          // the network was down): retry, as for a 5xx, until give_up.
          v.result = delivery_verdict::kind::retry;
          v.error = r.error;
        }
        finish(d, e, std::move(a), std::move(v));
      });
    });
    return;
  }
  // cfg keeps n alive should a reload replace cfg_ while the request is out.
  client_.async_fetch(to_fetch(build_request(*n, e, external), *n),
                      [this, d, e, a, n, t0, cfg = cfg_](fetch_result r) mutable {
                        a.duration = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::steady_clock::now() - t0);
                        a.http_status = r.status;
                        finish(d, e, std::move(a), classify_response(*n, r));
                      });
}

void dispatcher::finish(const delivery& d, const alert_event& e, delivery_attempt a,
                        delivery_verdict v) {
  const notifier_config* n = find_notifier(d.notifier);
  const int attempts = d.attempts + 1;
  delivery_status status = delivery_status::delivered;
  timestamp next = a.at;
  a.error = v.error;
  switch (v.result) {
    case delivery_verdict::kind::delivered:
      a.outcome = "delivered";
      log_.log(log_level::info, "notified {} of {} {} (event {}, attempt {})", d.notifier, e.rule,
               event_kind_name(e.kind), e.event_id, attempts);
      break;
    case delivery_verdict::kind::failed:
      a.outcome = "failed";
      status = delivery_status::failed;
      log_.log(log_level::error, "{}: delivery of {} {} (event {}) failed for good: {}", d.notifier,
               e.rule, event_kind_name(e.kind), e.event_id, v.error);
      break;
    case delivery_verdict::kind::retry: {
      const timestamp deadline = d.created_at + (n ? n->give_up : std::chrono::milliseconds(0));
      if (a.at >= deadline) {
        a.outcome = "failed";
        status = delivery_status::failed;
        a.error = fmt::format("gave up after {} and {} attempts; last error: {}",
                              format_duration(n ? n->give_up : std::chrono::milliseconds(0)),
                              attempts, v.error);
        log_.log(log_level::error, "{}: delivery of {} {} (event {}): {}", d.notifier, e.rule,
                 event_kind_name(e.kind), e.event_id, a.error);
        break;
      }
      std::uniform_real_distribution<double> jitter(0.8, 1.2);
      next = std::min(a.at + delivery_backoff(attempts, jitter(rng_), v.retry_after), deadline);
      a.outcome = "retry";
      status = delivery_status::pending;
      log_.log(log_level::warning, "{}: delivery of {} {} failed (attempt {}): {}; retrying in {}",
               d.notifier, e.rule, event_kind_name(e.kind), attempts, v.error,
               format_duration(std::chrono::duration_cast<std::chrono::seconds>(next - a.at)));
      break;
    }
  }
  if (stats_) stats_->count_notification(d.notifier, a.outcome);
  writer_.post([this, id = d.id, notifier = d.notifier, a = std::move(a), status, next,
                guard = net::make_work_guard(ioc_)](store& db) {
    bool recorded = true;
    try {
      db.record_attempt(id, a, status, next);
    } catch (const std::exception& ex) {
      recorded = false;
      log_.log(log_level::error, "{}: cannot record a delivery attempt: {}; pausing this notifier",
               notifier, ex.what());
    }
    net::post(ioc_, [this, notifier, recorded] {
      if (recorded) {
        unrecorded_ = 0;
        in_flight_.erase(notifier);
        return poll();
      }
      // The delivery is still due in the outbox: sending it again at once would repeat
      // it at network speed while the database refuses writes (a full disk). Hold the
      // notifier instead, longer each time (5 s, doubling up to a minute), so that a
      // receiver gets few duplicates while the database stays full, and deliveries go
      // on within a minute once it has room again.
      ++unrecorded_;
      auto pause = std::make_shared<net::steady_timer>(
          ioc_, std::min<std::chrono::milliseconds>(
                    delivery_backoff(unrecorded_, 1.0, std::nullopt), max_unrecorded_pause));
      pause->async_wait([this, notifier, pause](boost::system::error_code ec) {
        if (ec) return;
        in_flight_.erase(notifier);
        poll();
      });
    });
  });
}

void dispatcher::resend_firing() {
  if (stopped_) return;
  arm_resend();
  if (!resend_period_) return;

  writer_.post([this, guard = net::make_work_guard(ioc_)](store& db) {
    auto firing = engine_.firing_snapshot(db, now());
    net::post(ioc_, [this, firing = std::move(firing)] {
      if (stopped_) return;
      const std::string external = external_url(*cfg_);
      // Group by notifier: each Alertmanager notifier's re-posts count as its one send
      // in flight, so a resolved queued meanwhile is sent after them, never overtaken.
      std::map<std::string, std::vector<const alert_event*>> by_notifier;
      for (const auto& [e, names] : firing)
        for (const std::string& name : names) by_notifier[name].push_back(&e);
      for (const auto& [name, events] : by_notifier) {
        const notifier_config* n = find_notifier(name);
        if (!n || n->kind != notifier_kind::alertmanager || in_flight_.contains(name)) continue;
        in_flight_.insert(name);
        auto left = std::make_shared<std::size_t>(events.size());
        for (const alert_event* e : events) {
          client_.async_fetch(to_fetch(build_request(*n, *e, external), *n),
                              [this, name = name, left, rule = e->rule](fetch_result r) {
                                if (!r.ok())
                                  log_.log(log_level::debug, "{}: re-posting {} failed: {}", name,
                                           rule, r.error);
                                if (--*left == 0) {
                                  in_flight_.erase(name);
                                  poll();
                                }
                              });
        }
      }
    });
  });
}

void dispatcher::arm_resend() {
  resend_period_ = resend_period(*cfg_);
  resend_timer_.cancel();
  if (!resend_period_) return;
  resend_timer_.expires_after(*resend_period_);
  resend_timer_.async_wait([this](boost::system::error_code ec) {
    if (!ec) resend_firing();
  });
}

}  // namespace somrated
