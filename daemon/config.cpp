#include "somrated/config.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <map>
#include <memory>
#include <utility>

#include <fmt/format.h>
#include <toml++/toml.h>
#include <boost/asio/ip/address.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/url.hpp>

#include "alert_rule_parts.hpp"
#include "somrated/alert_rule.hpp"
#include "somrated/log.hpp"
#include "somrated/notify.hpp"
#include "somrated/time.hpp"

namespace somrated {

namespace {

using namespace std::chrono_literals;

constexpr std::string_view top_level_keys[] = {"server",   "storage",  "log",  "source",
                                               "alerting", "notifier", "alert"};
constexpr std::string_view server_keys[] = {"listen",       "max_connections", "token",
                                            "token_file",   "external_url",    "read_timeout",
                                            "idle_timeout", "write_timeout"};
constexpr std::string_view alerting_keys[] = {"evaluate_every"};
constexpr std::string_view notifier_keys[] = {"name",           "kind",     "url",
                                              "headers",        "timeout",  "give_up",
                                              "language",       "template", "resolved_template",
                                              "ca_file",        "chat_id",  "bot_token",
                                              "bot_token_file", "priority", "tags",
                                              "resend",         "command"};
constexpr std::string_view storage_keys[] = {"path", "keep_scrape_log", "max_size"};
constexpr std::string_view log_keys[] = {"level"};
constexpr std::string_view source_keys[] = {"name",    "kind",     "url",     "interval",
                                            "ca_file", "max_jump", "timeout", "max_body"};

/// What a source kind starts from when its [[source]] leaves keys out.
struct kind_defaults {
  std::string_view kind;
  std::string_view url;
  std::chrono::milliseconds interval;
};

/// The known kinds; default_config() lists them in this order.
constexpr kind_defaults source_kinds[] = {
    {"24kg", "https://24.kg/english/", 10min},
    {"nbkr", "https://www.nbkr.kg/XML/daily.xml", 1h},
};

/// Kind names alone, for suggestions.
constexpr std::string_view kind_names[] = {"24kg", "nbkr"};

constexpr std::size_t max_source_name = 32;
constexpr std::size_t max_connections_limit = 1'000'000;
constexpr double max_jump_limit = 10.0;
constexpr std::chrono::milliseconds min_interval = 1s;
constexpr std::size_t kib = 1024;
constexpr std::size_t mib = 1024 * kib;
constexpr std::size_t max_body_limit = 1024 * mib;
/// The largest [storage] max_size: SQLite's largest page count (4294967294 since 3.45)
/// times 4 KiB pages is just under 16 TiB; an older SQLite's own lower limit applies
/// where it is lower (see store::set_max_size). No somrated database comes near either.
constexpr std::uint64_t max_size_limit = std::uint64_t{16} << 40;

/// The shortest API token accepted. A token guards every write over the network, where it
/// can be guessed at leisure; 16 random characters (e.g. `openssl rand -hex 16` gives 32)
/// put guessing out of reach, while "s3cret" falls to a dictionary in seconds.
constexpr std::size_t min_token_length = 16;
/// The longest first line read from a token_file or bot_token_file.
constexpr std::size_t max_secret_length = 4096;
constexpr std::chrono::milliseconds min_evaluate_every = 1s;
constexpr std::chrono::milliseconds min_server_timeout = 1s;
constexpr std::chrono::milliseconds min_keep = 1s;
/// What to_redacted_toml puts in place of a secret.
constexpr std::string_view redacted = "REDACTED";
constexpr std::chrono::milliseconds min_resend = 1s;

/// Notifier kinds in the order of notifier_kind.
constexpr notifier_kind notifier_kinds[] = {notifier_kind::webhook, notifier_kind::alertmanager,
                                            notifier_kind::slack,   notifier_kind::telegram,
                                            notifier_kind::ntfy,    notifier_kind::exec};
/// Their names, for suggestions.
constexpr std::string_view notifier_kind_names[] = {"webhook",  "alertmanager", "slack",
                                                    "telegram", "ntfy",         "exec"};
/// The languages with built-in templates.
constexpr std::string_view languages[] = {"en", "ru", "ky"};
/// ntfy priorities by name; "1" to "5" are accepted too.
constexpr std::string_view ntfy_priorities[] = {"min", "low", "default", "high", "max", "urgent"};
/// Headers the HTTP client or the notifier itself owns; a notifier cannot set them.
constexpr std::string_view reserved_headers[] = {"host", "content-length", "transfer-encoding",
                                                 "connection", "x-somrated-event-id"};
/// Where a telegram notifier sends when it has no url.
constexpr std::string_view telegram_api = "https://api.telegram.org";

/// A TOML basic string for s: quotes, backslashes and control characters escaped, so
/// the result is always one line and reads back as s.
std::string toml_quote(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  out += '"';
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        if (u < 0x20 || u == 0x7f) {
          fmt::format_to(std::back_inserter(out), "\\u{:04X}", static_cast<unsigned>(u));
        } else {
          out += c;
        }
    }
  }
  out += '"';
  return out;
}

/// "a string", "an integer"...: the TOML type of n, for "expected X, not Y".
std::string_view type_name(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a float";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::table:
      return "a table";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::date:
      return "a date";
    case toml::node_type::time:
      return "a time";
    case toml::node_type::date_time:
      return "a date-time";
    case toml::node_type::none:
      break;
  }
  return "nothing";
}

/// True when name fits [a-z0-9_-]{1,32}.
bool valid_source_name(std::string_view name) {
  if (name.empty() || name.size() > max_source_name) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
  });
}

/// The defaults for kind, or nullptr when the kind is unknown.
const kind_defaults* find_kind(std::string_view kind) {
  for (const auto& k : source_kinds) {
    if (k.kind == kind) return &k;
  }
  return nullptr;
}

/// What is wrong with a source URL, or nullopt when it is usable.
std::optional<std::string> url_problem(std::string_view url) {
  const auto parsed = boost::urls::parse_uri(url);
  if (!parsed) {
    return fmt::format("{} is not a URL (e.g. \"https://24.kg/english/\")", toml_quote(url));
  }
  switch (parsed->scheme_id()) {
    case boost::urls::scheme::http:
    case boost::urls::scheme::https:
      if (!parsed->has_authority() || parsed->host().empty()) {
        return fmt::format("{} has no host", toml_quote(url));
      }
      return std::nullopt;
    case boost::urls::scheme::file:
      // Only the three-slash form: "file://page.html" would read "page.html" as a host.
      if (!url.starts_with("file:///") || parsed->path().size() < 2) {
        return fmt::format("{}: file:// urls must be absolute, like \"file:///var/lib/page.html\"",
                           toml_quote(url));
      }
      return std::nullopt;
    default:
      return fmt::format("{}: the scheme must be http, https or file", toml_quote(url));
  }
}

/// What is wrong with a receiver or external URL, or nullopt when it is usable: http or
/// https with a host. example shows a good one.
std::optional<std::string> http_url_problem(std::string_view url, std::string_view example) {
  const auto parsed = boost::urls::parse_uri(url);
  if (!parsed) return fmt::format("{} is not a URL (e.g. {})", toml_quote(url), example);
  if (parsed->scheme_id() != boost::urls::scheme::http &&
      parsed->scheme_id() != boost::urls::scheme::https) {
    return fmt::format("{}: the scheme must be http or https", toml_quote(url));
  }
  if (!parsed->has_authority() || parsed->host().empty()) {
    return fmt::format("{} has no host", toml_quote(url));
  }
  return std::nullopt;
}

/// True when key may appear in a [[notifier]] of kind k.
bool notifier_key_applies(std::string_view key, notifier_kind k) {
  if (key == "url" || key == "headers" || key == "ca_file") return k != notifier_kind::exec;
  if (key == "chat_id" || key == "bot_token" || key == "bot_token_file") {
    return k == notifier_kind::telegram;
  }
  if (key == "priority" || key == "tags") return k == notifier_kind::ntfy;
  if (key == "resend") return k == notifier_kind::alertmanager;
  if (key == "command") return k == notifier_kind::exec;
  return true;
}

/// The kinds a kind-specific notifier key belongs to, as a phrase.
std::string_view notifier_key_kinds(std::string_view key) {
  if (key == "url" || key == "headers" || key == "ca_file") {
    return "webhook, alertmanager, slack, telegram and ntfy";
  }
  if (key == "chat_id" || key == "bot_token" || key == "bot_token_file") return "telegram";
  if (key == "priority" || key == "tags") return "ntfy";
  if (key == "resend") return "alertmanager";
  return "exec";
}

/// What is wrong with an API token, or nullopt; never repeats the token itself.
std::optional<std::string> token_problem(std::string_view token) {
  if (!std::all_of(token.begin(), token.end(), [](char c) { return c > ' ' && c < 0x7f; })) {
    return "must be visible ASCII characters without spaces, as sent in an Authorization header";
  }
  if (token.size() < min_token_length) {
    return fmt::format(
        "is {} characters long; use at least {}, since a short token can be guessed (e.g. "
        "the output of `openssl rand -hex 16`)",
        token.size(), min_token_length);
  }
  return std::nullopt;
}

/// True for a Telegram bot token: digits, ':', then letters, digits, '_' or '-'. It goes
/// into the request path, so nothing else is allowed.
bool valid_bot_token(std::string_view token) {
  const auto colon = token.find(':');
  if (colon == 0 || colon == std::string_view::npos || colon + 1 == token.size()) return false;
  const auto id = token.substr(0, colon);
  const auto secret = token.substr(colon + 1);
  return std::all_of(id.begin(), id.end(), [](char c) { return c >= '0' && c <= '9'; }) &&
         std::all_of(secret.begin(), secret.end(), [](char c) {
           return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '-';
         });
}

/// True for a Telegram chat id: an integer ("-100123") or "@channelname".
bool valid_chat_id(std::string_view id) {
  const auto all = [](std::string_view s, auto pred) {
    return !s.empty() && std::all_of(s.begin(), s.end(), pred);
  };
  if (id.starts_with('@')) {
    return all(id.substr(1), [](char c) {
      return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
    });
  }
  if (id.starts_with('-')) id.remove_prefix(1);
  return id.size() <= 20 && all(id, [](char c) { return c >= '0' && c <= '9'; });
}

/// True for an HTTP field name (RFC 9110 token).
bool valid_header_name(std::string_view name) {
  constexpr std::string_view specials = "!#$%&'*+-.^_`|~";
  return !name.empty() && std::all_of(name.begin(), name.end(), [&](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           specials.find(c) != std::string_view::npos;
  });
}

/// True when text holds a control character other than tab (CR and LF would split a
/// header in two).
bool has_control(std::string_view text) {
  return std::any_of(text.begin(), text.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return (u < 0x20 && c != '\t') || u == 0x7f;
  });
}

/// name in lower case, for case-insensitive header comparison.
std::string lower(std::string_view name) {
  std::string out(name);
  for (auto& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

/// True when a comes before b in the file.
bool earlier(const toml::source_region& a, const toml::source_region& b) {
  return a.begin.line != b.begin.line ? a.begin.line < b.begin.line
                                      : a.begin.column < b.begin.column;
}

/// Closes a FILE*.
struct file_closer {
  void operator()(std::FILE* f) const noexcept { std::fclose(f); }
};
/// An open file, closed on every path out.
using file_ptr = std::unique_ptr<std::FILE, file_closer>;

/// Why path cannot be read as a file, or nullopt when it can.
std::optional<std::string> unreadable(const std::string& path) {
  const file_ptr f{std::fopen(path.c_str(), "rb")};
  if (!f) return std::strerror(errno);
  struct stat st {};
  if (::fstat(::fileno(f.get()), &st) != 0) return std::strerror(errno);
  if (S_ISDIR(st.st_mode)) return std::strerror(EISDIR);
  return std::nullopt;
}

/// How a name is shown in a hint: "interval" for keys, [server] or [[source]] for tables.
std::string show_name(std::string_view name, bool table) {
  if (!table) return fmt::format("\"{}\"", name);
  if (name == "source" || name == "notifier" || name == "alert") {
    return fmt::format("[[{}]]", name);
  }
  return fmt::format("[{}]", name);
}

/// "; did you mean "x"?" or " (known: "a", "b")": the hint after an unknown name.
std::string hint(std::string_view word, std::span<const std::string_view> known, bool table) {
  if (const auto best = closest_match(word, known)) {
    return fmt::format("; did you mean {}?", show_name(*best, table));
  }
  std::string list;
  for (const auto k : known) {
    if (!list.empty()) list += ", ";
    list += show_name(k, table);
  }
  return fmt::format(" (known: {})", list);
}

/// Turns a parsed TOML document into a config, naming origin, line and key in errors.
class config_reader {
 public:
  /// origin is the file name used in messages.
  explicit config_reader(std::string_view origin) : origin_(origin) {}

  /// Reads every section; throws config_error on the first problem.
  config read(const toml::table& root) const {
    config c = default_config();
    for (auto&& [key, node] : root) {
      const auto k = key.str();
      if (std::find(std::begin(top_level_keys), std::end(top_level_keys), k) !=
          std::end(top_level_keys)) {
        continue;
      }
      if (node.is_table()) {
        fail(key.source(), "",
             fmt::format("unknown table [{}]{}", k, hint(k, top_level_keys, true)));
      }
      if (node.is_array_of_tables()) {
        fail(key.source(), "",
             fmt::format("unknown table [[{}]]{}", k, hint(k, top_level_keys, true)));
      }
      fail(key.source(), "",
           fmt::format("unknown key \"{}\" outside any table{}", k, hint(k, top_level_keys, true)));
    }
    if (const auto* n = root.get("server")) read_server(*n, c.server);
    if (const auto* n = root.get("storage")) read_storage(*n, c.storage);
    if (const auto* n = root.get("log")) read_log(*n, c);
    if (const auto* n = root.get("source")) c.sources = read_sources(*n);
    if (const auto* n = root.get("alerting")) read_alerting(*n, c.alerting);
    // Rules refer to sources and notifiers, so those come first.
    if (const auto* n = root.get("notifier")) c.notifiers = read_notifiers(*n);
    if (const auto* n = root.get("alert")) c.alerts = read_alerts(*n, c);
    return c;
  }

 private:
  /// Throws config_error as "origin:line: path: message".
  [[noreturn]] void fail(const toml::source_region& where, std::string_view path,
                         std::string_view message) const {
    std::string out{origin_};
    if (where.begin.line > 0) fmt::format_to(std::back_inserter(out), ":{}", where.begin.line);
    out += ": ";
    if (!path.empty()) fmt::format_to(std::back_inserter(out), "{}: ", path);
    out += message;
    throw config_error(out);
  }

  /// Rejects keys of t that are not in known, suggesting the closest.
  void check_keys(const toml::table& t, std::span<const std::string_view> known,
                  std::string_view section) const {
    for (auto&& [key, node] : t) {
      const auto k = key.str();
      if (std::find(known.begin(), known.end(), k) != known.end()) continue;
      fail(key.source(), "",
           fmt::format("unknown key \"{}\" in {}{}", k, section, hint(k, known, false)));
    }
  }

  /// n as a table, or an error explaining the expected header.
  const toml::table& table(const toml::node& n, std::string_view path) const {
    if (const auto* t = n.as_table()) return *t;
    fail(n.source(), path, fmt::format("expected a table [{}], not {}", path, type_name(n)));
  }

  /// n as a string; example shows what a good value looks like.
  std::string string(const toml::node& n, std::string_view path, std::string_view example) const {
    if (const auto* s = n.as_string()) return s->get();
    fail(n.source(), path, fmt::format("expected a string like {}, not {}", example, type_name(n)));
  }

  /// n as a duration string ("10m").
  std::chrono::milliseconds duration(const toml::node& n, std::string_view path,
                                     std::string_view example) const {
    const auto text = string(n, path, toml_quote(example));
    const auto d = parse_duration(text);
    if (!d) {
      fail(n.source(), path,
           fmt::format("{} is not a duration (use 30s, 10m, 1h, 1d)", toml_quote(text)));
    }
    return *d;
  }

  /// `[server]`.
  void read_server(const toml::node& n, server_config& out) const {
    const auto& t = table(n, "server");
    check_keys(t, server_keys, "[server]");
    if (const auto* v = t.get("listen")) {
      out.listen = string(*v, "server.listen", "\"127.0.0.1:8080\"");
      if (const auto problem = listen_problem(out.listen)) {
        fail(v->source(), "server.listen", *problem);
      }
    }
    if (const auto* v = t.get("max_connections")) {
      const auto* i = v->as_integer();
      if (i == nullptr) {
        fail(v->source(), "server.max_connections",
             fmt::format("expected an integer like 1024, not {}", type_name(*v)));
      }
      const std::int64_t value = i->get();
      if (value < 1 || static_cast<std::uint64_t>(value) > max_connections_limit) {
        fail(v->source(), "server.max_connections",
             fmt::format("{} is out of range (1 to {})", value, max_connections_limit));
      }
      out.max_connections = static_cast<std::size_t>(value);
    }
    read_server_timeout(t, "read_timeout", out.read_timeout);
    read_server_timeout(t, "idle_timeout", out.idle_timeout);
    read_server_timeout(t, "write_timeout", out.write_timeout);
    read_token(t, out);
    if (const auto* v = t.get("external_url")) {
      out.external_url = string(*v, "server.external_url", "\"http://rates.example:8080\"");
      if (!out.external_url.empty()) {
        if (const auto problem =
                http_url_problem(out.external_url, "\"http://rates.example:8080\"")) {
          fail(v->source(), "server.external_url", *problem);
        }
        const auto parsed = boost::urls::parse_uri(out.external_url);
        if (parsed->has_query() || parsed->has_fragment()) {
          fail(v->source(), "server.external_url",
               fmt::format("{}: links are built by appending paths, so it cannot have a query "
                           "or fragment",
                           toml_quote(out.external_url)));
        }
      }
    }
  }

  /// One of the `[server]` deadlines, if given: a duration of at least 1s.
  void read_server_timeout(const toml::table& t, std::string_view key,
                           std::chrono::milliseconds& out) const {
    const auto* v = t.get(key);
    if (v == nullptr) return;
    const auto path = fmt::format("server.{}", key);
    out = duration(*v, path, format_duration(out));
    if (out < min_server_timeout) {
      fail(v->source(), path, fmt::format("{} is too short (minimum 1s)", format_duration(out)));
    }
  }

  /// `token` or `token_file` of `[server]`; an empty token leaves API writes disabled.
  void read_token(const toml::table& t, server_config& out) const {
    const auto* inline_token = t.get("token");
    const auto* file = t.get("token_file");
    if (inline_token != nullptr && file != nullptr) {
      const bool file_later = earlier(inline_token->source(), file->source());
      fail((file_later ? file : inline_token)->source(),
           file_later ? "server.token_file" : "server.token", "give token or token_file, not both");
    }
    if (inline_token != nullptr) {
      out.token = string(*inline_token, "server.token", "\"<at least 16 characters>\"");
      if (!out.token.empty()) {
        if (const auto problem = token_problem(out.token)) {
          fail(inline_token->source(), "server.token", fmt::format("the token {}", *problem));
        }
      }
    }
    if (file != nullptr) {
      out.token_file = string(*file, "server.token_file", "\"/etc/somrated/token\"");
      out.token = secret_file(*file, "server.token_file", out.token_file);
      if (const auto problem = token_problem(out.token)) {
        fail(file->source(), "server.token_file",
             fmt::format("the token in {} {}", toml_quote(out.token_file), *problem));
      }
    }
  }

  /// The first line of file, trailing whitespace trimmed: a token kept out of the config.
  std::string secret_file(const toml::node& n, std::string_view path,
                          const std::string& file) const {
    if (file.empty()) fail(n.source(), path, "must name a file, like \"/etc/somrated/token\"");
    if (const auto why = unreadable(file)) {
      fail(n.source(), path, fmt::format("cannot read {}: {}", toml_quote(file), *why));
    }
    const file_ptr f{std::fopen(file.c_str(), "rb")};
    if (!f) {
      fail(n.source(), path,
           fmt::format("cannot read {}: {}", toml_quote(file), std::strerror(errno)));
    }
    std::string line;
    for (int ch; (ch = std::fgetc(f.get())) != EOF && ch != '\n';) {
      if (line.size() == max_secret_length) {
        fail(n.source(), path,
             fmt::format("the first line of {} is longer than {} bytes", toml_quote(file),
                         max_secret_length));
      }
      line.push_back(static_cast<char>(ch));
    }
    if (std::ferror(f.get())) {
      fail(n.source(), path,
           fmt::format("cannot read {}: {}", toml_quote(file), std::strerror(errno)));
    }
    while (!line.empty() && std::string_view(" \t\r\v\f").find(line.back()) != std::string::npos) {
      line.pop_back();
    }
    if (line.empty()) {
      fail(n.source(), path, fmt::format("the first line of {} is empty", toml_quote(file)));
    }
    return line;
  }

  /// `[alerting]`.
  void read_alerting(const toml::node& n, alerting_config& out) const {
    const auto& t = table(n, "alerting");
    check_keys(t, alerting_keys, "[alerting]");
    if (const auto* v = t.get("evaluate_every")) {
      out.evaluate_every = duration(*v, "alerting.evaluate_every", "15s");
      if (out.evaluate_every < min_evaluate_every) {
        fail(v->source(), "alerting.evaluate_every",
             fmt::format("{} is too short (minimum 1s)", format_duration(out.evaluate_every)));
      }
    }
  }

  /// `[storage]`.
  void read_storage(const toml::node& n, storage_config& out) const {
    const auto& t = table(n, "storage");
    check_keys(t, storage_keys, "[storage]");
    if (const auto* v = t.get("path")) {
      out.path = string(*v, "storage.path", "\"./somrated.db\"");
      if (out.path.empty()) fail(v->source(), "storage.path", "must not be empty");
    }
    if (const auto* v = t.get("keep_scrape_log")) out.keep_scrape_log = keep_duration(*v);
    if (const auto* v = t.get("max_size")) out.max_size = max_size(*v);
  }

  /// `max_size`: a size with a binary unit, a number of bytes, or "0" (or 0) for no
  /// limit. A decimal unit ("64MB") is refused with the binary one it probably meant,
  /// since the two differ by 5 % at MB and 10 % at TB.
  std::uint64_t max_size(const toml::node& n) const {
    constexpr std::string_view path = "storage.max_size";
    std::optional<std::uint64_t> size;
    std::string shown;
    if (const auto* i = n.as_integer()) {
      shown = std::to_string(i->get());
      if (i->get() >= 0 && static_cast<std::uint64_t>(i->get()) <= max_size_limit)
        size = static_cast<std::uint64_t>(i->get());
    } else if (const auto* str = n.as_string()) {
      shown = toml_quote(str->get());
      size = parse_max_size(str->get());
      if (!size) {
        if (const auto hint = binary_unit_hint(str->get())) {
          fail(n.source(), path,
               fmt::format("{} is not a size: the units are B, KiB, MiB, GiB and TiB (1KiB = "
                           "1024 bytes); did you mean {}?",
                           shown, toml_quote(*hint)));
        }
      }
    } else {
      fail(n.source(), path,
           fmt::format("expected a size like \"64MiB\" (or \"0\" for no limit), not {}",
                       type_name(n)));
    }
    if (!size) {
      fail(n.source(), path,
           fmt::format("{} is not a size from 1B to 16TiB (use 512KiB, 64MiB, 2GiB or a number "
                       "of bytes; \"0\" means no limit)",
                       shown));
    }
    return *size;
  }

  /// For "64MB", "64mb" or "2G": the binary-unit spelling "64MiB" / "2GiB"; nullopt when
  /// text is not digits followed by a decimal or bare unit letter.
  static std::optional<std::string> binary_unit_hint(std::string_view text) {
    std::size_t digits = 0;
    while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
    if (digits == 0) return std::nullopt;
    std::string unit(text.substr(digits));
    for (char& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    if (unit.size() == 2 && unit[1] == 'B') unit.pop_back();
    if (unit.size() != 1 || std::string_view("KMGT").find(unit[0]) == std::string_view::npos)
      return std::nullopt;
    return fmt::format("{}{}iB", text.substr(0, digits), unit[0]);
  }

  /// `keep_scrape_log`: a duration, or "0" (or 0) for forever.
  std::chrono::milliseconds keep_duration(const toml::node& n) const {
    constexpr std::string_view path = "storage.keep_scrape_log";
    if (const auto* i = n.as_integer(); i != nullptr && i->get() == 0) return {};
    const auto* text = n.as_string();
    if (text == nullptr) {
      fail(n.source(), path,
           fmt::format("expected a duration like \"90d\" (or \"0\" to keep forever), not {}",
                       type_name(n)));
    }
    if (text->get() == "0") return {};
    const auto d = parse_duration(text->get());
    if (!d) {
      fail(n.source(), path,
           fmt::format("{} is not a duration (use 90d, 12w, 720h; \"0\" keeps the log forever)",
                       toml_quote(text->get())));
    }
    if (*d < min_keep) {
      fail(n.source(), path,
           fmt::format("{} is too short (minimum 1s; \"0\" keeps the log forever)",
                       format_duration(*d)));
    }
    return *d;
  }

  /// `[log]`; the level is stored under its canonical name ("warn" becomes "warning").
  void read_log(const toml::node& n, config& out) const {
    const auto& t = table(n, "log");
    check_keys(t, log_keys, "[log]");
    if (const auto* v = t.get("level")) {
      const auto text = string(*v, "log.level", "\"info\"");
      const auto level = parse_log_level(text);
      if (!level) {
        fail(v->source(), "log.level",
             fmt::format("{} is not a level (use error, warning, notice, info, debug)",
                         toml_quote(text)));
      }
      out.log_level = std::string(to_string(*level));
    }
  }

  /// Every `[[source]]`, with names checked for uniqueness.
  std::vector<source_config> read_sources(const toml::node& n) const {
    const auto* array = n.as_array();
    if (n.is_table()) {
      fail(n.source(), "source", "write [[source]] (double brackets), one per source");
    }
    if (array != nullptr && array->empty()) {
      fail(n.source(), "source", "at least one [[source]] is required");
    }
    if (array == nullptr || !array->is_array_of_tables()) {
      fail(n.source(), "source", fmt::format("expected [[source]] tables, not {}", type_name(n)));
    }

    std::vector<source_config> out;
    std::map<std::string, std::pair<std::size_t, std::uint32_t>> seen;  // name -> index, line
    for (std::size_t i = 0; i < array->size(); ++i) {
      const auto& t = *array->get(i)->as_table();
      out.push_back(read_source(t, i));
      const auto& name = out.back().name;
      const auto* name_node = t.get("name");
      const auto& where = name_node != nullptr ? name_node->source() : t.source();
      const auto [it, fresh] = seen.try_emplace(name, i, where.begin.line);
      if (!fresh) {
        fail(where, fmt::format("source[{}].name", i),
             fmt::format("duplicate name {} (source[{}], line {}, has it too){}", toml_quote(name),
                         it->second.first, it->second.second,
                         name_node == nullptr ? "; the name defaults to the kind, so give each "
                                                "[[source]] of the same kind a name"
                                              : ""));
      }
    }
    return out;
  }

  /// One `[[source]]`: kind first, since the other defaults depend on it.
  source_config read_source(const toml::table& t, std::size_t index) const {
    check_keys(t, source_keys, "[[source]]");
    const auto path = [index](std::string_view key) {
      return fmt::format("source[{}].{}", index, key);
    };

    source_config s;
    const auto* kind_node = t.get("kind");
    if (kind_node == nullptr) {
      fail(t.source(), fmt::format("source[{}]", index),
           "kind is required (one of \"24kg\", \"nbkr\")");
    }
    s.kind = string(*kind_node, path("kind"), "\"24kg\"");
    const auto* kind = find_kind(s.kind);
    if (kind == nullptr) {
      std::string message = fmt::format("unknown kind {}", toml_quote(s.kind));
      if (const auto best = closest_match(s.kind, kind_names)) {
        message += fmt::format("; did you mean \"{}\"?", *best);
      }
      message += " (valid kinds: \"24kg\", \"nbkr\")";
      fail(kind_node->source(), path("kind"), message);
    }
    s.name = s.kind;
    s.url = kind->url;
    s.interval = kind->interval;

    if (const auto* v = t.get("name")) {
      s.name = string(*v, path("name"), "\"24kg\"");
      if (!valid_source_name(s.name)) {
        fail(v->source(), path("name"),
             fmt::format("{} is not a valid name (1 to 32 of a-z, 0-9, '_' and '-')",
                         toml_quote(s.name)));
      }
    }
    if (const auto* v = t.get("url")) {
      s.url = string(*v, path("url"), "\"https://24.kg/english/\"");
      if (const auto problem = url_problem(s.url)) fail(v->source(), path("url"), *problem);
    }
    if (const auto* v = t.get("interval")) {
      s.interval = duration(*v, path("interval"), "10m");
      if (s.interval < min_interval) {
        fail(v->source(), path("interval"),
             fmt::format("{} is too short (minimum 1s)", format_duration(s.interval)));
      }
    }
    if (const auto* v = t.get("ca_file")) {
      s.ca_file = string(*v, path("ca_file"), "\"/etc/somrated/ca.pem\"");
      if (!s.ca_file.empty()) {
        if (const auto why = unreadable(s.ca_file)) {
          fail(v->source(), path("ca_file"),
               fmt::format("cannot read {}: {}", toml_quote(s.ca_file), *why));
        }
      }
    }
    if (const auto* v = t.get("max_jump")) {
      double value = 0;
      if (const auto* f = v->as_floating_point()) {
        value = f->get();
      } else if (const auto* i = v->as_integer()) {
        value = static_cast<double>(i->get());
      } else {
        fail(v->source(), path("max_jump"),
             fmt::format("expected a number like 0.25, not {}", type_name(*v)));
      }
      // The negated form also rejects NaN.
      if (!(value >= 0.0 && value <= max_jump_limit)) {
        fail(v->source(), path("max_jump"),
             fmt::format("{} is out of range (0 to 10; 0 disables the check)", value));
      }
      s.max_jump = value;
    }
    if (const auto* v = t.get("timeout")) s.timeout = duration(*v, path("timeout"), "20s");
    if (const auto* v = t.get("max_body")) {
      std::optional<std::size_t> size;
      if (const auto* i = v->as_integer()) {
        if (i->get() > 0 && static_cast<std::uint64_t>(i->get()) <= max_body_limit) {
          size = static_cast<std::size_t>(i->get());
        }
      } else if (const auto* str = v->as_string()) {
        size = parse_size(str->get());
      } else {
        fail(v->source(), path("max_body"),
             fmt::format("expected a size like \"8MiB\" or a number of bytes, not {}",
                         type_name(*v)));
      }
      if (!size) {
        const auto shown = v->is_string() ? toml_quote(v->as_string()->get())
                                          : std::to_string(v->as_integer()->get());
        fail(v->source(), path("max_body"),
             fmt::format("{} is not a size from 1B to 1024MiB (use 512KiB, 8MiB or bytes)", shown));
      }
      s.max_body = *size;
    }
    return s;
  }

  /// The `[[name]]` tables under n; an empty array is fine (none of them).
  const toml::array& tables(const toml::node& n, std::string_view name,
                            std::string_view one_per) const {
    if (n.is_table()) {
      fail(n.source(), name,
           fmt::format("write [[{}]] (double brackets), one per {}", name, one_per));
    }
    const auto* array = n.as_array();
    if (array == nullptr || (!array->empty() && !array->is_array_of_tables())) {
      fail(n.source(), name, fmt::format("expected [[{}]] tables, not {}", name, type_name(n)));
    }
    return *array;
  }

  /// Fails when the name of table t (section[index]) was seen before in its section.
  void check_unique(std::map<std::string, std::pair<std::size_t, std::uint32_t>>& seen,
                    const std::string& name, const toml::table& t, std::string_view section,
                    std::size_t index) const {
    const auto* name_node = t.get("name");
    const auto& where = name_node != nullptr ? name_node->source() : t.source();
    const auto [it, fresh] = seen.try_emplace(name, index, where.begin.line);
    if (!fresh) {
      fail(where, fmt::format("{}[{}].name", section, index),
           fmt::format("duplicate name {} ({}[{}], line {}, has it too)", toml_quote(name), section,
                       it->second.first, it->second.second));
    }
  }

  /// value, or a failure at n naming path with the message that came instead.
  template <class T>
  T take(const toml::node& n, std::string_view path, std::variant<T, std::string> value) const {
    if (auto* message = std::get_if<std::string>(&value)) fail(n.source(), path, *message);
    return std::get<T>(std::move(value));
  }

  /// n as an array of strings; example shows a good one.
  std::vector<std::string> strings(const toml::node& n, std::string_view path,
                                   std::string_view example) const {
    const auto* array = n.as_array();
    if (array == nullptr) {
      fail(n.source(), path,
           fmt::format("expected an array of strings like {}, not {}", example, type_name(n)));
    }
    std::vector<std::string> out;
    for (const auto& item : *array) {
      const auto* s = item.as_string();
      if (s == nullptr) {
        fail(item.source(), path,
             fmt::format("expected an array of strings like {}, but an element is {}", example,
                         type_name(item)));
      }
      out.push_back(s->get());
    }
    return out;
  }

  /// Every `[[notifier]]`, with names checked for uniqueness.
  std::vector<notifier_config> read_notifiers(const toml::node& n) const {
    const auto& array = tables(n, "notifier", "receiver");
    std::vector<notifier_config> out;
    std::map<std::string, std::pair<std::size_t, std::uint32_t>> seen;
    for (std::size_t i = 0; i < array.size(); ++i) {
      const auto& t = *array.get(i)->as_table();
      out.push_back(read_notifier(t, i));
      check_unique(seen, out.back().name, t, "notifier", i);
    }
    return out;
  }

  /// One `[[notifier]]`: kind first, since which keys apply depends on it.
  notifier_config read_notifier(const toml::table& t, std::size_t index) const {
    check_keys(t, notifier_keys, "[[notifier]]");
    const auto path = [index](std::string_view key) {
      return fmt::format("notifier[{}].{}", index, key);
    };
    const auto whole = fmt::format("notifier[{}]", index);

    notifier_config c;
    const auto* kind_node = t.get("kind");
    if (kind_node == nullptr) {
      fail(t.source(), whole,
           "kind is required (one of \"webhook\", \"alertmanager\", \"slack\", \"telegram\", "
           "\"ntfy\", \"exec\")");
    }
    const auto kind_text = string(*kind_node, path("kind"), "\"webhook\"");
    const auto* kind =
        std::find(std::begin(notifier_kind_names), std::end(notifier_kind_names), kind_text);
    if (kind == std::end(notifier_kind_names)) {
      std::string message = fmt::format("unknown kind {}", toml_quote(kind_text));
      if (const auto best = closest_match(kind_text, notifier_kind_names)) {
        message += fmt::format("; did you mean \"{}\"?", *best);
      }
      message +=
          " (valid kinds: \"webhook\", \"alertmanager\", \"slack\", \"telegram\", \"ntfy\", "
          "\"exec\")";
      fail(kind_node->source(), path("kind"), message);
    }
    c.kind = notifier_kinds[kind - std::begin(notifier_kind_names)];
    for (auto&& [key, node] : t) {
      if (!notifier_key_applies(key.str(), c.kind)) {
        fail(key.source(), path(key.str()),
             fmt::format("\"{}\" applies only to {} notifiers, not {}", key.str(),
                         notifier_key_kinds(key.str()), kind_text));
      }
    }

    const auto* name_node = t.get("name");
    if (name_node == nullptr) {
      fail(t.source(), whole, "name is required (1 to 64 of A-Z, a-z, 0-9, '_', '.' and '-')");
    }
    c.name = string(*name_node, path("name"), "\"hook\"");
    if (!rule_parts::valid_name(c.name)) {
      fail(name_node->source(), path("name"),
           fmt::format("{} is not a valid name (1 to 64 of A-Z, a-z, 0-9, '_', '.' and '-')",
                       toml_quote(c.name)));
    }
    read_notifier_http(t, c, index);
    if (const auto* v = t.get("timeout")) c.timeout = duration(*v, path("timeout"), "10s");
    if (const auto* v = t.get("give_up")) c.give_up = duration(*v, path("give_up"), "24h");
    if (const auto* v = t.get("language")) {
      c.language = string(*v, path("language"), "\"en\"");
      if (std::find(std::begin(languages), std::end(languages), c.language) ==
          std::end(languages)) {
        std::string message = fmt::format("{} has no built-in templates", toml_quote(c.language));
        if (const auto best = closest_match(c.language, languages)) {
          message += fmt::format("; did you mean \"{}\"?", *best);
        }
        fail(v->source(), path("language"), message + " (use \"en\", \"ru\" or \"ky\")");
      }
    }
    if (const auto* v = t.get("template")) {
      c.template_firing = string(*v, path("template"), "\"{rule}: {currency} is {value}\"");
      if (auto problem = template_problem(c.template_firing))
        fail(v->source(), path("template"), *problem);
    }
    if (const auto* v = t.get("resolved_template")) {
      c.template_resolved =
          string(*v, path("resolved_template"), "\"{rule} resolved: {currency} is {value}\"");
      if (auto problem = template_problem(c.template_resolved))
        fail(v->source(), path("resolved_template"), *problem);
    }
    switch (c.kind) {
      case notifier_kind::telegram:
        read_telegram(t, c, index);
        break;
      case notifier_kind::ntfy:
        read_ntfy(t, c, index);
        break;
      case notifier_kind::alertmanager:
        if (const auto* v = t.get("resend")) {
          c.resend = duration(*v, path("resend"), "1m");
          if (c.resend < min_resend) {
            fail(v->source(), path("resend"),
                 fmt::format("{} is too short (minimum 1s)", format_duration(c.resend)));
          }
        }
        break;
      case notifier_kind::exec:
        read_command(t, c, index);
        break;
      case notifier_kind::webhook:
      case notifier_kind::slack:
        break;
    }
    return c;
  }

  /// url, headers and ca_file of an HTTP notifier; exec has none of them.
  void read_notifier_http(const toml::table& t, notifier_config& c, std::size_t index) const {
    if (c.kind == notifier_kind::exec) return;
    const auto path = [index](std::string_view key) {
      return fmt::format("notifier[{}].{}", index, key);
    };
    const auto kind = notifier_kind_name(c.kind);
    if (const auto* v = t.get("url")) {
      c.url = string(*v, path("url"), "\"http://127.0.0.1:9000/hook\"");
      if (const auto problem = http_url_problem(c.url, "\"http://127.0.0.1:9000/hook\"")) {
        fail(v->source(), path("url"), *problem);
      }
      if (c.kind == notifier_kind::ntfy) {
        const auto parsed = boost::urls::parse_uri(c.url);
        if (parsed->path().size() < 2) {
          fail(v->source(), path("url"),
               fmt::format("{} names no topic; an ntfy url ends in the topic, like "
                           "\"https://ntfy.sh/mytopic\"",
                           toml_quote(c.url)));
        }
      }
    } else if (c.kind == notifier_kind::telegram) {
      c.url = std::string(telegram_api);
    } else {
      fail(t.source(), fmt::format("notifier[{}]", index),
           fmt::format("url is required for {} notifiers (e.g. {})", kind,
                       c.kind == notifier_kind::alertmanager ? "\"http://127.0.0.1:9093\""
                       : c.kind == notifier_kind::ntfy       ? "\"https://ntfy.sh/mytopic\""
                                                             : "\"http://127.0.0.1:9000/hook\""));
    }
    if (const auto* v = t.get("headers")) c.headers = read_headers(*v, path("headers"));
    if (const auto* v = t.get("ca_file")) {
      c.ca_file = string(*v, path("ca_file"), "\"/etc/somrated/ca.pem\"");
      if (!c.ca_file.empty()) {
        if (const auto why = unreadable(c.ca_file)) {
          fail(v->source(), path("ca_file"),
               fmt::format("cannot read {}: {}", toml_quote(c.ca_file), *why));
        }
      }
    }
  }

  /// `headers`: a table of strings, kept in file order.
  std::vector<std::pair<std::string, std::string>> read_headers(const toml::node& n,
                                                                std::string_view path) const {
    const auto* t = n.as_table();
    if (t == nullptr) {
      fail(n.source(), path,
           fmt::format("expected a table like {{ Authorization = \"Bearer abc\" }}, not {}",
                       type_name(n)));
    }
    // toml++ keeps keys sorted; the file's order is what the user wrote and expects sent.
    std::vector<std::pair<const toml::key*, const toml::node*>> entries;
    for (auto&& [key, node] : *t) entries.emplace_back(&key, &node);
    std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) {
      return earlier(a.first->source(), b.first->source());
    });
    std::vector<std::pair<std::string, std::string>> out;
    std::map<std::string, std::string> seen;  // lower-case name -> name as written
    for (const auto& [key, node] : entries) {
      const std::string name(key->str());
      if (!valid_header_name(name)) {
        fail(key->source(), path,
             fmt::format("{} is not an HTTP header name (letters, digits and !#$%&'*+-.^_`|~)",
                         toml_quote(name)));
      }
      const auto folded = lower(name);
      if (std::find(std::begin(reserved_headers), std::end(reserved_headers), folded) !=
          std::end(reserved_headers)) {
        fail(
            key->source(), path,
            fmt::format("{} is set by somrated itself and cannot be configured", toml_quote(name)));
      }
      if (const auto [it, fresh] = seen.try_emplace(folded, name); !fresh) {
        fail(key->source(), path,
             fmt::format("{} is given twice (header names ignore case; {} has it too)",
                         toml_quote(name), toml_quote(it->second)));
      }
      const auto* value = node->as_string();
      if (value == nullptr) {
        fail(node->source(), path,
             fmt::format("header {} must be a string, not {}", toml_quote(name), type_name(*node)));
      }
      if (has_control(value->get())) {
        fail(node->source(), path,
             fmt::format("header {} has a control character (CR, LF, ...) in its value",
                         toml_quote(name)));
      }
      out.emplace_back(name, value->get());
    }
    return out;
  }

  /// chat_id and the bot token of a telegram notifier.
  void read_telegram(const toml::table& t, notifier_config& c, std::size_t index) const {
    const auto path = [index](std::string_view key) {
      return fmt::format("notifier[{}].{}", index, key);
    };
    const auto whole = fmt::format("notifier[{}]", index);
    const auto* chat = t.get("chat_id");
    if (chat == nullptr) {
      fail(t.source(), whole,
           "chat_id is required for telegram notifiers (e.g. \"-100123\" or \"@channel\")");
    }
    if (const auto* i = chat->as_integer()) {
      c.chat_id = std::to_string(i->get());
    } else {
      c.chat_id = string(*chat, path("chat_id"), "\"-100123\"");
    }
    if (!valid_chat_id(c.chat_id)) {
      fail(chat->source(), path("chat_id"),
           fmt::format("{} is not a chat id (an integer like \"-100123\" or \"@channelname\")",
                       toml_quote(c.chat_id)));
    }
    const auto* token = t.get("bot_token");
    const auto* file = t.get("bot_token_file");
    if (token != nullptr && file != nullptr) {
      const bool file_later = earlier(token->source(), file->source());
      fail((file_later ? file : token)->source(), path(file_later ? "bot_token_file" : "bot_token"),
           "give bot_token or bot_token_file, not both");
    }
    if (token == nullptr && file == nullptr) {
      fail(t.source(), whole,
           "telegram notifiers need bot_token = \"123456:ABC...\" or bot_token_file = \"/path\"");
    }
    const char* const shape =
        "is not a Telegram bot token (digits, ':', then letters, digits, '_' or '-', as "
        "BotFather gives it)";
    if (token != nullptr) {
      c.bot_token = string(*token, path("bot_token"), "\"123456:ABC-DEF\"");
      if (!valid_bot_token(c.bot_token)) {
        fail(token->source(), path("bot_token"), fmt::format("the value {}", shape));
      }
    } else {
      c.bot_token_file = string(*file, path("bot_token_file"), "\"/etc/somrated/bot-token\"");
      c.bot_token = secret_file(*file, path("bot_token_file"), c.bot_token_file);
      if (!valid_bot_token(c.bot_token)) {
        fail(file->source(), path("bot_token_file"),
             fmt::format("the first line of {} {}", toml_quote(c.bot_token_file), shape));
      }
    }
  }

  /// priority and tags of an ntfy notifier.
  void read_ntfy(const toml::table& t, notifier_config& c, std::size_t index) const {
    const auto path = [index](std::string_view key) {
      return fmt::format("notifier[{}].{}", index, key);
    };
    if (const auto* v = t.get("priority")) {
      if (const auto* i = v->as_integer()) {
        c.priority = std::to_string(i->get());
      } else {
        c.priority = string(*v, path("priority"), "\"high\"");
      }
      const bool number = c.priority.size() == 1 && c.priority[0] >= '1' && c.priority[0] <= '5';
      if (!c.priority.empty() && !number &&
          std::find(std::begin(ntfy_priorities), std::end(ntfy_priorities), c.priority) ==
              std::end(ntfy_priorities)) {
        std::string message = fmt::format("{} is not an ntfy priority", toml_quote(c.priority));
        if (const auto best = closest_match(c.priority, ntfy_priorities)) {
          message += fmt::format("; did you mean \"{}\"?", *best);
        }
        fail(v->source(), path("priority"),
             message + " (use 1 to 5 or min, low, default, high, max, urgent)");
      }
    }
    if (const auto* v = t.get("tags")) {
      c.tags = strings(*v, path("tags"), "[\"warning\"]");
      for (const auto& tag : c.tags) {
        if (tag.empty() || tag.find(',') != std::string::npos || has_control(tag)) {
          fail(v->source(), path("tags"),
               fmt::format("{} is not a tag: tags are non-empty, without commas or control "
                           "characters (e.g. \"warning\")",
                           toml_quote(tag)));
        }
      }
    }
  }

  /// command of an exec notifier: argv with an absolute program, or a shell command line.
  void read_command(const toml::table& t, notifier_config& c, std::size_t index) const {
    const auto path = fmt::format("notifier[{}].command", index);
    const auto* v = t.get("command");
    if (v == nullptr) {
      fail(t.source(), fmt::format("notifier[{}]", index),
           "command is required for exec notifiers (e.g. [\"/usr/local/bin/notify\", \"--x\"])");
    }
    if (const auto* line = v->as_string()) {
      if (line->get().empty()) fail(v->source(), path, "must not be empty");
      c.command = {"/bin/sh", "-c", line->get()};
    } else {
      c.command = strings(*v, path, "[\"/usr/local/bin/notify\", \"--x\"]");
      if (c.command.empty()) {
        fail(v->source(), path, "must name a program, like [\"/usr/local/bin/notify\"]");
      }
    }
    for (const auto& arg : c.command) {
      if (arg.find('\0') != std::string::npos) {
        fail(v->source(), path, "an argument holds a NUL character, which cannot be passed");
      }
    }
    const auto& program = c.command.front();
    if (!program.starts_with('/')) {
      fail(v->source(), path,
           fmt::format("the program {} must be an absolute path (no PATH lookup), like "
                       "\"/usr/local/bin/notify\"",
                       toml_quote(program)));
    }
    struct stat st {};
    if (::stat(program.c_str(), &st) != 0 || ::access(program.c_str(), X_OK) != 0) {
      fail(v->source(), path,
           fmt::format("cannot run {}: {}", toml_quote(program), std::strerror(errno)));
    }
    if (S_ISDIR(st.st_mode)) {
      fail(v->source(), path,
           fmt::format("cannot run {}: {}", toml_quote(program), std::strerror(EISDIR)));
    }
  }

  /// Every `[[alert]]`, checked against the sources and notifiers of c.
  std::vector<alert_rule> read_alerts(const toml::node& n, const config& c) const {
    const auto& array = tables(n, "alert", "rule");
    std::vector<alert_rule> out;
    std::map<std::string, std::pair<std::size_t, std::uint32_t>> seen;
    for (std::size_t i = 0; i < array.size(); ++i) {
      const auto& t = *array.get(i)->as_table();
      out.push_back(read_alert(t, i, c));
      check_unique(seen, out.back().name, t, "alert", i);
    }
    return out;
  }

  /// One `[[alert]]`: the keys by presence (one condition, only keys that belong to it),
  /// then their values, then check_rule, whose complaint is placed at its key's line.
  alert_rule read_alert(const toml::table& t, std::size_t index, const config& c) const {
    check_keys(t, rule_parts::alert_keys, "[[alert]]");
    const auto path = [index](std::string_view key) {
      return fmt::format("alert[{}].{}", index, key);
    };
    const auto whole = fmt::format("alert[{}]", index);

    std::vector<std::pair<const toml::key*, alert_condition>> conditions;
    for (auto&& [key, node] : t) {
      if (const auto cond = rule_parts::condition_of_key(key.str())) {
        conditions.emplace_back(&key, *cond);
      }
    }
    if (conditions.empty()) fail(t.source(), whole, rule_parts::no_condition());
    std::sort(conditions.begin(), conditions.end(), [](const auto& a, const auto& b) {
      return earlier(a.first->source(), b.first->source());
    });
    if (conditions.size() > 1) {
      const auto& second = *conditions[1].first;
      fail(second.source(), path(second.str()),
           rule_parts::two_conditions(conditions[0].first->str(), second.str()));
    }

    alert_rule r;
    r.condition = conditions[0].second;
    for (auto&& [key, node] : t) {
      if (const auto why = rule_parts::misplaced_key(key.str(), r.condition)) {
        fail(key.source(), path(key.str()), *why);
      }
    }
    if (!c.sources.empty()) r.source = c.sources.front().name;
    if (const auto* v = t.get("name")) r.name = string(*v, path("name"), "\"usd-above-90\"");
    if (const auto* v = t.get("currency")) r.currency = string(*v, path("currency"), "\"USD\"");
    if (const auto* v = t.get("source")) r.source = string(*v, path("source"), "\"24kg\"");
    if (const auto* v = t.get("notify")) r.notify = strings(*v, path("notify"), "[\"hook\"]");
    const auto cond = condition_name(r.condition);
    if (r.condition == alert_condition::stale) {
      const auto* v = t.get("stale");
      r.stale_after =
          take(*v, path("stale"),
               rule_parts::positive_duration("stale", string(*v, path("stale"), "\"2h\"")));
    } else {
      r.threshold = number(*t.get(cond), path(cond), cond);
    }
    if (const auto* v = t.get("window")) {
      r.window =
          take(*v, path("window"),
               rule_parts::positive_duration("window", string(*v, path("window"), "\"24h\"")));
    }
    if (const auto* v = t.get("direction")) {
      r.direction =
          take(*v, path("direction"),
               rule_parts::direction_from_text(string(*v, path("direction"), "\"either\"")));
    }
    if (const auto* v = t.get("against")) r.against = string(*v, path("against"), "\"nbkr\"");
    if (const auto* v = t.get("for")) {
      r.hold_for = take(*v, path("for"),
                        rule_parts::duration_or_zero("for", string(*v, path("for"), "\"15m\"")));
    }
    if (const auto* v = t.get("resolve_below")) {
      r.resolve_below = number(*v, path("resolve_below"), "resolve_below");
    }
    if (const auto* v = t.get("resolve_above")) {
      r.resolve_above = number(*v, path("resolve_above"), "resolve_above");
    }
    if (const auto* v = t.get("repeat")) {
      r.repeat = take(*v, path("repeat"),
                      rule_parts::duration_or_zero("repeat", string(*v, path("repeat"), "\"6h\"")));
    }
    if (const auto* v = t.get("labels")) r.labels = read_labels(*v, path("labels"));

    if (const auto e = check_rule(r, c)) {
      if (const auto* v = t.get(e->field)) fail(v->source(), path(e->field), e->message);
      fail(t.source(), whole, e->message);
    }
    return r;
  }

  /// A threshold or percent: a TOML integer, float or numeric string, as an exact decimal.
  decimal number(const toml::node& n, std::string_view path, std::string_view field) const {
    if (const auto* i = n.as_integer()) {
      return take(n, path, rule_parts::number_from_integer(field, i->get()));
    }
    if (const auto* f = n.as_floating_point()) {
      return take(n, path, rule_parts::number_from_double(field, f->get()));
    }
    if (const auto* s = n.as_string()) {
      return take(n, path, rule_parts::number_from_text(field, s->get()));
    }
    fail(n.source(), path,
         fmt::format("expected a number like 90 or a string like \"89.75\", not {}", type_name(n)));
  }

  /// `labels`: a table of strings.
  std::map<std::string, std::string> read_labels(const toml::node& n, std::string_view path) const {
    const auto* t = n.as_table();
    if (t == nullptr) {
      fail(n.source(), path,
           fmt::format("expected a table like {{ severity = \"warning\" }}, not {}", type_name(n)));
    }
    std::map<std::string, std::string> out;
    for (auto&& [key, node] : *t) {
      const auto* value = node.as_string();
      if (value == nullptr) {
        fail(node.source(), path,
             fmt::format("label {} must be a string, not {}", toml_quote(key.str()),
                         type_name(node)));
      }
      out.emplace(key.str(), value->get());
    }
    return out;
  }

  std::string_view origin_;  ///< File name for messages.
};

/// A TOML array of strings on one line: ["a", "b"].
std::string toml_array(const std::vector<std::string>& items) {
  std::string out = "[";
  for (const auto& item : items) {
    if (out.size() > 1) out += ", ";
    out += toml_quote(item);
  }
  return out + "]";
}

/// A TOML inline table of strings on one line, keys quoted: { "a" = "1", "b" = "2" }.
template <class Pairs>
std::string toml_inline_table(const Pairs& pairs) {
  if (pairs.empty()) return "{}";
  std::string out = "{ ";
  for (const auto& [key, value] : pairs) {
    if (out.size() > 2) out += ", ";
    out += toml_quote(key) + " = " + toml_quote(value);
  }
  return out + " }";
}

/// Appends `key = value` and a newline.
void put_key(std::string& out, std::string_view key, std::string_view value) {
  fmt::format_to(std::back_inserter(out), "{} = {}\n", key, value);
}

/// Appends one `[[notifier]]` with the keys of its kind, in schema order.
void put_notifier(std::string& out, const notifier_config& n) {
  const auto quoted_duration = [](std::chrono::milliseconds d) {
    return toml_quote(format_duration(d));
  };
  out += "\n[[notifier]]\n";
  put_key(out, "name", toml_quote(n.name));
  put_key(out, "kind", toml_quote(notifier_kind_name(n.kind)));
  if (n.kind != notifier_kind::exec) {
    put_key(out, "url", toml_quote(n.url));
    put_key(out, "headers", toml_inline_table(n.headers));
    put_key(out, "ca_file", toml_quote(n.ca_file));
  }
  put_key(out, "timeout", quoted_duration(n.timeout));
  put_key(out, "give_up", quoted_duration(n.give_up));
  put_key(out, "language", toml_quote(n.language));
  put_key(out, "template", toml_quote(n.template_firing));
  put_key(out, "resolved_template", toml_quote(n.template_resolved));
  switch (n.kind) {
    case notifier_kind::telegram:
      put_key(out, "chat_id", toml_quote(n.chat_id));
      // A token read from a file stays in its file.
      if (n.bot_token_file.empty()) {
        put_key(out, "bot_token", toml_quote(n.bot_token));
      } else {
        put_key(out, "bot_token_file", toml_quote(n.bot_token_file));
      }
      break;
    case notifier_kind::ntfy:
      put_key(out, "priority", toml_quote(n.priority));
      put_key(out, "tags", toml_array(n.tags));
      break;
    case notifier_kind::alertmanager:
      put_key(out, "resend", quoted_duration(n.resend));
      break;
    case notifier_kind::exec:
      put_key(out, "command", toml_array(n.command));
      break;
    case notifier_kind::webhook:
    case notifier_kind::slack:
      break;
  }
}

/// Appends one `[[alert]]` with the keys of its condition, in schema order. Thresholds
/// are written as strings so their digits survive exactly.
void put_alert(std::string& out, const alert_rule& r) {
  const auto quoted_duration = [](std::chrono::milliseconds d) {
    return toml_quote(format_duration(d));
  };
  out += "\n[[alert]]\n";
  put_key(out, "name", toml_quote(r.name));
  if (r.condition != alert_condition::stale) put_key(out, "currency", toml_quote(r.currency));
  put_key(out, "source", toml_quote(r.source));
  put_key(out, "notify", toml_array(r.notify));
  if (r.condition == alert_condition::stale) {
    put_key(out, "stale", quoted_duration(r.stale_after));
  } else if (r.threshold) {
    put_key(out, condition_name(r.condition), toml_quote(r.threshold->text()));
  }
  if (r.condition == alert_condition::change_pct) {
    put_key(out, "window", quoted_duration(r.window));
    put_key(out, "direction", toml_quote(direction_name(r.direction)));
  }
  if (r.condition == alert_condition::spread_pct) put_key(out, "against", toml_quote(r.against));
  put_key(out, "for", quoted_duration(r.hold_for));
  if (r.resolve_below) put_key(out, "resolve_below", toml_quote(r.resolve_below->text()));
  if (r.resolve_above) put_key(out, "resolve_above", toml_quote(r.resolve_above->text()));
  put_key(out, "repeat", quoted_duration(r.repeat));
  put_key(out, "labels", toml_inline_table(r.labels));
}

/// True for a header whose value is a credential: Authorization, Proxy-Authorization,
/// Cookie, and names with token, secret, key, password or auth in them (X-Api-Key, ...).
bool secret_header(std::string_view name) {
  const auto folded = lower(name);
  if (folded == "cookie") return true;
  for (const std::string_view part : {"auth", "token", "secret", "key", "password"}) {
    if (folded.find(part) != std::string::npos) return true;
  }
  return false;
}

/// True for a query parameter whose value is likely a credential (?token=, ?api_key=).
bool secret_query_key(std::string_view key) {
  const auto folded = lower(key);
  for (const std::string_view part : {"auth", "token", "secret", "key", "password", "sig"}) {
    if (folded.find(part) != std::string::npos) return true;
  }
  return false;
}

/// url with its password, credential-like query values and (for a Slack webhook, whose
/// last path segment is the secret) that segment replaced. Text that is not a URL is
/// returned as it is.
std::string redact_url(const std::string& url, bool slack) {
  const auto parsed = boost::urls::parse_uri_reference(url);
  if (!parsed) return url;
  boost::urls::url u(*parsed);
  if (u.has_password()) u.set_password(redacted);
  auto params = u.params();
  for (auto it = params.begin(); it != params.end(); ++it) {
    const auto p = *it;
    if (p.has_value && secret_query_key(p.key)) it = params.set(it, redacted);
  }
  if (slack) {
    auto segments = u.segments();
    if (!segments.empty()) segments.replace(std::prev(segments.end()), redacted);
  }
  return std::string(u.buffer());
}

/// A copy of c with every secret but the [server] token replaced (see to_redacted_toml).
config redact(const config& c) {
  config r = c;
  r.server.external_url = redact_url(r.server.external_url, false);
  for (auto& s : r.sources) s.url = redact_url(s.url, false);
  for (auto& n : r.notifiers) {
    n.url = redact_url(n.url, n.kind == notifier_kind::slack);
    for (auto& [name, value] : n.headers) {
      if (secret_header(name)) value = redacted;
    }
    if (n.kind == notifier_kind::telegram && n.bot_token_file.empty()) {
      n.bot_token = fmt::format("0:{}", redacted);
    }
  }
  return r;
}

/// to_toml, with an inline [server] token shown as a comment when hide_token.
std::string render_toml(const config& c, bool hide_token) {
  std::string out = "# somrated configuration: every key, with its effective value.\n\n";
  auto put = [&out](fmt::string_view f, fmt::format_args args) {
    fmt::vformat_to(std::back_inserter(out), f, args);
  };
  put("[server]\nlisten = {}\nmax_connections = {}\n",
      fmt::make_format_args(toml_quote(c.server.listen), c.server.max_connections));
  // A token read from a file stays in its file; an empty token disables API writes.
  if (!c.server.token_file.empty()) {
    put_key(out, "token_file", toml_quote(c.server.token_file));
  } else if (hide_token && !c.server.token.empty()) {
    out +=
        "# token = \"REDACTED\"  (set in the file but not shown; without it API writes are "
        "disabled)\n";
  } else {
    put_key(out, "token", toml_quote(c.server.token));
  }
  put_key(out, "external_url", toml_quote(c.server.external_url));
  put_key(out, "read_timeout", toml_quote(format_duration(c.server.read_timeout)));
  put_key(out, "idle_timeout", toml_quote(format_duration(c.server.idle_timeout)));
  put_key(out, "write_timeout", toml_quote(format_duration(c.server.write_timeout)));
  const auto keep = c.storage.keep_scrape_log;
  put("\n[storage]\npath = {}\nkeep_scrape_log = {}\nmax_size = {}\n\n",
      fmt::make_format_args(toml_quote(c.storage.path),
                            toml_quote(keep.count() == 0 ? "0" : format_duration(keep)),
                            toml_quote(format_max_size(c.storage.max_size))));
  put("[log]\nlevel = {}\n\n", fmt::make_format_args(toml_quote(c.log_level)));
  put("[alerting]\nevaluate_every = {}\n",
      fmt::make_format_args(toml_quote(format_duration(c.alerting.evaluate_every))));
  for (const auto& s : c.sources) {
    // "{}" prints the shortest text that reads back as the same double; TOML wants a
    // point or an exponent in a float.
    std::string jump = fmt::format("{}", s.max_jump);
    if (jump.find_first_of(".e") == std::string::npos) jump += ".0";
    put("\n[[source]]\nname = {}\nkind = {}\nurl = {}\ninterval = {}\nca_file = {}\n"
        "max_jump = {}\ntimeout = {}\nmax_body = {}\n",
        fmt::make_format_args(toml_quote(s.name), toml_quote(s.kind), toml_quote(s.url),
                              toml_quote(format_duration(s.interval)), toml_quote(s.ca_file), jump,
                              toml_quote(format_duration(s.timeout)),
                              toml_quote(format_size(s.max_body))));
  }
  for (const auto& n : c.notifiers) put_notifier(out, n);
  for (const auto& r : c.alerts) put_alert(out, r);
  return out;
}

}  // namespace

config default_config() {
  config c;
  for (const auto& k : source_kinds) {
    source_config s;
    s.name = std::string(k.kind);
    s.kind = std::string(k.kind);
    s.url = std::string(k.url);
    s.interval = k.interval;
    c.sources.push_back(std::move(s));
  }
  return c;
}

config parse_config(std::string_view toml_text, std::string_view origin) {
  toml::table root;
  try {
    root = toml::parse(toml_text, origin);
  } catch (const toml::parse_error& e) {
    throw config_error(fmt::format("{}:{}:{}: {}", origin, e.source().begin.line,
                                   e.source().begin.column, e.description()));
  }
  return config_reader{origin}.read(root);
}

config load_config(const std::filesystem::path& path) {
  const auto fail = [&path] {
    return config_error(
        fmt::format("cannot read config file {}: {}", path.string(), std::strerror(errno)));
  };
  const file_ptr f{std::fopen(path.c_str(), "rb")};
  if (!f) throw fail();
  std::string text;
  char buf[4096];
  for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, f.get())) > 0;) text.append(buf, n);
  if (std::ferror(f.get())) throw fail();
  return parse_config(text, path.string());
}

std::string to_toml(const config& c) {
  return render_toml(c, false);
}

std::string to_redacted_toml(const config& c) {
  return render_toml(redact(c), true);
}

std::optional<std::string> listen_problem(std::string_view listen) {
  const auto form = [listen] {
    return fmt::format("{} is not HOST:PORT (e.g. \"127.0.0.1:8080\" or \"[::1]:8080\")",
                       toml_quote(listen));
  };
  std::string_view host;
  std::string_view port;
  bool bracketed = false;
  if (listen.starts_with('[')) {
    const auto close = listen.find("]:");
    if (close == std::string_view::npos) return form();
    host = listen.substr(1, close - 1);
    port = listen.substr(close + 2);
    bracketed = true;
  } else {
    const auto colon = listen.rfind(':');
    if (colon == std::string_view::npos) return form();
    host = listen.substr(0, colon);
    port = listen.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      return fmt::format("{}: put an IPv6 address in brackets, like \"[::1]:8080\"",
                         toml_quote(listen));
    }
  }
  if (host.empty()) {
    return fmt::format("{} has no host (e.g. \"127.0.0.1:8080\", or \"0.0.0.0:8080\" for all)",
                       toml_quote(listen));
  }
  if (port.empty() || port.size() > 5 ||
      !std::all_of(port.begin(), port.end(), [](char ch) { return ch >= '0' && ch <= '9'; })) {
    return form();
  }
  if (std::stoul(std::string(port)) > 65535) {
    return fmt::format("port {} is out of range (0 to 65535)", port);
  }
  if (!bracketed && host == "localhost") return std::nullopt;
  boost::system::error_code ec;
  const auto address = boost::asio::ip::make_address(std::string(host), ec);
  if (ec || address.is_v6() != bracketed) {
    return fmt::format("\"{}\" is not an IP{} address", host, bracketed ? "v6" : "v4");
  }
  return std::nullopt;
}

std::optional<std::size_t> parse_size(std::string_view text) {
  std::size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  if (digits == 0 || digits > 10) return std::nullopt;
  const auto unit_text = text.substr(digits);
  std::size_t unit = 0;
  if (unit_text.empty() || unit_text == "B") {
    unit = 1;
  } else if (unit_text == "KiB") {
    unit = kib;
  } else if (unit_text == "MiB") {
    unit = mib;
  } else {
    return std::nullopt;
  }
  const std::uint64_t n = std::stoull(std::string(text.substr(0, digits)));
  if (n == 0 || n > max_body_limit / unit) return std::nullopt;
  return static_cast<std::size_t>(n * unit);
}

std::string format_size(std::size_t bytes) {
  if (bytes != 0 && bytes % mib == 0) return fmt::format("{}MiB", bytes / mib);
  if (bytes != 0 && bytes % kib == 0) return fmt::format("{}KiB", bytes / kib);
  return fmt::format("{}B", bytes);
}

std::optional<std::uint64_t> parse_max_size(std::string_view text) {
  if (text == "0") return 0;
  std::size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  // 14 digits hold 16TiB in bytes and cannot overflow below.
  if (digits == 0 || digits > 14) return std::nullopt;
  constexpr std::pair<std::string_view, unsigned> units[] = {{"", 0},     {"B", 0},    {"KiB", 10},
                                                             {"MiB", 20}, {"GiB", 30}, {"TiB", 40}};
  const auto unit = std::find_if(std::begin(units), std::end(units),
                                 [&](const auto& u) { return u.first == text.substr(digits); });
  if (unit == std::end(units)) return std::nullopt;
  const std::uint64_t n = std::stoull(std::string(text.substr(0, digits)));
  if (n == 0 || n > (max_size_limit >> unit->second)) return std::nullopt;
  return n << unit->second;
}

std::string format_max_size(std::uint64_t bytes) {
  if (bytes == 0) return "0";
  constexpr std::pair<std::string_view, unsigned> units[] = {
      {"TiB", 40}, {"GiB", 30}, {"MiB", 20}, {"KiB", 10}};
  for (const auto& [name, shift] : units) {
    if (bytes % (std::uint64_t{1} << shift) == 0) return fmt::format("{}{}", bytes >> shift, name);
  }
  return fmt::format("{}B", bytes);
}

std::size_t edit_distance(std::string_view a, std::string_view b) {
  // One row of the dynamic-programming table at a time.
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

std::optional<std::string_view> closest_match(std::string_view word,
                                              std::span<const std::string_view> candidates) {
  std::optional<std::string_view> best;
  std::size_t best_distance = 3;  // suggest at most 2 edits away
  for (const auto c : candidates) {
    const auto d = edit_distance(word, c);
    if (d < best_distance && d < word.size()) {
      best = c;
      best_distance = d;
    }
  }
  return best;
}

}  // namespace somrated
