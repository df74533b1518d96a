// Day-two operations on the store: export and import of change points, scrape-log
// retention, online backup and VACUUM.
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <system_error>
#include <thread>

#include <fmt/core.h>

#include "somrated/sqlite.hpp"
#include "somrated/store.hpp"
#include "store_impl.hpp"

namespace somrated {

namespace {

namespace fs = std::filesystem;
using sqlite::statement;
using store_detail::from_ms;
using store_detail::stored_decimal;
using store_detail::to_ms;

/// A date as stored: "2025-06-10".
std::optional<std::string> date_column(const std::optional<std::chrono::sys_days>& d) {
  if (!d) return std::nullopt;
  return format_date(*d);
}

/// Binds an optional text, NULL when unset.
void bind_optional(statement& st, int index, const std::optional<std::string>& value) {
  if (value) {
    st.bind_ref(index, *value);
  } else {
    st.bind_null(index);
  }
}

/// A stored change point as the import compares it.
struct stored_change {
  std::int64_t since = 0;
  std::string rate;
  std::int64_t observed_at = 0;
  std::optional<std::string> effective_date;
};

/// The current row of a statement selecting since, rate, observed_at, effective_date.
stored_change read_change(const statement& st) {
  stored_change c{st.column_int64(0), st.column_text(1), st.column_int64(2), std::nullopt};
  if (!st.column_is_null(3)) c.effective_date = st.column_text(3);
  return c;
}

/// True for the result codes that mean "another connection holds a lock; try again".
bool is_busy(int code) noexcept {
  return (code & 0xff) == SQLITE_BUSY || (code & 0xff) == SQLITE_LOCKED;
}

/// Ends a backup; the result of sqlite3_backup_finish is checked where it matters.
struct backup_deleter {
  void operator()(sqlite3_backup* b) const noexcept { sqlite3_backup_finish(b); }
};

/// A file name that is removed (with SQLite's side files) at scope end unless kept.
class scratch_file {
 public:
  /// Creates a new empty file dest.XXXXXX next to dest; throws store_error.
  explicit scratch_file(const std::string& dest) {
    std::string pattern = dest + ".XXXXXX";
    const int fd = ::mkstemp(pattern.data());
    if (fd < 0) {
      throw store_error(fmt::format("cannot create a temporary file next to '{}': {}", dest,
                                    std::strerror(errno)));
    }
    ::close(fd);
    path_ = std::move(pattern);
  }
  ~scratch_file() {
    if (path_.empty()) return;
    for (const char* suffix : {"", "-journal", "-wal", "-shm"}) {
      ::unlink((path_ + suffix).c_str());
    }
  }
  scratch_file(const scratch_file&) = delete;
  scratch_file& operator=(const scratch_file&) = delete;

  /// The file's name.
  const std::string& path() const noexcept { return path_; }
  /// Keeps the file (it has been renamed into place).
  void release() noexcept { path_.clear(); }

 private:
  std::string path_;
};

/// fsync()s a file or directory; throws store_error naming what.
void sync_path(const std::string& path, bool directory) {
  const int fd = ::open(path.c_str(), (directory ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
  if (fd < 0 || ::fsync(fd) != 0) {
    const int err = errno;
    if (fd >= 0) ::close(fd);
    throw store_error(fmt::format("cannot sync '{}': {}", path, std::strerror(err)));
  }
  ::close(fd);
}

/// The database file plus its WAL, in bytes (0 for what does not exist).
std::int64_t size_with_wal(const std::string& path) {
  std::int64_t total = 0;
  for (const auto& p : {path, path + "-wal"}) {
    std::error_code ec;
    const auto n = fs::file_size(p, ec);
    if (!ec) total += static_cast<std::int64_t>(n);
  }
  return total;
}

/// The first row's first column of a one-row PRAGMA or SELECT.
std::int64_t single_int(sqlite::connection& db, std::string_view sql) {
  statement st(db, sql);
  return st.step() ? st.column_int64(0) : 0;
}

/// PRAGMA integrity_check's findings, one per line ("ok" when sound).
std::string integrity_of(sqlite::connection& db) {
  statement st(db, "PRAGMA integrity_check");
  std::string out;
  while (st.step()) {
    if (!out.empty()) out += '\n';
    out += st.column_text(0);
  }
  return out;
}

/// Refuses a destination that is the source, a directory, or (without overwrite) any
/// existing file.
void check_destination(const std::string& source, const std::string& dest, bool overwrite) {
  std::error_code ec;
  const auto st = fs::status(dest, ec);
  if (ec || !fs::exists(st)) return;
  if (fs::is_directory(st)) throw store_error(fmt::format("'{}' is a directory", dest));
  if (fs::equivalent(source, dest, ec)) {
    throw store_error(fmt::format("'{}' is the database itself", dest));
  }
  if (!overwrite) throw store_error(fmt::format("'{}' exists", dest));
  // SQLite would replay a WAL left next to the old file onto the new one.
  if (fs::exists(dest + "-wal", ec)) {
    throw store_error(
        fmt::format("'{}-wal' exists: '{}' is a database in use (or not closed "
                    "cleanly) and is not replaced",
                    dest, dest));
  }
}

/// Moves the finished copy to dest: atomically replacing it with overwrite, otherwise
/// failing if something appeared there meanwhile.
void publish(const std::string& from, const std::string& dest, bool overwrite) {
  if (overwrite) {
    if (::rename(from.c_str(), dest.c_str()) != 0) {
      throw store_error(
          fmt::format("cannot rename the copy to '{}': {}", dest, std::strerror(errno)));
    }
    return;
  }
  if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, dest.c_str(), RENAME_NOREPLACE) == 0) return;
  int err = errno;
  // Some file systems do not know RENAME_NOREPLACE; a hard link also refuses to replace.
  if (err == EINVAL || err == ENOSYS) {
    if (::link(from.c_str(), dest.c_str()) == 0) {
      ::unlink(from.c_str());
      return;
    }
    err = errno;
  }
  if (err == EEXIST) throw store_error(fmt::format("'{}' exists", dest));
  throw store_error(fmt::format("cannot move the copy to '{}': {}", dest, std::strerror(err)));
}

/// Copies every page of src's snapshot into dst, step by step, retrying busy steps for
/// at most o.busy_limit in total. Returns the pages copied and the steps taken.
std::pair<std::int64_t, int> copy_pages(sqlite::connection& src, sqlite::connection& dst,
                                        const backup_options& o) {
  std::unique_ptr<sqlite3_backup, backup_deleter> b(
      sqlite3_backup_init(dst.get(), "main", src.get(), "main"));
  if (!b) {
    throw sqlite::error(fmt::format("backup: {}", sqlite3_errmsg(dst.get())),
                        sqlite3_extended_errcode(dst.get()));
  }
  constexpr auto pause = std::chrono::milliseconds(20);
  std::chrono::milliseconds waited{0};
  int steps = 0;
  for (;;) {
    const int rc = sqlite3_backup_step(b.get(), std::max(1, o.pages_per_step));
    if (rc == SQLITE_DONE) break;
    if (rc == SQLITE_OK) {
      ++steps;
      if (o.progress)
        o.progress(sqlite3_backup_remaining(b.get()), sqlite3_backup_pagecount(b.get()));
      continue;
    }
    if (is_busy(rc) && waited < o.busy_limit) {
      std::this_thread::sleep_for(pause);
      waited += pause;
      continue;
    }
    throw sqlite::error(is_busy(rc)
                            ? fmt::format("backup: the database stayed locked for more than {} ms",
                                          o.busy_limit.count())
                            : fmt::format("backup: {}", sqlite3_errstr(rc)),
                        rc);
  }
  ++steps;
  const std::int64_t pages = sqlite3_backup_pagecount(b.get());
  const int rc = sqlite3_backup_finish(b.release());
  if (rc != SQLITE_OK) {
    throw sqlite::error(fmt::format("backup: {}", sqlite3_errstr(rc)), rc);
  }
  return {pages, steps};
}

}  // namespace

std::size_t store::export_changes(const change_filter& f,
                                  const std::function<void(const change_record&)>& visit) {
  auto& s = *impl_;
  // Sources in name order, each one's change points in primary-key order: no sort.
  statement st(s.db,
               "SELECT s.name, c.currency, c.since, c.rate, c.observed_at, c.effective_date "
               "FROM source AS s JOIN rate_change AS c ON c.source_id = s.id "
               "WHERE (?1 IS NULL OR s.name = ?1) AND (?2 IS NULL OR c.currency = ?2) "
               "AND c.since >= ?3 AND c.since <= ?4 "
               "ORDER BY s.name, c.currency, c.since");
  sqlite::transaction tx(s.db, sqlite::transaction::kind::deferred);
  bind_optional(st, 1, f.source);
  bind_optional(st, 2, f.currency);
  st.bind(3, f.from ? to_ms(*f.from) : std::numeric_limits<std::int64_t>::min());
  st.bind(4, f.to ? to_ms(*f.to) : std::numeric_limits<std::int64_t>::max());
  sqlite::reset_guard g(st);
  std::size_t n = 0;
  while (st.step()) {
    change_record r{st.column_text(0),           st.column_text(1),
                    from_ms(st.column_int64(2)), stored_decimal(st.column_text(3)),
                    from_ms(st.column_int64(4)), std::nullopt};
    if (!st.column_is_null(5)) r.effective_date = parse_date(st.column_text(5));
    visit(r);
    ++n;
  }
  tx.commit();
  return n;
}

std::vector<import_verdict> store::merge_changes(std::span<const change_record> records) try {
  auto& s = *impl_;
  statement at_or_before(s.db,
                         "SELECT since, rate, observed_at, effective_date FROM rate_change "
                         "WHERE source_id = ?1 AND currency = ?2 AND since <= ?3 "
                         "ORDER BY since DESC LIMIT 1");
  statement after(s.db,
                  "SELECT since, rate, observed_at, effective_date FROM rate_change "
                  "WHERE source_id = ?1 AND currency = ?2 AND since > ?3 "
                  "ORDER BY since LIMIT 1");
  statement remove(s.db,
                   "DELETE FROM rate_change WHERE source_id = ?1 AND currency = ?2 AND since = ?3");
  // Only a strictly later observation writes, so importing the same rows again does not
  // even touch a page.
  statement confirm(s.db,
                    "UPDATE rate_change SET observed_at = ?4, "
                    "effective_date = coalesce(?5, effective_date) "
                    "WHERE source_id = ?1 AND currency = ?2 AND since = ?3 AND observed_at < ?4");
  const auto find = [](statement& st, std::int64_t source_id, const std::string& currency,
                       std::int64_t since) -> std::optional<stored_change> {
    sqlite::reset_guard g(st);
    st.bind(1, source_id);
    st.bind_ref(2, currency);
    st.bind(3, since);
    if (!st.step()) return std::nullopt;
    return read_change(st);
  };

  sqlite::transaction tx(s.db);
  std::map<std::string, std::int64_t, std::less<>> source_ids;
  std::vector<import_verdict> out;
  out.reserve(records.size());
  for (const auto& r : records) {
    auto id = source_ids.find(r.source);
    if (id == source_ids.end())
      id = source_ids.emplace(r.source, s.source_for_write(r.source)).first;
    const std::int64_t source_id = id->second;
    const std::int64_t since = to_ms(r.since);
    const std::int64_t observed = to_ms(r.observed_at);
    const auto date = date_column(r.effective_date);
    const auto& text = r.rate.text();

    const auto before = find(at_or_before, source_id, r.currency, since);
    if (before && before->since == since && before->rate != text) {
      out.push_back({import_outcome::conflict, before->rate});
      continue;
    }
    if (before && before->rate == text) {
      // Already in force: at most a later confirmation of it.
      sqlite::reset_guard g(confirm);
      confirm.bind(1, source_id);
      confirm.bind_ref(2, r.currency);
      confirm.bind(3, before->since);
      confirm.bind(4, observed);
      bind_optional(confirm, 5, date);
      confirm.run();
      out.push_back({import_outcome::present, {}});
      continue;
    }
    const auto next = find(after, source_id, r.currency, since);
    if (next && next->rate == text) {
      // The same value was known to start later: it started here. The later
      // observation (and its effective date) wins.
      {
        sqlite::reset_guard g(remove);
        remove.bind(1, source_id);
        remove.bind_ref(2, r.currency);
        remove.bind(3, next->since);
        remove.run();
      }
      const bool file_later = observed > next->observed_at;
      s.insert_change(source_id, r.currency, since, r.rate, std::max(observed, next->observed_at),
                      file_later ? (date ? date : next->effective_date)
                                 : (next->effective_date ? next->effective_date : date));
      out.push_back({import_outcome::extended, {}});
      continue;
    }
    s.insert_change(source_id, r.currency, since, r.rate, observed, date);
    // A new newest value: a hold was judged against the value it supersedes.
    if (!next) s.drop_hold(source_id, r.currency);
    out.push_back({import_outcome::inserted, {}});
  }
  tx.commit();
  return out;
} catch (const sqlite::error& e) {
  impl_->throw_if_full(e, fmt::format("{} imported change points", records.size()));
  throw;
}

std::size_t store::prune_scrape_log(timestamp cutoff, std::size_t max_rows) try {
  auto& s = *impl_;
  if (max_rows == 0) return 0;
  // Each delete is a range scan of one of the partial indexes (source_id, started_at);
  // the terms on outcome repeat the indexes' conditions so the planner uses them.
  statement sources(s.db, "SELECT id FROM source ORDER BY id");
  statement newest_failure(
      s.db, "SELECT max(started_at) FROM scrape_log WHERE source_id = ?1 AND outcome = 'error'");
  statement delete_successes(s.db,
                             "DELETE FROM scrape_log WHERE id IN (SELECT id FROM scrape_log "
                             "WHERE source_id = ?1 AND outcome <> 'error' AND started_at < ?2 "
                             "LIMIT ?3)");
  statement delete_failures(s.db,
                            "DELETE FROM scrape_log WHERE id IN (SELECT id FROM scrape_log "
                            "WHERE source_id = ?1 AND outcome = 'error' AND started_at < ?2 "
                            "LIMIT ?3)");
  const auto newest = [](statement& st, std::int64_t source_id) -> std::optional<std::int64_t> {
    sqlite::reset_guard g(st);
    st.bind(1, source_id);
    if (!st.step() || st.column_is_null(0)) return std::nullopt;
    return st.column_int64(0);
  };

  sqlite::transaction tx(s.db);
  std::vector<std::int64_t> ids;
  {
    sqlite::reset_guard g(sources);
    while (sources.step()) ids.push_back(sources.column_int64(0));
  }
  const std::int64_t cut = to_ms(cutoff);
  std::size_t deleted = 0;
  const auto remove = [&](statement& st, std::int64_t source_id, std::int64_t before) {
    if (deleted >= max_rows) return;
    sqlite::reset_guard g(st);
    st.bind(1, source_id);
    st.bind(2, before);
    st.bind(3, static_cast<std::int64_t>(max_rows - deleted));
    st.run();
    deleted += static_cast<std::size_t>(s.db.changes());
  };
  for (const auto source_id : ids) {
    const auto success = newest(s.last_success, source_id);
    // Without a success every failure is part of the current streak.
    if (!success) continue;
    remove(delete_successes, source_id, std::min(cut, *success));
    std::int64_t failures_before = std::min(cut, *success);
    if (const auto failure = newest(newest_failure, source_id)) {
      failures_before = std::min(failures_before, *failure);
    }
    remove(delete_failures, source_id, failures_before);
  }
  tx.commit();
  return deleted;
} catch (const sqlite::error& e) {
  impl_->throw_if_full(e, "scrape-log pruning");
  throw;
}

backup_result backup_database(const std::string& source, const std::string& dest,
                              const backup_options& o) {
  check_destination(source, dest, o.overwrite);
  // Read-write, so that when this is the only connection SQLite removes the -wal and
  // -shm files it creates on close; nothing is written to the source.
  sqlite::connection src(source, sqlite::connection::open_mode::read_write);
  src.busy_timeout(o.busy_limit);
  backup_result result;
  scratch_file scratch(dest);
  {
    sqlite::connection dst(scratch.path(), sqlite::connection::open_mode::read_write);
    // One read transaction over every step: one snapshot, and no restart when the
    // daemon writes between two steps.
    src.exec("BEGIN DEFERRED");
    single_int(src, "SELECT count(*) FROM sqlite_schema");
    const auto [pages, steps] = copy_pages(src, dst, o);
    src.exec("COMMIT");
    result.pages = pages;
    result.steps = steps;
  }
  {
    // The copy carries the source's WAL flag; a backup is better one self-contained file.
    sqlite::connection dst(scratch.path(), sqlite::connection::open_mode::read_write);
    statement mode(dst, "PRAGMA journal_mode = DELETE");
    if (!mode.step() || mode.column_text(0) != "delete") {
      throw store_error(
          fmt::format("backup: cannot switch the copy '{}' to a rollback journal", scratch.path()));
    }
    mode.reset();
    const auto integrity = integrity_of(dst);
    if (integrity != "ok") {
      throw store_error(
          fmt::format("backup: the copy fails PRAGMA integrity_check: {}", integrity));
    }
  }
  sync_path(scratch.path(), false);
  publish(scratch.path(), dest, o.overwrite);
  scratch.release();
  const auto parent = fs::path(dest).parent_path();
  sync_path(parent.empty() ? std::string(".") : parent.string(), true);
  result.bytes = size_with_wal(dest);
  return result;
}

vacuum_result vacuum_database(const std::string& path, std::chrono::milliseconds lock_wait) {
  vacuum_result r;
  r.bytes_before = size_with_wal(path);
  sqlite::connection db(path, sqlite::connection::open_mode::read_write);
  db.busy_timeout(lock_wait);
  try {
    db.exec("VACUUM");
  } catch (const sqlite::error& e) {
    if (!is_busy(e.code())) throw;
    throw sqlite::error(
        fmt::format("the database stayed locked by another connection (the running daemon?) "
                    "for more than {} ms; nothing was changed, try again later",
                    lock_wait.count()),
        e.code());
  }
  {
    statement st(db, "PRAGMA wal_checkpoint(TRUNCATE)");
    // (busy, WAL frames, frames checkpointed): busy is 1 when a reader kept the
    // checkpoint from finishing within the busy timeout.
    if (st.step()) r.wal_truncated = st.column_int64(0) == 0;
  }
  r.bytes_after = size_with_wal(path);
  return r;
}

}  // namespace somrated
