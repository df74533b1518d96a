#include "somrated/log.hpp"

#include <sys/stat.h>

#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>

using namespace std::chrono_literals;
using somrated::format_log_line;
using somrated::log_level;
using somrated::logger;
using somrated::parse_log_level;
using somrated::timestamp;

namespace {

/// Closes a FILE*.
struct file_closer {
  void operator()(std::FILE* f) const noexcept { std::fclose(f); }
};
/// An anonymous temporary file, deleted when closed.
using file_ptr = std::unique_ptr<std::FILE, file_closer>;

/// Everything written to f so far.
std::string contents(std::FILE* f) {
  std::fflush(f);
  std::rewind(f);
  std::string out;
  char buf[512];
  for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) out.append(buf, n);
  return out;
}

/// Sets or unsets an environment variable for one scope, then puts the old value back.
class env_guard {
 public:
  /// Sets name to value, or unsets it when value is nullopt.
  env_guard(const char* name, std::optional<std::string> value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value) {
      ::setenv(name, value->c_str(), 1);
    } else {
      ::unsetenv(name);
    }
  }
  env_guard(const env_guard&) = delete;
  env_guard& operator=(const env_guard&) = delete;
  /// Restores the value seen at construction.
  ~env_guard() {
    if (old_) {
      ::setenv(name_, old_->c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }

 private:
  const char* name_;                ///< Variable name (a literal).
  std::optional<std::string> old_;  ///< Value before, if set.
};

/// "<dev>:<ino>" of the file open on f, as systemd puts it in $JOURNAL_STREAM.
std::string dev_ino(std::FILE* f) {
  struct stat st {};
  REQUIRE(::fstat(::fileno(f), &st) == 0);
  return std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);
}

/// True when s looks like "2025-06-10T10:52:00.123Z".
bool looks_like_log_time(std::string_view s) {
  if (s.size() != 24) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    const bool ok = i == 4 || i == 7     ? c == '-'
                    : i == 10            ? c == 'T'
                    : i == 13 || i == 16 ? c == ':'
                    : i == 19            ? c == '.'
                    : i == 23            ? c == 'Z'
                                         : (c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

/// 2025-06-10T10:52:00.123Z.
constexpr timestamp seed_time{1749552720123ms};

}  // namespace

TEST_CASE("parse_log_level") {
  CHECK(parse_log_level("error") == log_level::error);
  CHECK(parse_log_level("err") == log_level::error);
  CHECK(parse_log_level("warning") == log_level::warning);
  CHECK(parse_log_level("warn") == log_level::warning);
  CHECK(parse_log_level("notice") == log_level::notice);
  CHECK(parse_log_level("info") == log_level::info);
  CHECK(parse_log_level("debug") == log_level::debug);
  for (const char* bad : {"", "INFO", "Info", "trace", "fatal", "crit", "6", " info", "info "}) {
    CAPTURE(bad);
    CHECK_FALSE(parse_log_level(bad));
  }
  SUBCASE("to_string round trips") {
    for (auto l : {log_level::error, log_level::warning, log_level::notice, log_level::info,
                   log_level::debug}) {
      CHECK(parse_log_level(somrated::to_string(l)) == l);
    }
    CHECK(somrated::to_string(log_level::warning) == "warning");
  }
}

TEST_CASE("format_log_line") {
  SUBCASE("plain") {
    CHECK(format_log_line(log_level::warning, "rate held", seed_time, false) ==
          "2025-06-10T10:52:00.123Z warning: rate held\n");
    CHECK(format_log_line(log_level::info, "x", timestamp{5ms}, false) ==
          "1970-01-01T00:00:00.005Z info: x\n");
  }
  SUBCASE("plain joins lines with a bar") {
    CHECK(format_log_line(log_level::error, "first\nsecond\r\nthird\n", seed_time, false) ==
          "2025-06-10T10:52:00.123Z error: first | second | third\n");
  }
  SUBCASE("journal") {
    CHECK(format_log_line(log_level::warning, "rate held", seed_time, true) == "<4>rate held\n");
    CHECK(format_log_line(log_level::debug, "", seed_time, true) == "<7>\n");
  }
  SUBCASE("journal prefixes every line") {
    CHECK(format_log_line(log_level::error, "first\nsecond\r\n\nfourth\n\n", seed_time, true) ==
          "<3>first\n<3>second\n<3>\n<3>fourth\n");
  }
}

TEST_CASE("logger writes to its stream") {
  file_ptr f{std::tmpfile()};
  REQUIRE(f);

  SUBCASE("plain when JOURNAL_STREAM is unset") {
    env_guard env{"JOURNAL_STREAM", std::nullopt};
    logger log{log_level::info, f.get()};
    CHECK_FALSE(log.journal());
    log.log(log_level::warning, "USD {} held: jump of {:.1f}%", "87.45", 31.25);
    const auto out = contents(f.get());
    REQUIRE(out.size() > 25);
    CHECK(looks_like_log_time(out.substr(0, 24)));
    CHECK(out.substr(24) == " warning: USD 87.45 held: jump of 31.2%\n");
    // The timestamp is the current time.
    const auto t = somrated::parse_time(out.substr(0, 24));
    REQUIRE(t);
    CHECK(*t <= somrated::now());
    CHECK(*t > somrated::now() - 1min);
  }

  SUBCASE("journal when JOURNAL_STREAM names the file") {
    env_guard env{"JOURNAL_STREAM", dev_ino(f.get())};
    logger log{log_level::debug, f.get()};
    CHECK(log.journal());
    log.log(log_level::notice, "listening on {}", "127.0.0.1:8080");
    log.log(log_level::debug, "two\nlines");
    CHECK(contents(f.get()) == "<5>listening on 127.0.0.1:8080\n<7>two\n<7>lines\n");
  }

  SUBCASE("plain when JOURNAL_STREAM names another file") {
    file_ptr other{std::tmpfile()};
    REQUIRE(other);
    env_guard env{"JOURNAL_STREAM", dev_ino(other.get())};
    CHECK_FALSE(logger{log_level::info, f.get()}.journal());
    CHECK(logger{log_level::info, other.get()}.journal());
  }

  SUBCASE("plain when JOURNAL_STREAM is malformed") {
    const auto good = dev_ino(f.get());
    for (const std::string& bad : {std::string{}, std::string{":"}, good + "x", "x" + good,
                                   good.substr(0, good.find(':')), good + ":1", "-" + good}) {
      CAPTURE(bad);
      env_guard env{"JOURNAL_STREAM", bad};
      CHECK_FALSE(logger{log_level::info, f.get()}.journal());
    }
  }

  SUBCASE("levels below the minimum are dropped") {
    env_guard env{"JOURNAL_STREAM", dev_ino(f.get())};
    logger log{log_level::warning, f.get()};
    log.log(log_level::error, "e");
    log.log(log_level::warning, "w");
    log.log(log_level::notice, "n");
    log.log(log_level::info, "i");
    log.log(log_level::debug, "d");
    CHECK(contents(f.get()) == "<3>e\n<4>w\n");
    SUBCASE("set_level changes the threshold") {
      log.set_level(log_level::debug);
      CHECK(log.level() == log_level::debug);
      log.log(log_level::debug, "d");
      CHECK(contents(f.get()) == "<3>e\n<4>w\n<7>d\n");
    }
  }

  SUBCASE("vlog also filters") {
    env_guard env{"JOURNAL_STREAM", dev_ino(f.get())};
    logger log{log_level::error, f.get()};
    log.vlog(log_level::info, "x {}", fmt::make_format_args(1));
    log.vlog(log_level::error, "y {}", fmt::make_format_args(2));
    CHECK(contents(f.get()) == "<3>y 2\n");
  }
}
