"""The live view's poller: a small JavaScript component that fetches mnistviz.live.snapshot from the app's JSON
route (/api/live, app.py) every second, writes the numbers into the page's metric-style row (the elements with
data-stat="<label>") and the run's figures into the sidebar (data-side="<key>"; on the other pages a poller in the
sidebar does only that, every 2 s), and, when the snapshot differs from what the page drew (live.changed), reruns
the fragment that mounted it. A second's refresh is then one HTTP request and a few text nodes, not a Streamlit
rerun. Where the route is missing, it reruns the fragment at every poll instead, which
redraws the numbers on the server as before."""
import html

import streamlit as st

_JS = r"""
export default function ({ data, setTriggerValue }) {
  const pollers = (window.__mvPollers = window.__mvPollers || {});
  if (pollers[data.id]) pollers[data.id]();  // a previous mount of this poller: only one polls
  const base = window.location.pathname.replace(/\/[^/]*\/?$/, "/");  // the app's root: /train -> /
  const query = new URLSearchParams({ run: data.run || "", seen: JSON.stringify(data.seen) });
  const url = base + "api/live?" + query.toString();
  let stopped = false, timer = null, askedAt = 0;
  const show = (stats) => {
    for (const [label, value, note] of stats || []) {
      const cell = document.querySelector('.mv-stat[data-stat="' + CSS.escape(label) + '"]');
      if (!cell) continue;
      const v = cell.querySelector(".mv-value");
      if (v && v.textContent !== value) v.textContent = value;
      const n = cell.querySelector(".mv-sub");
      if (n && note !== undefined && n.textContent !== note) n.textContent = note;
    }
  };
  const poll = async () => {
    try {
      const r = await fetch(url, { cache: "no-store" });
      const isJson = r.ok && (r.headers.get("content-type") || "").startsWith("application/json");
      if (stopped) return;
      if (!isJson) {
        // no JSON route (shell.py served by `streamlit run shell.py`, not app.py, answers with its HTML page):
        // rerun the fragment every time, as the page did before the route existed
        setTriggerValue("changed", Date.now());
      } else {
        const snap = await r.json();
        if (stopped) return;
        if (data.stats) show(snap.stats);
        // the sidebar's figures of this run (pages/_shared.sidebar marks them while the run trains)
        for (const [k, v] of Object.entries((data.side && snap.sidebar) || {}))
          for (const el of document.querySelectorAll('.mv-side[data-side="' + CSS.escape(k) + '"]'))
            if (el.dataset.run === data.run && el.textContent !== v) el.textContent = v;
        // rerun the fragment; once, unless the page has not redrawn within 5 s (the rerun was lost)
        if (snap.rerun && Date.now() - askedAt > 5000) {
          askedAt = Date.now();
          setTriggerValue("changed", askedAt);
        }
      }
    } catch (e) {}  // the server is restarting or gone: Streamlit's own banner says so; try again
    if (!stopped) timer = setTimeout(poll, data.every_ms);
  };
  timer = setTimeout(poll, data.every_ms);
  const stop = () => { stopped = true; clearTimeout(timer); if (pollers[data.id] === stop) delete pollers[data.id]; };
  pollers[data.id] = stop;
  return stop;
}
"""

# After a launch (the Train page's buttons, the home page's first step) the Train page brings its live view into view
# once: the session key a launch sets, and the small component that scrolls.
SCROLL_TO_LIVE = "_scroll_to_live"
# The run the Train page's live view last drew training (or a launch just made): its end, seen by the page, moves the
# live view on to the rest of its augmented + normal pair.
WATCHING = "_live_watching"

_SCROLL_JS = r"""
export default function ({ data }) {
  // scroll the element into view, again each 50 ms while the page around it is still laying out (elements above it
  // appearing, charts drawn), until it has stayed put for 3 looks or 3 s have passed
  let last = null, still = 0, tries = 0, timer = null;
  const look = () => {
    const el = document.querySelector(data.selector);
    if (el) {
      el.style.scrollMarginTop = "4rem";  // below Streamlit's fixed header
      el.scrollIntoView({ block: "start" });
      const top = Math.round(el.getBoundingClientRect().top);
      still = top === last ? still + 1 : 0;
      last = top;
    }
    if (still < 3 && ++tries < 60) timer = setTimeout(look, 50);
  };
  timer = setTimeout(look, 0);
  return () => clearTimeout(timer);
}
"""
_scroller = st.components.v2.component("mnistviz_scroll_into_view", js=_SCROLL_JS, isolate_styles=False)


def scroll_into_view(selector: str, key: str) -> None:
    """Scroll the page so that the element `selector` (e.g. ".st-key-live_view", a keyed container) is at the top."""
    _scroller(key=key, data={"selector": selector})


NUMBERS_EVERY_S = 1.0  # the live numbers, while a run trains or waits in the queue
IDLE_EVERY_S = 5.0  # while nothing trains: only to notice a run started elsewhere (one small request)
SIDEBAR_EVERY_S = 2.0  # the sidebar's figures of the selected run on the other pages (its epochs take seconds)

_poller = st.components.v2.component("mnistviz_live_poller", js=_JS, isolate_styles=False)


def poller(key: str, run: str | None, seen: dict, every_s: float, stats: bool, side: bool | None = None) -> None:
    """Mount the poller in the current fragment: every `every_s` seconds it fetches the snapshot of `run` (None: the
    training and queue only), shows its numbers if `stats` and its sidebar figures if `side` (default: `stats`), and
    reruns the fragment (outside one: the page) when it differs from `seen`."""
    _poller(key=key, data={"id": key, "run": run, "seen": seen, "every_ms": int(every_s * 1000), "stats": stats,
                           "side": stats if side is None else side},
            on_changed_change=lambda: None)


STAT_STYLE = ("<style>.mv-stats{display:flex;flex-wrap:wrap;gap:0.5rem 2.5rem;margin:0.25rem 0 0.75rem}"
              ".mv-stat .mv-label{font-size:0.875rem;opacity:0.7}.mv-stat .mv-value{font-size:1.75rem;line-height:1.3}"
              ".mv-stat .mv-sub{font-size:0.8rem;opacity:0.6}</style>")


def stat_row(stats) -> str:
    """(label, value[, note]) tuples as one row of metric-style numbers, in ONE markdown element whose values the
    poller rewrites in place (cheaper for the browser to redraw than st.metric in columns)."""
    cells = []
    for label, value, *note in stats:
        sub = f'<div class="mv-sub">{html.escape(note[0])}</div>' if note else ""
        cells.append(f'<div class="mv-stat" data-stat="{html.escape(label)}"><div class="mv-label">{html.escape(label)}'
                     f'</div><div class="mv-value">{html.escape(value)}</div>{sub}</div>')
    return STAT_STYLE + '<div class="mv-stats">' + "".join(cells) + "</div>"
