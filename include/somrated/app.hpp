#pragma once

#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/ip/tcp.hpp>

#include "somrated/cli.hpp"
#include "somrated/config.hpp"

namespace somrated {

class logger;

/// Turns "HOST:PORT" or "[v6]:PORT" into an endpoint ("localhost" is 127.0.0.1), with
/// listen_problem()'s grammar. Throws std::invalid_argument naming what is wrong.
boost::asio::ip::tcp::endpoint parse_listen(const std::string& listen);

/// Runs the daemon until SIGINT or SIGTERM: opens the store, starts the scheduler and
/// the HTTP API, then shuts down in order. Returns the process exit code.
///
/// cfg is what the command line opts produced (the --config file or the defaults, with
/// --listen, --db and --log-level over it); SIGHUP reads it again the same way. Speaks
/// systemd's protocol when the service manager asks for it (sd_notify.hpp): readiness,
/// status, watchdog, reload, stopping, and a listening socket passed by socket
/// activation instead of binding [server] listen.
int run_daemon(const config& cfg, logger& log, const cli_options& opts);

/// What a configuration reload applies, and what it cannot.
struct reload_plan {
  config next;  ///< The new configuration, with the restart-only settings of the old.
  std::vector<std::string> needs_restart;  ///< One line per restart-only setting that changed.
};

/// Splits a reload of running into next: sources, alert rules, notifiers, the API token,
/// the external URL and the evaluation period change live; the listen address, the
/// database path, max_connections, the [server] timeouts and the log level keep
/// running's values, and each one that differs is named in needs_restart
/// ("[server] listen: 127.0.0.1:8080 -> 127.0.0.1:9090").
reload_plan plan_reload(const config& running, config next);

/// Fetches each source (or only `source`) once, prints what was extracted to out and
/// stores nothing. Returns 0 when every fetch and extraction succeeded, 1 otherwise.
int scrape_once(const config& cfg, const std::optional<std::string>& source, logger& log,
                std::ostream& out);

}  // namespace somrated
