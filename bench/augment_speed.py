"""Augmentation cost per training batch, side by side in one run: per image with torchvision's transforms (the way
a Dataset transform in the seeds' loops does it), batched with plain torch ops, and mnistviz.augment.

    python bench/augment_speed.py [--rounds 5]

All three apply a random affine (rotation, translation, scale, shear) plus an elastic distortion to MNIST-sized
images in [0, 1], at the "standard" level's strengths; the batched ones also vary stroke thickness. "batched, plain
ops" is mnistviz.augment as first written (F.affine_grid, bicubic F.interpolate of the elastic field, both
poolings over every sample); mnistviz.augment now builds the grid from a cached base, upsamples the field with two
small matrix products and pools only the samples picked for thickening or thinning (tests/test_augment.py checks
each shortcut against the torch op it replaces). Prints the best of `--rounds` for each, in ms per batch.
"""
import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from mnistviz import augment  # noqa: E402

S = augment.LEVELS["standard"]


def per_image_transform():
    import torchvision.transforms.v2 as T

    return T.Compose([
        T.RandomAffine(degrees=S.rotate, translate=(S.translate, S.translate), scale=(1 - S.scale, 1 + S.scale),
                       shear=S.shear),
        T.ElasticTransform(alpha=S.elastic * 2 * 28 / 4, sigma=4.0),  # a smooth field of about S.elastic pixels
    ])


def plain_ops(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """The same transforms as mnistviz.augment (standard level), each with the obvious torch op."""
    n, _, h, w = x.shape
    u = lambda b: (torch.rand(n, generator=g) * 2 - 1) * b  # noqa: E731
    rot, shear = torch.deg2rad(u(S.rotate)), torch.deg2rad(u(S.shear))
    zoom, tx, ty = 1 + u(S.scale), u(2 * S.translate), u(2 * S.translate)
    cos, sin = torch.cos(rot), torch.sin(rot)
    a = torch.stack([torch.stack([cos, -sin + cos * torch.tan(shear), tx], 1),
                     torch.stack([sin, cos + sin * torch.tan(shear), ty], 1)], 1) / zoom.view(n, 1, 1)
    a[:, :, 2] = torch.stack([tx, ty], 1)
    grid = F.affine_grid(a, (n, 1, h, w), align_corners=False)
    field = F.interpolate(torch.randn(n, 2, 4, 4, generator=g), size=(h, w), mode="bicubic", align_corners=False)
    grid = grid + field.permute(0, 2, 3, 1) * (S.elastic * 2 / max(h, w))
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    pick = torch.rand(n, 1, 1, 1, generator=g)
    dilated, eroded = F.max_pool2d(out, 3, 1, 1), -F.max_pool2d(-out, 3, 1, 1)
    out = torch.where(pick < S.thickness / 2, dilated, torch.where(pick < S.thickness, eroded, out))
    return out.clamp_(0, 1)


def best_ms(fn, rounds: int, reps: int) -> float:
    fn()
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(reps):
            fn()
        best = min(best, (time.perf_counter() - t) / reps * 1e3)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; standard level; best of {args.rounds} rounds")
    tf = per_image_transform()
    g = torch.Generator().manual_seed(0)
    for n in (32, 256):
        x = torch.rand(n, 1, 28, 28, generator=g) ** 4  # mostly dark, like digits
        reps = max(2, 1024 // n)
        per_image = best_ms(lambda: torch.stack([tf(img) for img in x]), args.rounds, max(1, reps // 8))
        plain = best_ms(lambda: plain_ops(x, g), args.rounds, reps)
        ours = best_ms(lambda: augment.augment(x, "standard", g), args.rounds, reps)
        print(f"batch {n:3d}: per image (torchvision) {per_image:7.2f} ms, batched plain ops {plain:6.2f} ms, "
              f"mnistviz.augment {ours:6.2f} ms: {per_image / ours:5.1f}x and {plain / ours:4.2f}x faster", flush=True)


if __name__ == "__main__":
    main()
