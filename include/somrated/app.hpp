#pragma once

#include <iosfwd>
#include <optional>
#include <string>

#include <boost/asio/ip/tcp.hpp>

#include "somrated/config.hpp"

namespace somrated {

class logger;

/// Turns "HOST:PORT" or "[v6]:PORT" into an endpoint ("localhost" is 127.0.0.1), with
/// listen_problem()'s grammar. Throws std::invalid_argument naming what is wrong.
boost::asio::ip::tcp::endpoint parse_listen(const std::string& listen);

/// Runs the daemon until SIGINT or SIGTERM: opens the store, starts the scheduler and
/// the HTTP API, then shuts down in order. Returns the process exit code.
int run_daemon(const config& cfg, logger& log);

/// Fetches each source (or only `source`) once, prints what was extracted to out and
/// stores nothing. Returns 0 when every fetch and extraction succeeded, 1 otherwise.
int scrape_once(const config& cfg, const std::optional<std::string>& source, logger& log,
                std::ostream& out);

}  // namespace somrated
