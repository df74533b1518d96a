#include "somrated/cli.hpp"

#include <algorithm>
#include <string_view>

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
};

/// Every long option, for "did you mean".
constexpr std::string_view long_options[] = {"--config", "--listen", "--db",   "--log-level",
                                             "--source", "--once",   "--help", "--version"};

/// The subcommands.
constexpr std::string_view commands[] = {"scrape"};

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
      if (name == "--once") {
        if (has_inline) throw cli_error("--once takes no value");
        o.once = true;
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
    if (have_command) throw cli_error(fmt::format("unexpected argument \"{}\"", arg));
    if (arg != "scrape") {
      if (const auto best = closest_match(arg, commands)) {
        throw cli_error(fmt::format("unknown command \"{}\"; did you mean \"{}\"?", arg, *best));
      }
      throw cli_error(fmt::format(
          "unknown command \"{}\" (the one command is scrape; plain somrated runs the daemon)",
          arg));
    }
    o.cmd = cli_options::command::scrape;
    have_command = true;
  }

  if (o.cmd == cli_options::command::scrape && !o.once) {
    throw cli_error(
        "scrape needs --once: it fetches each source one time and prints the rates; "
        "continuous scraping is what plain somrated does");
  }
  if (o.cmd != cli_options::command::scrape && o.once) {
    throw cli_error("--once belongs to the scrape command: somrated scrape --once");
  }
  if (o.cmd != cli_options::command::scrape && o.source) {
    throw cli_error("--source belongs to the scrape command: somrated scrape --once --source NAME");
  }
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

Commands:
  scrape --once        fetch every source one time, print what was extracted
                       and exit; nothing is stored
    --source NAME      only the source with this name (built-in: {})
)",
      sources, d.server.listen, d.storage.path, names);
}

}  // namespace somrated
