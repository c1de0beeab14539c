"""Streamlit's full gc.collect() after every script run stays short: what the pages import is frozen out of it
(pages._shared.freeze_imports, called by the shell on every run)."""
import gc
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from pages import _shared

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def unfrozen(monkeypatch):
    """Nothing frozen before the test, and nothing after it (the trainer's loop checks that it leaves none)."""
    gc.unfreeze()
    monkeypatch.setattr(_shared, "_frozen_at", 0)
    yield
    gc.unfreeze()


def test_modules_imported_since_the_last_run_are_frozen_and_nothing_else_is(unfrozen, tmp_path, monkeypatch):
    _shared.freeze_imports()
    frozen = gc.get_freeze_count()
    assert frozen > 100_000  # torch, pandas, plotly, streamlit: what _shared imports
    garbage = [[] for _ in range(1000)]  # objects made by a run: not frozen while nothing new was imported
    _shared.freeze_imports()
    assert gc.get_freeze_count() == frozen

    (tmp_path / "mv_lazy_module.py").write_text("TABLE = [[i] for i in range(5000)]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "mv_lazy_module", raising=False)
    import mv_lazy_module  # as a page's first use of torchvision or altair would
    assert len(mv_lazy_module.TABLE) == 5000

    cycle = [None]
    cycle[0] = cycle  # garbage in a cycle when frozen would never be freed: it is collected first
    collected = []
    cb = (lambda phase, info: collected.append(info["collected"]) if phase == "stop" and info["generation"] == 2
          else None)
    del cycle, garbage
    gc.callbacks.append(cb)
    try:
        _shared.freeze_imports()
    finally:
        gc.callbacks.remove(cb)
    assert collected and collected[0] >= 1
    assert gc.get_freeze_count() >= frozen + 5000
    assert len(gc.get_objects()) < 1000  # what a later collection still walks


def test_the_shell_freezes_on_every_run(unfrozen, tiny_env, monkeypatch):
    monkeypatch.chdir(ROOT)
    at = AppTest.from_file(str(ROOT / "shell.py"), default_timeout=60)
    at.run()
    assert not at.exception
    assert _shared._frozen_at > 0 and gc.get_freeze_count() > 100_000
