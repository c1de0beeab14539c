"""canvas_to_mnist: a drawing of any size and format -> the 28 x 28 image MNIST would have made of it."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from mnistviz import preprocess
from mnistviz.preprocess import canvas_to_mnist

# a "2" as a polyline in unit coordinates (x, y), drawn with a pen a tenth of its height
TWO = [(0.1, 0.25), (0.3, 0.05), (0.7, 0.05), (0.9, 0.25), (0.85, 0.45), (0.1, 0.95), (0.95, 0.95)]


def draw(points, size: float, left: float, top: float, canvas: int = 280, pen: float | None = None) -> np.ndarray:
    """White strokes on an opaque black RGBA canvas, as the Draw page's canvas returns them."""
    img = Image.new("RGBA", (canvas, canvas), (0, 0, 0, 255))
    pen = pen if pen is not None else size / 10
    xy = [(left + x * size, top + y * size) for x, y in points]
    d = ImageDraw.Draw(img)
    d.line(xy, fill=(255, 255, 255, 255), width=max(1, round(pen)), joint="curve")
    return np.asarray(img)


def ink_box(img: np.ndarray) -> tuple[int, int]:
    rows, cols = np.flatnonzero(img.any(1)), np.flatnonzero(img.any(0))
    return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


def centre_of_mass(img: np.ndarray) -> tuple[float, float]:
    idx = np.arange(img.shape[0])
    return float((img.sum(1) * idx).sum() / img.sum()), float((img.sum(0) * idx).sum() / img.sum())


def test_output_is_a_20px_digit_centred_by_mass_in_28x28():
    out = canvas_to_mnist(draw(TWO, 200, 40, 40))
    assert out.shape == (28, 28) and out.dtype == np.float32
    assert 0 <= out.min() and out.max() <= 1 and out.max() > 0.9
    assert max(ink_box(out)) == 20          # the longer side fills MNIST's 20 x 20 box
    cy, cx = centre_of_mass(out)
    assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5


@pytest.mark.parametrize("image", [
    np.zeros((280, 280, 4), np.uint8) + np.array([0, 0, 0, 255], np.uint8),  # opaque black canvas
    np.zeros((280, 280, 4), np.uint8),                                       # transparent canvas
    np.zeros((280, 280, 3), np.uint8),
    np.zeros((100, 50), np.uint8),
    np.full((280, 280), 255, np.uint8),                                      # blank white paper
    np.full((64, 64), 12, np.uint8),                                         # faint uniform noise floor
])
def test_empty_canvas_gives_none(image):
    assert canvas_to_mnist(image) is None


def test_rgba_rgb_gray_and_transparent_agree():
    rgba = draw(TWO, 180, 60, 30)
    rgb = rgba[:, :, :3]
    gray = rgba[:, :, 0]
    # the canvas with a transparent background: white strokes, alpha = coverage, invisible pixels any colour
    transparent = np.zeros_like(rgba)
    transparent[..., :3] = 255
    transparent[..., 3] = gray
    paper = 255 - gray                       # dark ink on white paper
    ref = canvas_to_mnist(rgba)
    for other in (rgb, gray, transparent, paper, gray[..., None], gray.astype(np.float32) / 255):
        np.testing.assert_allclose(canvas_to_mnist(other), ref, atol=1 / 255 + 1e-6)


def test_ink_counts_alpha():
    px = np.array([[[255, 255, 255, 128], [200, 10, 10, 255], [255, 255, 255, 0], [0, 0, 0, 255]]], np.uint8)
    np.testing.assert_allclose(preprocess.ink(px)[0], [128 / 255, 200 / 255, 0, 0], atol=1 / 255)


def test_small_in_a_corner_and_large_in_the_middle_give_nearly_the_same_image():
    small = canvas_to_mnist(draw(TWO, 40, 5, 230))      # a 40 px digit in the bottom-left corner
    large = canvas_to_mnist(draw(TWO, 240, 20, 20))     # a 240 px digit filling the canvas
    assert np.abs(small - large).mean() < 0.04
    assert np.corrcoef(small.ravel(), large.ravel())[0, 1] > 0.9
    # what most canvas demos do instead (shrink the whole canvas) is nothing like it
    naive = np.asarray(Image.fromarray(draw(TWO, 40, 5, 230)[:, :, 0]).resize((28, 28), Image.BILINEAR)) / 255
    assert np.corrcoef(naive.ravel(), large.ravel())[0, 1] < 0.5


def test_aspect_ratio_is_kept_and_no_ink_leaves_the_field():
    bar = np.zeros((300, 300), np.uint8)
    bar[20:280, 140:160] = 255                          # 260 tall, 20 wide: a "1"
    out = canvas_to_mnist(bar)
    h, w = ink_box(out > 0.05)
    assert h == 20 and 1 <= w <= 3
    # a lopsided shape: its centre of mass would push ink out of the field; it stays whole instead
    hook = np.zeros((200, 200), np.uint8)
    hook[0:200, 0:10] = 255
    hook[0:10, 0:200] = 255
    out = canvas_to_mnist(hook)
    assert ink_box(out > 0.05) == (20, 20)


@pytest.mark.parametrize("height, width, box", [(50, 200, (5, 20)), (200, 50, (20, 5)), (36, 240, (3, 20)),
                                                  (240, 60, (20, 5))])
def test_the_longer_side_fits_the_20px_box_whichever_it_is(height, width, box):
    # a wide and a tall digit, drawn as solid blocks on a black canvas: the longer side becomes 20 px and the other
    # keeps the aspect ratio (a block fills its crop, so its 28 x 28 ink box is exactly the scaled size)
    canvas = np.zeros((280, 280), np.uint8)
    top, left = (280 - height) // 2, (280 - width) // 2
    canvas[top:top + height, left:left + width] = 255
    out = canvas_to_mnist(canvas)
    assert ink_box(out > 0.05) == box
    assert out.max() > 0.9


def test_any_size_works():
    for size in (30, 280, 600, 1000):
        img = draw(TWO, size * 0.6, size * 0.2, size * 0.2, canvas=size)
        out = canvas_to_mnist(img)
        assert out is not None and max(ink_box(out > 0.05)) <= 20


def test_bad_shapes_raise_value_error():
    for shape in ((10, 10, 2), (10,), (0, 10), (2, 10, 10, 4)):
        with pytest.raises(ValueError):
            canvas_to_mnist(np.zeros(shape, np.uint8))


def test_classify_and_unsure(fixture_runs):
    from mnistviz.runs import load_model

    model = load_model(fixture_runs / "tiny-none")
    image = canvas_to_mnist(draw(TWO, 200, 40, 40))
    probs = preprocess.classify(model, image)
    assert probs.shape == (10,) and probs.dtype == np.float32 and np.isclose(probs.sum(), 1, atol=1e-5)
    assert not model.training
    # a model left in train mode is still classified in eval mode (BatchNorm's running statistics, not the
    # one image's) and handed back in train mode
    model.train()
    assert np.allclose(preprocess.classify(model, image), probs, atol=1e-6)
    assert model.training
    assert preprocess.is_unsure(np.full(10, 0.1)) and not preprocess.is_unsure(np.eye(10)[3])


def paste_digits(images: np.ndarray, rng: np.random.Generator, canvas: int = 280) -> list[np.ndarray]:
    """Each 28 x 28 MNIST digit enlarged to a random 120-280 px square at a random place on a black
    RGBA canvas (the canvas's format)."""
    out = []
    for img in images:
        s = int(rng.integers(120, 281))
        big = np.asarray(Image.fromarray(img).resize((s, s), Image.BILINEAR))
        y, x = rng.integers(0, canvas - s + 1, size=2)
        c = np.zeros((canvas, canvas, 4), np.uint8)
        c[..., 3] = 255
        c[y:y + s, x:x + s, :3] = big[..., None]
        out.append(c)
    return out


def test_mnist_digits_pasted_on_a_canvas_are_classified_by_the_default_model(real_mnist):
    from mnistviz.data import load_mnist
    from mnistviz.mydigits import DEFAULT_MODEL
    from mnistviz.runs import load_model

    assert (DEFAULT_MODEL / "config.json").exists(), f"the bundled default model is missing: {DEFAULT_MODEL}"
    model = load_model(DEFAULT_MODEL)
    data = load_mnist(real_mnist, download=False)
    rng = np.random.default_rng(5)
    idx = rng.choice(len(data.test_labels), 1000, replace=False)
    canvases = paste_digits(data.test_images[idx].numpy(), rng)
    prepared = np.stack([canvas_to_mnist(c) for c in canvases])
    with torch.inference_mode():
        pred = model(torch.from_numpy(prepared)[:, None]).argmax(1).numpy()
    acc = float((pred == data.test_labels[idx].numpy()).mean())
    print(f"{acc:.1%} of 1,000 pasted MNIST test digits classified correctly")
    assert acc >= 0.98, f"only {acc:.1%} of 1,000 pasted MNIST test digits classified correctly"
