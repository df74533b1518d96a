#include "api_common.hpp"

#include <algorithm>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace somrated::api_detail {

std::optional<std::string_view> request_context::param(std::string_view name) const {
  auto it = params.find(name);
  if (it == params.end()) return std::nullopt;
  return std::string_view(it->second);
}

http_response make_response(unsigned version, http::status status, std::string_view content_type,
                            std::string body) {
  http_response res{status, version};
  res.set(http::field::content_type, content_type);
  res.set(http::field::cache_control, "no-cache");
  res.body() = std::move(body);
  res.prepare_payload();
  return res;
}

http_response json_response(const request_context& ctx, http::status status, std::string body) {
  return make_response(ctx.req.version(), status, "application/json; charset=utf-8",
                       std::move(body));
}

std::string error_body(std::string_view code, std::string_view message, bool pretty) {
  json_writer w(pretty);
  w.begin_object().key("error").begin_object();
  w.key("code").value(code);
  w.key("message").value(message);
  w.end_object().end_object();
  return std::move(w).release();
}

const source_config& select_source(const request_context& ctx) {
  const auto& sources = ctx.cfg.sources;
  std::optional<std::string_view> wanted = ctx.param("source");
  if (!wanted) {
    if (sources.empty()) {
      throw api_error(http::status::not_found, "unknown_source", "no sources are configured");
    }
    return sources.front();
  }
  auto it = std::find_if(sources.begin(), sources.end(),
                         [&](const source_config& s) { return s.name == *wanted; });
  if (it != sources.end()) return *it;
  std::vector<std::string> names;
  for (const auto& s : sources) names.push_back(s.name);
  throw api_error(http::status::not_found, "unknown_source",
                  fmt::format("source: no source named {}; configured: {}", quote(*wanted),
                              join_or_none(names)));
}

std::optional<std::string> currency_code(std::string_view text) {
  if (text.size() != 3) return std::nullopt;
  std::string code(text);
  for (char& c : code) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    if (c < 'A' || c > 'Z') return std::nullopt;
  }
  return code;
}

std::string parse_currency(std::string_view param, std::string_view text) {
  if (auto code = currency_code(text)) return *code;
  throw api_error(
      http::status::bad_request, "invalid_parameter",
      fmt::format("{}: expected a 3-letter currency code such as USD, got {}", param, quote(text)));
}

bool is_stale(const source_config& src, const std::optional<timestamp>& last_success,
              timestamp now) {
  return !last_success || now - *last_success > 3 * src.interval;
}

void write_time(json_writer& w, const std::optional<timestamp>& t) {
  if (t) {
    w.value(format_rfc3339(*t));
  } else {
    w.null();
  }
}

std::string quote(std::string_view text) {
  return fmt::format("\"{}\"", text);
}

std::string join_or_none(const std::vector<std::string>& items) {
  if (items.empty()) return "none";
  return fmt::format("{}", fmt::join(items, ", "));
}

}  // namespace somrated::api_detail
