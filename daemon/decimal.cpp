#include "somrated/decimal.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

namespace somrated {

namespace {

constexpr std::int64_t max_mantissa = 999'999'999'999'999'999;  // 18 digits

/// Unsigned 128-bit integers: the product of two 18-digit mantissas (< 10^36) fits.
__extension__ typedef unsigned __int128 u128;

/// 10^n for n in [0, 18].
std::int64_t pow10(int n) noexcept {
  std::int64_t p = 1;
  while (n-- > 0) p *= 10;
  return p;
}

/// Fraction digits written out beyond the whole part of a quotient. Results have at most
/// max_scale places and a quotient's point moves at most max_scale places right (see
/// expand), so 48 leave ample room for the rounding digit.
constexpr int fraction_digits = 48;

/// An exact non-negative value written out in decimal: digits with the separator after
/// the first `point` of them (point >= 1), and whether anything non-zero follows the last
/// digit written (the value is then strictly greater than the digits say).
struct expansion {
  std::string digits;   ///< Whole part, then the fraction digits written so far.
  int point = 1;        ///< How many of digits form the whole part.
  bool sticky = false;  ///< A non-zero remainder follows digits.
};

/// v in decimal, "0" for zero.
std::string to_digits(u128 v) {
  std::string out;
  do {
    out.insert(out.begin(), static_cast<char>('0' + static_cast<int>(v % 10)));
    v /= 10;
  } while (v != 0);
  return out;
}

/// num / den × 10^exp written out by long division; den must not be zero, exp must be at
/// most max_scale. Every digit is exact: only the remainder after fraction_digits is
/// summarised, in sticky.
expansion expand(u128 num, u128 den, int exp) {
  expansion x;
  x.digits = to_digits(num / den);
  x.point = static_cast<int>(x.digits.size()) + exp;
  u128 rem = num % den;
  for (int i = 0; i < fraction_digits; ++i) {
    rem *= 10;
    x.digits.push_back(static_cast<char>('0' + static_cast<int>(rem / den)));
    rem %= den;
  }
  x.sticky = rem != 0;
  if (x.point < 1) {
    // 0.000ddd: the zeros between the separator and the first digit are exact.
    x.digits.insert(0, static_cast<std::size_t>(1 - x.point), '0');
    x.point = 1;
  }
  return x;
}

/// True when x is strictly greater than whole.frac (digits, no leading zeros in whole).
bool exceeds(const expansion& x, std::string_view whole, std::string_view frac) {
  std::string_view xw = std::string_view(x.digits).substr(0, static_cast<std::size_t>(x.point));
  while (!xw.empty() && xw.front() == '0') xw.remove_prefix(1);
  while (!whole.empty() && whole.front() == '0') whole.remove_prefix(1);
  if (xw.size() != whole.size()) return xw.size() > whole.size();
  if (xw != whole) return xw > whole;
  const std::string_view xf = std::string_view(x.digits).substr(static_cast<std::size_t>(x.point));
  std::string tf(frac);
  tf.resize(std::max(tf.size(), xf.size()), '0');
  const int c = xf.compare(std::string_view(tf).substr(0, xf.size()));
  if (c != 0) return c > 0;
  // Equal so far: a threshold with non-zero digits beyond x's written ones is greater.
  if (tf.find_first_not_of('0', xf.size()) != std::string::npos) return false;
  return x.sticky;
}

/// The places p asks for on x's value; negative when significant digits end left of the
/// separator (rounding to tens, hundreds ...).
int target_scale(const expansion& x, decimal::precision p) {
  using kind = decimal::precision::kind;
  switch (p.what) {
    case kind::places:
      return std::clamp(p.digits, 0, decimal::max_scale);
    case kind::significant: {
      const auto first = x.digits.find_first_not_of('0');
      if (first == std::string::npos) return x.sticky ? decimal::max_scale : 0;
      const int n = std::clamp(p.digits, 1, 18);
      return std::min(n - x.point + static_cast<int>(first), decimal::max_scale);
    }
    case kind::quote:
      break;
  }
  if (exceeds(x, "5000", "")) return 0;
  if (exceeds(x, "80", "")) return 2;
  if (exceeds(x, "20", "")) return 3;
  if (exceeds(x, "1", "")) return 4;
  if (exceeds(x, "0", "0001")) return 5;
  return 6;
}

/// x rounded half to even at scale places; the digits, with the separator scale from the
/// right (scale >= 0), or nullopt beyond 18 significant digits.
std::optional<std::pair<std::string, int>> round_digits(const expansion& x, int scale) {
  const int keep = x.point + scale;  // digits of x that stay
  std::string kept;
  bool up = false;
  if (keep >= 0) {
    const auto k = static_cast<std::size_t>(keep);
    kept = x.digits.substr(0, k);
    kept.resize(k, '0');  // cannot pad a sticky value: fraction_digits covers every scale
    const char next = k < x.digits.size() ? x.digits[k] : '0';
    const bool rest = x.sticky || (k + 1 < x.digits.size() &&
                                   x.digits.find_first_not_of('0', k + 1) != std::string::npos);
    const bool odd = !kept.empty() && (kept.back() - '0') % 2 == 1;
    up = next > '5' || (next == '5' && (rest || odd));
  }
  // keep < 0: the value is below a tenth of the unit kept, so it rounds to zero.
  if (up) {
    auto i = kept.size();
    while (i > 0 && kept[i - 1] == '9') kept[--i] = '0';
    if (i == 0) {
      kept.insert(kept.begin(), '1');
    } else {
      ++kept[i - 1];
    }
  }
  if (scale < 0) {
    kept.append(static_cast<std::size_t>(-scale), '0');
    scale = 0;
  }
  const auto s = static_cast<std::size_t>(scale);
  if (kept.size() <= s) kept.insert(0, s + 1 - kept.size(), '0');
  const auto first = kept.find_first_not_of('0');
  if (first != std::string::npos && kept.size() - first > 18) return std::nullopt;
  return std::pair{std::move(kept), scale};
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
  return from_parts(mantissa_, scale);
}

decimal decimal::from_parts(std::int64_t mantissa, int scale) {
  // All digits, zero-padded so the separator fits after at least one whole digit.
  std::string digits = std::to_string(mantissa);
  if (scale > 0) {
    if (static_cast<int>(digits.size()) <= scale) {
      digits.insert(0, static_cast<std::size_t>(scale - static_cast<int>(digits.size()) + 1), '0');
    }
    digits.insert(digits.size() - static_cast<std::size_t>(scale), 1, '.');
  }
  return decimal{std::move(digits), mantissa, scale};
}

namespace {

/// num / den × 10^exp rounded as p says, as a decimal's mantissa and scale.
std::optional<std::pair<std::int64_t, int>> rounded_quotient(u128 num, u128 den, int exp,
                                                             decimal::precision p) {
  if (den == 0) return std::nullopt;
  const expansion x = expand(num, den, exp);
  auto r = round_digits(x, target_scale(x, p));
  if (!r) return std::nullopt;
  std::int64_t m = 0;
  for (const char c : r->first) m = m * 10 + (c - '0');
  return std::pair{m, r->second};
}

}  // namespace

std::optional<decimal> decimal::multiply(const decimal& a, const decimal& b) {
  u128 m = static_cast<u128>(a.mantissa_) * static_cast<u128>(b.mantissa_);
  int scale = a.scale_ + b.scale_;
  // Only zeros that carry no value are dropped to make the product fit.
  while (scale > 0 && (scale > max_scale || m > static_cast<u128>(max_mantissa)) && m % 10 == 0) {
    m /= 10;
    --scale;
  }
  if (scale > max_scale || m > static_cast<u128>(max_mantissa)) return std::nullopt;
  return from_parts(static_cast<std::int64_t>(m), scale);
}

std::optional<decimal> decimal::divide(const decimal& a, const decimal& b, precision p) {
  // (ma / 10^sa) / (mb / 10^sb) = ma / mb × 10^(sb - sa)
  auto r = rounded_quotient(static_cast<u128>(a.mantissa_), static_cast<u128>(b.mantissa_),
                            b.scale_ - a.scale_, p);
  if (!r) return std::nullopt;
  return from_parts(r->first, r->second);
}

std::optional<decimal> decimal::multiply_divide(const decimal& a, const decimal& b,
                                                const decimal& c, precision p) {
  const u128 num = static_cast<u128>(a.mantissa_) * static_cast<u128>(b.mantissa_);
  auto r = rounded_quotient(num, static_cast<u128>(c.mantissa_), c.scale_ - a.scale_ - b.scale_, p);
  if (!r) return std::nullopt;
  return from_parts(r->first, r->second);
}

std::optional<decimal> decimal::rounded(precision p) const {
  auto r = rounded_quotient(static_cast<u128>(mantissa_), 1, -scale_, p);
  if (!r) return std::nullopt;
  return from_parts(r->first, r->second);
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
