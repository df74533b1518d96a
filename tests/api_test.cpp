#include "somrated/api.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <doctest/doctest.h>
#include <fmt/format.h>
#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include "somrated/source_board.hpp"
#include "somrated/store.hpp"
#include "somrated/version.hpp"

using namespace std::chrono_literals;
namespace http = boost::beast::http;
using somrated::http_request;
using somrated::http_response;
using somrated::timestamp;

namespace {

/// 2025-06-10T00:00:00Z: the start of the stored test data.
constexpr timestamp t0{std::chrono::sys_days{std::chrono::year{2025} / 6 / 10}};

/// A decimal from text that the test knows is valid.
somrated::decimal dec(std::string_view text) {
  auto d = somrated::decimal::parse(text);
  REQUIRE(d);
  return *d;
}

/// The current time cut to whole seconds, as the API prints it.
timestamp now_s() {
  return std::chrono::floor<std::chrono::seconds>(somrated::now());
}

/// A database file in the temp directory, removed with its WAL files at the end.
class temp_db_file {
 public:
  temp_db_file() {
    std::random_device rd;
    path_ = std::filesystem::temp_directory_path() /
            fmt::format("somrated-api-test-{:08x}{:08x}.db", rd(), rd());
  }
  ~temp_db_file() {
    std::error_code ec;
    for (const char* suffix : {"", "-wal", "-shm", "-journal"}) {
      std::filesystem::remove(path_.string() + suffix, ec);
    }
  }
  temp_db_file(const temp_db_file&) = delete;
  temp_db_file& operator=(const temp_db_file&) = delete;

  /// The file's path.
  std::string path() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

/// Three configured sources: 24kg (every 10m), nbkr (every 1h) and one that never
/// produced data.
std::shared_ptr<const somrated::config> test_config() {
  auto cfg = std::make_shared<somrated::config>();
  somrated::source_config kg;
  kg.name = "24kg";
  kg.kind = "24kg";
  kg.url = "https://24.kg/english/";
  kg.interval = 10min;
  somrated::source_config nbkr;
  nbkr.name = "nbkr";
  nbkr.kind = "nbkr";
  nbkr.url = "https://reader:s3cret@www.nbkr.kg/XML/daily.xml";
  nbkr.interval = 1h;
  somrated::source_config empty;
  empty.name = "empty";
  empty.kind = "24kg";
  empty.url = "file:///dev/null";
  empty.interval = 10min;
  cfg->sources = {kg, nbkr, empty};
  return cfg;
}

/// A store on a temp file filled with known rates, and an api over it.
///
/// 24kg: USD 87.45 at t0, 88.10 at t0+1h, 87.4500 at t0+2h (confirmed at t0+3h);
/// EUR 99.56 and RUB 1.10 from t0, confirmed at t0+3h. nbkr: USD 87.4500 and EUR
/// 99.1234 at t0 with effective date 2025-06-11. 24kg scraped fine 2 minutes ago;
/// nbkr last succeeded 5 hours ago (3 intervals are 3h, so it is stale).
struct api_fixture {
  temp_db_file file;
  somrated::store db{file.path(), somrated::store::mode::read_write};
  somrated::source_board board;
  std::shared_ptr<const somrated::config> cfg = test_config();
  somrated::api api{cfg, board};
  timestamp now = now_s();  ///< One reading of the clock, so expectations match the data.

  api_fixture() {
    auto kg = [&](timestamp at, std::string_view usd) {
      std::vector<somrated::rate_quote> q{
          {"USD", dec(usd)}, {"EUR", dec("99.56")}, {"RUB", dec("1.10")}};
      db.record("24kg", at, q, std::nullopt, 0.25);
    };
    kg(t0, "87.45");
    kg(t0 + 1h, "88.10");
    kg(t0 + 2h, "87.4500");
    kg(t0 + 3h, "87.4500");
    std::vector<somrated::rate_quote> nb{{"USD", dec("87.4500")}, {"EUR", dec("99.1234")}};
    db.record("nbkr", t0, nb, std::chrono::sys_days{std::chrono::year{2025} / 6 / 11}, 0.25);
    log("24kg", now - 2min, "ok");
    log("nbkr", now - 5h, "ok");
  }

  /// Appends a scrape log entry.
  void log(std::string_view source, timestamp at, std::string outcome, std::string error = {}) {
    somrated::scrape_record r;
    r.source = std::string(source);
    r.started_at = at;
    r.duration = 150ms;
    r.http_status = outcome == "error" ? 500 : 200;
    r.outcome = std::move(outcome);
    r.error = std::move(error);
    db.log_scrape(r);
  }

  /// Sends one request.
  http_response send(std::string target, http::verb method = http::verb::get) {
    http_request req{method, target, 11};
    return api.handle(req, db);
  }
};

/// The body parsed as JSON; fails the test when it is not.
boost::json::value json_of(const http_response& res) {
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(res.body(), ec);
  INFO("body: ", res.body());
  REQUIRE_FALSE(ec);
  return v;
}

/// A string member of a JSON object.
std::string str(const boost::json::value& v, std::string_view key) {
  REQUIRE(v.is_object());
  REQUIRE(v.as_object().contains(key));
  REQUIRE(v.at(key).is_string());
  return std::string(v.at(key).as_string());
}

/// Checks res is a JSON error with status and code; returns its message.
std::string error_message(const http_response& res, http::status status, std::string_view code) {
  INFO("body: ", res.body());
  CHECK(res.result() == status);
  CHECK(res[http::field::content_type] == "application/json; charset=utf-8");
  CHECK(res[http::field::cache_control] == "no-cache");
  auto v = json_of(res);
  REQUIRE(v.is_object());
  REQUIRE(v.as_object().size() == 1);
  const auto& e = v.at("error");
  CHECK(str(e, "code") == code);
  CHECK(e.as_object().size() == 2);
  return str(e, "message");
}

/// True when haystack contains needle.
bool contains(std::string_view haystack, std::string_view needle) {
  return haystack.find(needle) != std::string_view::npos;
}

/// The keys of a JSON object, in order.
std::vector<std::string> keys(const boost::json::value& v) {
  std::vector<std::string> out;
  for (const auto& kv : v.as_object()) out.emplace_back(kv.key());
  return out;
}

}  // namespace

TEST_CASE("api latest") {
  api_fixture f;

  SUBCASE("default source with exact digits") {
    auto res = f.send("/api/v1/latest");
    REQUIRE(res.result() == http::status::ok);
    CHECK(res[http::field::content_type] == "application/json; charset=utf-8");
    CHECK(res[http::field::cache_control] == "no-cache");
    CHECK(contains(res.body(), R"("rate":1.10)"));
    CHECK(contains(res.body(), R"("rate":87.4500)"));
    CHECK(contains(res.body(), R"("rate":99.56)"));
    auto v = json_of(res);
    CHECK(str(v, "base") == "KGS");
    CHECK(str(v, "source") == "24kg");
    // The strip's currencies lead, in the strip's order.
    CHECK(keys(v.at("rates")) == std::vector<std::string>{"USD", "EUR", "RUB"});
    const auto& usd = v.at("rates").at("USD");
    CHECK(usd.at("rate").as_double() == doctest::Approx(87.45));
    CHECK(str(usd, "since") == "2025-06-10T02:00:00Z");
    CHECK(str(usd, "observed_at") == "2025-06-10T03:00:00Z");
    CHECK_FALSE(usd.as_object().contains("effective_date"));
    CHECK(str(v.at("rates").at("EUR"), "since") == "2025-06-10T00:00:00Z");
    CHECK(v.at("stale").as_bool() == false);
    CHECK(str(v, "last_success") == somrated::format_rfc3339(f.now - 2min));
  }

  SUBCASE("stale when the last success is older than 3 intervals") {
    auto v = json_of(f.send("/api/v1/latest?source=nbkr"));
    CHECK(v.at("stale").as_bool() == true);
    CHECK(str(v, "last_success") == somrated::format_rfc3339(f.now - 5h));
    f.log("nbkr", f.now - 150min, "not_modified");  // within 3 intervals, not 2
    CHECK(json_of(f.send("/api/v1/latest?source=nbkr")).at("stale").as_bool() == false);
  }

  SUBCASE("a failed scrape does not make a source fresh") {
    temp_db_file file;
    somrated::store db{file.path()};
    somrated::scrape_record r{"24kg", f.now - 31min, 0ms, 200, "ok", ""};
    db.log_scrape(r);
    r.started_at = f.now - 1min;
    r.outcome = "error";
    r.error = "HTTP 500 Internal Server Error";
    db.log_scrape(r);
    auto v = json_of(f.api.handle(http_request{http::verb::get, "/api/v1/latest", 11}, db));
    CHECK(v.at("stale").as_bool() == true);
    CHECK(str(v, "last_success") == somrated::format_rfc3339(f.now - 31min));
  }

  SUBCASE("nbkr rates carry the effective date") {
    auto res = f.send("/api/v1/latest?source=nbkr");
    CHECK(contains(res.body(), R"("rate":99.1234)"));
    auto v = json_of(res);
    CHECK(str(v, "source") == "nbkr");
    CHECK(str(v.at("rates").at("USD"), "effective_date") == "2025-06-11");
    CHECK(str(v.at("rates").at("EUR"), "effective_date") == "2025-06-11");
  }

  SUBCASE("USD, EUR and RUB lead; other currencies follow alphabetically") {
    std::vector<somrated::rate_quote> more{{"USD", dec("87.4500")}, {"KZT", dec("0.1804")},
                                           {"RUB", dec("1.0715")},  {"AMD", dec("0.2237")},
                                           {"EUR", dec("99.1234")}, {"CNY", dec("12.1100")}};
    f.db.record("nbkr", t0 + 1h, more, std::nullopt, 0.25);
    auto v = json_of(f.send("/api/v1/latest?source=nbkr"));
    CHECK(keys(v.at("rates")) ==
          std::vector<std::string>{"USD", "EUR", "RUB", "AMD", "CNY", "KZT"});
  }

  SUBCASE("symbols filters and orders, case-insensitively") {
    auto v = json_of(f.send("/api/v1/latest?symbols=usd,RUB"));
    CHECK(keys(v.at("rates")) == std::vector<std::string>{"USD", "RUB"});
    auto w = json_of(f.send("/api/v1/latest?symbols=Rub,eur,RUB"));
    CHECK(keys(w.at("rates")) == std::vector<std::string>{"RUB", "EUR"});
  }

  SUBCASE("a symbol without a stored value is 404 unknown_currency") {
    auto msg = error_message(f.send("/api/v1/latest?symbols=USD,jpy"), http::status::not_found,
                             "unknown_currency");
    CHECK(contains(msg, "JPY"));
    CHECK(contains(msg, "EUR, RUB, USD"));
  }

  SUBCASE("malformed symbols are 400 invalid_parameter") {
    for (const char* q : {"symbols=US", "symbols=USD,", "symbols=", "symbols=US1", "symbols=USDE",
                          "symbols=%D0%A1%D0%BE%D0%BC"}) {
      CAPTURE(q);
      auto msg = error_message(f.send(fmt::format("/api/v1/latest?{}", q)),
                               http::status::bad_request, "invalid_parameter");
      CHECK(contains(msg, "symbols:"));
    }
  }

  SUBCASE("unknown source is 404 listing the configured ones") {
    auto msg = error_message(f.send("/api/v1/latest?source=ecb"), http::status::not_found,
                             "unknown_source");
    CHECK(contains(msg, "\"ecb\""));
    CHECK(contains(msg, "24kg, nbkr, empty"));
  }

  SUBCASE("a source without data yet answers empty and stale") {
    auto res = f.send("/api/v1/latest?source=empty");
    REQUIRE(res.result() == http::status::ok);
    auto v = json_of(res);
    CHECK(v.at("rates").as_object().empty());
    CHECK(v.at("stale").as_bool() == true);
    CHECK(v.at("last_success").is_null());
  }
}

TEST_CASE("api history") {
  api_fixture f;

  SUBCASE("raw change points") {
    auto res = f.send("/api/v1/history?currency=usd&from=2025-06-09&to=2025-06-10T04:00:00Z");
    REQUIRE(res.result() == http::status::ok);
    CHECK(contains(res.body(), R"("rate":87.4500)"));
    CHECK(contains(res.body(), R"("rate":88.10)"));
    CHECK(res.count("X-Somrated-Truncated") == 0);
    auto v = json_of(res);
    CHECK(str(v, "base") == "KGS");
    CHECK(str(v, "currency") == "USD");
    CHECK(str(v, "source") == "24kg");
    CHECK(str(v, "from") == "2025-06-09T00:00:00Z");
    CHECK(str(v, "to") == "2025-06-10T04:00:00Z");
    CHECK(v.at("step").is_null());
    CHECK(str(v, "agg") == "last");
    CHECK(v.at("truncated").as_bool() == false);
    const auto& pts = v.at("points").as_array();
    REQUIRE(pts.size() == 3);
    CHECK(str(pts[0], "time") == "2025-06-10T00:00:00Z");
    CHECK(str(pts[1], "time") == "2025-06-10T01:00:00Z");
    CHECK(str(pts[2], "time") == "2025-06-10T02:00:00Z");
    CHECK(pts[1].at("rate").as_double() == doctest::Approx(88.10));
    CHECK(pts[0].as_object().size() == 2);
  }

  SUBCASE("the value in force at from is reported at from") {
    auto v = json_of(
        f.send("/api/v1/history?currency=USD&from=2025-06-10T00:30:00Z&to=2025-06-10T04:00:00Z"));
    const auto& pts = v.at("points").as_array();
    REQUIRE(pts.size() == 3);
    CHECK(str(pts[0], "time") == "2025-06-10T00:30:00Z");
    CHECK(pts[0].at("rate").as_double() == doctest::Approx(87.45));
  }

  SUBCASE("from and to accept Unix seconds and RFC 3339 offsets") {
    // 1749513600 = 2025-06-10T00:00:00Z; 07:30+06:00 = 01:30Z.
    auto v = json_of(
        f.send("/api/v1/history?currency=USD&from=1749513600&to=2025-06-10T07:30:00%2B06:00"));
    CHECK(str(v, "from") == "2025-06-10T00:00:00Z");
    CHECK(str(v, "to") == "2025-06-10T01:30:00Z");
    CHECK(v.at("points").as_array().size() == 2);
    auto w = json_of(
        f.send("/api/v1/history?currency=USD&from=1749513600&to=2025-06-10T07:30:00+06:00"));
    CHECK(str(w, "to") == "2025-06-10T01:30:00Z");
  }

  SUBCASE("default range is the last 30 days up to now") {
    auto v = json_of(f.send("/api/v1/history?currency=USD"));
    const auto to = somrated::parse_time(str(v, "to"));
    const auto from = somrated::parse_time(str(v, "from"));
    REQUIRE(to);
    REQUIRE(from);
    CHECK(*to - *from == std::chrono::days(30));
    CHECK(somrated::now() - *to < 1min);
  }

  SUBCASE("step samples the value in force per bucket") {
    auto res =
        f.send("/api/v1/history?currency=USD&from=2025-06-10&to=2025-06-10T02:59:59Z&step=1h");
    REQUIRE(res.result() == http::status::ok);
    CHECK(contains(res.body(), R"({"time":"2025-06-10T02:00:00Z","rate":87.4500})"));
    auto v = json_of(res);
    CHECK(str(v, "step") == "1h");
    CHECK(str(v, "agg") == "last");
    const auto& pts = v.at("points").as_array();
    REQUIRE(pts.size() == 3);
    CHECK(str(pts[0], "time") == "2025-06-10T00:00:00Z");
    CHECK(pts[0].at("rate").as_double() == doctest::Approx(87.45));
    CHECK(str(pts[1], "time") == "2025-06-10T01:00:00Z");
    CHECK(pts[1].at("rate").as_double() == doctest::Approx(88.10));
  }

  SUBCASE("step is printed in its largest exact unit") {
    auto v = json_of(
        f.send("/api/v1/history?currency=USD&from=2025-06-10&to=2025-06-10T02:59:59Z&step=60m"));
    CHECK(str(v, "step") == "1h");
  }

  SUBCASE("ohlc buckets") {
    auto res = f.send(
        "/api/v1/history?currency=USD&from=2025-06-10&to=2025-06-10T03:59:59Z&step=2h&agg=ohlc");
    REQUIRE(res.result() == http::status::ok);
    CHECK(contains(res.body(),
                   R"({"time":"2025-06-10T00:00:00Z","open":87.45,"high":88.10,"low":87.45,)"
                   R"("close":88.10})"));
    CHECK(contains(res.body(), R"({"time":"2025-06-10T02:00:00Z","open":87.4500,"high":87.4500,)"
                               R"("low":87.4500,"close":87.4500})"));
    auto v = json_of(res);
    CHECK(str(v, "agg") == "ohlc");
    CHECK(str(v, "step") == "2h");
    CHECK(v.at("points").as_array().size() == 2);
  }

  SUBCASE("csv output") {
    auto res =
        f.send("/api/v1/history?currency=USD&from=2025-06-09&to=2025-06-10T04:00:00Z&format=csv");
    REQUIRE(res.result() == http::status::ok);
    CHECK(res[http::field::content_type] == "text/csv; charset=utf-8");
    CHECK(res.body() ==
          "time,currency,source,rate\n"
          "2025-06-10T00:00:00Z,USD,24kg,87.45\n"
          "2025-06-10T01:00:00Z,USD,24kg,88.10\n"
          "2025-06-10T02:00:00Z,USD,24kg,87.4500\n");
  }

  SUBCASE("csv ohlc output") {
    auto res = f.send(
        "/api/v1/history?currency=USD&from=2025-06-10&to=2025-06-10T03:59:59Z&step=2h&agg=ohlc"
        "&format=csv");
    REQUIRE(res.result() == http::status::ok);
    CHECK(res.body() ==
          "time,currency,source,open,high,low,close\n"
          "2025-06-10T00:00:00Z,USD,24kg,87.45,88.10,87.45,88.10\n"
          "2025-06-10T02:00:00Z,USD,24kg,87.4500,87.4500,87.4500,87.4500\n");
  }

  SUBCASE("another source") {
    auto res = f.send("/api/v1/history?currency=EUR&source=nbkr&from=2025-06-01");
    CHECK(contains(res.body(), R"({"time":"2025-06-10T00:00:00Z","rate":99.1234})"));
    auto v = json_of(res);
    CHECK(str(v, "source") == "nbkr");
    CHECK(v.at("points").as_array().size() == 1);
  }

  SUBCASE("raw points are capped at 10000 and flagged") {
    std::vector<somrated::history_point> pts;
    for (int i = 0; i < 10005; ++i) {
      pts.push_back({t0 + 24h + std::chrono::seconds(i), dec(i % 2 ? "0.51" : "0.50")});
    }
    f.db.import_changes("24kg", "KZT", pts);
    const std::string q = "/api/v1/history?currency=KZT&from=2025-06-11&to=2025-06-12";
    auto res = f.send(q);
    REQUIRE(res.result() == http::status::ok);
    CHECK(res["X-Somrated-Truncated"] == "true");
    auto v = json_of(res);
    CHECK(v.at("truncated").as_bool() == true);
    CHECK(v.at("points").as_array().size() == 10000);

    auto csv = f.send(q + "&format=csv");
    CHECK(csv["X-Somrated-Truncated"] == "true");
    CHECK(std::count(csv.body().begin(), csv.body().end(), '\n') == 10001);
  }

  SUBCASE("unknown currency for the source is 404") {
    auto msg = error_message(f.send("/api/v1/history?currency=RUB&source=nbkr"),
                             http::status::not_found, "unknown_currency");
    CHECK(contains(msg, "RUB"));
    CHECK(contains(msg, "EUR, USD"));
  }
}

TEST_CASE("api history rejects bad parameters") {
  api_fixture f;
  auto bad = [&](std::string_view query, std::string_view code) {
    CAPTURE(query);
    return error_message(f.send(fmt::format("/api/v1/history?{}", query)),
                         http::status::bad_request, code);
  };

  SUBCASE("missing currency") {
    CHECK(contains(bad("from=2025-06-01", "missing_parameter"), "currency"));
  }
  SUBCASE("bad currency format") {
    CHECK(bad("currency=US", "invalid_parameter") ==
          "currency: expected a 3-letter currency code such as USD, got \"US\"");
    bad("currency=U%20D", "invalid_parameter");
    bad("currency=", "invalid_parameter");
  }
  SUBCASE("garbage dates") {
    CHECK(bad("currency=USD&from=yesterday", "invalid_parameter") ==
          "from: expected YYYY-MM-DD, RFC 3339 or Unix seconds or milliseconds, got \"yesterday\"");
    CHECK(contains(bad("currency=USD&to=2025-13-01", "invalid_parameter"), "to: "));
    bad("currency=USD&from=", "invalid_parameter");
  }
  SUBCASE("from after to") {
    auto msg = bad("currency=USD&from=2025-06-10&to=2025-06-01", "invalid_range");
    CHECK(contains(msg, "2025-06-10"));
    CHECK(contains(msg, "2025-06-01"));
  }
  SUBCASE("step giving too many points") {
    CHECK(bad("currency=USD&from=2025-01-01&to=2026-01-01&step=1s", "too_many_points") ==
          "step 1s over 2025-01-01..2026-01-01 gives 31536000 points; the limit is 10000: use "
          "a larger step");
    // 10000 buckets exactly is fine, 10001 is not.
    CHECK(f.send("/api/v1/history?currency=USD&from=2025-06-10&to=2025-06-10T02:46:40Z&step=1s")
              .result() == http::status::ok);
    bad("currency=USD&from=2025-06-10&to=2025-06-10T02:46:41Z&step=1s", "too_many_points");
  }
  SUBCASE("bad step") {
    CHECK(contains(bad("currency=USD&step=soon", "invalid_parameter"), "step: "));
    bad("currency=USD&step=0s", "invalid_parameter");
  }
  SUBCASE("bad agg") {
    CHECK(bad("currency=USD&agg=avg&step=1h", "invalid_parameter") ==
          "agg: expected last or ohlc, got \"avg\"");
  }
  SUBCASE("ohlc without step") {
    CHECK(contains(bad("currency=USD&agg=ohlc", "missing_parameter"), "step"));
  }
  SUBCASE("bad format") {
    CHECK(contains(bad("currency=USD&format=xml", "invalid_parameter"), "format: "));
  }
}

TEST_CASE("api query and method handling") {
  api_fixture f;

  SUBCASE("unknown parameter names it and lists the accepted ones") {
    auto msg = error_message(f.send("/api/v1/latest?symbol=USD"), http::status::bad_request,
                             "unknown_parameter");
    CHECK(contains(msg, "\"symbol\""));
    CHECK(contains(msg, "source, symbols, pretty"));
    error_message(f.send("/healthz?x=1"), http::status::bad_request, "unknown_parameter");
  }

  SUBCASE("a repeated parameter is invalid") {
    auto msg = error_message(f.send("/api/v1/history?currency=USD&currency=EUR"),
                             http::status::bad_request, "invalid_parameter");
    CHECK(contains(msg, "currency"));
  }

  SUBCASE("more than 64 parameters") {
    std::string target = "/api/v1/latest?source=24kg";
    for (int i = 0; i < 64; ++i) target += "&pretty";
    error_message(f.send(target), http::status::bad_request, "too_many_parameters");
  }

  SUBCASE("parameters are percent-decoded") {
    auto v = json_of(f.send("/api/v1/latest?%73ource=nbk%72&symbols=%55SD"));
    CHECK(str(v, "source") == "nbkr");
    CHECK(keys(v.at("rates")) == std::vector<std::string>{"USD"});
  }

  SUBCASE("pretty is accepted everywhere and indents") {
    for (const char* path : {"/", "/healthz", "/readyz", "/api/v1/latest", "/api/v1/sources",
                             "/api/v1/history?currency=USD&from=2025-06-01"}) {
      CAPTURE(path);
      std::string target = path;
      target += contains(target, "?") ? "&pretty" : "?pretty";
      auto res = f.send(target);
      CHECK(res.result() != http::status::bad_request);
      CHECK(contains(res.body(), "\n  \""));
      json_of(res);
    }
    auto res = f.send("/api/v1/latest?pretty=1");
    CHECK(contains(res.body(), "\"rate\": 87.4500"));
    auto err = f.send("/api/v1/latest?pretty&source=ecb");
    CHECK(contains(err.body(), "\n    \"code\": \"unknown_source\""));
  }

  SUBCASE("unknown path is 404") {
    error_message(f.send("/api/v1/nope"), http::status::not_found, "not_found");
    error_message(f.send("/api/v1/latest/"), http::status::not_found, "not_found");
    error_message(f.send("/nope", http::verb::post), http::status::not_found, "not_found");
  }

  SUBCASE("other methods are 405 with Allow") {
    for (http::verb m : {http::verb::post, http::verb::put, http::verb::delete_}) {
      CAPTURE(http::to_string(m));
      auto res = f.send("/api/v1/latest", m);
      error_message(res, http::status::method_not_allowed, "method_not_allowed");
      CHECK(res[http::field::allow] == "GET, HEAD");
      CHECK(res[http::field::access_control_allow_origin] == "*");
    }
  }

  SUBCASE("OPTIONS answers a CORS preflight; reads allow any origin") {
    auto res = f.send("/api/v1/latest", http::verb::options);
    CHECK(res.result() == http::status::no_content);
    CHECK(res[http::field::allow] == "GET, HEAD, OPTIONS");
    CHECK(res[http::field::access_control_allow_origin] == "*");
    CHECK(res[http::field::access_control_allow_methods] == "GET, HEAD, OPTIONS");
    CHECK(res.body().empty());
    CHECK(f.send("/api/v1/latest")[http::field::access_control_allow_origin] == "*");
    CHECK(f.send("/nope", http::verb::options).result() == http::status::not_found);
  }

  SUBCASE("HEAD is answered like GET") {
    for (const char* target :
         {"/api/v1/latest", "/api/v1/history?currency=USD&from=2025-06-01&format=csv",
          "/api/v1/latest?source=ecb"}) {
      CAPTURE(target);
      auto get = f.send(target);
      auto head = f.send(target, http::verb::head);
      CHECK(head.result() == get.result());
      CHECK(head.body() == get.body());
      std::vector<std::pair<std::string, std::string>> gh, hh;
      for (const auto& fld : get) gh.emplace_back(fld.name_string(), fld.value());
      for (const auto& fld : head) hh.emplace_back(fld.name_string(), fld.value());
      CHECK(gh == hh);
    }
  }

  SUBCASE("a target that is not a path is 400") {
    error_message(f.send("*", http::verb::options), http::status::bad_request, "invalid_target");
  }

  SUBCASE("an absolute-form target is served") {
    auto v = json_of(f.send("http://localhost:8080/api/v1/latest?source=nbkr"));
    CHECK(str(v, "source") == "nbkr");
  }

  SUBCASE("the response keeps the request's HTTP version") {
    http_request req{http::verb::get, "/healthz", 10};
    CHECK(f.api.handle(req, f.db).version() == 10);
  }
}

TEST_CASE("api sources") {
  api_fixture f;
  f.log("24kg", f.now - 90s, "error", "HTTP 502 Bad Gateway");
  f.log("24kg", f.now - 60s, "error", "connect 1.2.3.4:443: Connection refused");
  std::vector<somrated::rate_quote> jump{{"USD", dec("120.00")}};
  f.db.record("24kg", t0 + 4h, jump, std::nullopt, 0.25);
  f.board.set_next_scrape("24kg", f.now + 5min);

  auto res = f.send("/api/v1/sources");
  REQUIRE(res.result() == http::status::ok);
  CHECK(contains(res.body(), R"("rate":120.00)"));
  auto v = json_of(res);
  const auto& list = v.at("sources").as_array();
  REQUIRE(list.size() == 3);
  CHECK(str(list[0], "name") == "24kg");
  CHECK(str(list[1], "name") == "nbkr");
  CHECK(str(list[2], "name") == "empty");

  SUBCASE("a source with errors and a held value") {
    const auto& kg = list[0];
    CHECK(str(kg, "kind") == "24kg");
    CHECK(str(kg, "url") == "https://24.kg/english/");
    CHECK(str(kg, "interval") == "10m");
    CHECK(kg.at("stale").as_bool() == false);
    CHECK(str(kg, "last_attempt") == somrated::format_rfc3339(f.now - 60s));
    CHECK(str(kg, "last_success") == somrated::format_rfc3339(f.now - 2min));
    CHECK(str(kg.at("last_error"), "at") == somrated::format_rfc3339(f.now - 60s));
    CHECK(str(kg.at("last_error"), "message") == "connect 1.2.3.4:443: Connection refused");
    CHECK(kg.at("consecutive_failures").as_int64() == 2);
    CHECK(str(kg, "next_scrape") == somrated::format_rfc3339(f.now + 5min));
    const auto& held = kg.at("held").as_array();
    REQUIRE(held.size() == 1);
    CHECK(str(held[0], "currency") == "USD");
    CHECK(str(held[0], "since") == "2025-06-10T04:00:00Z");
    CHECK(held[0].at("rate").as_double() == doctest::Approx(120.0));
  }

  SUBCASE("a healthy but stale source, its password not shown") {
    const auto& nb = list[1];
    CHECK(str(nb, "url") == "https://reader:***@www.nbkr.kg/XML/daily.xml");
    CHECK_FALSE(contains(res.body(), "s3cret"));
    CHECK(str(nb, "interval") == "1h");
    CHECK(nb.at("stale").as_bool() == true);
    CHECK(nb.at("last_error").is_null());
    CHECK(nb.at("consecutive_failures").as_int64() == 0);
    CHECK(nb.at("next_scrape").is_null());
    CHECK(nb.at("held").as_array().empty());
  }

  SUBCASE("a source never scraped") {
    const auto& e = list[2];
    CHECK(e.at("stale").as_bool() == true);
    CHECK(e.at("last_attempt").is_null());
    CHECK(e.at("last_success").is_null());
    CHECK(e.at("last_error").is_null());
  }
}

TEST_CASE("api health, readiness and index") {
  api_fixture f;

  SUBCASE("healthz") {
    auto res = f.send("/healthz");
    CHECK(res.result() == http::status::ok);
    CHECK(res.body() == R"({"status":"ok"})");
    CHECK(res[http::field::cache_control] == "no-cache");
  }

  SUBCASE("readyz with a fresh source") {
    auto res = f.send("/readyz");
    CHECK(res.result() == http::status::ok);
    CHECK(res.body() == R"({"status":"ready"})");
  }

  SUBCASE("readyz without any fresh source") {
    temp_db_file file;
    somrated::store db{file.path()};
    somrated::scrape_record r{"nbkr", f.now - 4h, 0ms, 200, "ok", ""};
    db.log_scrape(r);
    auto res = f.api.handle(http_request{http::verb::get, "/readyz", 11}, db);
    CHECK(res.result() == http::status::service_unavailable);
    auto v = json_of(res);
    CHECK(str(v, "status") == "not_ready");
    const std::string reason = str(v, "reason");
    CHECK(contains(reason, "within 3 intervals"));
    CHECK(contains(reason, "24kg last succeeded never"));
    CHECK(contains(reason, "nbkr last succeeded " + somrated::format_rfc3339(f.now - 4h)));
  }

  SUBCASE("readyz with no sources configured") {
    auto cfg = std::make_shared<somrated::config>();
    somrated::api a{cfg, f.board};
    auto res = a.handle(http_request{http::verb::get, "/readyz", 11}, f.db);
    CHECK(res.result() == http::status::service_unavailable);
    CHECK(contains(str(json_of(res), "reason"), "no sources"));
  }

  SUBCASE("index") {
    auto v = json_of(f.send("/"));
    CHECK(str(v, "name") == "somrated");
    CHECK(str(v, "version") == somrated::version);
    std::vector<std::string> paths;
    for (const auto& p : v.at("endpoints").as_array()) paths.emplace_back(p.as_string());
    CHECK(paths == std::vector<std::string>{"/",
                                            "/api/v1/latest",
                                            "/api/v1/history",
                                            "/api/v1/sources",
                                            "/api/v1/alerts",
                                            "/api/v1/alerts/events",
                                            "/api/v1/alerts/{name}",
                                            "/api/v1/alerts/{name}/test",
                                            "/api/v1/convert",
                                            "/v1/latest",
                                            "/v1/currencies",
                                            "/v1/{name}",
                                            "/grafana",
                                            "/grafana/metrics",
                                            "/grafana/metric-payload-options",
                                            "/grafana/query",
                                            "/grafana/variable",
                                            "/grafana/tag-keys",
                                            "/grafana/tag-values",
                                            "/metrics",
                                            "/chart/{name}",
                                            "/healthz",
                                            "/readyz"});
  }
}

TEST_CASE("api read answers carry an ETag and revalidate to 304") {
  api_fixture f;
  const auto first = f.send("/api/v1/latest");
  REQUIRE(first.result() == http::status::ok);
  const std::string etag(first[http::field::etag]);
  REQUIRE(etag.size() == 18);
  CHECK(etag.front() == '"');
  CHECK(first[http::field::cache_control] == "no-cache");
  CHECK(f.send("/api/v1/latest")[http::field::etag] == etag);  // same data, same tag
  CHECK(f.send("/api/v1/latest?symbols=USD")[http::field::etag] != etag);

  auto conditional = [&](std::string_view inm) {
    http_request req{http::verb::get, "/api/v1/latest", 11};
    req.set(http::field::if_none_match, inm);
    return f.api.handle(req, f.db);
  };
  for (const std::string& inm :
       {etag, "W/" + etag, "\"0000000000000000\", " + etag, std::string("*")}) {
    CAPTURE(inm);
    const auto res = conditional(inm);
    CHECK(res.result() == http::status::not_modified);
    CHECK(res.body().empty());
    CHECK(res[http::field::etag] == etag);
  }
  CHECK(conditional("\"0000000000000000\"").result() == http::status::ok);
  // Errors carry no validator.
  CHECK(f.send("/api/v1/latest?source=nope")[http::field::etag].empty());
}

TEST_CASE("api::error builds the JSON error body") {
  auto res = somrated::api::error(11, http::status::payload_too_large, "body_too_large",
                                  "body exceeds 65536 bytes; \"quoted\"\n");
  CHECK(res.version() == 11);
  auto msg = error_message(res, http::status::payload_too_large, "body_too_large");
  CHECK(msg == "body exceeds 65536 bytes; \"quoted\"\n");
  CHECK(res[http::field::content_length] == std::to_string(res.body().size()));
}

TEST_CASE("api answers latest from its cache on the network thread until the store changes") {
  temp_db_file file;
  somrated::store db{file.path(), somrated::store::mode::read_write};
  somrated::source_board board;
  std::atomic<std::uint64_t> writes{0};
  somrated::api api{test_config(), board, nullptr, {}, nullptr, &writes};
  std::vector<somrated::rate_quote> q{{"USD", dec("87.45")}};
  db.record("24kg", t0, q, std::nullopt, 0.25);
  writes += 2;  // one writer job, started and finished

  http_request req{http::verb::get, "/api/v1/latest", 11};
  // Nothing is cached yet: the request needs a reader.
  CHECK_FALSE(api.cached(req));
  CHECK_FALSE(api.handle_without_store(req));
  const http_response first = api.handle(req, db);
  REQUIRE(first.result() == http::status::ok);

  // The same request is now answered without the store, byte for byte.
  auto cached = api.cached(req);
  REQUIRE(cached);
  CHECK(cached->route == "/api/v1/latest");
  CHECK(cached->res.result() == http::status::ok);
  CHECK(cached->res.body() == first.body());
  CHECK(cached->res[http::field::etag] == first[http::field::etag]);
  CHECK(cached->res[http::field::access_control_allow_origin] == "*");
  CHECK(cached->res[http::field::content_type] == "application/json; charset=utf-8");
  http_request head{http::verb::head, "/api/v1/latest", 11};
  CHECK(api.cached(head));
  CHECK_FALSE(api.cached(http_request{http::verb::post, "/api/v1/latest", 11}));

  SUBCASE("a conditional request gets its 304 from the cache") {
    http_request cond = req;
    cond.set(http::field::if_none_match, first[http::field::etag]);
    auto hit = api.cached(cond);
    REQUIRE(hit);
    CHECK(hit->res.result() == http::status::not_modified);
    CHECK(hit->res.body().empty());
    cond.set(http::field::if_none_match, "\"0000000000000000\"");
    CHECK(api.cached(cond)->res.result() == http::status::ok);
  }

  SUBCASE("other parameters, versions and routes are not served from it") {
    CHECK_FALSE(api.cached(http_request{http::verb::get, "/api/v1/latest?pretty", 11}));
    CHECK_FALSE(api.cached(http_request{http::verb::get, "/api/v1/latest", 10}));
    http_request hist{http::verb::get, "/api/v1/history?currency=USD", 11};
    REQUIRE(api.handle(hist, db).result() == http::status::ok);
    CHECK_FALSE(api.cached(hist));
    http_request bad{http::verb::get, "/api/v1/latest?source=nope", 11};
    CHECK(api.handle(bad, db).result() == http::status::not_found);
    CHECK_FALSE(api.cached(bad));
  }

  SUBCASE("a committed write makes the next request read the store again") {
    std::vector<somrated::rate_quote> q2{{"USD", dec("87.50")}};
    ++writes;  // the job starts: nothing is served from the cache while it runs
    CHECK_FALSE(api.cached(req));
    db.record("24kg", t0 + 1h, q2, std::nullopt, 0.25);
    CHECK_FALSE(api.cached(req));
    // Answers computed while it runs are not kept.
    CHECK(contains(api.handle(req, db).body(), R"("rate":87.50)"));
    ++writes;
    CHECK_FALSE(api.cached(req));
    const http_response second = api.handle(req, db);
    CHECK(contains(second.body(), R"("rate":87.50)"));
    REQUIRE(api.cached(req));
    CHECK(api.cached(req)->res.body() == second.body());
  }

  SUBCASE("a reload empties it") {
    api.set_config(test_config());
    CHECK_FALSE(api.cached(req));
  }
}

TEST_CASE("api without a write counter never caches") {
  api_fixture f;
  http_request req{http::verb::get, "/api/v1/latest", 11};
  REQUIRE(f.api.handle(req, f.db).result() == http::status::ok);
  CHECK_FALSE(f.api.cached(req));
}
