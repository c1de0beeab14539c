"""MNIST through torchvision, held in memory as uint8 tensors.

The data root comes from the env var MNISTVIZ_DATA (default ``data/``). torchvision finds the four
IDX files in ``<root>/MNIST/raw``; when they are absent we try its download, and when that cannot
work (offline) we raise MNISTMissing with a sentence that says where to put the files.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
# The normalization every model applies as its first layer (the usual MNIST train-set figures;
# data.pixel_stats() recomputes them from the files for the Data page).
MEAN = 0.1307
STD = 0.3081


class MNISTMissing(RuntimeError):
    """MNIST is not on disk and could not be downloaded; str(e) tells the user what to do."""


def data_root() -> Path:
    return Path(os.environ.get("MNISTVIZ_DATA") or "data").expanduser()


def missing_message(root: Path | None = None) -> str:
    root = Path(root) if root is not None else data_root()
    raw = (root / "MNIST" / "raw").resolve()
    return (
        f"MNIST not found and could not be downloaded. Put the four IDX files "
        f"({', '.join(IDX_FILES)}) in {raw}, or set MNISTVIZ_DATA to a folder that has MNIST/raw/ with them."
    )


def find_mnist(root: Path | None = None) -> Path | None:
    """The raw folder if all four files are there (plain or .gz), else None. Never downloads."""
    raw = Path(root if root is not None else data_root()) / "MNIST" / "raw"
    ok = all((raw / f).exists() or (raw / (f + ".gz")).exists() for f in IDX_FILES)
    return raw.resolve() if ok else None


@dataclass(frozen=True)
class MNIST:
    train_images: torch.Tensor  # N x 28 x 28 uint8
    train_labels: torch.Tensor  # N int64
    test_images: torch.Tensor
    test_labels: torch.Tensor
    root: Path


def _torchvision_mnist(root: Path, train: bool, download: bool):
    from torchvision import datasets  # imported here: torchvision import costs ~1 s

    return datasets.MNIST(str(root), train=train, download=download)


def load_mnist(root: Path | str | None = None, download: bool = True) -> MNIST:
    """Load MNIST train and test sets; cached per root for the life of the process."""
    return _load(Path(root if root is not None else data_root()).resolve(), download)


@lru_cache(maxsize=4)
def _load(root: Path, download: bool) -> MNIST:
    sets = []
    for train in (True, False):
        try:
            ds = _torchvision_mnist(root, train, download=False)
        except RuntimeError:
            if not download:
                raise MNISTMissing(missing_message(root)) from None
            try:
                ds = _torchvision_mnist(root, train, download=True)
            except Exception:  # offline: URLError, socket errors, partial files
                raise MNISTMissing(missing_message(root)) from None
        except Exception as e:  # a truncated or corrupt IDX file
            raise MNISTMissing(f"MNIST files in {root / 'MNIST' / 'raw'} could not be read ({e}). "
                               f"Replace them with the four original IDX files.") from None
        sets.append((ds.data.to(torch.uint8).contiguous(), ds.targets.to(torch.int64).contiguous()))
    (trx, try_), (tex, tey) = sets
    return MNIST(trx, try_, tex, tey, root)


def split_validation(images: torch.Tensor, labels: torch.Tensor, size: int = 5000, seed: int = 0):
    """Carve a seeded validation set out of the training set. Returns (train_x, train_y, val_x, val_y)."""
    if size <= 0:
        return images, labels, images[:0], labels[:0]
    if size >= len(images):
        raise ValueError(f"validation size {size} must be smaller than the training set ({len(images)})")
    perm = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    val, train = perm[:size].sort().values, perm[size:].sort().values
    return images[train], labels[train], images[val], labels[val]


def class_balance(data: MNIST):
    """Counts and percentages per digit for train and test, as a pandas DataFrame indexed by digit."""
    import pandas as pd

    rows = {}
    for split, labels in (("train", data.train_labels), ("test", data.test_labels)):
        counts = torch.bincount(labels, minlength=10)
        rows[f"{split}_count"] = counts.tolist()
        rows[f"{split}_pct"] = (counts.double() * 100 / max(1, len(labels))).round(decimals=2).tolist()
    df = pd.DataFrame(rows)
    df.index.name = "digit"
    return df


def pixel_stats(data: MNIST) -> tuple[float, float]:
    """Mean and std of training pixels in [0, 1] (what Normalize uses)."""
    x = data.train_images.float().div_(255)
    return float(x.mean()), float(x.std())


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 N x 28 x 28 -> float N x 1 x 28 x 28 in [0, 1]."""
    return images.unsqueeze(1).float().div_(255)
