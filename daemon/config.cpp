#include "somrated/config.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <map>
#include <memory>

#include <fmt/format.h>
#include <toml++/toml.h>
#include <boost/asio/ip/address.hpp>
#include <boost/url/parse.hpp>

#include "somrated/log.hpp"
#include "somrated/time.hpp"

namespace somrated {

namespace {

using namespace std::chrono_literals;

constexpr std::string_view top_level_keys[] = {"server", "storage", "log", "source"};
constexpr std::string_view server_keys[] = {"listen", "max_connections"};
constexpr std::string_view storage_keys[] = {"path"};
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
  if (name == "source") return "[[source]]";
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
  }

  /// `[storage]`.
  void read_storage(const toml::node& n, storage_config& out) const {
    const auto& t = table(n, "storage");
    check_keys(t, storage_keys, "[storage]");
    if (const auto* v = t.get("path")) {
      out.path = string(*v, "storage.path", "\"./somrated.db\"");
      if (out.path.empty()) fail(v->source(), "storage.path", "must not be empty");
    }
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

  std::string_view origin_;  ///< File name for messages.
};

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
  std::string out = "# somrated configuration: every key, with its effective value.\n\n";
  auto put = [&out](fmt::string_view f, fmt::format_args args) {
    fmt::vformat_to(std::back_inserter(out), f, args);
  };
  put("[server]\nlisten = {}\nmax_connections = {}\n\n",
      fmt::make_format_args(toml_quote(c.server.listen), c.server.max_connections));
  put("[storage]\npath = {}\n\n", fmt::make_format_args(toml_quote(c.storage.path)));
  put("[log]\nlevel = {}\n", fmt::make_format_args(toml_quote(c.log_level)));
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
  return out;
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
