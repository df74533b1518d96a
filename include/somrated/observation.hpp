#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "somrated/decimal.hpp"

namespace somrated {

/// One currency's rate in som per one unit, as a source published it.
struct rate_quote {
  std::string currency;  ///< ISO 4217 code, upper case ("USD").
  decimal rate;          ///< KGS per one unit of currency.
};

/// What an extractor read out of one fetched document.
struct extraction {
  std::vector<rate_quote> rates;                        ///< Empty on failure.
  std::optional<std::chrono::sys_days> effective_date;  ///< NBKR's Date attribute, if any.
  std::string error;  ///< Empty on success; otherwise what was wrong, for logs and the API.

  /// True when rates were read and nothing was wrong.
  bool ok() const noexcept { return error.empty() && !rates.empty(); }
};

}  // namespace somrated
