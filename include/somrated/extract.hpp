#pragma once

#include <string_view>

#include "somrated/observation.hpp"

namespace somrated {

/// Reads the USD/EUR/RUB strip from a 24.kg page (any edition or host).
///
/// The page is parsed with libxml2's HTML parser and its text is read in document
/// order, so markup changes that keep the visible text keep working. The strip is the
/// first place where "USD <n>", "EUR <n>" and "RUB <n>" follow one another; anything
/// else (missing, partial, garbled values) is an error that stores nothing.
extraction extract_24kg(std::string_view html);

/// Reads an NBKR daily.xml or weekly.xml document: every currency, Value/Nominal as an
/// exact per-unit rate, and the Date attribute as the effective date.
extraction extract_nbkr(std::string_view xml);

}  // namespace somrated
