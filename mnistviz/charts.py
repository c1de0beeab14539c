"""Plotly figure builders shared by the pages."""
from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go

WRONG = (220, 50, 47)
RIGHT = (60, 60, 60)


def _as_float_images(images) -> np.ndarray:
    imgs = np.asarray(images, dtype=np.float32)
    if imgs.ndim == 4:  # N x 1 x H x W
        imgs = imgs[:, 0]
    if imgs.size and imgs.max() > 1.0:
        imgs = imgs / 255.0
    return imgs


def digit_grid(images, titles=None, highlight=None, ids=None, cols: int = 8, tile_px: int = 84) -> go.Figure:
    """A grid of digits as ONE image (fast to draw), with a red frame on highlighted tiles.

    An invisible marker sits on every tile carrying `ids` (default 0..N-1) as customdata, so
    `st.plotly_chart(fig, on_select="rerun", selection_mode="points")` reports which tile was clicked:
    `event.selection.points[0]["customdata"]`. Titles show above each tile and on hover.
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
    fig = go.Figure(go.Image(z=mosaic, hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=xs, y=ty, mode="text", text=titles, hoverinfo="skip",
                             textfont=dict(size=10, color=["rgb(%d,%d,%d)" % (WRONG if v else RIGHT) for v in hl])))
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="markers", customdata=ids, hovertext=titles, hoverinfo="text",
                             marker=dict(size=tile_px * 0.8, opacity=0.01, symbol="square", color="white"),
                             name="digits"))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    scale = tile_px / tw
    fig.update_layout(showlegend=False, margin=dict(l=0, r=0, t=0, b=0), dragmode=False,
                      width=int(cols * tw * scale), height=int(rows * th * scale), clickmode="event+select")
    return fig
