#include "somrated/decimal.hpp"

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
