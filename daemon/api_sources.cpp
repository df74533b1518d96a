#include <algorithm>

#include <boost/url/parse.hpp>
#include <boost/url/url.hpp>

#include "api_common.hpp"
#include "somrated/source_board.hpp"
#include "somrated/store.hpp"

namespace somrated::api_detail {

namespace {

/// The source URL as shown to API clients: a password in it is replaced by "***".
std::string redacted_url(std::string_view url) {
  auto parsed = boost::urls::parse_uri(url);
  if (!parsed || !parsed->has_password()) return std::string(url);
  boost::urls::url u(*parsed);
  u.set_password("***");
  return std::string(u.buffer());
}

/// The scrape log's health of source with the failures the log could not take (see
/// source_board::unlogged) laid over it: they are the newest attempts.
source_health health_of(const request_context& ctx, const std::string& source) {
  source_health h = ctx.db->health(source);
  if (const auto u = ctx.board.unlogged(source)) {
    h.last_attempt = h.last_attempt ? std::max(*h.last_attempt, u->last_at) : u->last_at;
    h.last_error_at = u->last_at;
    h.last_error = u->last_error;
    h.consecutive_failures += u->count;
  }
  return h;
}

/// Writes one source's configuration, health, schedule and held values.
void write_source(json_writer& w, const request_context& ctx, const source_config& src) {
  const source_health h = health_of(ctx, src.name);
  const std::vector<rate_point> held = ctx.db->held(src.name);

  w.begin_object();
  w.key("name").value(src.name);
  w.key("kind").value(src.kind);
  w.key("url").value(redacted_url(src.url));
  w.key("interval").value(format_duration(src.interval));
  w.key("stale").value(is_stale(src, h.last_success, ctx.now));
  w.key("last_attempt");
  write_time(w, h.last_attempt);
  w.key("last_success");
  write_time(w, h.last_success);
  w.key("last_error");
  if (h.last_error_at) {
    w.begin_object();
    w.key("at").value(format_rfc3339(*h.last_error_at));
    w.key("message").value(h.last_error);
    w.end_object();
  } else {
    w.null();
  }
  w.key("consecutive_failures").value(h.consecutive_failures);
  w.key("next_scrape");
  write_time(w, ctx.board.next_scrape(src.name));
  w.key("held").begin_array();
  for (const rate_point& p : held) {
    w.begin_object();
    w.key("currency").value(p.currency);
    w.key("rate").value(p.rate);
    w.key("since").value(format_rfc3339(p.since));
    w.end_object();
  }
  w.end_array();
  w.end_object();
}

}  // namespace

http_response handle_sources(const request_context& ctx) {
  json_writer w(ctx.pretty);
  w.begin_object();
  w.key("sources").begin_array();
  for (const source_config& src : ctx.cfg.sources) write_source(w, ctx, src);
  w.end_array();
  w.end_object();
  return json_response(ctx, http::status::ok, std::move(w).release());
}

}  // namespace somrated::api_detail
