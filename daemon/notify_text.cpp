// Message texts of notifications: the built-in templates in English, Russian and Kyrgyz,
// custom templates, and the short titles ntfy shows.
#include "notify_text.hpp"

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "somrated/notify.hpp"

namespace somrated {

namespace {

using namespace std::string_view_literals;

/// A unit word for readable durations: the form after 1 and after any other number.
///
/// English needs two forms; the Russian texts use abbreviations ("ч", "мин"), which do
/// not decline, so "уже 1 мин" and "уже 5 мин" both read right where full words would
/// need the accusative of three plural classes; Kyrgyz never inflects a noun after a
/// numeral.
struct unit_words {
  std::string_view one;
  std::string_view other;
};

/// The built-in texts of one language.
///
/// A message is a frame per event kind (indexed by event_kind) around a phrase per
/// condition (indexed by alert_condition). Phrases come in three sets: what holds while
/// the alert fires (firing and reminder), what holds once it resolved, and what the rule
/// watches (test events, which describe the rule rather than a measurement). Frames and
/// phrases are fmt templates over the custom placeholders plus {what} (the phrase),
/// {rate_note} (" Current rate: 91.20." or empty), {shown} (the measured rate), {change}
/// (the signed percent move), {elapsed} and {limit} (readable durations for stale).
struct language_text {
  std::string_view code;
  std::array<std::string_view, 4> frame;
  std::array<std::string_view, 5> what_active;
  std::array<std::string_view, 5> what_resolved;
  std::array<std::string_view, 5> what_rule;
  std::string_view rate_note;
  std::array<std::string_view, 5> title;      ///< ntfy headline per condition.
  std::array<std::string_view, 4> kind_word;  ///< Appended to the title per event kind.
  unit_words day, hour, minute, second;
};

/// English.
constexpr language_text english{
    "en",
    {"{rule} is firing: {what}.{rate_note} Since {starts_at}.",
     "{rule} is still firing: {what}.{rate_note} Firing since {starts_at}.",
     "{rule} is resolved: {what}.{rate_note} It fired from {starts_at} to {time}.",
     "Test notification from {rule}: it fires when {what}.{rate_note} Sent at {time}."},
    {"{currency} at {source} is {shown}, above {threshold}",
     "{currency} at {source} is {shown}, below {threshold}",
     "{currency} at {source} moved {change}% (threshold {threshold}%)",
     "{currency} at {source} differs from {against} by {value}% (threshold {threshold}%)",
     "no successful scrape of {source} for {elapsed} (limit {limit})"},
    {"{currency} at {source} is {shown}, no longer above {threshold}",
     "{currency} at {source} is {shown}, no longer below {threshold}",
     "{currency} at {source} has moved {change}%, under the {threshold}% threshold",
     "{currency} at {source} differs from {against} by {value}%, under the {threshold}% "
     "threshold",
     "{source} is being scraped successfully again"},
    {"{currency} at {source} goes above {threshold}",
     "{currency} at {source} goes below {threshold}",
     "{currency} at {source} moves by {threshold}% or more",
     "{currency} at {source} differs from {against} by {threshold}% or more",
     "{source} has had no successful scrape for {limit}"},
    " Current rate: {rate}.",
    {"{currency} above {threshold}", "{currency} below {threshold}",
     "{currency} moved {threshold}% or more",
     "{currency} {source} vs {against} spread {threshold}%", "{source} stale for {limit}"},
    {"firing", "still firing", "resolved", "test"},
    {"day", "days"},
    {"hour", "hours"},
    {"minute", "minutes"},
    {"second", "seconds"},
};

/// Russian.
constexpr language_text russian{
    "ru",
    {"Сработало оповещение {rule}: {what}.{rate_note} Активно с {starts_at}.",
     "Оповещение {rule} всё ещё активно: {what}.{rate_note} Активно с {starts_at}.",
     "Оповещение {rule} снято: {what}.{rate_note} Было активно с {starts_at} по {time}.",
     "Тестовое уведомление оповещения {rule}: оно срабатывает, когда {what}.{rate_note} "
     "Отправлено {time}."},
    {"курс {currency} по данным {source} — {shown}, выше {threshold}",
     "курс {currency} по данным {source} — {shown}, ниже {threshold}",
     "курс {currency} по данным {source} изменился на {change}% (порог {threshold}%)",
     "курс {currency} по данным {source} отличается от {against} на {value}% (порог "
     "{threshold}%)",
     "нет успешного обновления курсов с {source} уже {elapsed} (порог {limit})"},
    {"курс {currency} по данным {source} — {shown}, уже не выше {threshold}",
     "курс {currency} по данным {source} — {shown}, уже не ниже {threshold}",
     "изменение курса {currency} по данным {source} составляет {change}%, меньше порога "
     "{threshold}%",
     "курс {currency} по данным {source} отличается от {against} на {value}%, меньше порога "
     "{threshold}%",
     "курсы с {source} снова успешно обновляются"},
    {"курс {currency} по данным {source} поднимается выше {threshold}",
     "курс {currency} по данным {source} опускается ниже {threshold}",
     "курс {currency} по данным {source} изменяется на {threshold}% или больше",
     "курс {currency} по данным {source} отличается от {against} на {threshold}% или больше",
     "курсы с {source} не обновляются успешно в течение {limit}"},
    " Текущий курс: {rate}.",
    {"{currency} выше {threshold}", "{currency} ниже {threshold}",
     "{currency}: изменение от {threshold}%",
     "{currency}: расхождение {source} и {against} от {threshold}%",
     "{source}: нет обновлений {limit}"},
    {"сработало", "всё ещё активно", "снято", "тест"},
    {"сут", "сут"},
    {"ч", "ч"},
    {"мин", "мин"},
    {"с", "с"},
};

/// Kyrgyz.
constexpr language_text kyrgyz{
    "ky",
    {"{rule} эскертүүсү иштеди: {what}.{rate_note} Башталышы: {starts_at}.",
     "{rule} эскертүүсү дагы эле активдүү: {what}.{rate_note} Башталышы: {starts_at}.",
     "{rule} эскертүүсү аяктады: {what}.{rate_note} Активдүү болгон убакыт: {starts_at} – "
     "{time}.",
     "{rule} эскертүүсүнүн сыноо билдирүүсү: эскертүү {what} иштейт.{rate_note} Жөнөтүлгөн "
     "убакыт: {time}."},
    {"{currency} курсу {source} маалыматы боюнча {shown}, бул {threshold} чегинен жогору",
     "{currency} курсу {source} маалыматы боюнча {shown}, бул {threshold} чегинен төмөн",
     "{currency} курсу {source} маалыматы боюнча {change}% өзгөрдү (чек: {threshold}%)",
     "{currency} курсу {source} маалыматы боюнча {against} курсунан {value}% айырмаланат "
     "(чек: {threshold}%)",
     "{source} булагынан акыркы ийгиликтүү жаңыртуудан бери {elapsed} өттү (чек: {limit})"},
    {"{currency} курсу {source} маалыматы боюнча {shown}, эми {threshold} чегинен жогору эмес",
     "{currency} курсу {source} маалыматы боюнча {shown}, эми {threshold} чегинен төмөн эмес",
     "{currency} курсунун {source} маалыматы боюнча өзгөрүшү {change}%, бул {threshold}% "
     "чегинен аз",
     "{currency} курсу {source} маалыматы боюнча {against} курсунан {value}% айырмаланат, бул "
     "{threshold}% чегинен аз",
     "{source} булагынан курстар кайрадан ийгиликтүү жаңыланууда"},
    {"{currency} курсу {source} маалыматы боюнча {threshold} чегинен жогору болгондо",
     "{currency} курсу {source} маалыматы боюнча {threshold} чегинен төмөн болгондо",
     "{currency} курсу {source} маалыматы боюнча {threshold}% же андан көп өзгөргөндө",
     "{currency} курсу {source} маалыматы боюнча {against} курсунан {threshold}% же андан көп "
     "айырмаланганда",
     "{source} булагынан курстар {limit} бою ийгиликтүү жаңыланбаганда"},
    " Учурдагы курс: {rate}.",
    {"{currency} {threshold} чегинен жогору", "{currency} {threshold} чегинен төмөн",
     "{currency}: {threshold}% же андан көп өзгөрүү",
     "{currency}: {source} менен {against} айырмасы {threshold}% же андан көп",
     "{source}: {limit} бою жаңыртуу жок"},
    {"иштеди", "дагы эле активдүү", "аяктады", "сыноо"},
    {"күн", "күн"},
    {"саат", "саат"},
    {"мүнөт", "мүнөт"},
    {"секунд", "секунд"},
};

/// The languages with built-in texts.
constexpr const language_text* languages[] = {&english, &russian, &kyrgyz};

/// The placeholders custom templates may use, in the order template_problem lists them.
constexpr std::string_view placeholders[] = {"rule",      "currency", "source",   "condition",
                                             "threshold", "value",    "rate",     "against",
                                             "status",    "time",     "starts_at"};

/// The texts for a language code; English for anything unknown.
const language_text& texts_for(std::string_view code) {
  for (const language_text* t : languages) {
    if (t->code == code) return *t;
  }
  return english;
}

/// Everything a template can refer to, as text.
struct fields {
  std::string rule, currency, source, condition, threshold, value, rate, against, status, time,
      starts_at;
  // Built-in templates only.
  std::string shown, change, elapsed, limit, what, rate_note;
};

/// "firing" for firing, reminder and test events; "resolved" for resolved ones.
std::string_view status_of(const alert_event& e) {
  return e.kind == event_kind::resolved ? "resolved"sv : "firing"sv;
}

/// Seconds as "2 hours 5 minutes": the largest unit and the next one when not zero.
std::string readable_duration(std::int64_t seconds, const language_text& t) {
  struct part {
    std::int64_t length;
    const unit_words* words;
  };
  const part parts[] = {{86400, &t.day}, {3600, &t.hour}, {60, &t.minute}, {1, &t.second}};
  auto word = [](std::int64_t n, const unit_words& w) {
    return fmt::format("{} {}", n, n == 1 ? w.one : w.other);
  };
  if (seconds <= 0) return word(0, t.second);
  for (std::size_t i = 0; i < std::size(parts); ++i) {
    const std::int64_t n = seconds / parts[i].length;
    if (n == 0) continue;
    std::string out = word(n, *parts[i].words);
    if (i + 1 < std::size(parts)) {
      const std::int64_t rest = seconds % parts[i].length / parts[i + 1].length;
      if (rest != 0) out += ' ' + word(rest, *parts[i + 1].words);
    }
    return out;
  }
  return word(0, t.second);  // unreachable: seconds > 0 has a non-zero part
}

/// Whole seconds from a value such as "7200" or "7200.5"; nullopt when it is not one.
std::optional<std::int64_t> whole_seconds(std::string_view v) {
  if (const auto dot = v.find('.'); dot != std::string_view::npos) v = v.substr(0, dot);
  if (v.empty() || v.size() > 12) return std::nullopt;
  std::int64_t n = 0;
  for (const char c : v) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + (c - '0');
  }
  return n;
}

/// A percent move with its sign: "2.31" -> "+2.31", "-0.5" stays, "0" stays.
std::string signed_percent(std::string_view v) {
  if (v.empty() || v.front() == '-' || v.front() == '+') return std::string(v);
  if (v.find_first_of("123456789") == std::string_view::npos) return std::string(v);
  return fmt::format("+{}", v);
}

/// The fields of e, with durations in t's language.
fields fields_of(const alert_event& e, const language_text& t) {
  fields f;
  f.rule = e.rule;
  f.currency = e.currency;
  f.source = e.source;
  f.condition = condition_name(e.condition);
  f.threshold = e.threshold;
  f.value = e.value;
  f.rate = e.rate;
  f.against = e.against;
  f.status = status_of(e);
  f.time = detail::message_time(e.at);
  f.starts_at = detail::message_time(e.starts_at);
  f.shown = e.value.empty() ? e.rate : e.value;
  f.change = signed_percent(e.value);
  const auto elapsed = whole_seconds(e.value);
  f.elapsed = elapsed ? readable_duration(*elapsed, t) : e.value;
  const auto limit = parse_duration(e.threshold);
  f.limit = limit ? readable_duration(std::chrono::floor<std::chrono::seconds>(*limit).count(), t)
                  : e.threshold;
  return f;
}

/// Renders a custom template: the documented placeholders only.
std::string fill_custom(std::string_view tpl, const fields& f) {
  return fmt::format(fmt::runtime(tpl), fmt::arg("rule", f.rule), fmt::arg("currency", f.currency),
                     fmt::arg("source", f.source), fmt::arg("condition", f.condition),
                     fmt::arg("threshold", f.threshold), fmt::arg("value", f.value),
                     fmt::arg("rate", f.rate), fmt::arg("against", f.against),
                     fmt::arg("status", f.status), fmt::arg("time", f.time),
                     fmt::arg("starts_at", f.starts_at));
}

/// Renders a built-in template: the documented placeholders and the built-in extras.
std::string fill_builtin(std::string_view tpl, const fields& f) {
  return fmt::format(
      fmt::runtime(tpl), fmt::arg("rule", f.rule), fmt::arg("currency", f.currency),
      fmt::arg("source", f.source), fmt::arg("condition", f.condition),
      fmt::arg("threshold", f.threshold), fmt::arg("value", f.value), fmt::arg("rate", f.rate),
      fmt::arg("against", f.against), fmt::arg("status", f.status), fmt::arg("time", f.time),
      fmt::arg("starts_at", f.starts_at), fmt::arg("shown", f.shown), fmt::arg("change", f.change),
      fmt::arg("elapsed", f.elapsed), fmt::arg("limit", f.limit), fmt::arg("what", f.what),
      fmt::arg("rate_note", f.rate_note));
}

/// The built-in message of e in t's language.
///
/// Above/below phrases already show the rate, and stale rules have none, so the
/// "current rate" note goes only into change/spread messages and test messages (which
/// describe the rule and would otherwise show no number).
std::string builtin_message(const language_text& t, const alert_event& e) {
  const auto c = static_cast<std::size_t>(e.condition);
  fields f = fields_of(e, t);
  const std::string_view what = e.kind == event_kind::test       ? t.what_rule[c]
                                : e.kind == event_kind::resolved ? t.what_resolved[c]
                                                                 : t.what_active[c];
  f.what = fill_builtin(what, f);
  const bool rate_note = e.kind == event_kind::test || e.condition == alert_condition::change_pct ||
                         e.condition == alert_condition::spread_pct;
  if (rate_note && !e.rate.empty()) f.rate_note = fill_builtin(t.rate_note, f);
  return fill_builtin(t.frame[static_cast<std::size_t>(e.kind)], f);
}

/// The first placeholder of tpl that is not a documented name ("{foo}", "{}", "{0}"),
/// as a problem text, or nullopt. Braces fmt would reject are left for fmt to name.
std::optional<std::string> unknown_placeholder(std::string_view tpl) {
  for (std::size_t i = 0; i < tpl.size(); ++i) {
    if (tpl[i] != '{') continue;
    if (i + 1 < tpl.size() && tpl[i + 1] == '{') {
      ++i;  // an escaped brace
      continue;
    }
    const std::size_t end = tpl.find_first_of(":}", i + 1);
    if (end == std::string_view::npos) return std::nullopt;
    const std::string_view name = tpl.substr(i + 1, end - i - 1);
    if (name.empty() || name.find_first_not_of("0123456789") == std::string_view::npos) {
      return fmt::format("positional placeholder {{{}}} at offset {}; use a name such as {{rule}}",
                         name, i);
    }
    bool known = false;
    for (const std::string_view p : placeholders) known = known || p == name;
    if (!known) {
      return fmt::format("unknown placeholder {{{}}} at offset {}; known: {{{}}}", name, i,
                         fmt::join(placeholders, "} {"));
    }
    i = end;
  }
  return std::nullopt;
}

}  // namespace

namespace detail {

std::string message_time(timestamp t) {
  const std::string s = format_rfc3339(t);  // "2026-11-28T10:52:00Z"
  return fmt::format("{} {} UTC", std::string_view(s).substr(0, 10),
                     std::string_view(s).substr(11, 5));
}

std::string event_title(const notifier_config& n, const alert_event& e) {
  const language_text& t = texts_for(n.language);
  const fields f = fields_of(e, t);
  return fmt::format("{}: {}", fill_builtin(t.title[static_cast<std::size_t>(e.condition)], f),
                     t.kind_word[static_cast<std::size_t>(e.kind)]);
}

}  // namespace detail

bool known_language(std::string_view lang) {
  for (const language_text* t : languages) {
    if (t->code == lang) return true;
  }
  return false;
}

// A custom template that fmt rejects falls back to the built-in text: config loading
// runs template_problem, so this only guards against a template that slipped past it,
// and a notification with the default wording beats none.
std::string render_message(const notifier_config& n, const alert_event& e) {
  const language_text& t = texts_for(n.language);
  const std::string& custom =
      e.kind == event_kind::resolved ? n.template_resolved : n.template_firing;
  if (!custom.empty() && !unknown_placeholder(custom)) {
    try {
      return fill_custom(custom, fields_of(e, t));
    } catch (const fmt::format_error&) {
      // fall through to the built-in text
    }
  }
  return builtin_message(t, e);
}

std::optional<std::string> template_problem(std::string_view tpl) {
  if (auto problem = unknown_placeholder(tpl)) return problem;
  alert_event sample;
  sample.rule = "usd-above-90";
  sample.currency = "USD";
  sample.source = "24kg";
  sample.threshold = "90";
  sample.value = "91.20";
  sample.rate = "91.20";
  try {
    (void)fill_custom(tpl, fields_of(sample, english));
  } catch (const fmt::format_error& err) {
    return std::string(err.what());
  }
  return std::nullopt;
}

}  // namespace somrated
