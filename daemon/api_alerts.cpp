#include <algorithm>
#include <cctype>
#include <charconv>
#include <map>
#include <utility>

#include <fmt/format.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include "api_common.hpp"
#include "somrated/alert_engine.hpp"
#include "somrated/alert_rule.hpp"
#include "somrated/store.hpp"

namespace somrated::api_detail {

namespace {

/// Events returned when `limit` is not given, and the most one request may ask for.
constexpr std::size_t default_event_limit = 100;
constexpr std::size_t max_event_limit = 1000;

/// Writes a Boost.JSON value through w (rule definitions are stored as JSON).
void write_json(json_writer& w, const boost::json::value& v) {
  switch (v.kind()) {
    case boost::json::kind::null:
      w.null();
      break;
    case boost::json::kind::bool_:
      w.value(v.get_bool());
      break;
    case boost::json::kind::int64:
      w.value(v.get_int64());
      break;
    case boost::json::kind::uint64:
      w.value(v.get_uint64());
      break;
    case boost::json::kind::double_:
      // Rule definitions hold decimals as strings; a double here is a bug upstream.
      w.value(fmt::format("{}", v.get_double()));
      break;
    case boost::json::kind::string:
      w.value(std::string_view(v.get_string()));
      break;
    case boost::json::kind::array:
      w.begin_array();
      for (const auto& x : v.get_array()) write_json(w, x);
      w.end_array();
      break;
    case boost::json::kind::object:
      w.begin_object();
      for (const auto& [k, x] : v.get_object()) {
        w.key(k);
        write_json(w, x);
      }
      w.end_object();
      break;
  }
}

/// The `{"error":{code, field, message}}` answer to a rule body that cannot be used.
http_response invalid_rule(const request_context& ctx, const rule_error& e) {
  json_writer w(ctx.pretty);
  w.begin_object().key("error").begin_object();
  w.key("code").value("invalid_rule");
  w.key("field").value(e.field);
  w.key("message").value(e.message);
  w.end_object().end_object();
  return json_response(ctx, http::status::bad_request, std::move(w).release());
}

/// The alert engine, or 503 when this API has none (tests of the read side).
alert_engine& engine_of(const request_context& ctx) {
  if (!ctx.engine)
    throw api_error(http::status::service_unavailable, "alerts_unavailable",
                    "alert rules cannot be changed here");
  return *ctx.engine;
}

/// Tells the dispatcher that events may be waiting.
void notify_changed(const request_context& ctx) {
  if (ctx.alerts_changed && *ctx.alerts_changed) (*ctx.alerts_changed)();
}

/// Writes one delivery's summary (without attempts).
void write_delivery_summary(json_writer& w, const delivery& d) {
  w.begin_object();
  w.key("notifier").value(d.notifier);
  w.key("status").value(delivery_status_name(d.status));
  w.key("attempts").value(d.attempts);
  w.key("last_error");
  if (d.last_error.empty())
    w.null();
  else
    w.value(d.last_error);
  w.end_object();
}

/// Writes one rule with its state and last event.
void write_alert(json_writer& w, store& db, const alert_rule& rule, const alert_state* state,
                 std::string_view broken) {
  w.begin_object();
  w.key("name").value(rule.name);
  w.key("origin").value(rule.from_config ? "config" : "api");
  w.key("rule");
  write_json(w, boost::json::parse(alert_rule_to_json(rule)));
  w.key("state").value(broken.empty() ? phase_name(state ? state->phase : alert_phase::inactive)
                                      : std::string_view("broken"));
  if (!broken.empty()) w.key("error").value(broken);
  w.key("since");
  write_time(w, state ? std::optional<timestamp>(state->since) : std::nullopt);
  w.key("started_at");
  write_time(w, state ? state->started_at : std::nullopt);
  w.key("value");
  if (state && !state->value.empty())
    w.value(state->value);
  else
    w.null();
  w.key("evaluated_at");
  write_time(w, state ? state->evaluated_at : std::nullopt);
  w.key("last_notified");
  write_time(w, state ? state->last_notified : std::nullopt);
  w.key("last_event");
  if (auto last = db.last_event(rule.name)) {
    w.begin_object();
    w.key("event_id").value(last->event.event_id);
    w.key("kind").value(event_kind_name(last->event.kind));
    w.key("at").value(format_rfc3339(last->event.at));
    w.key("deliveries").begin_array();
    for (const auto& [d, attempts] : last->deliveries) write_delivery_summary(w, d);
    w.end_array();
    w.end_object();
  } else {
    w.null();
  }
  w.end_object();
}

/// The persisted state of rule name, if any.
std::optional<alert_state> state_of(store& db, std::string_view name) {
  for (alert_state& s : db.alert_states())
    if (s.rule == name) return std::move(s);
  return std::nullopt;
}

/// Runs write and returns what it returns. A database that may not grow (full disk,
/// [storage] max_size) answers 507 Insufficient Storage with the store's message: the
/// write was rolled back whole, and unlike a 503 a quick retry will not help until an
/// operator makes room.
template <class Write>
decltype(auto) storing(Write&& write) {
  try {
    return std::forward<Write>(write)();
  } catch (const store_full_error& e) {
    throw api_error(http::status::insufficient_storage, "insufficient_storage", e.what());
  }
}

/// Parses `limit` for the events endpoint.
std::size_t parse_limit(std::optional<std::string_view> text) {
  if (!text) return default_event_limit;
  std::size_t n = 0;
  const auto* end = text->data() + text->size();
  const auto res = std::from_chars(text->data(), end, n);
  if (res.ec != std::errc() || res.ptr != end || n == 0 || n > max_event_limit) {
    throw api_error(
        http::status::bad_request, "invalid_parameter",
        fmt::format("limit: {} is not a number from 1 to {}", quote(*text), max_event_limit));
  }
  return n;
}

}  // namespace

void check_bearer(const http_request& req, std::string_view token) {
  if (token.empty()) {
    throw api_error(http::status::forbidden, "writes_disabled",
                    "writes are disabled: set [server] token or token_file in the config to "
                    "allow them");
  }
  const std::string_view header = req[http::field::authorization];
  constexpr std::string_view scheme = "Bearer ";
  if (header.size() <= scheme.size() ||
      !std::equal(scheme.begin(), scheme.end(), header.begin(), [](char a, char b) {
        return std::tolower(static_cast<unsigned char>(a)) ==
               std::tolower(static_cast<unsigned char>(b));
      })) {
    throw api_error(http::status::unauthorized, "unauthorized",
                    "this request changes alerts and needs an Authorization: Bearer <token> "
                    "header");
  }
  // Comparing digests in constant time hides both the token and its length.
  const std::string_view given = header.substr(scheme.size());
  unsigned char a[SHA256_DIGEST_LENGTH];
  unsigned char b[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(given.data()), given.size(), a);
  SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(), b);
  if (CRYPTO_memcmp(a, b, sizeof a) != 0)
    throw api_error(http::status::unauthorized, "unauthorized", "the bearer token is not valid");
}

http_response handle_alerts(const request_context& ctx) {
  const rule_set set = load_rules(*ctx.db, ctx.cfg);
  std::map<std::string, alert_state, std::less<>> states;
  for (alert_state& s : ctx.db->alert_states()) states.emplace(s.rule, std::move(s));

  json_writer w(ctx.pretty);
  w.begin_object().key("alerts").begin_array();
  for (const alert_rule& rule : set.rules) {
    auto it = states.find(rule.name);
    write_alert(w, *ctx.db, rule, it == states.end() ? nullptr : &it->second, {});
  }
  for (const auto& [name, why] : set.broken) {
    alert_rule shown;
    shown.name = name;
    shown.from_config = false;
    auto it = states.find(name);
    write_alert(w, *ctx.db, shown, it == states.end() ? nullptr : &it->second, why);
  }
  w.end_array().end_object();
  return json_response(ctx, http::status::ok, std::move(w).release());
}

http_response handle_create_alert(const request_context& ctx) {
  alert_engine& engine = engine_of(ctx);
  auto parsed = alert_rule_from_json(ctx.req.body(), ctx.cfg);
  if (auto* e = std::get_if<rule_error>(&parsed)) return invalid_rule(ctx, *e);
  alert_rule rule = std::get<alert_rule>(std::move(parsed));

  // A currency the source has never published cannot fire; say so instead of storing a
  // rule that waits forever. (A source with no data yet accepts any code.)
  auto check_currency = [&](const std::string& source) {
    if (rule.currency.empty()) return true;
    const auto known = ctx.db->currencies(source);
    return known.empty() || std::find(known.begin(), known.end(), rule.currency) != known.end();
  };
  for (const std::string* source : {&rule.source, &rule.against}) {
    if (source->empty() || check_currency(*source)) continue;
    return invalid_rule(ctx, {"currency", fmt::format("currency: {} has no rates at source {}; "
                                                      "it publishes {}",
                                                      quote(rule.currency), *source,
                                                      join_or_none(ctx.db->currencies(*source)))});
  }

  const bool in_config = std::any_of(ctx.cfg.alerts.begin(), ctx.cfg.alerts.end(),
                                     [&](const alert_rule& r) { return r.name == rule.name; });
  const auto stored = ctx.db->stored_rules();
  const bool in_store = std::any_of(stored.begin(), stored.end(),
                                    [&](const auto& s) { return s.first == rule.name; });
  if (in_config || in_store) {
    throw api_error(http::status::conflict, "exists",
                    fmt::format("an alert named {} already exists{}; delete it first or pick "
                                "another name",
                                quote(rule.name), in_config ? " in the config" : ""));
  }

  storing([&] { ctx.db->save_rule(rule.name, alert_rule_to_json(rule), ctx.now); });
  // The rule is stored, so the answer is 201 whatever follows: should the database be
  // too full to take its first state, the next evaluation gives it one.
  try {
    engine.evaluate(*ctx.db, ctx.now);
  } catch (const store_full_error&) {
    // Nothing of the evaluation was kept; the rule answers as not yet evaluated.
  }
  notify_changed(ctx);

  const auto state = state_of(*ctx.db, rule.name);
  json_writer w(ctx.pretty);
  w.begin_object().key("alert");
  write_alert(w, *ctx.db, rule, state ? &*state : nullptr, {});
  w.end_object();
  auto res = json_response(ctx, http::status::created, std::move(w).release());
  res.set(http::field::location, fmt::format("/api/v1/alerts/{}", rule.name));
  return res;
}

http_response handle_delete_alert(const request_context& ctx) {
  switch (storing([&] { return engine_of(ctx).remove(*ctx.db, ctx.path_name, ctx.now); })) {
    case alert_engine::removal::removed:
      break;
    case alert_engine::removal::not_found:
      throw api_error(http::status::not_found, "not_found",
                      fmt::format("no alert named {}", quote(ctx.path_name)));
    case alert_engine::removal::read_only:
      throw api_error(http::status::conflict, "read_only",
                      fmt::format("alert {} is defined in the config file; remove it there",
                                  quote(ctx.path_name)));
  }
  notify_changed(ctx);
  auto res = make_response(ctx.req.version(), http::status::no_content, "", "");
  res.erase(http::field::content_type);
  return res;
}

http_response handle_test_alert(const request_context& ctx) {
  alert_engine& engine = engine_of(ctx);
  const rule_set set = load_rules(*ctx.db, ctx.cfg);
  auto rule = std::find_if(set.rules.begin(), set.rules.end(),
                           [&](const alert_rule& r) { return r.name == ctx.path_name; });
  if (rule == set.rules.end()) {
    for (const auto& [name, why] : set.broken) {
      if (name == ctx.path_name)
        throw api_error(http::status::conflict, "broken",
                        fmt::format("alert {} is not in use, so it cannot be tested: {}",
                                    quote(ctx.path_name), why));
    }
    throw api_error(http::status::not_found, "not_found",
                    fmt::format("no alert named {}", quote(ctx.path_name)));
  }
  if (rule->notify.empty())
    throw api_error(http::status::conflict, "no_notifiers",
                    fmt::format("alert {} has no notifiers to test; add some to its notify list",
                                quote(ctx.path_name)));
  const auto event = storing([&] { return engine.test(*ctx.db, ctx.path_name, ctx.now); });
  if (!event)
    throw api_error(http::status::not_found, "not_found",
                    fmt::format("no alert named {}", quote(ctx.path_name)));
  notify_changed(ctx);

  json_writer w(ctx.pretty);
  w.begin_object();
  w.key("event_id").value(event->event_id);
  w.key("notifiers").begin_array();
  for (const std::string& n : rule->notify) w.value(n);
  w.end_array();
  w.end_object();
  return json_response(ctx, http::status::accepted, std::move(w).release());
}

http_response handle_alert_events(const request_context& ctx) {
  std::optional<timestamp> since;
  if (auto text = ctx.param("since")) {
    since = parse_time(*text);
    if (!since)
      throw api_error(http::status::bad_request, "invalid_parameter",
                      fmt::format("since: {} is not a time such as 2025-06-10, "
                                  "2025-06-10T10:52:00Z or Unix seconds",
                                  quote(*text)));
  }
  const std::string_view rule = ctx.param("rule").value_or("");
  const std::size_t limit = parse_limit(ctx.param("limit"));
  const auto events = ctx.db->alert_events(since, rule, limit);

  json_writer w(ctx.pretty);
  w.begin_object().key("events").begin_array();
  for (const event_record& rec : events) {
    const alert_event& e = rec.event;
    w.begin_object();
    w.key("event_id").value(e.event_id);
    w.key("rule").value(e.rule);
    w.key("kind").value(event_kind_name(e.kind));
    w.key("at").value(format_rfc3339(e.at));
    w.key("starts_at").value(format_rfc3339(e.starts_at));
    w.key("ends_at");
    write_time(w, e.ends_at);
    w.key("condition").value(condition_name(e.condition));
    w.key("currency").value(e.currency);
    w.key("source").value(e.source);
    w.key("threshold").value(e.threshold);
    w.key("value").value(e.value);
    w.key("rate").value(e.rate);
    w.key("deliveries").begin_array();
    for (const auto& [d, attempts] : rec.deliveries) {
      w.begin_object();
      w.key("notifier").value(d.notifier);
      w.key("status").value(delivery_status_name(d.status));
      w.key("attempts").begin_array();
      for (const delivery_attempt& a : attempts) {
        w.begin_object();
        w.key("at").value(format_rfc3339(a.at));
        w.key("outcome").value(a.outcome);
        w.key("http_status").value(a.http_status);
        w.key("error").value(a.error);
        w.key("duration_ms").value(static_cast<std::int64_t>(a.duration.count()));
        w.end_object();
      }
      w.end_array();
      w.key("last_error");
      if (d.last_error.empty())
        w.null();
      else
        w.value(d.last_error);
      w.key("next_attempt_at");
      write_time(w, d.status == delivery_status::pending ? std::optional(d.next_attempt_at)
                                                         : std::nullopt);
      w.end_object();
    }
    w.end_array();
    w.end_object();
  }
  w.end_array().end_object();
  return json_response(ctx, http::status::ok, std::move(w).release());
}

}  // namespace somrated::api_detail
