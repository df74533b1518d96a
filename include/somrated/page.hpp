#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "somrated/alert.hpp"
#include "somrated/decimal.hpp"
#include "somrated/time.hpp"

namespace somrated {

/// The languages of the page and the charts: `?lang=en|ru|ky`.
enum class page_language { en, ru, ky };

/// The language named by a `lang` value ("en", "ru", "ky"), or nullopt.
std::optional<page_language> parse_page_language(std::string_view code);

/// The BCP 47 code of lang, as `lang=` and the html lang attribute take it.
std::string_view page_language_code(page_language lang);

/// text with &, <, >, " and ' replaced by character references, safe in HTML and XML
/// text and in quoted attribute values.
std::string markup_escape(std::string_view text);

/// Which way a rate moved against an earlier one.
enum class rate_trend { up, down, same };

/// A rate compared with an earlier one, in exact decimal arithmetic.
struct rate_change {
  rate_trend trend = rate_trend::same;
  std::string difference;  ///< Signed, at the larger scale of the two: "+0.65", "-1.2000", "0.00".
  std::string percent;     ///< Signed, two places: "+0.74"; empty when the earlier rate is zero.
};

/// now against before; nullopt when the digits do not fit 64-bit arithmetic.
std::optional<rate_change> compare_rates(const decimal& now, const decimal& before);

/// One currency on the page.
struct page_rate {
  std::string currency;
  decimal rate;                     ///< The value in force, as published.
  timestamp since;                  ///< When it first appeared.
  std::optional<decimal> previous;  ///< The value in force 24 hours earlier, if any.
  std::optional<std::chrono::sys_days> effective_date;  ///< The source's own date (NBKR).
};

/// One configured source on the page.
struct page_source {
  std::string name;
  std::vector<page_rate> rates;  ///< In display order.
  std::optional<timestamp> last_success;
  bool stale = false;  ///< No successful scrape within 3 intervals.
};

/// A firing alert rule on the page.
struct page_alert {
  alert_rule rule;
  std::string value;                    ///< The last measured value (a rate, percent or seconds).
  std::optional<timestamp> started_at;  ///< Start of the firing episode.
};

/// A chart on the page: one currency at one source.
struct page_chart {
  std::string currency;
  std::string source;
};

/// Everything the page shows.
struct page_data {
  page_language lang = page_language::en;
  std::vector<page_source> sources;  ///< In configured order.
  std::vector<page_alert> alerts;    ///< Firing rules: the config's, then the API's.
  std::vector<page_chart> charts;    ///< In display order.
};

/// The page as an HTML document: rates with their change, source freshness, firing
/// alerts, charts, and an inline script that refreshes the figures in place.
///
/// The page loads nothing from other hosts and its only inline script and style are
/// the fixed ones whose hashes content_security_policy() lists; everything dynamic is
/// escaped text or attributes.
std::string render_page(const page_data& data);

/// The Content-Security-Policy header for the page: nothing but its own hashed inline
/// script and style, images from this origin (the charts) and fetches to it.
std::string page_content_security_policy();

}  // namespace somrated
