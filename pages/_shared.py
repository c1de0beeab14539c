"""Streamlit helpers shared by the pages (layout only; computation lives in mnistviz/)."""
from __future__ import annotations

import streamlit as st

from mnistviz import data, runs


def all_runs():
    """(runs, broken) from the run store; re-read on every rerun (it is a directory listing)."""
    return runs.list_runs()


def selected_run_name() -> str | None:
    return st.session_state.get("run")


def selected_run() -> runs.Run | None:
    """The run picked in the sidebar (kept in the URL as ?run=NAME), or None."""
    name = selected_run_name()
    if not name:
        return None
    try:
        return runs.get_run(name)
    except runs.RunError:
        return None


def select_run(name: str | None) -> None:
    st.session_state["run"] = name
    if name:
        st.query_params["run"] = name
    else:
        st.query_params.pop("run", None)


def sidebar() -> None:
    good, broken = all_runs()
    names = [r["name"] for r in good]
    wanted = st.query_params.get("run") or st.session_state.get("run")
    if wanted not in names:
        wanted = names[0] if names else None
    with st.sidebar:
        if names:
            labels = {r["name"]: f"{r['name']} ({r['status']})" for r in good}
            choice = st.selectbox("Run", names, index=names.index(wanted), format_func=lambda n: labels[n],
                                  key="_run_picker")
            if choice != wanted and st.session_state.get("_picked") != choice:
                wanted = choice
            st.session_state["_picked"] = choice
            wanted = choice
        else:
            st.caption("No runs yet: launch one on the Train page.")
        if broken:
            st.caption(f"{len(broken)} broken run folder(s): see the Runs page.")
        select_run(wanted)
        root = data.data_root()
        found = data.find_mnist(root)
        if found:
            st.caption(f"MNIST: {found}")
        else:
            st.warning(data.missing_message(root), icon=":material/warning:")
