"""AppTest of the Feature maps page: stages of 1 x 1 maps (LeNet-5's conv3, act3) as one bar per unit.

The page's older tests are in tests/test_pages_inspect.py; this file reuses its helpers."""
import numpy as np

from mnistviz import inspect, runs
from mnistviz.data import load_mnist
from test_pages_inspect import FM, chart_data, map_names, open_page, open_tab, untrained_run


def test_single_value_stages_show_one_bar_per_unit(tiny_data, tmp_path, monkeypatch):
    root = tmp_path / "runs"
    untrained_run(root, "u-lenet5", "lenet5")
    monkeypatch.setenv("MNISTVIZ_DATA", str(tiny_data))
    monkeypatch.setenv("MNISTVIZ_RUNS", str(root))
    at = open_page(FM, run="u-lenet5", index="3")
    assert not at.error and not at.exception
    assert {"conv3", "act3"} <= map_names(at)                      # still named with their shape
    assert any("120×1×1" in m.value for m in at.markdown if m.value.startswith("**conv3**"))
    model = runs.load_model(root / "u-lenet5")
    x = load_mnist(tiny_data).test_images[3]
    want = {n: o[0].flatten().numpy() for n, _, o in inspect.feature_map_stages(inspect.stage_outputs(model, x))
            if n in ("conv3", "act3")}
    # two charts, conv3 then act3, each the stage's 120 values on one scale
    assert len(at.get("plotly_chart")) == 2
    for k, name in enumerate(("conv3", "act3")):
        y = chart_data(at, k)
        assert y.shape == (120,) and np.unique(y).size > 1
        np.testing.assert_allclose(y, want[name], rtol=1e-5, atol=1e-6)
        assert chart_data(at, k, field="x").tolist() == list(range(120))
    caps = " ".join(c.value for c in at.caption)
    assert "one bar per unit" in caps and "strongest" in caps
    top = int(np.argmax(want["act3"]))
    assert f"strongest (blue): {top} (" in caps
    # the grey-scale toggle does not change them (and the image stages keep working)
    at.toggle(key="fm_scale_each").set_value(False).run()
    assert not at.exception and len(at.get("plotly_chart")) == 2
    np.testing.assert_allclose(chart_data(at, 1), want["act3"], rtol=1e-5, atol=1e-6)
    # other tabs unaffected
    assert chart_data(open_tab(at, "Class scores"), 0).shape == (10,)


def test_models_without_single_value_stages_keep_a_chart_free_first_render(fixture_runs, tiny_data, monkeypatch):
    monkeypatch.setenv("MNISTVIZ_DATA", str(tiny_data))
    monkeypatch.setenv("MNISTVIZ_RUNS", str(fixture_runs))
    at = open_page(FM, index="1")  # the fast model: 3 x 3 maps at the smallest
    assert not at.get("plotly_chart")
    assert not any("one bar per unit" in c.value for c in at.caption)
