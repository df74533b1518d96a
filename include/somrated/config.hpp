#pragma once

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace somrated {

/// A config that cannot be used; the message names the file, line, key and problem.
class config_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// One `[[source]]`.
struct source_config {
  std::string name;                  ///< Unique; defaults to the kind ("24kg", "nbkr").
  std::string kind;                  ///< "24kg" or "nbkr".
  std::string url;                   ///< https://, http:// or file://.
  std::chrono::milliseconds interval{std::chrono::minutes(10)};
  std::string ca_file;               ///< Extra trust anchors (PEM) for private CAs; empty = system store.
  double max_jump = 0.25;            ///< Plausibility share; a larger move is held until confirmed.
  std::chrono::milliseconds timeout{std::chrono::seconds(20)};  ///< Per network operation.
  std::size_t max_body = 8u << 20;   ///< Largest body accepted, bytes.
};

/// `[server]`.
struct server_config {
  std::string listen = "127.0.0.1:8080";  ///< HOST:PORT; [v6]:PORT also accepted.
  std::size_t max_connections = 1024;
};

/// `[storage]`.
struct storage_config {
  std::string path = "./somrated.db";
};

/// The whole configuration.
struct config {
  server_config server;
  storage_config storage;
  std::vector<source_config> sources;
  std::string log_level = "info";  ///< `[log] level`: error, warning, notice, info, debug.
};

/// The built-in defaults: 24.kg English every 10m and NBKR daily.xml every 1h.
config default_config();

/// Parses TOML text; origin names the file in messages. Throws config_error.
/// Missing keys take defaults; `[[source]]` replaces the default sources.
config parse_config(std::string_view toml_text, std::string_view origin);

/// Reads and parses a file. Throws config_error.
config load_config(const std::filesystem::path& path);

/// Renders a config as TOML (for `--help` examples and check-config).
std::string to_toml(const config& c);

}  // namespace somrated
