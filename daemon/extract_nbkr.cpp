#include <libxml/parser.h>
#include <libxml/tree.h>

#include <bitset>
#include <charconv>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <fmt/format.h>

#include "excerpt.hpp"
#include "libxml.hpp"
#include "somrated/extract.hpp"

namespace somrated {

namespace {

/// Parser options: no network, no messages, and deliberately neither XML_PARSE_NOENT nor
/// XML_PARSE_DTDLOAD, so external entities are never loaded and entity references are not
/// substituted. XML_PARSE_HUGE is left off to keep libxml2's size and depth limits.
constexpr int parse_options = XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING;

/// What was wrong with one <Currency> element.
struct failure {
  std::string message;  ///< Without the "NBKR XML: " prefix.
};

/// An extraction that failed with `message`.
extraction fail(std::string_view message) {
  extraction result;
  result.error = fmt::format("NBKR XML: {}", message);
  return result;
}

/// `text` without leading and trailing XML white space.
std::string_view trim(std::string_view text) noexcept {
  constexpr std::string_view space = " \t\r\n";
  const std::size_t begin = text.find_first_not_of(space);
  if (begin == std::string_view::npos) return {};
  return text.substr(begin, text.find_last_not_of(space) - begin + 1);
}

/// The concatenated text of a node list (an element's or attribute's children), or
/// nullopt if it holds anything but text: an entity reference or a child element means
/// the value is not what NBKR publishes and must not be interpreted.
std::optional<std::string> plain_text(const xmlNode* child) {
  std::string out;
  for (; child != nullptr; child = child->next) {
    if (child->type != XML_TEXT_NODE && child->type != XML_CDATA_SECTION_NODE) return std::nullopt;
    out += libxml::view(child->content);
  }
  return out;
}

/// The plain text of attribute `name` on `element`; nullopt if it is absent. An attribute
/// that holds more than text reads as empty, which no caller accepts.
std::optional<std::string> attribute(const xmlNode& element, std::string_view name) {
  for (const xmlAttr* attr = element.properties; attr != nullptr; attr = attr->next) {
    if (libxml::view(attr->name) != name) continue;
    return plain_text(attr->children).value_or(std::string{});
  }
  return std::nullopt;
}

/// True when `node` is an element called `name`.
bool is_element(const xmlNode* node, std::string_view name) noexcept {
  return node->type == XML_ELEMENT_NODE && libxml::view(node->name) == name;
}

/// Parses "13.09.2019" (DD.MM.YYYY) into a calendar day.
std::optional<std::chrono::sys_days> parse_nbkr_date(std::string_view text) {
  if (text.size() != 10 || text[2] != '.' || text[5] != '.') return std::nullopt;
  auto number = [&](std::size_t pos, std::size_t len) -> std::optional<int> {
    int value = 0;
    for (char c : text.substr(pos, len)) {
      if (c < '0' || c > '9') return std::nullopt;
      value = value * 10 + (c - '0');
    }
    return value;
  };
  const auto day = number(0, 2);
  const auto month = number(3, 2);
  const auto year = number(6, 4);
  if (!day || !month || !year) return std::nullopt;
  const std::chrono::year_month_day ymd{std::chrono::year{*year},
                                        std::chrono::month{static_cast<unsigned>(*month)},
                                        std::chrono::day{static_cast<unsigned>(*day)}};
  if (!ymd.ok()) return std::nullopt;
  return std::chrono::sys_days{ymd};
}

/// Number of distinct three-letter codes, for the duplicate check.
constexpr std::size_t code_space = 26 * 26 * 26;

/// Upper-cases a three-letter ASCII code; nullopt for anything else.
std::optional<std::string> iso_code(std::string_view text) {
  if (text.size() != 3) return std::nullopt;
  std::string code;
  for (char c : text) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    if (c < 'A' || c > 'Z') return std::nullopt;
    code.push_back(c);
  }
  return code;
}

/// The text of the only child element `name` of `currency`, or a failure naming `code`.
std::optional<std::string> child_text(const xmlNode& currency, std::string_view name,
                                      std::string_view code, failure& error) {
  const xmlNode* found = nullptr;
  for (const xmlNode* child = currency.children; child != nullptr; child = child->next) {
    if (!is_element(child, name)) continue;
    if (found != nullptr) {
      error.message = fmt::format("currency {}: more than one {}", code, name);
      return std::nullopt;
    }
    found = child;
  }
  if (found == nullptr) {
    error.message = fmt::format("currency {}: no {}", code, name);
    return std::nullopt;
  }
  std::optional<std::string> text = plain_text(found->children);
  if (!text) {
    error.message = fmt::format("currency {}: {} is not plain text", code, name);
    return std::nullopt;
  }
  return std::string{trim(*text)};
}

/// Reads one <Currency> element as a per-unit rate; sets `error` on any problem.
std::optional<rate_quote> read_currency(const xmlNode& currency, std::size_t index,
                                        failure& error) {
  const std::optional<std::string> raw_code = attribute(currency, "ISOCode");
  if (!raw_code) {
    error.message = fmt::format("Currency #{} has no ISOCode", index + 1);
    return std::nullopt;
  }
  const std::optional<std::string> code = iso_code(trim(*raw_code));
  if (!code) {
    error.message = fmt::format("Currency #{}: ISOCode '{}' is not three ASCII letters", index + 1,
                                detail::excerpt(*raw_code));
    return std::nullopt;
  }

  const std::optional<std::string> nominal_text = child_text(currency, "Nominal", *code, error);
  if (!nominal_text) return std::nullopt;
  std::int64_t nominal = 0;
  const char* const nominal_end = nominal_text->data() + nominal_text->size();
  const auto [nominal_stop, nominal_ec] =
      std::from_chars(nominal_text->data(), nominal_end, nominal);
  const bool nominal_digits =
      !nominal_text->empty() && nominal_text->front() >= '0' && nominal_text->front() <= '9';
  if (!nominal_digits || nominal_ec != std::errc{} || nominal_stop != nominal_end || nominal < 1) {
    error.message = fmt::format("currency {}: Nominal '{}' is not a positive integer", *code,
                                detail::excerpt(*nominal_text));
    return std::nullopt;
  }

  const std::optional<std::string> value_text = child_text(currency, "Value", *code, error);
  if (!value_text) return std::nullopt;
  const std::optional<decimal> value = decimal::parse(*value_text);
  if (!value) {
    error.message = fmt::format("currency {}: Value '{}' is not a decimal", *code,
                                detail::excerpt(*value_text));
    return std::nullopt;
  }
  if (value->mantissa() == 0) {
    error.message = fmt::format("currency {}: Value '{}' is zero", *code, *value_text);
    return std::nullopt;
  }

  std::int64_t power = nominal;
  while (power % 10 == 0) power /= 10;
  if (power != 1) {
    error.message = fmt::format("currency {}: Nominal {} is not a power of ten", *code, nominal);
    return std::nullopt;
  }
  const std::optional<decimal> per_unit = value->divided_by(nominal);
  if (!per_unit) {
    error.message =
        fmt::format("currency {}: Value {} per Nominal {} needs more than {} decimal places", *code,
                    value->text(), nominal, decimal::max_scale);
    return std::nullopt;
  }
  return rate_quote{*code, *per_unit};
}

}  // namespace

extraction extract_nbkr(std::string_view xml) {
  if (trim(xml).empty()) return fail("document is empty");
  if (xml.size() > max_nbkr_bytes) {
    return fail(fmt::format("document too large: {} bytes (limit {})", xml.size(), max_nbkr_bytes));
  }

  libxml::ensure_initialized();
  const libxml::parser_ctxt_ptr ctxt{xmlNewParserCtxt()};
  if (!ctxt) return fail("out of memory creating the parser");
  libxml::doc_ptr doc;
  {
    const libxml::quiet_errors quiet;
    doc.reset(xmlCtxtReadMemory(ctxt.get(), xml.data(), static_cast<int>(xml.size()), nullptr,
                                nullptr, parse_options));
  }
  if (!doc) {
    const xmlError* err = xmlCtxtGetLastError(ctxt.get());
    if (err == nullptr || err->message == nullptr) return fail("not well-formed XML");
    return fail(fmt::format("not well-formed XML (line {}: {})", err->line,
                            detail::excerpt(trim(err->message), 120)));
  }

  // NBKR documents carry no DTD. Refusing any DOCTYPE keeps entity declarations, and with
  // them XXE and entity-expansion tricks, out of reach of everything below.
  if (doc->intSubset != nullptr || doc->extSubset != nullptr) {
    return fail("document type declarations are not accepted");
  }

  const xmlNode* root = xmlDocGetRootElement(doc.get());
  if (root == nullptr) return fail("no root element");
  if (!is_element(root, "CurrencyRates")) {
    return fail(fmt::format("root element is <{}>, expected <CurrencyRates>",
                            detail::excerpt(libxml::view(root->name))));
  }

  extraction result;
  const std::optional<std::string> date_text = attribute(*root, "Date");
  if (!date_text) return fail("CurrencyRates has no Date attribute");
  result.effective_date = parse_nbkr_date(trim(*date_text));
  if (!result.effective_date) {
    return fail(
        fmt::format("Date '{}' is not a valid DD.MM.YYYY date", detail::excerpt(*date_text)));
  }

  std::bitset<code_space> seen;
  std::size_t index = 0;
  for (const xmlNode* node = root->children; node != nullptr; node = node->next) {
    if (!is_element(node, "Currency")) continue;
    failure error;
    std::optional<rate_quote> quote = read_currency(*node, index++, error);
    if (!quote) return fail(error.message);
    const std::string& code = quote->currency;
    const std::size_t slot =
        static_cast<std::size_t>(((code[0] - 'A') * 26 + (code[1] - 'A')) * 26 + (code[2] - 'A'));
    if (seen.test(slot)) return fail(fmt::format("currency {} appears twice", code));
    seen.set(slot);
    result.rates.push_back(std::move(*quote));
  }
  if (result.rates.empty()) return fail("no Currency elements");
  return result;
}

}  // namespace somrated
