#include "somrated/sqlite.hpp"

#include <filesystem>
#include <stdexcept>
#include <string>
#include <utility>

#include <doctest/doctest.h>

namespace sqlite = somrated::sqlite;

namespace {

/// True when bind_ref accepts an argument of type T.
template <class T>
concept can_bind_ref = requires(sqlite::statement& st, T&& value) {
  st.bind_ref(1, std::forward<T>(value));
};

/// True when bind accepts an argument of type T.
template <class T>
concept can_bind = requires(sqlite::statement& st, T&& value) {
  st.bind(1, std::forward<T>(value));
};

static_assert(can_bind_ref<std::string&>);
static_assert(can_bind_ref<const std::string&>);
static_assert(!can_bind_ref<std::string>, "a temporary would dangle");
static_assert(!can_bind<bool>, "a flag must not become an integer silently");
static_assert(can_bind<int> && can_bind<std::int64_t> && can_bind<double>);
static_assert(can_bind<const char*> && can_bind<std::string_view>);

/// Counts the rows of table t on db.
std::int64_t count_rows(sqlite::connection& db, const char* sql) {
  sqlite::statement st(db, sql);
  REQUIRE(st.step());
  return st.column_int64(0);
}

/// Number of statements still prepared on db.
int live_statements(sqlite::connection& db) {
  int n = 0;
  for (sqlite3_stmt* st = sqlite3_next_stmt(db.get(), nullptr); st != nullptr;
       st = sqlite3_next_stmt(db.get(), st)) {
    ++n;
  }
  return n;
}

}  // namespace

TEST_CASE("sqlite: statements bind, step and read columns") {
  sqlite::connection db(":memory:", sqlite::connection::open_mode::read_write_create);
  db.exec("CREATE TABLE t (i INTEGER, d REAL, s TEXT, n TEXT)");

  sqlite::statement insert(db, "INSERT INTO t (i, d, s, n) VALUES (?1, ?2, ?3, ?4)");
  const std::string kept = "87.4500";
  insert.bind(1, std::int64_t{9'007'199'254'740'993});  // not representable as a double
  insert.bind(2, 0.0468);
  insert.bind_ref(3, kept);
  insert.bind_null(4);
  insert.run();
  insert.reset();
  insert.bind(1, 7);
  insert.bind(2, 1.5);
  insert.bind(3, std::string("tem") + "porary");  // copied: the temporary may die
  insert.bind(4, "x");
  insert.run();

  sqlite::statement select(db, "SELECT i, d, s, n FROM t ORDER BY rowid");
  REQUIRE(select.step());
  CHECK(select.column_int64(0) == 9'007'199'254'740'993);
  CHECK(select.column_double(1) == 0.0468);
  CHECK(select.column_text(2) == "87.4500");
  CHECK(select.column_is_null(3));
  CHECK(select.column_text(3).empty());
  REQUIRE(select.step());
  CHECK(select.column_int64(0) == 7);
  CHECK(select.column_text(2) == "temporary");
  CHECK(select.column_text(3) == "x");
  CHECK_FALSE(select.step());

  SUBCASE("reset clears bindings, so an unbound parameter is NULL again") {
    insert.reset();
    insert.bind(1, 1);
    insert.run();
    CHECK(count_rows(db, "SELECT count(*) FROM t WHERE i = 1 AND s IS NULL") == 1);
  }

  SUBCASE("a reused statement sees new rows") {
    select.reset();
    int rows = 0;
    while (select.step()) ++rows;
    CHECK(rows == 2);
  }
}

TEST_CASE("sqlite: statements are finalized and guards reset them") {
  sqlite::connection db(":memory:", sqlite::connection::open_mode::read_write_create);
  db.exec("CREATE TABLE t (i INTEGER); INSERT INTO t VALUES (1), (2)");
  REQUIRE(live_statements(db) == 0);

  SUBCASE("destruction finalizes") {
    {
      sqlite::statement a(db, "SELECT i FROM t");
      sqlite::statement b(db, "SELECT count(*) FROM t");
      CHECK(live_statements(db) == 2);
      sqlite::statement moved(std::move(a));
      CHECK(live_statements(db) == 2);
    }
    CHECK(live_statements(db) == 0);
  }

  SUBCASE("reset_guard leaves no statement mid-read") {
    sqlite::statement st(db, "SELECT i FROM t");
    {
      sqlite::reset_guard g(st);
      REQUIRE(st.step());  // one row of two read: the statement is still running
      CHECK(sqlite3_stmt_busy(sqlite3_next_stmt(db.get(), nullptr)) != 0);
    }
    CHECK(sqlite3_stmt_busy(sqlite3_next_stmt(db.get(), nullptr)) == 0);
  }
}

TEST_CASE("sqlite: transactions") {
  sqlite::connection db(":memory:", sqlite::connection::open_mode::read_write_create);
  db.exec("CREATE TABLE t (i INTEGER PRIMARY KEY)");

  SUBCASE("scope exit without commit rolls back") {
    {
      sqlite::transaction tx(db);
      CHECK_FALSE(db.autocommit());
      db.exec("INSERT INTO t VALUES (1)");
      CHECK(count_rows(db, "SELECT count(*) FROM t") == 1);
    }
    CHECK(db.autocommit());
    CHECK(count_rows(db, "SELECT count(*) FROM t") == 0);
  }

  SUBCASE("commit keeps the writes") {
    {
      sqlite::transaction tx(db);
      db.exec("INSERT INTO t VALUES (1)");
      tx.commit();
      CHECK(db.autocommit());
    }
    CHECK(count_rows(db, "SELECT count(*) FROM t") == 1);
  }

  SUBCASE("an exception unwinds to a rollback of every statement in it") {
    CHECK_THROWS_AS(
        [&] {
          sqlite::transaction tx(db, sqlite::transaction::kind::deferred);
          db.exec("INSERT INTO t VALUES (1)");
          db.exec("INSERT INTO t VALUES (1)");  // primary key violation
          tx.commit();
        }(),
        sqlite::error);
    CHECK(db.autocommit());
    CHECK(count_rows(db, "SELECT count(*) FROM t") == 0);
  }

  SUBCASE("a nested BEGIN fails and the outer transaction still rolls back") {
    sqlite::transaction outer(db);
    db.exec("INSERT INTO t VALUES (5)");
    CHECK_THROWS_AS(sqlite::transaction{db}, sqlite::error);
    CHECK_FALSE(db.autocommit());
  }
}

TEST_CASE("sqlite: errors carry SQLite's message and code") {
  sqlite::connection db(":memory:", sqlite::connection::open_mode::read_write_create);
  db.exec("CREATE TABLE t (i INTEGER PRIMARY KEY)");

  SUBCASE("prepare") {
    try {
      sqlite::statement st(db, "SELECT * FROM missing_table");
      FAIL("prepare should have thrown");
    } catch (const sqlite::error& e) {
      CHECK(std::string(e.what()).find("no such table: missing_table") != std::string::npos);
      CHECK(std::string(e.what()).find("SELECT * FROM missing_table") != std::string::npos);
      CHECK(e.code() == SQLITE_ERROR);
    }
  }

  SUBCASE("step") {
    sqlite::statement st(db, "INSERT INTO t (i) VALUES (?1)");
    st.bind(1, 1);
    st.run();
    st.reset();
    st.bind(1, 1);
    try {
      st.run();
      FAIL("step should have thrown");
    } catch (const sqlite::error& e) {
      CHECK(std::string(e.what()).find("UNIQUE constraint failed: t.i") != std::string::npos);
      CHECK(e.code() == SQLITE_CONSTRAINT_PRIMARYKEY);
    }
  }

  SUBCASE("bind out of range") {
    sqlite::statement st(db, "SELECT ?1");
    CHECK_THROWS_WITH_AS(st.bind(2, 1), doctest::Contains("column index out of range"),
                         sqlite::error);
  }

  SUBCASE("more than one statement is refused, not half-run") {
    CHECK_THROWS_WITH_AS(sqlite::statement(db, "SELECT 1; DROP TABLE t"),
                         doctest::Contains("exactly one statement"), sqlite::error);
    CHECK_NOTHROW(sqlite::statement(db, "SELECT 1;  \n"));
    CHECK(count_rows(db, "SELECT count(*) FROM sqlite_schema WHERE name = 't'") == 1);
  }

  SUBCASE("open read-only on a missing file names the file") {
    const auto path =
        (std::filesystem::temp_directory_path() / "somrated-sqlite-test-does-not-exist.db")
            .string();
    REQUIRE_FALSE(std::filesystem::exists(path));
    CHECK_THROWS_WITH_AS(sqlite::connection(path, sqlite::connection::open_mode::read_only),
                         doctest::Contains(path.c_str()), sqlite::error);
    CHECK_FALSE(std::filesystem::exists(path));
  }

  SUBCASE("errors are store errors") {
    CHECK_THROWS_AS(db.exec("NOT SQL"), somrated::store_error);
  }
}
