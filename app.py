"""mnistviz: `streamlit run app.py`. The shell: navigation, and the sidebar shared by every page."""
from pathlib import Path

import streamlit as st

from pages._shared import sidebar

st.set_page_config(page_title="mnistviz", page_icon="🔢", layout="wide")

HERE = Path(__file__).resolve().parent
# (file, title, icon, url path); the home page is the default.
PAGES = [
    ("pages/home.py", "Runs", ":material/list:", "runs"),
    ("pages/train.py", "Train", ":material/model_training:", "train"),
    ("pages/data.py", "Data", ":material/dataset:", "data"),
    ("pages/mispredictions.py", "Mispredictions", ":material/error:", "mispredictions"),
    ("pages/confusion.py", "Confusion", ":material/grid_on:", "confusion"),
    ("pages/feature_maps.py", "Feature maps", ":material/layers:", "feature-maps"),
    ("pages/draw.py", "Draw", ":material/draw:", "draw"),
    ("pages/compare.py", "Compare", ":material/compare:", "compare"),
]
pages = [st.Page(f, title=t, icon=i, url_path=u, default=(u == "runs"))
         for f, t, i, u in PAGES if (HERE / f).exists()]
st.session_state["_shell"] = True  # true only while this script runs: see pages._shared.shell_guard
try:
    nav = st.navigation(pages)
    after = st.session_state.pop("_after_shell", None)
    if after:  # a page was run without this shell (Streamlit's legacy pages/ mode): show it inside the shell
        st.switch_page(after["page"], query_params=after["query"])
    sidebar()
    nav.run()
finally:
    st.session_state["_shell"] = False
