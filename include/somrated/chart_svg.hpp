#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "somrated/page.hpp"
#include "somrated/store.hpp"
#include "somrated/time.hpp"

namespace somrated {

/// The periods a chart can show: `range=30d|1y|all`.
enum class chart_range { days_30, year_1, all };

/// The range named by a `range` value ("30d", "1y", "all"), or nullopt.
std::optional<chart_range> parse_chart_range(std::string_view text);

/// The `range` value of r: "30d", "1y" or "all".
std::string_view chart_range_name(chart_range r);

/// Most points a chart draws; longer histories are sampled by the store.
inline constexpr std::size_t chart_max_points = 500;

/// The bucket width that splits [from, to] into at most chart_max_points buckets
/// (at least one millisecond).
std::chrono::milliseconds chart_step(timestamp from, timestamp to);

/// What a chart shows.
struct chart_data {
  std::string currency;
  std::string source;
  chart_range range = chart_range::days_30;
  page_language lang = page_language::en;
  timestamp from;                     ///< Left edge.
  timestamp to;                       ///< Right edge (now).
  std::vector<history_point> points;  ///< Ascending; each value holds until the next point.
};

/// The chart as a standalone SVG document: a step line of the points from `from` to
/// `to`, the lowest and highest values as published, dates along the time axis, and
/// colours for light and dark schemes.
std::string render_chart_svg(const chart_data& data);

}  // namespace somrated
