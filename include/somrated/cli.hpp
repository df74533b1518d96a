#pragma once

#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace somrated {

/// A command line that cannot be used; the message says which argument and why.
class cli_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// What the command line asks for.
struct cli_options {
  /// The subcommand.
  enum class command {
    run,
    scrape,
    help,
    version,
    backup,        ///< backup DEST
    export_csv,    ///< export
    import_csv,    ///< import FILE
    check_config,  ///< check-config [FILE]; FILE lands in config_path
    vacuum,        ///< vacuum
  };
  command cmd = command::run;
  std::optional<std::string> config_path;  ///< --config FILE
  std::optional<std::string> listen;       ///< --listen HOST:PORT
  std::optional<std::string> db_path;      ///< --db PATH
  std::optional<std::string> log_level;    ///< --log-level LEVEL
  bool once = false;                       ///< scrape --once
  std::optional<std::string> source;       ///< scrape or export --source NAME
  std::optional<std::string> operand;      ///< backup DEST, import FILE ("-": standard input)
  bool force = false;                      ///< backup --force
  std::optional<std::string> currency;     ///< export --currency CODE, upper case
  std::optional<std::string> from;         ///< export --from TIME (checked by parse_time)
  std::optional<std::string> to;           ///< export --to TIME (checked by parse_time)
};

/// Parses argv (options may come before or after the subcommand). Throws cli_error.
cli_options parse_cli(const std::vector<std::string>& args);

/// The --help text.
std::string usage_text();

}  // namespace somrated
