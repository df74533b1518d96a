#include "somrated/json_writer.hpp"

#include <cassert>
#include <optional>

#include <boost/json/serializer.hpp>
#include <boost/json/string_view.hpp>

namespace somrated {

namespace {

/// U+FFFD REPLACEMENT CHARACTER in UTF-8.
constexpr std::string_view replacement = "\xEF\xBF\xBD";

/// Length of the well-formed UTF-8 sequence at the start of s (RFC 3629, table 3-7 of the
/// Unicode standard: no overlongs, no surrogates, nothing above U+10FFFF), or 0 when
/// the bytes there are not one.
std::size_t utf8_sequence(std::string_view s) {
  auto byte = [&](std::size_t i) { return static_cast<unsigned char>(s[i]); };
  const unsigned char b0 = byte(0);
  if (b0 < 0x80) return 1;
  std::size_t len = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    len = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    len = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (s.size() < len) return 0;
  if (byte(1) < lo || byte(1) > hi) return 0;
  for (std::size_t i = 2; i < len; ++i) {
    if (byte(i) < 0x80 || byte(i) > 0xBF) return 0;
  }
  return len;
}

/// s with every byte that does not start a well-formed UTF-8 sequence replaced by
/// U+FFFD, or nullopt when s is already well formed (the common case, which needs no copy).
std::optional<std::string> repair_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    std::size_t n = utf8_sequence(s.substr(i));
    if (n == 0) break;
    i += n;
  }
  if (i == s.size()) return std::nullopt;
  std::string out(s.substr(0, i));
  while (i < s.size()) {
    std::size_t n = utf8_sequence(s.substr(i));
    if (n == 0) {
      out += replacement;
      ++i;
    } else {
      out += s.substr(i, n);
      i += n;
    }
  }
  return out;
}

/// The published digits as a valid JSON number: JSON forbids leading zeros ("087.45"),
/// so all but the last zero before the separator are dropped; everything else is kept.
std::string_view json_number_text(const std::string& text) {
  std::string_view t = text;
  std::size_t zeros = 0;
  while (zeros + 1 < t.size() && t[zeros] == '0' && t[zeros + 1] != '.') ++zeros;
  return t.substr(zeros);
}

}  // namespace

json_writer& json_writer::begin_object() {
  return open('{', true);
}

json_writer& json_writer::end_object() {
  return close('}', true);
}

json_writer& json_writer::begin_array() {
  return open('[', false);
}

json_writer& json_writer::end_array() {
  return close(']', false);
}

json_writer& json_writer::key(std::string_view k) {
  assert(!stack_.empty() && stack_.back().object && !stack_.back().after_key);
  before_item();
  append_string(k);
  out_ += pretty_ ? ": " : ":";
  stack_.back().after_key = true;
  return *this;
}

json_writer& json_writer::value(std::string_view s) {
  assert(value_allowed());
  before_item();
  append_string(s);
  return *this;
}

json_writer& json_writer::value(const decimal& d) {
  return raw(json_number_text(d.text()));
}

json_writer& json_writer::value(bool b) {
  return raw(b ? "true" : "false");
}

json_writer& json_writer::null() {
  return raw("null");
}

json_writer& json_writer::raw(std::string_view text) {
  assert(value_allowed());
  before_item();
  out_ += text;
  return *this;
}

void json_writer::before_item() {
  if (stack_.empty()) return;
  frame& f = stack_.back();
  if (f.after_key) {
    // The value of a member: its separator and indentation went before the key.
    f.after_key = false;
    return;
  }
  if (f.count++ > 0) out_ += ',';
  newline();
}

json_writer& json_writer::open(char bracket, bool object) {
  assert(value_allowed());
  before_item();
  out_ += bracket;
  stack_.push_back(frame{object});
  return *this;
}

json_writer& json_writer::close(char bracket, [[maybe_unused]] bool object) {
  assert(!stack_.empty() && stack_.back().object == object && !stack_.back().after_key);
  const bool had_items = stack_.back().count > 0;
  stack_.pop_back();
  if (had_items) newline();
  out_ += bracket;
  return *this;
}

bool json_writer::value_allowed() const noexcept {
  if (stack_.empty()) return out_.empty();
  return !stack_.back().object || stack_.back().after_key;
}

void json_writer::newline() {
  if (!pretty_) return;
  out_ += '\n';
  out_.append(2 * stack_.size(), ' ');
}

void json_writer::append_string(std::string_view s) {
  std::optional<std::string> repaired = repair_utf8(s);
  boost::json::serializer sr;
  sr.reset(boost::json::string_view(repaired ? std::string_view(*repaired) : s));
  char buf[512];
  while (!sr.done()) {
    boost::json::string_view part = sr.read(buf, sizeof buf);
    out_.append(part.data(), part.size());
  }
}

}  // namespace somrated
