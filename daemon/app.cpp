#include "somrated/app.hpp"

#include <atomic>
#include <csignal>
#include <memory>
#include <ostream>
#include <stdexcept>
#include <vector>

#include <fmt/format.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/signal_set.hpp>

#include "somrated/api.hpp"
#include "somrated/db_worker.hpp"
#include "somrated/http_client.hpp"
#include "somrated/http_server.hpp"
#include "somrated/log.hpp"
#include "somrated/scheduler.hpp"
#include "somrated/source_board.hpp"
#include "somrated/version.hpp"

namespace somrated {

namespace net = boost::asio;
using tcp = net::ip::tcp;
using namespace std::chrono_literals;

tcp::endpoint parse_listen(const std::string& listen) {
  std::string host;
  std::string port;
  if (!listen.empty() && listen.front() == '[') {
    const auto close = listen.find(']');
    if (close == std::string::npos || close + 1 >= listen.size() || listen[close + 1] != ':')
      throw std::invalid_argument(fmt::format("listen \"{}\": expected [ADDRESS]:PORT", listen));
    host = listen.substr(1, close - 1);
    port = listen.substr(close + 2);
  } else {
    const auto colon = listen.rfind(':');
    if (colon == std::string::npos)
      throw std::invalid_argument(fmt::format("listen \"{}\": expected HOST:PORT", listen));
    host = listen.substr(0, colon);
    port = listen.substr(colon + 1);
  }
  unsigned long port_number = 0;
  try {
    std::size_t used = 0;
    port_number = std::stoul(port, &used);
    if (used != port.size() || port_number > 65535) throw std::out_of_range("port");
  } catch (const std::exception&) {
    throw std::invalid_argument(
        fmt::format("listen \"{}\": port \"{}\" is not a number from 0 to 65535", listen, port));
  }
  if (host.empty() || host == "localhost") host = "127.0.0.1";
  boost::system::error_code ec;
  const auto address = net::ip::make_address(host, ec);
  if (ec)
    throw std::invalid_argument(
        fmt::format("listen \"{}\": \"{}\" is not an IP address", listen, host));
  return {address, static_cast<unsigned short>(port_number)};
}

namespace {

/// Readers: one read-only store per thread, handed out round robin.
class reader_pool {
 public:
  reader_pool(const std::string& path, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i)
      workers_.push_back(std::make_unique<db_worker>(path, store::mode::read_only));
  }
  /// The worker for the next request.
  db_worker& next() { return *workers_[next_++ % workers_.size()]; }
  /// Drains and stops every reader.
  void stop() {
    for (auto& w : workers_) w->stop();
  }

 private:
  std::vector<std::unique_ptr<db_worker>> workers_;
  std::atomic<std::size_t> next_{0};
};

}  // namespace

int run_daemon(const config& cfg, logger& log) {
  const auto shared_cfg = std::make_shared<const config>(cfg);
  tcp::endpoint endpoint;
  try {
    endpoint = parse_listen(cfg.server.listen);
  } catch (const std::exception& e) {
    log.log(log_level::error, "{}", e.what());
    return 2;
  }

  // The writer opens (and migrates) first so the read-only stores find a current schema.
  std::unique_ptr<db_worker> writer;
  std::unique_ptr<reader_pool> readers;
  try {
    writer = std::make_unique<db_worker>(cfg.storage.path, store::mode::read_write);
    readers = std::make_unique<reader_pool>(cfg.storage.path, 2);
  } catch (const std::exception& e) {
    log.log(log_level::error, "cannot open database {}: {}", cfg.storage.path, e.what());
    return 1;
  }

  net::io_context ioc(1);
  source_board board;
  const api routes(shared_cfg, board);

  request_handler handler = [&readers, &routes](http_request req,
                                                std::function<void(http_response)> done) {
    readers->next().post([&routes, req = std::move(req), done = std::move(done)](store& db) {
      http_response res;
      try {
        res = routes.handle(req, db);
      } catch (const std::exception& e) {
        res = api::error(req.version(), http::status::internal_server_error, "internal_error",
                         e.what());
      }
      done(std::move(res));
    });
  };
  error_responder on_error = [](http::status status, std::string_view message) {
    const char* code = status == http::status::payload_too_large ? "payload_too_large"
                       : status == http::status::request_header_fields_too_large
                           ? "header_too_large"
                       : status == http::status::service_unavailable ? "unavailable"
                                                                     : "bad_request";
    return api::error(11, status, code, message);
  };

  server_limits limits;
  limits.max_connections = cfg.server.max_connections;
  std::unique_ptr<http_server> server;
  try {
    server = std::make_unique<http_server>(ioc, endpoint, limits, handler, on_error, log);
  } catch (const std::exception& e) {
    log.log(log_level::error, "cannot listen on {}: {}", cfg.server.listen, e.what());
    return 1;
  }

  scheduler scraper(ioc, cfg.sources, *writer, board, log);
  server->start();
  scraper.start();
  const auto bound = server->local_endpoint();
  log.log(log_level::notice, "somrated {} listening on http://{}:{} (database {}, {} sources)",
          version, bound.address().to_string(), bound.port(), cfg.storage.path, cfg.sources.size());

  net::signal_set stop_signals(ioc, SIGINT, SIGTERM);
  net::signal_set hup(ioc, SIGHUP);
  std::function<void()> wait_hup = [&] {
    hup.async_wait([&](boost::system::error_code ec, int) {
      if (ec) return;
      log.log(log_level::warning,
              "SIGHUP received: configuration reload is not supported yet; restart to apply "
              "changes");
      wait_hup();
    });
  };
  wait_hup();
  stop_signals.async_wait([&](boost::system::error_code ec, int signo) {
    if (ec) return;
    log.log(log_level::notice, "{} received: shutting down",
            signo == SIGINT ? "SIGINT" : "SIGTERM");
    scraper.stop();
    hup.cancel();
    // In-flight requests get up to 5 s; a fetch still running after that is abandoned
    // (nothing of it is stored), while writes already queued are finished below.
    server->stop(5s, [&] {
      log.log(log_level::info, "HTTP server stopped");
      ioc.stop();
    });
  });

  ioc.run();
  // Finish queued database work (the last scrape's write) before closing the stores.
  readers->stop();
  writer->stop();
  log.log(log_level::notice, "stopped");
  return 0;
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
    req.max_body = s->max_body;
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
