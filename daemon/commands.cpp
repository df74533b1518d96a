#include "somrated/commands.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "somrated/csv.hpp"
#include "somrated/time.hpp"

namespace somrated {

namespace {

using namespace std::chrono_literals;

/// How long vacuum waits for the daemon's write lock before it gives up.
constexpr std::chrono::milliseconds vacuum_lock_wait = 10s;

/// Output is handed to the stream in pieces of about this size.
constexpr std::size_t output_chunk = 64 * 1024;

/// RFC 3339 UTC with milliseconds, "2025-06-10T10:52:00.123Z": the stored precision,
/// so an export reads back exactly.
std::string format_time_ms(timestamp t) {
  std::string s = format_rfc3339(t);
  const auto ms = t.time_since_epoch().count() % 1000;
  s.insert(s.size() - 1, fmt::format(".{:03}", ms < 0 ? ms + 1000 : ms));
  return s;
}

/// The columns import knows, in export's order.
enum column { source_col, currency_col, since_col, rate_col, observed_col, date_col, column_count };

/// Their names, indexed by column.
constexpr std::string_view column_names[] = {"source", "currency",    "since",
                                             "rate",   "observed_at", "effective_date"};

/// s without leading and trailing spaces and tabs.
std::string_view trimmed(std::string_view s) {
  const auto first = s.find_first_not_of(" \t");
  if (first == std::string_view::npos) return {};
  return s.substr(first, s.find_last_not_of(" \t") - first + 1);
}

/// A value in double quotes for messages, shortened when long.
std::string shown(std::string_view s) {
  constexpr std::size_t max = 40;
  return s.size() <= max ? fmt::format("\"{}\"", s) : fmt::format("\"{}...\"", s.substr(0, max));
}

/// True for a source name as the config allows it: 1 to 32 of a-z, 0-9, '_' and '-'.
bool valid_source_name(std::string_view s) {
  return !s.empty() && s.size() <= 32 && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
  });
}

/// Where each known column is in the file (-1: absent), from the header record.
using column_map = std::array<int, column_count>;

/// Reads the header; throws import_error naming the problem.
column_map read_header(const csv_record& header, std::string_view name) {
  const auto fail = [&](std::size_t field, const std::string& message) {
    return import_error(fmt::format("{}:{}: column {}: {}", name, header.line, field, message));
  };
  if (!header.error.empty()) throw fail(header.error_field, header.error);
  column_map map;
  map.fill(-1);
  for (std::size_t i = 0; i < header.fields.size(); ++i) {
    std::string key(trimmed(header.fields[i]));
    std::transform(key.begin(), key.end(), key.begin(), [](char c) {
      return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
    });
    const auto it = std::find(std::begin(column_names), std::end(column_names), key);
    if (it == std::end(column_names)) {
      std::string message = fmt::format("unknown column {}", shown(header.fields[i]));
      if (const auto best = closest_match(key, column_names)) {
        message += fmt::format("; did you mean \"{}\"?", *best);
      }
      throw fail(i + 1, message + fmt::format(" (the columns are {})", csv_header));
    }
    auto& slot = map[static_cast<std::size_t>(it - std::begin(column_names))];
    if (slot >= 0) {
      throw fail(i + 1, fmt::format("\"{}\" is given twice (also column {})", key, slot + 1));
    }
    slot = static_cast<int>(i);
  }
  for (const column c : {source_col, currency_col, since_col, rate_col}) {
    if (map[c] < 0) {
      throw import_error(fmt::format("{}:{}: the header has no \"{}\" column (the columns are {})",
                                     name, header.line, column_names[c], csv_header));
    }
  }
  return map;
}

/// A row that cannot be imported: the column (from 1, 0 for the whole row) and why.
struct row_problem {
  std::size_t field = 0;
  std::string message;
};

/// Parses one data record into out, or says what is wrong with it.
std::optional<row_problem> parse_row(const csv_record& rec, const column_map& map,
                                     std::size_t header_fields, change_record& out) {
  if (!rec.error.empty()) return row_problem{rec.error_field, rec.error};
  if (rec.fields.size() != header_fields) {
    return row_problem{0, fmt::format("{} field{}, but the header has {}", rec.fields.size(),
                                      rec.fields.size() == 1 ? "" : "s", header_fields)};
  }
  const auto value = [&](column c) -> std::string_view {
    return map[c] < 0 ? std::string_view() : trimmed(rec.fields[static_cast<std::size_t>(map[c])]);
  };
  const auto problem = [&](column c, std::string message) {
    return row_problem{static_cast<std::size_t>(map[c]) + 1,
                       fmt::format("{}: {}", column_names[c], message)};
  };

  const auto source = value(source_col);
  if (!valid_source_name(source)) {
    return problem(source_col, fmt::format("{} is not a source name (1 to 32 of a-z, 0-9, '_' "
                                           "and '-')",
                                           shown(source)));
  }
  out.source.assign(source);

  const auto currency = value(currency_col);
  if (currency.size() != 3 || !std::all_of(currency.begin(), currency.end(), [](char c) {
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
      })) {
    return problem(currency_col, fmt::format("{} is not a currency code (three letters, like USD)",
                                             shown(currency)));
  }
  out.currency.assign(currency);
  for (auto& c : out.currency) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  }

  constexpr std::string_view time_forms =
      "use RFC 3339 like 2025-06-10T10:52:00Z, YYYY-MM-DD, or Unix seconds or milliseconds";
  const auto since = parse_time(value(since_col));
  if (!since) {
    return problem(since_col,
                   fmt::format("{} is not a time ({})", shown(value(since_col)), time_forms));
  }
  out.since = *since;

  auto rate = decimal::parse(value(rate_col));
  if (!rate) {
    return problem(rate_col, fmt::format("{} is not a rate (digits with an optional decimal "
                                         "point, like 87.45)",
                                         shown(value(rate_col))));
  }
  if (rate->is_zero()) return problem(rate_col, "a rate cannot be zero");
  out.rate = *std::move(rate);

  out.observed_at = out.since;
  if (const auto text = value(observed_col); !text.empty()) {
    const auto observed = parse_time(text);
    if (!observed) {
      return problem(observed_col, fmt::format("{} is not a time ({})", shown(text), time_forms));
    }
    if (*observed < out.since) {
      return problem(observed_col, fmt::format("{} is before since ({})", format_time_ms(*observed),
                                               format_time_ms(out.since)));
    }
    out.observed_at = *observed;
  }

  out.effective_date.reset();
  if (const auto text = value(date_col); !text.empty()) {
    const auto date = parse_date(text);
    if (!date) {
      return problem(date_col, fmt::format("{} is not a date (YYYY-MM-DD)", shown(text)));
    }
    out.effective_date = *date;
  }
  return std::nullopt;
}

/// Reports problems to a stream, the first max one by one and the rest as a count.
class problem_log {
 public:
  /// Writes to err, prefixing lines with name.
  problem_log(std::ostream& err, std::string_view name, std::size_t max)
      : err_(err), name_(name), max_(max) {}

  /// Reports one problem on line.
  void report(std::size_t line, std::string_view message) {
    if (count_++ < max_) err_ << fmt::format("{}:{}: {}\n", name_, line, message);
  }

  /// Says how many were not shown, if any.
  void finish() {
    if (count_ > max_) {
      err_ << fmt::format("{}: {} more problems not shown\n", name_, count_ - max_);
    }
  }

 private:
  std::ostream& err_;
  std::string_view name_;
  std::size_t max_;
  std::size_t count_ = 0;
};

/// True when path names something (a missing database is an error for most commands).
bool exists(const std::string& path) {
  std::error_code ec;
  return std::filesystem::exists(path, ec);
}

/// `backup DEST`.
int run_backup(const cli_options& opts, const config& cfg, const command_io& io) {
  const auto& dest = *opts.operand;
  if (exists(dest) && !opts.force) {
    io.err << fmt::format("somrated: backup: {} exists; add --force to replace it\n", dest);
    return 1;
  }
  backup_options o;
  o.overwrite = opts.force;
  const auto r = backup_database(cfg.storage.path, dest, o);
  io.out << fmt::format("backed up {} to {}: {} pages, {} bytes, integrity ok\n", cfg.storage.path,
                        dest, r.pages, r.bytes);
  return 0;
}

/// `export`.
int run_export(const cli_options& opts, const config& cfg, const command_io& io) {
  change_filter f;
  f.source = opts.source;
  f.currency = opts.currency;
  if (opts.from) f.from = parse_time(*opts.from);
  if (opts.to) f.to = parse_time(*opts.to);
  // Read-write although export writes nothing to a current database: when the daemon
  // is not running, SQLite then removes the -wal and -shm files it creates on close,
  // where a read-only connection would leave them behind owned by whoever ran this.
  store db(cfg.storage.path, store::mode::read_write);
  const auto n = export_csv(db, f, io.out);
  io.err << fmt::format("somrated: change points exported: {}\n", n);
  return 0;
}

/// `import FILE`.
int run_import(const cli_options& opts, const config& cfg, const command_io& io) {
  const auto& file = *opts.operand;
  std::ifstream stream;
  std::istream* in = &io.in;
  std::string name = "stdin";
  if (file != "-") {
    stream.open(file, std::ios::binary);
    if (!stream) {
      io.err << fmt::format("somrated: import: cannot open {}: {}\n", file, std::strerror(errno));
      return 1;
    }
    in = &stream;
    name = file;
  }
  store db(cfg.storage.path, store::mode::read_write);
  // An import is a write like the daemon's and keeps to the same limit.
  db.set_max_size(cfg.storage.max_size);
  const auto s = import_csv(db, *in, name, io.err);
  io.out << fmt::format(
      "change points: {} imported, {} moved earlier, {} already present, {} rejected\n", s.imported,
      s.extended, s.present, s.rejected);
  return s.rejected == 0 ? 0 : 1;
}

/// `vacuum`.
int run_vacuum(const config& cfg, const command_io& io) {
  const auto r = vacuum_database(cfg.storage.path, vacuum_lock_wait);
  io.out << fmt::format("vacuumed {}: {} bytes before, {} after; {}\n", cfg.storage.path,
                        r.bytes_before, r.bytes_after,
                        r.wal_truncated ? "write-ahead log checkpointed and truncated"
                                        : "a reader kept the write-ahead log from being truncated");
  return 0;
}

/// The command's name, for messages.
std::string_view command_name(cli_options::command c) {
  switch (c) {
    case cli_options::command::backup:
      return "backup";
    case cli_options::command::export_csv:
      return "export";
    case cli_options::command::import_csv:
      return "import";
    case cli_options::command::check_config:
      return "check-config";
    case cli_options::command::vacuum:
      return "vacuum";
    default:
      return "";
  }
}

}  // namespace

bool is_day_two_command(cli_options::command c) noexcept {
  return !command_name(c).empty();
}

std::size_t export_csv(store& db, const change_filter& f, std::ostream& out) {
  std::string chunk;
  chunk.reserve(output_chunk + 256);
  chunk += csv_header;
  chunk += '\n';
  const auto flush = [&] {
    out.write(chunk.data(), static_cast<std::streamsize>(chunk.size()));
    if (!out) throw std::runtime_error("cannot write the output");
    chunk.clear();
  };
  const auto n = db.export_changes(f, [&](const change_record& r) {
    append_csv_field(chunk, r.source);
    chunk += ',';
    append_csv_field(chunk, r.currency);
    chunk += ',';
    chunk += format_time_ms(r.since);
    chunk += ',';
    chunk += r.rate.text();
    chunk += ',';
    chunk += format_time_ms(r.observed_at);
    chunk += ',';
    if (r.effective_date) chunk += format_date(*r.effective_date);
    chunk += '\n';
    if (chunk.size() >= output_chunk) flush();
  });
  flush();
  out.flush();
  if (!out) throw std::runtime_error("cannot write the output");
  return n;
}

import_summary import_csv(store& db, std::istream& in, std::string_view name, std::ostream& err,
                          const import_options& o) {
  csv_reader reader(in);
  csv_record rec;
  import_summary summary;
  problem_log problems(err, name, o.max_reported);

  std::optional<column_map> map;
  std::size_t header_fields = 0;
  // The batch: records and the lines they came from, reused from batch to batch.
  std::vector<change_record> batch;
  std::vector<std::size_t> lines;
  std::size_t used = 0;
  const auto flush = [&] {
    const auto verdicts = db.merge_changes(std::span<const change_record>(batch.data(), used));
    for (std::size_t i = 0; i < used; ++i) {
      const auto& v = verdicts[i];
      const auto& r = batch[i];
      switch (v.outcome) {
        case import_outcome::inserted:
          ++summary.imported;
          break;
        case import_outcome::extended:
          ++summary.extended;
          break;
        case import_outcome::present:
          ++summary.present;
          break;
        case import_outcome::conflict:
          ++summary.rejected;
          problems.report(lines[i],
                          fmt::format("{} {} at {}: the database has {} at that time, the file "
                                      "{}; not imported",
                                      r.source, r.currency, format_time_ms(r.since), v.stored_rate,
                                      r.rate.text()));
          break;
      }
    }
    used = 0;
  };

  while (reader.next(rec)) {
    if (rec.blank()) continue;
    if (!map) {
      map = read_header(rec, name);
      header_fields = rec.fields.size();
      continue;
    }
    if (used == batch.size()) {
      batch.push_back({"", "", {}, *decimal::parse("1"), {}, std::nullopt});
      lines.push_back(0);
    }
    if (const auto problem = parse_row(rec, *map, header_fields, batch[used])) {
      ++summary.rejected;
      problems.report(rec.line, problem->field == 0 ? problem->message
                                                    : fmt::format("column {}: {}", problem->field,
                                                                  problem->message));
      continue;
    }
    lines[used++] = rec.line;
    if (used >= o.batch_rows) flush();
  }
  if (reader.failed()) throw import_error(fmt::format("{}: read error", name));
  if (used > 0) flush();
  problems.finish();
  if (!map)
    throw import_error(fmt::format("{}: empty input: expected the header {}", name, csv_header));
  return summary;
}

int run_command(const cli_options& opts, const config& cfg, const command_io& io) {
  const auto name = command_name(opts.cmd);
  try {
    if (opts.cmd == cli_options::command::check_config) {
      io.out << to_redacted_toml(cfg);
      io.out.flush();
      return io.out ? 0 : 1;
    }
    // Only import may create the database; the others need one to be there.
    if (opts.cmd != cli_options::command::import_csv && !exists(cfg.storage.path)) {
      io.err << fmt::format("somrated: {}: no database at {} (give --db PATH or --config FILE)\n",
                            name, cfg.storage.path);
      return 1;
    }
    switch (opts.cmd) {
      case cli_options::command::backup:
        return run_backup(opts, cfg, io);
      case cli_options::command::export_csv:
        return run_export(opts, cfg, io);
      case cli_options::command::import_csv:
        return run_import(opts, cfg, io);
      case cli_options::command::vacuum:
        return run_vacuum(cfg, io);
      default:
        io.err << "somrated: not a day-two command\n";
        return 2;
    }
  } catch (const std::exception& e) {
    io.err << fmt::format("somrated: {}: {}\n", name, e.what());
    return 1;
  }
}

}  // namespace somrated
