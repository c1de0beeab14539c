"""In Chromium: Mispredictions opens on the batch with the most wrong predictions; its grid, a click on a tile."""
import re

import numpy as np
from playwright.sync_api import expect

from conftest import StreamlitServer, click_until, known_predictions_run
from mnistviz.runs import Run


def test_opens_on_the_batch_with_most_wrong(fixture_runs, tiny_data, tmp_path, page):
    # tiny-none with hand-made predictions (conftest.KNOWN_WRONG): at its batch size, 50, the wrong images of the
    # best epoch (7, 49, 60, 61, 130, 131, 132, 185) make 2, 2, 3, 1 per batch: batch 2 has the most
    root = known_predictions_run(fixture_runs, tmp_path / "runs")
    run = Run(root / "tiny-none")
    assert run.config()["batch_size"] == 50 and run.best_epoch() == 2
    worst, wrong = 2, [2, 2, 3, 1]
    n_in_batch, first, k = 50, 100, 30  # batch 2 is images 100-149; its first wrong one is 130

    server = StreamlitServer({"MNISTVIZ_DATA": str(tiny_data), "MNISTVIZ_RUNS": str(root)})
    try:
        page.goto(server.url + "/?run=tiny-none")
        # the shell has picked the run from the URL before we navigate (the session then keeps it)
        expect(page.get_by_role("combobox", name="Run")).to_have_value(re.compile("^tiny-none"), timeout=30000)
        nav = page.locator('[data-testid="stSidebarNav"]')
        nav.get_by_text(re.compile("^Mispredictions$")).click()
        heading = page.locator('[data-testid="stMain"] h3')
        # it opens on the batch with the most wrong, showing the wrong ones
        expect(heading).to_have_text(f"Batch {worst}", timeout=30000)  # the first render imports torch
        page.wait_for_function("() => document.querySelector("
                               "'.st-key-mp_bars .js-plotly-plot')?._fullData", timeout=15000)
        bars = page.evaluate("() => Array.from(document.querySelector("
                             "'.st-key-mp_bars .js-plotly-plot')._fullData[0].y)")
        assert bars == wrong  # one bar per batch, the hand count
        expect(page.get_by_text(f"Test images {first}–{first + n_in_batch - 1}: {wrong[worst]} wrong of "
                                f"{n_in_batch}.")).to_be_visible(timeout=15000)
        # the charts by their keys: the history panels below add charts of their own
        bar_chart, grid = page.locator(".st-key-mp_bars"), page.locator(".st-key-mp_grid")
        probs = page.locator(".st-key-mp_probs")
        expect(probs).to_have_count(0)
        tiles = grid.locator(".scatterlayer .trace").nth(1).locator("path.point")
        expect(tiles).to_have_count(wrong[worst], timeout=15000)
        # Show: all, the batch's grid: one clickable tile per image of the batch
        page.locator('[data-testid="stRadio"]').filter(has_text="Show").get_by_text("all", exact=True).click()
        expect(tiles).to_have_count(n_in_batch, timeout=15000)

        # click a wrong image (130): it shows up close, outlined in the grid, whose titles keep their colour
        titles = grid.locator(".scatterlayer .trace").nth(0).locator("text")
        link = page.get_by_role("link", name=f"Feature maps of image {first + k}")
        def tile_centre():
            tiles.nth(k).scroll_into_view_if_needed()
            box = tiles.nth(k).bounding_box()
            return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2

        click_until(page, tile_centre, lambda: expect(link).to_be_visible(timeout=10000))
        expect(probs).to_have_count(1)  # the image's probabilities
        faded = titles.evaluate_all("els => els.map(e => getComputedStyle(e).fillOpacity)")
        assert len(faded) == n_in_batch and set(faded) == {"1"}, faded
        expect(grid.locator(".layer-above .shapelayer path")).to_have_count(1)  # the picked tile's outline

        # a click in another batch's column, above its bar (the tallest bar is the worst batch's), opens that batch
        other = 3  # 1 wrong, fewer than batch 2's 3: its column above its bar is empty
        bar_chart.scroll_into_view_if_needed()  # the click on the tile may have scrolled the bars out of view
        area = bar_chart.locator(".nsewdrag").bounding_box()
        x, y = area["x"] + (other + 0.5) / len(wrong) * area["width"], area["y"] + area["height"] * 0.05
        click_until(page, lambda: (x, y), lambda: expect(heading).to_have_text(f"Batch {other}", timeout=10000))
    finally:
        server.stop()


def test_grid_titles_stay_readable_after_a_click(tmp_path, page):
    """plotly.js itself, on a digit_grid figure: a click selects one tile's marker, and plotly then dims the
    unselected points of every trace, the titles' text too (to 20 % opacity), unless the figure says otherwise.
    (On the pages the outline of the picked tile changes the figure, and the rerun draws it afresh; a grid
    whose figure stays the same after the click, as on Compare and Draw, stays selected and would fade.)"""
    from mnistviz.charts import digit_grid

    imgs = np.random.default_rng(0).integers(0, 256, (16, 28, 28), dtype=np.uint8)
    fig = digit_grid(imgs, titles=[f"#{i}" for i in range(16)], highlight=np.arange(16) % 3 == 0, cols=8, tile_px=60)
    fig.write_html(tmp_path / "grid.html", include_plotlyjs=True)
    page.goto((tmp_path / "grid.html").as_uri())
    traces = page.locator(".scatterlayer .trace")
    tiles, titles = traces.nth(1).locator("path.point"), traces.nth(0).locator("text")
    expect(tiles).to_have_count(16)
    opacity = "els => els.map(e => getComputedStyle(e).fillOpacity)"
    assert set(titles.evaluate_all(opacity)) == {"1"}
    box = tiles.nth(2).bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    # the click did select (the clicked marker is styled as selected) ...
    page.wait_for_function("() => document.querySelector('.js-plotly-plot').data[2].selectedpoints?.length === 1")
    # ... and every title is still drawn at full opacity, in its own colour
    assert set(titles.evaluate_all(opacity)) == {"1"}
    fills = titles.evaluate_all("els => els.map(e => getComputedStyle(e).fill)")
    assert fills[0] == "rgb(220, 50, 47)" and fills[1] == "rgb(60, 60, 60)"


def test_a_click_anywhere_in_a_batch_column_picks_that_batch(tmp_path, page):
    """plotly.js itself, on the wrong-per-batch figure: with 313 batches a bar is about 2 px wide, and a batch with
    nothing wrong has no bar; a click anywhere in the batch's column (here well above an empty one) picks it."""
    from mnistviz.charts import wrong_per_batch_bars

    wrong = np.zeros(313, dtype=int)
    wrong[::7] = np.arange(len(wrong[::7])) % 4 + 1
    target = 100
    assert wrong[target] == 0 and wrong[target - 1] == 0 and wrong[target + 1] == 0
    wrong_per_batch_bars(wrong, 0, 32).write_html(tmp_path / "bars.html", include_plotlyjs=True)
    page.goto((tmp_path / "bars.html").as_uri())
    page.wait_for_selector(".js-plotly-plot .nsewdrag")
    page.evaluate("""() => { const gd = document.querySelector('.js-plotly-plot');
                            gd.on('plotly_click', d => { window.__picked = d.points.map(p => p.x); }); }""")
    area = page.locator(".nsewdrag").first.bounding_box()
    x = area["x"] + (target + 0.5) / len(wrong) * area["width"]  # the x range is [-0.5, n - 0.5]
    page.mouse.move(x, area["y"] + area["height"] * 0.2)
    page.mouse.click(x, area["y"] + area["height"] * 0.2)
    page.wait_for_function("() => window.__picked !== undefined", timeout=5000)
    assert page.evaluate("() => window.__picked") == [target]
