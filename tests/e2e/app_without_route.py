"""app.py without its /api/live route, for the live view's fallback test (test_train_live.py): the same shell and the
same setting for the pages/ folder, no JSON route and no page routes."""
from pathlib import Path

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager

PagesManager.uses_pages_directory = False  # as app.py: st.navigation only, never the legacy pages/ mode

app = st.App(Path(__file__).resolve().parents[2] / "shell.py")
