#include "somrated/commands.hpp"

#include <unistd.h>

#include <doctest/doctest.h>
#include <fmt/core.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

using somrated::change_record;
using somrated::cli_options;
using somrated::command_io;
using somrated::config;
using somrated::decimal;
using somrated::export_csv;
using somrated::import_csv;
using somrated::import_error;
using somrated::import_options;
using somrated::import_summary;
using somrated::store;
using somrated::timestamp;
namespace fs = std::filesystem;

namespace {

/// A fresh directory under the temp directory, removed with its contents at scope end.
class temp_dir {
 public:
  temp_dir() {
    std::random_device rd;
    path_ = fs::temp_directory_path() /
            fmt::format("somrated-commands-test-{}-{:08x}{:08x}", ::getpid(), rd(), rd());
    fs::create_directories(path_);
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;

  /// A path inside the directory.
  std::string file(std::string_view name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

/// A time given in Unix milliseconds.
timestamp ms(std::int64_t v) {
  return timestamp{std::chrono::milliseconds{v}};
}

/// The CSV export writes for db.
std::string exported(store& db, const somrated::change_filter& f = {}) {
  std::ostringstream out;
  export_csv(db, f, out);
  return out.str();
}

/// The result of importing text, with what went to err.
struct import_run {
  import_summary summary;
  std::string err;
};

/// Imports text into db as "in.csv".
import_run import_text(store& db, const std::string& text, const import_options& o = {}) {
  std::istringstream in(text);
  std::ostringstream err;
  import_run r;
  r.summary = import_csv(db, in, "in.csv", err, o);
  r.err = err.str();
  return r;
}

/// The import_error message for text, or "" when it imports.
std::string header_error(const std::string& text) {
  store db(":memory:");
  try {
    import_text(db, text);
  } catch (const import_error& e) {
    return e.what();
  }
  return "";
}

/// What run_command printed and returned.
struct command_run {
  int code = 0;
  std::string out;
  std::string err;
};

/// Runs a day-two command line against cfg, with stdin as standard input.
command_run run(const std::vector<std::string>& args, const config& cfg,
                const std::string& stdin_text = "") {
  const auto opts = somrated::parse_cli(args);
  std::istringstream in(stdin_text);
  std::ostringstream out, err;
  command_run r;
  r.code = somrated::run_command(opts, cfg, command_io{in, out, err});
  r.out = out.str();
  r.err = err.str();
  return r;
}

/// The header plus lines.
std::string csv(std::initializer_list<std::string_view> lines) {
  std::string out(somrated::csv_header);
  out += '\n';
  for (const auto line : lines) {
    out += line;
    out += '\n';
  }
  return out;
}

}  // namespace

TEST_CASE("export_csv writes exact text") {
  store db(":memory:");
  db.merge_changes(std::vector<change_record>{
      {"24kg", "RUB", ms(1749552720123), *decimal::parse("1.10"), ms(1749553000000), std::nullopt},
      {"nbkr", "USD", ms(1749513600000), *decimal::parse("87,4500"), ms(1749513600001),
       std::chrono::sys_days{std::chrono::year{2025} / 6 / 10}},
  });
  CHECK(exported(db) == csv({"24kg,RUB,2025-06-10T10:52:00.123Z,1.10,2025-06-10T10:56:40.000Z,",
                             "nbkr,USD,2025-06-10T00:00:00.000Z,87.4500,2025-06-10T00:00:00.001Z,"
                             "2025-06-10"}));
  CHECK(exported(db, {.source = "nbkr"}).find("24kg") == std::string::npos);
  store empty(":memory:");
  CHECK(exported(empty) == csv({}));
}

TEST_CASE("import_csv") {
  store db(":memory:");

  SUBCASE("what export writes reads back exactly, and a second import changes nothing") {
    std::vector<change_record> rows;
    for (int i = 0; i < 250; ++i) {
      rows.push_back(
          {i % 3 == 0 ? "nbkr" : "24kg", i % 2 ? "USD" : "EUR", ms(1700000000000 + i * 7),
           *decimal::parse(fmt::format("{}.{:04}", 80 + i % 5, i)),
           ms(1700000000000 + i * 7 + i % 4),
           i % 3 == 0 ? std::optional(std::chrono::sys_days{std::chrono::days{20000 + i}})
                      : std::nullopt});
    }
    store source(":memory:");
    source.merge_changes(rows);
    const auto text = exported(source);
    const auto first = import_text(db, text, {.batch_rows = 7});
    CHECK(first.err == "");
    CHECK(first.summary.imported == 250);
    CHECK(first.summary.rejected == 0);
    CHECK(exported(db) == text);
    const auto second = import_text(db, text);
    CHECK(second.summary.imported == 0);
    CHECK(second.summary.present == 250);
    CHECK(exported(db) == text);
  }
  SUBCASE("columns in any order, optional ones left out, loose spelling") {
    const auto r =
        import_text(db,
                    "\xEF\xBB\xBF Rate ,Since,CURRENCY,source\r\n87.45,2025-06-10,usd,24kg\r\n\r\n"
                    "\"87.50\", 1749600000 ,USD,24kg\r\n");
    CHECK(r.err == "");
    CHECK(r.summary.imported == 2);
    CHECK(exported(db) ==
          csv({"24kg,USD,2025-06-10T00:00:00.000Z,87.45,2025-06-10T00:00:00.000Z,",
               "24kg,USD,2025-06-11T00:00:00.000Z,87.50,2025-06-11T00:00:00.000Z,"}));
  }
  SUBCASE("bad rows are reported by line and column and skipped") {
    const auto r = import_text(db, csv({
                                       "24kg,USD,2025-06-10,87.45,,",             // line 2: fine
                                       "24kg,USD,2025-06-11,87.4x,,",             // 3: rate
                                       "24 kg,USD,2025-06-11,87.46,,",            // 4: source
                                       "24kg,US,2025-06-11,87.46,,",              // 5: currency
                                       "24kg,USD,yesterday,87.46,,",              // 6: since
                                       "24kg,USD,2025-06-11,87.46,2025-06-10,",   // 7: observed
                                       "24kg,USD,2025-06-11,87.46,,2025-02-30",   // 8: date
                                       "24kg,USD,2025-06-11,87.46",               // 9: fields
                                       "24kg,USD,2025-06-11,\"87\"46\",,",        // 10: quote
                                       "24kg,USD,2025-06-11,0.00,,",              // 11: zero
                                       "nbkr,KZT,2025-06-11,0.1686,,2025-06-11",  // 12: fine
                                   }));
    CHECK(r.summary.imported == 2);
    CHECK(r.summary.rejected == 9);
    CHECK(r.err ==
          "in.csv:3: column 4: rate: \"87.4x\" is not a rate (digits with an optional decimal "
          "point, like 87.45)\n"
          "in.csv:4: column 1: source: \"24 kg\" is not a source name (1 to 32 of a-z, 0-9, '_' "
          "and '-')\n"
          "in.csv:5: column 2: currency: \"US\" is not a currency code (three letters, like USD)\n"
          "in.csv:6: column 3: since: \"yesterday\" is not a time (use RFC 3339 like "
          "2025-06-10T10:52:00Z, YYYY-MM-DD, or Unix seconds or milliseconds)\n"
          "in.csv:7: column 5: observed_at: 2025-06-10T00:00:00.000Z is before since "
          "(2025-06-11T00:00:00.000Z)\n"
          "in.csv:8: column 6: effective_date: \"2025-02-30\" is not a date (YYYY-MM-DD)\n"
          "in.csv:9: 4 fields, but the header has 6\n"
          "in.csv:10: column 4: text after the closing quote of a quoted field\n"
          "in.csv:11: column 4: rate: a rate cannot be zero\n");
    CHECK(exported(db) == csv({"24kg,USD,2025-06-10T00:00:00.000Z,87.45,2025-06-10T00:00:00.000Z,",
                               "nbkr,KZT,2025-06-11T00:00:00.000Z,0.1686,2025-06-11T00:00:00.000Z,"
                               "2025-06-11"}));
  }
  SUBCASE("conflicts name their line, across batches") {
    import_text(db, csv({"24kg,USD,2025-06-10,87.45,,", "24kg,USD,2025-06-12,87.47,,"}));
    const auto r = import_text(db,
                               csv({"24kg,USD,2025-06-09,87.40,,", "24kg,USD,2025-06-10,87.45,,",
                                    "24kg,USD,2025-06-11,87.46,,", "24kg,USD,2025-06-12,87.48,,",
                                    "24kg,USD,2025-06-12T00:00:00.000Z,87.49,,"}),
                               {.batch_rows = 2});
    CHECK(r.summary.imported == 2);
    CHECK(r.summary.present == 1);
    CHECK(r.summary.rejected == 2);
    CHECK(r.err ==
          "in.csv:5: 24kg USD at 2025-06-12T00:00:00.000Z: the database has 87.47 at that time, "
          "the file 87.48; not imported\n"
          "in.csv:6: 24kg USD at 2025-06-12T00:00:00.000Z: the database has 87.47 at that time, "
          "the file 87.49; not imported\n");
  }
  SUBCASE("a value known to start later moves earlier") {
    import_text(db, csv({"24kg,USD,2025-06-12,87.45,,"}));
    const auto r = import_text(db, csv({"24kg,USD,2025-06-10,87.45,,"}));
    CHECK(r.summary.extended == 1);
    CHECK(exported(db) ==
          csv({"24kg,USD,2025-06-10T00:00:00.000Z,87.45,2025-06-12T00:00:00.000Z,"}));
  }
  SUBCASE("only the first problems are printed") {
    const auto r = import_text(db, csv({"x", "y", "z"}), {.max_reported = 1});
    CHECK(r.summary.rejected == 3);
    CHECK(r.err == "in.csv:2: 1 field, but the header has 6\nin.csv: 2 more problems not shown\n");
  }
  SUBCASE("an unusable header stops the import before anything is written") {
    CHECK(header_error("") ==
          "in.csv: empty input: expected the header "
          "source,currency,since,rate,observed_at,effective_date");
    CHECK(header_error("\n\n") == header_error(""));
    CHECK(header_error("source,currency,since,rte\n") ==
          "in.csv:1: column 4: unknown column \"rte\"; did you mean \"rate\"? (the columns are "
          "source,currency,since,rate,observed_at,effective_date)");
    CHECK(header_error("time,currency,source,rate\n24kg,USD,1,2\n")
              .find("in.csv:1: column 1: unknown column \"time\" (the columns are") == 0);
    CHECK(header_error("source,currency,since\n") ==
          "in.csv:1: the header has no \"rate\" column (the columns are "
          "source,currency,since,rate,observed_at,effective_date)");
    CHECK(header_error("source,currency,since,rate,Rate\n") ==
          "in.csv:1: column 5: \"rate\" is given twice (also column 4)");
    CHECK(header_error("source,\"currency\nx\",since,rate\n").find("in.csv:1: column 2: unknown") ==
          0);
  }
}

TEST_CASE("run_command") {
  temp_dir dir;
  config cfg = somrated::default_config();
  cfg.storage.path = dir.file("rates.db");

  SUBCASE("check-config prints the effective config, redacted") {
    cfg.server.token = "0123456789abcdef0123";
    const auto r = run({"check-config"}, cfg);
    CHECK(r.code == 0);
    CHECK(r.err == "");
    CHECK(r.out == somrated::to_redacted_toml(cfg));
    CHECK(r.out.find("0123456789abcdef0123") == std::string::npos);
  }
  SUBCASE("commands that read the database need one") {
    for (const auto& args : std::vector<std::vector<std::string>>{
             {"export"}, {"vacuum"}, {"backup", dir.file("b.db")}}) {
      const auto r = run(args, cfg);
      CHECK(r.code == 1);
      CHECK(r.err == fmt::format("somrated: {}: no database at {} (give --db PATH or --config "
                                 "FILE)\n",
                                 args[0], cfg.storage.path));
    }
    CHECK_FALSE(fs::exists(cfg.storage.path));
  }
  SUBCASE("import from standard input creates the database; export, backup, vacuum") {
    const auto text = csv({"24kg,USD,2025-06-10T00:00:00.000Z,87.45,2025-06-10T00:00:00.000Z,"});
    auto r = run({"import", "-"}, cfg, text);
    CHECK(r.code == 0);
    CHECK(r.out == "change points: 1 imported, 0 moved earlier, 0 already present, 0 rejected\n");
    r = run({"export", "--currency", "usd"}, cfg);
    CHECK(r.code == 0);
    CHECK(r.out == text);
    CHECK(r.err == "somrated: change points exported: 1\n");
    r = run({"export", "--from", "2025-06-11"}, cfg);
    CHECK(r.out == csv({}));

    const auto copy = dir.file("copy.db");
    r = run({"backup", copy}, cfg);
    CHECK(r.code == 0);
    CHECK(r.out.find(fmt::format("backed up {} to {}: ", cfg.storage.path, copy)) == 0);
    CHECK(r.out.find("integrity ok\n") != std::string::npos);
    r = run({"backup", copy}, cfg);
    CHECK(r.code == 1);
    CHECK(r.err == fmt::format("somrated: backup: {} exists; add --force to replace it\n", copy));
    CHECK(run({"backup", "--force", copy}, cfg).code == 0);

    r = run({"vacuum"}, cfg);
    CHECK(r.code == 0);
    CHECK(r.out.find(fmt::format("vacuumed {}: ", cfg.storage.path)) == 0);
  }
  SUBCASE("import: a file, a missing file, rejected rows, a bad header") {
    const auto file = dir.file("in.csv");
    { std::ofstream(file) << csv({"24kg,USD,2025-06-10,87.45,,", "24kg,USD,2025-06-10,87.46,,"}); }
    auto r = run({"import", file}, cfg);
    CHECK(r.code == 1);
    CHECK(r.out == "change points: 1 imported, 0 moved earlier, 0 already present, 1 rejected\n");
    CHECK(r.err.find(file + ":3: 24kg USD at 2025-06-10T00:00:00.000Z: the database has 87.45") ==
          0);
    r = run({"import", dir.file("none.csv")}, cfg);
    CHECK(r.code == 1);
    CHECK(r.err == fmt::format("somrated: import: cannot open {}: No such file or directory\n",
                               dir.file("none.csv")));
    r = run({"import", "-"}, cfg, "when,what\n");
    CHECK(r.code == 1);
    CHECK(r.err.find("somrated: import: stdin:1: column 1: unknown column \"when\"") == 0);
  }
}
