#pragma once

// The words of the page and the charts in English, Russian and Kyrgyz.

#include <array>
#include <string_view>

#include "somrated/page.hpp"

namespace somrated::page_text {

/// Short unit names for durations such as "15 min", by format_duration's suffix.
///
/// Abbreviations do not decline, so "за 1 сут" and "за 5 сут" both read right in
/// Russian, and Kyrgyz never inflects a noun after a numeral.
struct unit_names {
  std::string_view ms, s, m, h, d, w;
};

/// Every text of one language. Entries with {placeholders} are fmt templates; their
/// arguments are escaped before formatting, and the templates hold no markup.
struct texts {
  std::string_view title;                     ///< The page's title and heading.
  std::string_view note;                      ///< What the numbers are.
  std::string_view language_label;            ///< aria-label of the language switch.
  std::string_view col_currency;              ///< Column headings.
  std::string_view col_rate;                  ///<
  std::string_view col_change;                ///<
  std::string_view col_since;                 ///<
  std::string_view last_read;                 ///< Before the last successful scrape time.
  std::string_view never;                     ///< No successful scrape yet.
  std::string_view stale;                     ///< The stale badge.
  std::string_view fresh;                     ///< The up-to-date badge.
  std::string_view stale_hint;                ///< The stale badge's title.
  std::string_view fresh_hint;                ///< The up-to-date badge's title.
  std::string_view no_rates;                  ///< A source without stored rates.
  std::string_view rates_for;                 ///< {date}: the source's own date (NBKR).
  std::string_view trend_up;                  ///< Screen-reader words for a change.
  std::string_view trend_down;                ///<
  std::string_view trend_same;                ///<
  std::string_view trend_unknown;             ///< No rate 24 hours earlier.
  std::string_view alerts;                    ///< Heading of the firing alerts.
  std::string_view no_alerts;                 ///< None are firing.
  std::string_view alert_value;               ///< Before the measured value.
  std::string_view alert_since;               ///< Before the start of the firing episode.
  std::array<std::string_view, 5> condition;  ///< By alert_condition: {currency} {source}
                                              ///< {threshold} {window} {against} {limit}.
  std::string_view change_up;                 ///< change_pct with direction up.
  std::string_view change_down;               ///< change_pct with direction down.
  std::string_view charts;                    ///< Heading of the charts.
  std::string_view range_label;               ///< aria-label of a chart's period switch.
  std::array<std::string_view, 3> ranges;     ///< By chart_range.
  std::string_view chart_alt;                 ///< {currency} {range} {source}.
  std::string_view chart_source;              ///< {source}.
  std::string_view refresh_note;              ///< The footer.
  std::string_view json_note;                 ///< Before the JSON link.
  std::string_view offline;                   ///< Shown when a refresh failed.
  std::string_view no_data;                   ///< A chart without points.
  std::string_view chart_desc;                ///< {min} {max} {last}.
  unit_names units;                           ///< Duration units.
};

/// English.
inline constexpr texts english{
    "Kyrgyz som exchange rates",
    "Som (KGS) per unit of each currency. The change is against the rate in force 24 hours "
    "earlier.",
    "Language",
    "Currency",
    "Rate",
    "24 h change",
    "Since",
    "Last read:",
    "never",
    "Stale",
    "Up to date",
    "No successful read within 3 scrape intervals",
    "Read successfully within the last 3 scrape intervals",
    "No rates yet.",
    "Rates for {date}",
    "up",
    "down",
    "unchanged",
    "no rate 24 hours earlier",
    "Firing alerts",
    "No alerts are firing.",
    "value",
    "since",
    {"{currency} at {source} above {threshold}", "{currency} at {source} below {threshold}",
     "{currency} at {source} moved {threshold}% or more in {window}",
     "{currency} at {source} differs from {against} by {threshold}% or more",
     "{source}: no successful read for {limit}"},
    "{currency} at {source} rose {threshold}% or more in {window}",
    "{currency} at {source} fell {threshold}% or more in {window}",
    "Charts",
    "Period",
    {"30 days", "1 year", "All time"},
    "{currency} in som, {range}, source {source}",
    "source {source}",
    "The figures refresh every minute.",
    "The same data as JSON:",
    "Could not refresh; showing the last figures received.",
    "No data for this period",
    "Lowest {min}, highest {max}, latest {last}",
    {"ms", "s", "min", "h", "d", "wk"},
};

/// Russian.
inline constexpr texts russian{
    "Курсы валют к сому",
    "Сколько сомов (KGS) стоит единица валюты. Изменение — по сравнению с курсом, "
    "действовавшим 24 часа назад.",
    "Язык",
    "Валюта",
    "Курс",
    "За 24 ч",
    "Действует с",
    "Обновлено:",
    "ещё не было",
    "Устарело",
    "Актуально",
    "Нет успешного обновления за 3 интервала опроса",
    "Успешно обновлено за последние 3 интервала опроса",
    "Курсов пока нет.",
    "Курсы на {date}",
    "рост",
    "снижение",
    "без изменений",
    "нет курса 24 часа назад",
    "Сработавшие оповещения",
    "Сработавших оповещений нет.",
    "значение",
    "активно с",
    {"курс {currency} по данным {source} выше {threshold}",
     "курс {currency} по данным {source} ниже {threshold}",
     "курс {currency} по данным {source} изменился на {threshold}% или больше за {window}",
     "курс {currency} по данным {source} отличается от {against} на {threshold}% или больше",
     "нет успешного обновления курсов с {source} в течение {limit}"},
    "курс {currency} по данным {source} вырос на {threshold}% или больше за {window}",
    "курс {currency} по данным {source} снизился на {threshold}% или больше за {window}",
    "Графики",
    "Период",
    {"30 дней", "1 год", "Всё время"},
    "Курс {currency} в сомах, {range}, источник {source}",
    "источник {source}",
    "Цифры обновляются каждую минуту.",
    "Те же данные в JSON:",
    "Не удалось обновить; показаны последние полученные данные.",
    "Нет данных за этот период",
    "Минимум {min}, максимум {max}, последний курс {last}",
    {"мс", "с", "мин", "ч", "сут", "нед"},
};

/// Kyrgyz.
inline constexpr texts kyrgyz{
    "Сомго карата валюта курстары",
    "Валютанын бир бирдигинин сом (KGS) менен баасы. Өзгөрүү 24 саат мурунку курска "
    "салыштырмалуу.",
    "Тил",
    "Валюта",
    "Курс",
    "24 саатта",
    "Качантан бери",
    "Акыркы жаңыртуу:",
    "болгон эмес",
    "Эскирген",
    "Актуалдуу",
    "Акыркы 3 текшерүү аралыгында ийгиликтүү жаңыртуу болгон жок",
    "Акыркы 3 текшерүү аралыгында ийгиликтүү жаңыртылды",
    "Азырынча курстар жок.",
    "{date} күнгө карата курстар",
    "өстү",
    "төмөндөдү",
    "өзгөргөн жок",
    "24 саат мурунку курс жок",
    "Активдүү эскертүүлөр",
    "Активдүү эскертүүлөр жок.",
    "маани",
    "башталышы",
    {"{currency} курсу {source} маалыматы боюнча {threshold} чегинен жогору",
     "{currency} курсу {source} маалыматы боюнча {threshold} чегинен төмөн",
     "{currency} курсу {source} маалыматы боюнча {window} ичинде {threshold}% же андан көп "
     "өзгөрдү",
     "{currency} курсу {source} маалыматы боюнча {against} курсунан {threshold}% же андан көп "
     "айырмаланат",
     "{source} булагынан курстар {limit} бою ийгиликтүү жаңыланган жок"},
    "{currency} курсу {source} маалыматы боюнча {window} ичинде {threshold}% же андан көп өстү",
    "{currency} курсу {source} маалыматы боюнча {window} ичинде {threshold}% же андан көп "
    "төмөндөдү",
    "Графиктер",
    "Мезгил",
    {"30 күн", "1 жыл", "Бардык мезгил"},
    "{currency} курсу сом менен, {range}, булак: {source}",
    "булак: {source}",
    "Сандар ар мүнөт сайын жаңыланат.",
    "Ушул эле маалыматтар JSON түрүндө:",
    "Жаңыртуу мүмкүн болгон жок; акыркы алынган маалыматтар көрсөтүлүүдө.",
    "Бул мезгил үчүн маалымат жок",
    "Эң төмөнкү {min}, эң жогорку {max}, акыркы {last}",
    {"мс", "сек", "мүн", "саат", "күн", "апта"},
};

/// The texts of lang.
inline const texts& for_language(page_language lang) {
  switch (lang) {
    case page_language::ru:
      return russian;
    case page_language::ky:
      return kyrgyz;
    case page_language::en:
      break;
  }
  return english;
}

}  // namespace somrated::page_text
