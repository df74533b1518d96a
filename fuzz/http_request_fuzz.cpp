// libFuzzer target: the HTTP request path. Bytes from a client go through Beast's request
// parser with the limits http_session sets, one pipelined request after another, and each
// request that parses goes to the API the way the server's handler routes it (on an empty
// in-memory store); parse errors get the transport's error answer.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/parser.hpp>

#include "somrated/api.hpp"
#include "somrated/config.hpp"
#include "somrated/http_server.hpp"
#include "somrated/source_board.hpp"
#include "somrated/store.hpp"

namespace {

namespace http = somrated::http;

/// An api over the default sources and an empty in-memory store.
struct fixture {
  somrated::store db{":memory:", somrated::store::mode::read_write};
  somrated::source_board board;
  somrated::api api{std::make_shared<const somrated::config>(somrated::default_config()), board};
  somrated::server_limits limits;
};

/// Answers one parsed request as the daemon's handler would, without the writer thread:
/// routes that write are only routed, not run.
void answer(fixture& f, somrated::http_request& req) {
  (void)f.api.route_name(req);
  if (f.api.needs_writer(req)) return;
  if (f.api.handle_without_store(req)) return;
  (void)f.api.handle(req, f.db);
}

}  // namespace

/// One input: the bytes a client sends on one connection. The first byte picks the size
/// of each read (1 to 256 bytes), so split headers and pipelining are both exercised.
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static fixture f;
  if (size == 0) return 0;
  const std::size_t chunk = static_cast<std::size_t>(data[0]) + 1;
  std::string_view input(reinterpret_cast<const char*>(data + 1), size - 1);

  boost::beast::flat_buffer buffer(f.limits.header_limit + 64 * 1024);
  std::optional<http::request_parser<http::string_body>> parser;
  for (;;) {
    if (!parser) {
      parser.emplace();
      parser->header_limit(static_cast<std::uint32_t>(f.limits.header_limit));
      parser->body_limit(f.limits.body_limit);
    }
    boost::beast::error_code ec;
    std::size_t used = 0;
    if (buffer.size() > 0) {
      used = parser->put(buffer.data(), ec);
      buffer.consume(used);
    }
    if (!ec && !parser->is_done() && used > 0) continue;
    if (ec == http::error::need_more || (!ec && !parser->is_done())) {
      if (input.empty()) {
        parser->put_eof(ec);
        if (ec) (void)somrated::api::transport_error(http::status::bad_request, ec.message());
        return 0;
      }
      const auto n = std::min({chunk, input.size(), buffer.max_size() - buffer.size()});
      if (n == 0) {
        (void)somrated::api::transport_error(http::status::request_header_fields_too_large,
                                             "header too large");
        return 0;
      }
      auto space = buffer.prepare(n);
      std::copy_n(input.data(), n, static_cast<char*>(space.data()));
      buffer.commit(n);
      input.remove_prefix(n);
      continue;
    }
    if (ec) {
      (void)somrated::api::transport_error(http::status::bad_request, ec.message());
      return 0;
    }
    auto req = parser->release();
    parser.reset();
    answer(f, req);
    if (!req.keep_alive()) return 0;
  }
}
