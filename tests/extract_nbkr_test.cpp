#include <doctest/doctest.h>

#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>
#include <vector>

#include "somrated/extract.hpp"

using somrated::extract_nbkr;
using somrated::extraction;
using namespace std::string_view_literals;

namespace {

/// Reads a file under tests/data/nbkr/ as bytes.
std::string read_nbkr(const std::string& relative) {
  const std::string path = std::string{SOMRATED_TEST_DATA} + "/nbkr/" + relative;
  std::ifstream in{path, std::ios::binary};
  REQUIRE_MESSAGE(in, "cannot open ", path);
  return {std::istreambuf_iterator<char>{in}, std::istreambuf_iterator<char>{}};
}

/// A calendar day, for comparing effective dates.
std::chrono::sys_days day(int y, unsigned m, unsigned d) {
  return std::chrono::sys_days{std::chrono::year{y} / std::chrono::month{m} / std::chrono::day{d}};
}

/// One expected currency: code and per-unit rate text.
struct quote {
  const char* currency;  ///< Upper-case ISO code.
  const char* rate;      ///< Exact per-unit rate text.
};

/// Checks that `got` holds exactly `want`, in order, effective on `effective`.
void check_rates(const extraction& got, const std::vector<quote>& want,
                 std::chrono::sys_days effective) {
  INFO("error: ", got.error);
  REQUIRE(got.ok());
  REQUIRE(got.rates.size() == want.size());
  for (std::size_t i = 0; i < want.size(); ++i) {
    CAPTURE(i);
    CHECK(got.rates[i].currency == want[i].currency);
    CHECK(got.rates[i].rate.text() == want[i].rate);
  }
  REQUIRE(got.effective_date.has_value());
  CHECK(*got.effective_date == effective);
}

/// Checks that `got` failed with exactly `message` and holds no rates.
void check_error(const extraction& got, std::string_view message) {
  CHECK_FALSE(got.ok());
  CHECK(got.rates.empty());
  CHECK(got.error == message);
}

/// Checks that `got` failed with a message starting with `prefix` and holds no rates.
void check_error_prefix(const extraction& got, std::string_view prefix) {
  CHECK_FALSE(got.ok());
  CHECK(got.rates.empty());
  INFO("error: ", got.error);
  CHECK(got.error.starts_with(prefix));
}

/// A daily document around the given <Currency> elements.
std::string daily(std::string_view currencies, std::string_view date = "13.09.2019") {
  return std::string{
             "<?xml version=\"1.0\" encoding=\"windows-1251\" ?>\n"
             "<CurrencyRates Name=\"Daily Exchange Rates\" Date=\""} +
         std::string{date} + "\">\n" + std::string{currencies} + "</CurrencyRates>\n";
}

}  // namespace

TEST_CASE("extract_nbkr reads the real daily documents") {
  SUBCASE("2019-09-13") {
    check_rates(extract_nbkr(read_nbkr("daily_2019-09-13_Daniiar-NBKR.xml")),
                {{"USD", "69.8500"}, {"EUR", "77.0236"}, {"KZT", "0.1804"}, {"RUB", "1.0715"}},
                day(2019, 9, 13));
  }
  SUBCASE("2022-07-18") {
    check_rates(extract_nbkr(read_nbkr("daily_2022-07-18_usbtypec1-nbkr-fx-rates-bot.xml")),
                {{"USD", "80.9694"}, {"EUR", "81.2164"}, {"KZT", "0.1686"}, {"RUB", "1.3612"}},
                day(2022, 7, 18));
  }
  SUBCASE("2013-12-15 (format only; its USD value is known to be edited)") {
    check_rates(extract_nbkr(read_nbkr("daily_2013-12-15_kalys-nbkr-ios.xml")),
                {{"USD", "29.2717"}, {"EUR", "67.8003"}, {"KZT", "0.3197"}, {"RUB", "1.4992"}},
                day(2013, 12, 15));
  }
}

TEST_CASE("extract_nbkr reads the real weekly document with nominals of 10 and 100") {
  const extraction got = extract_nbkr(read_nbkr("weekly_2013-12-14_kalys-nbkr-ios.xml"));
  INFO("error: ", got.error);
  REQUIRE(got.ok());
  REQUIRE(got.rates.size() == 39);
  REQUIRE(got.effective_date.has_value());
  CHECK(*got.effective_date == day(2013, 12, 14));
  CHECK(got.rates.front().currency == "GBP");
  CHECK(got.rates.front().rate.text() == "80.5518");
  CHECK(got.rates.back().currency == "PLN");
  CHECK(got.rates.back().rate.text() == "16.2185");
  auto find = [&](std::string_view code) -> std::string {
    for (const auto& q : got.rates) {
      if (q.currency == code) return q.rate.text();
    }
    return "(absent)";
  };
  CHECK(find("KRW") == "0.0468");
  CHECK(find("KWD") == "174.4378");
  CHECK(find("JPY") == "0.47578");   // Nominal 10, Value 4,7578
  CHECK(find("AMD") == "0.12173");   // Nominal 10, Value 1,2173
  CHECK(find("HUF") == "0.22374");   // Nominal 10, Value 2,2374
  CHECK(find("BYR") == "0.005231");  // Nominal 100, Value 0,5231
  CHECK(find("USD") == "(absent)");  // the weekly list has no daily currencies
}

TEST_CASE("extract_nbkr handles encodings and declarations") {
  SUBCASE("no XML declaration (UTF-8)") {
    check_rates(extract_nbkr(read_nbkr("variants/no_declaration.xml")),
                {{"USD", "80.9694"}, {"EUR", "81.2164"}, {"KZT", "0.1686"}, {"RUB", "1.3612"}},
                day(2022, 7, 18));
  }
  SUBCASE("UTF-8 with a byte-order mark, declared") {
    check_rates(extract_nbkr(read_nbkr("variants/utf8_bom.xml")),
                {{"USD", "87.4500"},
                 {"EUR", "99.5589"},
                 {"CNY", "12.1699"},
                 {"KZT", "0.1711"},
                 {"RUB", "1.1061"}},
                day(2025, 6, 10));
  }
  SUBCASE("windows-1251 with Cyrillic text") {
    const std::string doc = read_nbkr("variants/windows1251_cyrillic.xml");
    REQUIRE(doc.find('\xCA') != std::string::npos);  // "К" in windows-1251
    check_rates(extract_nbkr(doc), {{"USD", "87.4500"}, {"RUB", "1.1400"}}, day(2026, 2, 3));
  }
}

TEST_CASE("extract_nbkr divides Value by Nominal exactly") {
  SUBCASE("nominals 100, 10, 1000 and 1") {
    check_rates(extract_nbkr(read_nbkr("variants/nominal_powers.xml")),
                {{"KZT", "0.180400"}, {"JPY", "0.47578"}, {"UZS", "0.0069"}, {"GBP", "80.5518"}},
                day(2013, 12, 14));
  }
  SUBCASE("a nominal that is not a power of ten") {
    check_error(extract_nbkr(read_nbkr("variants/nominal_not_power_of_ten.xml")),
                "NBKR XML: currency KZT: Nominal 3 is not a power of ten");
  }
  SUBCASE("nominal zero, negative, fractional or empty") {
    for (const char* nominal : {"0", "-10", "+10", "1.0", "", "ten", "99999999999999999999"}) {
      CAPTURE(nominal);
      const std::string doc = daily(std::string{"<Currency ISOCode=\"KZT\"><Nominal>"} + nominal +
                                    "</Nominal><Value>0,18</Value></Currency>");
      check_error_prefix(extract_nbkr(doc), "NBKR XML: currency KZT: Nominal '");
    }
  }
  SUBCASE("a division past twelve decimal places") {
    check_error(extract_nbkr(daily(
                    "<Currency ISOCode=\"IRR\"><Nominal>1000</Nominal><Value>0,0000000002</Value>"
                    "</Currency>")),
                "NBKR XML: currency IRR: Value 0.0000000002 per Nominal 1000 needs more than 12 "
                "decimal places");
  }
  SUBCASE("white space around element text is ignored") {
    check_rates(extract_nbkr(daily(
                    "<Currency ISOCode=\" usd \"><Nominal> 1 </Nominal><Value>\n 69,85 \n</Value>"
                    "</Currency>")),
                {{"USD", "69.85"}}, day(2019, 9, 13));
  }
}

TEST_CASE("extract_nbkr rejects a document with any bad currency") {
  SUBCASE("garbled Value") {
    check_error(extract_nbkr(read_nbkr("variants/garbled_value.xml")),
                "NBKR XML: currency KZT: Value 'abc' is not a decimal");
  }
  SUBCASE("missing Value") {
    check_error(extract_nbkr(read_nbkr("variants/missing_value.xml")),
                "NBKR XML: currency EUR: no Value");
  }
  SUBCASE("missing Nominal") {
    check_error(extract_nbkr(daily("<Currency ISOCode=\"USD\"><Value>69,85</Value></Currency>")),
                "NBKR XML: currency USD: no Nominal");
  }
  SUBCASE("two Values") {
    check_error(
        extract_nbkr(daily(
            "<Currency "
            "ISOCode=\"USD\"><Nominal>1</Nominal><Value>1</Value><Value>2</Value></Currency>")),
        "NBKR XML: currency USD: more than one Value");
  }
  SUBCASE("Value with markup inside") {
    check_error(
        extract_nbkr(daily(
            "<Currency ISOCode=\"USD\"><Nominal>1</Nominal><Value>69<b/>,85</Value></Currency>")),
        "NBKR XML: currency USD: Value is not plain text");
  }
  SUBCASE("negative, signed, exponent and zero values") {
    for (const char* value : {"-69,85", "+69,85", "6.985e1", "69 85", "69,85,00"}) {
      CAPTURE(value);
      check_error_prefix(
          extract_nbkr(daily(std::string{"<Currency ISOCode=\"USD\"><Nominal>1</Nominal><Value>"} +
                             value + "</Value></Currency>")),
          "NBKR XML: currency USD: Value '");
    }
    check_error(
        extract_nbkr(daily(
            "<Currency ISOCode=\"USD\"><Nominal>1</Nominal><Value>0,0000</Value></Currency>")),
        "NBKR XML: currency USD: Value '0,0000' is zero");
  }
  SUBCASE("an ISOCode that is not three letters") {
    check_error(extract_nbkr(read_nbkr("variants/bad_isocode.xml")),
                "NBKR XML: Currency #1: ISOCode 'US$' is not three ASCII letters");
    check_error(extract_nbkr(daily("<Currency><Nominal>1</Nominal><Value>1</Value></Currency>")),
                "NBKR XML: Currency #1 has no ISOCode");
  }
  SUBCASE("lower-case ISOCode is upper-cased") {
    check_rates(
        extract_nbkr(daily(
            "<Currency ISOCode=\"kzt\"><Nominal>1</Nominal><Value>0,1804</Value></Currency>")),
        {{"KZT", "0.1804"}}, day(2019, 9, 13));
  }
  SUBCASE("the same currency twice") {
    check_error(extract_nbkr(read_nbkr("variants/duplicate_currency.xml")),
                "NBKR XML: currency USD appears twice");
  }
}

TEST_CASE("extract_nbkr requires a valid document and Date") {
  SUBCASE("missing Date") {
    check_error(extract_nbkr(read_nbkr("variants/missing_date.xml")),
                "NBKR XML: CurrencyRates has no Date attribute");
  }
  SUBCASE("impossible Date") {
    check_error(extract_nbkr(read_nbkr("variants/invalid_date.xml")),
                "NBKR XML: Date '31.02.2024' is not a valid DD.MM.YYYY date");
  }
  SUBCASE("Date in other formats") {
    for (const char* date :
         {"2019-09-13", "13/09/2019", "1.9.2019", "13.09.19", "", "00.09.2019", "13.13.2019"}) {
      CAPTURE(date);
      check_error_prefix(
          extract_nbkr(daily(
              "<Currency ISOCode=\"USD\"><Nominal>1</Nominal><Value>1</Value></Currency>", date)),
          "NBKR XML: Date '");
    }
  }
  SUBCASE("leap day") {
    check_rates(extract_nbkr(daily(
                    "<Currency ISOCode=\"USD\"><Nominal>1</Nominal><Value>89,5</Value></Currency>",
                    "29.02.2024")),
                {{"USD", "89.5"}}, day(2024, 2, 29));
  }
  SUBCASE("wrong root") {
    check_error(extract_nbkr(read_nbkr("variants/wrong_root.xml")),
                "NBKR XML: root element is <ValCurs>, expected <CurrencyRates>");
  }
  SUBCASE("no currencies") {
    check_error(extract_nbkr(read_nbkr("variants/no_currencies.xml")),
                "NBKR XML: no Currency elements");
  }
  SUBCASE("HTML instead of XML") {
    check_error_prefix(extract_nbkr(read_nbkr("variants/html_instead.html")),
                       "NBKR XML: not well-formed XML");
  }
  SUBCASE("well-formed XHTML instead of XML") {
    check_error(extract_nbkr("<html><body><p>USD 69,85</p></body></html>"),
                "NBKR XML: root element is <html>, expected <CurrencyRates>");
  }
  SUBCASE("empty input") {
    check_error(extract_nbkr(""), "NBKR XML: document is empty");
    check_error(extract_nbkr(" \r\n"), "NBKR XML: document is empty");
  }
  SUBCASE("garbage") {
    check_error_prefix(extract_nbkr("\x89PNG\r\n\x1a\n\0\0\0\rIHDR"sv),
                       "NBKR XML: not well-formed XML");
    check_error_prefix(extract_nbkr("not xml at all"), "NBKR XML: not well-formed XML");
  }
  SUBCASE("truncated document") {
    const std::string doc = read_nbkr("daily_2019-09-13_Daniiar-NBKR.xml");
    check_error_prefix(extract_nbkr(std::string_view{doc}.substr(0, doc.size() / 2)),
                       "NBKR XML: not well-formed XML");
  }
  SUBCASE("over the size limit") {
    const std::string doc = daily(std::string(2 * 1024 * 1024, ' '));
    check_error_prefix(extract_nbkr(doc), "NBKR XML: document too large");
  }
  SUBCASE("a Weekly name is accepted like Daily") {
    const std::string doc =
        "<CurrencyRates Name=\"Weekly Exchange Rates\" Date=\"14.12.2013\"><Currency "
        "ISOCode=\"GBP\"><Nominal>1</Nominal>"
        "<ValidFor>7</ValidFor><Value>80,5518</Value></Currency></CurrencyRates>";
    check_rates(extract_nbkr(doc), {{"GBP", "80.5518"}}, day(2013, 12, 14));
  }
}

TEST_CASE("extract_nbkr writes nothing to stderr, even on encoding errors") {
  // 0x98 is unassigned in windows-1251: the conversion error goes to libxml2's generic
  // error handler, which prints unless the extractor silences it.
  const std::string doc = daily(
      "<!-- \x98 --><Currency ISOCode=\"USD\"><Nominal>1</Nominal><Value>1</Value></Currency>");
  std::FILE* capture = std::tmpfile();
  REQUIRE(capture != nullptr);
  std::fflush(stderr);
  const int saved = dup(STDERR_FILENO);
  REQUIRE(saved >= 0);
  REQUIRE(dup2(fileno(capture), STDERR_FILENO) >= 0);
  const extraction got = extract_nbkr(doc);
  std::fflush(stderr);
  dup2(saved, STDERR_FILENO);
  close(saved);
  std::fseek(capture, 0, SEEK_END);
  const long written = std::ftell(capture);
  std::fclose(capture);
  CHECK(written == 0);
  check_error_prefix(got, "NBKR XML: not well-formed XML");
}

TEST_CASE("extract_nbkr never expands entities") {
  SUBCASE("external entity pointing at /etc/passwd") {
    const extraction got = extract_nbkr(read_nbkr("variants/xxe_file.xml"));
    check_error(got, "NBKR XML: document type declarations are not accepted");
    CHECK(got.error.find("root:") == std::string::npos);
  }
  SUBCASE("external entity pointing at a file that holds a valid rate") {
    // Were the entity loaded, the Value would read 69,8500 and the document would pass.
    const std::string payload = std::string{SOMRATED_TEST_DATA} + "/nbkr/variants/xxe_payload.txt";
    REQUIRE(read_nbkr("variants/xxe_payload.txt") == "69,8500");
    const std::string doc =
        "<?xml version=\"1.0\"?>\n<!DOCTYPE CurrencyRates [<!ENTITY e SYSTEM \"file://" + payload +
        "\">]>\n<CurrencyRates Date=\"13.09.2019\"><Currency ISOCode=\"USD\"><Nominal>1</Nominal>"
        "<Value>&e;</Value></Currency></CurrencyRates>\n";
    check_error(extract_nbkr(doc), "NBKR XML: document type declarations are not accepted");
  }
  SUBCASE("internal entity") {
    check_error(extract_nbkr(read_nbkr("variants/internal_entity.xml")),
                "NBKR XML: document type declarations are not accepted");
  }
  SUBCASE("billion laughs") {
    const extraction got = extract_nbkr(read_nbkr("variants/billion_laughs.xml"));
    CHECK_FALSE(got.ok());
    CHECK(got.rates.empty());
    CHECK(got.error.starts_with("NBKR XML: "));
  }
  SUBCASE("undeclared entity") {
    check_error_prefix(
        extract_nbkr(
            daily("<Currency ISOCode=\"USD\"><Nominal>1</Nominal><Value>&e;</Value></Currency>")),
        "NBKR XML: not well-formed XML");
  }
  SUBCASE("character references are plain text") {
    check_rates(
        extract_nbkr(daily(
            "<Currency ISOCode=\"USD\"><Nominal>1</Nominal><Value>69&#44;85</Value></Currency>")),
        {{"USD", "69.85"}}, day(2019, 9, 13));
  }
}
