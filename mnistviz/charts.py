"""Plotly figure builders shared by the pages."""
from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go

WRONG = (220, 50, 47)
RIGHT = (60, 60, 60)
PICKED = "#268bd2"  # outline of the picked tile; also the true digit's bar in probability_bars


def _as_float_images(images) -> np.ndarray:
    imgs = np.asarray(images, dtype=np.float32)
    if imgs.ndim == 4:  # N x 1 x H x W
        imgs = imgs[:, 0]
    if imgs.size and imgs.max() > 1.0:
        imgs = imgs / 255.0
    return imgs


def image_grid(images, cols: int = 8, scale: int = 3) -> np.ndarray:
    """Digits (N x 1 x H x W in [0, 1], or uint8) tiled by torchvision's make_grid, scaled up `scale` times
    (nearest) so a browser shows sharp pixels: an H x W x 3 uint8 array for st.image, for grids nobody clicks."""
    import torch
    from torchvision.utils import make_grid

    x = torch.as_tensor(_as_float_images(images)).unsqueeze(1)
    grid = make_grid(x, nrow=cols, padding=2, pad_value=0.35)  # 3 x H' x W'
    grid = grid.repeat_interleave(scale, 1).repeat_interleave(scale, 2)
    return (grid.permute(1, 2, 0).clamp(0, 1) * 255).to(torch.uint8).numpy()


def png_data_uri(rgb: np.ndarray) -> str:
    """H x W x 3 uint8 -> "data:image/png;base64,..." for go.Image(source=...)."""
    import base64
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def digit_grid(images, titles=None, highlight=None, ids=None, cols: int = 8, tile_px: int = 84,
               selected=None) -> go.Figure:
    """A grid of digits as ONE image (fast to draw), with a red frame on highlighted tiles.

    An invisible marker sits on every tile carrying `ids` (default 0..N-1) as customdata, so
    `st.plotly_chart(fig, on_select="rerun", selection_mode="points")` reports which tile was clicked:
    `event.selection.points[0]["customdata"]`. Titles show above each tile and on hover.
    `selected`: the id of a picked tile, drawn with a blue outline (nothing when it is not in the grid).
    """
    imgs = _as_float_images(images)
    n = len(imgs)
    h, w = (imgs.shape[1], imgs.shape[2]) if n else (28, 28)
    cols = max(1, min(cols, n)) if n else 1
    rows = max(1, math.ceil(n / cols))
    pad, band = 2, 10
    th, tw = h + 2 * pad + band, w + 2 * pad
    mosaic = np.full((rows * th, cols * tw, 3), 255, np.uint8)
    hl = np.zeros(n, bool) if highlight is None else np.asarray(highlight, bool)
    xs, ys, ty = [], [], []
    for k in range(n):
        r, c = divmod(k, cols)
        y0, x0 = r * th + band, c * tw
        mosaic[y0:y0 + h + 2 * pad, x0:x0 + w + 2 * pad] = WRONG if hl[k] else RIGHT
        mosaic[y0 + pad:y0 + pad + h, x0 + pad:x0 + pad + w] = (imgs[k] * 255).astype(np.uint8)[..., None]
        xs.append(x0 + tw / 2)
        ys.append(y0 + pad + h / 2)
        ty.append(r * th + band / 2)
    titles = [""] * n if titles is None else [str(t) for t in titles]
    ids = list(range(n)) if ids is None else [int(i) for i in ids]
    # as a PNG data URI: a z array would go to the browser as JSON, three numbers per pixel (slow for big grids)
    fig = go.Figure(go.Image(source=png_data_uri(mosaic), hoverinfo="skip"))
    # a click selects a marker, and plotly then dims every unselected point of every trace, these titles too;
    # with a colour for *selected* text, plotly draws unselected text in its own colour, at full opacity
    fig.add_trace(go.Scatter(x=xs, y=ty, mode="text", text=titles, hoverinfo="skip",
                             textfont=dict(size=10, color=["rgb(%d,%d,%d)" % (WRONG if v else RIGHT) for v in hl]),
                             selected=dict(textfont=dict(color="rgb(%d,%d,%d)" % RIGHT))))
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="markers", customdata=ids, hovertext=titles, hoverinfo="text",
                             marker=dict(size=tile_px * 0.8, opacity=0.01, symbol="square", color="white"),
                             name="digits"))
    # fixed ranges: otherwise autorange pads for the invisible markers and the grid shrinks inside blank margins
    fig.update_xaxes(visible=False, range=[-0.5, mosaic.shape[1] - 0.5])
    fig.update_yaxes(visible=False, range=[mosaic.shape[0] - 0.5, -0.5])
    if selected is not None and int(selected) in ids:
        r, c = divmod(ids.index(int(selected)), cols)
        fig.add_shape(type="rect", x0=c * tw - 0.5, x1=(c + 1) * tw - 0.5, y0=r * th + band - 0.5,
                      y1=(r + 1) * th - 0.5, line=dict(color=PICKED, width=3), layer="above")
    scale = tile_px / tw
    fig.update_layout(showlegend=False, margin=dict(l=0, r=0, t=0, b=0), dragmode=False,
                      width=int(cols * tw * scale), height=int(rows * th * scale), clickmode="event+select")
    return fig


def probability_bars(probs, true: int, pred: int, height: int = 200) -> go.Figure:
    """One image's ten class probabilities: the true digit blue, a wrong prediction red, the rest grey."""
    colors = [PICKED if d == true else "#dc322f" if d == pred else "#93a1a1" for d in range(10)]
    fig = go.Figure(go.Bar(x=list(range(10)), y=np.asarray(probs, dtype=float), marker_color=colors,
                           hovertemplate="%{x}: %{y:.2%}<extra></extra>"))
    fig.update_layout(height=height, margin=dict(l=0, r=0, t=10, b=0), xaxis=dict(dtick=1, title="digit"),
                      yaxis=dict(range=[0, 1], title="probability", tickformat=".0%"))
    return fig


def unit_bars(values, top: int = 5, height: int = 200) -> go.Figure:
    """A stage of 1 x 1 maps (LeNet-5's conv3): one bar per unit (channel) on one scale, the `top` strongest blue."""
    values = np.asarray(values, dtype=float)
    colors = np.full(len(values), "#93a1a1", dtype=object)
    colors[strongest_units(values, top)] = PICKED
    fig = go.Figure(go.Bar(x=np.arange(len(values)), y=values, marker_color=colors.tolist(), marker_line_width=0,
                           hovertemplate="unit %{x}: %{y:.3f}<extra></extra>"))
    fig.update_layout(height=height, margin=dict(l=0, r=0, t=4, b=0), bargap=0.15, showlegend=False,
                      xaxis=dict(title=dict(text="unit", standoff=4), range=[-0.5, len(values) - 0.5]),
                      yaxis=dict(title="output", zeroline=True))
    return fig


def strongest_units(values, top: int = 5) -> np.ndarray:
    return np.argsort(-np.asarray(values, dtype=float), kind="stable")[:top]


def wrong_per_batch_bars(wrong, current: int, batch_size: int, height: int = 220) -> go.Figure:
    """Wrong predictions per test batch, the current batch red. Clicks pick a batch by its column (hovermode "x"):
    with 313 batches a bar is 2 px wide, and a batch with nothing wrong has no bar at all to hit."""
    n = len(wrong)
    colors = ["#dc322f" if b == current else "#6c71c4" for b in range(n)]
    fig = go.Figure(go.Bar(x=np.arange(n), y=wrong, marker_color=colors,
                           hovertemplate="batch %{x}: %{y} wrong<extra></extra>"))
    fig.add_vrect(x0=current - 0.5, x1=current + 0.5, fillcolor="#dc322f", opacity=0.12, line_width=0)  # even at 0
    fig.update_layout(height=height, margin=dict(l=0, r=0, t=10, b=0),
                      xaxis=dict(title=f"test batch ({batch_size} images each)", range=[-0.5, n - 0.5]),
                      yaxis=dict(title="wrong", rangemode="tozero"), hovermode="x", clickmode="event+select",
                      dragmode=False, bargap=0.1)
    return fig


# ---------- training curves ----------

# one colour per split, shared by the loss and accuracy panels; the per-step curve is drawn thin
SPLIT_COLORS = {"train": "#1f77b4", "val": "#ff7f0e", "test": "#2ca02c"}
SPLIT_NAMES = {"train": "train", "val": "validation", "test": "test"}


def training_curves_spec(step_records: list[dict], epoch_records: list[dict], x: str = "epoch") -> dict:
    """Loss (left) and accuracy (right) of one run as a plotly figure dict: train per step (thin line) and
    train / validation / test per epoch (lines with markers). x="epoch" puts steps at fractional epochs;
    x="step" uses the global step. A legend entry toggles its split in both panels (legendgroup).

    A plain dict because the live view redraws it while a run trains: building it through go.Figure /
    make_subplots takes noticeable CPU each time, taken from the training."""
    sx = [r.get("epoch_progress") if x == "epoch" else r.get("step") for r in step_records]
    ex = [r.get("epoch") if x == "epoch" else r.get("step") for r in epoch_records]
    hover = "%{fullData.name}<br>" + x + " %{x}<br>%{y:.4f}<extra></extra>"
    data = []
    if step_records:
        for axis, key in (("", "train_loss"), ("2", "train_acc")):
            data.append(dict(type="scatter", x=sx, y=[r.get(key) for r in step_records], mode="lines",
                             name="train (per step)", legendgroup="train-step", showlegend=axis == "",
                             xaxis="x" + axis, yaxis="y" + axis, opacity=0.45, hovertemplate=hover,
                             line=dict(color=SPLIT_COLORS["train"], width=1)))
    for split in ("train", "val", "test"):
        ys = {k: [r.get(f"{split}_{k}") for r in epoch_records] for k in ("loss", "acc")}
        if not any(v is not None for v in ys["loss"]):
            continue  # no validation set, or no epoch finished yet
        for axis, k in (("", "loss"), ("2", "acc")):
            data.append(dict(type="scatter", x=ex, y=ys[k], mode="lines+markers",
                             name=f"{SPLIT_NAMES[split]} (per epoch)", legendgroup=split, showlegend=axis == "",
                             xaxis="x" + axis, yaxis="y" + axis, hovertemplate=hover, marker=dict(size=6),
                             line=dict(color=SPLIT_COLORS[split], width=2)))
    title = dict(text=x)
    layout = dict(
        xaxis=dict(domain=[0, 0.46], anchor="y", title=title), yaxis=dict(anchor="x", title=dict(text="loss")),
        xaxis2=dict(domain=[0.54, 1], anchor="y2", title=title),
        yaxis2=dict(anchor="x2", tickformat=".1%", title=dict(text="accuracy")),
        height=360, margin=dict(l=10, r=10, t=30, b=10), hovermode="closest",
        legend=dict(orientation="h", yanchor="bottom", y=-0.35, x=0),
        uirevision="keep",  # keep zoom and legend toggles while the live view refreshes
    )
    return {"data": data, "layout": layout}


def training_curves(step_records: list[dict], epoch_records: list[dict], x: str = "epoch") -> go.Figure:
    """training_curves_spec as a go.Figure (to restyle or combine; the live view passes the dict directly)."""
    return go.Figure(training_curves_spec(step_records, epoch_records, x))


def epoch_table(epoch_records: list[dict]):
    """One row per finished epoch: losses, accuracies (%), seconds spent training and evaluating, images/s."""
    import pandas as pd

    cols = {"epoch": "epoch", "train_loss": "train loss", "train_acc": "train acc %", "val_loss": "val loss",
            "val_acc": "val acc %", "test_loss": "test loss", "test_acc": "test acc %",
            "epoch_seconds": "train s", "eval_seconds": "eval s", "images_per_s": "images/s", "lr": "lr"}
    df = pd.DataFrame([{v: r.get(k) for k, v in cols.items()} for r in epoch_records], columns=list(cols.values()))
    for c in ("train acc %", "val acc %", "test acc %"):
        df[c] = df[c].astype(float) * 100
    return df.set_index("epoch")


def runs_table(summaries: list[dict]):
    """The Runs page table: one row per run summary (runs.list_runs), newest first. Its epoch is the one the live
    numbers show (in progress while a run trains). The pair column only when some run was trained as half of an
    augmented + normal pair."""
    import pandas as pd

    from .runs import epoch_shown

    rows = [{
        "name": s["name"], "status": s.get("status"),
        "progress %": None if s.get("progress") is None else round(s["progress"] * 100, 1),
        "epoch": f"{epoch_shown(s.get('status'), s.get('epochs_done', 0), s.get('epochs'))} / {s.get('epochs')}",
        "best test acc %": None if s.get("best_test_acc") is None else s["best_test_acc"] * 100,
        "model": s.get("model"), "augmentation": s.get("augment"), "optimizer": s.get("optimizer"),
        "lr": s.get("lr"), "batch": s.get("batch_size"), "device": s.get("device"),
        "train s": None if s.get("train_seconds") is None else round(s["train_seconds"], 1),
        "created": pd.Timestamp.fromtimestamp(s["created"]).floor("s") if s.get("created") else None,  # local time
        "pair": s.get("pair"),
    } for s in summaries]
    columns = ["name", "status", "progress %", "epoch", "best test acc %", "model", "augmentation", "optimizer", "lr",
               "batch", "device", "train s", "created"] + (["pair"] if any(s.get("pair") for s in summaries) else [])
    return pd.DataFrame(rows, columns=columns)


# ---------- through the epochs ----------

def prediction_history(epochs, probs, true: int, height: int = 190) -> go.Figure:
    """One test image's probabilities at every stored epoch (`probs` E x 10): the true digit's (blue; a red marker
    where another digit was predicted) and those of the digits it was ever wrongly predicted as (red, dashed)."""
    probs = np.asarray(probs, dtype=float)
    pred = probs.argmax(1)
    fig = go.Figure()
    for d in dict.fromkeys(int(p) for p in pred if p != true):
        fig.add_trace(go.Scatter(x=list(epochs), y=probs[:, d], mode="lines", name=f"digit {d}",
                                 line=dict(color="#dc322f", dash="dash", width=1.5),
                                 hovertemplate=f"epoch %{{x}}: p({d}) %{{y:.1%}}<extra></extra>"))
    fig.add_trace(go.Scatter(x=list(epochs), y=probs[:, true], mode="lines+markers", name=f"true {true}",
                             line=dict(color=PICKED, width=2.5),
                             marker=dict(size=7, color=[PICKED if p == true else "#dc322f" for p in pred]),
                             customdata=pred, hovertemplate=f"epoch %{{x}}: p({true}) %{{y:.1%}}, predicted "
                                                            f"%{{customdata}}<extra></extra>"))
    fig.update_layout(height=height, margin=dict(l=0, r=0, t=6, b=0), legend=dict(orientation="h", y=-0.3, x=0),
                      xaxis=dict(title=None, dtick=1 if len(epochs) <= 12 else None),
                      yaxis=dict(range=[-0.02, 1.02], tickformat=".0%", title="probability"))
    return fig


def animate(figures: list, names: list[str], label: str = "epoch ", frame_ms: int = 700) -> go.Figure:
    """One figure stepping through `figures` (each with the same traces) in the browser: the first as drawn, every
    one as a frame, a play / pause button and a slider under it. Plotly animates it with no rerun of the page."""
    fig = go.Figure(figures[0])
    fig.frames = [go.Frame(data=f.data, name=n) for f, n in zip(figures, names)]
    still = dict(mode="immediate", frame=dict(duration=0, redraw=True), transition=dict(duration=0))
    # the slider right under the figure, its buttons under it: side by side, the buttons hid the slider's label
    fig.update_layout(
        sliders=[dict(active=0, x=0, len=1, y=0, yanchor="top", pad=dict(t=10, b=0),
                      currentvalue=dict(prefix=label, font=dict(size=12)),
                      steps=[dict(method="animate", label=n, args=[[n], still]) for n in names])],
        updatemenus=[dict(type="buttons", direction="left", x=0, xanchor="left", y=0, yanchor="top", pad=dict(t=75),
                          showactive=False, buttons=[
                              dict(label="▶ Play", method="animate",
                                   args=[None, dict(frame=dict(duration=frame_ms, redraw=True), fromcurrent=True,
                                                    transition=dict(duration=0))]),
                              dict(label="❚❚ Pause", method="animate", args=[[None], still])])])
    height = fig.layout.height or 450
    fig.update_layout(height=height + 120, margin=dict(b=(fig.layout.margin.b or 0) + 120))
    return fig


# ---------- small inline charts ----------

SERIES_COLORS = ("#268bd2", "#cb4b16", "#859900", "#6c71c4", "#b58900", "#2aa198")


def sparkline_svg(series, width: int = 180, height: int = 56) -> str:
    """A tiny line chart of probabilities (0 to 1) over epochs, as an SVG string (st.image shows it): one line per
    (name, [(epoch, p), ...]) in `series`, a dotted line at 50%, the first and last epoch under the axis. For grids of
    dozens of cards, where a plotly chart each would be slow to draw."""
    pts = [e for _, s in series for e, _ in s]
    if not pts:
        return f'<svg width="{width}" height="{height}"></svg>'
    lo, hi = min(pts), max(pts)
    left, right, top, bottom = 26, 4, 4, 14
    w, h = width - left - right, height - top - bottom

    def xy(e, p):
        x = left + (w * (e - lo) / (hi - lo) if hi > lo else w / 2)
        return f"{x:.1f},{top + h * (1 - min(max(p, 0.0), 1.0)):.1f}"

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="sans-serif" font-size="9" fill="#657b83">',
             f'<rect x="{left}" y="{top}" width="{w}" height="{h}" fill="#fdf6e3" stroke="#eee8d5"/>',
             f'<line x1="{left}" x2="{left + w}" y1="{top + h / 2}" y2="{top + h / 2}" stroke="#93a1a1" '
             f'stroke-dasharray="2,2"/>',
             f'<text x="{left - 3}" y="{top + 7}" text-anchor="end">100%</text>',
             f'<text x="{left - 3}" y="{top + h}" text-anchor="end">0%</text>',
             f'<text x="{left}" y="{height - 2}">{lo}</text>',
             f'<text x="{left + w}" y="{height - 2}" text-anchor="end">epoch {hi}</text>']
    for k, (_, s) in enumerate(series):
        color = SERIES_COLORS[k % len(SERIES_COLORS)]
        coords = " ".join(xy(e, p) for e, p in s)
        parts.append(f'<polyline points="{coords}" fill="none" stroke="{color}" stroke-width="1.5"/>')
        if s:
            x, y = xy(*s[-1]).split(",")
            parts.append(f'<circle cx="{x}" cy="{y}" r="2.2" fill="{color}"/>')
    return "".join(parts) + "</svg>"
