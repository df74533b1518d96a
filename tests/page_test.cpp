#include "somrated/page.hpp"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <doctest/doctest.h>
#include <fmt/format.h>
#include <libxml/HTMLparser.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <boost/url/parse.hpp>

#include "somrated/api.hpp"
#include "somrated/chart_svg.hpp"
#include "somrated/source_board.hpp"
#include "somrated/store.hpp"

using namespace std::chrono_literals;
namespace http = boost::beast::http;
using somrated::http_request;
using somrated::http_response;
using somrated::timestamp;

namespace {

/// A hostile source name: markup, both quotes and an ampersand.
constexpr std::string_view hostile_source = R"(<src "a"&'b'>)";
/// A hostile alert rule name.
constexpr std::string_view hostile_rule = "<script>alert(1)</script>";
/// A hostile measured value.
constexpr std::string_view hostile_value = R"("><img src=x onerror=alert(2)>)";

/// A decimal from text that the test knows is valid.
somrated::decimal dec(std::string_view text) {
  auto d = somrated::decimal::parse(text);
  REQUIRE(d);
  return *d;
}

/// True when haystack contains needle.
bool contains(std::string_view haystack, std::string_view needle) {
  return haystack.find(needle) != std::string_view::npos;
}

/// Occurrences of c in text.
std::size_t count_of(std::string_view text, char c) {
  return static_cast<std::size_t>(std::count(text.begin(), text.end(), c));
}

/// A database file in the temp directory, removed with its WAL files at the end.
class temp_db_file {
 public:
  temp_db_file() {
    std::random_device rd;
    path_ = std::filesystem::temp_directory_path() /
            fmt::format("somrated-page-test-{:08x}{:08x}.db", rd(), rd());
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

/// A parsed document (HTML or XML) with XPath queries over it.
class parsed_doc {
 public:
  /// Parses text as HTML (html) or as XML; fails the test when XML is not well-formed.
  parsed_doc(std::string_view text, bool html) {
    const int size = static_cast<int>(text.size());
    if (html) {
      doc_ = htmlReadMemory(text.data(), size, nullptr, "UTF-8",
                            HTML_PARSE_NOERROR | HTML_PARSE_NOWARNING | HTML_PARSE_NONET);
    } else {
      doc_ = xmlReadMemory(text.data(), size, nullptr, nullptr,
                           XML_PARSE_NOERROR | XML_PARSE_NOWARNING | XML_PARSE_NONET);
    }
    REQUIRE(doc_ != nullptr);
    ctx_ = xmlXPathNewContext(doc_);
    REQUIRE(ctx_ != nullptr);
    xmlXPathRegisterNs(ctx_, BAD_CAST "svg", BAD_CAST "http://www.w3.org/2000/svg");
  }
  ~parsed_doc() {
    xmlXPathFreeContext(ctx_);
    xmlFreeDoc(doc_);
  }
  parsed_doc(const parsed_doc&) = delete;
  parsed_doc& operator=(const parsed_doc&) = delete;

  /// The string values of the nodes xpath selects, in document order.
  std::vector<std::string> all(const std::string& xpath) const {
    xmlXPathObject* r = xmlXPathEvalExpression(BAD_CAST xpath.c_str(), ctx_);
    INFO("xpath: ", xpath);
    REQUIRE(r != nullptr);
    std::vector<std::string> out;
    if (r->nodesetval) {
      for (int i = 0; i < r->nodesetval->nodeNr; ++i) {
        xmlChar* s = xmlNodeGetContent(r->nodesetval->nodeTab[i]);
        out.emplace_back(s ? reinterpret_cast<const char*>(s) : "");
        xmlFree(s);
      }
    }
    xmlXPathFreeObject(r);
    return out;
  }

  /// The one string xpath selects; fails the test unless exactly one node matches.
  std::string one(const std::string& xpath) const {
    auto v = all(xpath);
    INFO("xpath: ", xpath);
    REQUIRE(v.size() == 1);
    return v.front();
  }

 private:
  xmlDoc* doc_ = nullptr;
  xmlXPathContext* ctx_ = nullptr;
};

/// An XPath test for an element having cls among its classes.
std::string has_class(std::string_view cls) {
  return fmt::format("contains(concat(' ', normalize-space(@class), ' '), ' {} ')", cls);
}

/// The rate row of currency in the card of source.
std::string row(std::string_view source, std::string_view currency) {
  return fmt::format("//section[{}][.//h2='{}']//tr[@data-currency='{}']", has_class("source"),
                     source, currency);
}

/// `'sha256-…'` of text, as a CSP source.
std::string sha256_source(std::string_view text) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(), digest);
  unsigned char b64[64];
  const int n = EVP_EncodeBlock(b64, digest, SHA256_DIGEST_LENGTH);
  return fmt::format("'sha256-{}'", std::string_view(reinterpret_cast<const char*>(b64),
                                                     static_cast<std::size_t>(n)));
}

/// The text between the first open and close tags of an element named tag.
std::string inline_content(std::string_view body, std::string_view tag) {
  const std::string open = fmt::format("<{}>", tag);
  const std::string close = fmt::format("</{}>", tag);
  const auto start = body.find(open);
  REQUIRE(start != std::string_view::npos);
  const auto end = body.find(close, start);
  REQUIRE(end != std::string_view::npos);
  return std::string(body.substr(start + open.size(), end - start - open.size()));
}

/// The sources: 24kg (every 10m), nbkr (every 1h) and a never-scraped one with a
/// hostile name; rules: two firing (one with a hostile name) and one pending.
std::shared_ptr<const somrated::config> page_config() {
  auto cfg = std::make_shared<somrated::config>();
  somrated::source_config kg;
  kg.name = "24kg";
  kg.kind = "24kg";
  kg.url = "https://24.kg/english/";
  kg.interval = 10min;
  somrated::source_config nbkr;
  nbkr.name = "nbkr";
  nbkr.kind = "nbkr";
  nbkr.url = "https://www.nbkr.kg/XML/daily.xml";
  nbkr.interval = 1h;
  somrated::source_config odd;
  odd.name = std::string(hostile_source);
  odd.kind = "24kg";
  odd.url = "file:///dev/null";
  odd.interval = 10min;
  cfg->sources = {kg, nbkr, odd};

  somrated::alert_rule high;
  high.name = "usd-high";
  high.currency = "USD";
  high.source = "24kg";
  high.condition = somrated::alert_condition::above;
  high.threshold = dec("87.20");
  somrated::alert_rule odd_rule = high;
  odd_rule.name = std::string(hostile_rule);
  somrated::alert_rule move;
  move.name = "usd-move";
  move.currency = "USD";
  move.source = "24kg";
  move.condition = somrated::alert_condition::change_pct;
  move.threshold = dec("0.3");
  move.window = 24h;
  move.direction = somrated::alert_direction::up;
  somrated::alert_rule pending = high;
  pending.name = "eur-quiet";
  pending.currency = "EUR";
  cfg->alerts = {high, odd_rule, move, pending};
  return cfg;
}

/// A store with rates set relative to now, and an api over it.
///
/// 24kg: USD 87.10 from now-3d and 87.45 from now-2h (up 0.35 against 24h ago); EUR
/// 99.56 from now-3d and 99.1000 from now-1h (down 0.4600); RUB 1.10 since now-3d
/// (unchanged); KZT 0.1686 only since now-1h (no rate 24h ago). Last success 2 minutes
/// ago. nbkr: USD 87.4500 from now-5h, effective 2025-06-11, last success 5 hours ago
/// (stale). The hostile source never scraped.
struct page_fixture {
  temp_db_file file;
  somrated::store db{file.path(), somrated::store::mode::read_write};
  somrated::source_board board;
  std::shared_ptr<const somrated::config> cfg = page_config();
  somrated::api api{cfg, board};
  timestamp now = std::chrono::floor<std::chrono::seconds>(somrated::now());

  page_fixture() {
    record("24kg", now - 72h, {{"USD", "87.10"}, {"EUR", "99.56"}, {"RUB", "1.10"}});
    record("24kg", now - 2h, {{"USD", "87.45"}, {"EUR", "99.56"}, {"RUB", "1.10"}});
    record("24kg", now - 1h,
           {{"USD", "87.45"}, {"EUR", "99.1000"}, {"RUB", "1.10"}, {"KZT", "0.1686"}});
    std::vector<somrated::rate_quote> nb{{"USD", dec("87.4500")}};
    db.record("nbkr", now - 5h, nb, std::chrono::sys_days{std::chrono::year{2025} / 6 / 11}, 0.25);
    log("24kg", now - 2min);
    log("nbkr", now - 5h);

    somrated::alert_update u;
    u.states.push_back(state("usd-high", somrated::alert_phase::firing, "87.45"));
    u.states.push_back(
        state(std::string(hostile_rule), somrated::alert_phase::firing, hostile_value));
    u.states.push_back(state("usd-move", somrated::alert_phase::firing, "0.40"));
    u.states.push_back(state("eur-quiet", somrated::alert_phase::pending, "99.1000"));
    db.apply_alert_update(u);
  }

  /// Records quotes for source at.
  void record(std::string_view source, timestamp at,
              std::vector<std::pair<std::string, std::string>> quotes) {
    std::vector<somrated::rate_quote> q;
    for (const auto& [currency, rate] : quotes) q.push_back({currency, dec(rate)});
    db.record(source, at, q, std::nullopt, 0.25);
  }

  /// A successful scrape log entry.
  void log(std::string_view source, timestamp at) {
    somrated::scrape_record r;
    r.source = std::string(source);
    r.started_at = at;
    r.duration = 100ms;
    r.http_status = 200;
    r.outcome = "ok";
    db.log_scrape(r);
  }

  /// A rule state in phase since an hour ago.
  somrated::alert_state state(std::string rule, somrated::alert_phase phase,
                              std::string_view value) const {
    somrated::alert_state s;
    s.rule = std::move(rule);
    s.phase = phase;
    s.since = now - 1h;
    s.started_at = now - 1h;
    s.evaluated_at = now;
    s.value = std::string(value);
    s.created_at = now - 3h;
    return s;
  }

  /// GET target with the given Accept header.
  http_response get(std::string target, std::string_view accept = "text/html") {
    http_request req{http::verb::get, target, 11};
    if (!accept.empty()) req.set(http::field::accept, accept);
    return api.handle(req, db);
  }
};

/// The error code of a JSON error answer, checking its status.
std::string error_code(const http_response& res, http::status status) {
  INFO("body: ", res.body());
  CHECK(res.result() == status);
  CHECK(res[http::field::content_type] == "application/json; charset=utf-8");
  const std::string& b = res.body();
  const auto at = b.find(R"("code":")");
  REQUIRE(at != std::string::npos);
  const auto start = at + 8;
  return b.substr(start, b.find('"', start) - start);
}

/// The number of points a chart's step line goes through (its M plus each H except the
/// final one to the right edge).
std::size_t path_points(const parsed_doc& svg) {
  const std::string d = svg.one("//svg:path[@class='line']/@d");
  return count_of(d, 'H');
}

}  // namespace

TEST_CASE("page: compare_rates is exact") {
  using somrated::rate_trend;
  auto c = somrated::compare_rates(dec("87.45"), dec("86.80"));
  REQUIRE(c);
  CHECK(c->trend == rate_trend::up);
  CHECK(c->difference == "+0.65");
  CHECK(c->percent == "+0.75");  // 0.748847...

  c = somrated::compare_rates(dec("99.1000"), dec("99.56"));
  REQUIRE(c);
  CHECK(c->trend == rate_trend::down);
  CHECK(c->difference == "-0.4600");  // the larger scale of the two
  CHECK(c->percent == "-0.46");

  c = somrated::compare_rates(dec("1.10"), dec("1.1"));
  REQUIRE(c);
  CHECK(c->trend == rate_trend::same);
  CHECK(c->difference == "0.00");
  CHECK(c->percent == "0.00");

  c = somrated::compare_rates(dec("0.0468"), dec("0.0470"));
  REQUIRE(c);
  CHECK(c->difference == "-0.0002");
  CHECK(c->percent == "-0.43");  // 0.4255...

  c = somrated::compare_rates(dec("1.005"), dec("1"));  // 0.5 % exactly rounds half up
  REQUIRE(c);
  CHECK(c->percent == "+0.50");
  c = somrated::compare_rates(dec("1.00005"), dec("1"));  // 0.005 % -> 0.01
  REQUIRE(c);
  CHECK(c->percent == "+0.01");

  c = somrated::compare_rates(dec("5"), dec("0"));
  REQUIRE(c);
  CHECK(c->difference == "+5");
  CHECK(c->percent.empty());

  // 18 digits at scale 0 against scale 12 does not fit 64 bits.
  CHECK_FALSE(somrated::compare_rates(dec("123456789012345678"), dec("0.000000000001")));
}

TEST_CASE("page: markup_escape and languages") {
  CHECK(somrated::markup_escape(R"(<a href="x">Tom & 'Jerry'</a>)") ==
        "&lt;a href=&quot;x&quot;&gt;Tom &amp; &#39;Jerry&#39;&lt;/a&gt;");
  CHECK(somrated::markup_escape("курс 87.45") == "курс 87.45");
  CHECK(somrated::parse_page_language("ru") == somrated::page_language::ru);
  CHECK(somrated::parse_page_language("ky") == somrated::page_language::ky);
  CHECK(somrated::parse_page_language("en") == somrated::page_language::en);
  CHECK_FALSE(somrated::parse_page_language("EN"));
  CHECK_FALSE(somrated::parse_page_language("de"));
  CHECK(somrated::page_language_code(somrated::page_language::ky) == "ky");
}

TEST_CASE("page: rates, changes, freshness and alerts") {
  page_fixture f;
  const http_response res = f.get("/");
  INFO("body: ", res.body());
  REQUIRE(res.result() == http::status::ok);
  CHECK(res[http::field::content_type] == "text/html; charset=utf-8");
  CHECK(res[http::field::vary] == "Accept");
  CHECK(res["X-Content-Type-Options"] == "nosniff");
  const std::string& body = res.body();
  const parsed_doc doc(body, true);

  CHECK(doc.one("/html/@lang") == "en");
  CHECK(doc.one("//h1") == "Kyrgyz som exchange rates");

  SUBCASE("rates exactly as published, in the API's order") {
    CHECK(doc.all(row("24kg", "USD") + "/td[" + has_class("rate") + "]") ==
          std::vector<std::string>{"87.45"});
    CHECK(doc.one(row("24kg", "EUR") + "/td[" + has_class("rate") + "]") == "99.1000");
    CHECK(doc.one(row("24kg", "RUB") + "/td[" + has_class("rate") + "]") == "1.10");
    CHECK(doc.one(row("24kg", "KZT") + "/td[" + has_class("rate") + "]") == "0.1686");
    CHECK(doc.one(row("nbkr", "USD") + "/td[" + has_class("rate") + "]") == "87.4500");
    CHECK(doc.all("//section[.//h2='24kg']//tbody/tr/@data-currency") ==
          std::vector<std::string>{"USD", "EUR", "RUB", "KZT"});
    CHECK(doc.one("//section[.//h2='nbkr']/p[" + has_class("meta") + "][2]") ==
          "Rates for 2025-06-11");
  }

  SUBCASE("the change reads with an arrow, a sign and words, not only colour") {
    const std::string change = "/td[" + has_class("change") + "]";
    const std::string up = doc.one(row("24kg", "USD") + change);
    CHECK(doc.all(row("24kg", "USD") + change + "[" + has_class("up") + "]").size() == 1);
    CHECK(contains(up, "▲"));
    CHECK(contains(up, "+0.35"));
    CHECK(contains(up, "(+0.40%)"));
    CHECK(contains(up, "up"));

    const std::string down = doc.one(row("24kg", "EUR") + change);
    CHECK(doc.all(row("24kg", "EUR") + change + "[" + has_class("down") + "]").size() == 1);
    CHECK(contains(down, "▼"));
    CHECK(contains(down, "-0.4600"));
    CHECK(contains(down, "(-0.46%)"));
    CHECK(contains(down, "down"));

    const std::string same = doc.one(row("24kg", "RUB") + change);
    CHECK(doc.all(row("24kg", "RUB") + change + "[" + has_class("same") + "]").size() == 1);
    CHECK(contains(same, "0.00"));
    CHECK(contains(same, "unchanged"));
    CHECK_FALSE(contains(same, "+"));

    const std::string none = doc.one(row("24kg", "KZT") + change);
    CHECK(contains(none, "no rate 24 hours earlier"));
    CHECK_FALSE(contains(none, "▲"));
    CHECK_FALSE(contains(none, "▼"));
  }

  SUBCASE("each source says when it was last read and whether it is stale") {
    const std::string kg = "//section[.//h2='24kg']";
    CHECK(doc.one(kg + "//span[" + has_class("badge") + "]") == "✓ Up to date");
    CHECK(doc.one(kg + "/p[" + has_class("meta") + "][1]/time/@datetime") ==
          somrated::format_rfc3339(f.now - 2min));
    const std::string nb = "//section[.//h2='nbkr']";
    CHECK(doc.all(nb + "//span[" + has_class("stale") + "]").size() == 1);
    CHECK(doc.one(nb + "//span[" + has_class("badge") + "]") == "⚠ Stale");
    CHECK(doc.one(nb + "/p[" + has_class("meta") + "][1]/time/@datetime") ==
          somrated::format_rfc3339(f.now - 5h));
    const std::string odd = fmt::format("//section[.//h2={}]", "concat('<src \"a\"&', \"'b'>\")");
    CHECK(doc.one(odd + "//span[" + has_class("badge") + "]") == "⚠ Stale");
    CHECK(doc.one(odd + "/p[" + has_class("meta") + "]") == "Last read: never");
    CHECK(doc.one(odd + "/p[not(@class)]") == "No rates yet.");
  }

  SUBCASE("firing alerts are listed with what they watch; others are not") {
    const auto names = doc.all("//section[" + has_class("alerts") + "]//li/strong");
    CHECK(names == std::vector<std::string>{"usd-high", std::string(hostile_rule), "usd-move"});
    const std::string high = doc.one("//li[@data-rule='usd-high']");
    CHECK(contains(high, "USD at 24kg above 87.20"));
    CHECK(contains(high, "value 87.45"));
    CHECK(contains(doc.one("//li[@data-rule='usd-move']"),
                   "USD at 24kg rose 0.3% or more in 1 d · value 0.40%"));
    CHECK_FALSE(contains(body, "eur-quiet"));
  }

  SUBCASE("hostile strings are text, never markup") {
    CHECK_FALSE(contains(body, hostile_rule));
    CHECK_FALSE(contains(body, hostile_source));
    CHECK_FALSE(contains(body, "<img src=x"));
    CHECK(contains(body, "&lt;script&gt;alert(1)&lt;/script&gt;"));
    CHECK(doc.all("//script").size() == 1);
    CHECK(doc.all("//img").size() == 4);  // the charts
    CHECK(doc.all("//@*[starts-with(name(), 'on')]").empty());
    CHECK(contains(doc.one("//li[@data-rule='" + std::string(hostile_rule) + "']"),
                   std::string("value ") + std::string(hostile_value)));
  }

  SUBCASE("charts for the first source's currencies, with three periods each") {
    CHECK(doc.all("//figure/img/@src") ==
          std::vector<std::string>{
              "/chart/USD.svg?range=30d&source=24kg", "/chart/EUR.svg?range=30d&source=24kg",
              "/chart/RUB.svg?range=30d&source=24kg", "/chart/KZT.svg?range=30d&source=24kg"});
    CHECK(doc.all("//figure[1]//a[@data-range]/@href") ==
          std::vector<std::string>{"/chart/USD.svg?range=30d&source=24kg",
                                   "/chart/USD.svg?range=1y&source=24kg",
                                   "/chart/USD.svg?range=all&source=24kg"});
    CHECK(doc.all("//figure[1]//a[@data-range]") ==
          std::vector<std::string>{"30 days", "1 year", "All time"});
    CHECK(doc.one("//figure[1]//a[@aria-current]/@data-range") == "30d");
  }

  SUBCASE("nothing from other hosts") {
    CHECK_FALSE(contains(body, "http://"));
    CHECK_FALSE(contains(body, "https://"));
    for (const std::string& url : doc.all("//@href | //@src | //@action")) {
      INFO("url: ", url);
      CHECK((url == "data:," || (url.starts_with("/") && !url.starts_with("//"))));
    }
  }

  SUBCASE("a strict CSP that names the page's own inline script and style") {
    const std::string csp(res["Content-Security-Policy"]);
    INFO("CSP: ", csp);
    CHECK(csp.starts_with("default-src 'none'; "));
    const std::string script = inline_content(body, "script");
    const std::string style = inline_content(body, "style");
    CHECK(contains(csp, "script-src " + sha256_source(script) + ";"));
    CHECK(contains(csp, "style-src " + sha256_source(style) + ";"));
    CHECK(contains(csp, "img-src 'self' data:;"));
    CHECK(contains(csp, "connect-src 'self';"));
    CHECK_FALSE(contains(csp, "unsafe"));
    CHECK_FALSE(contains(csp, "*"));
    // The script refreshes from this page, and holds nothing dynamic.
    CHECK(contains(script, "setInterval(refresh, 60000)"));
    CHECK(doc.all("//*[@style]").empty());
  }
}

TEST_CASE("page: render_page encodes names in chart URLs") {
  somrated::page_data data;
  data.lang = somrated::page_language::ru;
  data.charts.push_back({"USD", std::string(hostile_source)});
  const std::string body = somrated::render_page(data);
  CHECK_FALSE(contains(body, hostile_source));
  const parsed_doc doc(body, true);
  const std::string src = doc.one("//figure/img/@src");
  auto url = boost::urls::parse_origin_form(src);
  REQUIRE(url);
  CHECK(url->path() == "/chart/USD.svg");
  std::vector<std::pair<std::string, std::string>> params;
  for (auto p : url->params()) params.emplace_back(p.key, p.value);
  CHECK(params == std::vector<std::pair<std::string, std::string>>{
                      {"range", "30d"}, {"source", std::string(hostile_source)}, {"lang", "ru"}});
  CHECK(contains(doc.one("//figure/img/@alt"), hostile_source));
  // No sources and no alerts still make a page.
  CHECK(doc.one("//section[@aria-labelledby='alerts-title']/p") == "Сработавших оповещений нет.");
}

TEST_CASE("page: Russian and Kyrgyz") {
  page_fixture f;
  struct expectation {
    std::string lang, title, stale, up, alerts, charts, last_read;
  };
  const expectation cases[] = {
      {"ru", "Курсы валют к сому", "Устарело", "рост", "Сработавшие оповещения", "Графики",
       "Обновлено:"},
      {"ky", "Сомго карата валюта курстары", "Эскирген", "өстү", "Активдүү эскертүүлөр",
       "Графиктер", "Акыркы жаңыртуу:"},
  };
  for (const expectation& e : cases) {
    CAPTURE(e.lang);
    const http_response res = f.get("/?lang=" + e.lang);
    REQUIRE(res.result() == http::status::ok);
    const std::string& body = res.body();
    const parsed_doc doc(body, true);
    CHECK(doc.one("/html/@lang") == e.lang);
    CHECK(doc.one("//title") == e.title);
    CHECK(doc.one("//h1") == e.title);
    CHECK(contains(doc.one("//section[.//h2='nbkr']//span[" + has_class("badge") + "]"), e.stale));
    CHECK(contains(doc.one(row("24kg", "USD") + "/td[" + has_class("change") + "]"), e.up));
    CHECK(doc.one("//h2[@id='alerts-title']") == e.alerts);
    CHECK(doc.one("//h2[@id='charts-title']") == e.charts);
    CHECK(contains(doc.one("//section[.//h2='24kg']/p[" + has_class("meta") + "]"), e.last_read));
    CHECK(doc.one("//a[@aria-current='page']/@hreflang") == e.lang);
    // Chart images speak the page's language.
    CHECK(doc.one("//figure[1]/img/@src") == "/chart/USD.svg?range=30d&source=24kg&lang=" + e.lang);
    // No English is left in what people read (names, codes and numbers aside).
    for (const char* english : {"Stale", "Up to date", "Last read", "Firing alerts", "Charts",
                                "30 days", "All time", "Currency", "never", "unchanged",
                                "refresh every minute", "No rates yet", " above ", " since "}) {
      CAPTURE(english);
      CHECK_FALSE(contains(body, english));
    }
  }
  SUBCASE("an unknown language is refused") {
    CHECK(error_code(f.get("/?lang=de"), http::status::bad_request) == "invalid_parameter");
    CHECK(error_code(f.get("/?lang="), http::status::bad_request) == "invalid_parameter");
  }
  SUBCASE("clients that do not ask for HTML still get the JSON index") {
    const http_response res = f.get("/", "application/json");
    CHECK(res[http::field::content_type] == "application/json; charset=utf-8");
    CHECK(contains(res.body(), R"("name":"somrated")"));
  }
}

TEST_CASE("chart: SVG from the store") {
  page_fixture f;

  SUBCASE("well-formed, with the change points as a step line and exact labels") {
    const http_response res = f.get("/chart/USD.svg", "");
    INFO("body: ", res.body());
    REQUIRE(res.result() == http::status::ok);
    CHECK(res[http::field::content_type] == "image/svg+xml");
    CHECK(res["Content-Security-Policy"] == "default-src 'none'; style-src 'unsafe-inline'");
    const parsed_doc svg(res.body(), false);
    CHECK(svg.one("/svg:svg/svg:title") == "USD/KGS · 24kg · 30 days");
    CHECK(svg.one("/svg:svg/@xml:lang") == "en");
    CHECK(svg.one("//svg:text[@class='max']") == "87.45");
    CHECK(svg.one("//svg:text[@class='min']") == "87.10");
    CHECK(svg.one("//svg:text[@class='last']") == "87.45");
    CHECK(svg.one("/svg:svg/svg:desc") == "Lowest 87.10, highest 87.45, latest 87.45");
    // Two change points in the last 30 days: 87.10 then 87.45.
    CHECK(path_points(svg) == 2);
    const auto dates = svg.all("//svg:text[@class='date']");
    REQUIRE(dates.size() == 4);
    CHECK(dates.front() == somrated::format_rfc3339(f.now - std::chrono::days(30)).substr(0, 10));
    CHECK(dates.back() == somrated::format_rfc3339(f.now).substr(0, 10));
    CHECK(contains(res.body(), "prefers-color-scheme:dark"));
  }

  SUBCASE("labels keep the published digits") {
    auto res = f.get("/chart/EUR.svg?range=1y", "");
    REQUIRE(res.result() == http::status::ok);
    const parsed_doc svg(res.body(), false);
    CHECK(svg.one("//svg:text[@class='max']") == "99.56");
    CHECK(svg.one("//svg:text[@class='min']") == "99.1000");
    CHECK(svg.one("//svg:text[@class='last']") == "99.1000");
    CHECK(svg.one("/svg:svg/svg:title") == "EUR/KGS · 24kg · 1 year");

    res = f.get("/chart/USD.svg?source=nbkr&lang=ky", "");
    REQUIRE(res.result() == http::status::ok);
    const parsed_doc nb(res.body(), false);
    CHECK(nb.one("//svg:text[@class='max']") == "87.4500");
    CHECK(nb.all("//svg:text[@class='min']").empty());  // one value: one guide
    CHECK(nb.one("/svg:svg/svg:title") == "USD/KGS · nbkr · 30 күн");
    CHECK(nb.one("/svg:svg/@xml:lang") == "ky");
  }

  SUBCASE("long histories are sampled by the store to a bounded number of points") {
    // 3000 change points over the last 400 days, alternating between two values.
    std::vector<somrated::history_point> points;
    const timestamp start = f.now - std::chrono::days(400);
    for (int i = 0; i < 3000; ++i) {
      points.push_back({start + std::chrono::minutes(192) * i, dec(i % 2 ? "12.3456" : "12.30")});
    }
    f.db.import_changes("24kg", "CNY", points);

    for (const char* range : {"30d", "1y", "all"}) {
      CAPTURE(range);
      const auto res = f.get(fmt::format("/chart/CNY.svg?range={}", range), "");
      REQUIRE(res.result() == http::status::ok);
      const parsed_doc svg(res.body(), false);
      const std::size_t n = path_points(svg);
      CHECK(n <= somrated::chart_max_points);
      CHECK(n >= 200);
      CHECK(svg.one("//svg:text[@class='max']") == "12.3456");
      CHECK(svg.one("//svg:text[@class='min']") == "12.30");
    }
    // All time starts at the first change point.
    const auto res = f.get("/chart/CNY.svg?range=all", "");
    const parsed_doc svg(res.body(), false);
    CHECK(svg.all("//svg:text[@class='date']").front() ==
          somrated::format_rfc3339(start).substr(0, 10));
  }

  SUBCASE("bad names, ranges and parameters") {
    CHECK(error_code(f.get("/chart/USD.png", ""), http::status::bad_request) == "invalid_path");
    CHECK(error_code(f.get("/chart/USD", ""), http::status::bad_request) == "invalid_path");
    CHECK(error_code(f.get("/chart/.svg", ""), http::status::bad_request) == "invalid_path");
    CHECK(error_code(f.get("/chart/US.svg", ""), http::status::bad_request) == "invalid_parameter");
    CHECK(error_code(f.get("/chart/USD.svg?range=2y", ""), http::status::bad_request) ==
          "invalid_parameter");
    CHECK(error_code(f.get("/chart/USD.svg?lang=fr", ""), http::status::bad_request) ==
          "invalid_parameter");
    CHECK(error_code(f.get("/chart/USD.svg?width=9", ""), http::status::bad_request) ==
          "unknown_parameter");
    CHECK(error_code(f.get("/chart/XYZ.svg", ""), http::status::not_found) == "unknown_currency");
    CHECK(error_code(f.get("/chart/KZT.svg?source=nbkr", ""), http::status::not_found) ==
          "unknown_currency");
    CHECK(error_code(f.get("/chart/USD.svg?source=nope", ""), http::status::not_found) ==
          "unknown_source");
    // Lower case codes are accepted, as elsewhere in the API.
    CHECK(f.get("/chart/usd.svg", "").result() == http::status::ok);
  }
}

TEST_CASE("chart: rendering without the store") {
  somrated::chart_data data;
  data.currency = "USD";
  data.source = std::string(hostile_source);
  data.to = std::chrono::floor<std::chrono::seconds>(somrated::now());
  data.from = data.to - std::chrono::days(30);

  SUBCASE("no points: a message, still well-formed, hostile names escaped") {
    data.lang = somrated::page_language::ru;
    const std::string text = somrated::render_chart_svg(data);
    CHECK_FALSE(contains(text, hostile_source));
    const parsed_doc svg(text, false);
    CHECK(svg.one("//svg:text[@class='empty']") == "Нет данных за этот период");
    CHECK(svg.one("/svg:svg/svg:title") == fmt::format("USD/KGS · {} · 30 дней", hostile_source));
    CHECK(svg.all("//svg:path").empty());
  }

  SUBCASE("a short span labels dates with times") {
    data.from = data.to - 12h;
    data.range = somrated::chart_range::all;
    data.points = {{data.from, dec("1.5")}, {data.to - 1h, dec("1.25")}};
    const parsed_doc svg(somrated::render_chart_svg(data), false);
    const auto dates = svg.all("//svg:text[@class='date']");
    REQUIRE(dates.size() == 4);
    const std::string end = somrated::format_rfc3339(data.to);
    CHECK(dates.back() == fmt::format("{} {}", end.substr(0, 10), end.substr(11, 5)));
    CHECK(svg.one("//svg:text[@class='max']") == "1.5");
    CHECK(svg.one("//svg:text[@class='min']") == "1.25");
    CHECK(svg.one("//svg:text[@class='last']") == "1.25");
  }

  SUBCASE("chart_step keeps any span within the point budget") {
    for (const auto span : {std::chrono::milliseconds(0), std::chrono::milliseconds(499),
                            std::chrono::milliseconds(501), std::chrono::milliseconds(86400000),
                            std::chrono::milliseconds(std::chrono::days(3650))}) {
      CAPTURE(span.count());
      const auto step = somrated::chart_step(data.to - span, data.to);
      CHECK(step.count() >= 1);
      const auto buckets = span.count() / step.count() + (span.count() % step.count() ? 1 : 0);
      CHECK(buckets <= static_cast<std::int64_t>(somrated::chart_max_points));
    }
    CHECK(somrated::chart_step(data.to - std::chrono::days(30), data.to) ==
          std::chrono::milliseconds(5184000));
  }

  SUBCASE("range names") {
    CHECK(somrated::parse_chart_range("30d") == somrated::chart_range::days_30);
    CHECK(somrated::parse_chart_range("1y") == somrated::chart_range::year_1);
    CHECK(somrated::parse_chart_range("all") == somrated::chart_range::all);
    CHECK_FALSE(somrated::parse_chart_range("30D"));
    CHECK(somrated::chart_range_name(somrated::chart_range::year_1) == "1y");
  }
}
