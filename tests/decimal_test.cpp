#include "somrated/decimal.hpp"

#include <optional>
#include <string>
#include <string_view>

#include <doctest/doctest.h>

using somrated::decimal;

TEST_CASE("decimal keeps the published digits") {
  SUBCASE("dot and comma separators") {
    REQUIRE(decimal::parse("87.45"));
    CHECK(decimal::parse("87.45")->text() == "87.45");
    CHECK(decimal::parse("87,4500")->text() == "87.4500");
    CHECK(decimal::parse("1.10")->text() == "1.10");
    CHECK(decimal::parse("29")->text() == "29");
  }
  SUBCASE("mantissa and scale") {
    auto d = decimal::parse("0,0468");
    REQUIRE(d);
    CHECK(d->mantissa() == 468);
    CHECK(d->scale() == 4);
  }
  SUBCASE("rejects what is not a plain decimal") {
    for (const char* bad : {"", "-1", "+1", "1e3", ".5", "5.", "8 7.45", "1.2.3", "1,2,3", " 1",
                            "0x10", "1.2345678901234", "12345678901234567890"}) {
      CAPTURE(bad);
      CHECK_FALSE(decimal::parse(bad));
    }
  }
}

TEST_CASE("decimal compares numerically") {
  CHECK(*decimal::parse("87.45") == *decimal::parse("87.4500"));
  CHECK(*decimal::parse("87.45") < *decimal::parse("87.46"));
  CHECK(*decimal::parse("100") > *decimal::parse("99.9999"));
  CHECK(*decimal::parse("0.0468") < *decimal::parse("0.05"));
  CHECK(decimal::parse("1.10")->to_double() == doctest::Approx(1.1));
}

TEST_CASE("decimal divides by a power-of-ten nominal exactly") {
  auto v = decimal::parse("12,3456");
  REQUIRE(v);
  CHECK(v->divided_by(1)->text() == "12.3456");
  CHECK(v->divided_by(10)->text() == "1.23456");
  CHECK(v->divided_by(100)->text() == "0.123456");
  CHECK(decimal::parse("5")->divided_by(1000)->text() == "0.005");
  CHECK_FALSE(v->divided_by(3));
  CHECK_FALSE(v->divided_by(0));
  CHECK_FALSE(decimal::parse("1.123456789012")->divided_by(10));
}

namespace {

/// A decimal from text the test knows is valid.
decimal d(std::string_view text) {
  auto v = decimal::parse(text);
  REQUIRE(v);
  return *v;
}

/// The text of an arithmetic result, or "none" when there is none.
std::string text_of(const std::optional<decimal>& v) {
  return v ? v->text() : "none";
}

using precision = decimal::precision;

}  // namespace

TEST_CASE("decimal multiplies exactly") {
  CHECK(text_of(decimal::multiply(d("100"), d("87.45"))) == "8745.00");
  CHECK(text_of(decimal::multiply(d("1.5"), d("87.45"))) == "131.175");
  CHECK(text_of(decimal::multiply(d("0.5"), d("0.0468"))) == "0.02340");
  CHECK(text_of(decimal::multiply(d("0"), d("87.45"))) == "0.00");
  SUBCASE("zeros that carry no value make room") {
    CHECK(text_of(decimal::multiply(d("1.000000"), d("1.0000000"))) == "1.000000000000");
    CHECK(text_of(decimal::multiply(d("10000000000.0000000"), d("2.000000"))) ==
          "20000000000.0000000");
  }
  SUBCASE("an exact product that does not fit is refused") {
    CHECK_FALSE(decimal::multiply(d("0.000001"), d("0.0000001")));  // 13 places
    CHECK_FALSE(decimal::multiply(d("999999999999999999"), d("2")));
  }
  SUBCASE("the result is a decimal like any other") {
    auto p = decimal::multiply(d("3"), d("1.10"));
    REQUIRE(p);
    CHECK(*p == d("3.3"));
    CHECK(p->mantissa() == 330);
    CHECK(p->scale() == 2);
    CHECK(decimal::parse(p->text()) == p);
  }
}

TEST_CASE("decimal divides with one half-even rounding") {
  SUBCASE("places") {
    CHECK(text_of(decimal::divide(d("1"), d("8"), precision::places(2))) == "0.12");  // tie
    CHECK(text_of(decimal::divide(d("3"), d("8"), precision::places(2))) == "0.38");  // tie
    // 0.1250000001...: just above the tie, known only from the remainder.
    CHECK(text_of(decimal::divide(d("1"), d("7.99999999"), precision::places(2))) == "0.13");
    CHECK(text_of(decimal::divide(d("87.45"), d("1.10"), precision::places(3))) == "79.500");
    CHECK(text_of(decimal::divide(d("1"), d("3"), precision::places(40))) == "0.333333333333");
    CHECK(text_of(decimal::divide(d("2"), d("3"), precision::places(0))) == "1");
  }
  SUBCASE("significant digits") {
    CHECK(text_of(decimal::divide(d("1"), d("87.45"), precision::significant(5))) == "0.011435");
    CHECK(text_of(decimal::divide(d("87.45"), d("99.56"), precision::significant(5))) == "0.87836");
    CHECK(text_of(decimal::divide(d("99.56"), d("1.10"), precision::significant(5))) == "90.509");
    CHECK(text_of(decimal::divide(d("8745"), d("1"), precision::significant(2))) == "8700");
    // Past max_scale places the value rounds at max_scale.
    CHECK(text_of(decimal::divide(d("1"), d("99999999999999999"), precision::significant(5))) ==
          "0.000000000000");
    CHECK(text_of(decimal::divide(d("0"), d("3"), precision::significant(5))) == "0");
  }
  SUBCASE("quoted by magnitude on the exact value") {
    CHECK(text_of(decimal::divide(d("87.45"), d("99.56"), precision::quote())) == "0.87836");
    CHECK(text_of(decimal::divide(d("1"), d("87.45"), precision::quote())) == "0.01144");
    CHECK(text_of(decimal::divide(d("99.56"), d("87.45"), precision::quote())) == "1.1385");
    CHECK(text_of(decimal::divide(d("99.56"), d("1.10"), precision::quote())) == "90.51");
    // 240 / 3 is 80 exactly (three places); a hair more is above 80 (two places).
    CHECK(text_of(decimal::divide(d("240"), d("3"), precision::quote())) == "80.000");
    CHECK(text_of(decimal::divide(d("240.0000001"), d("3"), precision::quote())) == "80.00");
  }
  SUBCASE("nothing to divide by") {
    CHECK_FALSE(decimal::divide(d("1"), d("0"), precision::places(2)));
    CHECK_FALSE(decimal::divide(d("1"), d("0.000"), precision::quote()));
  }
  SUBCASE("too many digits") {
    CHECK_FALSE(decimal::divide(d("999999999999999999"), d("0.1"), precision::places(0)));
  }
}

TEST_CASE("decimal multiply_divide rounds once") {
  // 100 × 87.45 / 99.56 = 87.83648051426...
  CHECK(text_of(decimal::multiply_divide(d("100"), d("87.45"), d("99.56"),
                                         precision::significant(10))) == "87.83648051");
  CHECK(text_of(decimal::multiply_divide(d("100"), d("87.45"), d("99.56"), precision::quote())) ==
        "87.84");
  // 0.5 × 1 / 4 = 0.125: a tie, settled on the exact product.
  CHECK(text_of(decimal::multiply_divide(d("0.5"), d("1"), d("4"), precision::places(2))) ==
        "0.12");
  // The product of two 18-digit mantissas is kept whole before dividing.
  CHECK(text_of(decimal::multiply_divide(d("999999999999999999"), d("999999999999999999"),
                                         d("999999999999999999"), precision::places(0))) ==
        "999999999999999999");
  CHECK_FALSE(decimal::multiply_divide(d("1"), d("1"), d("0"), precision::quote()));
}

TEST_CASE("decimal rounds to a stated precision") {
  CHECK(text_of(d("0.125").rounded(precision::places(2))) == "0.12");
  CHECK(text_of(d("0.135").rounded(precision::places(2))) == "0.14");
  CHECK(text_of(d("0.1251").rounded(precision::places(2))) == "0.13");
  CHECK(text_of(d("2.5").rounded(precision::places(0))) == "2");
  CHECK(text_of(d("3.5").rounded(precision::places(0))) == "4");
  CHECK(text_of(d("9.9999").rounded(precision::places(2))) == "10.00");
  CHECK(text_of(d("1.5").rounded(precision::places(3))) == "1.500");
  CHECK(text_of(d("0.0004").rounded(precision::places(3))) == "0.000");
  CHECK(text_of(d("878364805.14").rounded(precision::significant(8))) == "878364810");
  CHECK(text_of(d("0.00123449").rounded(precision::significant(4))) == "0.001234");
  SUBCASE("quote places follow the value") {
    CHECK(text_of(d("5000").rounded(precision::quote())) == "5000.00");
    CHECK(text_of(d("5000.5").rounded(precision::quote())) == "5000");
    CHECK(text_of(d("5001.5").rounded(precision::quote())) == "5002");
    CHECK(text_of(d("80").rounded(precision::quote())) == "80.000");
    CHECK(text_of(d("80.001").rounded(precision::quote())) == "80.00");
    CHECK(text_of(d("20.0001").rounded(precision::quote())) == "20.000");
    CHECK(text_of(d("1").rounded(precision::quote())) == "1.00000");
    CHECK(text_of(d("1.00001").rounded(precision::quote())) == "1.0000");
    CHECK(text_of(d("0.0001").rounded(precision::quote())) == "0.000100");
    CHECK(text_of(d("0.00010001").rounded(precision::quote())) == "0.00010");
  }
  SUBCASE("a carry past 18 digits is refused") {
    CHECK_FALSE(d("999999999999999999").rounded(precision::significant(17)));
    CHECK(text_of(d("999999999999999999").rounded(precision::significant(18))) ==
          "999999999999999999");
  }
}
