#include "somrated/sqlite.hpp"

#include <cassert>
#include <limits>

#include <fmt/core.h>

namespace somrated::sqlite {

namespace {

/// Builds an error from what was attempted and the connection's last error.
error last_error(sqlite3* db, std::string_view what) {
  return error(fmt::format("{}: {}", what, sqlite3_errmsg(db)), sqlite3_extended_errcode(db));
}

/// The start of sql for a message, so a long migration script does not flood the log.
std::string_view abbreviated(std::string_view sql) {
  constexpr std::size_t max = 80;
  return sql.size() <= max ? sql : sql.substr(0, max);
}

}  // namespace

void connection_deleter::operator()(sqlite3* db) const noexcept {
  // SQLITE_BUSY here means a statement outlived its connection, a bug in the owner.
  // Fall back to close_v2, which closes once the last statement is finalized.
  const int rc = sqlite3_close(db);
  assert(rc == SQLITE_OK && "sqlite3_close: unfinalized statements");
  if (rc != SQLITE_OK) sqlite3_close_v2(db);
}

void statement_deleter::operator()(sqlite3_stmt* st) const noexcept {
  sqlite3_finalize(st);
}

connection::connection(const std::string& path, open_mode m) {
  // A connection is only ever used by the one thread that owns its store (STYLE.md,
  // pattern 8), so SQLite's per-connection mutex would only cost a lock per call.
  int flags = SQLITE_OPEN_EXRESCODE | SQLITE_OPEN_NOMUTEX;
  switch (m) {
    case open_mode::read_write_create:
      flags |= SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
      break;
    case open_mode::read_write:
      flags |= SQLITE_OPEN_READWRITE;
      break;
    case open_mode::read_only:
      flags |= SQLITE_OPEN_READONLY;
      break;
  }
  sqlite3* raw = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &raw, flags, nullptr);
  // SQLite allocates a handle even when opening fails; own it before looking at rc so
  // it is closed on every path.
  db_.reset(raw);
  if (rc != SQLITE_OK) {
    const char* msg = raw != nullptr ? sqlite3_errmsg(raw) : sqlite3_errstr(rc);
    throw error(fmt::format("cannot open database '{}': {}", path, msg), rc);
  }
  sqlite3_extended_result_codes(raw, 1);
}

void connection::exec(const char* sql) {
  if (sqlite3_exec(db_.get(), sql, nullptr, nullptr, nullptr) != SQLITE_OK) {
    throw last_error(db_.get(), fmt::format("exec '{}'", abbreviated(sql)));
  }
}

void connection::busy_timeout(std::chrono::milliseconds timeout) {
  const auto ms = timeout.count() > std::numeric_limits<int>::max()
                      ? std::numeric_limits<int>::max()
                      : static_cast<int>(timeout.count());
  if (sqlite3_busy_timeout(db_.get(), ms) != SQLITE_OK) {
    throw last_error(db_.get(), "busy_timeout");
  }
}

std::int64_t connection::last_insert_rowid() const noexcept {
  return sqlite3_last_insert_rowid(db_.get());
}

std::int64_t connection::changes() const noexcept {
  return sqlite3_changes64(db_.get());
}

bool connection::autocommit() const noexcept {
  return sqlite3_get_autocommit(db_.get()) != 0;
}

statement::statement(connection& db, std::string_view sql) {
  sqlite3_stmt* raw = nullptr;
  const char* tail = nullptr;
  const int rc = sqlite3_prepare_v3(db.get(), sql.data(), static_cast<int>(sql.size()),
                                    SQLITE_PREPARE_PERSISTENT, &raw, &tail);
  stmt_.reset(raw);
  if (rc != SQLITE_OK) throw last_error(db.get(), fmt::format("prepare '{}'", abbreviated(sql)));
  // Only the first statement of sql is prepared; anything after it would be dropped
  // without a word, so refuse it (and an empty text) instead.
  const auto rest = sql.substr(static_cast<std::size_t>(tail - sql.data()));
  if (raw == nullptr || rest.find_first_not_of(" \t\r\n;") != std::string_view::npos) {
    throw error(fmt::format("prepare '{}': expected exactly one statement", abbreviated(sql)),
                SQLITE_MISUSE);
  }
}

void statement::reset() noexcept {
  sqlite3_reset(stmt_.get());
  sqlite3_clear_bindings(stmt_.get());
}

void statement::check_bind(int rc, int index) {
  if (rc != SQLITE_OK) {
    throw last_error(sqlite3_db_handle(stmt_.get()),
                     fmt::format("bind parameter {} of '{}'", index, abbreviated(sql())));
  }
}

void statement::bind(int index, std::int64_t value) {
  check_bind(sqlite3_bind_int64(stmt_.get(), index, value), index);
}

void statement::bind(int index, double value) {
  check_bind(sqlite3_bind_double(stmt_.get(), index, value), index);
}

void statement::bind(int index, std::string_view value) {
  check_bind(sqlite3_bind_text64(stmt_.get(), index, value.data(), value.size(), SQLITE_TRANSIENT,
                                 SQLITE_UTF8),
             index);
}

void statement::bind_null(int index) {
  check_bind(sqlite3_bind_null(stmt_.get(), index), index);
}

void statement::bind_ref(int index, const std::string& value) {
  check_bind(sqlite3_bind_text64(stmt_.get(), index, value.data(), value.size(), SQLITE_STATIC,
                                 SQLITE_UTF8),
             index);
}

bool statement::step() {
  const int rc = sqlite3_step(stmt_.get());
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  throw last_error(sqlite3_db_handle(stmt_.get()), fmt::format("step '{}'", abbreviated(sql())));
}

void statement::run() {
  while (step()) {
  }
}

std::int64_t statement::column_int64(int column) const noexcept {
  return sqlite3_column_int64(stmt_.get(), column);
}

double statement::column_double(int column) const noexcept {
  return sqlite3_column_double(stmt_.get(), column);
}

std::string statement::column_text(int column) const {
  const auto* text = sqlite3_column_text(stmt_.get(), column);
  if (text == nullptr) return {};
  const auto size = static_cast<std::size_t>(sqlite3_column_bytes(stmt_.get(), column));
  return std::string(reinterpret_cast<const char*>(text), size);
}

bool statement::column_is_null(int column) const noexcept {
  return sqlite3_column_type(stmt_.get(), column) == SQLITE_NULL;
}

std::string_view statement::sql() const noexcept {
  const char* text = sqlite3_sql(stmt_.get());
  return text != nullptr ? std::string_view(text) : std::string_view();
}

transaction::transaction(connection& db, kind k) : db_(db) {
  db_.exec(k == kind::immediate ? "BEGIN IMMEDIATE" : "BEGIN DEFERRED");
}

transaction::~transaction() {
  // SQLite may already have rolled back on its own (SQLITE_FULL, SQLITE_IOERR, ...);
  // a second ROLLBACK would only fail, so look first. Errors are ignored: there is
  // nothing better to do in a destructor and the transaction is gone either way.
  if (!done_ && !db_.autocommit()) {
    sqlite3_exec(db_.get(), "ROLLBACK", nullptr, nullptr, nullptr);
  }
}

void transaction::commit() {
  db_.exec("COMMIT");
  done_ = true;
}

}  // namespace somrated::sqlite
