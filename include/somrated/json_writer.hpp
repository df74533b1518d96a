#pragma once

#include <charconv>
#include <concepts>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "somrated/decimal.hpp"

namespace somrated {

/// A streaming JSON text builder that prints decimals exactly as they were published.
///
/// Boost.JSON stores numbers as binary doubles and prints 87.45 as 8.745E1, and it cannot
/// keep the trailing zeros of "1.10", so rates cannot go through boost::json::value.
/// This writer appends tokens to a string instead: it inserts the commas and colons,
/// optionally indents, and hands every string to Boost.JSON's serializer for escaping.
/// Strings that are not valid UTF-8 (a percent-decoded %FF echoed in an error message)
/// have each bad sequence replaced by U+FFFD, so the output always parses.
///
/// Misuse (a value where a key is expected, unbalanced ends) is a programming error and
/// is caught by assertions in debug builds.
class json_writer {
 public:
  /// Compact output by default; pretty indents with two spaces and puts one member or
  /// element per line.
  explicit json_writer(bool pretty = false) : pretty_(pretty) {}

  /// Opens an object: `{`.
  json_writer& begin_object();
  /// Closes the innermost object: `}`.
  json_writer& end_object();
  /// Opens an array: `[`.
  json_writer& begin_array();
  /// Closes the innermost array: `]`.
  json_writer& end_array();

  /// Writes an object member's name; the next call writes its value.
  json_writer& key(std::string_view k);

  /// Writes a JSON string.
  json_writer& value(std::string_view s);
  /// Writes a JSON string (a literal would otherwise pick the bool overload).
  json_writer& value(const char* s) { return value(std::string_view(s)); }
  /// Writes a JSON number with the decimal's published digits ("1.10" stays 1.10).
  json_writer& value(const decimal& d);
  /// Writes a JSON integer.
  json_writer& value(std::int64_t n) { return integer(n); }
  /// Writes a JSON integer of any other integral type.
  template <std::integral T>
  requires(!std::same_as<T, bool> && !std::same_as<T, std::int64_t>) json_writer& value(T n) {
    return integer(n);
  }
  /// Writes true or false.
  json_writer& value(bool b);
  /// Writes null.
  json_writer& null();

  /// The text written so far (a complete document once every container is closed).
  const std::string& str() const noexcept { return out_; }
  /// Moves the text out.
  std::string release() && { return std::move(out_); }

 private:
  /// One open container.
  struct frame {
    bool object;             ///< `{` rather than `[`.
    std::size_t count = 0;   ///< Members or elements written so far.
    bool after_key = false;  ///< A key was written and awaits its value.
  };

  /// Writes any integer through to_chars.
  template <std::integral T>
  json_writer& integer(T n) {
    char buf[24];
    auto res = std::to_chars(buf, buf + sizeof buf, n);
    return raw(std::string_view(buf, static_cast<std::size_t>(res.ptr - buf)));
  }

  /// Emits the separator and indentation due before a value, then text.
  json_writer& raw(std::string_view text);
  /// Emits what is due before a value or key in the current container.
  void before_item();
  /// Opens a container with bracket.
  json_writer& open(char bracket, bool object);
  /// Closes the innermost container with bracket.
  json_writer& close(char bracket, bool object);
  /// True where a value may go: at the top of an empty document, in an array, or after a key.
  bool value_allowed() const noexcept;
  /// Appends a newline and the indentation of the current depth.
  void newline();
  /// Appends s as an escaped JSON string.
  void append_string(std::string_view s);

  std::string out_;           ///< The document so far.
  std::vector<frame> stack_;  ///< Open containers, innermost last.
  bool pretty_;               ///< Indent and break lines.
};

}  // namespace somrated
