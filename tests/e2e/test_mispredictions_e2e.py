"""In Chromium: open Mispredictions, jump to the batch with the most wrong predictions, see its grid."""
import re

import numpy as np
from playwright.sync_api import expect

from conftest import StreamlitServer
from mnistviz import analysis as A
from mnistviz.runs import Run


def worst_batch(labels, preds, sizes):
    """The first batch size (the run's own first) whose most-wrong batch is not batch 0, so the jump shows."""
    for bs in sizes:
        wrong = A.wrong_per_batch(labels, preds, bs)
        if wrong.argmax() != 0:
            return bs, int(wrong.argmax()), wrong
    raise AssertionError("every batch size puts the most wrong predictions in batch 0")


def test_jump_to_batch_with_most_wrong(fixture_runs, tiny_data, page):
    run = Run(fixture_runs / "tiny-none")
    labels, probs = A.run_predictions(run)
    preds = probs.argmax(1)
    run_bs = run.config()["batch_size"]
    bs, worst, wrong = worst_batch(labels, preds, [run_bs, 32, 20, 16, 10, *range(5, 60)])
    n_in_batch = len(labels[worst * bs:(worst + 1) * bs])

    server = StreamlitServer({"MNISTVIZ_DATA": str(tiny_data), "MNISTVIZ_RUNS": str(fixture_runs)})
    try:
        page.goto(server.url + "/?run=tiny-none")
        # the shell has picked the run from the URL before we navigate (the session then keeps it)
        expect(page.get_by_role("combobox", name="Run")).to_have_value(re.compile("^tiny-none"), timeout=30000)
        nav = page.locator('[data-testid="stSidebarNav"]')
        nav.get_by_text(re.compile("^Mispredictions$")).click()
        heading = page.locator('[data-testid="stMain"] h3')
        expect(heading).to_have_text("Batch 0", timeout=30000)  # the first render imports torch
        if bs != run_bs:
            box = page.get_by_role("spinbutton", name="Test batch size")
            box.fill(str(bs))
            box.press("Enter")
            expect(page.get_by_text(f"test batch ({bs} images each)")).to_be_visible(timeout=15000)

        page.get_by_role("button", name="Batch with the most wrong").click()
        expect(heading).to_have_text(f"Batch {worst}", timeout=15000)
        first = worst * bs
        expect(page.get_by_text(f"Test images {first}–{first + n_in_batch - 1}: {wrong[worst]} wrong of "
                                f"{n_in_batch}.")).to_be_visible()
        # the batch's grid: one clickable tile per image of the batch
        charts = page.locator('[data-testid="stPlotlyChart"]')
        expect(charts).to_have_count(2)
        tiles = charts.nth(1).locator(".scatterlayer .trace").nth(1).locator("path.point")
        expect(tiles).to_have_count(n_in_batch, timeout=15000)
        assert np.sum(labels[first:first + n_in_batch] != preds[first:first + n_in_batch]) == wrong[worst] > 0
    finally:
        server.stop()
