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
/// text() instead. Arithmetic (cross rates, conversions) is exact up to one rounding that
/// the caller states (see precision), never through binary floating point.
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

  /// How a computed value that does not fit is cut to size: always rounded half to even
  /// (the tie goes to the even digit, so rounding errors do not drift one way).
  ///
  /// places(n) keeps n digits after the separator; significant(n) keeps n digits from the
  /// first non-zero one (at most max_scale after the separator); quote() chooses the
  /// places from the magnitude, as exchange rates are conventionally quoted and as
  /// Frankfurter rounds: above 5000 none, above 80 two, above 20 three, above 1 four,
  /// above 0.0001 five, else six. The magnitude is judged on the exact value.
  struct precision {
    /// What digits counts.
    enum class kind { places, significant, quote };
    kind what = kind::places;  ///< See kind.
    int digits = 0;            ///< Places or significant digits; unused by quote.

    /// n digits after the separator, n in [0, max_scale].
    static constexpr precision places(int n) { return {kind::places, n}; }
    /// n significant digits, n in [1, 18].
    static constexpr precision significant(int n) { return {kind::significant, n}; }
    /// Places by magnitude, as exchange rates are quoted.
    static constexpr precision quote() { return {kind::quote, 0}; }
  };

  /// a × b exactly, with a.scale() + b.scale() places ("100" × "87.45" = "8745.00").
  /// Trailing zeros beyond what fits are dropped; nullopt when the exact product needs
  /// more than 18 digits or max_scale places.
  static std::optional<decimal> multiply(const decimal& a, const decimal& b);

  /// a ÷ b rounded as p says; nullopt when b is zero or the result needs more than 18
  /// digits. The quotient is exact up to the one rounding.
  static std::optional<decimal> divide(const decimal& a, const decimal& b, precision p);

  /// a × b ÷ c with a single rounding as p says (the product is never rounded on its
  /// own); nullopt when c is zero or the result needs more than 18 digits.
  static std::optional<decimal> multiply_divide(const decimal& a, const decimal& b,
                                                const decimal& c, precision p);

  /// This value rounded as p says (fewer places are padded with zeros: "1.5" to
  /// places(3) is "1.500"); nullopt when a carry makes it longer than 18 digits.
  std::optional<decimal> rounded(precision p) const;

  /// True when the value is zero ("0", "0.00").
  bool is_zero() const noexcept { return mantissa_ == 0; }

  /// Numeric comparison, independent of trailing zeros.
  friend std::strong_ordering operator<=>(const decimal& a, const decimal& b) noexcept;
  friend bool operator==(const decimal& a, const decimal& b) noexcept {
    return (a <=> b) == std::strong_ordering::equal;
  }

 private:
  decimal(std::string text, std::int64_t mantissa, int scale)
      : text_(std::move(text)), mantissa_(mantissa), scale_(scale) {}

  /// The decimal mantissa × 10^-scale, its text written with exactly scale places.
  static decimal from_parts(std::int64_t mantissa, int scale);

  std::string text_;
  std::int64_t mantissa_ = 0;
  int scale_ = 0;
};

}  // namespace somrated
