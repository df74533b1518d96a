#include "somrated/decimal.hpp"

#include <cmath>
#include <limits>

namespace somrated {

namespace {

constexpr std::int64_t max_mantissa = 999'999'999'999'999'999;  // 18 digits

/// 10^n for n in [0, 18].
std::int64_t pow10(int n) noexcept {
  std::int64_t p = 1;
  while (n-- > 0) p *= 10;
  return p;
}

}  // namespace

std::optional<decimal> decimal::parse(std::string_view in) {
  if (in.empty() || in.size() > 40) return std::nullopt;
  std::string text;
  text.reserve(in.size());
  std::int64_t mantissa = 0;
  int int_digits = 0;
  int scale = -1;  // -1 until a separator is seen
  int digits = 0;
  for (char c : in) {
    if (c >= '0' && c <= '9') {
      if (scale >= 0) {
        ++scale;
      } else {
        ++int_digits;
      }
      // Leading zeros do not count towards the 18-digit budget.
      if (mantissa != 0 || c != '0') ++digits;
      if (digits > 18) return std::nullopt;
      mantissa = mantissa * 10 + (c - '0');
      text.push_back(c);
    } else if ((c == '.' || c == ',') && scale < 0) {
      scale = 0;
      text.push_back('.');
    } else {
      return std::nullopt;
    }
  }
  if (int_digits == 0 || scale == 0) return std::nullopt;  // ".5" and "5." are not rates
  if (scale > max_scale) return std::nullopt;
  if (mantissa > max_mantissa) return std::nullopt;
  return decimal{std::move(text), mantissa, scale < 0 ? 0 : scale};
}

double decimal::to_double() const noexcept {
  return static_cast<double>(mantissa_) / static_cast<double>(pow10(scale_));
}

std::optional<decimal> decimal::divided_by(std::int64_t nominal) const {
  int shift = 0;
  for (std::int64_t n = nominal; n > 1; n /= 10) {
    if (n % 10 != 0) return std::nullopt;
    ++shift;
  }
  if (nominal < 1) return std::nullopt;
  if (shift == 0) return *this;
  const int scale = scale_ + shift;
  if (scale > max_scale) return std::nullopt;
  // Rebuild the text from the mantissa: all digits, zero-padded so the point fits.
  std::string digits = std::to_string(mantissa_);
  if (static_cast<int>(digits.size()) <= scale) {
    digits.insert(0, static_cast<std::size_t>(scale - static_cast<int>(digits.size()) + 1), '0');
  }
  digits.insert(digits.size() - static_cast<std::size_t>(scale), 1, '.');
  return decimal{std::move(digits), mantissa_, scale};
}

std::strong_ordering operator<=>(const decimal& a, const decimal& b) noexcept {
  // Bring both to the larger scale; 18 digits plus a 12-digit shift may overflow int64,
  // so compare integer parts first, then the scaled fractions.
  const int scale = a.scale_ > b.scale_ ? a.scale_ : b.scale_;
  const std::int64_t ai = a.mantissa_ / pow10(a.scale_);
  const std::int64_t bi = b.mantissa_ / pow10(b.scale_);
  if (ai != bi) return ai <=> bi;
  const std::int64_t af = (a.mantissa_ % pow10(a.scale_)) * pow10(scale - a.scale_);
  const std::int64_t bf = (b.mantissa_ % pow10(b.scale_)) * pow10(scale - b.scale_);
  return af <=> bf;
}

}  // namespace somrated
