// Server-rendered SVG line charts of a rate's history.
#include "somrated/chart_svg.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include <fmt/format.h>

#include "page_text.hpp"

namespace somrated {

namespace {

/// The canvas, in SVG user units.
constexpr double width = 480;
constexpr double height = 220;
/// The plot area's top, bottom and right edge; the left edge depends on the labels.
constexpr double plot_top = 42;
constexpr double plot_bottom = 182;
constexpr double plot_right = width - 16;
/// Baseline of the date labels.
constexpr double date_baseline = 204;
/// Date labels along the time axis, the two ends included.
constexpr int date_ticks = 4;

/// Colours for light and dark schemes, matching the page.
constexpr std::string_view style =
    "text{font-family:system-ui,-apple-system,\"Segoe UI\",Roboto,\"Noto Sans\",sans-serif;"
    "font-size:13px;fill:#59636e}"
    ".bg{fill:#fff}.title{font-size:15px;font-weight:600;fill:#1f2328}"
    ".last{font-size:15px;font-weight:600;fill:#0969da}"
    ".axis{stroke:#d1d9e0;stroke-width:1}"
    ".grid{stroke:#d1d9e0;stroke-width:1;stroke-dasharray:4 4}"
    ".line{fill:none;stroke:#0969da;stroke-width:2;stroke-linejoin:round}"
    ".dot{fill:#0969da}"
    "@media (prefers-color-scheme:dark){.bg{fill:#161b22}text{fill:#9198a1}"
    ".title{fill:#e6edf3}.last,.dot{fill:#4493f8}.line{stroke:#4493f8}"
    ".axis,.grid{stroke:#3d444d}}";

/// A coordinate with one decimal: geometry, never a rate.
std::string coord(double v) {
  return fmt::format("{:.1f}", v);
}

/// A date label: the day for spans of two days or more, else the day and time (UTC).
std::string date_label(timestamp t, std::chrono::milliseconds span) {
  const std::string s = format_rfc3339(t);
  if (span >= std::chrono::days(2)) return s.substr(0, 10);
  return fmt::format("{} {}", s.substr(0, 10), s.substr(11, 5));
}

/// Maps times and rates to the plot area.
class scales {
 public:
  /// Times [from, to] onto [left, plot_right]; rates [lo, hi] onto the plot's height
  /// with a margin, or a flat line in the middle when lo == hi.
  scales(timestamp from, timestamp to, double left, double lo, double hi)
      : from_(from), left_(left) {
    span_ms_ = std::max<double>(1.0, static_cast<double>((to - from).count()));
    const double pad = hi > lo ? (hi - lo) * 0.08 : std::max(std::abs(lo) * 0.01, 0.01);
    lo_ = lo - pad;
    hi_ = hi + pad;
  }

  /// The x of t, clamped to the plot.
  double x(timestamp t) const {
    const double share = static_cast<double>((t - from_).count()) / span_ms_;
    return left_ + std::clamp(share, 0.0, 1.0) * (plot_right - left_);
  }

  /// The y of a rate.
  double y(double rate) const {
    return plot_bottom - (rate - lo_) / (hi_ - lo_) * (plot_bottom - plot_top);
  }

 private:
  timestamp from_;      ///< The time at the left edge.
  double left_;         ///< The plot's left edge.
  double span_ms_ = 1;  ///< Milliseconds across the plot (at least 1).
  double lo_ = 0;       ///< The rate at the plot's bottom edge.
  double hi_ = 1;       ///< The rate at the plot's top edge.
};

/// The step line through points, held flat from each point to the next and from the
/// last one to the right edge.
std::string step_path(const std::vector<history_point>& points, const scales& s, timestamp to) {
  std::string d = fmt::format("M{} {}", coord(s.x(points.front().time)),
                              coord(s.y(points.front().rate.to_double())));
  for (std::size_t i = 1; i < points.size(); ++i) {
    d += fmt::format("H{}V{}", coord(s.x(points[i].time)), coord(s.y(points[i].rate.to_double())));
  }
  d += fmt::format("H{}", coord(s.x(to)));
  return d;
}

}  // namespace

std::optional<chart_range> parse_chart_range(std::string_view text) {
  if (text == "30d") return chart_range::days_30;
  if (text == "1y") return chart_range::year_1;
  if (text == "all") return chart_range::all;
  return std::nullopt;
}

std::string_view chart_range_name(chart_range r) {
  switch (r) {
    case chart_range::year_1:
      return "1y";
    case chart_range::all:
      return "all";
    case chart_range::days_30:
      break;
  }
  return "30d";
}

std::chrono::milliseconds chart_step(timestamp from, timestamp to) {
  const std::int64_t span = std::max<std::int64_t>(0, (to - from).count());
  const auto n = static_cast<std::int64_t>(chart_max_points);
  return std::chrono::milliseconds(std::max<std::int64_t>(1, span / n + (span % n != 0 ? 1 : 0)));
}

std::string render_chart_svg(const chart_data& data) {
  const page_text::texts& t = page_text::for_language(data.lang);
  const std::string_view range_text = t.ranges[static_cast<std::size_t>(data.range)];
  const std::string title = fmt::format("{}/KGS · {} · {}", data.currency, data.source, range_text);

  const auto [lo_it, hi_it] = std::minmax_element(
      data.points.begin(), data.points.end(),
      [](const history_point& a, const history_point& b) { return a.rate < b.rate; });
  const bool empty = data.points.empty();
  std::string desc(t.no_data);
  if (!empty) {
    desc = fmt::format(fmt::runtime(t.chart_desc), fmt::arg("min", lo_it->rate.text()),
                       fmt::arg("max", hi_it->rate.text()),
                       fmt::arg("last", data.points.back().rate.text()));
  }

  std::string out = fmt::format(
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" "
      "viewBox=\"0 0 {0} {1}\" role=\"img\" aria-labelledby=\"title desc\" xml:lang=\"{2}\">"
      "<title id=\"title\">{3}</title><desc id=\"desc\">{4}</desc><style>{5}</style>"
      "<rect class=\"bg\" width=\"{0}\" height=\"{1}\"/>"
      "<text class=\"title\" x=\"16\" y=\"24\">{3}</text>",
      width, height, page_language_code(data.lang), markup_escape(title), markup_escape(desc),
      style);

  // The rate labels set the plot's left edge: wide enough for the longest one.
  std::size_t label_chars = 4;
  if (!empty) label_chars = std::max(lo_it->rate.text().size(), hi_it->rate.text().size());
  const double left = std::max(48.0, 16.0 + 7.5 * static_cast<double>(label_chars));
  const double lo = empty ? 0.0 : lo_it->rate.to_double();
  const double hi = empty ? 1.0 : hi_it->rate.to_double();
  const scales s(data.from, data.to, left, lo, hi);

  // The axes: time along the bottom, rates up the left edge.
  out += fmt::format(R"(<line class="axis" x1="{0}" y1="{1}" x2="{2}" y2="{1}"/>)"
                     R"(<line class="axis" x1="{0}" y1="{3}" x2="{0}" y2="{1}"/>)",
                     coord(left), coord(plot_bottom), coord(plot_right), coord(plot_top));
  const auto span = data.to - data.from;
  for (int i = 0; i < date_ticks; ++i) {
    const timestamp at = data.from + span * i / (date_ticks - 1);
    const double x = s.x(at);
    const std::string_view anchor = i == 0 ? "start" : i == date_ticks - 1 ? "end" : "middle";
    out += fmt::format(R"(<line class="axis" x1="{0}" y1="{1}" x2="{0}" y2="{2}"/>)"
                       R"(<text class="date" x="{0}" y="{3}" text-anchor="{4}">{5}</text>)",
                       coord(x), coord(plot_bottom), coord(plot_bottom + 5), coord(date_baseline),
                       anchor, markup_escape(date_label(at, span)));
  }

  if (empty) {
    out += fmt::format(R"(<text class="empty" x="{}" y="{}" text-anchor="middle">{}</text>)",
                       coord((left + plot_right) / 2), coord((plot_top + plot_bottom) / 2),
                       markup_escape(t.no_data));
    out += "</svg>\n";
    return out;
  }

  // Lowest and highest values, as published, with a dashed guide each.
  auto guide = [&](const decimal& v, std::string_view cls) {
    const double y = s.y(v.to_double());
    return fmt::format(R"(<line class="grid" x1="{0}" y1="{1}" x2="{2}" y2="{1}"/>)"
                       R"(<text class="{3}" x="{4}" y="{5}" text-anchor="end">{6}</text>)",
                       coord(left), coord(y), coord(plot_right), cls, coord(left - 6), coord(y + 4),
                       markup_escape(v.text()));
  };
  out += guide(hi_it->rate, "max");
  if (lo_it->rate != hi_it->rate) out += guide(lo_it->rate, "min");

  out += fmt::format(R"(<path class="line" d="{}"/>)", step_path(data.points, s, data.to));
  const double last_y = s.y(data.points.back().rate.to_double());
  out += fmt::format(R"(<circle class="dot" cx="{}" cy="{}" r="3"/>)", coord(plot_right),
                     coord(last_y));
  out += fmt::format(R"(<text class="last" x="{}" y="24" text-anchor="end">{}</text>)",
                     coord(plot_right), markup_escape(data.points.back().rate.text()));
  out += "</svg>\n";
  return out;
}

}  // namespace somrated
