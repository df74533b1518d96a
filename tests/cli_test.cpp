#include "somrated/cli.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using somrated::cli_error;
using somrated::cli_options;
using somrated::parse_cli;
using command = somrated::cli_options::command;

namespace {

/// The cli_error message for args, or "" when they parse.
std::string error_of(const std::vector<std::string>& args) {
  try {
    parse_cli(args);
  } catch (const cli_error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("parse_cli: running the daemon") {
  SUBCASE("no arguments runs with defaults") {
    const auto o = parse_cli({});
    CHECK(o.cmd == command::run);
    CHECK_FALSE(o.config_path);
    CHECK_FALSE(o.listen);
    CHECK_FALSE(o.db_path);
    CHECK_FALSE(o.log_level);
    CHECK_FALSE(o.once);
    CHECK_FALSE(o.source);
  }
  SUBCASE("every global option, separate values") {
    const auto o = parse_cli({"--config", "/etc/somrated.toml", "--listen", "[::1]:9000", "--db",
                              "rates.db", "--log-level", "debug"});
    CHECK(o.cmd == command::run);
    CHECK(o.config_path == "/etc/somrated.toml");
    CHECK(o.listen == "[::1]:9000");
    CHECK(o.db_path == "rates.db");
    CHECK(o.log_level == "debug");
  }
  SUBCASE("--opt=value") {
    const auto o = parse_cli(
        {"--config=a=b.toml", "--listen=127.0.0.1:0", "--db=-odd.db", "--log-level=warn"});
    CHECK(o.config_path == "a=b.toml");
    CHECK(o.listen == "127.0.0.1:0");
    CHECK(o.db_path == "-odd.db");
    CHECK(o.log_level == "warning");  // normalised
  }
  SUBCASE("\"-\" is a value, not an option") {
    CHECK(parse_cli({"--config", "-"}).config_path == "-");
  }
}

TEST_CASE("parse_cli: scrape --once") {
  SUBCASE("options before and after the command") {
    for (const auto& args : std::vector<std::vector<std::string>>{
             {"scrape", "--once", "--config", "c.toml", "--source", "nbkr"},
             {"--config", "c.toml", "scrape", "--once", "--source", "nbkr"},
             {"--source=nbkr", "--once", "--config=c.toml", "scrape"},
         }) {
      CAPTURE(args.size());
      const auto o = parse_cli(args);
      CHECK(o.cmd == command::scrape);
      CHECK(o.once);
      CHECK(o.config_path == "c.toml");
      CHECK(o.source == "nbkr");
    }
  }
  SUBCASE("without --source") {
    const auto o = parse_cli({"scrape", "--once"});
    CHECK(o.cmd == command::scrape);
    CHECK(o.once);
    CHECK_FALSE(o.source);
  }
  SUBCASE("--once is required") {
    const auto e = error_of({"scrape"});
    CHECK(e.find("scrape needs --once") == 0);
    CHECK(e.find("continuous scraping is what plain somrated does") != std::string::npos);
    CHECK(error_of({"scrape", "--source", "nbkr"}).find("scrape needs --once") == 0);
  }
  SUBCASE("--once and --source only with scrape") {
    CHECK(error_of({"--once"}) == "--once belongs to the scrape command: somrated scrape --once");
    CHECK(error_of({"--source", "nbkr"}).find("--source belongs to the scrape command") == 0);
    CHECK(error_of({"scrape", "--once=yes"}) == "--once takes no value");
  }
}

TEST_CASE("parse_cli: help and version") {
  CHECK(parse_cli({"--help"}).cmd == command::help);
  CHECK(parse_cli({"-h"}).cmd == command::help);
  CHECK(parse_cli({"--version"}).cmd == command::version);
  CHECK(parse_cli({"-V"}).cmd == command::version);
  SUBCASE("they win over anything else on the line") {
    CHECK(parse_cli({"scrape", "--help"}).cmd == command::help);
    CHECK(parse_cli({"--bogus", "-h"}).cmd == command::help);
    CHECK(parse_cli({"--version", "--help"}).cmd == command::help);
    CHECK(parse_cli({"--config", "x", "-V", "stray"}).cmd == command::version);
  }
  SUBCASE("but not after --") {
    CHECK(error_of({"--", "--help"}) ==
          "unknown command \"--help\" (the one command is scrape; plain somrated runs the daemon)");
  }
  SUBCASE("they take no value") {
    CHECK(error_of({"--help=yes"}) == "--help takes no value");
    CHECK(error_of({"--version=1"}) == "--version takes no value");
  }
}

TEST_CASE("parse_cli: errors") {
  SUBCASE("unknown options suggest the closest") {
    CHECK(error_of({"--confg", "x"}) == "unknown option \"--confg\"; did you mean \"--config\"?");
    CHECK(error_of({"--log_level", "info"}) ==
          "unknown option \"--log_level\"; did you mean \"--log-level\"?");
    CHECK(error_of({"-config", "x"}) == "unknown option \"-config\"; did you mean \"--config\"?");
    CHECK(error_of({"--lisen=127.0.0.1:1"}) ==
          "unknown option \"--lisen\"; did you mean \"--listen\"?");
    CHECK(error_of({"--daemonize"}) == "unknown option \"--daemonize\" (see --help)");
    CHECK(error_of({"-x"}) == "unknown option \"-x\" (see --help)");
  }
  SUBCASE("missing values") {
    CHECK(error_of({"--config"}) == "--config needs a value (FILE)");
    CHECK(error_of({"--db="}) == "--db needs a value (PATH)");
    CHECK(error_of({"--listen", "--db", "x"}) == "--listen needs a value (HOST:PORT)");
    CHECK(error_of({"scrape", "--once", "--source"}) == "--source needs a value (NAME)");
    CHECK(error_of({"--log-level", ""}) == "--log-level needs a value (LEVEL)");
  }
  SUBCASE("repeated options") {
    CHECK(error_of({"--db", "a", "--db=b"}) == "--db is given twice");
  }
  SUBCASE("unknown commands") {
    CHECK(error_of({"scrap", "--once"}) == "unknown command \"scrap\"; did you mean \"scrape\"?");
    CHECK(error_of({"serve"}) ==
          "unknown command \"serve\" (the one command is scrape; plain somrated runs the daemon)");
  }
  SUBCASE("stray positional arguments") {
    CHECK(error_of({"scrape", "--once", "nbkr"}) == "unexpected argument \"nbkr\"");
    CHECK(error_of({"scrape", "scrape"}) == "unexpected argument \"scrape\"");
  }
  SUBCASE("values are checked") {
    CHECK(error_of({"--log-level", "loud"}) ==
          "--log-level: \"loud\" is not a level (use error, warning, notice, info, debug)");
    CHECK(error_of({"--listen", "8080"}).find("--listen: \"8080\" is not HOST:PORT") == 0);
    CHECK(error_of({"--listen=127.0.0.1:99999"}) ==
          "--listen: port 99999 is out of range (0 to 65535)");
  }
}

TEST_CASE("usage_text") {
  const auto text = somrated::usage_text();
  for (const char* needle :
       {"--config FILE", "--listen HOST:PORT", "--db PATH", "--log-level LEVEL", "-h, --help",
        "-V, --version", "scrape --once", "--source NAME", "--opt=value", "[OPTIONS]"}) {
    CAPTURE(needle);
    CHECK(text.find(needle) != std::string::npos);
  }
  SUBCASE("the default behaviour is spelled out") {
    CHECK(text.find("With no --config: scrapes 24kg every 10m and nbkr every 1h, listens on\n"
                    "127.0.0.1:8080 and keeps its database in ./somrated.db.") !=
          std::string::npos);
  }
  SUBCASE("fits an 80-column terminal") {
    std::size_t start = 0;
    while (start < text.size()) {
      auto end = text.find('\n', start);
      if (end == std::string::npos) end = text.size();
      CAPTURE(text.substr(start, end - start));
      CHECK(end - start <= 80);
      start = end + 1;
    }
  }
}
