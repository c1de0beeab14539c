"""mnistviz: `streamlit run app.py`.

The dashboard itself is shell.py (navigation, sidebar) and the page scripts in pages/. This file serves it as an
st.App with two additions: /api/live?run=NAME, the live numbers of a training as JSON (mnistviz.live), which the
Train page polls every second instead of rerunning its script; and each page's URL (/data...), which serves
Streamlit's own index.html with one line more (see page_routes)."""
import json
from pathlib import Path

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

from pages._nav import PAGES


def live_numbers(request):  # a plain function: Starlette runs it in a worker thread (it reads files)
    from mnistviz import live

    seen = live.parse_seen(request.query_params.get("seen"))
    body = live.snapshot(request.query_params.get("run") or None, seen=seen)
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


# Opened at a page's URL (/data), Streamlit's frontend looks for its server under that path first (a 404) and only
# later under its parent; window.__streamlit tells it the app's root at once, worked out from the URL so that a
# proxy's path prefix is kept (docs/performance.md).
_ROOT_JS = """<script>(() => {
  const page = %s, path = location.pathname.replace(/\\/+$/, "");
  if (!path.endsWith("/" + page)) return;
  const root = location.origin + path.slice(0, path.length - page.length);
  window.__streamlit = {BACKEND_BASE_URL: root, MAIN_PAGE_BASE_URL: root};
})()</script>"""


def page_routes() -> list[Route]:
    """Each page's URL: Streamlit's index.html (read once) with _ROOT_JS for that page. None at all if this
    Streamlit's index.html is not where it was: the pages are then served by Streamlit as before."""
    index = Path(st.__file__).parent / "static" / "index.html"
    html = index.read_text(encoding="utf-8") if index.is_file() else ""
    if "<head>" not in html:
        return []
    routes = []
    for _, _, _, url_path in PAGES:
        page = html.replace("<head>", "<head>" + _ROOT_JS % json.dumps(url_path), 1)
        routes.append(Route(f"/{url_path}", lambda request, page=page: HTMLResponse(
            page, headers={"Cache-Control": "no-cache"})))
    return routes


# A pages/ folder beside the main script puts a fresh server in Streamlit's legacy multipage mode until st.navigation
# has run once: a /data link opened first would run pages/data.py alone, without the shell (sidebar, run from the URL).
# The app navigates with st.navigation only (tests/e2e/test_shell_e2e.py opens a page URL first on a fresh server).
PagesManager.uses_pages_directory = False

app = st.App("shell.py", routes=[Route("/api/live", live_numbers), *page_routes()])
