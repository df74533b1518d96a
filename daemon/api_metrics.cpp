#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "api_common.hpp"
#include "somrated/metrics.hpp"
#include "somrated/store.hpp"
#include "somrated/version.hpp"

namespace somrated::api_detail {

namespace {

/// t as Unix seconds, exactly, with the milliseconds as decimals when there are any
/// ("1749513600", "1749513600.25").
std::string unix_seconds(timestamp t) {
  const auto whole = std::chrono::floor<std::chrono::seconds>(t);
  const auto ms = (t - whole).count();
  std::string text = fmt::format("{}.{:03}", whole.time_since_epoch().count(), ms);
  while (text.back() == '0') text.pop_back();
  if (text.back() == '.') text.pop_back();
  return text;
}

/// What the store says about one configured source, read before anything is written so
/// each family's lines stay together.
struct source_reading {
  const source_config* cfg;
  std::vector<rate_point> rates;  ///< The values in force, by currency.
  source_health health;
};

/// The alert phases, in the order their series are written.
constexpr alert_phase phases[] = {alert_phase::inactive, alert_phase::pending, alert_phase::firing,
                                  alert_phase::resolved};

/// The outbox statuses, in the order their series are written.
constexpr delivery_status statuses[] = {delivery_status::pending, delivery_status::delivered,
                                        delivery_status::failed};

/// Writes the gauges read from the store at scrape time.
void write_store_gauges(const request_context& ctx, exposition_writer& w) {
  store& db = *ctx.db;
  std::vector<source_reading> sources;
  for (const source_config& s : ctx.cfg.sources)
    sources.push_back({&s, db.latest(s.name), db.health(s.name)});

  constexpr std::string_view rate = "somrated_rate";
  w.family(rate, "gauge",
           "The rate in force: som (KGS) per 1 unit of currency, exactly as the source "
           "published it.");
  for (const source_reading& s : sources)
    for (const rate_point& p : s.rates)
      w.sample(rate, {{"currency", p.currency}, {"source", s.cfg->name}}, p.rate.text());

  constexpr std::string_view changed = "somrated_rate_change_timestamp_seconds";
  w.family(changed, "gauge", "When the rate in force first appeared, as Unix time.");
  for (const source_reading& s : sources)
    for (const rate_point& p : s.rates)
      w.sample(changed, {{"currency", p.currency}, {"source", s.cfg->name}}, unix_seconds(p.since));

  constexpr std::string_view success = "somrated_source_last_success_timestamp_seconds";
  w.family(success, "gauge",
           "When the source was last scraped successfully, as Unix time; absent until it has "
           "been.");
  for (const source_reading& s : sources)
    if (s.health.last_success)
      w.sample(success, {{"source", s.cfg->name}}, unix_seconds(*s.health.last_success));

  constexpr std::string_view up = "somrated_source_up";
  w.family(up, "gauge",
           "1 when the source's last scrape succeeded, 0 when it failed or none has ended yet.");
  for (const source_reading& s : sources) {
    const bool ok = s.health.last_attempt && s.health.consecutive_failures == 0;
    w.sample(up, {{"source", s.cfg->name}}, ok ? "1" : "0");
  }

  constexpr std::string_view stale = "somrated_source_stale";
  w.family(stale, "gauge",
           "1 when the source has not been scraped successfully within 3 of its intervals, "
           "else 0.");
  for (const source_reading& s : sources) {
    const bool is = is_stale(*s.cfg, s.health.last_success, ctx.now);
    w.sample(stale, {{"source", s.cfg->name}}, is ? "1" : "0");
  }

  constexpr std::string_view alert = "somrated_alert_state";
  w.family(alert, "gauge",
           "1 for the state each alert rule is in and 0 for the others (inactive, pending, "
           "firing, resolved).");
  for (const alert_state& st : db.alert_states())
    for (const alert_phase p : phases)
      w.sample(alert, {{"alert", st.rule}, {"state", phase_name(p)}}, st.phase == p ? "1" : "0");

  constexpr std::string_view outbox = "somrated_outbox_deliveries";
  w.family(outbox, "gauge",
           "Notification deliveries in the outbox by status: pending (to be sent or retried), "
           "delivered, or failed.");
  const auto counts = db.delivery_counts();
  for (const delivery_status st : statuses) {
    auto it =
        std::find_if(counts.begin(), counts.end(), [&](const auto& c) { return c.first == st; });
    const auto n = static_cast<std::uint64_t>(it == counts.end() ? 0 : it->second);
    w.sample(outbox, {{"status", delivery_status_name(st)}}, n);
  }
}

}  // namespace

http_response handle_metrics(const request_context& ctx) {
  std::string out;
  out.reserve(16 * 1024);
  exposition_writer w(out);
  w.family("somrated_build_info", "gauge",
           "Always 1; the version label names the running release.");
  w.sample("somrated_build_info", {{"version", somrated::version}}, "1");
  write_store_gauges(ctx, w);
  if (ctx.stats) ctx.stats->write(w);
  return make_response(ctx.req.version(), http::status::ok, exposition_content_type,
                       std::move(out));
}

}  // namespace somrated::api_detail
