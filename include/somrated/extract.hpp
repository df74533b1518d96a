#pragma once

#include <cstddef>
#include <string_view>

#include "somrated/observation.hpp"

namespace somrated {

/// Largest 24.kg page read: real pages are a few hundred KB; libxml2 takes an int size.
inline constexpr std::size_t max_24kg_bytes = 16u << 20;

/// Largest NBKR document read: the weekly list of ~40 currencies is about 4 KB.
inline constexpr std::size_t max_nbkr_bytes = 1u << 20;

/// Reads the USD/EUR/RUB strip from a 24.kg page (any edition or host).
///
/// The page is parsed with libxml2's HTML parser and its text is read in document
/// order, so markup changes that keep the visible text keep working. The strip is the
/// first place where "USD <n>", "EUR <n>" and "RUB <n>" follow one another; anything
/// else (missing, partial, garbled values) is an error that stores nothing.
///
/// The encoding is, as the HTML standard orders it, the byte-order mark's, else the
/// charset of content_type (the HTTP Content-Type header, empty when there was none),
/// else the page's own <meta> or XML declaration, else UTF-8. An error on a page that
/// declares nothing and is not UTF-8 text says so.
extraction extract_24kg(std::string_view html, std::string_view content_type = {});

/// Reads an NBKR daily.xml or weekly.xml document: every currency, Value/Nominal as an
/// exact per-unit rate, and the Date attribute as the effective date.
extraction extract_nbkr(std::string_view xml);

/// Runs the extractor of a source kind ("24kg", "nbkr") over a fetched body;
/// content_type is the response's Content-Type header (empty when there was none), whose
/// charset the 24kg extractor honours (NBKR's XML declares its own encoding).
extraction extract_for_kind(std::string_view kind, std::string_view body,
                            std::string_view content_type = {});

/// The largest body the kind's extractor reads: fetches never download more than this,
/// whatever a source's max_body says.
std::size_t max_document_bytes(std::string_view kind) noexcept;

}  // namespace somrated
