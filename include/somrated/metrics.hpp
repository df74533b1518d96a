#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <string_view>

namespace somrated {

struct config;

/// The Content-Type of Prometheus text format 0.0.4, as Prometheus' own libraries send it.
inline constexpr std::string_view exposition_content_type =
    "text/plain; version=0.0.4; charset=utf-8";

/// One label of a sample: name="value".
struct metric_label {
  std::string_view name;   ///< A label name ([a-zA-Z_][a-zA-Z0-9_]*), written as is.
  std::string_view value;  ///< Any text; escaped on output.
};

/// Appends Prometheus text format 0.0.4 to a string.
///
/// The caller keeps each family's lines together: family() once, then its samples.
/// Names are written as given; HELP text and label values are escaped (`\` and newline,
/// and `"` in label values). No timestamps are written: Prometheus stamps each sample
/// with the scrape time, as the format's guidelines for exporters ask.
class exposition_writer {
 public:
  /// Appends to out, which must outlive the writer.
  explicit exposition_writer(std::string& out) : out_(out) {}

  /// `# HELP name help` and `# TYPE name type` (type: counter, gauge or histogram).
  void family(std::string_view name, std::string_view type, std::string_view help);

  /// `name{labels} value` with value already in Go ParseFloat syntax ("87.4500", "+Inf").
  void sample(std::string_view name, std::initializer_list<metric_label> labels,
              std::string_view value);
  /// `name{labels} value` for a count.
  void sample(std::string_view name, std::initializer_list<metric_label> labels,
              std::uint64_t value);
  /// `name{labels} value` for a measurement (shortest text that reads back the same).
  void sample(std::string_view name, std::initializer_list<metric_label> labels, double value);

  /// One histogram's series: `name_bucket` per bound (cumulative) and le="+Inf", then
  /// `name_sum` and `name_count`. counts holds one count per bound, plus one for values
  /// above the last bound; bounds are ascending.
  void histogram(std::string_view name, std::initializer_list<metric_label> labels,
                 std::span<const double> bounds, std::span<const std::uint64_t> counts, double sum);

 private:
  /// `name{labels` plus `,le="le"` when le is not empty, then `} `; no braces without labels.
  void series(std::string_view name, std::initializer_list<metric_label> labels,
              std::string_view le = {});
  /// A histogram bucket: `name{labels,le="le"} value`.
  void sample_with_le(std::string_view name, std::initializer_list<metric_label> labels,
                      std::string_view le, std::uint64_t value);

  std::string& out_;  ///< Where the text goes.
};

/// The daemon's in-process counters and histograms for `GET /metrics`.
///
/// One object, owned by the daemon and passed by pointer to the scheduler (scrapes),
/// the dispatcher (notifications) and the HTTP handler (requests); every method is
/// thread-safe. Label values are bounded by what feeds them: configured source and
/// notifier names, the API's route patterns, and HTTP status codes. A label set
/// allocates once, when first counted; counting it again takes a lock and a map lookup.
class metrics {
 public:
  /// Upper bounds, in seconds, of somrated_scrape_duration_seconds' buckets.
  static constexpr std::array<double, 11> scrape_buckets{0.05, 0.1, 0.25, 0.5, 1, 2.5,
                                                         5,    10,  20,   30,  60};
  /// Upper bounds, in seconds, of somrated_http_request_duration_seconds' buckets: most
  /// answers take well under a millisecond.
  static constexpr std::array<double, 14> request_buckets{
      0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5};

  /// Scrape outcomes, as the scrape log names them; pre-declared at zero per source.
  static constexpr std::array<std::string_view, 4> scrape_outcomes{"ok", "not_modified", "held",
                                                                   "error"};
  /// Delivery attempt outcomes; pre-declared at zero per notifier.
  static constexpr std::array<std::string_view, 3> notification_outcomes{"delivered", "retry",
                                                                         "failed"};

  /// An empty registry: series appear as they are counted.
  metrics();
  /// A registry with every configured source's and notifier's series present at zero,
  /// so rate() and increase() see their first increment.
  explicit metrics(const config& cfg);
  ~metrics();
  metrics(const metrics&) = delete;
  metrics& operator=(const metrics&) = delete;

  /// One scrape of source that ended with outcome ("ok", "not_modified", "held",
  /// "error") after took.
  void count_scrape(std::string_view source, std::string_view outcome,
                    std::chrono::duration<double> took);

  /// One delivery attempt through notifier that ended with outcome ("delivered",
  /// "retry", "failed").
  void count_notification(std::string_view notifier, std::string_view outcome);

  /// One HTTP request to route (a route pattern, or "other") answered with status after
  /// took.
  void count_request(std::string_view route, unsigned status, std::chrono::duration<double> took);

  /// What the HTTP listener does under connection pressure (see http_server).
  enum class connection_event : std::uint8_t {
    evicted,        ///< An idle or stalled connection closed to admit a new one.
    rejected,       ///< A new connection answered 503: max_connections busy ones open.
    accept_failed,  ///< accept() failed (EMFILE and the like); the listener backs off.
  };

  /// One connection_event; lock-free.
  void count_connection(connection_event event) noexcept;

  /// Where write() reads the number of open HTTP connections from. Set once, before
  /// the server starts; open must be callable from any thread.
  void watch_connections(std::function<std::size_t()> open);

  /// Writes the families somrated_scrapes_total, somrated_scrape_duration_seconds,
  /// somrated_notifications_total, somrated_http_requests_total,
  /// somrated_http_request_duration_seconds, somrated_http_connections (when watched)
  /// and somrated_http_connection_events_total, series ordered by label values.
  void write(exposition_writer& w) const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;  ///< The counters and their lock.
};

}  // namespace somrated
