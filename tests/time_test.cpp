#include "somrated/time.hpp"

#include <doctest/doctest.h>

#include <string>

using namespace std::chrono_literals;
using somrated::format_date;
using somrated::format_duration;
using somrated::format_rfc3339;
using somrated::parse_date;
using somrated::parse_duration;
using somrated::parse_time;
using somrated::timestamp;

namespace {

/// 2025-06-10T10:52:00Z, the moment of the seed capture.
constexpr timestamp seed_time{1749552720s};

}  // namespace

TEST_CASE("format_rfc3339 prints UTC with second precision") {
  CHECK(format_rfc3339(seed_time) == "2025-06-10T10:52:00Z");
  CHECK(format_rfc3339(timestamp{}) == "1970-01-01T00:00:00Z");
  SUBCASE("milliseconds are truncated, not rounded") {
    CHECK(format_rfc3339(seed_time + 999ms) == "2025-06-10T10:52:00Z");
  }
  SUBCASE("before the epoch stays on the right day") {
    CHECK(format_rfc3339(timestamp{-1ms}) == "1969-12-31T23:59:59Z");
  }
  SUBCASE("leap day and end of year") {
    const auto leap = std::chrono::sys_days{std::chrono::year{2024} / 2 / 29} + 23h + 59min + 59s;
    CHECK(format_rfc3339(timestamp{leap}) == "2024-02-29T23:59:59Z");
    const auto eoy = std::chrono::sys_days{std::chrono::year{9999} / 12 / 31};
    CHECK(format_rfc3339(timestamp{eoy}) == "9999-12-31T00:00:00Z");
  }
}

TEST_CASE("format_date pads every field") {
  CHECK(format_date(std::chrono::sys_days{std::chrono::year{2025} / 6 / 10}) == "2025-06-10");
  CHECK(format_date(std::chrono::sys_days{std::chrono::year{1999} / 1 / 1}) == "1999-01-01");
  CHECK(format_date(std::chrono::sys_days{}) == "1970-01-01");
}

TEST_CASE("parse_date accepts real calendar dates only") {
  SUBCASE("good") {
    REQUIRE(parse_date("2025-06-10"));
    CHECK(*parse_date("2025-06-10") == std::chrono::sys_days{std::chrono::year{2025} / 6 / 10});
    CHECK(parse_date("1970-01-01") == std::chrono::sys_days{});
    CHECK(parse_date("2024-02-29"));
    CHECK(parse_date("2000-02-29"));
    CHECK(parse_date("9999-12-31"));
  }
  SUBCASE("bad") {
    for (const char* bad :
         {"", "2025-6-10", "2025-06-1", "2025/06/10", "2025-13-01", "2025-00-10", "2025-06-00",
          "2025-02-29", "1900-02-29", "2025-04-31", "1969-12-31", "0000-01-01", "2025-06-10 ",
          " 2025-06-10", "2025-06-10T00:00:00Z", "20250610", "2025-0a-10", "+025-06-10"}) {
      CAPTURE(bad);
      CHECK_FALSE(parse_date(bad));
    }
  }
}

TEST_CASE("parse_time reads dates, RFC 3339 and Unix seconds") {
  SUBCASE("date alone is midnight UTC") {
    CHECK(parse_time("2025-06-10") == timestamp{1749513600s});
  }
  SUBCASE("RFC 3339 in UTC") {
    CHECK(parse_time("2025-06-10T10:52:00Z") == seed_time);
    CHECK(parse_time("2025-06-10t10:52:00z") == seed_time);
    CHECK(parse_time("2025-06-10 10:52:00Z") == seed_time);
    CHECK(parse_time("1970-01-01T00:00:00Z") == timestamp{});
    CHECK(parse_time("9999-12-31T23:59:59Z") ==
          timestamp{std::chrono::sys_days{std::chrono::year{9999} / 12 / 31} + 86399s});
  }
  SUBCASE("offsets convert to UTC") {
    CHECK(parse_time("2025-06-10T16:52:00+06:00") == seed_time);
    CHECK(parse_time("2025-06-10T05:22:00-05:30") == seed_time);
    CHECK(parse_time("2025-06-10T10:52:00+00:00") == seed_time);
    CHECK(parse_time("2025-06-10T10:52:00-00:00") == seed_time);
    SUBCASE("across midnight") {
      CHECK(parse_time("2025-06-11T02:00:00+06:00") ==
            timestamp{std::chrono::sys_days{std::chrono::year{2025} / 6 / 10} + 20h});
    }
  }
  SUBCASE("fractional seconds are kept to the millisecond") {
    CHECK(parse_time("2025-06-10T10:52:00.5Z") == seed_time + 500ms);
    CHECK(parse_time("2025-06-10T10:52:00.12Z") == seed_time + 120ms);
    CHECK(parse_time("2025-06-10T10:52:00.123Z") == seed_time + 123ms);
    CHECK(parse_time("2025-06-10T10:52:00.123999999Z") == seed_time + 123ms);
    CHECK(parse_time("2025-06-10T16:52:00.250+06:00") == seed_time + 250ms);
  }
  SUBCASE("Unix seconds") {
    CHECK(parse_time("1749552720") == seed_time);
    CHECK(parse_time("0") == timestamp{});
    CHECK(parse_time("99999999999") == timestamp{99999999999s});
  }
  SUBCASE("Unix milliseconds (12 to 14 digits)") {
    CHECK(parse_time("1749552720000") == seed_time);
    CHECK(parse_time("1749552720123") == seed_time + 123ms);
    CHECK(parse_time("999999999999") == timestamp{999999999999ms});
    CHECK(parse_time("99999999999999") == timestamp{99999999999999ms});
  }
  SUBCASE("rejects everything else") {
    for (const char* bad : {
             "",
             "now",
             "-1",
             "+1749552720",
             "999999999999999",                  // 15 digits
             "1749552720.5",                     // fractional Unix seconds
             "2025-06-10T10:52:00",              // no zone
             "2025-06-10T10:52Z",                // no seconds
             "2025-06-10T10:52:00ZZ",            // trailing garbage
             "2025-06-10T10:52:00Z ",            //
             " 2025-06-10T10:52:00Z",            //
             "2025-06-10X10:52:00Z",             // bad separator
             "2025-06-10T24:00:00Z",             // hour 24
             "2025-06-10T10:60:00Z",             // minute 60
             "2025-06-10T10:52:60Z",             // leap second
             "2025-06-10T1:52:00Z",              //
             "2025-06-10T10-52-00Z",             //
             "2025-06-10T10:52:00.Z",            // empty fraction
             "2025-06-10T10:52:00.1234567890Z",  // more than nanoseconds
             "2025-06-10T10:52:00+06",           // offset without minutes
             "2025-06-10T10:52:00+0600",         // offset without colon
             "2025-06-10T10:52:00+24:00",
             "2025-06-10T10:52:00+06:60",
             "2025-06-10T10:52:00 06:00",  // '+' decoded as a space is not guessed at
             "2025-13-10T10:52:00Z",
             "2025-02-30T10:52:00Z",
             "1969-12-31T23:59:59Z",
             "1970-01-01T00:00:00+00:01",  // before the epoch once converted
             "10000-01-01T00:00:00Z",
         }) {
      CAPTURE(bad);
      CHECK_FALSE(parse_time(bad));
    }
  }
  SUBCASE("round trip with format_rfc3339") {
    const auto t = parse_time(format_rfc3339(seed_time));
    REQUIRE(t);
    CHECK(*t == seed_time);
  }
}

TEST_CASE("parse_duration reads integers with units") {
  SUBCASE("single units") {
    CHECK(parse_duration("1500ms") == 1500ms);
    CHECK(parse_duration("30s") == 30s);
    CHECK(parse_duration("10m") == 10min);
    CHECK(parse_duration("1h") == 1h);
    CHECK(parse_duration("1d") == 24h);
    CHECK(parse_duration("2w") == 14 * 24h);
    CHECK(parse_duration("007s") == 7s);
  }
  SUBCASE("concatenations") {
    CHECK(parse_duration("1h30m") == 90min);
    CHECK(parse_duration("1m30s") == 90s);
    CHECK(parse_duration("1s500ms") == 1500ms);
    CHECK(parse_duration("1w1d1h1m1s1ms") == 7 * 24h + 24h + 1h + 1min + 1s + 1ms);
    CHECK(parse_duration("0h30m") == 30min);
  }
  SUBCASE("the upper limit") {
    CHECK(parse_duration("36500d") == somrated::max_duration);
    CHECK(parse_duration("36499d24h") == somrated::max_duration);
    CHECK_FALSE(parse_duration("36500d1ms"));
    CHECK_FALSE(parse_duration("36501d"));
  }
  SUBCASE("rejects everything else") {
    for (const char* bad : {"",
                            "10",
                            "m",
                            "10x",
                            "10 m",
                            " 10m",
                            "10m ",
                            "1h 30m",
                            "-10m",
                            "+10m",
                            "0s",
                            "0h0m",
                            "1.5h",
                            "10M",
                            "10S",
                            "10min",
                            "10sec",
                            "1hh",
                            "10mss",
                            "h1",
                            "99999999999d",
                            "9223372036854775807ms",
                            "999999999999999999999s",
                            "1e3s",
                            "10m,"}) {
      CAPTURE(bad);
      CHECK_FALSE(parse_duration(bad));
    }
  }
}

TEST_CASE("format_duration picks the largest exact unit") {
  CHECK(format_duration(10min) == "10m");
  CHECK(format_duration(1h) == "1h");
  CHECK(format_duration(24h) == "1d");
  CHECK(format_duration(7 * 24h) == "1w");
  CHECK(format_duration(8 * 24h) == "8d");
  CHECK(format_duration(90s) == "90s");
  CHECK(format_duration(90min) == "90m");
  CHECK(format_duration(1500ms) == "1500ms");
  CHECK(format_duration(1ms) == "1ms");
  CHECK(format_duration(0ms) == "0s");
  CHECK(format_duration(-10min) == "-10m");
  SUBCASE("round trip with parse_duration") {
    for (auto d : {1ms, 1500ms, 20000ms, 600000ms, 3600000ms, 5400000ms, 86400000ms, 604800000ms,
                   3153600000000ms}) {
      CAPTURE(d.count());
      const auto back = parse_duration(format_duration(d));
      REQUIRE(back);
      CHECK(*back == d);
    }
  }
}
