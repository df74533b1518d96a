#include "somrated/csv.hpp"

#include <doctest/doctest.h>

#include <random>
#include <sstream>
#include <string>
#include <vector>

using somrated::append_csv_field;
using somrated::csv_reader;
using somrated::csv_record;

namespace {

/// Every record of text, as read.
std::vector<csv_record> read_all(const std::string& text, std::size_t max_record = 64 * 1024) {
  std::istringstream in(text);
  csv_reader reader(in, max_record);
  std::vector<csv_record> out;
  csv_record r;
  while (reader.next(r)) out.push_back(r);
  CHECK_FALSE(reader.failed());
  return out;
}

/// The fields of each record.
std::vector<std::vector<std::string>> fields_of(const std::vector<csv_record>& records) {
  std::vector<std::vector<std::string>> out;
  for (const auto& r : records) out.push_back(r.fields);
  return out;
}

/// One field as append_csv_field writes it.
std::string field(std::string_view s) {
  std::string out;
  append_csv_field(out, s);
  return out;
}

}  // namespace

TEST_CASE("append_csv_field quotes only what needs it") {
  CHECK(field("87.45") == "87.45");
  CHECK(field("") == "");
  CHECK(field("a b") == "a b");
  CHECK(field("a,b") == "\"a,b\"");
  CHECK(field("say \"hi\"") == "\"say \"\"hi\"\"\"");
  CHECK(field("two\nlines") == "\"two\nlines\"");
  CHECK(field("cr\r") == "\"cr\r\"");
  std::string out = "x,";
  append_csv_field(out, "y");
  CHECK(out == "x,y");
}

TEST_CASE("csv_reader") {
  using rows = std::vector<std::vector<std::string>>;
  SUBCASE("plain records, with and without a final line break") {
    CHECK(fields_of(read_all("a,b,c\n1,2,3\n")) == rows{{"a", "b", "c"}, {"1", "2", "3"}});
    CHECK(fields_of(read_all("a,b\n1,2")) == rows{{"a", "b"}, {"1", "2"}});
    CHECK(read_all("").empty());
  }
  SUBCASE("empty fields, a trailing comma and blank lines") {
    const auto records = read_all("a,,c,\n\n,\n");
    CHECK(fields_of(records) == rows{{"a", "", "c", ""}, {""}, {"", ""}});
    CHECK_FALSE(records[0].blank());
    CHECK(records[1].blank());
    CHECK_FALSE(records[2].blank());
  }
  SUBCASE("CRLF line breaks; a lone CR is data") {
    CHECK(fields_of(read_all("a,b\r\n1,2\r\n")) == rows{{"a", "b"}, {"1", "2"}});
    CHECK(fields_of(read_all("\"q\"\r\nx\ry\n")) == rows{{"q"}, {"x\ry"}});
  }
  SUBCASE("quoted fields hold commas, quotes and line breaks; lines are counted") {
    const auto records =
        read_all("h1,h2\n\"a,b\",\"say \"\"hi\"\"\"\n\"two\nlines\",x\nlast,\"\"\n");
    REQUIRE(records.size() == 4);
    CHECK(records[1].fields == std::vector<std::string>{"a,b", "say \"hi\""});
    CHECK(records[2].fields == std::vector<std::string>{"two\nlines", "x"});
    CHECK(records[3].fields == std::vector<std::string>{"last", ""});
    CHECK(records[0].line == 1);
    CHECK(records[1].line == 2);
    CHECK(records[2].line == 3);
    CHECK(records[3].line == 5);
  }
  SUBCASE("a UTF-8 byte-order mark is skipped, only at the start") {
    CHECK(fields_of(read_all("\xEF\xBB\xBFsource,rate\n")) == rows{{"source", "rate"}});
    CHECK(fields_of(read_all("a\n\xEF\xBB\xBF"
                             "b\n")) == rows{{"a"},
                                             {"\xEF\xBB\xBF"
                                              "b"}});
    CHECK(fields_of(read_all("\xEF\xBB")) == rows{{"\xEF\xBB"}});
  }
  SUBCASE("a stray quote spoils its record only") {
    const auto records = read_all("a,b\"c,d\nnext,ok\n");
    REQUIRE(records.size() == 2);
    CHECK(records[0].error.find("a quote inside an unquoted field") == 0);
    CHECK(records[0].error_field == 2);
    CHECK(records[0].line == 1);
    CHECK(records[1].error.empty());
    CHECK(records[1].fields == std::vector<std::string>{"next", "ok"});
    CHECK(records[1].line == 2);
  }
  SUBCASE("text after a closing quote") {
    const auto records = read_all("x,\"a\"b,c\ny\n");
    REQUIRE(records.size() == 2);
    CHECK(records[0].error == "text after the closing quote of a quoted field");
    CHECK(records[0].error_field == 2);
    CHECK(records[1].fields == std::vector<std::string>{"y"});
  }
  SUBCASE("an unterminated quote") {
    const auto records = read_all("ok\n1,\"open\nstill open\n");
    REQUIRE(records.size() == 2);
    CHECK(records[1].error == "the quote opened on line 2 is never closed");
    CHECK(records[1].error_field == 2);
    CHECK(records[1].line == 2);
  }
  SUBCASE("an over-long record is refused and reading resumes on the next line") {
    const std::string longline(100, 'x');
    for (const std::string& bad : {longline, "\"" + longline + "\""}) {
      const auto records = read_all("a,b\n" + bad + ",1\nc,d\n", 50);
      REQUIRE(records.size() == 3);
      CHECK(records[1].error == "record longer than 50 bytes");
      CHECK(records[1].error_field == 1);
      CHECK(records[2].fields == std::vector<std::string>{"c", "d"});
      CHECK(records[2].line == 3);
    }
  }
  SUBCASE("records spanning the read buffer and a long input") {
    std::string text;
    std::vector<std::vector<std::string>> expected;
    for (int i = 0; i < 20000; ++i) {
      std::vector<std::string> row{"24kg", "USD", std::to_string(i), "87.45\"x\",\n"};
      for (std::size_t j = 0; j < row.size(); ++j) {
        if (j > 0) text += ',';
        append_csv_field(text, row[j]);
      }
      text += '\n';
      expected.push_back(row);
    }
    REQUIRE(text.size() > 3 * 64 * 1024);
    const auto records = read_all(text);
    CHECK(fields_of(records) == expected);
    CHECK(records.back().line == 2 * 20000 - 1);
  }
  SUBCASE("what append_csv_field writes reads back") {
    std::mt19937 rng(7);
    const std::string alphabet = "ab,\"\n\r x";
    for (int round = 0; round < 200; ++round) {
      std::vector<std::string> row(1 + rng() % 4);
      for (auto& f : row) {
        const auto n = rng() % 6;
        for (unsigned k = 0; k < n; ++k) f += alphabet[rng() % alphabet.size()];
      }
      // A record of one empty field is a blank line; give it a companion.
      if (row.size() == 1 && row[0].empty()) row.push_back("z");
      std::string text;
      for (std::size_t j = 0; j < row.size(); ++j) {
        if (j > 0) text += ',';
        append_csv_field(text, row[j]);
      }
      text += "\r\n";
      CAPTURE(text);
      const auto records = read_all(text);
      REQUIRE(records.size() == 1);
      CHECK(records[0].error.empty());
      CHECK(records[0].fields == row);
    }
  }
}
