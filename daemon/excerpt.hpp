#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace somrated::detail {

/// Copies text that came from a peer or a document into an error message: at most
/// `limit` bytes (cut on a UTF-8 boundary and marked with "..."), control characters
/// replaced by '?', so a hostile page or server cannot forge log lines.
std::string excerpt(std::string_view text, std::size_t limit = 40);

}  // namespace somrated::detail
