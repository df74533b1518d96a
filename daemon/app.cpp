#include "somrated/app.hpp"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <memory>
#include <ostream>
#include <stdexcept>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/system/system_error.hpp>

#include "somrated/alert_engine.hpp"
#include "somrated/api.hpp"
#include "somrated/db_worker.hpp"
#include "somrated/dispatcher.hpp"
#include "somrated/extract.hpp"
#include "somrated/http_client.hpp"
#include "somrated/http_server.hpp"
#include "somrated/log.hpp"
#include "somrated/metrics.hpp"
#include "somrated/reader_pool.hpp"
#include "somrated/retention.hpp"
#include "somrated/scheduler.hpp"
#include "somrated/sd_notify.hpp"
#include "somrated/source_board.hpp"
#include "somrated/time.hpp"
#include "somrated/version.hpp"

namespace somrated {

namespace net = boost::asio;
using tcp = net::ip::tcp;
using namespace std::chrono_literals;

tcp::endpoint parse_listen(const std::string& listen) {
  // One grammar for the config, the command line and here: listen_problem() checks it,
  // so what is left is "[v6]:PORT", "v4:PORT" or "localhost:PORT".
  if (const auto problem = listen_problem(listen))
    throw std::invalid_argument(fmt::format("listen: {}", *problem));
  const auto colon = listen.rfind(':');
  std::string host = listen.substr(0, colon);
  if (host.front() == '[') host = host.substr(1, host.size() - 2);
  if (host == "localhost") host = "127.0.0.1";
  return {net::ip::make_address(host),
          static_cast<unsigned short>(std::stoul(listen.substr(colon + 1)))};
}

reload_plan plan_reload(const config& running, config next) {
  reload_plan plan;
  auto keep = [&](auto& field, const auto& old, std::string_view name) {
    if (field == old) return;
    plan.needs_restart.push_back(fmt::format("{}: {} -> {}", name, old, field));
    field = old;
  };
  auto keep_duration = [&](std::chrono::milliseconds& field, std::chrono::milliseconds old,
                           std::string_view name) {
    if (field == old) return;
    plan.needs_restart.push_back(
        fmt::format("{}: {} -> {}", name, format_duration(old), format_duration(field)));
    field = old;
  };
  keep(next.server.listen, running.server.listen, "[server] listen");
  keep(next.server.max_connections, running.server.max_connections, "[server] max_connections");
  keep_duration(next.server.read_timeout, running.server.read_timeout, "[server] read_timeout");
  keep_duration(next.server.idle_timeout, running.server.idle_timeout, "[server] idle_timeout");
  keep_duration(next.server.write_timeout, running.server.write_timeout, "[server] write_timeout");
  keep(next.storage.path, running.storage.path, "[storage] path");
  keep(next.log_level, running.log_level, "[log] level");
  plan.next = std::move(next);
  return plan;
}

namespace {

/// Reader threads for API requests.
constexpr std::size_t reader_threads = 2;
/// API requests that may wait for a reader before new ones get 503.
constexpr std::size_t max_queued_reads = 256;
/// STATUS= is sent at most this often; scrapes and evaluations in between are folded
/// into the next one.
constexpr std::chrono::seconds status_min_interval{1};
/// In-flight requests get this long to finish at shutdown.
constexpr std::chrono::seconds shutdown_grace{5};

/// The configuration the command line names, as main builds it: the --config file (or
/// the built-in defaults) with --listen, --db and --log-level over it. Throws
/// config_error.
config read_config(const cli_options& opts) {
  config cfg = opts.config_path ? load_config(*opts.config_path) : default_config();
  if (opts.listen) cfg.server.listen = *opts.listen;
  if (opts.db_path) cfg.storage.path = *opts.db_path;
  if (opts.log_level) cfg.log_level = *opts.log_level;
  return cfg;
}

/// Appends " +added -removed ~changed" for the named items of before and after (by
/// name), under the label what; nothing when they are equal.
template <class T>
void describe_changes(std::string& out, std::string_view what, const std::vector<T>& before,
                      const std::vector<T>& after) {
  std::string parts;
  auto find = [](const std::vector<T>& in, const std::string& name) {
    return std::find_if(in.begin(), in.end(), [&](const T& x) { return x.name == name; });
  };
  for (const T& a : after) {
    const auto b = find(before, a.name);
    if (b == before.end()) {
      parts += fmt::format(" +{}", a.name);
    } else if (!(*b == a)) {
      parts += fmt::format(" ~{}", a.name);
    }
  }
  for (const T& b : before)
    if (find(after, b.name) == after.end()) parts += fmt::format(" -{}", b.name);
  if (parts.empty()) return;
  out += fmt::format("{}{}{}", out.empty() ? "" : "; ", what, parts);
}

/// What a reload changes, for the log: "sources +nbkr2; alert rules ~usd_high".
std::string describe_reload(const config& before, const config& after) {
  std::string out;
  describe_changes(out, "sources", before.sources, after.sources);
  describe_changes(out, "alert rules", before.alerts, after.alerts);
  describe_changes(out, "notifiers", before.notifiers, after.notifiers);
  if (before.server != after.server) out += out.empty() ? "[server]" : "; [server]";
  if (before.alerting != after.alerting) out += out.empty() ? "[alerting]" : "; [alerting]";
  if (before.storage != after.storage) out += out.empty() ? "[storage]" : "; [storage]";
  return out.empty() ? std::string("no changes") : out;
}

/// Where the HTTP server listens: a socket passed by the service manager, or an
/// address to bind.
struct listener {
  std::optional<int> fd;   ///< Already listening (socket activation).
  tcp::endpoint endpoint;  ///< To bind when there is no fd.
};

/// The running parts of the daemon, declared in the order they must be built: what a
/// member uses is declared above it, so destruction (in reverse) never leaves a queued
/// job pointing at something already gone. The workers are stopped explicitly before
/// any of it is destroyed (see run()).
class daemon_parts {
 public:
  daemon_parts(const config& cfg, const cli_options& opts, logger& log, const listener& where,
               const sd_notifier& notifier, std::optional<std::chrono::microseconds> watchdog)
      : cfg_(std::make_shared<const config>(cfg)),
        opts_(opts),
        log_(log),
        notifier_(notifier),
        watchdog_(watchdog),
        socket_activated_(where.fd.has_value()),
        stats_(cfg),
        engine_(cfg_, log),
        writer_(cfg.storage.path, store::mode::read_write, log),
        readers_(cfg.storage.path, reader_threads, max_queued_reads, log),
        routes_(
            cfg_, board_, &engine_, [this] { dispatcher_.kick(); }, &stats_, &writer_.jobs_count()),
        server_(open_server(where)),
        dispatcher_(ioc_, cfg_, writer_, engine_, log, &stats_),
        scraper_(
            ioc_, cfg.sources, writer_, board_, log, [this](store& db) { evaluate(db); }, &stats_) {
    // The first job on the writer, so that no write comes before the limit.
    set_max_size(cfg.storage.max_size);
    stats_.watch_connections([this] { return server_.connections(); });
  }

  ~daemon_parts() { stop_workers(); }
  daemon_parts(const daemon_parts&) = delete;
  daemon_parts& operator=(const daemon_parts&) = delete;

  /// Serves until SIGINT/SIGTERM; returns the exit code.
  int run() {
    server_.start();
    scraper_.start();
    dispatcher_.start();
    retention_.start();
    evaluate_periodically();
    const auto bound = server_.local_endpoint();
    log_.log(log_level::notice, "somrated {} listening on http://{}:{} (database {}, {} sources)",
             version, bound.address().to_string(), bound.port(), cfg_->storage.path,
             cfg_->sources.size());
    // The store is open and the socket listens (both happened in the constructor).
    notify(fmt::format(
        "READY=1\n{}",
        status_message(fmt::format("listening on {}:{}, {} sources", bound.address().to_string(),
                                   bound.port(), cfg_->sources.size()))));
    if (watchdog_ && notifier_.enabled()) {
      log_.log(log_level::info, "watchdog: pinging every {} ms",
               watchdog_ping_interval(*watchdog_).count());
      ping_watchdog();
    }
    wait_hup();
    stop_signals_.async_wait([this](boost::system::error_code ec, int signo) {
      if (!ec) shut_down(signo);
    });
    int code = 0;
    try {
      ioc_.run();
    } catch (const std::exception& e) {
      log_.log(log_level::error, "fatal error on the network thread: {}", e.what());
      code = 1;
    }
    // Finish the writes already queued (the last scrape, delivery attempts) before the
    // stores close; reads that have not started are dropped.
    stop_workers();
    log_.log(log_level::notice, "stopped");
    return code;
  }

 private:
  /// The transport's limits from the config.
  static server_limits limits(const config& cfg) {
    server_limits l;
    l.max_connections = cfg.server.max_connections;
    l.read_timeout = cfg.server.read_timeout;
    l.idle_timeout = cfg.server.idle_timeout;
    l.write_timeout = cfg.server.write_timeout;
    return l;
  }

  /// The HTTP server on the passed socket or bound to the configured address (throws
  /// boost::system::system_error when it cannot listen).
  http_server open_server(const listener& where) {
    if (where.fd)
      return http_server(ioc_, *where.fd, limits(*cfg_), make_handler(), api::transport_error, log_,
                         &stats_);
    return http_server(ioc_, where.endpoint, limits(*cfg_), make_handler(), api::transport_error,
                       log_, &stats_);
  }

  /// Sends one notification to the service manager; a failure is only logged (at debug:
  /// a manager that went away must not flood the log every watchdog period).
  void notify(std::string_view message) const {
    if (const auto ec = notifier_.notify(message))
      log_.log(log_level::debug, "sd_notify failed: {}", ec.message());
  }

  /// Applies [storage] max_size to the writer's connection, the only one that writes
  /// (readers open the file read-only, where a page limit has nothing to limit).
  void set_max_size(std::uint64_t bytes) {
    writer_.post([this, bytes](store& db) {
      db.set_max_size(bytes);
      if (bytes != 0)
        log_.log(log_level::info, "database size limit: {} ([storage] max_size)",
                 format_max_size(bytes));
    });
  }

  /// Judges the alert rules on the writer thread, wakes the dispatcher for new events
  /// and brings the service status up to date.
  void evaluate(store& db) {
    if (engine_.evaluate(db, now()) > 0) dispatcher_.kick();
    report_status(db, false);
  }

  /// Evaluates now and then every [alerting] evaluate_every, for `for`, `stale` and
  /// `repeat`, which depend on time passing rather than on a new rate.
  void evaluate_periodically() {
    writer_.post([this](store& db) { evaluate(db); });
    alert_timer_.expires_after(cfg_->alerting.evaluate_every);
    alert_timer_.async_wait([this](boost::system::error_code ec) {
      if (!ec) evaluate_periodically();
    });
  }

  /// Sends STATUS= with each source's last scrape and the firing alerts. Writer thread
  /// only (it reads the store and owns the throttle): within status_min_interval of the
  /// last one, a later update is arranged instead, unless forced.
  void report_status(store& db, bool force) {
    if (!notifier_.enabled() || stopping_.load()) return;
    const auto t = std::chrono::steady_clock::now();
    if (!force && t - status_sent_ < status_min_interval) {
      if (status_deferred_) return;
      status_deferred_ = true;
      net::post(ioc_, [this, at = status_sent_ + status_min_interval] {
        status_timer_.expires_at(at);
        status_timer_.async_wait([this](boost::system::error_code ec) {
          if (ec) return;
          writer_.post([this](store& db) {
            status_deferred_ = false;
            report_status(db, false);
          });
        });
      });
      return;
    }
    std::string text;
    try {
      std::vector<source_status> sources;
      for (const source_config& s : engine_.cfg().sources) {
        const source_health h = db.health(s.name);
        sources.push_back(
            {s.name, h.last_attempt, h.consecutive_failures == 0, h.consecutive_failures});
      }
      const auto states = db.alert_states();
      const auto firing = std::count_if(states.begin(), states.end(), [](const alert_state& a) {
        return a.phase == alert_phase::firing;
      });
      text = format_status(sources, static_cast<std::size_t>(firing), reload_note_);
    } catch (const std::exception& e) {
      log_.log(log_level::debug, "status: cannot read the store: {}", e.what());
      return;
    }
    if (text == status_text_) return;
    status_text_ = std::move(text);
    status_sent_ = t;
    notify(status_message(status_text_));
  }

  /// Sends WATCHDOG=1 every half of the watchdog timeout, from a timer on the network
  /// thread: if that loop wedges, the pings stop and the service manager restarts us.
  void ping_watchdog() {
    notify("WATCHDOG=1");
    watchdog_timer_.expires_after(watchdog_ping_interval(*watchdog_));
    watchdog_timer_.async_wait([this](boost::system::error_code ec) {
      if (!ec) ping_watchdog();
    });
  }

  /// Requests that need no database are answered on the network thread; the rest go to
  /// a reader, or get 503 when too many are already waiting. Every answer is counted by
  /// route pattern, status and time taken.
  request_handler make_handler() {
    return [this](http_request req, std::function<void(http_response)> reply) {
      const auto t0 = std::chrono::steady_clock::now();
      // The hottest read, unchanged since it was last answered, costs no parsing at all.
      if (auto hit = routes_.cached(req)) {
        stats_.count_request(hit->route, hit->res.result_int(),
                             std::chrono::steady_clock::now() - t0);
        return reply(std::move(hit->res));
      }
      // route_name() points into the API's static route table, so the view stays valid.
      auto done = [this, reply = std::move(reply), route = routes_.route_name(req),
                   t0](http_response res) {
        stats_.count_request(route, res.result_int(), std::chrono::steady_clock::now() - t0);
        reply(std::move(res));
      };
      if (auto quick = routes_.handle_without_store(req)) return done(std::move(*quick));
      const unsigned version = req.version();
      const bool writes = routes_.needs_writer(req);
      auto job = [this, req = std::move(req), done](store& db) {
        http_response res;
        try {
          res = routes_.handle(req, db);
        } catch (const std::exception& e) {
          res = api::error(req.version(), http::status::internal_server_error, "internal_error",
                           e.what());
        }
        done(std::move(res));
      };
      // Alert writes are few and authenticated; they queue behind scrapes on the writer.
      if (writes) return writer_.post(std::move(job));
      if (!readers_.try_post(std::move(job))) {
        done(api::error(version, http::status::service_unavailable, "busy",
                        "too many requests are waiting for the database; try again shortly"));
      }
    };
  }

  /// SIGHUP reloads the configuration.
  void wait_hup() {
    hup_.async_wait([this](boost::system::error_code ec, int) {
      if (ec) return;
      reload();
      wait_hup();
    });
  }

  /// Reads the configuration again and applies what may change while running: sources
  /// (unchanged ones keep their schedule), alert rules, notifiers, the API token, the
  /// scrape-log retention and the database size limit. Open connections, rule states
  /// and the outbox are untouched. A config that does not load leaves everything as it
  /// was, and STATUS= says so until a reload succeeds.
  void reload() {
    notify(reloading_message(monotonic_now()));
    const std::string origin =
        opts_.config_path ? *opts_.config_path : std::string("the built-in defaults");
    log_.log(log_level::notice, "SIGHUP received: reloading the configuration from {}", origin);
    config next;
    try {
      next = read_config(opts_);
    } catch (const std::exception& e) {
      log_.log(log_level::error, "reload failed, still running on the previous configuration: {}",
               e.what());
      writer_.post([this, note = fmt::format("reload failed, running on the previous "
                                             "configuration: {}",
                                             e.what())](store& db) {
        reload_note_ = note;
        report_status(db, true);
      });
      notify("READY=1");
      return;
    }
    reload_plan plan = plan_reload(*cfg_, std::move(next));
    for (const std::string& what : plan.needs_restart) {
      // With socket activation the address is the service manager's, restart or not.
      if (socket_activated_ && what.starts_with("[server] listen:")) continue;
      log_.log(log_level::warning, "reload: {} needs a restart; keeping the running value", what);
    }
    const std::string changes = describe_reload(*cfg_, plan.next);
    const bool period_changed = plan.next.alerting != cfg_->alerting;
    const std::uint64_t old_max_size = cfg_->storage.max_size;
    auto cfg = std::make_shared<const config>(std::move(plan.next));
    cfg_ = cfg;
    routes_.set_config(cfg);
    scraper_.reconfigure(cfg->sources);
    dispatcher_.set_config(cfg);
    retention_.set_keep(cfg->storage.keep_scrape_log);
    if (cfg->storage.max_size != old_max_size) {
      log_.log(log_level::notice, "reload: [storage] max_size {} -> {}",
               format_max_size(old_max_size), format_max_size(cfg->storage.max_size));
      set_max_size(cfg->storage.max_size);
    }
    // The engine lives on the writer thread; judging the new rules at once gives them
    // a state, and the status drops any note of an earlier failed reload.
    writer_.post([this, cfg](store& db) {
      engine_.set_config(cfg);
      reload_note_.clear();
      if (engine_.evaluate(db, now()) > 0) dispatcher_.kick();
      report_status(db, true);
    });
    if (period_changed) {
      alert_timer_.cancel();
      evaluate_periodically();
    }
    log_.log(log_level::notice, "configuration reloaded: {}", changes);
    notify("READY=1");
  }

  /// Stops scraping and accepting; in-flight requests get shutdown_grace, then the loop
  /// ends. A fetch still running is abandoned (nothing of it is stored), and a delivery
  /// in flight stays pending in the outbox for the next start.
  void shut_down(int signo) {
    log_.log(log_level::notice, "{} received: shutting down",
             signo == SIGINT ? "SIGINT" : "SIGTERM");
    stopping_.store(true);
    notify("STOPPING=1\nSTATUS=shutting down");
    scraper_.stop();
    dispatcher_.stop();
    retention_.stop();
    alert_timer_.cancel();
    status_timer_.cancel();
    hup_.cancel();
    server_.stop(shutdown_grace, [this] {
      log_.log(log_level::info, "HTTP server stopped");
      ioc_.stop();
    });
  }

  /// Stops the database threads; safe to call twice.
  void stop_workers() {
    readers_.stop();
    writer_.stop();
  }

  std::shared_ptr<const config> cfg_;  ///< The configuration in use; network thread only.
  const cli_options opts_;             ///< Where the configuration came from, for reloads.
  logger& log_;                        ///< Everyone's log.
  const sd_notifier& notifier_;        ///< The service manager's socket (maybe none).
  const std::optional<std::chrono::microseconds> watchdog_;  ///< Watchdog timeout, if asked.
  const bool socket_activated_;        ///< Listening on a socket the manager passed.
  std::atomic<bool> stopping_{false};  ///< STOPPING=1 was sent: no more status.
  // Writer thread only: the status throttle and the note of a failed reload.
  std::chrono::steady_clock::time_point status_sent_{};  ///< When STATUS= was last sent.
  bool status_deferred_ = false;                         ///< A later update is arranged.
  std::string status_text_;                              ///< The last STATUS= sent.
  std::string reload_note_;                              ///< Why the last reload failed.
  net::io_context ioc_{1};                               ///< The network thread's loop.
  source_board board_;                                   ///< Next scrape times, scheduler to API.
  metrics stats_;                                        ///< Counters for /metrics; thread-safe.
  alert_engine engine_;                     ///< Alert rules; used on the writer thread only.
  db_worker writer_;                        ///< The read-write store; scrapes are stored here.
  reader_pool readers_;                     ///< Read-only stores for the API.
  api routes_;                              ///< Request -> response.
  http_server server_;                      ///< The listener and sessions.
  dispatcher dispatcher_;                   ///< Delivers the notification outbox.
  scheduler scraper_;                       ///< Timers, fetches, backoff.
  net::steady_timer alert_timer_{ioc_};     ///< Periodic alert evaluation.
  net::steady_timer status_timer_{ioc_};    ///< A deferred STATUS= update.
  net::steady_timer watchdog_timer_{ioc_};  ///< The next WATCHDOG=1.
  /// Deletes old scrape-log rows ([storage] keep_scrape_log).
  log_retention retention_{ioc_.get_executor(), writer_, cfg_->storage.keep_scrape_log, log_};
  net::signal_set stop_signals_{ioc_, SIGINT, SIGTERM};  ///< Shutdown requests.
  net::signal_set hup_{ioc_, SIGHUP};                    ///< Reload requests.
};

/// The notifier $NOTIFY_SOCKET asks for, or one that sends nothing (logged) when it is
/// unset or unusable.
sd_notifier open_notifier(const service_environment& env, logger& log) {
  if (!env.notify_socket) return sd_notifier();
  try {
    return sd_notifier(*env.notify_socket);
  } catch (const std::exception& e) {
    log.log(log_level::warning, "not notifying the service manager: {}", e.what());
    return sd_notifier();
  }
}

/// "ERRNO=<n>\n" for an OS error, so that systemctl status shows it; empty otherwise.
std::string errno_line(const boost::system::error_code& ec) {
  if (ec.category() != boost::system::system_category() || ec.value() <= 0) return {};
  return fmt::format("ERRNO={}\n", ec.value());
}

}  // namespace

int run_daemon(const config& cfg, logger& log, const cli_options& opts) {
  const service_environment env = take_service_environment();
  const sd_notifier notifier = open_notifier(env, log);
  auto fail = [&](int code, const std::string& why, const std::string& extra = {}) {
    log.log(log_level::error, "{}", why);
    if (const auto ec = notifier.notify(extra + status_message(why)))
      log.log(log_level::debug, "sd_notify failed: {}", ec.message());
    return code;
  };

  listener where;
  if (env.listen_fds > 0) {
    where.fd = listen_fds_start;
    log.log(log_level::notice,
            "using the listening socket passed by the service manager; [server] listen = \"{}\" "
            "is ignored",
            cfg.server.listen);
    if (env.listen_fds > 1) {
      log.log(log_level::warning,
              "the service manager passed {} sockets; only the first is used, the others are "
              "closed",
              env.listen_fds);
      for (int fd = listen_fds_start + 1; fd < listen_fds_start + env.listen_fds; ++fd) ::close(fd);
    }
  } else {
    try {
      where.endpoint = parse_listen(cfg.server.listen);
    } catch (const std::exception& e) {
      return fail(2, e.what());
    }
  }

  std::unique_ptr<daemon_parts> parts;
  try {
    parts = std::make_unique<daemon_parts>(cfg, opts, log, where, notifier, env.watchdog);
  } catch (const store_error& e) {
    return fail(1, fmt::format("cannot open database {}: {}", cfg.storage.path, e.what()));
  } catch (const boost::system::system_error& e) {
    const std::string on =
        where.fd ? std::string("the passed socket") : fmt::format("{}", cfg.server.listen);
    return fail(1, fmt::format("cannot listen on {}: {}", on, e.what()), errno_line(e.code()));
  } catch (const std::exception& e) {
    return fail(1, fmt::format("cannot start: {} (listening on {})", e.what(), cfg.server.listen));
  }
  return parts->run();
}

int scrape_once(const config& cfg, const std::optional<std::string>& source, logger& log,
                std::ostream& out) {
  std::vector<const source_config*> chosen;
  for (const auto& s : cfg.sources)
    if (!source || s.name == *source) chosen.push_back(&s);
  if (chosen.empty()) {
    std::string names;
    for (const auto& s : cfg.sources) names += (names.empty() ? "" : ", ") + s.name;
    log.log(log_level::error, "no source named '{}' (configured: {})", source.value_or(""), names);
    return 2;
  }

  net::io_context ioc(1);
  http_client client(ioc.get_executor());
  int failed = 0;
  for (const source_config* s : chosen) {
    fetch_request req;
    req.url = s->url;
    req.ca_file = s->ca_file;
    req.timeout = s->timeout;
    req.max_body = std::min(s->max_body, max_document_bytes(s->kind));
    client.async_fetch(std::move(req), [&, s](fetch_result r) {
      if (!r.ok()) {
        ++failed;
        out << fmt::format("{}: fetch {} failed: {}\n", s->name, s->url, r.error);
        return;
      }
      const extraction e = extract_for_kind(s->kind, r.body, r.content_type);
      if (!e.ok()) {
        ++failed;
        out << fmt::format("{}: {}: {}\n", s->name, s->url,
                           e.error.empty() ? std::string("no rates in document") : e.error);
        return;
      }
      out << fmt::format("{}: {} rates from {}{}\n", s->name, e.rates.size(), s->url,
                         e.effective_date ? " effective " + format_date(*e.effective_date) : "");
      for (const auto& q : e.rates) out << fmt::format("  {} {}\n", q.currency, q.rate.text());
    });
  }
  ioc.run();
  out.flush();
  return failed == 0 ? 0 : 1;
}

}  // namespace somrated
