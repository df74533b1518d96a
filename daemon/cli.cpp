#include "somrated/cli.hpp"

#include <algorithm>
#include <string_view>
#include <tuple>
#include <utility>

#include <fmt/format.h>

#include "somrated/config.hpp"
#include "somrated/log.hpp"
#include "somrated/time.hpp"

namespace somrated {

namespace {

/// An option that takes a value, and where the value goes.
struct value_option {
  std::string_view name;  ///< With the leading "--".
  std::string_view metavar;
  std::optional<std::string> cli_options::*field;
};

constexpr value_option value_options[] = {
    {"--config", "FILE", &cli_options::config_path},
    {"--listen", "HOST:PORT", &cli_options::listen},
    {"--db", "PATH", &cli_options::db_path},
    {"--log-level", "LEVEL", &cli_options::log_level},
    {"--source", "NAME", &cli_options::source},
    {"--currency", "CODE", &cli_options::currency},
    {"--from", "TIME", &cli_options::from},
    {"--to", "TIME", &cli_options::to},
};

/// Every long option, for "did you mean".
constexpr std::string_view long_options[] = {"--config", "--listen", "--db",    "--log-level",
                                             "--source", "--once",   "--force", "--currency",
                                             "--from",   "--to",     "--help",  "--version"};

/// A subcommand's name and what it is.
struct command_entry {
  std::string_view name;
  cli_options::command cmd;
};

/// The subcommands, in the order usage lists them.
constexpr command_entry command_table[] = {
    {"scrape", cli_options::command::scrape},
    {"backup", cli_options::command::backup},
    {"export", cli_options::command::export_csv},
    {"import", cli_options::command::import_csv},
    {"check-config", cli_options::command::check_config},
    {"vacuum", cli_options::command::vacuum},
};

/// Their names alone, for "did you mean".
constexpr std::string_view commands[] = {"scrape", "backup",       "export",
                                         "import", "check-config", "vacuum"};

/// True for "-x" and "--x", not for "-" alone (conventionally a file name).
bool looks_like_option(std::string_view arg) {
  return arg.size() > 1 && arg[0] == '-';
}

/// The value option called name, or nullptr.
const value_option* find_value_option(std::string_view name) {
  for (const auto& o : value_options) {
    if (o.name == name) return &o;
  }
  return nullptr;
}

/// Checks and normalises option values that main would otherwise reject later, so the
/// message can name the option.
void check_values(cli_options& o) {
  if (o.log_level) {
    const auto level = parse_log_level(*o.log_level);
    if (!level) {
      throw cli_error(fmt::format(
          "--log-level: \"{}\" is not a level (use error, warning, notice, info, debug)",
          *o.log_level));
    }
    o.log_level = std::string(to_string(*level));
  }
  if (o.listen) {
    if (const auto problem = listen_problem(*o.listen)) {
      throw cli_error(fmt::format("--listen: {}", *problem));
    }
  }
  if (o.currency) {
    auto& c = *o.currency;
    if (c.size() != 3 || !std::all_of(c.begin(), c.end(), [](char ch) {
          return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z');
        })) {
      throw cli_error(
          fmt::format("--currency: \"{}\" is not a currency code (three letters, like USD)", c));
    }
    std::transform(c.begin(), c.end(), c.begin(), [](char ch) {
      return ch >= 'a' && ch <= 'z' ? static_cast<char>(ch - 'a' + 'A') : ch;
    });
  }
  std::optional<timestamp> from, to;
  for (auto [name, text, out] : {std::tuple{"--from", &o.from, &from}, {"--to", &o.to, &to}}) {
    if (!*text) continue;
    *out = parse_time(**text);
    if (!*out) {
      throw cli_error(fmt::format(
          "{}: \"{}\" is not a time (use YYYY-MM-DD, RFC 3339 like 2025-06-10T10:52:00Z, or "
          "Unix seconds or milliseconds)",
          name, **text));
    }
  }
  if (from && to && *from > *to) throw cli_error("--from is after --to");
}

/// Checks the positional arguments of o.cmd and the options that belong to one command.
void check_command(cli_options& o, std::vector<std::string>& operands) {
  using command = cli_options::command;
  const auto unexpected = [](const std::string& arg) {
    return cli_error(fmt::format("unexpected argument \"{}\"", arg));
  };
  switch (o.cmd) {
    case command::backup:
      if (operands.empty()) {
        throw cli_error("backup needs a destination file: somrated backup [--force] DEST");
      }
      break;
    case command::import_csv:
      if (operands.empty()) {
        throw cli_error("import needs a file to read (- for standard input): somrated import FILE");
      }
      break;
    case command::check_config:
      if (!operands.empty() && o.config_path) {
        throw cli_error(
            "check-config takes the file once: somrated check-config FILE, or --config FILE");
      }
      if (!operands.empty()) {
        if (operands.size() > 1) throw unexpected(operands[1]);
        o.config_path = std::move(operands.front());
        operands.clear();
      }
      break;
    default:
      break;
  }
  if (o.cmd == command::backup || o.cmd == command::import_csv) {
    if (operands.size() > 1) throw unexpected(operands[1]);
    o.operand = std::move(operands.front());
  } else if (!operands.empty()) {
    throw unexpected(operands.front());
  }

  if (o.cmd == command::scrape && !o.once) {
    throw cli_error(
        "scrape needs --once: it fetches each source one time and prints the rates; "
        "continuous scraping is what plain somrated does");
  }
  if (o.cmd != command::scrape && o.once) {
    throw cli_error("--once belongs to the scrape command: somrated scrape --once");
  }
  if (o.cmd != command::scrape && o.cmd != command::export_csv && o.source) {
    throw cli_error(
        "--source belongs to the scrape and export commands: somrated scrape --once --source "
        "NAME, somrated export --source NAME");
  }
  if (o.cmd != command::backup && o.force) {
    throw cli_error("--force belongs to the backup command: somrated backup --force DEST");
  }
  for (const auto& [name, value] :
       {std::pair{"--currency", &o.currency}, {"--from", &o.from}, {"--to", &o.to}}) {
    if (o.cmd != command::export_csv && *value) {
      throw cli_error(
          fmt::format("{} belongs to the export command: somrated export {} ...", name, name));
    }
  }
}

}  // namespace

// A value that starts with '-' is taken as a forgotten value ("--db --listen x"), not as
// the value itself; "--db=-odd-name" still works. Help and version win over everything
// else on the line, so "somrated scrape --help" shows help instead of an error.
cli_options parse_cli(const std::vector<std::string>& args) {
  cli_options o;
  const auto end_of_options = std::find(args.begin(), args.end(), "--");
  for (auto it = args.begin(); it != end_of_options; ++it) {
    if (*it == "-h" || *it == "--help") {
      o.cmd = cli_options::command::help;
      return o;
    }
  }
  for (auto it = args.begin(); it != end_of_options; ++it) {
    if (*it == "-V" || *it == "--version") {
      o.cmd = cli_options::command::version;
      return o;
    }
  }

  bool have_command = false;
  bool options_done = false;
  std::vector<std::string> operands;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string_view arg = args[i];
    if (!options_done && arg == "--") {
      options_done = true;
      continue;
    }
    if (!options_done && looks_like_option(arg)) {
      const auto eq = arg.find('=');
      const auto name = arg.substr(0, eq);
      // "--opt=value" carries its value inline; has_inline tells "--opt=" from "--opt".
      const bool has_inline = eq != std::string_view::npos;
      const std::string_view inline_value = has_inline ? arg.substr(eq + 1) : std::string_view();
      if (const auto* opt = find_value_option(name)) {
        std::string value;
        if (has_inline) {
          value = inline_value;
        } else if (i + 1 < args.size() && !looks_like_option(args[i + 1])) {
          value = args[++i];
        }
        if (value.empty())
          throw cli_error(fmt::format("{} needs a value ({})", name, opt->metavar));
        if (o.*(opt->field)) throw cli_error(fmt::format("{} is given twice", name));
        o.*(opt->field) = std::move(value);
        continue;
      }
      if (name == "--once" || name == "--force") {
        if (has_inline) throw cli_error(fmt::format("{} takes no value", name));
        (name == "--once" ? o.once : o.force) = true;
        continue;
      }
      // Bare help and version returned above; these carry "=value".
      if (name == "--help" || name == "--version" || name == "-h" || name == "-V") {
        throw cli_error(fmt::format("{} takes no value", name));
      }
      if (const auto best = closest_match(name, long_options)) {
        throw cli_error(fmt::format("unknown option \"{}\"; did you mean \"{}\"?", name, *best));
      }
      throw cli_error(fmt::format("unknown option \"{}\" (see --help)", name));
    }
    if (have_command) {
      operands.emplace_back(arg);
      continue;
    }
    const auto* entry = std::find_if(std::begin(command_table), std::end(command_table),
                                     [arg](const command_entry& e) { return e.name == arg; });
    if (entry == std::end(command_table)) {
      if (const auto best = closest_match(arg, commands)) {
        throw cli_error(fmt::format("unknown command \"{}\"; did you mean \"{}\"?", arg, *best));
      }
      throw cli_error(fmt::format(
          "unknown command \"{}\" (commands: scrape, backup, export, import, check-config, "
          "vacuum; plain somrated runs the daemon)",
          arg));
    }
    o.cmd = entry->cmd;
    have_command = true;
  }

  check_command(o, operands);
  check_values(o);
  return o;
}

std::string usage_text() {
  const config d = default_config();
  std::string sources;
  for (std::size_t i = 0; i < d.sources.size(); ++i) {
    if (i > 0) sources += i + 1 == d.sources.size() ? " and " : ", ";
    sources +=
        fmt::format("{} every {}", d.sources[i].name, format_duration(d.sources[i].interval));
  }
  std::string names;
  for (const auto& s : d.sources) {
    if (!names.empty()) names += ", ";
    names += s.name;
  }
  return fmt::format(
      R"(Usage:
  somrated [OPTIONS]                        run the daemon
  somrated scrape --once [--source NAME]    fetch once, print the rates, exit
  somrated backup [--force] DEST            copy the database while it runs
  somrated export [FILTERS] > FILE.csv      write the change points as CSV
  somrated import FILE.csv                  merge change points from CSV
  somrated check-config [FILE]              validate and print the configuration
  somrated vacuum                           compact the database file
  somrated --help | --version

Tracks the Kyrgyz som: scrapes the USD/EUR/RUB strip on 24.kg and the National
Bank's (NBKR) daily XML, stores every change in SQLite and serves it over HTTP.

With no --config: scrapes {}, listens on
{} and keeps its database in {}.

Options (before or after the command; "--opt value" or "--opt=value"):
  --config FILE        read settings from a TOML file
  --listen HOST:PORT   HTTP API address, e.g. 127.0.0.1:8080 or [::1]:8080
                       (overrides [server] listen)
  --db PATH            SQLite database file (overrides [storage] path)
  --log-level LEVEL    error, warning, notice, info or debug
                       (overrides [log] level)
  -h, --help           show this help and exit
  -V, --version        show the version and exit

Commands (those using the database find it through --config FILE or --db PATH):
  scrape --once        fetch every source one time, print what was extracted
                       and exit; nothing is stored
    --source NAME      only the source with this name (built-in: {})
  backup DEST          write a consistent copy of the database to DEST (SQLite's
                       online backup: the daemon keeps running), checked with
                       PRAGMA integrity_check
    --force            replace DEST if it exists
  export               print the change points as CSV, with the header
                       source,currency,since,rate,observed_at,effective_date
    --source NAME      only this source
    --currency CODE    only this currency, e.g. USD
    --from TIME        only those since TIME (YYYY-MM-DD, RFC 3339, Unix time)
    --to TIME          only those up to TIME
  import FILE          merge change points from CSV as export writes it (- reads
                       standard input); rows already stored are skipped, rows
                       that contradict the database are reported and not
                       applied, so importing a file twice changes nothing
  check-config [FILE]  check the configuration (FILE or --config) and print it
                       with every default filled in and the secrets redacted
  vacuum               rebuild the database file at its smallest and truncate
                       its write-ahead log

Exit status: 0 done; 1 failed (or import rejected rows); 2 bad command line or
configuration.
)",
      sources, d.server.listen, d.storage.path, names);
}

}  // namespace somrated
