// libFuzzer target: the TOML configuration loader. A configuration that loads must print
// back (to_toml) to text that loads to the same configuration.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "somrated/config.hpp"

/// One input: arbitrary bytes as a configuration file.
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    const auto cfg = somrated::parse_config(text, "fuzz.toml");
    if (!(somrated::parse_config(somrated::to_toml(cfg), "again.toml") == cfg)) std::abort();
  } catch (const somrated::config_error&) {
  }
  return 0;
}
