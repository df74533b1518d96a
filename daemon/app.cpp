#include "somrated/app.hpp"

#include <algorithm>
#include <chrono>
#include <csignal>
#include <memory>
#include <ostream>
#include <stdexcept>
#include <vector>

#include <fmt/format.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

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
#include "somrated/source_board.hpp"
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

namespace {

/// Reader threads for API requests.
constexpr std::size_t reader_threads = 2;
/// API requests that may wait for a reader before new ones get 503.
constexpr std::size_t max_queued_reads = 256;

/// The running parts of the daemon, declared in the order they must be built: what a
/// member uses is declared above it, so destruction (in reverse) never leaves a queued
/// job pointing at something already gone. The workers are stopped explicitly before
/// any of it is destroyed (see run()).
class daemon_parts {
 public:
  daemon_parts(const config& cfg, logger& log, const tcp::endpoint& endpoint)
      : cfg_(std::make_shared<const config>(cfg)),
        log_(log),
        stats_(cfg),
        engine_(cfg_, log),
        writer_(cfg.storage.path, store::mode::read_write, log),
        readers_(cfg.storage.path, reader_threads, max_queued_reads, log),
        routes_(
            cfg_, board_, &engine_, [this] { dispatcher_.kick(); }, &stats_),
        server_(ioc_, endpoint, limits(cfg), make_handler(), api::transport_error, log),
        dispatcher_(ioc_, cfg_, writer_, engine_, log, &stats_),
        scraper_(
            ioc_, cfg.sources, writer_, board_, log, [this](store& db) { evaluate(db); }, &stats_) {
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
    // Finish the writes already queued (the last scrape) before the stores close; reads
    // that have not started are dropped.
    stop_workers();
    log_.log(log_level::notice, "stopped");
    return code;
  }

 private:
  /// The transport's limits from the config.
  static server_limits limits(const config& cfg) {
    server_limits l;
    l.max_connections = cfg.server.max_connections;
    return l;
  }

  /// Judges the alert rules on the writer thread and wakes the dispatcher for new events.
  void evaluate(store& db) {
    if (engine_.evaluate(db, now()) > 0) dispatcher_.kick();
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

  /// Requests that need no database are answered on the network thread; the rest go to
  /// a reader, or get 503 when too many are already waiting. Every answer is counted by
  /// route pattern, status and time taken.
  request_handler make_handler() {
    return [this](http_request req, std::function<void(http_response)> reply) {
      // route_name() points into the API's static route table, so the view stays valid.
      auto done = [this, reply = std::move(reply), route = routes_.route_name(req),
                   t0 = std::chrono::steady_clock::now()](http_response res) {
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

  /// SIGHUP is logged and otherwise ignored until configuration reload exists.
  void wait_hup() {
    hup_.async_wait([this](boost::system::error_code ec, int) {
      if (ec) return;
      log_.log(log_level::warning,
               "SIGHUP received: configuration reload is not supported yet; restart to apply "
               "changes");
      wait_hup();
    });
  }

  /// Stops scraping and accepting; in-flight requests get up to 5 s, then the loop ends.
  /// A fetch still running is abandoned (nothing of it is stored).
  void shut_down(int signo) {
    log_.log(log_level::notice, "{} received: shutting down",
             signo == SIGINT ? "SIGINT" : "SIGTERM");
    scraper_.stop();
    dispatcher_.stop();
    retention_.stop();
    alert_timer_.cancel();
    hup_.cancel();
    server_.stop(5s, [this] {
      log_.log(log_level::info, "HTTP server stopped");
      ioc_.stop();
    });
  }

  /// Stops the database threads; safe to call twice.
  void stop_workers() {
    readers_.stop();
    writer_.stop();
  }

  std::shared_ptr<const config> cfg_;    ///< Shared with the API.
  logger& log_;                          ///< Everyone's log.
  net::io_context ioc_{1};               ///< The network thread's loop.
  source_board board_;                   ///< Next scrape times, scheduler to API.
  metrics stats_;                        ///< Counters for /metrics; thread-safe.
  alert_engine engine_;                  ///< Alert rules; used on the writer thread only.
  db_worker writer_;                     ///< The read-write store; scrapes are stored here.
  reader_pool readers_;                  ///< Read-only stores for the API.
  api routes_;                           ///< Request -> response.
  http_server server_;                   ///< The listener and sessions.
  dispatcher dispatcher_;                ///< Delivers the notification outbox.
  scheduler scraper_;                    ///< Timers, fetches, backoff.
  net::steady_timer alert_timer_{ioc_};  ///< Periodic alert evaluation.
  /// Deletes old scrape-log rows ([storage] keep_scrape_log).
  log_retention retention_{ioc_.get_executor(), writer_, cfg_->storage.keep_scrape_log, log_};
  net::signal_set stop_signals_{ioc_, SIGINT, SIGTERM};  ///< Shutdown requests.
  net::signal_set hup_{ioc_, SIGHUP};                    ///< Reload requests.
};

}  // namespace

int run_daemon(const config& cfg, logger& log) {
  tcp::endpoint endpoint;
  try {
    endpoint = parse_listen(cfg.server.listen);
  } catch (const std::exception& e) {
    log.log(log_level::error, "{}", e.what());
    return 2;
  }
  std::unique_ptr<daemon_parts> parts;
  try {
    parts = std::make_unique<daemon_parts>(cfg, log, endpoint);
  } catch (const store_error& e) {
    log.log(log_level::error, "cannot open database {}: {}", cfg.storage.path, e.what());
    return 1;
  } catch (const std::exception& e) {
    log.log(log_level::error, "cannot start: {} (listening on {})", e.what(), cfg.server.listen);
    return 1;
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
      const extraction e = extract_for_kind(s->kind, r.body);
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
