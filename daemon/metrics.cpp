#include "somrated/metrics.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <cassert>
#include <cmath>
#include <iterator>
#include <map>
#include <mutex>
#include <utility>

#include <fmt/format.h>

#include "somrated/config.hpp"

namespace somrated {

namespace {

/// Appends text with `\` and newline escaped, and `"` too when in_quotes (label values).
void append_escaped(std::string& out, std::string_view text, bool in_quotes) {
  for (const char c : text) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '"' && in_quotes) {
      out += "\\\"";
    } else {
      out += c;
    }
  }
}

/// Appends v as Go's ParseFloat reads it: the shortest round-trip text, or NaN/+Inf/-Inf.
void append_value(std::string& out, double v) {
  if (std::isnan(v)) {
    out += "NaN";
  } else if (std::isinf(v)) {
    out += v > 0 ? "+Inf" : "-Inf";
  } else {
    fmt::format_to(std::back_inserter(out), "{}", v);
  }
}

/// A histogram's buckets (non-cumulative; the last one counts values above every
/// bound) and the sum of what it observed.
template <std::size_t N>
struct histogram {
  std::array<std::uint64_t, N + 1> counts{};  ///< Per bucket.
  double sum = 0;                             ///< Of every observed value.

  /// Counts v in the first bucket whose bound is >= v (Prometheus' le is inclusive).
  void observe(const std::array<double, N>& bounds, double v) {
    const auto i = std::lower_bound(bounds.begin(), bounds.end(), v) - bounds.begin();
    ++counts[static_cast<std::size_t>(i)];
    sum += v;
  }
};

/// Two label values, the key of a counter's series.
using label_pair = std::pair<std::string, std::string>;

/// Orders label_pair keys and looks them up by a pair of string_views, so counting a
/// series that exists allocates nothing.
struct pair_less {
  using is_transparent = void;

  /// a < b by first, then second.
  template <class A, class B>
  bool operator()(const A& a, const B& b) const {
    return std::pair<std::string_view, std::string_view>(a.first, a.second) <
           std::pair<std::string_view, std::string_view>(b.first, b.second);
  }
};

/// A counter family: one count per label pair.
using counter_map = std::map<label_pair, std::uint64_t, pair_less>;

/// The count of (a, b), created at zero when new.
std::uint64_t& counter_at(counter_map& m, std::string_view a, std::string_view b) {
  const std::pair<std::string_view, std::string_view> key(a, b);
  auto it = m.find(key);
  if (it == m.end()) it = m.emplace(label_pair(a, b), 0).first;
  return it->second;
}

/// The histogram of label value a, created empty when new.
template <class Map>
typename Map::mapped_type& histogram_at(Map& m, std::string_view a) {
  auto it = m.find(a);
  if (it == m.end()) it = m.emplace(std::string(a), typename Map::mapped_type{}).first;
  return it->second;
}

}  // namespace

void exposition_writer::family(std::string_view name, std::string_view type,
                               std::string_view help) {
  out_ += "# HELP ";
  out_ += name;
  out_ += ' ';
  append_escaped(out_, help, false);
  out_ += "\n# TYPE ";
  out_ += name;
  out_ += ' ';
  out_ += type;
  out_ += '\n';
}

void exposition_writer::series(std::string_view name, std::initializer_list<metric_label> labels,
                               std::string_view le) {
  out_ += name;
  if (labels.size() > 0 || !le.empty()) {
    char sep = '{';
    for (const metric_label& l : labels) {
      out_ += sep;
      out_ += l.name;
      out_ += "=\"";
      append_escaped(out_, l.value, true);
      out_ += '"';
      sep = ',';
    }
    if (!le.empty()) {
      out_ += sep;
      out_ += "le=\"";
      out_ += le;
      out_ += '"';
    }
    out_ += '}';
  }
  out_ += ' ';
}

void exposition_writer::sample(std::string_view name, std::initializer_list<metric_label> labels,
                               std::string_view value) {
  series(name, labels);
  out_ += value;
  out_ += '\n';
}

void exposition_writer::sample(std::string_view name, std::initializer_list<metric_label> labels,
                               std::uint64_t value) {
  series(name, labels);
  fmt::format_to(std::back_inserter(out_), "{}\n", value);
}

void exposition_writer::sample(std::string_view name, std::initializer_list<metric_label> labels,
                               double value) {
  series(name, labels);
  append_value(out_, value);
  out_ += '\n';
}

void exposition_writer::histogram(std::string_view name, std::initializer_list<metric_label> labels,
                                  std::span<const double> bounds,
                                  std::span<const std::uint64_t> counts, double sum) {
  assert(counts.size() == bounds.size() + 1);
  std::string full(name);  // name_bucket, then name_sum and name_count
  full += "_bucket";
  std::uint64_t cumulative = 0;
  std::string le;
  for (std::size_t i = 0; i < bounds.size(); ++i) {
    cumulative += counts[i];
    le.clear();
    append_value(le, bounds[i]);
    sample_with_le(full, labels, le, cumulative);
  }
  cumulative += counts[bounds.size()];
  sample_with_le(full, labels, "+Inf", cumulative);
  full.resize(name.size());
  full += "_sum";
  sample(full, labels, sum);
  full.resize(name.size());
  full += "_count";
  sample(full, labels, cumulative);
}

void exposition_writer::sample_with_le(std::string_view name,
                                       std::initializer_list<metric_label> labels,
                                       std::string_view le, std::uint64_t value) {
  series(name, labels, le);
  fmt::format_to(std::back_inserter(out_), "{}\n", value);
}

/// The counters, guarded by one lock: counting is a lookup and an increment, and a
/// scrape of /metrics holds the lock only while the text is written.
struct metrics::impl {
  std::mutex mutex;           ///< Guards everything below.
  counter_map scrapes;        ///< (source, outcome).
  counter_map notifications;  ///< (notifier, outcome).
  counter_map requests;       ///< (route, code).
  std::map<std::string, histogram<scrape_buckets.size()>, std::less<>>
      scrape_durations;  ///< By source.
  std::map<std::string, histogram<request_buckets.size()>, std::less<>>
      request_durations;  ///< By route.
  /// By connection_event; counted without the lock.
  std::array<std::atomic<std::uint64_t>, 3> connection_events{};
  std::function<std::size_t()> open_connections;  ///< Set before serving; may be empty.
};

metrics::metrics() : impl_(std::make_unique<impl>()) {}

metrics::metrics(const config& cfg) : metrics() {
  for (const source_config& s : cfg.sources) {
    for (std::string_view outcome : scrape_outcomes) counter_at(impl_->scrapes, s.name, outcome);
    histogram_at(impl_->scrape_durations, s.name);
  }
  for (const notifier_config& n : cfg.notifiers) {
    for (std::string_view outcome : notification_outcomes)
      counter_at(impl_->notifications, n.name, outcome);
  }
}

metrics::~metrics() = default;

void metrics::count_scrape(std::string_view source, std::string_view outcome,
                           std::chrono::duration<double> took) {
  std::lock_guard lock(impl_->mutex);
  ++counter_at(impl_->scrapes, source, outcome);
  histogram_at(impl_->scrape_durations, source).observe(scrape_buckets, took.count());
}

void metrics::count_notification(std::string_view notifier, std::string_view outcome) {
  std::lock_guard lock(impl_->mutex);
  ++counter_at(impl_->notifications, notifier, outcome);
}

void metrics::count_request(std::string_view route, unsigned status,
                            std::chrono::duration<double> took) {
  char digits[16];
  const auto end = fmt::format_to_n(digits, sizeof digits, "{}", status);
  const std::string_view code(digits, end.size);
  std::lock_guard lock(impl_->mutex);
  ++counter_at(impl_->requests, route, code);
  histogram_at(impl_->request_durations, route).observe(request_buckets, took.count());
}

void metrics::count_connection(connection_event event) noexcept {
  impl_->connection_events[static_cast<std::size_t>(event)].fetch_add(1, std::memory_order_relaxed);
}

void metrics::watch_connections(std::function<std::size_t()> open) {
  impl_->open_connections = std::move(open);
}

void metrics::write(exposition_writer& w) const {
  std::lock_guard lock(impl_->mutex);
  constexpr std::string_view scrapes = "somrated_scrapes_total";
  w.family(scrapes, "counter",
           "Scrapes of each source by outcome: ok, not_modified (HTTP 304), held (a jump "
           "waiting for confirmation) or error.");
  for (const auto& [key, n] : impl_->scrapes)
    w.sample(scrapes, {{"source", key.first}, {"outcome", key.second}}, n);

  constexpr std::string_view scrape_time = "somrated_scrape_duration_seconds";
  w.family(scrape_time, "histogram",
           "Time from the start of a source's fetch until its rates were stored.");
  for (const auto& [source, h] : impl_->scrape_durations)
    w.histogram(scrape_time, {{"source", source}}, scrape_buckets, h.counts, h.sum);

  constexpr std::string_view notifications = "somrated_notifications_total";
  w.family(notifications, "counter",
           "Notification delivery attempts by notifier and outcome: delivered, retry (to be "
           "tried again) or failed (given up).");
  for (const auto& [key, n] : impl_->notifications)
    w.sample(notifications, {{"notifier", key.first}, {"outcome", key.second}}, n);

  constexpr std::string_view requests = "somrated_http_requests_total";
  w.family(requests, "counter", "HTTP requests answered, by route pattern and status code.");
  for (const auto& [key, n] : impl_->requests)
    w.sample(requests, {{"route", key.first}, {"code", key.second}}, n);

  constexpr std::string_view request_time = "somrated_http_request_duration_seconds";
  w.family(request_time, "histogram",
           "Time from a request's arrival until its answer was ready, by route pattern.");
  for (const auto& [route, h] : impl_->request_durations)
    w.histogram(request_time, {{"route", route}}, request_buckets, h.counts, h.sum);

  if (impl_->open_connections) {
    constexpr std::string_view open = "somrated_http_connections";
    w.family(open, "gauge", "HTTP connections open now.");
    w.sample(open, {}, static_cast<std::uint64_t>(impl_->open_connections()));
  }

  constexpr std::string_view events = "somrated_http_connection_events_total";
  w.family(events, "counter",
           "What the HTTP listener did under connection pressure: accept_failed (accept() "
           "failed, e.g. out of file descriptors), evicted (an idle or stalled connection "
           "closed to admit a new one at max_connections) or rejected (a new connection "
           "answered 503 because max_connections busy ones were open).");
  constexpr std::array<std::pair<connection_event, std::string_view>, 3> names{{
      {connection_event::accept_failed, "accept_failed"},
      {connection_event::evicted, "evicted"},
      {connection_event::rejected, "rejected"},
  }};
  for (const auto& [event, name] : names) {
    w.sample(
        events, {{"event", name}},
        impl_->connection_events[static_cast<std::size_t>(event)].load(std::memory_order_relaxed));
  }
}

}  // namespace somrated
