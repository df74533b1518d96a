#pragma once

#include <cstddef>
#include <istream>
#include <string>
#include <string_view>
#include <vector>

namespace somrated {

/// Appends s to out as one CSV field: as it is, or in double quotes (a quote doubled)
/// when it holds a comma, a quote, CR or LF.
void append_csv_field(std::string& out, std::string_view s);

/// One record read by csv_reader.
struct csv_record {
  std::vector<std::string> fields;
  std::size_t line = 0;         ///< Line on which the record starts, from 1.
  std::string error;            ///< Why the record is malformed; empty when it is not.
  std::size_t error_field = 0;  ///< With error: the field (from 1) where it was found.

  /// True for an empty line (one empty field), which readers usually skip.
  bool blank() const noexcept { return fields.size() == 1 && fields[0].empty() && error.empty(); }
};

/// Reads RFC 4180 CSV from a stream one record at a time.
///
/// Fields are separated by commas and records by LF or CRLF; a field in double quotes
/// may hold commas, line breaks and "" for a quote. A UTF-8 byte-order mark at the start
/// is skipped. Memory stays bounded however long the input is: a 64 KiB buffer plus the
/// current record, which may be at most max_record bytes. A malformed record (a stray
/// quote, text after a closing quote, an unterminated quote, a record too long) comes
/// back with error set, and reading resumes at the next line.
class csv_reader {
 public:
  /// Reads from in, which must outlive the reader.
  explicit csv_reader(std::istream& in, std::size_t max_record = 64 * 1024);

  /// Reads the next record into r, reusing its storage; false at the end of the input.
  bool next(csv_record& r);

  /// True when the stream failed for another reason than reaching its end.
  bool failed() const { return in_.bad(); }

 private:
  /// The next byte, or -1 at the end.
  int get();
  /// The next byte without consuming it, or -1 at the end.
  int peek();
  /// Consumes the rest of the current line, line break included.
  void skip_line();
  /// Marks r malformed in field (from 1) and skips the rest of the line.
  void fail(csv_record& r, std::size_t field, std::string message);

  std::istream& in_;          ///< The input.
  std::size_t max_record_;    ///< Longest record accepted, in bytes.
  std::vector<char> buffer_;  ///< Bytes read but not consumed are [pos_, end_).
  std::size_t pos_ = 0;       ///< Next byte in buffer_.
  std::size_t end_ = 0;       ///< End of the valid bytes in buffer_.
  std::size_t line_ = 1;      ///< Line of the next byte.
  bool bom_checked_ = false;  ///< The byte-order mark has been looked for.
};

}  // namespace somrated
