"""In Chromium: a click on a Confusion cell outlines it and shows its images beside the matrix, in view (issue 28)."""
import re

import numpy as np
from playwright.sync_api import expect

from conftest import KNOWN_WRONG, StreamlitServer, click_until, known_predictions_run

# the cell's centre in page pixels, from plotly's own axes
CELL_XY_JS = """([t, p]) => {
  const el = document.querySelector('.st-key-cf_heatmap .js-plotly-plot');
  const xa = el._fullLayout.xaxis, ya = el._fullLayout.yaxis, box = el.getBoundingClientRect();
  return [box.left + xa._offset + xa.l2p(p), box.top + ya._offset + ya.l2p(t)];
}"""


def test_a_cell_click_outlines_it_and_shows_its_images_beside_the_matrix(fixture_runs, tiny_data, tmp_path, page):
    root = known_predictions_run(fixture_runs, tmp_path / "runs")
    labels = np.load(root / "tiny-none" / "test_labels.npy").astype(int)
    # the best epoch's first wrong image, and its cell (conftest.known_probs: predicted label + 1 + i % 3)
    i = KNOWN_WRONG[2][0]
    t, p = labels[i], (labels[i] + 1 + i % 3) % 10
    in_cell = sum(1 for j in KNOWN_WRONG[2] if labels[j] == t and (labels[j] + 1 + j % 3) % 10 == p)

    server = StreamlitServer({"MNISTVIZ_DATA": str(tiny_data), "MNISTVIZ_RUNS": str(root)})
    try:
        page.goto(server.url + "/?run=tiny-none")
        expect(page.get_by_role("combobox", name="Run")).to_have_value(re.compile("^tiny-none"), timeout=30000)
        page.locator('[data-testid="stSidebarNav"]').get_by_text(re.compile("^Confusion$")).click()
        page.wait_for_function("() => document.querySelector('.st-key-cf_heatmap .js-plotly-plot')?._fullLayout",
                               timeout=30000)
        outline = page.locator(".st-key-cf_heatmap .layer-above .shapelayer path")
        expect(outline).to_have_count(0)
        heading = page.get_by_role("heading", name=f"True {t}, predicted {p}: {in_cell} image"
                                                   f"{'s' if in_cell != 1 else ''}")
        click_until(page, lambda: page.evaluate(CELL_XY_JS, [int(t), int(p)]),
                    lambda: expect(heading).to_be_visible(timeout=10000))
        expect(outline).to_have_count(1, timeout=15000)  # the picked cell, outlined
        # its images where the eye is: right of the matrix, within the first screen, no scrolling
        fresh = '[data-stale="false"]'  # not a copy the rerun is about to replace
        matrix = page.locator(f".st-key-cf_heatmap{fresh}").bounding_box()
        grid = page.locator(f".st-key-cf_grid_{t}_{p}{fresh}").bounding_box()
        head = heading.bounding_box()
        view = page.viewport_size
        assert head["x"] >= matrix["x"] + matrix["width"] - 1, (head, matrix)
        assert head["y"] + head["height"] <= view["height"] and head["y"] >= 0, head
        assert grid["y"] < view["height"], grid  # the grid starts on the first screen
    finally:
        server.stop()
