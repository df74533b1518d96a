#include "somrated/config.hpp"
#include "somrated/app.hpp"

#include <unistd.h>

#include <doctest/doctest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <string>

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
          "somrated.toml:2: unknown key \"file\" in [storage] (known: \"path\")");
  }
  SUBCASE("unknown tables suggest the closest known table") {
    CHECK(error_of("\n[servr]\nlisten = \"127.0.0.1:1\"\n") ==
          "somrated.toml:2: unknown table [servr]; did you mean [server]?");
    CHECK(error_of("[[sources]]\nkind = \"24kg\"\n") ==
          "somrated.toml:1: unknown table [[sources]]; did you mean [[source]]?");
    CHECK(error_of("listen = \"127.0.0.1:1\"\n") ==
          "somrated.toml:1: unknown key \"listen\" outside any table (known: [server], [storage], "
          "[log], [[source]])");
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
