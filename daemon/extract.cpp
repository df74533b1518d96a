#include "somrated/extract.hpp"

#include <fmt/format.h>

namespace somrated {

extraction extract_for_kind(std::string_view kind, std::string_view body,
                            std::string_view content_type) {
  if (kind == "24kg") return extract_24kg(body, content_type);
  if (kind == "nbkr") return extract_nbkr(body);
  extraction e;
  e.error = fmt::format("unknown source kind '{}'", kind);
  return e;
}

std::size_t max_document_bytes(std::string_view kind) noexcept {
  return kind == "nbkr" ? max_nbkr_bytes : max_24kg_bytes;
}

}  // namespace somrated
