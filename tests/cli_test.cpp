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
    CHECK(
        error_of({"--source", "nbkr"}).find("--source belongs to the scrape and export commands") ==
        0);
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
          "unknown command \"--help\" (commands: scrape, backup, export, import, check-config, "
          "vacuum; plain somrated runs the daemon)");
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
          "unknown command \"serve\" (commands: scrape, backup, export, import, check-config, "
          "vacuum; plain somrated runs the daemon)");
    CHECK(error_of({"bakup", "x"}) == "unknown command \"bakup\"; did you mean \"backup\"?");
    CHECK(error_of({"check-confg"}) ==
          "unknown command \"check-confg\"; did you mean \"check-config\"?");
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

TEST_CASE("parse_cli: day-two commands") {
  SUBCASE("backup DEST, --force and the database options in any order") {
    for (const auto& args : std::vector<std::vector<std::string>>{
             {"backup", "/tmp/b.db", "--force", "--db", "r.db"},
             {"--db", "r.db", "backup", "--force", "/tmp/b.db"},
             {"--force", "backup", "--db=r.db", "/tmp/b.db"},
             {"backup", "--db", "r.db", "--", "/tmp/b.db", "--force"},
         }) {
      CAPTURE(args.back());
      if (args.back() == "--force") {
        // After "--" everything is an argument.
        CHECK(error_of(args) == "unexpected argument \"--force\"");
        continue;
      }
      const auto o = parse_cli(args);
      CHECK(o.cmd == command::backup);
      CHECK(o.operand == "/tmp/b.db");
      CHECK(o.force);
      CHECK(o.db_path == "r.db");
    }
    const auto o = parse_cli({"--config", "c.toml", "backup", "b.db"});
    CHECK(o.config_path == "c.toml");
    CHECK_FALSE(o.force);
    CHECK(error_of({"backup"}) ==
          "backup needs a destination file: somrated backup [--force] DEST");
    CHECK(error_of({"backup", "a.db", "b.db"}) == "unexpected argument \"b.db\"");
    CHECK(error_of({"backup", "--force=yes", "a.db"}) == "--force takes no value");
  }
  SUBCASE("export with every filter, before and after") {
    for (const auto& args : std::vector<std::vector<std::string>>{
             {"export", "--currency", "usd", "--source", "nbkr", "--from", "2025-01-01", "--to",
              "2025-06-10T10:52:00Z", "--config", "c.toml"},
             {"--config=c.toml", "--to=2025-06-10T10:52:00Z", "export", "--from=2025-01-01",
              "--source=nbkr", "--currency=USD"},
         }) {
      const auto o = parse_cli(args);
      CHECK(o.cmd == command::export_csv);
      CHECK(o.currency == "USD");  // upper-cased
      CHECK(o.source == "nbkr");
      CHECK(o.from == "2025-01-01");
      CHECK(o.to == "2025-06-10T10:52:00Z");
      CHECK(o.config_path == "c.toml");
      CHECK_FALSE(o.operand);
    }
    const auto plain = parse_cli({"export", "--db", "r.db"});
    CHECK(plain.cmd == command::export_csv);
    CHECK_FALSE(plain.currency);
    CHECK_FALSE(plain.from);
    CHECK(error_of({"export", "out.csv"}) == "unexpected argument \"out.csv\"");
    CHECK(error_of({"export", "--currency", "US"}) ==
          "--currency: \"US\" is not a currency code (three letters, like USD)");
    CHECK(error_of({"export", "--currency", "U5D"}).find("--currency: \"U5D\"") == 0);
    CHECK(error_of({"export", "--from", "yesterday"})
              .find("--from: \"yesterday\" is not a time (use YYYY-MM-DD") == 0);
    CHECK(error_of({"export", "--to", "2025-13-01"}).find("--to: \"2025-13-01\" is not a time") ==
          0);
    CHECK(error_of({"export", "--from", "2025-06-02", "--to", "2025-06-01"}) ==
          "--from is after --to");
    CHECK_NOTHROW(parse_cli({"export", "--from", "2025-06-01", "--to", "2025-06-01"}));
  }
  SUBCASE("import FILE or -") {
    auto o = parse_cli({"import", "rates.csv", "--db", "r.db"});
    CHECK(o.cmd == command::import_csv);
    CHECK(o.operand == "rates.csv");
    CHECK(o.db_path == "r.db");
    o = parse_cli({"--config", "c.toml", "import", "-"});
    CHECK(o.operand == "-");
    CHECK(o.config_path == "c.toml");
    o = parse_cli({"import", "--", "-odd.csv"});
    CHECK(o.operand == "-odd.csv");
    CHECK(error_of({"import"}) ==
          "import needs a file to read (- for standard input): somrated import FILE");
    CHECK(error_of({"import", "a.csv", "b.csv"}) == "unexpected argument \"b.csv\"");
  }
  SUBCASE("check-config [FILE]") {
    auto o = parse_cli({"check-config"});
    CHECK(o.cmd == command::check_config);
    CHECK_FALSE(o.config_path);
    o = parse_cli({"check-config", "/etc/somrated/somrated.toml"});
    CHECK(o.config_path == "/etc/somrated/somrated.toml");
    CHECK_FALSE(o.operand);
    o = parse_cli({"--config", "c.toml", "check-config", "--db", "x.db"});
    CHECK(o.config_path == "c.toml");
    CHECK(o.db_path == "x.db");
    o = parse_cli({"check-config", "--listen", "127.0.0.1:9"});
    CHECK(o.listen == "127.0.0.1:9");
    CHECK(error_of({"check-config", "a.toml", "--config", "b.toml"}) ==
          "check-config takes the file once: somrated check-config FILE, or --config FILE");
    CHECK(error_of({"check-config", "a.toml", "b.toml"}) == "unexpected argument \"b.toml\"");
  }
  SUBCASE("vacuum") {
    auto o = parse_cli({"vacuum", "--db", "r.db"});
    CHECK(o.cmd == command::vacuum);
    CHECK(o.db_path == "r.db");
    o = parse_cli({"--config", "c.toml", "vacuum"});
    CHECK(o.config_path == "c.toml");
    CHECK(error_of({"vacuum", "r.db"}) == "unexpected argument \"r.db\"");
  }
  SUBCASE("command options belong to their command") {
    CHECK(error_of({"--force"}) ==
          "--force belongs to the backup command: somrated backup --force DEST");
    CHECK(error_of({"export", "--force"}).find("--force belongs to the backup command") == 0);
    CHECK(error_of({"backup", "b.db", "--currency", "USD"}) ==
          "--currency belongs to the export command: somrated export --currency ...");
    CHECK(error_of({"--from", "2025-01-01"}) ==
          "--from belongs to the export command: somrated export --from ...");
    CHECK(error_of({"vacuum", "--to", "2025-01-01"}) ==
          "--to belongs to the export command: somrated export --to ...");
    CHECK(error_of({"import", "a.csv", "--source", "nbkr"})
              .find("--source belongs to the scrape and export commands") == 0);
    CHECK(error_of({"backup", "--once", "b.db"}) ==
          "--once belongs to the scrape command: somrated scrape --once");
    CHECK(error_of({"scrape", "--once", "--force"}).find("--force belongs to the backup") == 0);
    CHECK(error_of({"--frm", "x"}) == "unknown option \"--frm\"; did you mean \"--from\"?");
    CHECK(error_of({"--forse"}) == "unknown option \"--forse\"; did you mean \"--force\"?");
  }
  SUBCASE("help wins here too") {
    CHECK(parse_cli({"backup", "--help"}).cmd == command::help);
    CHECK(parse_cli({"import", "-V"}).cmd == command::version);
  }
}

TEST_CASE("usage_text") {
  const auto text = somrated::usage_text();
  for (const char* needle : {"--config FILE",
                             "--listen HOST:PORT",
                             "--db PATH",
                             "--log-level LEVEL",
                             "-h, --help",
                             "-V, --version",
                             "scrape --once",
                             "--source NAME",
                             "--opt=value",
                             "[OPTIONS]",
                             "backup [--force] DEST",
                             "export [FILTERS]",
                             "import FILE",
                             "check-config [FILE]",
                             "vacuum",
                             "--currency CODE",
                             "--from TIME",
                             "--to TIME",
                             "--force",
                             "source,currency,since,rate,observed_at,effective_date",
                             "Exit status"}) {
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
