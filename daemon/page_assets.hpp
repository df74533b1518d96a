#pragma once

// The page's one inline style sheet and one inline script. Both are fixed text: the
// Content-Security-Policy allows exactly these by their SHA-256 hashes, so nothing
// dynamic may ever be written into them (dynamic values go into escaped markup).

#include <string_view>

namespace somrated::page_assets {

/// The style sheet: system fonts only, light and dark colours, a narrow-screen layout.
inline constexpr std::string_view style = R"css(
:root{color-scheme:light dark;--bg:#f6f8fa;--card:#fff;--fg:#1f2328;--muted:#59636e;
--line:#d1d9e0;--accent:#0969da;--up:#1a7f37;--down:#cf222e;--warn:#7d4e00;--warnbg:#fff8c5;
--ok:#1a7f37;--okbg:#dafbe1}
@media (prefers-color-scheme:dark){:root{--bg:#0d1117;--card:#161b22;--fg:#e6edf3;
--muted:#9198a1;--line:#3d444d;--accent:#4493f8;--up:#3fb950;--down:#f85149;--warn:#e3b341;
--warnbg:#3b2e0a;--ok:#3fb950;--okbg:#0f2a17}}
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%;text-size-adjust:100%}
body{margin:0;background:var(--bg);color:var(--fg);
font:16px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans",sans-serif}
header,main,footer{max-width:64rem;margin:0 auto;padding:0 1rem}
header{display:flex;flex-wrap:wrap;align-items:baseline;justify-content:space-between;
gap:.25rem 1rem;padding-top:1rem}
h1{font-size:1.5rem;margin:0}
h2{font-size:1.15rem;margin:0}
a{color:var(--accent)}
.langs{display:flex;gap:.75rem}
.langs a[aria-current]{color:var(--fg);font-weight:600;text-decoration:none}
.note,.meta,footer{color:var(--muted);font-size:.9rem}
.card{background:var(--card);border:1px solid var(--line);border-radius:.5rem;
padding:.75rem 1rem;margin:1rem 0}
.card-head{display:flex;flex-wrap:wrap;align-items:center;gap:.5rem}
.badge{font-size:.8rem;font-weight:600;border-radius:1rem;padding:.1rem .6rem}
.badge.stale{color:var(--warn);background:var(--warnbg)}
.badge.fresh{color:var(--ok);background:var(--okbg)}
.meta{margin:.25rem 0}
table{width:100%;border-collapse:collapse;margin-top:.5rem}
th,td{padding:.4rem .5rem;border-bottom:1px solid var(--line);text-align:left;
vertical-align:baseline}
thead th{color:var(--muted);font-size:.85rem;font-weight:600}
tbody tr:last-child>*{border-bottom:0}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.rate{font-weight:600;font-size:1.05rem}
.up{color:var(--up)}
.down{color:var(--down)}
.same,.unknown{color:var(--muted)}
.change small{font-size:.8rem}
.alerts ul{margin:.5rem 0 0;padding-left:1.25rem}
.alerts li{margin:.25rem 0}
.offline{color:var(--warn);background:var(--warnbg);border-radius:.5rem;padding:.5rem 1rem}
.chart-grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(100%,24rem),1fr));gap:1rem;
margin-top:.5rem}
figure{margin:0}
figcaption{display:flex;flex-wrap:wrap;justify-content:space-between;align-items:baseline;
gap:.25rem .75rem;margin-bottom:.25rem}
.ranges{display:flex;gap:.6rem;font-size:.9rem}
.ranges a[aria-current]{color:var(--fg);font-weight:600;text-decoration:none}
figure img{display:block;width:100%;height:auto;border:1px solid var(--line);
border-radius:.375rem}
.sr{position:absolute;width:1px;height:1px;margin:-1px;padding:0;overflow:hidden;
clip:rect(0 0 0 0);white-space:nowrap;border:0}
footer{padding-bottom:1.5rem}
@media (max-width:32rem){header,main,footer{padding:0 .5rem}.card{padding:.5rem .6rem}
th,td{padding:.35rem .3rem}.since{display:none}h1{font-size:1.25rem}}
)css";

/// The script: local times, range switching, and a refresh every minute (and when the
/// window regains focus) that swaps the #live region for a fresh copy of the page's.
///
/// It fetches the page itself rather than /api/v1/latest: JSON.parse would turn the
/// published "1.10" into 1.1, and the server already renders changes, staleness and
/// alerts in the chosen language. A 304 (the page carries an ETag) costs no body.
inline constexpr std::string_view script = R"js(
(() => {
  "use strict";
  const live = document.getElementById("live");
  const offline = document.getElementById("offline");
  let shown = live ? live.innerHTML : "";
  let busy = false;

  // Local time in the page's language, or as 2025-06-10 16:52 when the browser has no
  // data for that language (many have none for Kyrgyz) rather than in another one.
  const lang = document.documentElement.lang || "en";
  const pad = (n) => String(n).padStart(2, "0");
  let format = null;
  try {
    const f = new Intl.DateTimeFormat(lang, {dateStyle: "medium", timeStyle: "short"});
    if (f.resolvedOptions().locale.split("-")[0] === lang) format = f;
  } catch (e) {
    format = null;
  }
  const localText = (d) => format ? format.format(d) :
      `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
      `${pad(d.getHours())}:${pad(d.getMinutes())}`;

  const localTimes = (scope) => {
    for (const t of scope.querySelectorAll("time.instant[datetime]")) {
      const d = new Date(t.dateTime);
      if (!Number.isNaN(d.getTime())) {
        t.title = t.textContent;
        t.textContent = localText(d);
      }
    }
  };

  const refresh = async () => {
    if (!live || busy) return;
    busy = true;
    try {
      const res = await fetch(location.pathname + location.search,
                              {headers: {Accept: "text/html"}, cache: "no-cache"});
      if (!res.ok) throw new Error("HTTP " + res.status);
      const doc = new DOMParser().parseFromString(await res.text(), "text/html");
      const fresh = doc.getElementById("live");
      if (!fresh) throw new Error("no #live in the page");
      if (fresh.innerHTML !== shown) {
        shown = fresh.innerHTML;
        live.replaceChildren(...fresh.childNodes);
        localTimes(live);
      }
      if (offline) offline.hidden = true;
    } catch (e) {
      if (offline) offline.hidden = false;
    } finally {
      busy = false;
    }
  };

  document.addEventListener("click", (event) => {
    const link = event.target.closest ? event.target.closest("a[data-range]") : null;
    if (!link || event.button !== 0 || event.ctrlKey || event.metaKey || event.shiftKey) return;
    const figure = link.closest("figure");
    const img = figure ? figure.querySelector("img") : null;
    if (!img) return;
    event.preventDefault();
    img.src = link.getAttribute("href");
    if (link.dataset.alt) img.alt = link.dataset.alt;
    for (const other of figure.querySelectorAll("a[data-range]")) {
      if (other === link) {
        other.setAttribute("aria-current", "true");
      } else {
        other.removeAttribute("aria-current");
      }
    }
  });

  localTimes(document);
  setInterval(refresh, 60000);
  window.addEventListener("focus", refresh);
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") refresh();
  });
})();
)js";

}  // namespace somrated::page_assets
