#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace somrated::detail {

/// The URL schemes the fetcher speaks.
enum class url_scheme { http, https, file };

/// One hop of a fetch, taken apart from its URL.
struct fetch_target {
  url_scheme scheme = url_scheme::http;  ///< Which transport serves it.
  std::string url;                       ///< The URL as fetched, for fetch_result::final_url.
  std::string host;         ///< Name or address to resolve and verify, brackets removed ("::1").
  std::string port;         ///< Decimal port, from the URL or the scheme's default.
  std::string authority;    ///< host:port for error texts, IPv6 in brackets ("[::1]:443").
  std::string host_header;  ///< Host header value: host as written, port only when written.
  std::string target;       ///< Origin-form request target: path and query, at least "/".
  std::string file_path;    ///< Percent-decoded path of a file:// URL.
  bool ip_literal = false;  ///< Host is an IP address: no SNI, the certificate needs an IP SAN.
};

/// A parsed target, or the reason there is none.
struct target_or_error {
  std::optional<fetch_target> target;  ///< Set on success.
  std::string error;                   ///< Set on failure, e.g. "unsupported URL scheme 'ftp'".
};

/// Parses an absolute http://, https:// or file:// URL.
target_or_error parse_fetch_url(std::string_view url);

/// Resolves a Location header against the hop that sent it (RFC 3986 section 5).
///
/// Only http and https are acceptable redirect targets: a server must not be able to
/// send the fetcher to a file:// URL on this machine, and a verified https source must
/// not be downgraded to plain http, where the page could be altered on the way.
target_or_error resolve_redirect(const fetch_target& from, std::string_view location);

}  // namespace somrated::detail
