#include <libxml/HTMLparser.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "excerpt.hpp"
#include "libxml.hpp"
#include "somrated/extract.hpp"

namespace somrated {

namespace {

/// Largest page accepted (see extract.hpp).
constexpr std::size_t max_page_bytes = max_24kg_bytes;

/// How far into the page the encoding prescan looks for a declaration.
constexpr std::size_t prescan_bytes = 64 * 1024;

/// Most tokens read between a code and the next code before the next code counts as
/// missing. A garbled value such as "8 7.45" is two tokens; article text rarely puts the
/// next code this close.
constexpr std::size_t max_value_tokens = 4;

/// The strip's codes, in the order every edition prints them.
constexpr std::array<std::string_view, 3> strip_codes{"USD", "EUR", "RUB"};

/// ASCII lower case; other bytes unchanged.
char ascii_lower(char c) noexcept {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

/// ASCII case-insensitive equality.
bool iequals(std::string_view a, std::string_view b) noexcept {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return ascii_lower(x) == ascii_lower(y);
         });
}

/// Position of `needle` in `haystack` at or after `from`, ASCII case-insensitively.
std::size_t ifind(std::string_view haystack, std::string_view needle,
                  std::size_t from = 0) noexcept {
  if (needle.size() > haystack.size()) return std::string_view::npos;
  for (std::size_t i = from; i + needle.size() <= haystack.size(); ++i) {
    if (iequals(haystack.substr(i, needle.size()), needle)) return i;
  }
  return std::string_view::npos;
}

/// Reads the label after "charset" in `decl` ("charset=windows-1251", "charset = 'utf-8'").
std::optional<std::string> charset_label(std::string_view decl, std::string_view key) {
  for (std::size_t at = ifind(decl, key); at != std::string_view::npos;
       at = ifind(decl, key, at + 1)) {
    std::size_t i = at + key.size();
    auto skip_spaces = [&] {
      while (i < decl.size() &&
             (decl[i] == ' ' || decl[i] == '\t' || decl[i] == '\n' || decl[i] == '\r')) {
        ++i;
      }
    };
    skip_spaces();
    if (i >= decl.size() || decl[i] != '=') continue;
    ++i;
    skip_spaces();
    if (i < decl.size() && (decl[i] == '"' || decl[i] == '\'')) ++i;
    const std::size_t begin = i;
    while (i < decl.size()) {
      const char c = decl[i];
      const bool label_char = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                              (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' ||
                              c == ':';
      if (!label_char) break;
      ++i;
    }
    if (i > begin) return std::string{decl.substr(begin, i - begin)};
  }
  return std::nullopt;
}

/// The encoding to hand libxml2, and whether anything declared it.
struct page_charset {
  std::string name;       ///< "UTF-8", a declared label, or "" to let libxml2 read a UTF-16 BOM.
  bool declared = false;  ///< False when UTF-8 is only the default.
};

/// The encoding of html, as the HTML standard orders the evidence: a byte-order mark,
/// then the charset of the HTTP Content-Type, then an XML declaration or a <meta>
/// charset in the first 64 KiB, then UTF-8.
///
/// Left to itself, libxml2's HTML parser treats undeclared input as UTF-8 only until the
/// first invalid byte and then re-reads everything after it as ISO-8859-1, which turns a
/// UTF-8 no-break space inside the strip into "Â ". Naming UTF-8 explicitly keeps the
/// rest of the page intact (invalid bytes become U+FFFD).
page_charset page_encoding(std::string_view html, std::string_view content_type) {
  if (html.starts_with("\xEF\xBB\xBF")) return {"UTF-8", true};
  if (html.starts_with("\xFE\xFF") || html.starts_with("\xFF\xFE")) return {{}, true};
  std::optional<std::string> label = charset_label(content_type, "charset");
  const std::string_view head = html.substr(0, prescan_bytes);
  if (!label && head.starts_with("<?xml")) {
    const std::size_t end = head.find("?>");
    label = charset_label(head.substr(0, end), "encoding");
  }
  for (std::size_t at = ifind(head, "<meta"); !label && at != std::string_view::npos;
       at = ifind(head, "<meta", at + 1)) {
    const std::size_t end = head.find('>', at);
    label =
        charset_label(head.substr(at, end == std::string_view::npos ? end : end - at), "charset");
  }
  if (!label) return {"UTF-8", false};
  if (iequals(*label, "utf-8") || iequals(*label, "utf8")) return {"UTF-8", true};
  return {*label, true};
}

/// True for elements whose content is not visible page text.
bool is_hidden_element(std::string_view name) noexcept {
  for (std::string_view hidden : {"script", "style", "noscript", "template", "title"}) {
    if (iequals(name, hidden)) return true;
  }
  return false;
}

/// The text of every visible text node in document order, each followed by a newline so
/// that adjacent elements never glue their words together.
///
/// The walk follows parent/next pointers instead of recursing, so nesting depth costs no
/// stack.
std::string visible_text(const xmlDoc& doc) {
  std::string out;
  const xmlNode* node = doc.children;
  while (node != nullptr) {
    const bool enter = node->type == XML_ELEMENT_NODE && node->children != nullptr &&
                       !is_hidden_element(libxml::view(node->name));
    if (node->type == XML_TEXT_NODE || node->type == XML_CDATA_SECTION_NODE) {
      out += libxml::view(node->content);
      out.push_back('\n');
    }
    if (enter) {
      node = node->children;
      continue;
    }
    while (node != nullptr && node->next == nullptr) {
      node = node->parent;
      if (node != nullptr &&
          (node->type == XML_HTML_DOCUMENT_NODE || node->type == XML_DOCUMENT_NODE)) {
        node = nullptr;
      }
    }
    if (node != nullptr) node = node->next;
  }
  return out;
}

/// One decoded UTF-8 code point and its length in bytes.
struct code_point {
  char32_t value;    ///< U+FFFD for an invalid sequence.
  std::size_t size;  ///< Bytes consumed; at least one.
};

/// Decodes the UTF-8 sequence starting at text[i].
code_point decode(std::string_view text, std::size_t i) noexcept {
  const auto lead = static_cast<unsigned char>(text[i]);
  if (lead < 0x80) return {lead, 1};
  std::size_t size = 0;
  char32_t value = 0;
  if ((lead & 0xE0) == 0xC0) {
    size = 2;
    value = lead & 0x1F;
  } else if ((lead & 0xF0) == 0xE0) {
    size = 3;
    value = lead & 0x0F;
  } else if ((lead & 0xF8) == 0xF0) {
    size = 4;
    value = lead & 0x07;
  } else {
    return {0xFFFD, 1};
  }
  if (i + size > text.size()) return {0xFFFD, 1};
  for (std::size_t k = 1; k < size; ++k) {
    const auto byte = static_cast<unsigned char>(text[i + k]);
    if ((byte & 0xC0) != 0x80) return {0xFFFD, 1};
    value = (value << 6) | (byte & 0x3F);
  }
  return {value, size};
}

/// True for white space (Unicode White_Space, including U+00A0 and U+202F) and for
/// invisible format characters that can sit between a code and its value.
bool is_space(char32_t c) noexcept {
  switch (c) {
    case U'\t':
    case U'\n':
    case U'\v':
    case U'\f':
    case U'\r':
    case U' ':
    case 0x0085:
    case 0x00A0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202F:
    case 0x205F:
    case 0x3000:
    case 0x2060:  // word joiner
    case 0xFEFF:  // zero-width no-break space
    case 0xFE0E:  // text presentation selector
    case 0xFE0F:  // emoji presentation selector ("⬆️")
      return true;
    default:
      return (c >= 0x2000 && c <= 0x200D);  // en quad .. zero-width joiner
  }
}

/// True for arrow glyphs a rate-change indicator may use: the Unicode arrow blocks, the
/// arrows among the dingbats and miscellaneous symbols, and the up/down/left/right
/// triangles (▲ ▼ ▶ ◀ and their small and white forms, 🔺 🔻 🔼 🔽).
bool is_arrow(char32_t c) noexcept {
  return (c >= 0x2190 && c <= 0x21FF) ||    // Arrows
         (c >= 0x25B2 && c <= 0x25C5) ||    // triangles in Geometric Shapes
         (c >= 0x2794 && c <= 0x27BF) ||    // dingbat arrows
         (c >= 0x27F0 && c <= 0x27FF) ||    // Supplemental Arrows-A
         (c >= 0x2900 && c <= 0x297F) ||    // Supplemental Arrows-B
         (c >= 0x2B00 && c <= 0x2B11) ||    // ⬀ .. ⬑, including ⬆ ⬇
         (c >= 0x2B30 && c <= 0x2B4F) ||    // arrows in Misc Symbols and Arrows
         (c >= 0x2B5A && c <= 0x2BB9) ||    // more arrows and arrowheads there
         (c >= 0x1F53A && c <= 0x1F53D) ||  // 🔺 🔻 🔼 🔽
         (c >= 0x1F800 && c <= 0x1F8FF);    // Supplemental Arrows-C
}

/// Splits text into tokens at white space and arrow glyphs. Arrows are only ever
/// tolerated between the strip's codes and values, so they separate like spaces.
std::vector<std::string_view> tokenize(std::string_view text) {
  std::vector<std::string_view> tokens;
  std::size_t start = std::string_view::npos;
  std::size_t i = 0;
  while (i < text.size()) {
    const code_point cp = decode(text, i);
    if (is_space(cp.value) || is_arrow(cp.value)) {
      if (start != std::string_view::npos) tokens.push_back(text.substr(start, i - start));
      start = std::string_view::npos;
    } else if (start == std::string_view::npos) {
      start = i;
    }
    i += cp.size;
  }
  if (start != std::string_view::npos) tokens.push_back(text.substr(start));
  return tokens;
}

/// True when text is UTF-8 without NUL bytes, as an undeclared page should be.
bool is_utf8_text(std::string_view text) noexcept {
  for (std::size_t i = 0; i < text.size();) {
    const code_point cp = decode(text, i);
    if (cp.value == 0 || (cp.value == 0xFFFD && cp.size == 1)) return false;
    i += cp.size;
  }
  return true;
}

/// True when a token is meant as a number (it holds a digit), so that "USD -1" or
/// "USD 8 7.45" are reported as garbled rates and "USD rate" is not a strip at all.
bool looks_numeric(std::string_view token) noexcept {
  return std::any_of(token.begin(), token.end(), [](char c) { return c >= '0' && c <= '9'; });
}

/// "USD 87.45, EUR 99.56" for the rates read so far.
std::string describe(const std::vector<rate_quote>& rates) {
  std::string out;
  for (const rate_quote& q : rates) {
    if (!out.empty()) out += ", ";
    out += fmt::format("{} {}", q.currency, q.rate.text());
  }
  return out;
}

/// Joins tokens [first, last) with single spaces.
std::string join(const std::vector<std::string_view>& tokens, std::size_t first, std::size_t last) {
  std::string out;
  for (std::size_t i = first; i < last; ++i) {
    if (i > first) out.push_back(' ');
    out += tokens[i];
  }
  return out;
}

/// Reads the strip that starts with the USD token at tokens[first].
///
/// For USD and EUR the value is everything up to the next code (if that code follows
/// within max_value_tokens), and it must be exactly one decimal token. RUB ends the strip,
/// and after it comes the page's own text (often a headline that may start with a digit),
/// so its value is the single token that follows.
extraction read_strip_at(const std::vector<std::string_view>& tokens, std::size_t first) {
  extraction result;
  std::vector<rate_quote> rates;
  std::size_t pos = first;
  for (std::size_t k = 0; k < strip_codes.size(); ++k) {
    const std::string_view code = strip_codes[k];
    const bool last = k + 1 == strip_codes.size();
    const bool has_numeric = pos + 1 < tokens.size() && looks_numeric(tokens[pos + 1]);
    std::size_t value_end = pos + 1;
    bool next_found = false;
    if (!last) {
      const std::size_t limit = std::min(tokens.size(), pos + 2 + max_value_tokens);
      while (value_end < limit && tokens[value_end] != strip_codes[k + 1]) ++value_end;
      next_found = value_end < limit;
    }
    if (!next_found) value_end = pos + 1 + (has_numeric ? 1 : 0);

    if (value_end == pos + 1) {
      result.error = fmt::format("currency strip incomplete: found {} but no rate after {}",
                                 describe(rates), code);
      return result;
    }
    const std::string value_text = join(tokens, pos + 1, value_end);
    const std::optional<decimal> value =
        value_end == pos + 2 ? decimal::parse(value_text) : std::nullopt;
    if (!value) {
      result.error = fmt::format("currency strip garbled: {} value '{}' is not a decimal", code,
                                 detail::excerpt(value_text));
      return result;
    }
    if (value->mantissa() == 0) {
      result.error =
          fmt::format("currency strip garbled: {} value '{}' is zero", code, value->text());
      return result;
    }
    rates.push_back(rate_quote{std::string{code}, *value});
    if (!last && !next_found) {
      result.error = fmt::format("currency strip incomplete: found {} but no {}", describe(rates),
                                 strip_codes[k + 1]);
      return result;
    }
    pos = value_end;
  }
  result.rates = std::move(rates);
  return result;
}

}  // namespace

extraction extract_24kg(std::string_view html, std::string_view content_type) {
  extraction result;
  if (html.empty()) {
    result.error = "currency strip not found: the page is empty";
    return result;
  }
  if (html.size() > max_page_bytes) {
    result.error = fmt::format("page too large: {} bytes (limit {})", html.size(), max_page_bytes);
    return result;
  }

  libxml::ensure_initialized();
  const page_charset encoding = page_encoding(html, content_type);
  libxml::doc_ptr doc;
  {
    const libxml::quiet_errors quiet;
    doc.reset(htmlReadMemory(
        html.data(), static_cast<int>(html.size()), nullptr,
        encoding.name.empty() ? nullptr : encoding.name.c_str(),
        HTML_PARSE_RECOVER | HTML_PARSE_NOERROR | HTML_PARSE_NOWARNING | HTML_PARSE_NONET));
  }
  if (!doc) {
    result.error = "currency strip not found: the page could not be parsed as HTML";
    return result;
  }

  // Every "USD <number>" is a candidate, and the first one that continues into a full
  // USD, EUR, RUB sequence is the strip. If none does, the first candidate's problem is
  // reported: the header comes first in document order, so that is the strip gone wrong.
  const std::string text = visible_text(*doc);
  const std::vector<std::string_view> tokens = tokenize(text);
  std::string first_error;
  for (std::size_t i = 0; i + 1 < tokens.size(); ++i) {
    if (tokens[i] != strip_codes[0] || !looks_numeric(tokens[i + 1])) continue;
    extraction attempt = read_strip_at(tokens, i);
    if (attempt.error.empty()) return attempt;
    if (first_error.empty()) first_error = std::move(attempt.error);
  }
  result.error = first_error.empty() ? "currency strip not found: no 'USD <rate>' in page text"
                                     : std::move(first_error);
  // A page in another encoding than it says, or than the UTF-8 assumed when it says
  // nothing (windows-1251 with its 0xA0 no-break spaces, UTF-16 without a byte-order
  // mark), fails here: name the likely cause.
  if (encoding.name == "UTF-8" && !is_utf8_text(html)) {
    result.error += encoding.declared ? " (the page is declared UTF-8 but is not UTF-8 text)"
                                      : " (the page declares no encoding and is not UTF-8 text)";
  }
  return result;
}

}  // namespace somrated
