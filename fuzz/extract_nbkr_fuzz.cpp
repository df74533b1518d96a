// libFuzzer target: the NBKR XML parser, through the same entry the scheduler uses.

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "somrated/extract.hpp"

/// One input: arbitrary bytes as a fetched NBKR XML document.
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  (void)somrated::extract_for_kind("nbkr", body);
  return 0;
}
