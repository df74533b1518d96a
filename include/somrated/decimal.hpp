#pragma once

#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace somrated {

/// An exact non-negative decimal number, kept as the digits a source published.
///
/// Rates are never floats: "87.4500" stays "87.4500" from the page to the API. The
/// canonical text always uses '.' as the separator; a ',' on input is accepted and
/// rewritten. Comparison is numeric (87.45 == 87.4500), while text() keeps the
/// published form, so callers that must detect a change in what was printed compare
/// text() instead.
class decimal {
 public:
  /// Most digits accepted after the separator; longer fractions are rejected by parse().
  static constexpr int max_scale = 12;

  /// Parses "87.45", "87,45", "1", "0.0468"; no sign, exponent, spaces or grouping.
  static std::optional<decimal> parse(std::string_view text);

  /// The published digits with '.' as separator, e.g. "1.10".
  const std::string& text() const noexcept { return text_; }

  /// The digits as an integer: 8745 for "87.45".
  std::int64_t mantissa() const noexcept { return mantissa_; }

  /// Number of digits after the separator: 2 for "87.45".
  int scale() const noexcept { return scale_; }

  /// Approximate value for ratios and ordering in SQL; never for output.
  double to_double() const noexcept;

  /// Divides by a power-of-ten nominal exactly (NBKR "Value per Nominal units").
  /// Returns nullopt when the nominal is not 1, 10, 100, ... or the scale would overflow.
  std::optional<decimal> divided_by(std::int64_t nominal) const;

  /// Numeric comparison, independent of trailing zeros.
  friend std::strong_ordering operator<=>(const decimal& a, const decimal& b) noexcept;
  friend bool operator==(const decimal& a, const decimal& b) noexcept {
    return (a <=> b) == std::strong_ordering::equal;
  }

 private:
  decimal(std::string text, std::int64_t mantissa, int scale)
      : text_(std::move(text)), mantissa_(mantissa), scale_(scale) {}

  std::string text_;
  std::int64_t mantissa_ = 0;
  int scale_ = 0;
};

}  // namespace somrated
