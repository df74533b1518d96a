#include <doctest/doctest.h>

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <map>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "somrated/extract.hpp"

using somrated::extract_24kg;
using somrated::extract_for_kind;
using somrated::extract_nbkr;
using somrated::extraction;

namespace {

/// Reads a file under tests/data/24kg/ as bytes.
std::string read_24kg(const std::string& relative) {
  const std::string path = std::string{SOMRATED_TEST_DATA} + "/24kg/" + relative;
  std::ifstream in{path, std::ios::binary};
  REQUIRE_MESSAGE(in, "cannot open ", path);
  return {std::istreambuf_iterator<char>{in}, std::istreambuf_iterator<char>{}};
}

/// The strip values a page is expected to yield, as published.
struct strip {
  std::string usd;  ///< USD rate text.
  std::string eur;  ///< EUR rate text.
  std::string rub;  ///< RUB rate text.
};

/// Checks that `got` holds exactly USD, EUR, RUB with the expected texts and no date.
void check_strip(const extraction& got, const strip& want) {
  INFO("error: ", got.error);
  REQUIRE(got.ok());
  REQUIRE(got.rates.size() == 3);
  CHECK(got.rates[0].currency == "USD");
  CHECK(got.rates[0].rate.text() == want.usd);
  CHECK(got.rates[1].currency == "EUR");
  CHECK(got.rates[1].rate.text() == want.eur);
  CHECK(got.rates[2].currency == "RUB");
  CHECK(got.rates[2].rate.text() == want.rub);
  CHECK_FALSE(got.effective_date.has_value());
}

/// Checks that `got` is a failure whose message is exactly `message`.
void check_error(const extraction& got, std::string_view message) {
  CHECK_FALSE(got.ok());
  CHECK(got.rates.empty());
  CHECK(got.error == message);
}

/// Checks that `got` is a failure that says it concerns the currency strip.
void check_strip_error(const extraction& got) {
  CHECK_FALSE(got.ok());
  CHECK(got.rates.empty());
  CHECK(got.error.starts_with("currency strip "));
}

/// Escapes text for use as HTML element content.
std::string html_escape(std::string_view text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      default:
        out.push_back(c);
    }
  }
  return out;
}

/// Wraps a text rendering in a minimal HTML page with one <div> per line.
std::string lines_to_html(std::string_view text) {
  std::string page =
      "<!DOCTYPE html>\n<html>\n<head><meta "
      "charset=\"utf-8\"><title>24.kg</title></head>\n<body>\n";
  std::istringstream in{std::string{text}};
  for (std::string line; std::getline(in, line);) {
    page += "<div>" + html_escape(line) + "</div>\n";
  }
  page += "</body>\n</html>\n";
  return page;
}

/// Splits CSV text (RFC 4180: quoted fields, "" as an escaped quote) into rows of fields.
std::vector<std::vector<std::string>> parse_csv(std::string_view text) {
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> row;
  std::string field;
  bool quoted = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (quoted) {
      if (c == '"' && i + 1 < text.size() && text[i + 1] == '"') {
        field.push_back('"');
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        field.push_back(c);
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      row.push_back(std::move(field));
      field.clear();
    } else if (c == '\n') {
      row.push_back(std::move(field));
      field.clear();
      rows.push_back(std::move(row));
      row.clear();
    } else if (c != '\r') {
      field.push_back(c);
    }
  }
  if (!field.empty() || !row.empty()) {
    row.push_back(std::move(field));
    rows.push_back(std::move(row));
  }
  return rows;
}

/// One row of header_text_observations.csv.
struct observation {
  std::string url;         ///< Page the header was seen on.
  std::string edition;     ///< "en", "ru" or "ky".
  std::string clock;       ///< The Bishkek clock line, possibly empty.
  strip values;            ///< USD, EUR, RUB as printed.
  std::string line_after;  ///< What followed RUB ("English" or nothing).
};

/// Reads every observation from the CSV, by column name.
std::vector<observation> read_observations() {
  const auto rows = parse_csv(read_24kg("header_text_observations.csv"));
  REQUIRE(!rows.empty());
  std::map<std::string, std::size_t> column;
  for (std::size_t i = 0; i < rows[0].size(); ++i) column[rows[0][i]] = i;
  for (const char* name : {"url", "edition", "clock_line", "usd", "eur", "rub", "line_after_rub"}) {
    REQUIRE_MESSAGE(column.count(name) == 1, "missing column ", name);
  }
  std::vector<observation> out;
  for (std::size_t r = 1; r < rows.size(); ++r) {
    const auto& row = rows[r];
    REQUIRE(row.size() == rows[0].size());
    out.push_back(observation{row[column["url"]],
                              row[column["edition"]],
                              row[column["clock_line"]],
                              {row[column["usd"]], row[column["eur"]], row[column["rub"]]},
                              row[column["line_after_rub"]]});
  }
  return out;
}

/// A headline in the edition's language, as it follows the header.
std::string headline(const std::string& edition) {
  if (edition == "ru") return "Выборы мэра Бишкека пройдут 27 февраля";
  if (edition == "ky")
    return "Жогорку Кеңештин төрагасынын орун басарлыгына эки депутат атаандашууда";
  return "Sadyr Japarov tells when country to start living according to new Constitution";
}

/// `text` with every '.' replaced by ','.
std::string with_commas(std::string text) {
  for (char& c : text) {
    if (c == '.') c = ',';
  }
  return text;
}

/// The markup shapes an observation is rendered in.
enum class shape {
  text_capture,
  one_element_per_line,
  layout_2021,
  table_cells,
  links_nbsp_arrows,
  comma_list
};

/// Renders one observation as a page of the given shape.
std::string build_page(const observation& o, shape s) {
  const strip& v = o.values;
  const std::string clock = html_escape(o.clock);
  const std::string after = html_escape(o.line_after);
  const std::string head =
      "<!DOCTYPE html>\n<html>\n<head><meta "
      "charset=\"utf-8\"><title>24.kg</title></head>\n<body>\n";
  const std::string tail = "<h1>" + headline(o.edition) + "</h1>\n</body>\n</html>\n";
  switch (s) {
    case shape::text_capture: {
      std::string text = o.clock.empty() ? "" : o.clock + "\n";
      text += "USD " + v.usd + "\nEUR " + v.eur + "\nRUB " + v.rub + "\n";
      if (!o.line_after.empty()) text += o.line_after + "\n";
      return text + "\n" + headline(o.edition) + "\n";
    }
    case shape::one_element_per_line:
      return lines_to_html(build_page(o, shape::text_capture));
    case shape::layout_2021:
      return head + "<header class=\"row hidden-print\">\n<div class=\"weather\">" + clock +
             "</div>\n<div class=\"currency \" id=\"currencies\" data-original-title=\"\">\n" +
             "  <div><b>USD </b><span> " + v.usd + " </span></div>\n" +
             "  <div><b>EUR </b><span> " + v.eur + " </span></div>\n" +
             "  <div><b>RUB </b><span> " + v.rub +
             " </span></div>\n</div>\n<a href=\"/english/\">" + after + "</a>\n</header>\n" + tail;
    case shape::table_cells:
      return head + "<table><tr><td colspan=\"2\">" + clock + "</td></tr><tr><td>USD</td><td>" +
             v.usd + "</td></tr><tr><td>EUR</td><td>" + v.eur + "</td></tr><tr><td>RUB</td><td>" +
             v.rub + "</td></tr></table>" + after + "\n" + tail;
    case shape::links_nbsp_arrows:
      return head + "<span>" + clock +
             "</span><a href=\"#\"><span>USD</span>&nbsp;<img src=\"up.png\">&nbsp;<span>" + v.usd +
             "</span>&#9650;</a><a href=\"#\"><span>EUR</span>&nbsp;<span>" + v.eur +
             "</span>&#9660;</a><a href=\"#\"><span>RUB</span>\xE2\x86\x91<span>" + v.rub +
             "</span></a>" + after + "\n" + tail;
    case shape::comma_list:
      return head + "<ul><li>" + clock + "</li><li>USD " + with_commas(v.usd) + "</li><li>EUR " +
             with_commas(v.eur) + "</li><li>RUB " + with_commas(v.rub) + "</li><li>" + after +
             "</li></ul>\n" + tail;
  }
  return {};
}

}  // namespace

TEST_CASE("extract_24kg reads the real text captures") {
  struct capture {
    const char* file;  ///< Under tests/data/24kg/.
    strip values;      ///< From header_text_observations.csv.
  };
  const capture captures[] = {
      {"24kg-english-2025-06-10.txt", {"87.45", "99.56", "1.10"}},
      {"en_191704_header-with-English-label.txt", {"84.80", "102.60", "1.13"}},
      {"en_202424_crawl-2021-07-28.txt", {"84.56", "99.59", "1.15"}},
      {"ru_261539_root-edition.txt", {"88.85", "94.81", "0.95"}},
      {"ru_27668_crawl-2024-12-19.txt", {"87.00", "91.29", "0.84"}},
  };
  for (const capture& c : captures) {
    CAPTURE(c.file);
    const std::string text = read_24kg(c.file);
    SUBCASE("fed as-is") {
      check_strip(extract_24kg(text), c.values);
    }
    SUBCASE("one element per line") {
      check_strip(extract_24kg(lines_to_html(text)), c.values);
    }
  }
}

TEST_CASE("extract_24kg reads the reconstructed 2021 header layout") {
  check_strip(extract_24kg(read_24kg("header_RECONSTRUCTED_2021_layout.html")),
              {"84.56", "99.59", "1.15"});
}

TEST_CASE("extract_24kg reads every observed header in several markup shapes") {
  const std::vector<observation> observations = read_observations();
  REQUIRE(observations.size() == 39);
  for (const shape s : {shape::text_capture, shape::one_element_per_line, shape::layout_2021,
                        shape::table_cells, shape::links_nbsp_arrows, shape::comma_list}) {
    for (const observation& o : observations) {
      CAPTURE(static_cast<int>(s));
      CAPTURE(o.url);
      check_strip(extract_24kg(build_page(o, s)), o.values);
    }
  }
}

TEST_CASE("extract_24kg follows the strip through markup variants") {
  SUBCASE("table cells, with USD in the title and the headline") {
    check_strip(extract_24kg(read_24kg("variants/table_cells.html")), {"84.56", "99.59", "1.15"});
  }
  SUBCASE("spans inside links") {
    check_strip(extract_24kg(read_24kg("variants/spans_in_links.html")),
                {"88.85", "94.81", "0.95"});
  }
  SUBCASE("list items") {
    check_strip(extract_24kg(read_24kg("variants/list_items.html")), {"89.02", "94.77", "0.95"});
  }
  SUBCASE("comma decimals are rewritten with a dot") {
    check_strip(extract_24kg(read_24kg("variants/comma_decimals.html")),
                {"87.45", "103.33", "1.14"});
  }
  SUBCASE("&nbsp;, &#160;, narrow no-break space and tab as separators") {
    check_strip(extract_24kg(read_24kg("variants/nbsp_separators.html")),
                {"87.45", "99.56", "1.10"});
  }
  SUBCASE("raw U+00A0, thin, em, ideographic and narrow spaces") {
    check_strip(extract_24kg(read_24kg("variants/raw_unicode_spaces.html")),
                {"86.50", "91.18", "0.86"});
  }
  SUBCASE("<img> arrows between code and value and after the value") {
    check_strip(extract_24kg(read_24kg("variants/img_arrows.html")), {"87.00", "90.41", "0.84"});
  }
  SUBCASE("text arrows, entities and an emoji arrow") {
    check_strip(extract_24kg(read_24kg("variants/text_arrows.html")), {"88.81", "95.39", "0.96"});
  }
  SUBCASE("article text mentioning USD after the strip does not matter") {
    check_strip(extract_24kg(read_24kg("variants/article_after_strip.html")),
                {"84.80", "102.60", "1.13"});
  }
}

TEST_CASE("extract_24kg reads the Russian and Kyrgyz editions in any declared encoding") {
  SUBCASE("Russian edition") {
    check_strip(extract_24kg(read_24kg("variants/ru_edition.html")), {"87.00", "91.29", "0.84"});
  }
  SUBCASE("Kyrgyz edition") {
    check_strip(extract_24kg(read_24kg("variants/ky_edition.html")), {"87.45", "101.82", "1.12"});
  }
  SUBCASE("windows-1251 declared by http-equiv, no-break spaces as byte 0xA0") {
    const std::string page = read_24kg("variants/windows1251.html");
    REQUIRE(page.find("\xC2\xA0") == std::string::npos);  // really single-byte
    REQUIRE(page.find("USD\xA0"
                      "88.84") != std::string::npos);
    check_strip(extract_24kg(page), {"88.84", "95.29", "0.96"});
  }
  SUBCASE("windows-1251 declared by <meta charset>") {
    const std::string page =
        "<html><head><meta charset=\"windows-1251\"></head><body>\xCA\xF3\xF0\xF1 "
        "USD\xA0"
        "88.84 EUR\xA0"
        "95.29 RUB\xA0"
        "0.96 \xC4\xE5\xEF\xF3\xF2\xE0\xF2\xFB</body></html>";
    check_strip(extract_24kg(page), {"88.84", "95.29", "0.96"});
  }
  SUBCASE("undeclared pages are UTF-8 even after an invalid byte") {
    // The invalid byte must not make the rest of the page read as ISO-8859-1, where the
    // UTF-8 no-break space would turn into "Â" plus a space and glue onto "USD".
    const std::string page =
        "<p>\xFF broken</p><p>\xD0\x9A\xD1\x83\xD1\x80\xD1\x81 "
        "USD\xC2\xA0"
        "87.45 EUR\xC2\xA0"
        "99.56 RUB\xC2\xA0"
        "1.10</p>";
    check_strip(extract_24kg(page), {"87.45", "99.56", "1.10"});
  }
  SUBCASE("a UTF-8 byte-order mark") {
    check_strip(extract_24kg("\xEF\xBB\xBF<p>USD\xC2\xA0"
                             "87.45 EUR 99.56 RUB 1.10</p>"),
                {"87.45", "99.56", "1.10"});
  }
  SUBCASE("a declared utf-8 page with an invalid byte") {
    const std::string page =
        "<html><head><meta charset=\"UTF-8\"></head><body><p>\xFF</p>"
        "<p>USD\xC2\xA0"
        "87.45 EUR 99.56 RUB 1.10</p></body></html>";
    check_strip(extract_24kg(page), {"87.45", "99.56", "1.10"});
  }
}

TEST_CASE("extract_24kg honours the charset of the HTTP Content-Type") {
  // windows1251.html without its http-equiv: only the transport says what it is.
  std::string page = read_24kg("variants/windows1251.html");
  const std::string_view meta =
      "<meta http-equiv=\"Content-Type\" content=\"text/html; charset=windows-1251\">";
  const auto at = page.find(meta);
  REQUIRE(at != std::string::npos);
  page.erase(at, meta.size());

  SUBCASE("the header names windows-1251") {
    check_strip(extract_24kg(page, "text/html; charset=windows-1251"), {"88.84", "95.29", "0.96"});
    check_strip(extract_24kg(page, "text/html;charset=\"Windows-1251\""),
                {"88.84", "95.29", "0.96"});
    check_strip(extract_for_kind("24kg", page, "text/html; charset=windows-1251"),
                {"88.84", "95.29", "0.96"});
  }
  SUBCASE("without it the 0xA0 bytes are not spaces, and the error says why") {
    check_error(extract_24kg(page, "text/html"),
                "currency strip not found: no 'USD <rate>' in page text (the page declares no "
                "encoding and is not UTF-8 text)");
    check_error(extract_24kg(page),
                "currency strip not found: no 'USD <rate>' in page text (the page declares no "
                "encoding and is not UTF-8 text)");
  }
  SUBCASE("a page that is not the UTF-8 it is declared as says so") {
    check_error(extract_24kg(page, "text/html; charset=utf-8"),
                "currency strip not found: no 'USD <rate>' in page text (the page is declared "
                "UTF-8 but is not UTF-8 text)");
  }
  SUBCASE("the header wins over the page's own declaration") {
    const std::string declared_utf8 = "<html><head><meta charset=\"utf-8\"></head>" + page;
    check_strip(extract_24kg(declared_utf8, "text/html; charset=windows-1251"),
                {"88.84", "95.29", "0.96"});
  }
  SUBCASE("a byte-order mark wins over the header") {
    check_strip(extract_24kg("\xEF\xBB\xBF<p>USD\xC2\xA0"
                             "87.45 EUR 99.56 RUB 1.10</p>",
                             "text/html; charset=windows-1251"),
                {"87.45", "99.56", "1.10"});
  }
  SUBCASE("UTF-16 without a byte-order mark, declared by the header") {
    const std::string ascii = "<html><body><p>USD 87.45 EUR 99.56 RUB 1.10</p></body></html>";
    std::string utf16;
    for (char c : ascii) {
      utf16.push_back(c);
      utf16.push_back('\0');
    }
    check_strip(extract_24kg(utf16, "text/html; charset=utf-16le"), {"87.45", "99.56", "1.10"});
    const extraction undeclared = extract_24kg(utf16);
    CHECK_FALSE(undeclared.ok());
    CHECK(undeclared.error.ends_with("(the page declares no encoding and is not UTF-8 text)"));
  }
  SUBCASE("a declared page or a UTF-8 one gets no encoding remark") {
    check_error(extract_24kg(read_24kg("variants/missing_strip.html"), "text/html"),
                "currency strip not found: no 'USD <rate>' in page text");
    check_error(extract_24kg("<p>\xFF no rates</p>", "text/html; charset=windows-1251"),
                "currency strip not found: no 'USD <rate>' in page text");
  }
}

TEST_CASE("extract_24kg reads only visible page text") {
  SUBCASE("a strip only inside <script> is not a strip") {
    check_error(extract_24kg(read_24kg("variants/script_only.html")),
                "currency strip not found: no 'USD <rate>' in page text");
  }
  SUBCASE("script, style, noscript, template, comments and the title are skipped") {
    for (const char* hidden :
         {"<script>var s = ' USD 1.00 EUR 2.00 RUB 3.00 ';</script>",
          "<style>/* USD 1.00 EUR 2.00 RUB 3.00 */</style>",
          "<noscript>USD 1.00 EUR 2.00 RUB 3.00</noscript>",
          "<template>USD 1.00 EUR 2.00 RUB 3.00</template>", "<!-- USD 1.00 EUR 2.00 RUB 3.00 -->",
          "<title>USD 1.00 EUR 2.00 RUB 3.00</title>"}) {
      CAPTURE(hidden);
      const std::string page =
          std::string{"<html><head></head><body>"} + hidden +
          "<div>USD 87.45</div><div>EUR 99.56</div><div>RUB 1.10</div></body></html>";
      check_strip(extract_24kg(page), {"87.45", "99.56", "1.10"});
      const std::string hidden_only =
          std::string{"<html><body>"} + hidden + "<p>No rates today.</p></body></html>";
      check_strip_error(extract_24kg(hidden_only));
    }
  }
  SUBCASE("adjacent elements are separate tokens") {
    check_strip(
        extract_24kg(
            "<b>USD</b><span>84.56</span><b>EUR</b><span>99.59</span><b>RUB</b><span>1.15</span>"),
        {"84.56", "99.59", "1.15"});
  }
}

TEST_CASE("extract_24kg rejects a missing, partial or garbled strip") {
  SUBCASE("no strip at all") {
    check_error(extract_24kg(read_24kg("variants/missing_strip.html")),
                "currency strip not found: no 'USD <rate>' in page text");
  }
  SUBCASE("two of three currencies") {
    check_error(extract_24kg(read_24kg("variants/two_of_three.html")),
                "currency strip incomplete: found USD 87.45, EUR 99.56 but no RUB");
  }
  SUBCASE("a value split by a space") {
    check_error(extract_24kg(read_24kg("variants/split_value.html")),
                "currency strip garbled: USD value '8 7.45' is not a decimal");
  }
  SUBCASE("a negative value") {
    check_error(extract_24kg(read_24kg("variants/negative_value.html")),
                "currency strip garbled: USD value '-1' is not a decimal");
  }
  SUBCASE("a zero value") {
    check_error(extract_24kg(read_24kg("variants/zero_value.html")),
                "currency strip garbled: RUB value '0.00' is zero");
  }
  SUBCASE("article text with USD figures is not a strip") {
    const extraction got = extract_24kg(read_24kg("variants/article_without_strip.html"));
    check_strip_error(got);
    CHECK(got.error.find("USD") != std::string::npos);
  }
  SUBCASE("EUR missing between USD and RUB") {
    check_error(extract_24kg("<p>USD 87.45 RUB 1.10</p>"),
                "currency strip incomplete: found USD 87.45 but no EUR");
  }
  SUBCASE("a code without a value") {
    check_error(extract_24kg("<p>USD 87.45 EUR 99.56 RUB English</p>"),
                "currency strip incomplete: found USD 87.45, EUR 99.56 but no rate after RUB");
    check_error(extract_24kg("<p>USD 87.45 EUR RUB 1.10</p>"),
                "currency strip incomplete: found USD 87.45 but no rate after EUR");
  }
  SUBCASE("codes out of order") {
    check_strip_error(extract_24kg("<p>USD 87.45 RUB 1.10 EUR 99.56</p>"));
    check_strip_error(extract_24kg("<p>EUR 99.56 USD 87.45 RUB 1.10</p>"));
  }
  SUBCASE("anything but arrows and spaces between code and value") {
    check_strip_error(extract_24kg("<p>USD: 87.45 EUR: 99.56 RUB: 1.10</p>"));
    check_strip_error(extract_24kg("<p>USD = 87.45 EUR = 99.56 RUB = 1.10</p>"));
    check_error(extract_24kg("<p>USD 87.45 som EUR 99.56 RUB 1.10</p>"),
                "currency strip garbled: USD value '87.45 som' is not a decimal");
    check_error(extract_24kg("<p>USD 87.45 EUR 99.56 RUB 1.10.</p>"),
                "currency strip garbled: RUB value '1.10.' is not a decimal");
    check_error(extract_24kg("<p>USD 1e2 EUR 99.56 RUB 1.10</p>"),
                "currency strip garbled: USD value '1e2' is not a decimal");
  }
  SUBCASE("a good strip after a garbled one is still taken") {
    check_strip(
        extract_24kg(
            "<div>USD 8 7.45 EUR 99.56 RUB 1.10</div><div>USD 87.45 EUR 99.56 RUB 1.10</div>"),
        {"87.45", "99.56", "1.10"});
  }
  SUBCASE("the first complete strip wins") {
    check_strip(extract_24kg("<div>USD 87.45 EUR 99.56 RUB 1.10</div><div>USD 1 EUR 2 RUB 3</div>"),
                {"87.45", "99.56", "1.10"});
  }
}

TEST_CASE("extract_24kg fails cleanly on input that is not a page") {
  SUBCASE("empty body") {
    check_strip_error(extract_24kg(""));
  }
  SUBCASE("white space only") {
    check_strip_error(extract_24kg(" \n\t\n"));
  }
  SUBCASE("binary garbage") {
    std::string garbage;
    std::uint32_t state = 0x2545F491u;
    for (int i = 0; i < 64 * 1024; ++i) {
      state ^= state << 13;
      state ^= state >> 17;
      state ^= state << 5;
      garbage.push_back(static_cast<char>(state & 0xFF));
    }
    garbage[10] = '\0';
    check_strip_error(extract_24kg(garbage));
  }
  SUBCASE("NUL bytes only") {
    check_strip_error(extract_24kg(std::string_view{"\0\0\0\0", 4}));
  }
  SUBCASE("deep but realistic nesting") {
    std::string page;
    for (int i = 0; i < 200; ++i) page += "<div>";
    check_strip(extract_24kg(page + "USD 87.45 EUR 99.56 RUB 1.10"), {"87.45", "99.56", "1.10"});
  }
  SUBCASE("absurd nesting stops at libxml2's depth limit instead of exhausting the stack") {
    std::string page;
    for (int i = 0; i < 20000; ++i) page += "<div>";
    check_strip_error(extract_24kg(page + "USD 87.45 EUR 99.56 RUB 1.10"));
  }
}

TEST_CASE("extract_24kg writes nothing to stderr, even on encoding errors") {
  // 0x98 is unassigned in windows-1251: libxml2 stops converting there and reports it
  // through its generic error handler, which prints unless the extractor silences it.
  const std::string page =
      "<html><head><meta charset=\"windows-1251\"></head><body><p>USD 87.45 EUR 99.56 RUB 1.10</p>"
      "<p>\x98</p></body></html>";
  std::FILE* capture = std::tmpfile();
  REQUIRE(capture != nullptr);
  std::fflush(stderr);
  const int saved = dup(STDERR_FILENO);
  REQUIRE(saved >= 0);
  REQUIRE(dup2(fileno(capture), STDERR_FILENO) >= 0);
  const extraction got = extract_24kg(page);
  std::fflush(stderr);
  dup2(saved, STDERR_FILENO);
  close(saved);
  std::fseek(capture, 0, SEEK_END);
  const long written = std::ftell(capture);
  std::fclose(capture);
  CHECK(written == 0);
  check_strip(got, {"87.45", "99.56", "1.10"});
}

TEST_CASE("extract_24kg handles huge pages") {
  std::string paragraphs;
  while (paragraphs.size() < 2 * 1024 * 1024) {
    paragraphs +=
        "<p>Exchange rates: the US dollar, USD 90 million, EUR and RUB in the news again.</p>\n";
  }
  const std::string strip_html =
      "<div><b>USD</b> <span>87.45</span></div><div><b>EUR</b> <span>99.56</span></div>"
      "<div><b>RUB</b> <span>1.10</span></div>\n";
  SUBCASE("strip before 2 MB of paragraphs") {
    check_strip(extract_24kg("<html><body>" + strip_html + paragraphs + "</body></html>"),
                {"87.45", "99.56", "1.10"});
  }
  SUBCASE("strip after 2 MB of paragraphs") {
    check_strip(extract_24kg("<html><body>" + paragraphs + strip_html + "</body></html>"),
                {"87.45", "99.56", "1.10"});
  }
  SUBCASE("2 MB of paragraphs and no strip") {
    check_strip_error(extract_24kg("<html><body>" + paragraphs + "</body></html>"));
  }
  SUBCASE("over the size limit") {
    const std::string page =
        "<html><body>" + strip_html + std::string(17 * 1024 * 1024, ' ') + "</body></html>";
    const extraction got = extract_24kg(page);
    CHECK_FALSE(got.ok());
    CHECK(got.rates.empty());
    CHECK(got.error.starts_with("page too large"));
  }
}

TEST_CASE("extract_24kg and extract_nbkr run on several threads at once") {
  const std::string page = read_24kg("variants/windows1251.html");
  const std::string broken = read_24kg("variants/split_value.html");
  const std::string xml =
      "<CurrencyRates Date=\"13.09.2019\"><Currency ISOCode=\"KZT\"><Nominal>100</Nominal>"
      "<Value>18,0400</Value></Currency></CurrencyRates>";
  constexpr int threads = 4;
  constexpr int rounds = 25;
  std::vector<int> good(threads, 0);
  {
    std::vector<std::jthread> workers;
    for (int t = 0; t < threads; ++t) {
      workers.emplace_back([&, t] {
        for (int r = 0; r < rounds; ++r) {
          const extraction a = extract_24kg(page);
          const extraction b = extract_24kg(broken);
          const extraction c = extract_nbkr(xml);
          if (a.ok() && a.rates[0].rate.text() == "88.84" && !b.ok() && c.ok() &&
              c.rates[0].rate.text() == "0.180400") {
            ++good[static_cast<std::size_t>(t)];
          }
        }
      });
    }
  }
  for (int t = 0; t < threads; ++t) CHECK(good[static_cast<std::size_t>(t)] == rounds);
}
