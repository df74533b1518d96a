#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "somrated/alert.hpp"

namespace somrated {

/// A config that cannot be used; the message names the file, line, key and problem.
class config_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// One `[[source]]`.
struct source_config {
  std::string name;  ///< Unique; defaults to the kind ("24kg", "nbkr").
  std::string kind;  ///< "24kg" or "nbkr".
  std::string url;   ///< https://, http:// or file://.
  std::chrono::milliseconds interval{std::chrono::minutes(10)};  ///< Between fetches; >= 1s.
  std::string ca_file;     ///< Extra trust anchors (PEM) for private CAs; empty = system store.
  double max_jump = 0.25;  ///< Plausibility share; a larger move is held until confirmed.
  std::chrono::milliseconds timeout{std::chrono::seconds(20)};  ///< Per network operation.
  std::size_t max_body = 8u << 20;                              ///< Largest body accepted, bytes.

  /// Field by field.
  bool operator==(const source_config&) const = default;
};

/// `[server]`.
struct server_config {
  std::string listen = "127.0.0.1:8080";  ///< HOST:PORT; [v6]:PORT also accepted.
  std::size_t max_connections = 1024;     ///< Open HTTP connections at most.
  std::string token;       ///< Bearer token for API writes (from `token` or `token_file`); empty =
                           ///< writes refused.
  std::string token_file;  ///< Where token was read from (first line, trailing whitespace trimmed),
                           ///< if a file.
  std::string external_url;  ///< How receivers link back to us; empty = "http://" + listen.
  /// From a request's first byte to its last; a slower request is cut off.
  std::chrono::milliseconds read_timeout{std::chrono::seconds(15)};
  /// How long a connection may wait for its next request (or its first).
  std::chrono::milliseconds idle_timeout{std::chrono::seconds(60)};
  /// How long writing one response may take; a client that does not read is cut off.
  std::chrono::milliseconds write_timeout{std::chrono::seconds(15)};

  /// Field by field.
  bool operator==(const server_config&) const = default;
};

/// `[storage]`.
struct storage_config {
  std::string path = "./somrated.db";
  /// Scrape-log rows older than this are deleted; zero keeps them forever.
  std::chrono::milliseconds keep_scrape_log{std::chrono::days(90)};
  /// The most bytes the database may grow to; zero means no limit. A write that would
  /// need more fails as on a full disk (see store::set_max_size).
  std::uint64_t max_size = 0;

  /// Field by field.
  bool operator==(const storage_config&) const = default;
};

/// `[alerting]`.
struct alerting_config {
  std::chrono::milliseconds evaluate_every{
      std::chrono::seconds(15)};  ///< Timer evaluation period; >= 1s.

  /// Field by field.
  bool operator==(const alerting_config&) const = default;
};

/// The whole configuration.
struct config {
  server_config server;
  storage_config storage;
  std::vector<source_config> sources;
  alerting_config alerting;
  std::vector<notifier_config> notifiers;  ///< `[[notifier]]`, in file order.
  std::vector<alert_rule> alerts;          ///< `[[alert]]`, in file order.
  std::string log_level = "info";          ///< `[log] level`: error, warning, notice, info, debug.

  /// Field by field; parse_config(to_toml(c)) == c.
  bool operator==(const config&) const = default;
};

/// The built-in defaults: 24.kg English every 10m and NBKR daily.xml every 1h.
config default_config();

/// Parses TOML text; origin names the file in messages. Throws config_error.
/// Missing keys take defaults; `[[source]]` replaces the default sources.
config parse_config(std::string_view toml_text, std::string_view origin);

/// Reads and parses a file. Throws config_error.
config load_config(const std::filesystem::path& path);

/// Renders a config as TOML (for `--help` examples and check-config): every key, in
/// schema order, so that parse_config(to_toml(c)) == c.
std::string to_toml(const config& c);

/// to_toml with the secrets left out, for showing a config (check-config). An inline
/// [server] token becomes a comment (loading the text leaves API writes disabled rather
/// than guessable); an inline bot_token becomes "0:REDACTED"; header values whose names
/// carry credentials (Authorization, Cookie, ...token..., ...key..., ...secret...), URL
/// passwords, credential-like query values and the secret last path segment of a Slack
/// webhook become "REDACTED". Paths of token_file and bot_token_file are shown as they
/// are. The result still parses.
std::string to_redacted_toml(const config& c);

/// What is wrong with a listen address, or nullopt when it is usable. Accepted:
/// "IPV4:PORT", "[IPV6]:PORT" and "localhost:PORT", port 0..65535 (0 picks a free port).
std::optional<std::string> listen_problem(std::string_view listen);

/// Parses a byte size: a plain integer or an integer with B, KiB or MiB ("8MiB").
/// Zero and sizes above 1 GiB are rejected.
std::optional<std::size_t> parse_size(std::string_view text);

/// Formats a byte size in the largest exact unit: "8MiB", "512KiB", "1500B".
std::string format_size(std::size_t bytes);

/// Parses a database size limit ([storage] max_size): a plain integer (bytes) or an
/// integer with B, KiB, MiB, GiB or TiB ("64MiB"), at most 16TiB; "0" means no limit
/// and yields 0. nullopt for anything else.
std::optional<std::uint64_t> parse_max_size(std::string_view text);

/// Formats a database size limit the way parse_max_size reads it, in the largest exact
/// unit: "64MiB", "2GiB", "1500B", and "0" for no limit.
std::string format_max_size(std::uint64_t bytes);

/// Levenshtein distance, for "did you mean" hints.
std::size_t edit_distance(std::string_view a, std::string_view b);

/// The candidate closest to word when it is close enough to be a likely typo
/// (at most 2 edits, and fewer edits than word has characters), else nullopt.
std::optional<std::string_view> closest_match(std::string_view word,
                                              std::span<const std::string_view> candidates);

}  // namespace somrated
