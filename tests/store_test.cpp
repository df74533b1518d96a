#include "somrated/store.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <initializer_list>
#include <iterator>
#include <limits>
#include <map>
#include <random>
#include <set>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include <doctest/doctest.h>
#include <fmt/core.h>

#include "somrated/config.hpp"
#include "somrated/migrations.hpp"
#include "somrated/sqlite.hpp"

using somrated::decimal;
using somrated::history_point;
using somrated::history_query;
using somrated::history_result;
using somrated::rate_quote;
using somrated::record_outcome;
using somrated::record_result;
using somrated::scrape_record;
using somrated::store;
using somrated::store_error;
using somrated::timestamp;
using namespace std::chrono_literals;

namespace {

/// The schema version the binary under test knows.
constexpr int known_version = std::end(somrated::migrations::all)[-1].version;

/// Later than any time a test writes.
constexpr std::int64_t far_future = std::int64_t{1} << 50;

/// A database file in the temp directory, removed (with its -wal and -shm) at scope end.
class temp_db {
 public:
  temp_db() {
    std::random_device rd;
    path_ = (std::filesystem::temp_directory_path() /
             fmt::format("somrated-store-test-{}-{:08x}{:08x}.db", ::getpid(), rd(), rd()))
                .string();
  }
  ~temp_db() {
    std::error_code ec;
    for (const char* suffix : {"", "-wal", "-shm", "-journal"}) {
      std::filesystem::remove(path_ + suffix, ec);
    }
  }
  temp_db(const temp_db&) = delete;
  temp_db& operator=(const temp_db&) = delete;

  /// The file's path.
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

/// A time given in Unix milliseconds.
timestamp ms(std::int64_t v) {
  return timestamp{std::chrono::milliseconds{v}};
}

/// A decimal that must parse.
decimal dec(std::string_view text) {
  auto d = decimal::parse(text);
  REQUIRE(d);
  return *d;
}

/// Quotes from (currency, rate) pairs.
std::vector<rate_quote> quotes(std::initializer_list<std::pair<const char*, const char*>> list) {
  std::vector<rate_quote> out;
  for (const auto& [currency, rate] : list) out.push_back({currency, dec(rate)});
  return out;
}

/// Records one quote for "24kg" and returns its verdict.
record_result put(store& db, std::int64_t at, const char* currency, const char* rate,
                  double max_jump = 0) {
  const auto r = db.record("24kg", ms(at), quotes({{currency, rate}}), std::nullopt, max_jump);
  REQUIRE(r.size() == 1);
  return r.front();
}

/// Every stored change point of one currency of "24kg", as (since, text).
std::vector<std::pair<std::int64_t, std::string>> changes(store& db,
                                                          const std::string& currency = "USD",
                                                          const std::string& source = "24kg") {
  const auto h = db.history({.source = source,
                             .currency = currency,
                             .from = ms(0),
                             .to = ms(far_future),
                             .step = std::nullopt,
                             .max_points = std::numeric_limits<std::size_t>::max()});
  std::vector<std::pair<std::int64_t, std::string>> out;
  for (const auto& p : h.points) {
    out.emplace_back(p.time.time_since_epoch().count(), p.rate.text());
  }
  return out;
}

/// Points of a history as (time, text).
std::vector<std::pair<std::int64_t, std::string>> as_pairs(const history_result& h) {
  std::vector<std::pair<std::int64_t, std::string>> out;
  for (const auto& p : h.points) out.emplace_back(p.time.time_since_epoch().count(), p.rate.text());
  return out;
}

/// A distinct rate text per index, ascending with i.
std::string nth_rate(std::int64_t i) {
  return fmt::format("{}.{:04}", 50 + i / 10000, i % 10000);
}

using pairs = std::vector<std::pair<std::int64_t, std::string>>;

}  // namespace

TEST_CASE("store: opening and migrations") {
  temp_db file;

  SUBCASE("an empty file gets the whole schema, in WAL mode") {
    store db(file.path());
    CHECK(db.schema_version() == known_version);
    CHECK(db.ping());
    CHECK(db.integrity_check() == "ok");
    somrated::sqlite::connection raw(file.path(),
                                     somrated::sqlite::connection::open_mode::read_only);
    somrated::sqlite::statement mode(raw, "PRAGMA journal_mode");
    REQUIRE(mode.step());
    CHECK(mode.column_text(0) == "wal");
  }

  SUBCASE("reopening applies nothing again and keeps the data") {
    {
      store db(file.path());
      put(db, 1000, "USD", "87.45");
    }
    store db(file.path());
    CHECK(db.schema_version() == known_version);
    REQUIRE(db.latest("24kg").size() == 1);
    CHECK(db.latest("24kg")[0].rate.text() == "87.45");
    store reader(file.path(), store::mode::read_only);
    CHECK(reader.latest("24kg").size() == 1);
  }

  SUBCASE("a database from a newer somrated is refused") {
    {
      somrated::sqlite::connection raw(file.path(),
                                       somrated::sqlite::connection::open_mode::read_write_create);
      raw.exec(fmt::format("PRAGMA user_version = {}", known_version + 6));
    }
    const auto expected =
        fmt::format("database schema version {} is newer than this somrated (knows {})",
                    known_version + 6, known_version);
    CHECK_THROWS_WITH_AS(store(file.path()), expected.c_str(), store_error);
    CHECK_THROWS_WITH_AS(store(file.path(), store::mode::read_only), expected.c_str(), store_error);
  }

  SUBCASE("read-only needs an existing file at the current version") {
    CHECK_THROWS_AS(store(file.path(), store::mode::read_only), store_error);
    CHECK_FALSE(std::filesystem::exists(file.path()));
    {
      somrated::sqlite::connection raw(file.path(),
                                       somrated::sqlite::connection::open_mode::read_write_create);
      raw.exec("CREATE TABLE unrelated (x)");
    }
    CHECK_THROWS_WITH_AS(store(file.path(), store::mode::read_only),
                         doctest::Contains("schema version 0"), store_error);
  }

  SUBCASE("a read-only store reads but refuses writes") {
    {
      store db(file.path());
      put(db, 1000, "USD", "87.45");
    }
    store reader(file.path(), store::mode::read_only);
    CHECK(reader.schema_version() == known_version);
    CHECK(reader.latest("24kg").size() == 1);
    CHECK_THROWS_WITH_AS(reader.record("24kg", ms(2000), quotes({{"USD", "88"}}), std::nullopt, 0),
                         doctest::Contains("readonly"), store_error);
  }
}

TEST_CASE("store: change points") {
  store db(":memory:");

  SUBCASE("identical values make one row whose observed_at moves") {
    CHECK(put(db, 1000, "USD", "87.45").outcome == record_outcome::first);
    for (std::int64_t at = 2000; at <= 10000; at += 1000) {
      const auto r = put(db, at, "USD", "87.45");
      CHECK(r.outcome == record_outcome::confirmed);
      REQUIRE(r.previous);
      CHECK(r.previous->text() == "87.45");
    }
    CHECK(changes(db) == pairs{{1000, "87.45"}});
    const auto latest = db.latest("24kg");
    REQUIRE(latest.size() == 1);
    CHECK(latest[0].since == ms(1000));
    CHECK(latest[0].observed_at == ms(10000));
  }

  SUBCASE("a different value is a new change point") {
    const auto first = put(db, 1000, "USD", "87.45");
    CHECK(first.outcome == record_outcome::first);
    CHECK_FALSE(first.previous);
    const auto changed = put(db, 2000, "USD", "87.50");
    CHECK(changed.outcome == record_outcome::changed);
    REQUIRE(changed.previous);
    CHECK(changed.previous->text() == "87.45");
    CHECK(changes(db) == pairs{{1000, "87.45"}, {2000, "87.50"}});
    CHECK(db.latest("24kg")[0].since == ms(2000));
  }

  SUBCASE("rates come back as published, and a new spelling is a change") {
    db.record("24kg", ms(1000), quotes({{"RUB", "1.10"}, {"USD", "87.4500"}, {"XAU", "0.0468"}}),
              std::nullopt, 0);
    const auto latest = db.latest("24kg");
    REQUIRE(latest.size() == 3);
    CHECK(latest[0].rate.text() == "1.10");
    CHECK(latest[1].rate.text() == "87.4500");
    CHECK(latest[2].rate.text() == "0.0468");

    put(db, 2000, "USD", "87.45");
    const auto r = put(db, 3000, "USD", "87.450");
    CHECK(r.outcome == record_outcome::changed);
    CHECK(changes(db) == pairs{{1000, "87.4500"}, {2000, "87.45"}, {3000, "87.450"}});
  }

  SUBCASE("several currencies in one record, each judged on its own") {
    db.record("24kg", ms(1000), quotes({{"USD", "87.45"}, {"EUR", "99.56"}}), std::nullopt, 0);
    const auto r =
        db.record("24kg", ms(2000), quotes({{"USD", "87.45"}, {"EUR", "99.60"}, {"RUB", "1.10"}}),
                  std::nullopt, 0);
    REQUIRE(r.size() == 3);
    CHECK(r[0].currency == "USD");
    CHECK(r[0].outcome == record_outcome::confirmed);
    CHECK(r[1].outcome == record_outcome::changed);
    CHECK(r[2].outcome == record_outcome::first);
    CHECK(db.currencies("24kg") == std::vector<std::string>{"EUR", "RUB", "USD"});
    const auto latest = db.latest("24kg");
    REQUIRE(latest.size() == 3);
    CHECK(latest[0].currency == "EUR");
    CHECK(latest[1].currency == "RUB");
    CHECK(latest[2].currency == "USD");
    CHECK(db.latest("nbkr").empty());
    CHECK(db.currencies("nbkr").empty());
  }

  SUBCASE("sources are kept apart") {
    put(db, 1000, "USD", "87.45");
    db.record("nbkr", ms(1000), quotes({{"USD", "87.3000"}}), std::nullopt, 0);
    CHECK(db.latest("24kg")[0].rate.text() == "87.45");
    CHECK(db.latest("nbkr")[0].rate.text() == "87.3000");
    CHECK(changes(db, "USD", "nbkr") == pairs{{1000, "87.3000"}});
  }

  SUBCASE("the effective date is stored and follows confirmations") {
    using namespace std::chrono;
    const sys_days june10 = 2025y / June / 10;
    const sys_days june11 = 2025y / June / 11;
    db.record("nbkr", ms(1000), quotes({{"USD", "87.3000"}}), june10, 0);
    CHECK(db.latest("nbkr")[0].effective_date == june10);
    db.record("nbkr", ms(2000), quotes({{"USD", "87.3000"}}), june11, 0);
    CHECK(db.latest("nbkr")[0].effective_date == june11);
    db.record("nbkr", ms(3000), quotes({{"USD", "87.3000"}}), std::nullopt, 0);
    CHECK(db.latest("nbkr")[0].effective_date == june11);
    put(db, 1000, "USD", "87.45");
    CHECK_FALSE(db.latest("24kg")[0].effective_date);
  }

  SUBCASE("time going backwards changes nothing") {
    put(db, 5000, "USD", "87.45");
    put(db, 6000, "USD", "87.45");
    const auto older_other = put(db, 4000, "USD", "90.00");
    CHECK(older_other.outcome == record_outcome::confirmed);
    const auto same_instant = put(db, 5000, "USD", "90.00");
    CHECK(same_instant.outcome == record_outcome::confirmed);
    const auto older_same = put(db, 3000, "USD", "87.45");
    CHECK(older_same.outcome == record_outcome::confirmed);
    CHECK(changes(db) == pairs{{5000, "87.45"}});
    CHECK(db.latest("24kg")[0].observed_at == ms(6000));
    CHECK(put(db, 7000, "USD", "87.50").outcome == record_outcome::changed);
    CHECK(changes(db) == pairs{{5000, "87.45"}, {7000, "87.50"}});
  }
}

TEST_CASE("store: a failed record writes nothing") {
  temp_db file;
  store db(file.path());
  put(db, 1000, "USD", "87.45");
  {
    // Make the second quote's insert fail after the first quote was written.
    somrated::sqlite::connection raw(file.path(),
                                     somrated::sqlite::connection::open_mode::read_write_create);
    raw.exec(
        "CREATE TRIGGER refuse_eur BEFORE INSERT ON rate_change WHEN NEW.currency = 'EUR' "
        "BEGIN SELECT RAISE(ABORT, 'EUR refused by test'); END");
  }
  CHECK_THROWS_WITH_AS(
      db.record("24kg", ms(2000), quotes({{"USD", "87.50"}, {"EUR", "99.56"}}), std::nullopt, 0),
      doctest::Contains("EUR refused by test"), store_error);
  CHECK(changes(db) == pairs{{1000, "87.45"}});
  CHECK(db.latest("24kg")[0].observed_at == ms(1000));
  CHECK(db.record("24kg", ms(3000), quotes({{"USD", "87.50"}}), std::nullopt, 0).front().outcome ==
        record_outcome::changed);
}

TEST_CASE("store: plausibility holds") {
  store db(":memory:");
  put(db, 1000, "USD", "80.00", 0.25);

  SUBCASE("a jump is held, then released with since = first seen") {
    const auto held = put(db, 2000, "USD", "104.00", 0.25);  // +30 %
    CHECK(held.outcome == record_outcome::held);
    REQUIRE(held.previous);
    CHECK(held.previous->text() == "80.00");
    CHECK(db.latest("24kg")[0].rate.text() == "80.00");
    auto holds = db.held("24kg");
    REQUIRE(holds.size() == 1);
    CHECK(holds[0].currency == "USD");
    CHECK(holds[0].rate.text() == "104.00");
    CHECK(holds[0].since == ms(2000));

    const auto released = put(db, 3000, "USD", "104.00", 0.25);
    CHECK(released.outcome == record_outcome::released);
    REQUIRE(released.previous);
    CHECK(released.previous->text() == "80.00");
    CHECK(db.held("24kg").empty());
    const auto latest = db.latest("24kg");
    CHECK(latest[0].rate.text() == "104.00");
    CHECK(latest[0].since == ms(2000));
    CHECK(latest[0].observed_at == ms(3000));
    CHECK(changes(db) == pairs{{1000, "80.00"}, {2000, "104.00"}});
    CHECK(put(db, 4000, "USD", "104.00", 0.25).outcome == record_outcome::confirmed);
  }

  SUBCASE("the old value seen again drops the hold") {
    CHECK(put(db, 2000, "USD", "104.00", 0.25).outcome == record_outcome::held);
    CHECK(put(db, 3000, "USD", "80.00", 0.25).outcome == record_outcome::confirmed);
    CHECK(db.held("24kg").empty());
    CHECK(put(db, 4000, "USD", "104.00", 0.25).outcome == record_outcome::held);
    CHECK(db.held("24kg")[0].since == ms(4000));
    CHECK(changes(db) == pairs{{1000, "80.00"}});
  }

  SUBCASE("a different second jump replaces the hold") {
    CHECK(put(db, 2000, "USD", "104.00", 0.25).outcome == record_outcome::held);
    CHECK(put(db, 3000, "USD", "40.00", 0.25).outcome == record_outcome::held);
    auto holds = db.held("24kg");
    REQUIRE(holds.size() == 1);
    CHECK(holds[0].rate.text() == "40.00");
    CHECK(holds[0].since == ms(3000));
    CHECK(put(db, 4000, "USD", "40.00", 0.25).outcome == record_outcome::released);
    CHECK(changes(db) == pairs{{1000, "80.00"}, {3000, "40.00"}});
  }

  SUBCASE("a plausible change drops a pending hold") {
    CHECK(put(db, 2000, "USD", "104.00", 0.25).outcome == record_outcome::held);
    CHECK(put(db, 3000, "USD", "81.00", 0.25).outcome == record_outcome::changed);
    CHECK(db.held("24kg").empty());
  }

  SUBCASE("a move up to the limit is a change") {
    CHECK(put(db, 2000, "USD", "100.00", 0.25).outcome == record_outcome::changed);
    CHECK(put(db, 3000, "USD", "75.00", 0.25).outcome == record_outcome::changed);
  }

  SUBCASE("max_jump 0 disables holds") {
    CHECK(put(db, 2000, "USD", "800.00", 0).outcome == record_outcome::changed);
    CHECK(db.held("24kg").empty());
    CHECK(db.latest("24kg")[0].rate.text() == "800.00");
  }
}

TEST_CASE("store: history") {
  store db(":memory:");
  for (const auto& [at, rate] : pairs{{1000, "87.45"}, {2000, "87.50"}, {3000, "87.40"}}) {
    put(db, at, "USD", rate.c_str());
  }
  put(db, 3500, "USD", "87.40");  // a confirmation: no change point
  put(db, 5000, "USD", "88.00");
  history_query q{.source = "24kg",
                  .currency = "USD",
                  .from = ms(0),
                  .to = ms(far_future),
                  .step = std::nullopt};

  SUBCASE("raw change points") {
    CHECK(as_pairs(db.history(q)) ==
          pairs{{1000, "87.45"}, {2000, "87.50"}, {3000, "87.40"}, {5000, "88.00"}});
    q.from = ms(1500);
    q.to = ms(5000);
    CHECK(as_pairs(db.history(q)) ==
          pairs{{1500, "87.45"}, {2000, "87.50"}, {3000, "87.40"}, {5000, "88.00"}});
    q.from = ms(2000);
    q.to = ms(4999);
    CHECK(as_pairs(db.history(q)) == pairs{{2000, "87.50"}, {3000, "87.40"}});
    q.from = ms(0);
    q.to = ms(999);
    CHECK(db.history(q).points.empty());
  }

  SUBCASE("from after every change point gives the value in force") {
    q.from = ms(6000);
    q.to = ms(7000);
    CHECK(as_pairs(db.history(q)) == pairs{{6000, "88.00"}});
  }

  SUBCASE("unknown source or currency, empty or reversed range") {
    q.source = "nowhere";
    CHECK(db.history(q).points.empty());
    q.source = "24kg";
    q.currency = "EUR";
    CHECK(db.history(q).points.empty());
    q.currency = "USD";
    q.from = ms(4000);
    q.to = ms(3000);
    CHECK(db.history(q).points.empty());
  }

  SUBCASE("the cap truncates") {
    q.max_points = 2;
    auto h = db.history(q);
    CHECK(h.truncated);
    CHECK(as_pairs(h) == pairs{{1000, "87.45"}, {2000, "87.50"}});
    q.max_points = 4;
    h = db.history(q);
    CHECK_FALSE(h.truncated);
    CHECK(h.points.size() == 4);
    q.from = ms(1500);
    q.max_points = 1;
    h = db.history(q);
    CHECK(h.truncated);
    CHECK(as_pairs(h) == pairs{{1500, "87.45"}});
    q.max_points = 0;
    h = db.history(q);
    CHECK(h.truncated);
    CHECK(h.points.empty());
  }

  SUBCASE("with step: the value in force at each bucket's end") {
    q.step = 1000ms;
    q.to = ms(5500);
    // [0,1000) has no value yet; a change at a bucket's start belongs to that bucket.
    CHECK(
        as_pairs(db.history(q)) ==
        pairs{{1000, "87.45"}, {2000, "87.50"}, {3000, "87.40"}, {4000, "87.40"}, {5000, "88.00"}});
    q.from = ms(500);
    q.to = ms(3200);
    // The last bucket [2500, 3200] ends at to.
    CHECK(as_pairs(db.history(q)) == pairs{{500, "87.45"}, {1500, "87.50"}, {2500, "87.40"}});
    q.from = ms(0);
    q.to = ms(5000);
    // An exact multiple of step gives ceil((to - from) / step) buckets; the last one is
    // closed at to, so a change exactly at to still counts.
    CHECK(as_pairs(db.history(q)).back() == std::pair<std::int64_t, std::string>{4000, "88.00"});
    CHECK(db.history(q).points.size() == 4);
    q.from = ms(6000);
    q.to = ms(8000);
    CHECK(as_pairs(db.history(q)) == pairs{{6000, "88.00"}, {7000, "88.00"}});
    q.to = ms(6000);
    CHECK(as_pairs(db.history(q)) == pairs{{6000, "88.00"}});
    q.from = ms(0);
    q.to = ms(999);
    CHECK(db.history(q).points.empty());
  }

  SUBCASE("with step: buckets long before the data cost nothing and the cap applies") {
    q.step = 1ms;
    q.from = ms(-(std::int64_t{1} << 40));
    q.to = ms(far_future);
    q.max_points = 3;
    const auto h = db.history(q);
    CHECK(h.truncated);
    CHECK(as_pairs(h) == pairs{{1000, "87.45"}, {1001, "87.45"}, {1002, "87.45"}});
  }

  SUBCASE("ohlc") {
    store o(":memory:");
    for (const auto& [at, rate] : pairs{{1000, "10.00"},
                                        {1200, "12.50"},
                                        {1500, "9.75"},
                                        {1800, "11.00"},
                                        {2500, "11.50"},
                                        {4100, "10.5"}}) {
      put(o, at, "USD", rate.c_str());
    }
    q.step = 1000ms;
    q.ohlc = true;
    q.to = ms(4500);
    auto h = o.history(q);
    CHECK(h.points.empty());
    CHECK_FALSE(h.truncated);
    const auto row = [](const somrated::ohlc_point& p) {
      return fmt::format("{} {} {} {} {}", p.time.time_since_epoch().count(), p.open.text(),
                         p.high.text(), p.low.text(), p.close.text());
    };
    std::vector<std::string> rows;
    std::transform(h.ohlc.begin(), h.ohlc.end(), std::back_inserter(rows), row);
    // High and low are numeric ("9.75" < "12.50"), and the published text comes back.
    CHECK(rows ==
          std::vector<std::string>{"1000 10.00 12.50 9.75 11.00", "2000 11.00 11.50 11.00 11.50",
                                   "3000 11.50 11.50 11.50 11.50", "4000 11.50 11.50 10.5 10.5"});

    // No value before the first bucket: it opens with its first change.
    q.from = ms(500);
    q.to = ms(1499);
    h = o.history(q);
    REQUIRE(h.ohlc.size() == 1);
    CHECK(row(h.ohlc[0]) == "500 10.00 12.50 10.00 12.50");

    q.from = ms(0);
    q.to = ms(4500);
    q.max_points = 2;
    h = o.history(q);
    CHECK(h.truncated);
    CHECK(h.ohlc.size() == 2);
  }
}

TEST_CASE("store: import_changes") {
  store db(":memory:");
  const std::vector<history_point> points{
      {ms(1000), dec("87.45")}, {ms(2000), dec("87.45")}, {ms(3000), dec("87.50")}};
  db.import_changes("nbkr", "USD", points);
  // Each point is a change point, even when the text repeats.
  CHECK(changes(db, "USD", "nbkr") == pairs{{1000, "87.45"}, {2000, "87.45"}, {3000, "87.50"}});
  CHECK(db.latest("nbkr")[0].observed_at == ms(3000));

  SUBCASE("points must come after the stored ones, in order") {
    const std::vector<history_point> old{{ms(3000), dec("1.00")}};
    CHECK_THROWS_AS(db.import_changes("nbkr", "USD", old), store_error);
    const std::vector<history_point> unordered{{ms(5000), dec("1.00")}, {ms(4000), dec("2.00")}};
    CHECK_THROWS_AS(db.import_changes("nbkr", "USD", unordered), store_error);
    CHECK(changes(db, "USD", "nbkr").size() == 3);
  }

  SUBCASE("an import supersedes a pending hold") {
    CHECK(db.record("nbkr", ms(4000), quotes({{"USD", "200.00"}}), std::nullopt, 0.25)
              .front()
              .outcome == record_outcome::held);
    const std::vector<history_point> later{{ms(5000), dec("88.00")}};
    db.import_changes("nbkr", "USD", later);
    CHECK(db.held("nbkr").empty());
    CHECK(db.latest("nbkr")[0].rate.text() == "88.00");
  }
}

// One test case without subcases: doctest reruns the body for each subcase, and the
// import is the expensive part.
TEST_CASE("store: stepped history over a large store") {
  temp_db file;
  store db(file.path());
  constexpr std::int64_t n = 200'000;
  constexpr std::int64_t base = 1'700'000'000'000;  // 2023-11-14
  constexpr std::int64_t minute = 60'000;
  std::vector<history_point> points;
  points.reserve(n);
  for (std::int64_t i = 0; i < n; ++i) {
    points.push_back({ms(base + i * minute), *decimal::parse(nth_rate(i))});
  }
  db.import_changes("24kg", "USD", points);
  db.import_changes("24kg", "EUR", std::span(points).first(10));
  REQUIRE(db.latest("24kg").size() == 2);
  REQUIRE(db.latest("24kg")[1].rate.text() == nth_rate(n - 1));
  const std::int64_t last = base + (n - 1) * minute;
  // The index of the change point in force at t.
  const auto index_at = [&](std::int64_t t) { return std::min((t - base) / minute, n - 1); };

  {
    INFO("a day per bucket over all of it");
    const std::int64_t day = 1440 * minute;
    history_query q{.source = "24kg",
                    .currency = "USD",
                    .from = ms(base),
                    .to = ms(last),
                    .step = std::chrono::milliseconds{day}};
    const auto h = db.history(q);
    CHECK_FALSE(h.truncated);
    REQUIRE(h.points.size() == static_cast<std::size_t>((last - base) / day + 1));
    for (std::size_t k = 0; k < h.points.size(); ++k) {
      const std::int64_t start = base + static_cast<std::int64_t>(k) * day;
      const std::int64_t end = std::min(start + day - 1, last);
      CHECK(h.points[k].time == ms(start));
      CHECK(h.points[k].rate.text() == nth_rate(index_at(end)));
    }
  }

  {
    INFO("unaligned buckets starting before the data, cut by the cap");
    const std::int64_t step = 1000 * minute + 7;
    const std::int64_t from = base - 50 * step - 12'345;
    history_query q{.source = "24kg",
                    .currency = "USD",
                    .from = ms(from),
                    .to = ms(last + 3 * step),
                    .step = std::chrono::milliseconds{step},
                    .max_points = 150};
    const auto h = db.history(q);
    REQUIRE(h.points.size() == 150);
    CHECK(h.truncated);
    // The first point is the bucket holding the first change point.
    CHECK(h.points.front().time == ms(from + 50 * step));
    for (std::size_t k = 0; k < h.points.size(); ++k) {
      const std::int64_t start = from + (50 + static_cast<std::int64_t>(k)) * step;
      CHECK(h.points[k].time == ms(start));
      CHECK(h.points[k].rate.text() == nth_rate(index_at(start + step - 1)));
    }
  }

  {
    INFO("ohlc over unaligned buckets");
    const std::int64_t step = 600 * minute;
    const std::int64_t from = base + 30 * minute;
    history_query q{.source = "24kg",
                    .currency = "USD",
                    .from = ms(from),
                    .to = ms(from + 10 * step - 1),
                    .step = std::chrono::milliseconds{step},
                    .ohlc = true};
    const auto h = db.history(q);
    REQUIRE(h.ohlc.size() == 10);
    for (std::size_t k = 0; k < h.ohlc.size(); ++k) {
      const std::int64_t start = from + static_cast<std::int64_t>(k) * step;
      // Rates rise with time: open = low at the start, close = high at the end.
      CHECK(h.ohlc[k].time == ms(start));
      CHECK(h.ohlc[k].open.text() == nth_rate(index_at(start)));
      CHECK(h.ohlc[k].low.text() == nth_rate(index_at(start)));
      CHECK(h.ohlc[k].high.text() == nth_rate(index_at(start + step - 1)));
      CHECK(h.ohlc[k].close.text() == nth_rate(index_at(start + step - 1)));
    }
  }

  {
    INFO("raw points over a window, with the value in force at from");
    history_query q{.source = "24kg",
                    .currency = "USD",
                    .from = ms(base + 100 * minute + 1),
                    .to = ms(base + 200 * minute),
                    .step = std::nullopt};
    const auto h = db.history(q);
    REQUIRE(h.points.size() == 101);
    CHECK(h.points.front().rate.text() == nth_rate(100));
    CHECK(h.points.back().rate.text() == nth_rate(200));
  }
}

TEST_CASE("store: scrape health") {
  store db(":memory:");
  const auto log = [&](const char* source, std::int64_t at, const char* outcome,
                       const char* error = "") {
    db.log_scrape({.source = source,
                   .started_at = ms(at),
                   .duration = 120ms,
                   .http_status = 200,
                   .outcome = outcome,
                   .error = error});
  };

  SUBCASE("a source never scraped") {
    const auto h = db.health("24kg");
    CHECK_FALSE(h.last_attempt);
    CHECK_FALSE(h.last_success);
    CHECK_FALSE(h.last_error_at);
    CHECK(h.consecutive_failures == 0);
  }

  SUBCASE("failures count from the last success") {
    log("24kg", 1000, "ok");
    log("24kg", 2000, "error", "timeout");
    log("24kg", 3000, "error", "HTTP 503");
    log("nbkr", 3500, "error", "not ours");
    auto h = db.health("24kg");
    CHECK(h.last_attempt == ms(3000));
    CHECK(h.last_success == ms(1000));
    CHECK(h.last_error_at == ms(3000));
    CHECK(h.last_error == "HTTP 503");
    CHECK(h.consecutive_failures == 2);

    log("24kg", 4000, "held", "USD 104.00");
    h = db.health("24kg");
    CHECK(h.last_success == ms(4000));
    CHECK(h.last_attempt == ms(4000));
    CHECK(h.last_error_at == ms(3000));
    CHECK(h.consecutive_failures == 0);

    log("24kg", 5000, "not_modified");
    log("24kg", 6000, "error", "parse");
    h = db.health("24kg");
    CHECK(h.last_success == ms(5000));
    CHECK(h.consecutive_failures == 1);
    CHECK(h.last_error == "parse");
  }

  SUBCASE("only failures") {
    log("nbkr", 1000, "error", "a");
    log("nbkr", 2000, "error", "b");
    log("nbkr", 3000, "error", "c");
    const auto h = db.health("nbkr");
    CHECK_FALSE(h.last_success);
    CHECK(h.last_attempt == ms(3000));
    CHECK(h.consecutive_failures == 3);
  }

  SUBCASE("an unknown outcome is refused") {
    CHECK_THROWS_AS(log("24kg", 1000, "bogus"), store_error);
    CHECK_FALSE(db.health("24kg").last_attempt);
  }
}

TEST_CASE("store: read-only readers see consistent data while a writer writes") {
  temp_db file;
  store writer(file.path());
  const std::vector<std::string> texts{"87.45", "87.50", "87.55", "87.60"};
  std::vector<decimal> values;
  for (const auto& t : texts) values.push_back(dec(t));
  // Write i happens at 1000 + 1000 i with USD = texts[i % 4] and EUR = texts[(i + 1) % 4],
  // so any point read back can be checked against its time.
  const auto text_at = [&](timestamp t, std::size_t shift) {
    const auto i = static_cast<std::size_t>((t.time_since_epoch().count() - 1000) / 1000);
    return texts[(i + shift) % texts.size()];
  };
  constexpr int min_writes = 100;

  /// What one reader saw; checked on the test's thread after join.
  struct report {
    std::atomic<int> reads{0};
    std::vector<std::string> problems;
    std::size_t final_count = 0;
  };
  report a, b;
  std::atomic<bool> done{false};
  std::string writer_error;
  int written = 0;

  // The writer goes on until both readers have read a few times while it was writing.
  std::thread w([&] {
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    try {
      for (int i = 0; i < min_writes || a.reads < 3 || b.reads < 3; ++i) {
        if (std::chrono::steady_clock::now() > deadline) break;
        const auto& v = values[static_cast<std::size_t>(i) % values.size()];
        const auto& e = values[static_cast<std::size_t>(i + 1) % values.size()];
        writer.record("24kg", ms(1000 + i * 1000), std::vector<rate_quote>{{"EUR", e}, {"USD", v}},
                      std::nullopt, 0);
        written = i + 1;
      }
    } catch (const std::exception& e) {
      writer_error = e.what();
    }
    done = true;
  });

  const auto read = [&](report& rep) {
    try {
      store db(file.path(), store::mode::read_only);
      std::size_t last_count = 0;
      timestamp last_since{};
      for (bool last_round = false; !last_round;) {
        last_round = done.load();
        const auto latest = db.latest("24kg");
        if (!latest.empty()) {
          if (latest.size() != 2) rep.problems.push_back("latest has a currency missing");
          // Both currencies are written in one transaction: one snapshot shows both.
          if (latest.front().since != latest.back().since) {
            rep.problems.push_back("latest mixes two writes");
          }
          if (latest.front().since < last_since) rep.problems.push_back("latest went back");
          last_since = latest.front().since;
          if (latest.front().rate.text() != text_at(latest.front().since, 1) ||
              latest.back().rate.text() != text_at(latest.back().since, 0)) {
            rep.problems.push_back("latest shows a value that was not written");
          }
        }
        const auto h = db.history({.source = "24kg",
                                   .currency = "USD",
                                   .from = ms(0),
                                   .to = ms(far_future),
                                   .step = std::nullopt});
        if (h.points.size() < last_count) rep.problems.push_back("history shrank");
        last_count = h.points.size();
        for (std::size_t k = 0; k < h.points.size(); ++k) {
          const auto& p = h.points[k];
          if (p.time != ms(1000 + static_cast<std::int64_t>(k) * 1000) ||
              p.rate.text() != text_at(p.time, 0)) {
            rep.problems.push_back("history shows a point that was not written");
          }
        }
        ++rep.reads;
      }
      rep.final_count = last_count;
    } catch (const std::exception& e) {
      rep.problems.push_back(e.what());
    }
  };
  std::thread ra(read, std::ref(a));
  std::thread rb(read, std::ref(b));
  w.join();
  ra.join();
  rb.join();

  CHECK(writer_error.empty());
  CHECK(written >= min_writes);
  for (const auto* rep : {&a, &b}) {
    CHECK(rep->problems.empty());
    if (!rep->problems.empty()) MESSAGE(rep->problems.front());
    CHECK(rep->reads >= 3);
    CHECK(rep->final_count == static_cast<std::size_t>(written));
  }
}

TEST_CASE("store: acknowledged writes survive SIGKILL of the writer") {
  temp_db file;
  { store init(file.path()); }
  constexpr std::int64_t base = 1'700'000'000'000;
  constexpr std::int64_t wanted = 40;

  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    // The child only writes and acknowledges; it never returns into the test runner.
    ::close(fds[0]);
    int status = 0;
    try {
      store db(file.path());
      for (std::int64_t i = 0;; ++i) {
        const std::vector<rate_quote> q{{"USD", *decimal::parse(nth_rate(i))}};
        db.record("24kg", ms(base + i * 1000), q, std::nullopt, 0);
        if (::write(fds[1], &i, sizeof i) != static_cast<ssize_t>(sizeof i)) break;
      }
    } catch (...) {
      status = 1;
    }
    ::_exit(status);
  }
  ::close(fds[1]);

  std::int64_t acked = -1;
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (acked + 1 < wanted) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left <= 0ms) break;
    pollfd p{fds[0], POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    std::int64_t i = 0;
    if (::read(fds[0], &i, sizeof i) != static_cast<ssize_t>(sizeof i)) break;
    acked = i;
  }
  ::kill(child, SIGKILL);
  int status = 0;
  ::waitpid(child, &status, 0);
  ::close(fds[0]);
  REQUIRE(acked + 1 >= wanted);
  CHECK(WIFSIGNALED(status));

  store db(file.path());
  CHECK(db.integrity_check() == "ok");
  const auto stored = changes(db);
  REQUIRE(stored.size() >= static_cast<std::size_t>(acked + 1));
  for (std::int64_t i = 0; i <= acked; ++i) {
    CHECK(stored[static_cast<std::size_t>(i)] ==
          std::pair<std::int64_t, std::string>{base + i * 1000, nth_rate(i)});
  }
}

namespace {

/// The size of the database at path as its file will hold it: pages in use times the
/// page size, read through a connection of its own.
std::uint64_t database_bytes(const std::string& path) {
  somrated::sqlite::connection raw(path, somrated::sqlite::connection::open_mode::read_only);
  somrated::sqlite::statement count(raw, "PRAGMA page_count");
  somrated::sqlite::statement size(raw, "PRAGMA page_size");
  REQUIRE(count.step());
  REQUIRE(size.step());
  return static_cast<std::uint64_t>(count.column_int64(0) * size.column_int64(0));
}

/// One scrape's worth of quotes: 40 currencies, every value new with each n.
std::vector<rate_quote> scrape_quotes(std::int64_t n) {
  std::vector<rate_quote> out;
  for (int c = 0; c < 40; ++c) out.push_back({fmt::format("C{:02}", c), dec(nth_rate(n * 40 + c))});
  return out;
}

}  // namespace

TEST_CASE("store: a size limit fails writes whole, keeps reads and lifts") {
  temp_db file;
  store db(file.path());
  db.record("24kg", ms(1000), scrape_quotes(0), std::nullopt, 0);
  const std::uint64_t limit = database_bytes(file.path());
  db.set_max_size(limit);

  // The pages in use still have room for some scrapes; then one fails, whole.
  std::int64_t n = 1;
  std::string message;
  for (; n < 10'000 && message.empty(); ++n) {
    try {
      db.record("24kg", ms(1000 + n), scrape_quotes(n), std::nullopt, 0);
    } catch (const somrated::store_full_error& e) {
      message = e.what();
    }
  }
  REQUIRE_FALSE(message.empty());
  const std::int64_t stored = n - 2;  // the last scrape that made it
  CHECK(stored >= 1);
  CHECK(message ==
        fmt::format("rates of 24kg not stored: database or disk is full (the database may not "
                    "grow beyond [storage] max_size = {0} and holds {0}; or the disk is full)",
                    somrated::format_max_size(limit)));
  CHECK(database_bytes(file.path()) == limit);

  // Reads answer with the last complete scrape, on this connection and on a reader.
  store reader(file.path(), store::mode::read_only);
  for (store* s : {&db, &reader}) {
    const auto latest = s->latest("24kg");
    REQUIRE(latest.size() == 40);
    for (int c = 0; c < 40; ++c) {
      CAPTURE(c);
      CHECK(latest[static_cast<std::size_t>(c)].rate.text() == nth_rate(stored * 40 + c));
      CHECK(latest[static_cast<std::size_t>(c)].since == ms(1000 + stored));
    }
    CHECK(changes(*s, "C07").size() == static_cast<std::size_t>(stored + 1));
  }

  SUBCASE("the scrape log fails the same way, and health reads what made it") {
    std::int64_t logged = 0;
    CHECK_THROWS_AS(
        [&] {
          for (;; ++logged) {
            REQUIRE(logged < 10'000);
            db.log_scrape({.source = "24kg",
                           .started_at = ms(5000 + logged),
                           .outcome = "error",
                           .error = std::string(200, 'x')});
          }
        }(),
        somrated::store_full_error);
    const auto h = db.health("24kg");
    if (logged > 0) {
      CHECK(h.last_error_at == ms(5000 + logged - 1));
      CHECK(h.consecutive_failures == logged);
    } else {
      CHECK_FALSE(h.last_error_at);
    }
  }

  SUBCASE("raising the limit lets the same write through") {
    db.set_max_size(limit + (1u << 20));
    db.record("24kg", ms(1000 + n), scrape_quotes(n), std::nullopt, 0);
    CHECK(db.latest("24kg").front().rate.text() == nth_rate(n * 40));
  }

  SUBCASE("0 lifts the limit") {
    db.set_max_size(0);
    for (std::int64_t i = 0; i < 200; ++i)
      db.record("24kg", ms(1000 + n + i), scrape_quotes(n + i), std::nullopt, 0);
    CHECK(database_bytes(file.path()) > limit);
  }

  SUBCASE("a limit below the size holds the database at its size") {
    db.set_max_size(4096);
    const std::string expected =
        fmt::format("max_size = 4KiB and holds {}", somrated::format_max_size(limit));
    CHECK_THROWS_WITH_AS(db.record("24kg", ms(1000 + n), scrape_quotes(n), std::nullopt, 0),
                         doctest::Contains(expected.c_str()), somrated::store_full_error);
    CHECK(database_bytes(file.path()) == limit);
  }

  CHECK(db.integrity_check() == "ok");
}
