"""The dashboard's script (`streamlit run app.py` serves it): navigation over the page scripts in pages/, and the
sidebar shared by every page."""
import streamlit as st

from pages._nav import LIVE_PAGES, PAGES
from pages._shared import freeze_imports, one_core, sidebar

# The sidebar's Run box is a text input (it cannot wrap): 340 px wide and 13 px text show the longest automatic run
# name whole (tests/e2e/test_shell_e2e.py). The page's side margins give back the width the Runs table loses.
st.set_page_config(page_title="mnistviz", page_icon="🔢", layout="wide", initial_sidebar_state=340)
st.html("<style>[data-testid=stSidebar] [data-testid=stSelectbox] input{font-size:13px}"
        "@media (min-width:768px){[data-testid=stMainBlockContainer]{padding-left:3rem;padding-right:3rem}}</style>")

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
