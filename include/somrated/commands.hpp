#pragma once

#include <cstddef>
#include <iosfwd>
#include <stdexcept>
#include <string_view>

#include "somrated/cli.hpp"
#include "somrated/config.hpp"
#include "somrated/store.hpp"

namespace somrated {

/// The streams a command reads and writes; main passes std::cin, std::cout and std::cerr.
struct command_io {
  std::istream& in;
  std::ostream& out;
  std::ostream& err;
};

/// True for the day-two commands that run_command runs (backup, export, import,
/// check-config, vacuum).
bool is_day_two_command(cli_options::command c) noexcept;

/// Runs a day-two command on the database of cfg (whose --db and --config overrides main
/// has applied) and returns the exit status: 0 done, 1 failed or (import) some rows were
/// rejected. Messages go to io.err; the product (CSV, the config, a summary) to io.out.
int run_command(const cli_options& opts, const config& cfg, const command_io& io);

/// The header line export writes and import reads, without the line break.
inline constexpr std::string_view csv_header =
    "source,currency,since,rate,observed_at,effective_date";

/// Writes csv_header and every change point f selects to out, one line each, in the
/// store's order (source, currency, since); times are RFC 3339 UTC with milliseconds,
/// rates exactly as published. Returns the rows written. Throws store_error, or
/// std::runtime_error when out fails.
std::size_t export_csv(store& db, const change_filter& f, std::ostream& out);

/// A CSV header import cannot use; the message names the column.
class import_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// How import_csv reads.
struct import_options {
  std::size_t batch_rows = 10000;  ///< Records per transaction.
  std::size_t max_reported = 100;  ///< Problems reported one by one; the rest are counted.
};

/// What import_csv did.
struct import_summary {
  std::size_t imported = 0;  ///< New change points.
  std::size_t extended = 0;  ///< Stored change points moved earlier (same value, known earlier).
  std::size_t present = 0;   ///< Already known; skipped.
  std::size_t rejected = 0;  ///< Malformed or conflicting rows; none was applied.
};

/// Reads change points as CSV from in and merges them with store::merge_changes, a
/// batch per transaction, in constant memory. The header names the columns, in any
/// order: source, currency, since and rate are required; observed_at (default: since)
/// and effective_date (default: none) are optional. Times are RFC 3339, YYYY-MM-DD or
/// Unix seconds or milliseconds. Every bad or conflicting row is reported to err as
/// "name:line: ..." naming its column, and skipped. Throws import_error for an unusable
/// header or a read error, store_error when the database fails (earlier batches stay).
import_summary import_csv(store& db, std::istream& in, std::string_view name, std::ostream& err,
                          const import_options& o = {});

}  // namespace somrated
