#include "somrated/csv.hpp"

#include <fmt/core.h>

namespace somrated {

namespace {

/// Bytes read from the stream at a time.
constexpr std::size_t buffer_size = 64 * 1024;

}  // namespace

void append_csv_field(std::string& out, std::string_view s) {
  if (s.find_first_of(",\"\r\n") == std::string_view::npos) {
    out += s;
    return;
  }
  out += '"';
  for (const char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  out += '"';
}

csv_reader::csv_reader(std::istream& in, std::size_t max_record)
    : in_(in), max_record_(max_record), buffer_(buffer_size) {}

int csv_reader::peek() {
  if (pos_ == end_) {
    if (!in_) return -1;
    in_.read(buffer_.data(), static_cast<std::streamsize>(buffer_.size()));
    pos_ = 0;
    end_ = static_cast<std::size_t>(in_.gcount());
    if (end_ == 0) return -1;
  }
  return static_cast<unsigned char>(buffer_[pos_]);
}

int csv_reader::get() {
  const int c = peek();
  if (c >= 0) ++pos_;
  if (c == '\n') ++line_;
  return c;
}

void csv_reader::skip_line() {
  for (int c = get(); c >= 0 && c != '\n'; c = get()) {
  }
}

void csv_reader::fail(csv_record& r, std::size_t field, std::string message) {
  r.error = std::move(message);
  r.error_field = field;
  skip_line();
}

bool csv_reader::next(csv_record& r) {
  if (!bom_checked_) {
    bom_checked_ = true;
    // peek() fills the buffer; a stream shorter than three bytes cannot hold a BOM.
    if (peek() == 0xEF && end_ - pos_ >= 3 &&
        static_cast<unsigned char>(buffer_[pos_ + 1]) == 0xBB &&
        static_cast<unsigned char>(buffer_[pos_ + 2]) == 0xBF) {
      pos_ += 3;
    }
  }
  r.error.clear();
  r.error_field = 0;
  r.line = line_;
  if (peek() < 0) return false;

  // Field storage is reused from record to record; count is how many are in use.
  std::size_t count = 0;
  std::size_t bytes = 0;
  const auto new_field = [&]() -> std::string& {
    if (count == r.fields.size()) r.fields.emplace_back();
    auto& f = r.fields[count++];
    f.clear();
    return f;
  };
  const auto too_long = [&] { return ++bytes > max_record_; };
  const auto finish = [&] {
    r.fields.resize(count);
    return true;
  };

  for (;;) {
    std::string& field = new_field();
    if (peek() == '"') {
      get();
      const std::size_t opened = line_;
      for (;;) {
        const int c = get();
        if (c < 0) {
          r.error = fmt::format("the quote opened on line {} is never closed", opened);
          r.error_field = count;
          return finish();
        }
        if (too_long()) {
          fail(r, count, fmt::format("record longer than {} bytes", max_record_));
          return finish();
        }
        if (c != '"') {
          field += static_cast<char>(c);
          continue;
        }
        if (peek() == '"') {
          get();
          field += '"';
          continue;
        }
        break;  // the closing quote
      }
      const int c = get();
      if (c == ',') continue;
      if (c < 0 || c == '\n') return finish();
      if (c == '\r' && peek() == '\n') {
        get();
        return finish();
      }
      fail(r, count, "text after the closing quote of a quoted field");
      return finish();
    }
    for (;;) {
      const int c = get();
      if (c < 0 || c == '\n') return finish();
      if (c == ',') break;
      if (c == '\r' && peek() == '\n') {
        get();
        return finish();
      }
      if (c == '"') {
        fail(r, count, "a quote inside an unquoted field (quote the whole field and double it)");
        return finish();
      }
      if (too_long()) {
        fail(r, count, fmt::format("record longer than {} bytes", max_record_));
        return finish();
      }
      field += static_cast<char>(c);
    }
  }
}

}  // namespace somrated
