"""The dashboard's script (`streamlit run app.py` serves it): navigation over the page scripts in pages/, and the
sidebar shared by every page."""
import streamlit as st

from pages._nav import LIVE_PAGES, PAGES
from pages._shared import freeze_imports, one_core, sidebar

st.set_page_config(page_title="mnistviz", page_icon="🔢", layout="wide")

pages = [st.Page(f, title=t, icon=i, default=True) if u == "runs" else st.Page(f, title=t, icon=i, url_path=u)
         for f, t, i, u in PAGES]


def _to_runs():
    # the home page lives at "/"; a typed or bookmarked /runs lands there too, its query string kept
    st.switch_page(pages[0], query_params=st.query_params.to_dict())


nav = st.navigation(pages + [st.Page(_to_runs, title="Runs", url_path="runs", visibility="hidden")])
one_core()  # before any page computes: every run is a new thread
freeze_imports()  # keeps Streamlit's gc.collect() after each run short
sidebar(follow_training=nav.url_path not in LIVE_PAGES)
nav.run()
