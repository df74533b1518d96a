#include "somrated/config.hpp"
#include "somrated/app.hpp"

#include <unistd.h>

#include <doctest/doctest.h>
#include <fmt/core.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <utility>
#include <vector>

using namespace std::chrono_literals;
using somrated::config;
using somrated::config_error;
using somrated::parse_config;

namespace {

/// A file under the temp directory, removed at scope end.
class temp_file {
 public:
  /// Creates the file with text as its contents.
  explicit temp_file(std::string_view text, std::string_view suffix = ".toml") {
    static std::atomic<int> counter{0};
    path_ = std::filesystem::temp_directory_path() /
            ("somrated-config-test-" + std::to_string(::getpid()) + "-" +
             std::to_string(counter++) + std::string(suffix));
    std::ofstream out(path_, std::ios::binary);
    out << text;
  }
  temp_file(const temp_file&) = delete;
  temp_file& operator=(const temp_file&) = delete;
  /// Removes the file; a missing file is fine.
  ~temp_file() {
    std::error_code ec;
    std::filesystem::remove(path_, ec);
  }
  /// Where the file is.
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;  ///< Unique per process and instance.
};

/// The config_error message parse_config throws for text, or "" when it parses.
std::string error_of(std::string_view text) {
  try {
    parse_config(text, "somrated.toml");
  } catch (const config_error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("default_config") {
  const config c = somrated::default_config();
  CHECK(c.server.listen == "127.0.0.1:8080");
  CHECK(c.server.max_connections == 1024);
  CHECK(c.storage.path == "./somrated.db");
  CHECK(c.log_level == "info");
  REQUIRE(c.sources.size() == 2);
  CHECK(c.sources[0].name == "24kg");
  CHECK(c.sources[0].kind == "24kg");
  CHECK(c.sources[0].url == "https://24.kg/english/");
  CHECK(c.sources[0].interval == 10min);
  CHECK(c.sources[1].name == "nbkr");
  CHECK(c.sources[1].kind == "nbkr");
  CHECK(c.sources[1].url == "https://www.nbkr.kg/XML/daily.xml");
  CHECK(c.sources[1].interval == 1h);
  for (const auto& s : c.sources) {
    CAPTURE(s.name);
    CHECK(s.ca_file.empty());
    CHECK(s.max_jump == 0.25);
    CHECK(s.timeout == 20s);
    CHECK(s.max_body == 8u * 1024 * 1024);
  }
}

TEST_CASE("parse_config fills in defaults") {
  SUBCASE("empty text is the default config") {
    CHECK(parse_config("", "x.toml") == somrated::default_config());
    CHECK(parse_config("# nothing\n\n", "x.toml") == somrated::default_config());
  }
  SUBCASE("a partial section keeps the other defaults") {
    const auto c = parse_config("[server]\nlisten = \"0.0.0.0:9000\"\n", "x.toml");
    CHECK(c.server.listen == "0.0.0.0:9000");
    CHECK(c.server.max_connections == 1024);
    CHECK(c.sources == somrated::default_config().sources);
  }
  SUBCASE("[[source]] replaces the default sources and takes per-kind defaults") {
    const auto c = parse_config("[[source]]\nkind = \"nbkr\"\n", "x.toml");
    REQUIRE(c.sources.size() == 1);
    CHECK(c.sources[0] == somrated::default_config().sources[1]);
  }
  SUBCASE("log level aliases are stored under the canonical name") {
    CHECK(parse_config("[log]\nlevel = \"warn\"\n", "x.toml").log_level == "warning");
    CHECK(parse_config("[log]\nlevel = \"err\"\n", "x.toml").log_level == "error");
  }
}

TEST_CASE("parse_config reads every key") {
  const temp_file ca{"-----BEGIN CERTIFICATE-----\n", ".pem"};
  const std::string text = R"([server]
listen = "[::1]:9090"
max_connections = 16

[storage]
path = "/var/lib/somrated/rates.db"

[log]
level = "debug"

[[source]]
name = "kg-en"
kind = "24kg"
url = "http://127.0.0.1:8000/english/"
interval = "1h30m"
ca_file = ")" + ca.path().string() +
                           R"("
max_jump = 1
timeout = "1500ms"
max_body = 65536

[[source]]
kind = "nbkr"
url = "file:///srv/nbkr/daily.xml"
max_jump = 0.0
max_body = "512KiB"

[[source]]
name = "nbkr_backup"
kind = "nbkr"
interval = "1s"
max_body = "2MiB"
)";
  const auto c = parse_config(text, "full.toml");
  CHECK(c.server.listen == "[::1]:9090");
  CHECK(c.server.max_connections == 16);
  CHECK(c.storage.path == "/var/lib/somrated/rates.db");
  CHECK(c.log_level == "debug");
  REQUIRE(c.sources.size() == 3);

  const auto& a = c.sources[0];
  CHECK(a.name == "kg-en");
  CHECK(a.kind == "24kg");
  CHECK(a.url == "http://127.0.0.1:8000/english/");
  CHECK(a.interval == 90min);
  CHECK(a.ca_file == ca.path().string());
  CHECK(a.max_jump == 1.0);
  CHECK(a.timeout == 1500ms);
  CHECK(a.max_body == 65536);

  const auto& b = c.sources[1];
  CHECK(b.name == "nbkr");
  CHECK(b.url == "file:///srv/nbkr/daily.xml");
  CHECK(b.interval == 1h);
  CHECK(b.max_jump == 0.0);
  CHECK(b.max_body == 512 * 1024);

  const auto& d = c.sources[2];
  CHECK(d.name == "nbkr_backup");
  CHECK(d.url == "https://www.nbkr.kg/XML/daily.xml");
  CHECK(d.interval == 1s);
  CHECK(d.max_body == 2 * 1024 * 1024);
}

TEST_CASE("parse_config errors name origin, line and key") {
  SUBCASE("not a duration") {
    CHECK(error_of("[[source]]\nkind = \"24kg\"\n\n\n\n\ninterval = \"10x\"\n") ==
          "somrated.toml:7: source[0].interval: \"10x\" is not a duration (use 30s, 10m, 1h, 1d)");
    CHECK(error_of("[[source]]\nkind = \"24kg\"\n[[source]]\nkind = \"nbkr\"\ntimeout = \"\"\n") ==
          "somrated.toml:5: source[1].timeout: \"\" is not a duration (use 30s, 10m, 1h, 1d)");
  }
  SUBCASE("duration of the wrong type") {
    CHECK(error_of("[[source]]\nkind = \"24kg\"\ninterval = 10\n") ==
          "somrated.toml:3: source[0].interval: expected a string like \"10m\", not an integer");
    CHECK(error_of("[[source]]\nkind = \"24kg\"\ntimeout = 2.5\n") ==
          "somrated.toml:3: source[0].timeout: expected a string like \"20s\", not a float");
  }
  SUBCASE("interval below one second") {
    CHECK(error_of("[[source]]\nkind = \"24kg\"\ninterval = \"500ms\"\n") ==
          "somrated.toml:3: source[0].interval: 500ms is too short (minimum 1s)");
  }
  SUBCASE("url") {
    const auto with_url = [](std::string_view url) {
      return error_of("[[source]]\nkind = \"24kg\"\nurl = \"" + std::string(url) + "\"\n");
    };
    CHECK(with_url("ftp://24.kg/") ==
          "somrated.toml:3: source[0].url: \"ftp://24.kg/\": the scheme must be http, https or "
          "file");
    CHECK(with_url("file://page.html")
              .find("source[0].url: \"file://page.html\": file:// urls must be absolute") !=
          std::string::npos);
    CHECK(with_url("file:page.html").find("must be absolute") != std::string::npos);
    CHECK(with_url("file:///").find("must be absolute") != std::string::npos);
    CHECK(with_url("https:///english/").find("has no host") != std::string::npos);
    CHECK(with_url("24.kg/english/").find("is not a URL") != std::string::npos);
    CHECK(with_url("").find("is not a URL") != std::string::npos);
    CHECK(with_url("HTTPS://24.kg/english/").empty());
    CHECK(with_url("file:///tmp/page.html").empty());
  }
  SUBCASE("kind") {
    CHECK(error_of("[[source]]\nkind = \"24gk\"\n") ==
          "somrated.toml:2: source[0].kind: unknown kind \"24gk\"; did you mean \"24kg\"? (valid "
          "kinds: \"24kg\", \"nbkr\")");
    CHECK(
        error_of("[[source]]\nkind = \"ecb\"\n") ==
        "somrated.toml:2: source[0].kind: unknown kind \"ecb\" (valid kinds: \"24kg\", \"nbkr\")");
    CHECK(error_of("[server]\n\n[[source]]\nname = \"x\"\n") ==
          "somrated.toml:3: source[0]: kind is required (one of \"24kg\", \"nbkr\")");
  }
  SUBCASE("names") {
    CHECK(error_of("[[source]]\nname = \"a\"\nkind = \"24kg\"\n\n[[source]]\nname = \"a\"\nkind = "
                   "\"nbkr\"\n") ==
          "somrated.toml:6: source[1].name: duplicate name \"a\" (source[0], line 2, has it too)");
    const auto defaulted = error_of("[[source]]\nkind = \"nbkr\"\n[[source]]\nkind = \"nbkr\"\n");
    CHECK(defaulted.find("somrated.toml:3: source[1].name: duplicate name \"nbkr\"") == 0);
    CHECK(defaulted.find("defaults to the kind") != std::string::npos);
    for (const char* bad :
         {"", "Upper", "has space", "dot.ted", "ä", "a23456789012345678901234567890123"}) {
      CAPTURE(bad);
      CHECK(error_of(std::string("[[source]]\nkind = \"24kg\"\nname = \"") + bad + "\"\n")
                .find("source[0].name: ") != std::string::npos);
    }
    CHECK(error_of("[[source]]\nkind = \"24kg\"\nname = \"a2345678901234567890123456789012\"\n")
              .empty());
  }
  SUBCASE("listen") {
    CHECK(error_of("[server]\nlisten = \"127.0.0.1\"\n") ==
          "somrated.toml:2: server.listen: \"127.0.0.1\" is not HOST:PORT (e.g. "
          "\"127.0.0.1:8080\" or \"[::1]:8080\")");
    CHECK(error_of("[server]\nlisten = \"127.0.0.1:65536\"\n") ==
          "somrated.toml:2: server.listen: port 65536 is out of range (0 to 65535)");
    CHECK(error_of("[server]\nlisten = 8080\n") ==
          "somrated.toml:2: server.listen: expected a string like \"127.0.0.1:8080\", not an "
          "integer");
  }
  SUBCASE("ca_file must be readable at load time") {
    const std::string missing = "/nonexistent/somrated/ca.pem";
    CHECK(error_of("[[source]]\nkind = \"24kg\"\nca_file = \"" + missing + "\"\n") ==
          "somrated.toml:3: source[0].ca_file: cannot read \"" + missing +
              "\": No such file or directory");
    const auto dir = std::filesystem::temp_directory_path().string();
    CHECK(error_of("[[source]]\nkind = \"24kg\"\nca_file = \"" + dir + "\"\n")
              .find("Is a directory") != std::string::npos);
    CHECK(error_of("[[source]]\nkind = \"24kg\"\nca_file = \"\"\n").empty());
  }
  SUBCASE("unknown keys suggest the closest known key") {
    CHECK(error_of("[[source]]\nkind = \"24kg\"\nintervall = \"10m\"\n") ==
          "somrated.toml:3: unknown key \"intervall\" in [[source]]; did you mean \"interval\"?");
    CHECK(error_of("[server]\nlistn = \"127.0.0.1:1\"\n") ==
          "somrated.toml:2: unknown key \"listn\" in [server]; did you mean \"listen\"?");
    CHECK(error_of("[log]\nlevle = \"info\"\n") ==
          "somrated.toml:2: unknown key \"levle\" in [log]; did you mean \"level\"?");
    CHECK(error_of("[storage]\nfile = \"x.db\"\n") ==
          "somrated.toml:2: unknown key \"file\" in [storage] (known: \"path\", "
          "\"keep_scrape_log\", \"max_size\")");
  }
  SUBCASE("unknown tables suggest the closest known table") {
    CHECK(error_of("\n[servr]\nlisten = \"127.0.0.1:1\"\n") ==
          "somrated.toml:2: unknown table [servr]; did you mean [server]?");
    CHECK(error_of("[[sources]]\nkind = \"24kg\"\n") ==
          "somrated.toml:1: unknown table [[sources]]; did you mean [[source]]?");
    CHECK(error_of("listen = \"127.0.0.1:1\"\n") ==
          "somrated.toml:1: unknown key \"listen\" outside any table (known: [server], [storage], "
          "[log], [[source]], [alerting], [[notifier]], [[alert]])");
    CHECK(error_of("[[alerts]]\nname = \"a\"\n") ==
          "somrated.toml:1: unknown table [[alerts]]; did you mean [[alert]]?");
    CHECK(error_of("[alertng]\n") ==
          "somrated.toml:1: unknown table [alertng]; did you mean [alerting]?");
  }
  SUBCASE("source must be a non-empty array of tables") {
    CHECK(error_of("source = []\n") ==
          "somrated.toml:1: source: at least one [[source]] is required");
    CHECK(error_of("[source]\nkind = \"24kg\"\n") ==
          "somrated.toml:1: source: write [[source]] (double brackets), one per source");
    CHECK(error_of("source = [1, 2]\n").find("source: expected [[source]] tables") !=
          std::string::npos);
  }
  SUBCASE("sections of the wrong type") {
    CHECK(error_of("server = 1\n") ==
          "somrated.toml:1: server: expected a table [server], not an integer");
    CHECK(error_of("log = \"debug\"\n") ==
          "somrated.toml:1: log: expected a table [log], not a string");
  }
  SUBCASE("numbers out of range") {
    CHECK(error_of("[server]\nmax_connections = 0\n") ==
          "somrated.toml:2: server.max_connections: 0 is out of range (1 to 1000000)");
    CHECK(error_of("[server]\nmax_connections = \"10\"\n").find("expected an integer") !=
          std::string::npos);
    for (const char* bad : {"-0.1", "10.5", "nan", "inf"}) {
      CAPTURE(bad);
      CHECK(error_of(std::string("[[source]]\nkind = \"24kg\"\nmax_jump = ") + bad + "\n")
                .find("somrated.toml:3: source[0].max_jump: ") == 0);
    }
    CHECK(error_of("[[source]]\nkind = \"24kg\"\nmax_jump = \"0.25\"\n")
              .find("expected a number like 0.25, not a string") != std::string::npos);
    CHECK(error_of("[[source]]\nkind = \"24kg\"\nmax_jump = 10\n").empty());
  }
  SUBCASE("max_body") {
    for (const char* bad :
         {"0", "-1", "\"8MB\"", "\"8 MiB\"", "\"\"", "\"1025MiB\"", "1073741825", "\"1GiB\""}) {
      CAPTURE(bad);
      CHECK(error_of(std::string("[[source]]\nkind = \"24kg\"\nmax_body = ") + bad + "\n")
                .find("somrated.toml:3: source[0].max_body: ") == 0);
    }
    CHECK(error_of("[[source]]\nkind = \"24kg\"\nmax_body = true\n")
              .find("expected a size like \"8MiB\" or a number of bytes, not a boolean") !=
          std::string::npos);
    CHECK(error_of("[[source]]\nkind = \"24kg\"\nmax_body = \"1024MiB\"\n").empty());
  }
  SUBCASE("log level and storage path") {
    CHECK(error_of("[log]\nlevel = \"loud\"\n") ==
          "somrated.toml:2: log.level: \"loud\" is not a level (use error, warning, notice, info, "
          "debug)");
    CHECK(error_of("[storage]\npath = \"\"\n") ==
          "somrated.toml:2: storage.path: must not be empty");
  }
  SUBCASE("TOML syntax errors carry line and column") {
    const auto e = error_of("[server]\nlisten = \n");
    CAPTURE(e);
    CHECK(e.find("somrated.toml:2:10: ") == 0);
    CHECK(e.find("expected value") != std::string::npos);
    CHECK(error_of("[server]\n[server]\n").find("somrated.toml:2:") == 0);
  }
}

TEST_CASE("load_config") {
  SUBCASE("reads a file and names it in errors") {
    const temp_file ok{"[server]\nlisten = \"127.0.0.1:0\"\n"};
    CHECK(somrated::load_config(ok.path()).server.listen == "127.0.0.1:0");
    const temp_file bad{"[server]\nlisten = \"nowhere\"\n"};
    try {
      somrated::load_config(bad.path());
      FAIL("expected config_error");
    } catch (const config_error& e) {
      CHECK(std::string(e.what()).find(bad.path().string() + ":2: server.listen: ") == 0);
    }
  }
  SUBCASE("a missing file") {
    CHECK_THROWS_WITH_AS(somrated::load_config("/nonexistent/somrated.toml"),
                         "cannot read config file /nonexistent/somrated.toml: No such file or "
                         "directory",
                         config_error);
  }
  SUBCASE("a directory") {
    const auto dir = std::filesystem::temp_directory_path();
    CHECK_THROWS_WITH_AS(somrated::load_config(dir),
                         ("cannot read config file " + dir.string() + ": Is a directory").c_str(),
                         config_error);
  }
}

TEST_CASE("to_toml round trips") {
  SUBCASE("defaults") {
    const auto c = somrated::default_config();
    const auto text = somrated::to_toml(c);
    CHECK(parse_config(text, "out.toml") == c);
    for (const char* key :
         {"listen = \"127.0.0.1:8080\"", "max_connections = 1024", "path = \"./somrated.db\"",
          "level = \"info\"", "[[source]]", "interval = \"10m\"", "interval = \"1h\"",
          "ca_file = \"\"", "max_jump = 0.25", "timeout = \"20s\"", "max_body = \"8MiB\""}) {
      CAPTURE(key);
      CHECK(text.find(key) != std::string::npos);
    }
  }
  SUBCASE("unusual values") {
    const temp_file ca{"pem", "-\"quoted\" \\ name.pem"};
    config c = somrated::default_config();
    c.server.listen = "[::]:0";
    c.server.max_connections = 1;
    c.storage.path = "/tmp/a \"quoted\"\\path\twith\x01control ünïcode.db";
    c.log_level = "notice";
    c.sources[0].name = "kg_1";
    c.sources[0].url = "https://24.kg/english/?q=%22x%22&y=1#top";
    c.sources[0].interval = 90min;
    c.sources[0].ca_file = ca.path().string();
    c.sources[0].max_jump = 1.0;
    c.sources[0].timeout = 1500ms;
    c.sources[0].max_body = 1500;
    c.sources[1].max_jump = 1e-7;
    c.sources[1].max_body = 3 * 1024;
    c.sources[1].url = "file:///srv/daily.xml";
    const auto text = somrated::to_toml(c);
    CAPTURE(text);
    CHECK(parse_config(text, "out.toml") == c);
    CHECK(text.find("max_jump = 1.0\n") != std::string::npos);
    CHECK(text.find("max_body = \"1500B\"") != std::string::npos);
    CHECK(text.find("max_body = \"3KiB\"") != std::string::npos);
    CHECK(text.find("interval = \"90m\"") != std::string::npos);
  }
}

TEST_CASE("config helpers") {
  SUBCASE("parse_size and format_size") {
    CHECK(somrated::parse_size("1") == 1u);
    CHECK(somrated::parse_size("1500B") == 1500u);
    CHECK(somrated::parse_size("512KiB") == 512u * 1024);
    CHECK(somrated::parse_size("8MiB") == 8u << 20);
    CHECK(somrated::parse_size("1024MiB") == 1024u << 20);
    for (const char* bad : {"", "0", "0MiB", "MiB", "8mib", "8MB", "8K", "8 MiB", "-1", "1025MiB",
                            "99999999999", "1.5MiB", "8MiBs"}) {
      CAPTURE(bad);
      CHECK_FALSE(somrated::parse_size(bad));
    }
    CHECK(somrated::format_size(8u << 20) == "8MiB");
    CHECK(somrated::format_size(1536 * 1024) == "1536KiB");
    CHECK(somrated::format_size(1500) == "1500B");
    CHECK(somrated::format_size(1) == "1B");
  }
  SUBCASE("listen_problem") {
    for (const char* good : {"127.0.0.1:8080", "0.0.0.0:0", "localhost:80", "[::1]:65535",
                             "[::]:8080", "[2001:db8::1]:443"}) {
      CAPTURE(good);
      CHECK_FALSE(somrated::listen_problem(good));
    }
    for (const char* bad :
         {"", "127.0.0.1", ":8080", "127.0.0.1:", "127.0.0.1:http", "127.0.0.1:-1",
          "127.0.0.1:123456", "::1:8080", "[::1]8080", "[::1]", "[127.0.0.1]:80", "[::1:80",
          "256.0.0.1:80", "example.com:80", "[localhost]:80", "127.0.0.1:80 "}) {
      CAPTURE(bad);
      CHECK(somrated::listen_problem(bad));
    }
    CHECK(somrated::listen_problem("::1:8080")->find("brackets") != std::string::npos);
    CHECK(somrated::listen_problem(":8080")->find("no host") != std::string::npos);
  }
  SUBCASE("parse_listen turns what listen_problem accepts into an endpoint") {
    const auto v4 = somrated::parse_listen("127.0.0.1:8080");
    CHECK(v4.address().to_string() == "127.0.0.1");
    CHECK(v4.port() == 8080);
    CHECK(somrated::parse_listen("localhost:0").address().to_string() == "127.0.0.1");
    const auto v6 = somrated::parse_listen("[::1]:65535");
    CHECK(v6.address().is_v6());
    CHECK(v6.address().to_string() == "::1");
    CHECK(v6.port() == 65535);
    CHECK_THROWS_WITH_AS(somrated::parse_listen("::1:8080"), doctest::Contains("brackets"),
                         std::invalid_argument);
    CHECK_THROWS_AS(somrated::parse_listen("127.0.0.1:123456"), std::invalid_argument);
  }
  SUBCASE("edit_distance") {
    CHECK(somrated::edit_distance("", "") == 0);
    CHECK(somrated::edit_distance("abc", "") == 3);
    CHECK(somrated::edit_distance("", "abc") == 3);
    CHECK(somrated::edit_distance("interval", "interval") == 0);
    CHECK(somrated::edit_distance("intervall", "interval") == 1);
    CHECK(somrated::edit_distance("servr", "server") == 1);
    CHECK(somrated::edit_distance("kitten", "sitting") == 3);
    CHECK(somrated::edit_distance("24gk", "24kg") == 2);
  }
  SUBCASE("closest_match") {
    constexpr std::string_view keys[] = {"name", "kind", "url", "interval", "timeout"};
    CHECK(somrated::closest_match("intervl", keys) == "interval");
    CHECK(somrated::closest_match("Kind", keys) == "kind");
    CHECK(somrated::closest_match("urls", keys) == "url");
    CHECK_FALSE(somrated::closest_match("period", keys));
    CHECK_FALSE(somrated::closest_match("x", keys));
    CHECK_FALSE(somrated::closest_match("", keys));
  }
}

namespace {

/// True when haystack contains needle; for messages checked by their important part.
bool has(const std::string& haystack, std::string_view needle) {
  return haystack.find(needle) != std::string::npos;
}

/// A config text with one webhook notifier "hook", followed by extra.
std::string with_hook(std::string_view extra) {
  return "[[notifier]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/h\"\n\n" +
         std::string(extra);
}

/// The error for one [[alert]] made of lines (after a webhook notifier "hook"); the
/// table starts at line 6.
std::string alert_error(std::string_view lines) {
  return error_of(with_hook("[[alert]]\n" + std::string(lines)));
}

}  // namespace

TEST_CASE("[server] token, token_file and external_url") {
  SUBCASE("an inline token") {
    const auto c = parse_config("[server]\ntoken = \"0123456789abcdef\"\n", "x.toml");
    CHECK(c.server.token == "0123456789abcdef");
    CHECK(c.server.token_file.empty());
    CHECK(parse_config("[server]\ntoken = \"\"\n", "x.toml").server.token.empty());
    CHECK(somrated::default_config().server.token.empty());
  }
  SUBCASE("a short token is refused without repeating it") {
    const auto e = error_of("[server]\ntoken = \"s3cret\"\n");
    CHECK(has(e, "somrated.toml:2: server.token: the token is 6 characters long; use at least 16"));
    CHECK_FALSE(has(e, "s3cret"));
    CHECK(has(error_of("[server]\ntoken = \"0123456789 abcdef\"\n"),
              "server.token: the token must be visible ASCII characters without spaces"));
  }
  SUBCASE("token_file: the first line, trailing whitespace trimmed") {
    const temp_file file{"0123456789abcdef-x \t\r\nsecond line\n"};
    const auto c =
        parse_config("[server]\ntoken_file = \"" + file.path().string() + "\"\n", "x.toml");
    CHECK(c.server.token == "0123456789abcdef-x");
    CHECK(c.server.token_file == file.path().string());
    const temp_file no_newline{"0123456789abcdef0123"};
    CHECK(parse_config("[server]\ntoken_file = \"" + no_newline.path().string() + "\"\n", "x.toml")
              .server.token == "0123456789abcdef0123");
  }
  SUBCASE("token_file problems") {
    const temp_file empty{""};
    CHECK(error_of("[server]\ntoken_file = \"" + empty.path().string() + "\"\n") ==
          "somrated.toml:2: server.token_file: the first line of \"" + empty.path().string() +
              "\" is empty");
    const temp_file blank{"   \nsecond\n"};
    CHECK(has(error_of("[server]\ntoken_file = \"" + blank.path().string() + "\"\n"), "is empty"));
    const temp_file short_token{"abc\n"};
    const auto e = error_of("[server]\ntoken_file = \"" + short_token.path().string() + "\"\n");
    CHECK(has(e, "server.token_file: the token in \"" + short_token.path().string() +
                     "\" is 3 characters long; use at least 16"));
    CHECK(error_of("[server]\ntoken_file = \"/nonexistent/token\"\n") ==
          "somrated.toml:2: server.token_file: cannot read \"/nonexistent/token\": No such file or "
          "directory");
    CHECK(has(error_of("[server]\ntoken_file = \"\"\n"), "server.token_file: must name a file"));
    const temp_file huge{std::string(5000, 'a')};
    CHECK(has(error_of("[server]\ntoken_file = \"" + huge.path().string() + "\"\n"),
              "is longer than 4096 bytes"));
  }
  SUBCASE("token and token_file together") {
    const temp_file file{"0123456789abcdef\n"};
    CHECK(error_of("[server]\ntoken = \"0123456789abcdef\"\ntoken_file = \"" +
                   file.path().string() + "\"\n") ==
          "somrated.toml:3: server.token_file: give token or token_file, not both");
    CHECK(error_of("[server]\ntoken_file = \"" + file.path().string() +
                   "\"\ntoken = \"0123456789abcdef\"\n") ==
          "somrated.toml:3: server.token: give token or token_file, not both");
  }
  SUBCASE("external_url") {
    CHECK(parse_config("[server]\nexternal_url = \"https://rates.example/somrated\"\n", "x.toml")
              .server.external_url == "https://rates.example/somrated");
    CHECK(parse_config("[server]\nexternal_url = \"\"\n", "x.toml").server.external_url.empty());
    CHECK(error_of("[server]\nexternal_url = \"ftp://rates.example\"\n") ==
          "somrated.toml:2: server.external_url: \"ftp://rates.example\": the scheme must be http "
          "or https");
    CHECK(has(error_of("[server]\nexternal_url = \"rates.example\"\n"),
              "server.external_url: \"rates.example\" is not a URL"));
    CHECK(has(error_of("[server]\nexternal_url = \"http://rates.example/?a=1\"\n"),
              "server.external_url: \"http://rates.example/?a=1\": links are built by appending "
              "paths, so it cannot have a query or fragment"));
    CHECK(has(error_of("[server]\nexternal_url = \"http:///x\"\n"), "has no host"));
  }
  SUBCASE("unknown server keys suggest the closest") {
    CHECK(error_of("[server]\ntoken_fle = \"x\"\n") ==
          "somrated.toml:2: unknown key \"token_fle\" in [server]; did you mean \"token_file\"?");
  }
}

TEST_CASE("[alerting]") {
  CHECK(somrated::default_config().alerting.evaluate_every == 15s);
  CHECK(parse_config("[alerting]\nevaluate_every = \"1s\"\n", "x.toml").alerting.evaluate_every ==
        1s);
  CHECK(error_of("[alerting]\nevaluate_every = \"999ms\"\n") ==
        "somrated.toml:2: alerting.evaluate_every: 999ms is too short (minimum 1s)");
  CHECK(error_of("[alerting]\nevaluate_every = \"soon\"\n") ==
        "somrated.toml:2: alerting.evaluate_every: \"soon\" is not a duration (use 30s, 10m, 1h, "
        "1d)");
  CHECK(error_of("[alerting]\nevaluate = \"1s\"\n") ==
        "somrated.toml:2: unknown key \"evaluate\" in [alerting] (known: \"evaluate_every\")");
  CHECK(error_of("alerting = 1\n") ==
        "somrated.toml:1: alerting: expected a table [alerting], not an integer");
}

TEST_CASE("[storage] keep_scrape_log") {
  CHECK(somrated::default_config().storage.keep_scrape_log == std::chrono::days(90));
  const auto keep = [](std::string_view value) {
    return parse_config(fmt::format("[storage]\nkeep_scrape_log = {}\n", value), "x.toml")
        .storage.keep_scrape_log;
  };
  CHECK(keep("\"30d\"") == std::chrono::days(30));
  CHECK(keep("\"12h30m\"") == 12h + 30min);
  CHECK(keep("\"1s\"") == 1s);
  CHECK(keep("\"0\"") == 0ms);
  CHECK(keep("0") == 0ms);
  CHECK(error_of("[storage]\nkeep_scrape_log = \"0s\"\n") ==
        "somrated.toml:2: storage.keep_scrape_log: \"0s\" is not a duration (use 90d, 12w, 720h; "
        "\"0\" keeps the log forever)");
  CHECK(error_of("[storage]\nkeep_scrape_log = \"forever\"\n")
            .find("somrated.toml:2: storage.keep_scrape_log: \"forever\" is not a duration") == 0);
  CHECK(error_of("[storage]\nkeep_scrape_log = \"500ms\"\n") ==
        "somrated.toml:2: storage.keep_scrape_log: 500ms is too short (minimum 1s; \"0\" keeps "
        "the log forever)");
  CHECK(error_of("[storage]\nkeep_scrape_log = 90\n") ==
        "somrated.toml:2: storage.keep_scrape_log: expected a duration like \"90d\" (or \"0\" to "
        "keep forever), not an integer");
  CHECK(error_of("[storage]\nkeep_scrape_logs = \"1d\"\n") ==
        "somrated.toml:2: unknown key \"keep_scrape_logs\" in [storage]; did you mean "
        "\"keep_scrape_log\"?");
  SUBCASE("to_toml writes it so that it reads back") {
    for (const auto d :
         {std::chrono::milliseconds(0), std::chrono::milliseconds(std::chrono::days(90)),
          std::chrono::milliseconds(90min)}) {
      config c = somrated::default_config();
      c.storage.keep_scrape_log = d;
      const auto text = somrated::to_toml(c);
      CHECK(parse_config(text, "out.toml") == c);
      CHECK(text.find(d.count() == 0 ? "keep_scrape_log = \"0\"\n" : "keep_scrape_log = \"") !=
            std::string::npos);
    }
  }
}

TEST_CASE("[storage] max_size") {
  CHECK(somrated::default_config().storage.max_size == 0);
  const auto size = [](std::string_view value) {
    return parse_config(fmt::format("[storage]\nmax_size = {}\n", value), "x.toml")
        .storage.max_size;
  };
  CHECK(size("\"64MiB\"") == std::uint64_t{64} << 20);
  CHECK(size("\"512KiB\"") == std::uint64_t{512} << 10);
  CHECK(size("\"2GiB\"") == std::uint64_t{2} << 30);
  CHECK(size("\"16TiB\"") == std::uint64_t{16} << 40);
  CHECK(size("\"1500B\"") == 1500);
  CHECK(size("\"1500\"") == 1500);
  CHECK(size("1048576") == 1048576);
  CHECK(size("\"0\"") == 0);
  CHECK(size("0") == 0);

  SUBCASE("mistakes name the key and say what a size looks like") {
    const std::string expected =
        "is not a size from 1B to 16TiB (use 512KiB, 64MiB, 2GiB or a number of bytes; \"0\" "
        "means no limit)";
    CHECK(error_of("[storage]\nmax_size = \"64XB\"\n") ==
          "somrated.toml:2: storage.max_size: \"64XB\" " + expected);
    CHECK(error_of("[storage]\nmax_size = -1\n") ==
          "somrated.toml:2: storage.max_size: -1 " + expected);
    CHECK(error_of("[storage]\nmax_size = \"-64MiB\"\n") ==
          "somrated.toml:2: storage.max_size: \"-64MiB\" " + expected);
    CHECK(error_of("[storage]\nmax_size = \"17TiB\"\n") ==
          "somrated.toml:2: storage.max_size: \"17TiB\" " + expected);
    CHECK(error_of("[storage]\nmax_size = 17592186044417\n") ==
          "somrated.toml:2: storage.max_size: 17592186044417 " + expected);
    for (const char* bad : {"\"\"", "\"0B\"", "\"0MiB\"", "\"MiB\"", "\"1.5GiB\"", "\"64 MiB\"",
                            "\"64mib\"", "\"unlimited\""}) {
      CAPTURE(bad);
      CHECK(error_of(fmt::format("[storage]\nmax_size = {}\n", bad)) ==
            fmt::format("somrated.toml:2: storage.max_size: {} {}", bad, expected));
    }
    CHECK(error_of("[storage]\nmax_size = 1.5\n") ==
          "somrated.toml:2: storage.max_size: expected a size like \"64MiB\" (or \"0\" for no "
          "limit), not a float");
    CHECK(error_of("[storage]\nmax_size = true\n") ==
          "somrated.toml:2: storage.max_size: expected a size like \"64MiB\" (or \"0\" for no "
          "limit), not a boolean");
    CHECK(error_of("[storage]\nmax_sise = \"1GiB\"\n") ==
          "somrated.toml:2: unknown key \"max_sise\" in [storage]; did you mean \"max_size\"?");
  }
  SUBCASE("a decimal unit is refused with the binary one it probably meant") {
    CHECK(error_of("[storage]\nmax_size = \"64MB\"\n") ==
          "somrated.toml:2: storage.max_size: \"64MB\" is not a size: the units are B, KiB, MiB, "
          "GiB and TiB (1KiB = 1024 bytes); did you mean \"64MiB\"?");
    CHECK(error_of("[storage]\nmax_size = \"2gb\"\n").ends_with("did you mean \"2GiB\"?"));
    CHECK(error_of("[storage]\nmax_size = \"512K\"\n").ends_with("did you mean \"512KiB\"?"));
    CHECK(error_of("[storage]\nmax_size = \"1TB\"\n").ends_with("did you mean \"1TiB\"?"));
  }
  SUBCASE("parse_max_size and format_max_size") {
    CHECK(somrated::parse_max_size("0") == 0u);
    CHECK(somrated::parse_max_size("1") == 1u);
    CHECK(somrated::parse_max_size("4KiB") == 4096u);
    CHECK(somrated::parse_max_size("17592186044416") == std::uint64_t{16} << 40);
    for (const char* bad : {"", "0KiB", "17592186044417", "17TiB", "16385GiB",
                            "99999999999999999999", "1 KiB", "1KB", "KiB", "-1"}) {
      CAPTURE(bad);
      CHECK_FALSE(somrated::parse_max_size(bad));
    }
    CHECK(somrated::format_max_size(0) == "0");
    CHECK(somrated::format_max_size(1500) == "1500B");
    CHECK(somrated::format_max_size(4096) == "4KiB");
    CHECK(somrated::format_max_size(std::uint64_t{64} << 20) == "64MiB");
    CHECK(somrated::format_max_size(std::uint64_t{3} << 29) == "1536MiB");
    CHECK(somrated::format_max_size(std::uint64_t{2} << 30) == "2GiB");
    CHECK(somrated::format_max_size(std::uint64_t{16} << 40) == "16TiB");
  }
  SUBCASE("to_toml writes it so that it reads back") {
    for (const std::uint64_t bytes :
         {std::uint64_t{0}, std::uint64_t{1500}, std::uint64_t{64} << 20, std::uint64_t{3} << 40}) {
      config c = somrated::default_config();
      c.storage.max_size = bytes;
      const auto text = somrated::to_toml(c);
      CHECK(parse_config(text, "out.toml") == c);
      CHECK(text.find(fmt::format("max_size = \"{}\"\n", somrated::format_max_size(bytes))) !=
            std::string::npos);
    }
  }
}

TEST_CASE("to_redacted_toml leaves the secrets out and still parses") {
  const temp_file token{"0123456789abcdef0123456789abcdef\n"};
  const temp_file bot{"123:file-bot-token\n"};
  const std::string text = R"([server]
token = "inline-token-0123456789"
external_url = "https://admin:hunter2@rates.example/"

[[source]]
kind = "24kg"
url = "https://user:pass@24.kg/english/"

[[notifier]]
name = "hook"
kind = "webhook"
url = "https://hooks.example/x?token=t0k&api_key=k3y&Signature=s1g&page=2"
headers = { Authorization = "Bearer abc", "X-Api-Key" = "k", Cookie = "c=1", "X-Auth-Token" = "t", "X-Trace" = "visible" }

[[notifier]]
name = "slack"
kind = "slack"
url = "https://hooks.slack.com/services/T000/B000/XXXXsecretXXXX"

[[notifier]]
name = "tg"
kind = "telegram"
chat_id = "-100"
bot_token = "123456:inline-bot-secret"

[[notifier]]
name = "tg2"
kind = "telegram"
chat_id = "-100"
bot_token_file = ")" + bot.path().string() +
                           R"("
)";
  const config c = parse_config(text, "in.toml");
  const auto out = somrated::to_redacted_toml(c);
  CAPTURE(out);
  for (const char* secret :
       {"inline-token-0123456789", "hunter2", ":pass@", "t0k", "k3y", "s1g", "Bearer abc", "\"k\"",
        "c=1", "\"t\"", "XXXXsecretXXXX", "inline-bot-secret", "file-bot-token"}) {
    CAPTURE(secret);
    CHECK(out.find(secret) == std::string::npos);
  }
  for (const std::string& shown :
       {std::string("# token = \"REDACTED\""), std::string("https://admin:REDACTED@rates.example/"),
        std::string("https://user:REDACTED@24.kg/english/"),
        std::string("?token=REDACTED&api_key=REDACTED&Signature=REDACTED&page=2"),
        std::string("\"X-Trace\" = \"visible\""), std::string("\"Authorization\" = \"REDACTED\""),
        std::string("https://hooks.slack.com/services/T000/B000/REDACTED"),
        std::string("bot_token = \"0:REDACTED\""), "bot_token_file = \"" + bot.path().string()}) {
    CAPTURE(shown);
    CHECK(out.find(shown) != std::string::npos);
  }
  SUBCASE("it reads back with API writes off; redacting that changes only the token line") {
    const auto again = parse_config(out, "redacted.toml");
    CHECK(again.server.token.empty());
    CHECK(again.notifiers.size() == 4);
    auto expected = out;
    const auto line = expected.find("# token = ");
    REQUIRE(line != std::string::npos);
    expected.replace(line, expected.find('\n', line) - line, "token = \"\"");
    CHECK(somrated::to_redacted_toml(again) == expected);
  }
  SUBCASE("a token from a file shows the file") {
    config f = c;
    f.server.token = "0123456789abcdef0123456789abcdef";
    f.server.token_file = token.path().string();
    const auto shown = somrated::to_redacted_toml(f);
    CHECK(shown.find("token_file = \"" + token.path().string() + "\"") != std::string::npos);
    CHECK(shown.find("0123456789abcdef0123456789abcdef") == std::string::npos);
  }
  SUBCASE("without secrets it is to_toml") {
    const auto d = somrated::default_config();
    CHECK(somrated::to_redacted_toml(d) == somrated::to_toml(d));
  }
}

TEST_CASE("[[notifier]] reads every key of every kind") {
  const temp_file ca{"-----BEGIN CERTIFICATE-----\n", ".pem"};
  const temp_file bot{"123456:ABC-def_9 \n"};
  const std::string text = R"([[notifier]]
name = "hook"
kind = "webhook"
url = "http://127.0.0.1:9000/hook"
headers = { X-B = "2", Authorization = "Bearer abc" }
timeout = "5s"
give_up = "1h"
language = "ru"
template = "{rule}: {value}"
resolved_template = "{rule} ok"
ca_file = ")" + ca.path().string() +
                           R"("

[[notifier]]
name = "am"
kind = "alertmanager"
url = "http://127.0.0.1:9093"
resend = "30s"

[[notifier]]
name = "chat.ops"
kind = "slack"
url = "https://hooks.slack.example/services/T0/B0/x"

[[notifier]]
name = "tg"
kind = "telegram"
chat_id = "-100123"
bot_token = "123:AAH-x_y"

[[notifier]]
name = "tg-file"
kind = "telegram"
url = "http://127.0.0.1:8081"
chat_id = -42
bot_token_file = ")" + bot.path().string() +
                           R"("
language = "ky"

[[notifier]]
name = "phone"
kind = "ntfy"
url = "https://ntfy.example/alerts"
priority = 4
tags = ["warning", "money_with_wings"]

[[notifier]]
name = "ntfy-named"
kind = "ntfy"
url = "https://ntfy.example/t"
priority = "urgent"

[[notifier]]
name = "run"
kind = "exec"
command = ["/bin/sh", "-c", "cat > /dev/null"]
timeout = "30s"

[[notifier]]
name = "shell"
kind = "exec"
command = "logger somrated"
)";
  const auto c = parse_config(text, "n.toml");
  REQUIRE(c.notifiers.size() == 9);

  const auto& hook = c.notifiers[0];
  CHECK(hook.name == "hook");
  CHECK(hook.kind == somrated::notifier_kind::webhook);
  CHECK(hook.url == "http://127.0.0.1:9000/hook");
  // File order, not the alphabetical order toml++ keeps.
  using header = std::pair<std::string, std::string>;
  CHECK(hook.headers == std::vector<header>{{"X-B", "2"}, {"Authorization", "Bearer abc"}});
  CHECK(hook.timeout == 5s);
  CHECK(hook.give_up == 1h);
  CHECK(hook.language == "ru");
  CHECK(hook.template_firing == "{rule}: {value}");
  CHECK(hook.template_resolved == "{rule} ok");
  CHECK(hook.ca_file == ca.path().string());

  const auto& am = c.notifiers[1];
  CHECK(am.kind == somrated::notifier_kind::alertmanager);
  CHECK(am.resend == 30s);
  CHECK(am.timeout == 10s);
  CHECK(am.give_up == 24h);
  CHECK(am.language == "en");

  CHECK(c.notifiers[2].name == "chat.ops");
  CHECK(c.notifiers[2].kind == somrated::notifier_kind::slack);

  const auto& tg = c.notifiers[3];
  CHECK(tg.kind == somrated::notifier_kind::telegram);
  CHECK(tg.url == "https://api.telegram.org");
  CHECK(tg.chat_id == "-100123");
  CHECK(tg.bot_token == "123:AAH-x_y");
  CHECK(tg.bot_token_file.empty());

  const auto& tg_file = c.notifiers[4];
  CHECK(tg_file.url == "http://127.0.0.1:8081");
  CHECK(tg_file.chat_id == "-42");
  CHECK(tg_file.bot_token == "123456:ABC-def_9");
  CHECK(tg_file.bot_token_file == bot.path().string());
  CHECK(tg_file.language == "ky");

  const auto& phone = c.notifiers[5];
  CHECK(phone.kind == somrated::notifier_kind::ntfy);
  CHECK(phone.priority == "4");
  CHECK(phone.tags == std::vector<std::string>{"warning", "money_with_wings"});
  CHECK(c.notifiers[6].priority == "urgent");
  CHECK(c.notifiers[6].tags.empty());

  const auto& run = c.notifiers[7];
  CHECK(run.kind == somrated::notifier_kind::exec);
  CHECK(run.url.empty());
  CHECK(run.command == std::vector<std::string>{"/bin/sh", "-c", "cat > /dev/null"});
  CHECK(run.timeout == 30s);
  CHECK(c.notifiers[8].command == std::vector<std::string>{"/bin/sh", "-c", "logger somrated"});

  CHECK(parse_config("[[notifier]]\nname = \"a\"\nkind = \"webhook\"\nurl = \"http://h/\"\n"
                     "headers = {}\n",
                     "x.toml")
            .notifiers[0]
            .headers.empty());
  CHECK(parse_config("notifier = []\n", "x.toml").notifiers.empty());
}

TEST_CASE("[[notifier]] errors name the key and what would be valid") {
  const auto notifier = [](std::string_view kind, std::string_view extra) {
    return error_of("[[notifier]]\nname = \"n\"\nkind = \"" + std::string(kind) + "\"\n" +
                    std::string(extra));
  };
  const auto webhook = [&](std::string_view extra) {
    return notifier("webhook", "url = \"http://127.0.0.1:9/h\"\n" + std::string(extra));
  };
  SUBCASE("kind") {
    CHECK(error_of("[[notifier]]\nname = \"n\"\n") ==
          "somrated.toml:1: notifier[0]: kind is required (one of \"webhook\", \"alertmanager\", "
          "\"slack\", \"telegram\", \"ntfy\", \"exec\")");
    CHECK(notifier("webhok", "") ==
          "somrated.toml:3: notifier[0].kind: unknown kind \"webhok\"; did you mean \"webhook\"? "
          "(valid kinds: \"webhook\", \"alertmanager\", \"slack\", \"telegram\", \"ntfy\", "
          "\"exec\")");
    CHECK(has(notifier("email", ""), "notifier[0].kind: unknown kind \"email\" (valid kinds:"));
  }
  SUBCASE("name") {
    CHECK(error_of("[[notifier]]\nkind = \"slack\"\nurl = \"http://h/\"\n") ==
          "somrated.toml:1: notifier[0]: name is required (1 to 64 of A-Z, a-z, 0-9, '_', '.' and "
          "'-')");
    for (const char* bad : {"", "has space", "a/b", "ä"}) {
      CAPTURE(bad);
      CHECK(has(error_of("[[notifier]]\nkind = \"slack\"\nurl = \"http://h/\"\nname = \"" +
                         std::string(bad) + "\"\n"),
                "somrated.toml:4: notifier[0].name: "));
    }
    CHECK(has(error_of("[[notifier]]\nkind = \"slack\"\nurl = \"http://h/\"\nname = \"" +
                       std::string(65, 'a') + "\"\n"),
              "is not a valid name"));
    CHECK(error_of("[[notifier]]\nkind = \"slack\"\nurl = \"http://h/\"\nname = \"" +
                   std::string(64, 'a') + "\"\n")
              .empty());
    CHECK(error_of("[[notifier]]\nname = \"x\"\nkind = \"slack\"\nurl = \"http://h/\"\n"
                   "[[notifier]]\nname = \"x\"\nkind = \"exec\"\ncommand = \"true\"\n") ==
          "somrated.toml:6: notifier[1].name: duplicate name \"x\" (notifier[0], line 2, has it "
          "too)");
  }
  SUBCASE("keys of another kind are refused, naming their kind") {
    CHECK(webhook("chat_id = \"1\"\n") ==
          "somrated.toml:5: notifier[0].chat_id: \"chat_id\" applies only to telegram notifiers, "
          "not webhook");
    CHECK(webhook("priority = \"high\"\n") ==
          "somrated.toml:5: notifier[0].priority: \"priority\" applies only to ntfy notifiers, not "
          "webhook");
    CHECK(has(notifier("slack", "url = \"http://h/\"\nresend = \"1m\"\n"),
              "notifier[0].resend: \"resend\" applies only to alertmanager notifiers, not slack"));
    CHECK(has(webhook("command = \"true\"\n"),
              "notifier[0].command: \"command\" applies only to exec notifiers, not webhook"));
    CHECK(notifier("exec", "command = \"true\"\nurl = \"http://h/\"\n") ==
          "somrated.toml:5: notifier[0].url: \"url\" applies only to webhook, alertmanager, "
          "slack, telegram and ntfy notifiers, not exec");
    CHECK(has(notifier("exec", "command = \"true\"\nheaders = {}\n"),
              "notifier[0].headers: \"headers\" applies only to webhook"));
    CHECK(has(notifier("exec", "command = \"true\"\nca_file = \"\"\n"),
              "notifier[0].ca_file: \"ca_file\" applies only to webhook"));
    CHECK(has(notifier("ntfy", "url = \"http://h/t\"\nbot_token = \"1:a\"\n"),
              "notifier[0].bot_token: \"bot_token\" applies only to telegram notifiers, not ntfy"));
    CHECK(has(notifier("telegram", "chat_id = 1\nbot_token = \"1:a\"\ntags = []\n"),
              "notifier[0].tags: \"tags\" applies only to ntfy notifiers, not telegram"));
  }
  SUBCASE("unknown keys suggest the closest") {
    CHECK(webhook("timout = \"1s\"\n") ==
          "somrated.toml:5: unknown key \"timout\" in [[notifier]]; did you mean \"timeout\"?");
    CHECK(has(webhook("resolve_template = \"x\"\n"), "did you mean \"resolved_template\"?"));
  }
  SUBCASE("url") {
    CHECK(notifier("webhook", "") ==
          "somrated.toml:1: notifier[0]: url is required for webhook notifiers (e.g. "
          "\"http://127.0.0.1:9000/hook\")");
    CHECK(has(notifier("alertmanager", ""),
              "url is required for alertmanager notifiers (e.g. \"http://127.0.0.1:9093\")"));
    CHECK(notifier("slack", "url = \"file:///tmp/x\"\n") ==
          "somrated.toml:4: notifier[0].url: \"file:///tmp/x\": the scheme must be http or https");
    CHECK(has(notifier("slack", "url = \"hooks.slack.com\"\n"), "notifier[0].url: "));
    CHECK(has(notifier("ntfy", "url = \"https://ntfy.sh/\"\n"),
              "notifier[0].url: \"https://ntfy.sh/\" names no topic"));
    CHECK(has(notifier("slack", "url = 1\n"), "notifier[0].url: expected a string"));
  }
  SUBCASE("headers") {
    CHECK(webhook("headers = { \"Bad Name\" = \"x\" }\n") ==
          "somrated.toml:5: notifier[0].headers: \"Bad Name\" is not an HTTP header name "
          "(letters, digits and !#$%&'*+-.^_`|~)");
    CHECK(webhook("headers = { Host = \"x\" }\n") ==
          "somrated.toml:5: notifier[0].headers: \"Host\" is set by somrated itself and cannot be "
          "configured");
    CHECK(has(webhook("headers = { x-somrated-event-id = \"x\" }\n"), "set by somrated itself"));
    CHECK(webhook("headers = { X-A = \"a\\r\\nInjected: 1\" }\n") ==
          "somrated.toml:5: notifier[0].headers: header \"X-A\" has a control character (CR, "
          "LF, ...) in its value");
    CHECK(has(webhook("headers = { X-A = \"1\", x-a = \"2\" }\n"),
              "notifier[0].headers: \"x-a\" is given twice (header names ignore case; \"X-A\" "
              "has it too)"));
    CHECK(has(webhook("headers = { X-A = 1 }\n"),
              "notifier[0].headers: header \"X-A\" must be a string, not an integer"));
    CHECK(has(webhook("headers = \"Authorization: x\"\n"),
              "notifier[0].headers: expected a table like { Authorization = \"Bearer abc\" }"));
    CHECK(webhook("headers = { X-A = \"tab\\tok\" }\n").empty());
  }
  SUBCASE("durations, language, templates, ca_file") {
    CHECK(webhook("timeout = \"0s\"\n") ==
          "somrated.toml:5: notifier[0].timeout: \"0s\" is not a duration (use 30s, 10m, 1h, 1d)");
    CHECK(has(webhook("give_up = 24\n"),
              "notifier[0].give_up: expected a string like \"24h\", not an integer"));
    CHECK(webhook("language = \"eng\"\n") ==
          "somrated.toml:5: notifier[0].language: \"eng\" has no built-in templates; did you mean "
          "\"en\"? (use \"en\", \"ru\" or \"ky\")");
    CHECK(has(webhook("language = \"de\"\n"), "notifier[0].language: \"de\" has no built-in"));
    CHECK(has(webhook("template = 1\n"), "notifier[0].template: expected a string"));
    CHECK(has(webhook("resolved_template = []\n"),
              "notifier[0].resolved_template: expected a string"));
    CHECK(has(webhook("template = \"{nonsense\"\n"), "somrated.toml:5: notifier[0].template: "));
    CHECK(has(webhook("resolved_template = \"{ruel} is back\"\n"),
              "notifier[0].resolved_template: unknown placeholder {ruel}"));
    CHECK(webhook("template = \"{rule}: {currency} {value} (was {threshold})\"\n").empty());
    CHECK(webhook("ca_file = \"/nonexistent/ca.pem\"\n") ==
          "somrated.toml:5: notifier[0].ca_file: cannot read \"/nonexistent/ca.pem\": No such file "
          "or directory");
  }
  SUBCASE("telegram") {
    CHECK(notifier("telegram", "bot_token = \"1:a\"\n") ==
          "somrated.toml:1: notifier[0]: chat_id is required for telegram notifiers (e.g. "
          "\"-100123\" or \"@channel\")");
    for (const char* bad : {"\"\"", "\"abc\"", "\"@\"", "\"12a\"", "\"@a b\"", "true"}) {
      CAPTURE(bad);
      CHECK(has(notifier("telegram", "bot_token = \"1:a\"\nchat_id = " + std::string(bad) + "\n"),
                "somrated.toml:5: notifier[0].chat_id: "));
    }
    CHECK(notifier("telegram", "chat_id = \"@my_channel\"\nbot_token = \"1:a\"\n").empty());
    CHECK(notifier("telegram", "chat_id = 1\n") ==
          "somrated.toml:1: notifier[0]: telegram notifiers need bot_token = \"123456:ABC...\" "
          "or bot_token_file = \"/path\"");
    const temp_file file{"1:abc\n"};
    CHECK(notifier("telegram", "chat_id = 1\nbot_token = \"1:a\"\nbot_token_file = \"" +
                                   file.path().string() + "\"\n") ==
          "somrated.toml:6: notifier[0].bot_token_file: give bot_token or bot_token_file, not "
          "both");
    const auto bad_token = notifier("telegram", "chat_id = 1\nbot_token = \"12/34:secret\"\n");
    CHECK(bad_token ==
          "somrated.toml:5: notifier[0].bot_token: the value is not a Telegram bot token (digits, "
          "':', then letters, digits, '_' or '-', as BotFather gives it)");
    const temp_file bad_file{"not a token\n"};
    CHECK(has(notifier("telegram",
                       "chat_id = 1\nbot_token_file = \"" + bad_file.path().string() + "\"\n"),
              "notifier[0].bot_token_file: the first line of \"" + bad_file.path().string() +
                  "\" is not a Telegram bot token"));
    CHECK(has(notifier("telegram", "chat_id = 1\nbot_token_file = \"/nonexistent/t\"\n"),
              "notifier[0].bot_token_file: cannot read \"/nonexistent/t\""));
    const temp_file empty{"\n"};
    CHECK(has(
        notifier("telegram", "chat_id = 1\nbot_token_file = \"" + empty.path().string() + "\"\n"),
        "is empty"));
  }
  SUBCASE("ntfy") {
    const auto ntfy = [&](std::string_view extra) {
      return notifier("ntfy", "url = \"https://ntfy.sh/t\"\n" + std::string(extra));
    };
    CHECK(ntfy("priority = \"hihg\"\n") ==
          "somrated.toml:5: notifier[0].priority: \"hihg\" is not an ntfy priority; did you mean "
          "\"high\"? (use 1 to 5 or min, low, default, high, max, urgent)");
    CHECK(has(ntfy("priority = 6\n"), "notifier[0].priority: \"6\" is not an ntfy priority"));
    CHECK(has(ntfy("priority = 0\n"), "notifier[0].priority: "));
    CHECK(has(ntfy("priority = 1.5\n"), "notifier[0].priority: expected a string"));
    CHECK(ntfy("priority = \"5\"\n").empty());
    CHECK(ntfy("priority = \"\"\n").empty());
    CHECK(has(ntfy("tags = \"warning\"\n"), "notifier[0].tags: expected an array of strings"));
    CHECK(has(ntfy("tags = [1]\n"),
              "notifier[0].tags: expected an array of strings like "
              "[\"warning\"], but an element is an integer"));
    CHECK(ntfy("tags = [\"a,b\"]\n") ==
          "somrated.toml:5: notifier[0].tags: \"a,b\" is not a tag: tags are non-empty, without "
          "commas or control characters (e.g. \"warning\")");
    CHECK(has(ntfy("tags = [\"\"]\n"), "notifier[0].tags: \"\" is not a tag"));
  }
  SUBCASE("alertmanager resend") {
    const auto am = [&](std::string_view extra) {
      return notifier("alertmanager", "url = \"http://127.0.0.1:9093\"\n" + std::string(extra));
    };
    CHECK(am("resend = \"500ms\"\n") ==
          "somrated.toml:5: notifier[0].resend: 500ms is too short (minimum 1s)");
    CHECK(has(am("resend = \"often\"\n"), "notifier[0].resend: \"often\" is not a duration"));
  }
  SUBCASE("exec command") {
    CHECK(notifier("exec", "") ==
          "somrated.toml:1: notifier[0]: command is required for exec notifiers (e.g. "
          "[\"/usr/local/bin/notify\", \"--x\"])");
    CHECK(notifier("exec", "command = [\"notify\", \"--x\"]\n") ==
          "somrated.toml:4: notifier[0].command: the program \"notify\" must be an absolute path "
          "(no PATH lookup), like \"/usr/local/bin/notify\"");
    CHECK(notifier("exec", "command = []\n") ==
          "somrated.toml:4: notifier[0].command: must name a program, like "
          "[\"/usr/local/bin/notify\"]");
    CHECK(notifier("exec", "command = \"\"\n") ==
          "somrated.toml:4: notifier[0].command: must not be empty");
    CHECK(notifier("exec", "command = [\"/nonexistent/notify\"]\n") ==
          "somrated.toml:4: notifier[0].command: cannot run \"/nonexistent/notify\": No such file "
          "or directory");
    const temp_file not_executable{"#!/bin/sh\n", ".sh"};
    CHECK(has(notifier("exec", "command = [\"" + not_executable.path().string() + "\"]\n"),
              "notifier[0].command: cannot run \"" + not_executable.path().string() +
                  "\": Permission denied"));
    CHECK(has(notifier("exec", "command = [\"/\"]\n"), "cannot run \"/\": Is a directory"));
    CHECK(has(notifier("exec", "command = [\"/bin/sh\", \"a\\u0000b\"]\n"), "NUL character"));
    CHECK(has(notifier("exec", "command = [\"/bin/sh\", 1]\n"),
              "notifier[0].command: expected an array of strings"));
    CHECK(has(notifier("exec", "command = 1\n"),
              "notifier[0].command: expected an array of strings"));
  }
  SUBCASE("the notifier section must be [[notifier]] tables") {
    CHECK(error_of("[notifier]\nname = \"a\"\n") ==
          "somrated.toml:1: notifier: write [[notifier]] (double brackets), one per receiver");
    CHECK(has(error_of("notifier = [1]\n"), "notifier: expected [[notifier]] tables"));
  }
}

TEST_CASE("[[alert]] reads every key of every condition") {
  const std::string text = R"([[source]]
kind = "24kg"

[[source]]
kind = "nbkr"

[[notifier]]
name = "hook"
kind = "webhook"
url = "http://127.0.0.1:9000/hook"

[[notifier]]
name = "run"
kind = "exec"
command = ["/bin/sh", "-c", "true"]

[[alert]]
name = "usd-above-90"
currency = "USD"
source = "24kg"
notify = ["hook", "run"]
above = 90.0
for = "15m"
resolve_below = 89.5
repeat = "6h"
labels = { severity = "warning", team = "fx" }

[[alert]]
name = "eur_below"
currency = "EUR"
below = 85
resolve_above = "85.250"

[[alert]]
name = "kzt.move"
currency = "KZT"
source = "nbkr"
change_pct = 2.5
window = "24h"
direction = "down"
resolve_below = "2"
for = "0"
repeat = "0s"

[[alert]]
name = "spread"
currency = "RUB"
spread_pct = "1.5"
against = "nbkr"

[[alert]]
name = "stale-24kg"
stale = "2h"
notify = []
)";
  const auto c = parse_config(text, "a.toml");
  REQUIRE(c.alerts.size() == 5);
  using somrated::alert_condition;
  using somrated::decimal;

  const auto& above = c.alerts[0];
  CHECK(above.name == "usd-above-90");
  CHECK(above.currency == "USD");
  CHECK(above.source == "24kg");
  CHECK(above.notify == std::vector<std::string>{"hook", "run"});
  CHECK(above.condition == alert_condition::above);
  REQUIRE(above.threshold);
  CHECK(above.threshold->text() == "90");
  CHECK(above.hold_for == 15min);
  REQUIRE(above.resolve_below);
  CHECK(above.resolve_below->text() == "89.5");
  CHECK_FALSE(above.resolve_above);
  CHECK(above.repeat == 6h);
  CHECK(above.labels ==
        std::map<std::string, std::string>{{"severity", "warning"}, {"team", "fx"}});
  CHECK(above.from_config);

  const auto& below = c.alerts[1];
  CHECK(below.condition == alert_condition::below);
  CHECK(below.source == "24kg");  // the first source
  CHECK(below.notify.empty());
  CHECK(below.threshold->text() == "85");
  CHECK(below.resolve_above->text() == "85.250");
  CHECK(below.hold_for == 0ms);
  CHECK(below.repeat == 0ms);
  CHECK(below.labels.empty());

  const auto& change = c.alerts[2];
  CHECK(change.condition == alert_condition::change_pct);
  CHECK(change.source == "nbkr");
  CHECK(change.threshold->text() == "2.5");
  CHECK(change.window == 24h);
  CHECK(change.direction == somrated::alert_direction::down);
  CHECK(change.resolve_below == decimal::parse("2"));
  CHECK(change.hold_for == 0ms);
  CHECK(change.repeat == 0ms);

  const auto& spread = c.alerts[3];
  CHECK(spread.condition == alert_condition::spread_pct);
  CHECK(spread.threshold->text() == "1.5");
  CHECK(spread.against == "nbkr");
  CHECK(spread.direction == somrated::alert_direction::either);

  const auto& stale = c.alerts[4];
  CHECK(stale.condition == alert_condition::stale);
  CHECK(stale.currency.empty());
  CHECK(stale.stale_after == 2h);
  CHECK_FALSE(stale.threshold);

  SUBCASE("numbers become exact decimals through their shortest text") {
    const auto threshold = [](std::string_view value) {
      const auto cfg = parse_config(
          "[[alert]]\nname = \"a\"\ncurrency = \"USD\"\nabove = " + std::string(value) + "\n",
          "x.toml");
      return cfg.alerts.at(0).threshold->text();
    };
    CHECK(threshold("90.0") == "90");
    CHECK(threshold("89.75") == "89.75");
    CHECK(threshold("0.1") == "0.1");
    CHECK(threshold("87.123456789012") == "87.123456789012");
    CHECK(threshold("1e3") == "1000");
    CHECK(threshold("90") == "90");
    CHECK(threshold("\"89.7500\"") == "89.7500");
    CHECK(threshold("\"89,75\"") == "89.75");
    CHECK(threshold("0.0001") == "0.0001");
  }
}

TEST_CASE("[[alert]] errors name the key and what would be valid") {
  SUBCASE("exactly one condition") {
    CHECK(alert_error("name = \"a\"\ncurrency = \"USD\"\n") ==
          "somrated.toml:6: alert[0]: no condition: give exactly one of above, below, change_pct, "
          "spread_pct or stale");
    CHECK(alert_error("name = \"a\"\ncurrency = \"USD\"\nbelow = 85\nabove = 90\n") ==
          "somrated.toml:10: alert[0].above: below and above are both given, but a rule has "
          "exactly one condition (above, below, change_pct, spread_pct or stale); write one rule "
          "per condition");
    CHECK(has(alert_error("name = \"a\"\nstale = \"1h\"\nchange_pct = 1\n"),
              "somrated.toml:9: alert[0].change_pct: stale and change_pct are both given"));
  }
  SUBCASE("keys that belong to another condition") {
    const auto above = [](std::string_view extra) {
      return alert_error("name = \"a\"\ncurrency = \"USD\"\nabove = 90\n" + std::string(extra));
    };
    CHECK(above("window = \"1h\"\n") ==
          "somrated.toml:10: alert[0].window: window applies only to change_pct rules, not above");
    CHECK(has(above("direction = \"up\"\n"),
              "alert[0].direction: direction applies only to change_pct rules, not above"));
    CHECK(has(above("against = \"nbkr\"\n"),
              "alert[0].against: against applies only to spread_pct rules, not above"));
    CHECK(has(above("resolve_above = 91\n"),
              "alert[0].resolve_above: resolve_above applies only to below rules, not above (use "
              "resolve_below)"));
    CHECK(has(alert_error("name = \"a\"\ncurrency = \"USD\"\nbelow = 85\nresolve_below = 84\n"),
              "alert[0].resolve_below: resolve_below applies only to above, change_pct and "
              "spread_pct rules, not below (a below rule resolves above resolve_above)"));
    CHECK(alert_error("name = \"a\"\nstale = \"1h\"\ncurrency = \"USD\"\n") ==
          "somrated.toml:9: alert[0].currency: currency does not apply to stale rules: they watch "
          "a source's scrapes, not a rate");
    CHECK(has(alert_error("name = \"a\"\nstale = \"1h\"\nresolve_below = 1\n"),
              "alert[0].resolve_below: resolve_below applies only to above, change_pct and "
              "spread_pct rules, not stale"));
  }
  SUBCASE("unknown keys suggest the closest") {
    CHECK(alert_error("name = \"a\"\ncurrency = \"USD\"\nabove = 90\nrepeats = \"1h\"\n") ==
          "somrated.toml:10: unknown key \"repeats\" in [[alert]]; did you mean \"repeat\"?");
    CHECK(has(alert_error("name = \"a\"\ncurrency = \"USD\"\nabvoe = 90\n"),
              "unknown key \"abvoe\" in [[alert]]; did you mean \"above\"?"));
  }
  SUBCASE("name") {
    CHECK(alert_error("currency = \"USD\"\nabove = 90\n") ==
          "somrated.toml:6: alert[0]: name is required: 1 to 64 of A-Z, a-z, 0-9, '_', '.' and "
          "'-'");
    CHECK(alert_error("name = \"a b\"\ncurrency = \"USD\"\nabove = 90\n") ==
          "somrated.toml:7: alert[0].name: name \"a b\" is not valid: use 1 to 64 of A-Z, a-z, "
          "0-9, '_', '.' and '-'");
    CHECK(has(alert_error("name = 1\ncurrency = \"USD\"\nabove = 90\n"),
              "alert[0].name: expected a string like \"usd-above-90\", not an integer"));
    CHECK(error_of("[[alert]]\nname = \"a\"\ncurrency = \"USD\"\nabove = 90\n\n[[alert]]\n"
                   "name = \"a\"\nstale = \"1h\"\n") ==
          "somrated.toml:7: alert[1].name: duplicate name \"a\" (alert[0], line 2, has it too)");
  }
  SUBCASE("currency") {
    CHECK(alert_error("name = \"a\"\nabove = 90\n") ==
          "somrated.toml:6: alert[0]: currency is required for above rules: 3 uppercase letters "
          "like \"USD\"");
    CHECK(alert_error("name = \"a\"\ncurrency = \"usd\"\nabove = 90\n") ==
          "somrated.toml:8: alert[0].currency: currency \"usd\" is not 3 uppercase letters like "
          "\"USD\"");
    CHECK(has(alert_error("name = \"a\"\ncurrency = \"USDT\"\nabove = 90\n"),
              "alert[0].currency: currency \"USDT\" is not 3 uppercase letters"));
    CHECK(alert_error("name = \"a\"\ncurrency = \"KZT\"\nabove = 90\n") ==
          "somrated.toml:8: alert[0].currency: currency: source \"24kg\" is of kind 24kg, which "
          "publishes only USD, EUR and RUB, not \"KZT\"");
    CHECK(alert_error("name = \"a\"\ncurrency = \"KZT\"\nsource = \"nbkr\"\nabove = 90\n").empty());
  }
  SUBCASE("source and against") {
    CHECK(alert_error("name = \"a\"\ncurrency = \"USD\"\nsource = \"nbrk\"\nabove = 90\n") ==
          "somrated.toml:9: alert[0].source: source \"nbrk\" is not a configured source; did you "
          "mean \"nbkr\"?");
    CHECK(has(alert_error("name = \"a\"\ncurrency = \"USD\"\nsource = \"ecb\"\nabove = 90\n"),
              "source \"ecb\" is not a configured source (configured: \"24kg\", \"nbkr\")"));
    const auto spread = [](std::string_view extra) {
      return alert_error("name = \"a\"\ncurrency = \"USD\"\nspread_pct = 1\n" + std::string(extra));
    };
    CHECK(spread("") ==
          "somrated.toml:6: alert[0]: against is required for spread_pct rules: another "
          "configured source");
    CHECK(spread("against = \"24kg\"\n") ==
          "somrated.toml:10: alert[0].against: against must name another source than source "
          "(\"24kg\")");
    CHECK(has(spread("against = \"nbk\"\n"),
              "alert[0].against: against \"nbk\" is not a configured source; did you mean "
              "\"nbkr\"?"));
    CHECK(has(alert_error("name = \"a\"\ncurrency = \"KZT\"\nsource = \"nbkr\"\nspread_pct = 1\n"
                          "against = \"24kg\"\n"),
              "somrated.toml:11: alert[0].against: against: source \"24kg\" is of kind 24kg, "
              "which publishes only USD, EUR and RUB, not \"KZT\""));
  }
  SUBCASE("notify") {
    CHECK(alert_error("name = \"a\"\ncurrency = \"USD\"\nabove = 90\nnotify = [\"hok\"]\n") ==
          "somrated.toml:10: alert[0].notify: notify names \"hok\", which is not a configured "
          "notifier; did you mean \"hook\"?");
    CHECK(has(alert_error("name = \"a\"\ncurrency = \"USD\"\nabove = 90\nnotify = [\"pager\"]\n"),
              "notify names \"pager\", which is not a configured notifier (configured: "
              "\"hook\")"));
    CHECK(has(error_of("[[alert]]\nname = \"a\"\ncurrency = \"USD\"\nabove = 90\nnotify = "
                       "[\"x\"]\n"),
              "(no notifiers are configured)"));
    CHECK(has(alert_error("name = \"a\"\ncurrency = \"USD\"\nabove = 90\nnotify = [\"hook\", "
                          "\"hook\"]\n"),
              "alert[0].notify: notify lists \"hook\" twice"));
    CHECK(has(alert_error("name = \"a\"\ncurrency = \"USD\"\nabove = 90\nnotify = \"hook\"\n"),
              "alert[0].notify: expected an array of strings like [\"hook\"], not a string"));
  }
  SUBCASE("thresholds") {
    const auto above = [](std::string_view value) {
      return alert_error("name = \"a\"\ncurrency = \"USD\"\nabove = " + std::string(value) + "\n");
    };
    CHECK(above("0") == "somrated.toml:9: alert[0].above: above must be greater than 0, not 0");
    CHECK(has(above("0.0"), "alert[0].above: above must be greater than 0, not 0"));
    CHECK(above("-1") ==
          "somrated.toml:9: alert[0].above: above -1 is negative; it must be "
          "greater than 0");
    CHECK(has(above("-1.5"), "alert[0].above: above -1.5 is negative"));
    CHECK(above("1e-7") ==
          "somrated.toml:9: alert[0].above: above 1e-07 has an exponent; write it as a plain "
          "decimal like 0.00001");
    CHECK(has(above("1e20"), "alert[0].above: above 1e+20 has an exponent"));
    CHECK(above("nan") ==
          "somrated.toml:9: alert[0].above: above is NaN; give a number like 89.75");
    CHECK(has(above("inf"), "alert[0].above: above is infinite"));
    CHECK(has(above("-inf"), "alert[0].above: above -inf is negative"));
    CHECK(above("\"0.1234567890123\"") ==
          "somrated.toml:9: alert[0].above: above 0.1234567890123 has 13 digits after the point; "
          "at most 12 are accepted");
    CHECK(has(above("0.1234567890123"), "has 13 digits after the point"));
    CHECK(above("\"abc\"") ==
          "somrated.toml:9: alert[0].above: above \"abc\" is not a number like 89.75");
    CHECK(has(above("\"1e5\""), "above 1e5 has an exponent"));
    CHECK(has(above("\"\""), "above is empty"));
    CHECK(has(above("\"1234567890123456789\""), "has more than 18 significant digits"));
    CHECK(above("true") ==
          "somrated.toml:9: alert[0].above: expected a number like 90 or a string like \"89.75\", "
          "not a boolean");
  }
  SUBCASE("hysteresis") {
    CHECK(alert_error("name = \"a\"\ncurrency = \"USD\"\nabove = 90\nresolve_below = 90.5\n") ==
          "somrated.toml:10: alert[0].resolve_below: resolve_below 90.5 is above the threshold "
          "above = 90; it must be at most the threshold, since the rule resolves when the value "
          "drops below it");
    CHECK(
        alert_error("name = \"a\"\ncurrency = \"USD\"\nabove = 90\nresolve_below = 90\n").empty());
    CHECK(has(alert_error("name = \"a\"\ncurrency = \"USD\"\nabove = 90\nresolve_below = 0\n"),
              "alert[0].resolve_below: resolve_below must be greater than 0, not 0"));
    CHECK(has(alert_error("name = \"a\"\ncurrency = \"USD\"\nchange_pct = 2\nwindow = \"1d\"\n"
                          "resolve_below = 3\n"),
              "alert[0].resolve_below: resolve_below 3 is above the threshold change_pct = 2"));
    CHECK(alert_error("name = \"a\"\ncurrency = \"USD\"\nbelow = 85\nresolve_above = 84.9\n") ==
          "somrated.toml:10: alert[0].resolve_above: resolve_above 84.9 is below the threshold "
          "below = 85; it must be at least the threshold, since the rule resolves when the rate "
          "rises above it");
    CHECK(has(alert_error("name = \"a\"\ncurrency = \"USD\"\nbelow = 85\nresolve_above = -1\n"),
              "alert[0].resolve_above: resolve_above -1 is negative"));
  }
  SUBCASE("durations") {
    const auto change = [](std::string_view extra) {
      return alert_error("name = \"a\"\ncurrency = \"USD\"\nchange_pct = 2\n" + std::string(extra));
    };
    CHECK(change("") ==
          "somrated.toml:6: alert[0]: window is required for change_pct rules: a positive "
          "duration like \"24h\"");
    CHECK(change("window = \"0\"\n") ==
          "somrated.toml:10: alert[0].window: window \"0\" is not a positive duration (use 30s, "
          "10m, 1h, 1d)");
    CHECK(has(change("window = 24\n"),
              "alert[0].window: expected a string like \"24h\", not an integer"));
    CHECK(change("window = \"1d\"\ndirection = \"upp\"\n") ==
          "somrated.toml:11: alert[0].direction: direction \"upp\" is not one of \"either\", "
          "\"up\", \"down\"; did you mean \"up\"?");
    CHECK(has(alert_error("name = \"a\"\nstale = \"0s\"\n"),
              "alert[0].stale: stale \"0s\" is not a positive duration"));
    CHECK(has(alert_error("name = \"a\"\nstale = 7200\n"),
              "alert[0].stale: expected a string like \"2h\", not an integer"));
    CHECK(alert_error("name = \"a\"\nstale = \"1h\"\nfor = \"soon\"\n") ==
          "somrated.toml:9: alert[0].for: for \"soon\" is not a duration (use 0, 30s, 10m, 1h, "
          "1d)");
    CHECK(has(alert_error("name = \"a\"\nstale = \"1h\"\nrepeat = \"-1h\"\n"),
              "alert[0].repeat: repeat \"-1h\" is not a duration"));
    CHECK(has(alert_error("name = \"a\"\nstale = \"1h\"\nrepeat = 0\n"),
              "alert[0].repeat: expected a string like \"6h\", not an integer"));
    CHECK(alert_error("name = \"a\"\nstale = \"1h\"\nrepeat = \"0\"\nfor = \"0m\"\n").empty());
  }
  SUBCASE("labels") {
    const auto labels = [](std::string_view value) {
      return alert_error("name = \"a\"\nstale = \"1h\"\nlabels = " + std::string(value) + "\n");
    };
    CHECK(labels("{ \"sev-erity\" = \"x\" }") ==
          "somrated.toml:9: alert[0].labels: label name \"sev-erity\" is not valid: use a letter "
          "or '_', then letters, digits or '_'");
    CHECK(has(labels("{ \"1x\" = \"x\" }"), "label name \"1x\" is not valid"));
    CHECK(labels("{ alertname = \"x\" }") ==
          "somrated.toml:9: alert[0].labels: label name \"alertname\" is reserved: somrated sets "
          "alertname, currency, source, condition and test itself");
    for (const char* reserved : {"currency", "source", "condition", "test"}) {
      CAPTURE(reserved);
      CHECK(has(labels("{ " + std::string(reserved) + " = \"x\" }"), "is reserved"));
    }
    CHECK(has(labels("{ __meta = \"x\" }"), "names starting with \"__\" are for internal use"));
    CHECK(has(labels("{ severity = \"\" }"), "label \"severity\" has an empty value"));
    CHECK(has(labels("{ severity = 1 }"),
              "alert[0].labels: label \"severity\" must be a string, not an integer"));
    CHECK(has(labels("[\"severity\"]"), "alert[0].labels: expected a table like"));
    CHECK(labels("{ _x = \"1\", Team_2 = \"b\" }").empty());
  }
  SUBCASE("the alert section must be [[alert]] tables") {
    CHECK(error_of("[alert]\nname = \"a\"\n") ==
          "somrated.toml:1: alert: write [[alert]] (double brackets), one per rule");
    CHECK(parse_config("alert = []\n", "x.toml").alerts.empty());
  }
}

TEST_CASE("to_toml round trips notifiers and alerts") {
  const temp_file token{"0123456789abcdef0123456789abcdef\n"};
  const temp_file bot{"123:bot-token_x\n"};
  const temp_file ca{"pem", ".pem"};
  const std::string text = R"([server]
listen = "127.0.0.1:0"
token_file = ")" + token.path().string() +
                           R"("
external_url = "https://rates.example/somrated"

[alerting]
evaluate_every = "5s"

[[source]]
kind = "24kg"

[[source]]
name = "nb"
kind = "nbkr"

[[notifier]]
name = "hook"
kind = "webhook"
url = "http://127.0.0.1:9000/hook?x=%221%22&y=1#top"
headers = { Z-Last = "z", Authorization = "Bearer \"abc\"", "X-Tab" = "a\tb" }
ca_file = ")" + ca.path().string() +
                           R"("
template = "line one\n{rule} \\ {value}"
resolved_template = "ok: {rule}"

[[notifier]]
name = "am"
kind = "alertmanager"
url = "http://127.0.0.1:9093"
resend = "90s"
give_up = "2h"

[[notifier]]
name = "slack"
kind = "slack"
url = "https://hooks.slack.example/x"
language = "ru"

[[notifier]]
name = "tg"
kind = "telegram"
chat_id = "@ops"
bot_token = "1:a"

[[notifier]]
name = "tg2"
kind = "telegram"
chat_id = "-100"
bot_token_file = ")" + bot.path().string() +
                           R"("

[[notifier]]
name = "ntfy"
kind = "ntfy"
url = "https://ntfy.example/topic"
priority = "max"
tags = ["a", "b c"]

[[notifier]]
name = "exec"
kind = "exec"
command = "echo 'hi' > /dev/null"
timeout = "3s"

[[alert]]
name = "above"
currency = "USD"
notify = ["hook", "am"]
above = "90.10"
for = "15m"
resolve_below = 89.5
repeat = "1w"
labels = { severity = "warning", "team" = "f\"x" }

[[alert]]
name = "below"
currency = "EUR"
source = "nb"
below = 85
resolve_above = 86

[[alert]]
name = "change"
currency = "RUB"
change_pct = 2.25
window = "90m"
direction = "up"

[[alert]]
name = "spread"
currency = "USD"
spread_pct = 1
against = "nb"
resolve_below = "0.5"

[[alert]]
name = "stale"
source = "nb"
stale = "2h"
notify = ["exec", "tg", "tg2", "ntfy", "slack"]
)";
  const auto c = parse_config(text, "full.toml");
  REQUIRE(c.notifiers.size() == 7);
  REQUIRE(c.alerts.size() == 5);
  CHECK(c.server.token == "0123456789abcdef0123456789abcdef");
  const auto out = somrated::to_toml(c);
  CAPTURE(out);
  CHECK(parse_config(out, "out.toml") == c);

  SUBCASE("the token file is named, not copied") {
    CHECK(has(out, "token_file = \"" + token.path().string() + "\"\n"));
    CHECK_FALSE(has(out, "0123456789abcdef0123456789abcdef"));
    CHECK(has(out, "bot_token_file = \"" + bot.path().string() + "\"\n"));
    CHECK_FALSE(has(out, "bot-token_x"));
  }
  SUBCASE("one key per line, in schema order") {
    for (const char* line :
         {"external_url = \"https://rates.example/somrated\"\n",
          "[alerting]\nevaluate_every = "
          "\"5s\"\n",
          "headers = { \"Z-Last\" = \"z\", \"Authorization\" = \"Bearer \\\"abc\\\"\", \"X-Tab\" = "
          "\"a\\tb\" }\n",
          "template = \"line one\\n{rule} \\\\ {value}\"\n",
          "command = [\"/bin/sh\", \"-c\", "
          "\"echo 'hi' > /dev/null\"]\n",
          "tags = [\"a\", \"b c\"]\n", "resend = \"90s\"\n",
          "name = \"above\"\ncurrency = \"USD\"\nsource = \"24kg\"\nnotify = [\"hook\", "
          "\"am\"]\nabove = \"90.10\"\nfor = \"15m\"\nresolve_below = \"89.5\"\nrepeat = "
          "\"1w\"\nlabels = { \"severity\" = \"warning\", \"team\" = \"f\\\"x\" }\n",
          "name = \"change\"\ncurrency = \"RUB\"\nsource = \"24kg\"\nnotify = []\nchange_pct = "
          "\"2.25\"\nwindow = \"90m\"\ndirection = \"up\"\nfor = \"0s\"\nrepeat = \"0s\"\n",
          "name = \"stale\"\nsource = \"nb\"\nnotify = [\"exec\", \"tg\", \"tg2\", \"ntfy\", "
          "\"slack\"]\nstale = \"2h\"\nfor = \"0s\"\nrepeat = \"0s\"\nlabels = {}\n"}) {
      CAPTURE(line);
      CHECK(has(out, line));
    }
  }
  SUBCASE("an inline token and the defaults") {
    config d = somrated::default_config();
    d.server.token = "0123456789abcdef";
    const auto inline_out = somrated::to_toml(d);
    CHECK(has(inline_out, "token = \"0123456789abcdef\"\n"));
    CHECK(parse_config(inline_out, "out.toml") == d);
    const auto defaults = somrated::to_toml(somrated::default_config());
    CHECK(has(defaults, "token = \"\"\nexternal_url = \"\"\n"));
    CHECK(has(defaults, "[alerting]\nevaluate_every = \"15s\"\n"));
  }
}

TEST_CASE("parse_config reads the [server] deadlines") {
  SUBCASE("defaults") {
    const auto c = somrated::default_config();
    CHECK(c.server.read_timeout == 15s);
    CHECK(c.server.idle_timeout == 60s);
    CHECK(c.server.write_timeout == 15s);
  }
  SUBCASE("given values, round-tripped by to_toml") {
    const auto c = parse_config(
        "[server]\nread_timeout = \"2s\"\nidle_timeout = \"5m\"\nwrite_timeout = \"1500ms\"\n",
        "x.toml");
    CHECK(c.server.read_timeout == 2s);
    CHECK(c.server.idle_timeout == 5min);
    CHECK(c.server.write_timeout == 1500ms);
    const auto text = somrated::to_toml(c);
    CHECK(text.find("read_timeout = \"2s\"\nidle_timeout = \"5m\"\nwrite_timeout = \"1500ms\"\n") !=
          std::string::npos);
    CHECK(parse_config(text, "out.toml") == c);
  }
  SUBCASE("mistakes") {
    CHECK(error_of("[server]\nread_timeout = \"500ms\"\n") ==
          "somrated.toml:2: server.read_timeout: 500ms is too short (minimum 1s)");
    CHECK(error_of("[server]\nidle_timeout = \"forever\"\n") ==
          "somrated.toml:2: server.idle_timeout: \"forever\" is not a duration (use 30s, 10m, 1h, "
          "1d)");
    CHECK(error_of("[server]\nwrite_timeout = 15\n").find("expected a string like \"15s\"") !=
          std::string::npos);
    CHECK(error_of("[server]\nread_timout = \"2s\"\n").find("did you mean \"read_timeout\"") !=
          std::string::npos);
  }
}
