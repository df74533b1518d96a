// libFuzzer target: the text parsers behind query parameters: times, durations, decimals.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "somrated/decimal.hpp"
#include "somrated/time.hpp"

/// One input: the same text given to each parser. A decimal that parses must print back
/// to text that parses to the same value.
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  (void)somrated::parse_time(text);
  (void)somrated::parse_duration(text);
  if (auto d = somrated::decimal::parse(text)) {
    const auto again = somrated::decimal::parse(d->text());
    if (!again || *again != *d) std::abort();
  }
  return 0;
}
