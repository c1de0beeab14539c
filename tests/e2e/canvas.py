"""Drawing on streamlit-drawable-canvas from Playwright: shared by the Draw e2e test and bench/draw_latency.py."""

# the src of the 28 x 28 "model's input" image: it changes whenever a new drawing has been classified
INPUT_SRC_JS = """() => {
  for (const img of document.querySelectorAll('img')) {
    let p = img;
    for (let i = 0; i < 5 && p; i++, p = p.parentElement) {
      if (p.innerText && p.innerText.includes("model's input")) return img.getAttribute('src');
    }
  }
  return null;
}"""


def trace(page, points) -> None:
    """Press, move through `points` (canvas pixels) in small steps, release. (A stroke starting in the strip
    under the component's toolbar, top right, y < ~35 px, is lost: keep away from it.)"""
    box = page.locator("canvas.upper-canvas").bounding_box()
    page.mouse.move(box["x"] + points[0][0], box["y"] + points[0][1])
    page.mouse.down()
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        for k in range(1, 6):
            page.mouse.move(box["x"] + x0 + (x1 - x0) * k / 5, box["y"] + y0 + (y1 - y0) * k / 5)
    page.mouse.up()


def settle(page) -> None:
    """Before the first stroke on a new canvas: click the page (a headless browser loses the first stroke
    otherwise) and wait until the canvas stops moving (the page may still be laying out around it)."""
    page.get_by_role("heading", name="Draw a digit").click()
    # the canvas lives in the component's shadow DOM: a locator reaches it, document.querySelector does not
    page.locator("canvas.upper-canvas").evaluate("""el => new Promise(resolve => {
      let last = "";
      const check = () => {
        const now = JSON.stringify(el.getBoundingClientRect());
        if (now === last) resolve(); else { last = now; setTimeout(check, 150); }
      };
      check();
    })""")
