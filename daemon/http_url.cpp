#include "http_url.hpp"
#include "excerpt.hpp"

#include <fmt/core.h>
#include <boost/asio/ip/address.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/url.hpp>
#include <boost/url/url_view.hpp>

namespace somrated::detail {

namespace {

namespace urls = boost::urls;

/// A failed parse carrying its reason.
target_or_error failure(std::string why) {
  return {std::nullopt, std::move(why)};
}

/// Fills a target from a URL that parse_uri accepted.
target_or_error from_view(const urls::url_view& u) {
  fetch_target t;
  t.url = std::string(u.buffer());
  switch (u.scheme_id()) {
    case urls::scheme::http:
      t.scheme = url_scheme::http;
      break;
    case urls::scheme::https:
      t.scheme = url_scheme::https;
      break;
    case urls::scheme::file:
      t.scheme = url_scheme::file;
      break;
    default:
      return failure(fmt::format("unsupported URL scheme '{}'", excerpt(u.scheme(), 20)));
  }

  if (t.scheme == url_scheme::file) {
    // RFC 8089: file://localhost/p and file:///p name the same local file; any other
    // host would be a remote file, which we do not fetch.
    if (u.has_authority() && !u.encoded_host().empty() && u.host() != "localhost")
      return failure(
          fmt::format("file URL with a remote host '{}'", excerpt(u.encoded_host(), 60)));
    t.file_path = u.path();
    if (t.file_path.empty()) return failure("file URL without a path");
    if (t.file_path.find('\0') != std::string::npos) return failure("file URL path contains NUL");
    return {std::move(t), {}};
  }

  if (!u.has_authority() || u.encoded_host().empty())
    return failure(fmt::format("URL without a host '{}'", excerpt(u.buffer())));
  if (u.host_type() == urls::host_type::ipvfuture)
    return failure(fmt::format("unsupported IP literal '{}'", excerpt(u.encoded_host(), 60)));
  t.host = u.host_address();
  if (t.host.find('\0') != std::string::npos) return failure("URL host contains NUL");

  boost::system::error_code ec;
  const auto address = boost::asio::ip::make_address(t.host, ec);
  t.ip_literal = !ec;

  if (u.has_port() && !u.port().empty()) {
    // port_number() wraps values above 65535, so the digits are checked here.
    const std::string_view digits = u.port();
    unsigned long value = 0;
    for (char c : digits) {
      value = value * 10 + static_cast<unsigned long>(c - '0');
      if (value > 65535) break;
    }
    if (value == 0 || value > 65535)
      return failure(fmt::format("invalid port '{}' in URL", excerpt(digits, 20)));
    t.port = std::to_string(value);
  } else {
    t.port = t.scheme == url_scheme::https ? "443" : "80";
  }

  const bool v6 = t.ip_literal && address.is_v6();
  t.authority = fmt::format("{}{}{}:{}", v6 ? "[" : "", t.host, v6 ? "]" : "", t.port);
  t.host_header = std::string(u.encoded_host());
  if (u.has_port() && !u.port().empty()) t.host_header += ":" + t.port;
  const std::string_view target = u.encoded_target();
  t.target = target.starts_with('/') ? std::string(target) : fmt::format("/{}", target);
  return {std::move(t), {}};
}

}  // namespace

target_or_error parse_fetch_url(std::string_view url) {
  auto parsed = urls::parse_uri(url);
  if (!parsed)
    return failure(fmt::format("invalid URL '{}': {}", excerpt(url), parsed.error().message()));
  return from_view(*parsed);
}

target_or_error resolve_redirect(const fetch_target& from, std::string_view location) {
  auto ref = urls::parse_uri_reference(location);
  if (!ref)
    return failure(
        fmt::format("invalid Location '{}': {}", excerpt(location), ref.error().message()));
  auto base = urls::parse_uri(from.url);
  if (!base) return failure(fmt::format("invalid URL '{}'", excerpt(from.url)));
  urls::url next;
  if (auto r = urls::resolve(*base, *ref, next); !r)
    return failure(
        fmt::format("cannot resolve Location '{}': {}", excerpt(location), r.error().message()));
  next.remove_fragment();
  const auto scheme = next.scheme_id();
  if (scheme != urls::scheme::http && scheme != urls::scheme::https)
    return failure(
        fmt::format("redirect to unsupported URL scheme '{}'", excerpt(next.scheme(), 20)));
  if (from.scheme == url_scheme::https && scheme == urls::scheme::http)
    return failure(fmt::format("refusing a redirect from https to plain http ('{}')",
                               excerpt(next.buffer(), 80)));
  return from_view(next);
}

}  // namespace somrated::detail
