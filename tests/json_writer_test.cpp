#include "somrated/json_writer.hpp"

#include <cstdint>
#include <string>

#include <doctest/doctest.h>
#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

using somrated::decimal;
using somrated::json_writer;

namespace {

/// A decimal from text that the test knows is valid.
decimal dec(std::string_view text) {
  auto d = decimal::parse(text);
  REQUIRE(d);
  return *d;
}

/// The writer's text parsed back; fails the test when it is not valid JSON.
boost::json::value parse(const json_writer& w) {
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(w.str(), ec);
  INFO("output: ", w.str());
  REQUIRE_FALSE(ec);
  return v;
}

/// A one-string document `["…"]` for s.
json_writer string_doc(std::string_view s) {
  json_writer w;
  w.begin_array().value(s).end_array();
  return w;
}

}  // namespace

TEST_CASE("json_writer escapes strings through Boost.JSON") {
  SUBCASE("quotes and backslashes") {
    json_writer w = string_doc("say \"hi\" \\ bye");
    CHECK(w.str() == R"(["say \"hi\" \\ bye"])");
    CHECK(parse(w).as_array().at(0).as_string() == "say \"hi\" \\ bye");
  }
  SUBCASE("every control character from \\x01 to \\x1f, and NUL") {
    std::string all;
    all.push_back('\0');
    for (char c = '\x01'; c <= '\x1f'; ++c) all.push_back(c);
    json_writer w = string_doc(all);
    for (char c : w.str()) {
      CAPTURE(static_cast<int>(c));
      CHECK(static_cast<unsigned char>(c) >= 0x20);
    }
    CHECK(w.str().find("\\n") != std::string::npos);
    CHECK(w.str().find("\\u0001") != std::string::npos);
    CHECK(parse(w).as_array().at(0).as_string() == boost::json::string_view(all));
  }
  SUBCASE("non-ASCII UTF-8 is kept as is") {
    const std::string text = "Сом кыргызский – €1 😀";
    json_writer w = string_doc(text);
    CHECK(w.str() == "[\"" + text + "\"]");
    CHECK(parse(w).as_array().at(0).as_string() == boost::json::string_view(text));
  }
  SUBCASE("invalid UTF-8 becomes U+FFFD so the output stays valid") {
    for (std::string bad : {std::string("a\xff"
                                        "b"),
                            std::string("\xc3"),                 // truncated sequence
                            std::string("\xc0\xaf"),             // overlong '/'
                            std::string("\xed\xa0\x80"),         // UTF-16 surrogate
                            std::string("\xf4\x90\x80\x80")}) {  // above U+10FFFF
      CAPTURE(bad);
      json_writer w = string_doc(bad);
      auto v = parse(w);
      CHECK(std::string(v.as_array().at(0).as_string()).find("\xEF\xBF\xBD") != std::string::npos);
    }
    json_writer w = string_doc(
        "a\xff"
        "b");
    CHECK(w.str() ==
          "[\"a\xEF\xBF\xBD"
          "b\"]");
  }
  SUBCASE("keys are escaped too") {
    json_writer w;
    w.begin_object().key("a\"b\n").value(1).end_object();
    CHECK(w.str() == R"({"a\"b\n":1})");
    CHECK(parse(w).as_object().contains("a\"b\n"));
  }
}

TEST_CASE("json_writer prints decimals verbatim") {
  json_writer w;
  w.begin_array();
  for (const char* text : {"87.45", "1.10", "87.4500", "0.0468", "29", "0.000000000001"}) {
    w.value(dec(text));
  }
  w.end_array();
  CHECK(w.str() == "[87.45,1.10,87.4500,0.0468,29,0.000000000001]");
  auto v = parse(w);
  CHECK(v.as_array().at(0).as_double() == doctest::Approx(87.45));

  SUBCASE("leading zeros, which JSON forbids, are dropped") {
    json_writer z;
    z.begin_array().value(dec("087.45")).value(dec("00.5")).value(dec("0")).value(dec("007"));
    z.end_array();
    CHECK(z.str() == "[87.45,0.5,0,7]");
    parse(z);
  }
}

TEST_CASE("json_writer places commas and colons") {
  SUBCASE("nesting") {
    json_writer w;
    w.begin_object();
    w.key("a").value(std::int64_t{-5});
    w.key("b").begin_array().value(true).value(false).null().begin_object().end_object();
    w.begin_array().end_array().end_array();
    w.key("c").begin_object().key("d").value("e").key("f").value(std::size_t{7}).end_object();
    w.key("g").value(0);
    w.end_object();
    CHECK(w.str() == R"({"a":-5,"b":[true,false,null,{},[]],"c":{"d":"e","f":7},"g":0})");
    auto v = parse(w);
    CHECK(v.at("c").at("f").as_int64() == 7);
    CHECK(v.at("b").as_array().size() == 5);
  }
  SUBCASE("a string literal is a string, not a bool") {
    json_writer w;
    w.begin_array().value("x").end_array();
    CHECK(w.str() == R"(["x"])");
  }
  SUBCASE("top-level scalars") {
    json_writer w;
    w.value("only");
    CHECK(w.str() == R"("only")");
    CHECK(std::move(w).release() == R"("only")");
  }
  SUBCASE("integer extremes") {
    json_writer w;
    w.begin_array().value(INT64_MIN).value(UINT64_MAX).end_array();
    CHECK(w.str() == "[-9223372036854775808,18446744073709551615]");
  }
}

TEST_CASE("json_writer pretty mode indents with two spaces") {
  json_writer w(true);
  w.begin_object();
  w.key("rates").begin_object().key("USD").value(dec("87.45")).end_object();
  w.key("list").begin_array().value(1).value(2).end_array();
  w.key("empty").begin_array().end_array();
  w.key("none").null();
  w.end_object();
  CHECK(w.str() ==
        "{\n"
        "  \"rates\": {\n"
        "    \"USD\": 87.45\n"
        "  },\n"
        "  \"list\": [\n"
        "    1,\n"
        "    2\n"
        "  ],\n"
        "  \"empty\": [],\n"
        "  \"none\": null\n"
        "}");
  auto v = parse(w);
  CHECK(v.at("list").as_array().size() == 2);
  CHECK(v.at("none").is_null());
}
