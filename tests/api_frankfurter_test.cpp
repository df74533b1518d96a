// The Frankfurter v1 compatible paths and /api/v1/convert, answered without sockets.

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <doctest/doctest.h>
#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include "somrated/api.hpp"
#include "somrated/source_board.hpp"
#include "somrated/store.hpp"

using namespace std::chrono_literals;
namespace http = boost::beast::http;
using somrated::http_request;
using somrated::http_response;
using somrated::timestamp;

namespace {

/// Midnight UTC of a day in June 2025.
timestamp june(unsigned day) {
  return timestamp{std::chrono::sys_days{std::chrono::year{2025} / 6 / day}};
}

/// A day in June 2025.
std::chrono::sys_days june_day(unsigned day) {
  return std::chrono::sys_days{std::chrono::year{2025} / 6 / day};
}

/// A decimal from text that the test knows is valid.
somrated::decimal dec(std::string_view text) {
  auto d = somrated::decimal::parse(text);
  REQUIRE(d);
  return *d;
}

/// Sources: 24kg (a market source, first so the default), nbkr (rates set a day ahead,
/// with effective dates) and one that never produced data.
std::shared_ptr<const somrated::config> fx_config() {
  auto cfg = std::make_shared<somrated::config>();
  somrated::source_config kg;
  kg.name = "24kg";
  kg.kind = "24kg";
  kg.url = "file:///dev/null";
  somrated::source_config nbkr;
  nbkr.name = "nbkr";
  nbkr.kind = "nbkr";
  nbkr.url = "file:///dev/null";
  somrated::source_config empty;
  empty.name = "empty";
  empty.kind = "24kg";
  empty.url = "file:///dev/null";
  cfg->sources = {kg, nbkr, empty};
  return cfg;
}

/// A store with known rates and an api over it.
///
/// 24kg (KGS per unit):      USD     EUR     RUB
///   06-10 06:00             87.45   99.56   1.10
///   06-10 18:00             87.50   (closing value of the 10th)
///   06-11 09:00             87.60   100.00
///   06-12                   (nothing changes: the 11th's values stay in force)
///   06-13 12:00             88.00   101.20  1.12   (confirmed 15:00; the newest day)
///
/// nbkr, each set at 09:30 UTC the day before it takes effect:
///   effective 06-10: USD 87.3000 EUR 99.0000   (set 06-09)
///   effective 06-11: USD 87.4500 EUR 99.1234   (set 06-10)
///   effective 06-12: USD 87.5000 EUR 99.2000   (set 06-11; confirmed 06-12 for the 13th)
struct fx_fixture {
  somrated::store db{":memory:"};
  somrated::source_board board;
  somrated::api api{fx_config(), board};

  fx_fixture() {
    kg(june(10) + 6h, "87.45", "99.56", "1.10");
    kg(june(10) + 18h, "87.50", "99.56", "1.10");
    kg(june(11) + 9h, "87.60", "100.00", "1.10");
    kg(june(13) + 12h, "88.00", "101.20", "1.12");
    kg(june(13) + 15h, "88.00", "101.20", "1.12");
    nbkr(june(9), 10, "87.3000", "99.0000");
    nbkr(june(10), 11, "87.4500", "99.1234");
    nbkr(june(11), 12, "87.5000", "99.2000");
    nbkr(june(12), 13, "87.5000", "99.2000");
  }

  /// Records one 24kg scrape.
  void kg(timestamp at, std::string_view usd, std::string_view eur, std::string_view rub) {
    std::vector<somrated::rate_quote> q{{"USD", dec(usd)}, {"EUR", dec(eur)}, {"RUB", dec(rub)}};
    db.record("24kg", at, q, std::nullopt, 0.25);
  }

  /// Records NBKR's rates set at 09:30 on set_day, taking effect on June effective.
  void nbkr(timestamp set_day, unsigned effective, std::string_view usd, std::string_view eur) {
    std::vector<somrated::rate_quote> q{{"USD", dec(usd)}, {"EUR", dec(eur)}};
    db.record("nbkr", set_day + 9h + 30min, q, june_day(effective), 0.25);
  }

  /// Sends one GET.
  http_response get(std::string target) {
    http_request req{http::verb::get, target, 11};
    return api.handle(req, db);
  }

  /// The body of a 200 answer to target.
  std::string ok(std::string target) {
    http_response res = get(target);
    INFO(target, " -> ", res.body());
    CHECK(res.result() == http::status::ok);
    CHECK(res[http::field::content_type] == "application/json; charset=utf-8");
    return res.body();
  }

  /// The message of a Frankfurter error answer ({"message": ...} and nothing else).
  std::string fx_error(std::string target, http::status status) {
    http_response res = get(target);
    INFO(target, " -> ", res.body());
    CHECK(res.result() == status);
    CHECK(res[http::field::content_type] == "application/json; charset=utf-8");
    boost::system::error_code ec;
    boost::json::value v = boost::json::parse(res.body(), ec);
    REQUIRE_FALSE(ec);
    REQUIRE(v.is_object());
    REQUIRE(v.as_object().size() == 1);
    REQUIRE(v.as_object().contains("message"));
    REQUIRE(v.at("message").is_string());
    return std::string(v.at("message").as_string());
  }

  /// The code of a somrated error answer ({"error": {code, message}}).
  std::string api_error(std::string target, http::status status) {
    http_response res = get(target);
    INFO(target, " -> ", res.body());
    CHECK(res.result() == status);
    boost::system::error_code ec;
    boost::json::value v = boost::json::parse(res.body(), ec);
    REQUIRE_FALSE(ec);
    REQUIRE(v.is_object());
    REQUIRE(v.as_object().contains("error"));
    return std::string(v.at("error").at("code").as_string());
  }
};

/// The body parsed as JSON.
boost::json::value parsed(std::string_view body) {
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(body, ec);
  INFO("body: ", body);
  REQUIRE_FALSE(ec);
  return v;
}

/// True for "YYYY-MM-DD".
bool is_date(const boost::json::value& v) {
  if (!v.is_string()) return false;
  const std::string_view s = v.as_string();
  return s.size() == 10 && s[4] == '-' && s[7] == '-';
}

/// Checks a Frankfurter `rates` object: at least one member, codes of three capitals,
/// positive numbers.
void check_rates(const boost::json::value& rates) {
  REQUIRE(rates.is_object());
  CHECK_FALSE(rates.as_object().empty());
  for (const auto& kv : rates.as_object()) {
    const std::string_view code = kv.key();
    CHECK(code.size() == 3);
    for (char c : code) CHECK((c >= 'A' && c <= 'Z'));
    REQUIRE(kv.value().is_number());
    CHECK(kv.value().to_number<double>() > 0);
  }
}

/// Checks the spec's ratesOnDate: amount (> 0), base, date and rates, in that order.
void check_rates_on_date(std::string_view body) {
  auto v = parsed(body);
  REQUIRE(v.is_object());
  const auto& o = v.as_object();
  std::vector<std::string> keys;
  for (const auto& kv : o) keys.emplace_back(kv.key());
  CHECK(keys == std::vector<std::string>{"amount", "base", "date", "rates"});
  REQUIRE(o.contains("amount"));
  CHECK(o.at("amount").to_number<double>() > 0);
  CHECK(o.at("base").is_string());
  CHECK(is_date(o.at("date")));
  check_rates(o.at("rates"));
}

/// Checks the spec's RatesDuringPeriod: amount, base, start_date, end_date and rates
/// keyed by date, the first and last keys being start_date and end_date.
void check_rates_during_period(std::string_view body) {
  auto v = parsed(body);
  REQUIRE(v.is_object());
  const auto& o = v.as_object();
  std::vector<std::string> keys;
  for (const auto& kv : o) keys.emplace_back(kv.key());
  CHECK(keys == std::vector<std::string>{"amount", "base", "start_date", "end_date", "rates"});
  REQUIRE(o.contains("rates"));
  const auto& rates = o.at("rates").as_object();
  REQUIRE_FALSE(rates.empty());
  std::string last;
  for (const auto& kv : rates) {
    CHECK(kv.key().size() == 10);
    CHECK(std::string(kv.key()) > last);  // ascending dates
    last = kv.key();
    check_rates(kv.value());
  }
  CHECK(o.at("start_date").as_string() == rates.begin()->key());
  CHECK(o.at("end_date").as_string() == last);
}

}  // namespace

TEST_CASE("frankfurter latest") {
  fx_fixture f;
  SUBCASE("KGS is the base: rates are what one som buys, quoted by magnitude") {
    const std::string body = f.ok("/v1/latest");
    check_rates_on_date(body);
    // 1/88.00, 1/101.20, 1/1.12, rounded half-even to five places.
    CHECK(body == R"({"amount":1.0,"base":"KGS","date":"2025-06-13","rates":{"EUR":0.00988,)"
                  R"("RUB":0.89286,"USD":0.01136}})");
    CHECK(f.get("/v1/latest")["X-Somrated-Source"] == "24kg");
  }
  SUBCASE("another base: the som keeps its published digits, cross rates go through it") {
    // 88.00/101.20 = 0.869565..., 88.00/1.12 = 78.5714... (three places above 20).
    CHECK(f.ok("/v1/latest?base=USD") ==
          R"({"amount":1.0,"base":"USD","date":"2025-06-13","rates":{"EUR":0.86957,)"
          R"("KGS":88.00,"RUB":78.571}})");
  }
  SUBCASE("symbols pick the rates, and to/from are aliases") {
    const std::string want =
        R"({"amount":1.0,"base":"USD","date":"2025-06-13","rates":{"EUR":0.86957}})";
    CHECK(f.ok("/v1/latest?base=USD&symbols=EUR") == want);
    CHECK(f.ok("/v1/latest?from=USD&to=EUR") == want);
    CHECK(f.ok("/v1/latest?from=usd&to=eur") == want);
    // from wins over base and to over symbols, as in Frankfurter.
    CHECK(f.ok("/v1/latest?base=RUB&from=USD&symbols=RUB&to=EUR") == want);
    CHECK(f.ok("/v1/latest?symbols=USD,EUR") ==
          R"({"amount":1.0,"base":"KGS","date":"2025-06-13","rates":{"EUR":0.00988,)"
          R"("USD":0.01136}})");
    CHECK(f.ok("/v1/latest?base=EUR&symbols=KGS") ==
          R"({"amount":1.0,"base":"EUR","date":"2025-06-13","rates":{"KGS":101.20}})");
    // The base among the symbols is left out.
    CHECK(f.ok("/v1/latest?base=USD&symbols=USD,EUR") == want);
  }
  SUBCASE("amount scales before the one rounding; products stay exact") {
    // 100 × 88.00 / 101.20 = 86.9565... (two places above 80); 100 × 88.00 exactly.
    CHECK(f.ok("/v1/latest?amount=100&base=USD&symbols=EUR,KGS") ==
          R"({"amount":100,"base":"USD","date":"2025-06-13","rates":{"EUR":86.96,)"
          R"("KGS":8800.00}})");
    // 2.5 / 88.00 = 0.0284090...
    CHECK(f.ok("/v1/latest?amount=2.5&symbols=USD") ==
          R"({"amount":2.5,"base":"KGS","date":"2025-06-13","rates":{"USD":0.02841}})");
    CHECK(f.ok("/v1/latest?amount=1&from=USD&to=KGS") ==
          R"({"amount":1,"base":"USD","date":"2025-06-13","rates":{"KGS":88.00}})");
  }
  SUBCASE("unknown symbols find nothing") {
    CHECK(f.fx_error("/v1/latest?symbols=XYZ", http::status::not_found) == "not found");
    CHECK(f.fx_error("/v1/latest?base=XYZ", http::status::not_found) == "not found");
    CHECK(f.fx_error("/v1/latest?symbols=", http::status::not_found) == "not found");
    CHECK(f.fx_error("/v1/latest?symbols=US", http::status::not_found) == "not found");
    // Known ones are answered, unknown ones dropped.
    CHECK(f.ok("/v1/latest?symbols=USD,XYZ") ==
          R"({"amount":1.0,"base":"KGS","date":"2025-06-13","rates":{"USD":0.01136}})");
    // Parameters Frankfurter does not know are ignored, as Frankfurter does.
    CHECK(f.ok("/v1/latest?symbols=USD&callback=x") ==
          R"({"amount":1.0,"base":"KGS","date":"2025-06-13","rates":{"USD":0.01136}})");
    // No base given: KGS, which has no rate against itself.
    CHECK(f.fx_error("/v1/latest?symbols=KGS", http::status::not_found) == "not found");
  }
  SUBCASE("bad pairs and amounts are Frankfurter's 422") {
    CHECK(f.fx_error("/v1/latest?base=USD&symbols=USD", http::status::unprocessable_entity) ==
          "bad currency pair");
    CHECK(f.fx_error("/v1/latest?from=kgs&to=KGS", http::status::unprocessable_entity) ==
          "bad currency pair");
    for (const char* amount : {"0", "0.00", "-1", "abc", "1e3", "", "1.2345678901234"}) {
      CAPTURE(amount);
      CHECK(f.fx_error(std::string("/v1/latest?amount=") + amount,
                       http::status::unprocessable_entity) == "invalid amount");
    }
    CHECK(f.fx_error("/v1/latest?amount=999999999999999999&base=USD&symbols=KGS",
                     http::status::unprocessable_entity)
              .starts_with("invalid amount"));
  }
  SUBCASE("current is an alias") {
    CHECK(f.ok("/v1/current?base=USD") == f.ok("/v1/latest?base=USD"));
  }
  SUBCASE("sources") {
    // nbkr's newest rate takes effect on the 13th: that is its date.
    CHECK(f.ok("/v1/latest?source=nbkr") ==
          R"({"amount":1.0,"base":"KGS","date":"2025-06-13","rates":{"EUR":0.01008,)"
          R"("USD":0.01143}})");
    CHECK(f.get("/v1/latest?source=nbkr")["X-Somrated-Source"] == "nbkr");
    CHECK(f.fx_error("/v1/latest?source=empty", http::status::not_found) == "not found");
    const std::string msg = f.fx_error("/v1/latest?source=ecb", http::status::not_found);
    CHECK(msg.find("\"ecb\"") != std::string::npos);
    CHECK(msg.find("24kg, nbkr, empty") != std::string::npos);
  }
  SUBCASE("pretty") {
    const std::string body = f.ok("/v1/latest?symbols=USD&pretty");
    CHECK(body.find("\n  \"rates\": {\n    \"USD\": 0.01136\n  }") != std::string::npos);
    CHECK(parsed(body) == parsed(f.ok("/v1/latest?symbols=USD")));
  }
  SUBCASE("answers revalidate like every read") {
    http_response res = f.get("/v1/latest");
    CHECK_FALSE(res[http::field::etag].empty());
    CHECK(res[http::field::access_control_allow_origin] == "*");
  }
}

TEST_CASE("frankfurter single dates") {
  fx_fixture f;
  SUBCASE("a market source's day is its closing value") {
    // USD changed twice on the 10th; the later one was in force at the day's end.
    CHECK(f.ok("/v1/2025-06-10?base=USD&symbols=KGS") ==
          R"({"amount":1.0,"base":"USD","date":"2025-06-10","rates":{"KGS":87.50}})");
    check_rates_on_date(f.ok("/v1/2025-06-10"));
    CHECK(f.ok("/v1/2025-06-11?base=EUR&symbols=KGS,USD") ==
          R"({"amount":1.0,"base":"EUR","date":"2025-06-11","rates":{"KGS":100.00,)"
          R"("USD":1.1416}})");  // 100.00 / 87.60 = 1.14155...
  }
  SUBCASE("a day without changes has the value still in force") {
    CHECK(f.ok("/v1/2025-06-12?base=USD&symbols=KGS") ==
          R"({"amount":1.0,"base":"USD","date":"2025-06-12","rates":{"KGS":87.60}})");
  }
  SUBCASE("a day after the newest data answers the newest, as Frankfurter does") {
    CHECK(f.ok("/v1/2030-01-01?base=USD&symbols=KGS") ==
          R"({"amount":1.0,"base":"USD","date":"2025-06-13","rates":{"KGS":88.00}})");
    CHECK(f.ok("/v1/2025-06-13") == f.ok("/v1/latest"));
  }
  SUBCASE("a day before any data is not found") {
    CHECK(f.fx_error("/v1/2025-06-09", http::status::not_found) == "not found");
    CHECK(f.fx_error("/v1/1960-01-01", http::status::not_found) == "not found");
  }
  SUBCASE("a source that sets rates a day ahead: the rate taking effect that day") {
    CHECK(f.ok("/v1/2025-06-10?source=nbkr&base=USD&symbols=KGS") ==
          R"({"amount":1.0,"base":"USD","date":"2025-06-10","rates":{"KGS":87.3000}})");
    CHECK(f.ok("/v1/2025-06-11?source=nbkr&base=USD&symbols=KGS,EUR") ==
          R"({"amount":1.0,"base":"USD","date":"2025-06-11","rates":{"EUR":0.88223,)"
          R"("KGS":87.4500}})");  // 87.45 / 99.1234 = 0.882233...
    CHECK(f.ok("/v1/2025-06-13?source=nbkr&base=USD&symbols=KGS") ==
          R"({"amount":1.0,"base":"USD","date":"2025-06-13","rates":{"KGS":87.5000}})");
    CHECK(f.ok("/v1/2025-07-01?source=nbkr&base=USD&symbols=KGS") ==
          R"({"amount":1.0,"base":"USD","date":"2025-06-13","rates":{"KGS":87.5000}})");
    // Set on the 9th for the 10th: nothing was in force on the 9th.
    CHECK(f.fx_error("/v1/2025-06-09?source=nbkr", http::status::not_found) == "not found");
  }
  SUBCASE("impossible dates are 422, paths that are no date 404") {
    for (const char* bad : {"2025-02-30", "2025-13-01", "2025-00-10", "2025-06-31"}) {
      CAPTURE(bad);
      CHECK(f.fx_error(std::string("/v1/") + bad, http::status::unprocessable_entity) ==
            "invalid date");
    }
    for (const char* bad : {"2025-6-1", "20250610", "yesterday", "2025-06-10x", "2025-06-10...",
                            "..2025-06-10", "2025-06-10..2025-6-1", "x2025-06-10"}) {
      CAPTURE(bad);
      CHECK(f.fx_error(std::string("/v1/") + bad, http::status::not_found) == "not found");
    }
  }
  SUBCASE("parameters are checked on dates too") {
    CHECK(f.fx_error("/v1/2025-06-10?base=EUR&to=EUR", http::status::unprocessable_entity) ==
          "bad currency pair");
    CHECK(f.fx_error("/v1/2025-06-10?amount=0", http::status::unprocessable_entity) ==
          "invalid amount");
    CHECK(f.fx_error("/v1/2025-06-10?symbols=XYZ", http::status::not_found) == "not found");
  }
}

TEST_CASE("frankfurter ranges") {
  fx_fixture f;
  SUBCASE("every day in the range, keyed by date") {
    const std::string body = f.ok("/v1/2025-06-10..2025-06-13?base=USD&symbols=KGS");
    check_rates_during_period(body);
    CHECK(body == R"({"amount":1.0,"base":"USD","start_date":"2025-06-10","end_date":"2025-06-13",)"
                  R"("rates":{"2025-06-10":{"KGS":87.50},"2025-06-11":{"KGS":87.60},)"
                  R"("2025-06-12":{"KGS":87.60},"2025-06-13":{"KGS":88.00}}})");
  }
  SUBCASE("cross rates and amounts per day") {
    // 10 × 99.56 / 87.50 = 11.37828...; 10 × 100.00 / 87.60 = 11.41552...
    CHECK(f.ok("/v1/2025-06-10..2025-06-11?base=EUR&symbols=USD&amount=10") ==
          R"({"amount":10,"base":"EUR","start_date":"2025-06-10","end_date":"2025-06-11",)"
          R"("rates":{"2025-06-10":{"USD":11.3783},"2025-06-11":{"USD":11.4155}}})");
    check_rates_during_period(f.ok("/v1/2025-06-10..2025-06-13"));
  }
  SUBCASE("start and end are the first and last days with data") {
    CHECK(f.ok("/v1/2025-06-01..2025-06-10?base=USD&symbols=KGS") ==
          R"({"amount":1.0,"base":"USD","start_date":"2025-06-10","end_date":"2025-06-10",)"
          R"("rates":{"2025-06-10":{"KGS":87.50}}})");
    CHECK(f.ok("/v1/2025-06-12..2030-01-01?base=USD&symbols=KGS") ==
          R"({"amount":1.0,"base":"USD","start_date":"2025-06-12","end_date":"2025-06-13",)"
          R"("rates":{"2025-06-12":{"KGS":87.60},"2025-06-13":{"KGS":88.00}}})");
  }
  SUBCASE("open-ended: until the newest data") {
    CHECK(f.ok("/v1/2025-06-12..?base=USD&symbols=KGS") ==
          f.ok("/v1/2025-06-12..2025-06-13?base=USD&symbols=KGS"));
    check_rates_during_period(f.ok("/v1/2025-06-11.."));
  }
  SUBCASE("one day") {
    CHECK(f.ok("/v1/2025-06-11..2025-06-11?base=USD&symbols=KGS") ==
          R"({"amount":1.0,"base":"USD","start_date":"2025-06-11","end_date":"2025-06-11",)"
          R"("rates":{"2025-06-11":{"KGS":87.60}}})");
  }
  SUBCASE("nothing in the range is not found") {
    CHECK(f.fx_error("/v1/2025-06-14..", http::status::not_found) == "not found");
    CHECK(f.fx_error("/v1/2025-05-01..2025-05-31", http::status::not_found) == "not found");
    CHECK(f.fx_error("/v1/2025-06-12..2025-06-10", http::status::not_found) == "not found");
    CHECK(f.fx_error("/v1/2025-06-10..2025-06-13?symbols=XYZ", http::status::not_found) ==
          "not found");
  }
  SUBCASE("impossible dates in a range are 422") {
    CHECK(f.fx_error("/v1/2025-06-10..2025-06-31", http::status::unprocessable_entity) ==
          "invalid date");
    CHECK(f.fx_error("/v1/2025-02-29..", http::status::unprocessable_entity) == "invalid date");
  }
  SUBCASE("a source that sets rates a day ahead is keyed by the day each takes effect") {
    CHECK(f.ok("/v1/2025-06-01..?source=nbkr&base=USD&symbols=KGS") ==
          R"({"amount":1.0,"base":"USD","start_date":"2025-06-10","end_date":"2025-06-13",)"
          R"("rates":{"2025-06-10":{"KGS":87.3000},"2025-06-11":{"KGS":87.4500},)"
          R"("2025-06-12":{"KGS":87.5000},"2025-06-13":{"KGS":87.5000}}})");
  }
  SUBCASE("a range agrees with the single days") {
    const auto range = parsed(f.ok("/v1/2025-06-10..2025-06-13?base=EUR"));
    for (const char* day : {"2025-06-10", "2025-06-11", "2025-06-12", "2025-06-13"}) {
      CAPTURE(day);
      const auto single = parsed(f.ok(std::string("/v1/") + day + "?base=EUR"));
      CHECK(single.at("rates") == range.at("rates").at(day));
    }
  }
}

TEST_CASE("frankfurter currencies") {
  fx_fixture f;
  CHECK(f.ok("/v1/currencies") ==
        R"({"EUR":"Euro","KGS":"Kyrgyzstani Som","RUB":"Russian Ruble","USD":"US Dollar"})");
  CHECK(f.ok("/v1/currencies?source=nbkr") ==
        R"({"EUR":"Euro","KGS":"Kyrgyzstani Som","USD":"US Dollar"})");
  CHECK(f.ok("/v1/currencies?source=empty") == R"({"KGS":"Kyrgyzstani Som"})");
  CHECK(f.fx_error("/v1/currencies?source=ecb", http::status::not_found).starts_with("source:"));
  SUBCASE("a code without a known name is named by itself") {
    std::vector<somrated::rate_quote> q{{"XYZ", dec("3.5")}};
    f.db.record("24kg", june(13) + 16h, q, std::nullopt, 0.25);
    const auto v = parsed(f.ok("/v1/currencies"));
    CHECK(v.at("XYZ") == "XYZ");
  }
}

TEST_CASE("convert") {
  fx_fixture f;
  SUBCASE("a cross rate: ten significant digits, the result from the exact inputs") {
    // 88.00 / 101.20 = 0.86956521739...; 100 × 88.00 / 101.20 = 86.956521739...
    CHECK(f.ok("/api/v1/convert?from=USD&to=EUR&amount=100") ==
          R"({"from":"USD","to":"EUR","amount":100,"rate":0.8695652174,"result":86.95652174,)"
          R"("date":"2025-06-13","source":"24kg","kgs_rates":{"USD":88.00,"EUR":101.20}})");
  }
  SUBCASE("into som: exact") {
    CHECK(f.ok("/api/v1/convert?from=USD&to=KGS&amount=100") ==
          R"({"from":"USD","to":"KGS","amount":100,"rate":88.00,"result":8800.00,)"
          R"("date":"2025-06-13","source":"24kg","kgs_rates":{"USD":88.00}})");
    CHECK(f.ok("/api/v1/convert?from=rub&to=kgs&amount=2.5") ==
          R"({"from":"RUB","to":"KGS","amount":2.5,"rate":1.12,"result":2.800,)"
          R"("date":"2025-06-13","source":"24kg","kgs_rates":{"RUB":1.12}})");
  }
  SUBCASE("from som") {
    // 1 / 88.00 = 0.0113636363636...; 1000 / 88.00 = 11.363636363...
    CHECK(f.ok("/api/v1/convert?from=KGS&to=USD&amount=1000") ==
          R"({"from":"KGS","to":"USD","amount":1000,"rate":0.01136363636,)"
          R"("result":11.36363636,"date":"2025-06-13","source":"24kg",)"
          R"("kgs_rates":{"USD":88.00}})");
  }
  SUBCASE("the same currency, and the default amount of 1") {
    CHECK(f.ok("/api/v1/convert?from=EUR&to=EUR&amount=7.25") ==
          R"({"from":"EUR","to":"EUR","amount":7.25,"rate":1,"result":7.25,)"
          R"("date":"2025-06-13","source":"24kg","kgs_rates":{"EUR":101.20}})");
    CHECK(f.ok("/api/v1/convert?from=EUR&to=KGS") ==
          R"({"from":"EUR","to":"KGS","amount":1,"rate":101.20,"result":101.20,)"
          R"("date":"2025-06-13","source":"24kg","kgs_rates":{"EUR":101.20}})");
  }
  SUBCASE("on a date, another source") {
    CHECK(f.ok("/api/v1/convert?from=USD&to=KGS&amount=2&date=2025-06-10") ==
          R"({"from":"USD","to":"KGS","amount":2,"rate":87.50,"result":175.00,)"
          R"("date":"2025-06-10","source":"24kg","kgs_rates":{"USD":87.50}})");
    CHECK(f.ok("/api/v1/convert?from=USD&to=KGS&date=2025-06-11&source=nbkr") ==
          R"({"from":"USD","to":"KGS","amount":1,"rate":87.4500,"result":87.4500,)"
          R"("date":"2025-06-11","source":"nbkr","kgs_rates":{"USD":87.4500}})");
    // After the newest data: the newest.
    CHECK(parsed(f.ok("/api/v1/convert?from=USD&to=KGS&date=2026-01-01")).at("date") ==
          "2025-06-13");
  }
  SUBCASE("refusals in somrated's error shape") {
    CHECK(f.api_error("/api/v1/convert?to=EUR", http::status::bad_request) == "missing_parameter");
    CHECK(f.api_error("/api/v1/convert?from=USD", http::status::bad_request) ==
          "missing_parameter");
    CHECK(f.api_error("/api/v1/convert?from=US&to=EUR", http::status::bad_request) ==
          "invalid_parameter");
    CHECK(f.api_error("/api/v1/convert?from=USD&to=EUR&amount=0", http::status::bad_request) ==
          "invalid_parameter");
    CHECK(f.api_error("/api/v1/convert?from=USD&to=EUR&amount=-5", http::status::bad_request) ==
          "invalid_parameter");
    CHECK(f.api_error("/api/v1/convert?from=USD&to=EUR&date=June", http::status::bad_request) ==
          "invalid_parameter");
    CHECK(f.api_error("/api/v1/convert?from=USD&to=XYZ", http::status::not_found) ==
          "unknown_currency");
    CHECK(f.api_error("/api/v1/convert?from=USD&to=EUR&date=2025-06-01", http::status::not_found) ==
          "no_rate");
    CHECK(f.api_error("/api/v1/convert?from=USD&to=EUR&source=empty", http::status::not_found) ==
          "no_data");
    CHECK(f.api_error("/api/v1/convert?from=USD&to=EUR&source=ecb", http::status::not_found) ==
          "unknown_source");
    CHECK(f.api_error("/api/v1/convert?from=USD&to=KGS&amount=999999999999999999",
                      http::status::bad_request) == "invalid_parameter");
  }
}
