// The example config installed as /etc/somrated/somrated.toml: it loads as shipped, every
// optional setting in it is valid once uncommented, and it mentions every key.
#include <unistd.h>

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "somrated/config.hpp"

namespace fs = std::filesystem;
using somrated::alert_condition;
using somrated::config;
using somrated::notifier_kind;

namespace {

/// The shipped example.
const fs::path example_path{SOMRATED_EXAMPLE_CONFIG};

/// The whole of a file.
std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE_MESSAGE(in, "cannot read ", path.string());
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// A directory under the temp directory, removed with its contents at scope end.
class temp_dir {
 public:
  /// Creates the directory.
  temp_dir() {
    static std::atomic<int> counter{0};
    path_ = fs::temp_directory_path() / ("somrated-example-test-" + std::to_string(::getpid()) +
                                         "-" + std::to_string(counter++));
    fs::create_directories(path_);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  /// Removes the directory and what is in it.
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  /// Where the directory is.
  const fs::path& path() const { return path_; }

  /// Writes a file named name in the directory.
  void write(const std::string& name, const std::string& text) const {
    std::ofstream out(path_ / name, std::ios::binary);
    out << text;
  }

 private:
  fs::path path_;  ///< Unique per process and instance.
};

/// text with every optional setting turned on: "#key = ..." and "#[table]" lose their
/// "#"; prose comments ("# ...") stay.
std::string uncommented(const std::string& text) {
  static const std::regex setting(R"(^#(?=[\[A-Za-z_]))", std::regex::multiline);
  return std::regex_replace(text, setting, "");
}

/// text with every occurrence of from replaced by to.
std::string replace_all(std::string text, const std::string& from, const std::string& to) {
  for (auto at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size())) {
    text.replace(at, from.size(), to);
  }
  return text;
}

/// The keys assigned in TOML text ("name" of `name = ...`), commented out ones included.
std::set<std::string> assigned_keys(const std::string& text, bool with_commented) {
  static const std::regex active(R"(^([A-Za-z_]+) = )", std::regex::multiline);
  static const std::regex any(R"(^#?([A-Za-z_]+) = )", std::regex::multiline);
  std::set<std::string> keys;
  const auto& pattern = with_commented ? any : active;
  for (auto it = std::sregex_iterator(text.begin(), text.end(), pattern);
       it != std::sregex_iterator(); ++it) {
    keys.insert((*it)[1]);
  }
  return keys;
}

/// The example with every optional setting on, its file names redirected into dir, where
/// the files it names are created (tokens of the right shape, a CA file).
config parse_everything(const temp_dir& dir) {
  dir.write("token", "0123456789abcdef0123456789abcdef\n");
  dir.write("telegram-token", "123456:ABC-DEF_ghi\n");
  dir.write("ca.pem", "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n");
  auto text = uncommented(read_file(example_path));
  const auto prefix = dir.path().string() + "/";
  text = replace_all(text, "/run/credentials/somrated.service/", prefix);
  text = replace_all(text, "/etc/somrated/", prefix);
  return somrated::parse_config(text, "somrated.toml (uncommented)");
}

}  // namespace

TEST_CASE("example config: loads as shipped and holds the defaults but the database path") {
  const config c = somrated::load_config(example_path);
  CHECK(c.storage.path == "/var/lib/somrated/rates.db");
  CHECK(c.server.listen == "127.0.0.1:8080");
  CHECK(c.server.token.empty());
  CHECK(c.notifiers.empty());
  CHECK(c.alerts.empty());

  config expected = somrated::default_config();
  expected.storage.path = "/var/lib/somrated/rates.db";
  CHECK(c == expected);
}

TEST_CASE("example config: every commented-out setting is valid when uncommented") {
  const temp_dir dir;
  const config c = parse_everything(dir);

  CHECK(c.server.token == "0123456789abcdef0123456789abcdef");
  CHECK(c.server.external_url == "https://rates.example.org");

  std::vector<notifier_kind> kinds;
  for (const auto& n : c.notifiers) kinds.push_back(n.kind);
  std::sort(kinds.begin(), kinds.end());
  CHECK(kinds == std::vector<notifier_kind>{notifier_kind::webhook, notifier_kind::alertmanager,
                                            notifier_kind::slack, notifier_kind::telegram,
                                            notifier_kind::ntfy, notifier_kind::exec});

  std::vector<alert_condition> conditions;
  for (const auto& r : c.alerts) conditions.push_back(r.condition);
  std::sort(conditions.begin(), conditions.end());
  CHECK(conditions == std::vector<alert_condition>{alert_condition::above, alert_condition::below,
                                                   alert_condition::change_pct,
                                                   alert_condition::spread_pct,
                                                   alert_condition::stale});
}

// to_toml writes every key a config has, for every notifier kind and rule condition
// present; a key the loader learns later and the example misses fails here.
TEST_CASE("example config: names every key the loader knows") {
  const temp_dir dir;
  const auto example_keys = assigned_keys(read_file(example_path), true);
  const auto schema_keys = assigned_keys(somrated::to_toml(parse_everything(dir)), false);
  REQUIRE(schema_keys.size() > 30);
  for (const auto& key : schema_keys) {
    CAPTURE(key);
    CHECK(example_keys.count(key) == 1);
  }
}
