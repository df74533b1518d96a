#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include <sqlite3.h>

#include "somrated/store.hpp"

/// Thin RAII wrappers over the SQLite C API, used only by the store.
///
/// Every handle lives in a std::unique_ptr with a deleter that never throws; every
/// failure becomes a sqlite::error carrying SQLite's own message and extended result
/// code. sqlite::error derives from store_error so the store's callers see one
/// exception type whichever layer failed.
namespace somrated::sqlite {

/// A failed SQLite call: what was attempted, SQLite's message, and its result code.
class error : public store_error {
 public:
  /// what is the full message; code is SQLite's extended result code.
  error(const std::string& what, int code) : store_error(what), code_(code) {}

  /// SQLite's extended result code (SQLITE_CONSTRAINT_PRIMARYKEY, SQLITE_BUSY, ...).
  int code() const noexcept { return code_; }

 private:
  int code_;
};

/// Closes a connection; asserts in debug builds if a statement was left unfinalized.
struct connection_deleter {
  void operator()(sqlite3* db) const noexcept;
};

/// Finalizes a prepared statement.
struct statement_deleter {
  void operator()(sqlite3_stmt* st) const noexcept;
};

/// One open database connection.
class connection {
 public:
  /// How the file is opened.
  enum class open_mode {
    read_write_create,  ///< Read and write; create the file when missing.
    read_write,         ///< Read and write; the file must exist.
    read_only,          ///< Read only; the file must exist.
  };

  /// Opens path; throws error naming the path when SQLite cannot open it.
  connection(const std::string& path, open_mode m);

  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;
  connection(connection&&) noexcept = default;
  connection& operator=(connection&&) noexcept = default;

  /// The raw handle, for the wrappers below.
  sqlite3* get() const noexcept { return db_.get(); }

  /// Runs one or more statements without results (migration scripts, BEGIN, COMMIT).
  void exec(const char* sql);
  /// Overload taking a string_view; the text is copied so it can be NUL-terminated.
  void exec(std::string_view sql) { exec(std::string(sql).c_str()); }

  /// Sets how long a statement waits for another connection's lock before SQLITE_BUSY.
  void busy_timeout(std::chrono::milliseconds timeout);

  /// Rowid of the last successful INSERT on this connection.
  std::int64_t last_insert_rowid() const noexcept;

  /// Rows changed by the last completed INSERT, UPDATE or DELETE on this connection.
  std::int64_t changes() const noexcept;

  /// True outside an explicit transaction.
  bool autocommit() const noexcept;

 private:
  std::unique_ptr<sqlite3, connection_deleter> db_;
};

/// A prepared statement, reused across executions through reset().
///
/// Text and blobs are bound with SQLITE_TRANSIENT (SQLite copies them), so a temporary
/// argument is safe. bind_ref() skips the copy and so only takes lvalues: the overload
/// for rvalues is deleted because SQLite would keep a pointer into a dead temporary.
/// bool is deleted too, so a flag never silently becomes an integer column.
class statement {
 public:
  /// Prepares sql on db for repeated use; throws error quoting the SQL on failure.
  statement(connection& db, std::string_view sql);

  statement(const statement&) = delete;
  statement& operator=(const statement&) = delete;
  statement(statement&&) noexcept = default;
  statement& operator=(statement&&) noexcept = default;

  /// Makes the statement ready to run again and clears its bindings; never throws
  /// (an error of the previous step has already been reported by step()).
  void reset() noexcept;

  /// Binds a 1-based parameter.
  void bind(int index, std::int64_t value);
  /// Binds an int (widened to 64 bits).
  void bind(int index, int value) { bind(index, static_cast<std::int64_t>(value)); }
  /// Binds a double.
  void bind(int index, double value);
  /// Binds text, copied by SQLite.
  void bind(int index, std::string_view value);
  /// Binds a C string, copied by SQLite.
  void bind(int index, const char* value) { bind(index, std::string_view(value)); }
  /// Deleted: a bool is not a column type of ours.
  void bind(int index, bool value) = delete;
  /// Binds SQL NULL.
  void bind_null(int index);
  /// Binds text without copying; value must outlive the next reset().
  void bind_ref(int index, const std::string& value);
  /// Deleted: the temporary would die while SQLite still points into it.
  void bind_ref(int index, std::string&& value) = delete;

  /// Advances; true when a row is available, false when done. Throws error on failure.
  bool step();

  /// Runs a statement that returns no rows (INSERT, UPDATE, DELETE) to completion.
  void run();

  /// Columns of the current row, 0-based.
  std::int64_t column_int64(int column) const noexcept;
  /// The column as a double.
  double column_double(int column) const noexcept;
  /// The column as text (copied; empty for NULL).
  std::string column_text(int column) const;
  /// True when the column is SQL NULL.
  bool column_is_null(int column) const noexcept;

  /// The SQL text, for messages.
  std::string_view sql() const noexcept;

 private:
  /// Throws error for a bind failure.
  void check_bind(int rc, int index);

  std::unique_ptr<sqlite3_stmt, statement_deleter> stmt_;
};

/// Resets a statement when the scope ends, so a half-read SELECT never keeps the
/// connection's read snapshot open and the next use starts clean.
class reset_guard {
 public:
  /// Guards st; st must outlive the guard.
  explicit reset_guard(statement& st) noexcept : st_(st) {}
  ~reset_guard() { st_.reset(); }
  reset_guard(const reset_guard&) = delete;
  reset_guard& operator=(const reset_guard&) = delete;

 private:
  statement& st_;
};

/// A transaction that rolls back when it goes out of scope without commit().
class transaction {
 public:
  /// When the write lock is taken.
  enum class kind {
    deferred,   ///< At the first write; a read-only snapshot until then.
    immediate,  ///< At BEGIN, so a writer never fails half-way on SQLITE_BUSY.
  };

  /// Begins a transaction on db; throws error when BEGIN fails.
  explicit transaction(connection& db, kind k = kind::immediate);
  /// Rolls back unless committed; never throws.
  ~transaction();
  transaction(const transaction&) = delete;
  transaction& operator=(const transaction&) = delete;

  /// Commits; throws error (and the destructor then rolls back) when COMMIT fails.
  void commit();

 private:
  connection& db_;
  bool done_ = false;
};

}  // namespace somrated::sqlite
