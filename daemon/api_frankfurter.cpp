// Frankfurter v1 compatible paths (/v1/latest, /v1/{date}, /v1/{start}..{end},
// /v1/currencies) and /api/v1/convert.
//
// Every stored rate is som per unit of a currency ("USD" 87.45 = 87.45 KGS for 1 USD), so
// KGS is the natural base and every other pair is a cross rate through the som. In
// Frankfurter's terms `rates[X]` is how many X one `base` buys, so:
//   base=KGS,  X       -> amount / X_KGS
//   base=B,    KGS     -> amount × B_KGS            (exact: the published digits when amount is 1)
//   base=B,    X       -> amount × B_KGS / X_KGS
// Quotients are computed exactly on decimals and rounded once, half to even, to the places
// exchange rates are quoted with (decimal::precision::quote(): the same magnitude rule as
// Frankfurter's own rounding, which also keeps answers within its schema's 0.00001 steps
// above 0.0001). Products are never rounded.
//
// Which value a date means: a market source such as 24.kg changes its rates during the day,
// so day D is the value in force at the end of D (UTC), the day's closing value. A source
// whose values carry an effective date (NBKR sets each day's official rate the afternoon
// before, in Bishkek) is read at the end of D-1 (UTC), when the rate for D has been set and
// the one for D+1 not yet. Every calendar day has a value in force, so ranges list every
// day, not only working days; a date after the newest data falls back to the newest, as
// Frankfurter answers its latest working day.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "api_common.hpp"
#include "somrated/store.hpp"

namespace somrated::api_detail {

namespace {

using std::chrono::sys_days;
using precision = decimal::precision;

/// The currency every stored rate is quoted in.
constexpr std::string_view som = "KGS";

/// Significant digits of /api/v1/convert's rate and result when a division is involved.
constexpr int convert_digits = 10;

/// Most days in one range answer, per currency; reached only by decades of data.
constexpr std::size_t max_range_days = 40000;

/// Rates of one day (or of now): currency -> som per unit, or -> rate against the base.
using rate_map = std::map<std::string, decimal, std::less<>>;

/// ISO 4217 code and English name.
struct currency_name {
  std::string_view code;  ///< "USD".
  std::string_view name;  ///< "US Dollar".
};

/// Names for /v1/currencies, sorted by code; a code missing here is named by itself.
constexpr currency_name currency_names[] = {
    {"AED", "UAE Dirham"},
    {"AFN", "Afghan Afghani"},
    {"ALL", "Albanian Lek"},
    {"AMD", "Armenian Dram"},
    {"ARS", "Argentine Peso"},
    {"AUD", "Australian Dollar"},
    {"AZN", "Azerbaijani Manat"},
    {"BAM", "Bosnia-Herzegovina Convertible Mark"},
    {"BDT", "Bangladeshi Taka"},
    {"BGN", "Bulgarian Lev"},
    {"BHD", "Bahraini Dinar"},
    {"BRL", "Brazilian Real"},
    {"BYN", "Belarusian Ruble"},
    {"CAD", "Canadian Dollar"},
    {"CHF", "Swiss Franc"},
    {"CLP", "Chilean Peso"},
    {"CNY", "Chinese Renminbi Yuan"},
    {"COP", "Colombian Peso"},
    {"CZK", "Czech Koruna"},
    {"DKK", "Danish Krone"},
    {"DZD", "Algerian Dinar"},
    {"EGP", "Egyptian Pound"},
    {"EUR", "Euro"},
    {"GBP", "British Pound"},
    {"GEL", "Georgian Lari"},
    {"HKD", "Hong Kong Dollar"},
    {"HUF", "Hungarian Forint"},
    {"IDR", "Indonesian Rupiah"},
    {"ILS", "Israeli New Shekel"},
    {"INR", "Indian Rupee"},
    {"IQD", "Iraqi Dinar"},
    {"IRR", "Iranian Rial"},
    {"ISK", "Icelandic Krona"},
    {"JPY", "Japanese Yen"},
    {"KGS", "Kyrgyzstani Som"},
    {"KRW", "South Korean Won"},
    {"KWD", "Kuwaiti Dinar"},
    {"KZT", "Kazakhstani Tenge"},
    {"LKR", "Sri Lankan Rupee"},
    {"MAD", "Moroccan Dirham"},
    {"MDL", "Moldovan Leu"},
    {"MKD", "Macedonian Denar"},
    {"MNT", "Mongolian Tugrik"},
    {"MXN", "Mexican Peso"},
    {"MYR", "Malaysian Ringgit"},
    {"NOK", "Norwegian Krone"},
    {"NZD", "New Zealand Dollar"},
    {"OMR", "Omani Rial"},
    {"PEN", "Peruvian Sol"},
    {"PHP", "Philippine Peso"},
    {"PKR", "Pakistani Rupee"},
    {"PLN", "Polish Zloty"},
    {"QAR", "Qatari Riyal"},
    {"RON", "Romanian Leu"},
    {"RSD", "Serbian Dinar"},
    {"RUB", "Russian Ruble"},
    {"SAR", "Saudi Riyal"},
    {"SEK", "Swedish Krona"},
    {"SGD", "Singapore Dollar"},
    {"THB", "Thai Baht"},
    {"TJS", "Tajikistani Somoni"},
    {"TMT", "Turkmenistani Manat"},
    {"TRY", "Turkish Lira"},
    {"TWD", "New Taiwan Dollar"},
    {"UAH", "Ukrainian Hryvnia"},
    {"USD", "US Dollar"},
    {"UZS", "Uzbekistani Som"},
    {"VND", "Vietnamese Dong"},
    {"XAU", "Gold (troy ounce)"},
    {"XDR", "Special Drawing Rights"},
    {"ZAR", "South African Rand"},
};

static_assert(std::is_sorted(std::begin(currency_names), std::end(currency_names),
                             [](const currency_name& a, const currency_name& b) {
                               return a.code < b.code;
                             }),
              "currency_names must stay sorted by code for the binary search");

/// The English name of code, or code itself when the table lacks it.
std::string_view name_of(std::string_view code) {
  auto it = std::lower_bound(std::begin(currency_names), std::end(currency_names), code,
                             [](const currency_name& c, std::string_view k) { return c.code < k; });
  return it != std::end(currency_names) && it->code == code ? it->name : code;
}

/// A Frankfurter error answer: `{"message":"not found"}` with status (404 or 422).
http_response fx_error(const request_context& ctx, http::status status, std::string_view message) {
  json_writer w(ctx.pretty);
  w.begin_object().key("message").value(message).end_object();
  return json_response(ctx, status, std::move(w).release());
}

/// Frankfurter's 404, for anything with no data to answer.
api_error not_found() {
  return api_error(http::status::not_found, "not_found", "not found");
}

/// Frankfurter's 422 for a parameter it cannot use ("invalid amount", "invalid date").
api_error unprocessable(std::string message) {
  return api_error(http::status::unprocessable_entity, "unprocessable", std::move(message));
}

/// Answers with answer(), turning a refusal into Frankfurter's error shape.
template <typename Answer>
http_response frankfurter(const request_context& ctx, Answer&& answer) {
  try {
    return answer();
  } catch (const api_error& e) {
    return fx_error(ctx, e.status(), e.what());
  }
}

/// ASCII upper case, as Frankfurter upper-cases codes.
std::string upper(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  }
  return out;
}

/// A validated Frankfurter query: base, symbols and amount.
struct fx_query {
  std::string base{som};                            ///< `from` or `base`; KGS by default.
  std::optional<std::vector<std::string>> symbols;  ///< `to` or `symbols`; all when absent.
  decimal amount = *decimal::parse("1.0");          ///< `amount`; Frankfurter echoes 1.0.
  bool unit = true;                                 ///< amount is 1: no scaling at all.
};

/// Reads base/from, symbols/to and amount as Frankfurter does: `from` wins over `base`
/// and `to` over `symbols`, codes are upper-cased and never rejected for their shape (an
/// unknown code just finds nothing), and a lone symbol equal to a given base is refused.
fx_query parse_fx_query(const request_context& ctx) {
  fx_query q;
  const auto base = ctx.param("from") ? ctx.param("from") : ctx.param("base");
  if (base) q.base = upper(*base);
  if (auto s = ctx.param("to") ? ctx.param("to") : ctx.param("symbols")) {
    std::vector<std::string> list;
    std::size_t pos = 0;
    while (true) {
      const std::size_t comma = s->find(',', pos);
      std::string code =
          upper(s->substr(pos, comma == std::string_view::npos ? comma : comma - pos));
      if (std::find(list.begin(), list.end(), code) == list.end()) list.push_back(std::move(code));
      if (comma == std::string_view::npos) break;
      pos = comma + 1;
    }
    q.symbols = std::move(list);
  }
  if (base && q.symbols && q.symbols->size() == 1 && q.symbols->front() == q.base) {
    throw unprocessable("bad currency pair");
  }
  if (auto a = ctx.param("amount")) {
    std::optional<decimal> amount = decimal::parse(*a);
    if (!amount || amount->is_zero()) throw unprocessable("invalid amount");
    q.amount = *amount;
    q.unit = *amount == *decimal::parse("1");
  }
  return q;
}

/// The currencies whose som values the query needs: the symbols and the base (without
/// KGS, which has none), or nullopt for every currency.
std::optional<std::set<std::string, std::less<>>> needed(const fx_query& q) {
  if (!q.symbols) return std::nullopt;
  std::set<std::string, std::less<>> out(q.symbols->begin(), q.symbols->end());
  out.insert(q.base);
  out.erase(std::string(som));
  return out;
}

/// A result too long for 18 digits: only an absurd amount gets here.
api_error too_large() {
  return unprocessable("invalid amount: the result needs more than 18 digits");
}

/// The query's rates from one day's som values (currency -> KGS per unit), sorted by
/// code; empty when the base has no value or none of the symbols has one.
rate_map cross_rates(const rate_map& kgs, const fx_query& q) {
  rate_map out;
  std::optional<decimal> base_kgs;
  if (q.base != som) {
    auto it = kgs.find(q.base);
    if (it == kgs.end() || it->second.is_zero()) return out;
    base_kgs = it->second;
  }
  auto add = [&](const std::string& code) {
    if (code == q.base) return;
    if (code == som) {
      // base_kgs is set: the base is not KGS. The product is exact.
      if (q.unit) {
        out.emplace(code, *base_kgs);
      } else if (auto v = decimal::multiply(q.amount, *base_kgs)) {
        out.emplace(code, *v);
      } else {
        throw too_large();
      }
      return;
    }
    auto it = kgs.find(code);
    if (it == kgs.end() || it->second.is_zero()) return;
    std::optional<decimal> v =
        base_kgs ? decimal::multiply_divide(q.amount, *base_kgs, it->second, precision::quote())
                 : decimal::divide(q.amount, it->second, precision::quote());
    if (!v) throw too_large();
    out.emplace(code, *v);
  };
  if (q.symbols) {
    for (const std::string& code : *q.symbols) add(code);
  } else {
    for (const auto& [code, value] : kgs) add(code);
    add(std::string(som));
  }
  return out;
}

/// What the store says about a source's newest data, which fixes how its dates are read.
struct source_days {
  bool effective = false;  ///< Values carry effective dates (set a day ahead, like NBKR).
  sys_days last_day{};     ///< The newest day with data.
  rate_map latest;         ///< The values in force now.
};

/// Reads the source's newest values; 404 when it has none.
source_days read_source(const request_context& ctx, const source_config& src) {
  source_days s;
  std::optional<timestamp> newest_seen;
  std::optional<sys_days> newest_effective;
  for (rate_point& p : ctx.db->latest(src.name)) {
    if (!newest_seen || p.observed_at > *newest_seen) newest_seen = p.observed_at;
    if (p.effective_date && (!newest_effective || *p.effective_date > *newest_effective)) {
      newest_effective = p.effective_date;
    }
    s.latest.emplace(std::move(p.currency), std::move(p.rate));
  }
  if (!newest_seen) throw not_found();
  s.effective = newest_effective.has_value();
  s.last_day =
      newest_effective ? *newest_effective : std::chrono::floor<std::chrono::days>(*newest_seen);
  return s;
}

/// The instant whose value in force is day's rate (see the top of the file).
timestamp reading_time(const source_days& s, sys_days day) {
  const sys_days end_of = s.effective ? day : day + std::chrono::days(1);
  return timestamp(end_of) - std::chrono::milliseconds(1);
}

/// The som values in force on day for the needed currencies (all when nullopt).
rate_map values_on(const request_context& ctx, const source_config& src, const source_days& s,
                   const std::optional<std::set<std::string, std::less<>>>& want, sys_days day) {
  rate_map out;
  const timestamp at = reading_time(s, day);
  for (const auto& [code, now_value] : s.latest) {
    if (want && !want->contains(code)) continue;
    if (auto v = ctx.db->value_at(src.name, code, at)) out.emplace(code, *v);
  }
  return out;
}

/// "YYYY-MM-DD" by shape: four, two and two digits. Shape alone decides between 404
/// (not a date at all) and 422 (a date that does not exist), as Frankfurter's routes do.
bool date_shaped(std::string_view text) {
  if (text.size() != 10 || text[4] != '-' || text[7] != '-') return false;
  for (std::size_t i : {0, 1, 2, 3, 5, 6, 8, 9}) {
    if (text[i] < '0' || text[i] > '9') return false;
  }
  return true;
}

/// A date-shaped text as a day; 422 "invalid date" when the calendar has no such day.
sys_days calendar_day(std::string_view text) {
  auto number = [&](std::size_t pos, std::size_t len) {
    int n = 0;
    for (char c : text.substr(pos, len)) n = n * 10 + (c - '0');
    return n;
  };
  const std::chrono::year_month_day ymd{std::chrono::year{number(0, 4)},
                                        std::chrono::month{static_cast<unsigned>(number(5, 2))},
                                        std::chrono::day{static_cast<unsigned>(number(8, 2))}};
  if (!ymd.ok()) throw unprocessable("invalid date");
  return sys_days(ymd);
}

/// Writes `"rates":{…}` members in code order.
void write_rates(json_writer& w, const rate_map& rates) {
  w.begin_object();
  for (const auto& [code, value] : rates) w.key(code).value(value);
  w.end_object();
}

/// The `{amount, base, date, rates}` answer (Frankfurter's ratesOnDate).
http_response on_date_answer(const request_context& ctx, const source_config& src,
                             const fx_query& q, sys_days day, const rate_map& rates) {
  if (rates.empty()) throw not_found();
  json_writer w(ctx.pretty);
  w.begin_object();
  w.key("amount").value(q.amount);
  w.key("base").value(q.base);
  w.key("date").value(format_date(day));
  w.key("rates");
  write_rates(w, rates);
  w.end_object();
  http_response res = json_response(ctx, http::status::ok, std::move(w).release());
  res.set("X-Somrated-Source", src.name);
  return res;
}

/// `/v1/{day}`: the rates of one day, or of the newest day when day is later.
http_response answer_day(const request_context& ctx, sys_days day) {
  const source_config& src = select_source(ctx);
  const fx_query q = parse_fx_query(ctx);
  const source_days s = read_source(ctx, src);
  day = std::min(day, s.last_day);
  return on_date_answer(ctx, src, q, day, cross_rates(values_on(ctx, src, s, needed(q), day), q));
}

/// `/v1/{first}..{last}` (last nullopt: open-ended): every day's rates, keyed by date.
http_response answer_range(const request_context& ctx, sys_days first,
                           std::optional<sys_days> last) {
  const source_config& src = select_source(ctx);
  const fx_query q = parse_fx_query(ctx);
  const source_days s = read_source(ctx, src);
  const sys_days end = std::min(last.value_or(s.last_day), s.last_day);
  if (first > end) throw not_found();

  // One sampled history per currency: one-day buckets whose ends are the reading times
  // of first..end, each point the value in force then.
  const auto want = needed(q);
  const std::chrono::days lead{s.effective ? 1 : 0};  // bucket start = day - lead
  std::map<sys_days, rate_map> by_day;
  for (const auto& [code, now_value] : s.latest) {
    if (want && !want->contains(code)) continue;
    history_query hq;
    hq.source = src.name;
    hq.currency = code;
    hq.from = timestamp(first - lead);
    hq.to = reading_time(s, end);
    hq.step = std::chrono::days(1);
    hq.max_points = max_range_days;
    for (const history_point& p : ctx.db->history(hq).points) {
      const sys_days day = std::chrono::floor<std::chrono::days>(p.time) + lead;
      by_day[day].emplace(code, p.rate);
    }
  }
  std::map<sys_days, rate_map> rates;
  for (const auto& [day, kgs] : by_day) {
    rate_map r = cross_rates(kgs, q);
    if (!r.empty()) rates.emplace(day, std::move(r));
  }
  if (rates.empty()) throw not_found();

  json_writer w(ctx.pretty);
  w.begin_object();
  w.key("amount").value(q.amount);
  w.key("base").value(q.base);
  w.key("start_date").value(format_date(rates.begin()->first));
  w.key("end_date").value(format_date(rates.rbegin()->first));
  w.key("rates").begin_object();
  for (const auto& [day, r] : rates) {
    w.key(format_date(day));
    write_rates(w, r);
  }
  w.end_object();
  w.end_object();
  http_response res = json_response(ctx, http::status::ok, std::move(w).release());
  res.set("X-Somrated-Source", src.name);
  return res;
}

/// `/v1/latest` (and its Frankfurter alias `/v1/current`).
http_response answer_latest(const request_context& ctx) {
  const source_config& src = select_source(ctx);
  const fx_query q = parse_fx_query(ctx);
  const source_days s = read_source(ctx, src);
  return on_date_answer(ctx, src, q, s.last_day, cross_rates(s.latest, q));
}

// ---- /api/v1/convert ----

/// 404 unknown_currency for code, listing the currencies src has.
api_error unknown_currency(std::string_view param, std::string_view code, const source_config& src,
                           const source_days& s) {
  std::vector<std::string> known{std::string(som)};
  for (const auto& [c, v] : s.latest) known.push_back(c);
  std::sort(known.begin(), known.end());
  return api_error(http::status::not_found, "unknown_currency",
                   fmt::format("{}: no rates for {} from source {}; known: {}", param, code,
                               src.name, join_or_none(known)));
}

/// A positive decimal amount; 400 invalid_parameter otherwise.
decimal parse_amount(const request_context& ctx) {
  std::optional<std::string_view> text = ctx.param("amount");
  if (!text) return *decimal::parse("1");
  std::optional<decimal> amount = decimal::parse(*text);
  if (!amount || amount->is_zero()) {
    throw api_error(http::status::bad_request, "invalid_parameter",
                    fmt::format("amount: expected a positive decimal such as 100 or 2.5 (at "
                                "most 18 digits, {} after the point), got {}",
                                decimal::max_scale, quote(*text)));
  }
  return *amount;
}

/// 400 invalid_parameter for a result longer than 18 digits.
api_error amount_too_large(std::string_view amount) {
  return api_error(
      http::status::bad_request, "invalid_parameter",
      fmt::format("amount: {} is too large: the result needs more than 18 digits", amount));
}

}  // namespace

http_response handle_fx_latest(const request_context& ctx) {
  return frankfurter(ctx, [&] { return answer_latest(ctx); });
}

http_response handle_fx_currencies(const request_context& ctx) {
  return frankfurter(ctx, [&] {
    const source_config& src = select_source(ctx);
    std::vector<std::string> codes = ctx.db->currencies(src.name);
    codes.emplace_back(som);
    std::sort(codes.begin(), codes.end());
    codes.erase(std::unique(codes.begin(), codes.end()), codes.end());
    json_writer w(ctx.pretty);
    w.begin_object();
    for (const std::string& code : codes) w.key(code).value(name_of(code));
    w.end_object();
    http_response res = json_response(ctx, http::status::ok, std::move(w).release());
    res.set("X-Somrated-Source", src.name);
    return res;
  });
}

http_response handle_fx_dated(const request_context& ctx) {
  return frankfurter(ctx, [&] {
    const std::string_view name = ctx.path_name;
    if (name == "current") return answer_latest(ctx);
    if (date_shaped(name)) return answer_day(ctx, calendar_day(name));
    const std::size_t dots = name.find("..");
    if (dots == 10 && date_shaped(name.substr(0, 10))) {
      const std::string_view rest = name.substr(12);
      if (rest.empty()) return answer_range(ctx, calendar_day(name.substr(0, 10)), std::nullopt);
      if (date_shaped(rest)) {
        return answer_range(ctx, calendar_day(name.substr(0, 10)), calendar_day(rest));
      }
    }
    throw not_found();
  });
}

/// Converts amount of `from` into `to` through the som, on the source's newest values or
/// on a day's (the same reading of a day as the /v1 paths). Products are exact; when a
/// division is involved, rate and result are each rounded once, half to even, to
/// convert_digits significant digits (the result straight from the exact inputs, never
/// from the rounded rate).
http_response handle_convert(const request_context& ctx) {
  const source_config& src = select_source(ctx);
  std::optional<std::string_view> from_text = ctx.param("from");
  std::optional<std::string_view> to_text = ctx.param("to");
  if (!from_text || !to_text) {
    throw api_error(http::status::bad_request, "missing_parameter",
                    fmt::format("{}: required, a 3-letter code such as {}",
                                from_text ? "to" : "from", from_text ? "EUR" : "USD"));
  }
  const std::string from = parse_currency("from", *from_text);
  const std::string to = parse_currency("to", *to_text);
  const decimal amount = parse_amount(ctx);

  source_days s;
  try {
    s = read_source(ctx, src);
  } catch (const api_error&) {
    throw api_error(http::status::not_found, "no_data",
                    fmt::format("source {} has no rates yet", src.name));
  }
  for (const auto& [param, code] : {std::pair{"from", &from}, std::pair{"to", &to}}) {
    if (*code != som && !s.latest.contains(*code)) throw unknown_currency(param, *code, src, s);
  }

  sys_days day = s.last_day;
  rate_map kgs = s.latest;
  if (std::optional<std::string_view> date_text = ctx.param("date")) {
    std::optional<sys_days> d = parse_date(*date_text);
    if (!d) {
      throw api_error(http::status::bad_request, "invalid_parameter",
                      fmt::format("date: expected YYYY-MM-DD, got {}", quote(*date_text)));
    }
    day = std::min(*d, s.last_day);
    kgs = values_on(ctx, src, s, std::nullopt, day);
    for (const std::string* code : {&from, &to}) {
      if (*code != som && !kgs.contains(*code)) {
        throw api_error(
            http::status::not_found, "no_rate",
            fmt::format("date: no {} rate from source {} was in force on {}; the data starts "
                        "later",
                        *code, src.name, format_date(day)));
      }
    }
  }

  const auto kgs_of = [&](const std::string& code) -> const decimal* {
    return code == som ? nullptr : &kgs.at(code);
  };
  const decimal* from_kgs = kgs_of(from);
  const decimal* to_kgs = kgs_of(to);
  if (to_kgs && to_kgs->is_zero()) {
    throw api_error(http::status::not_found, "no_rate",
                    fmt::format("to: the {} rate from source {} is zero", to, src.name));
  }
  const decimal one = *decimal::parse("1");
  const precision p = precision::significant(convert_digits);
  std::optional<decimal> rate, result;
  if (from == to) {
    rate = one;
    result = amount;
  } else if (!to_kgs) {  // into som: exact
    rate = *from_kgs;
    result = decimal::multiply(amount, *from_kgs);
  } else {
    rate = decimal::divide(from_kgs ? *from_kgs : one, *to_kgs, p);
    result = decimal::multiply_divide(amount, from_kgs ? *from_kgs : one, *to_kgs, p);
  }
  if (!rate || !result) throw amount_too_large(amount.text());

  json_writer w(ctx.pretty);
  w.begin_object();
  w.key("from").value(from);
  w.key("to").value(to);
  w.key("amount").value(amount);
  w.key("rate").value(*rate);
  w.key("result").value(*result);
  w.key("date").value(format_date(day));
  w.key("source").value(src.name);
  w.key("kgs_rates").begin_object();
  for (const std::string* code : {&from, &to}) {
    if (*code != som && (code == &from || to != from)) w.key(*code).value(kgs.at(*code));
  }
  w.end_object();
  w.end_object();
  return json_response(ctx, http::status::ok, std::move(w).release());
}

}  // namespace somrated::api_detail
