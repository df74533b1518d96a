// somrated: tracks the Kyrgyz som's exchange rates. main only parses the command line,
// loads the configuration and hands over to the core library.
#include <cstdio>
#include <exception>
#include <iostream>
#include <string>
#include <vector>

#include <fmt/core.h>

#include "somrated/app.hpp"
#include "somrated/cli.hpp"
#include "somrated/commands.hpp"
#include "somrated/config.hpp"
#include "somrated/log.hpp"
#include "somrated/version.hpp"

int main(int argc, char** argv) {
  using namespace somrated;
  cli_options opts;
  config cfg;
  try {
    opts = parse_cli(std::vector<std::string>(argv + 1, argv + argc));
    if (opts.cmd == cli_options::command::help) {
      fmt::print("{}", usage_text());
      return 0;
    }
    if (opts.cmd == cli_options::command::version) {
      fmt::print("somrated {}\n", version);
      return 0;
    }
    cfg = opts.config_path ? load_config(*opts.config_path) : default_config();
    if (opts.listen) cfg.server.listen = *opts.listen;
    if (opts.db_path) cfg.storage.path = *opts.db_path;
    if (opts.log_level) cfg.log_level = *opts.log_level;
  } catch (const std::exception& e) {
    fmt::print(stderr, "somrated: {}\n", e.what());
    return 2;
  }

  const auto level = parse_log_level(cfg.log_level);
  if (!level) {
    fmt::print(stderr,
               "somrated: unknown log level \"{}\" (use error, warning, notice, info, debug)\n",
               cfg.log_level);
    return 2;
  }
  logger log(*level, stderr);
  try {
    if (opts.cmd == cli_options::command::scrape)
      return scrape_once(cfg, opts.source, log, std::cout);
    if (is_day_two_command(opts.cmd))
      return run_command(opts, cfg, {std::cin, std::cout, std::cerr});
    return run_daemon(cfg, log, opts);
  } catch (const std::exception& e) {
    log.log(log_level::error, "fatal: {}", e.what());
    return 1;
  }
}
