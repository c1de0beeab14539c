"""mnistviz: `streamlit run app.py`.

The dashboard itself is shell.py (navigation, sidebar) and the page scripts in views/. This file serves it as an
st.App with one extra route: /api/live?run=NAME, the live numbers of a training as JSON (mnistviz.live), which the
Train page polls every second instead of rerunning its script (see mnistviz/live.py)."""
import json

import streamlit as st
from starlette.responses import JSONResponse
from starlette.routing import Route


def live_numbers(request):  # a plain function: Starlette runs it in a worker thread (it reads files)
    from mnistviz import live

    try:
        seen = json.loads(request.query_params["seen"]) if "seen" in request.query_params else None
    except ValueError:
        seen = None
    if seen is not None and not isinstance(seen, dict):
        seen = None
    body = live.snapshot(request.query_params.get("run") or None, seen=seen)
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


app = st.App("shell.py", routes=[Route("/api/live", live_numbers)])
