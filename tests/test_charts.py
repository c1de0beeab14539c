"""The shared figure builders in mnistviz.charts, checked on the figures' JSON (what plotly.js gets)."""
import json

import numpy as np

from mnistviz.charts import PICKED, digit_grid, probability_bars


def grid(n=10, **kw):
    imgs = np.random.default_rng(0).integers(0, 256, (n, 28, 28), dtype=np.uint8)
    return json.loads(digit_grid(imgs, titles=[f"t{i}" for i in range(n)], highlight=np.arange(n) % 3 == 0,
                                 ids=range(100, 100 + n), cols=4, tile_px=50, **kw).to_json())


def test_digit_grid_titles_keep_their_colour_when_a_tile_is_clicked():
    # a click selects one tile's marker, and plotly then draws every unselected point of every trace dimmed,
    # unless the trace sets a colour for selected text: then unselected text keeps its own colour
    # (plotly.js makeSelectedTextStyleFns); the per-tile colours (red for highlighted) stay as they are
    fig = grid()
    text, markers = fig["data"][1], fig["data"][2]
    assert text["mode"] == "text" and text["selected"]["textfont"]["color"]
    assert "textfont" not in text.get("unselected", {})        # an unselected colour would override every title's
    assert text["textfont"]["color"][0] == "rgb(220,50,47)" and text["textfont"]["color"][1] == "rgb(60,60,60)"
    assert markers["customdata"] == list(range(100, 110))      # the clickable markers stay the last trace


def test_digit_grid_outlines_the_selected_tile():
    assert not grid()["layout"].get("shapes")
    assert not grid(selected=7)["layout"].get("shapes")         # not one of the grid's ids: nothing drawn
    fig = grid(selected=105)                                    # the 6th tile: row 1, column 1 of 4 columns
    (shape,) = fig["layout"]["shapes"]
    assert shape["type"] == "rect" and shape["line"]["color"] == PICKED
    tw, th = 28 + 4, 28 + 4 + 10                                # tile: image + 2 px frame, a 10 px title band
    assert (shape["x0"], shape["x1"]) == (tw - 0.5, 2 * tw - 0.5)
    assert (shape["y0"], shape["y1"]) == (th + 10 - 0.5, 2 * th - 0.5)   # the tile's frame, under its title


def test_probability_bars():
    p = np.full(10, 0.02)
    p[3], p[8] = 0.7, 0.14
    fig = json.loads(probability_bars(p, true=8, pred=3).to_json())
    bar = fig["data"][0]
    assert bar["marker"]["color"][8] == PICKED and bar["marker"]["color"][3] == "#dc322f"
    assert fig["layout"]["yaxis"]["range"] == [0, 1]


def test_unit_bars_one_bar_per_unit_on_one_scale_strongest_blue():
    from mnistviz import charts
    values = np.array([0.5, -2.0, 3.0, 1.0, 3.0, -0.1])
    fig = charts.unit_bars(values, top=2)
    bar = fig.data[0]
    assert list(bar.y) == list(values) and list(bar.x) == list(range(6))
    assert charts.strongest_units(values, 2).tolist() == [2, 4]  # ties in unit order
    assert [i for i, c in enumerate(bar.marker.color) if c == charts.PICKED] == [2, 4]
    assert tuple(fig.layout.xaxis.range) == (-0.5, 5.5)
