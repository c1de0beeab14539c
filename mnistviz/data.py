"""MNIST through torchvision, held in memory as uint8 tensors.

The data root comes from the env var MNISTVIZ_DATA (default ``data/``). torchvision finds the four
IDX files in ``<root>/MNIST/raw``; when they are absent we try its download, and when that cannot
work (offline) we raise MNISTMissing with a sentence that says where to put the files. Files that are
there but cannot be MNIST (truncated, corrupt: their size does not match their header) are named as such.
Files there only as .gz (as the mirrors serve them) are unpacked beside themselves before torchvision reads them.
"""
from __future__ import annotations

import gzip
import math
import os
import struct
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
    """MNIST is not usable: missing and not downloadable, or present but unreadable; str(e) says what to do."""


def data_root() -> Path:
    return Path(os.environ.get("MNISTVIZ_DATA") or "data").expanduser()


def _raw(root: Path | None) -> Path:
    return Path(root if root is not None else data_root()) / "MNIST" / "raw"


def _present(raw: Path, f: str) -> bool:
    return (raw / f).exists() or (raw / (f + ".gz")).exists()


def _idx_header(raw: Path, f: str) -> tuple[int | None, str | None]:
    """(item count, problem) of one IDX file (plain, else .gz) from its header and its size, without reading
    the data: 16 bytes, a stat (a .gz: its 4-byte size trailer). Cheap enough for every page render."""
    images = "images" in f
    path = raw / f if (raw / f).exists() else raw / (f + ".gz")
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as g:
                head = g.read(16)
            with open(path, "rb") as g:
                g.seek(-4, os.SEEK_END)
                size = int.from_bytes(g.read(4), "little")  # the unpacked size, modulo 2**32
        else:
            size = path.stat().st_size
            with open(path, "rb") as g:
                head = g.read(16)
    except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError
        return None, f"{path.name} cannot be read ({e})"
    dims = 3 if images else 1
    want_magic = 0x803 if images else 0x801
    if len(head) < 4 + 4 * dims:
        return None, f"{path.name} is too short to be an IDX file ({len(head)} bytes)"
    magic, *shape = struct.unpack(f">{1 + dims}I", head[:4 + 4 * dims])
    if magic != want_magic:
        return None, (f"{path.name} is not an MNIST {'image' if images else 'label'} file "
                      f"(it starts with 0x{magic:08x}, not 0x{want_magic:08x})")
    if images and shape[1:] != [28, 28]:
        return None, f"{path.name} holds {shape[1]}x{shape[2]} images, not 28x28"
    expected = 4 + 4 * dims + math.prod(shape)
    if size != (expected % 2**32 if path.suffix == ".gz" else expected):
        return None, (f"{path.name} holds {size:,} bytes where its header calls for {expected:,} "
                      f"({shape[0]:,} {'images' if images else 'labels'})")
    return shape[0], None


def unreadable_files(root: Path | None = None) -> list[str]:
    """One sentence per MNIST file that is there but cannot be MNIST (truncated, corrupt, mismatched counts)."""
    raw = _raw(root)
    problems, counts = [], {}
    for f in IDX_FILES:
        if _present(raw, f):
            counts[f], problem = _idx_header(raw, f)
            if problem:
                problems.append(problem)
    for split in ("train", "t10k"):
        n_img, n_lab = counts.get(f"{split}-images-idx3-ubyte"), counts.get(f"{split}-labels-idx1-ubyte")
        if n_img is not None and n_lab is not None and n_img != n_lab:
            problems.append(f"{split}-images-idx3-ubyte has {n_img:,} images but {split}-labels-idx1-ubyte "
                            f"{n_lab:,} labels")
    return problems


def _unreadable_message(raw: Path, problems: list[str]) -> str:
    return (f"MNIST files in {raw.resolve()} could not be read (truncated or corrupt?): {'; '.join(problems)}. "
            f"Replace the file(s) named with the original IDX files, or delete them and run "
            f"`python -m mnistviz.train` once: it downloads missing files.")


def missing_message(root: Path | None = None, download_failed: bool = False) -> str:
    """Why MNIST under root cannot be used, and what to do: where to put missing files, or which files
    are there but unreadable and how to replace them. `download_failed`: a download was tried (the CLI);
    the dashboard never downloads, so it does not say one failed."""
    raw = _raw(root)
    if all(_present(raw, f) for f in IDX_FILES):
        problems = unreadable_files(root)
        if problems:
            return _unreadable_message(raw, problems)
    files = f"the four IDX files ({', '.join(IDX_FILES)}) in {raw.resolve()}"
    env = "set MNISTVIZ_DATA to a folder that has MNIST/raw/ with them"
    if download_failed:
        return f"MNIST not found and could not be downloaded. Put {files}, or {env}."
    return (f"MNIST not found in {raw.resolve()}. Run `python -m mnistviz.train` once with internet access (it "
            f"downloads the files there), or put {files}, or {env} (then restart the app).")


def find_mnist(root: Path | None = None) -> Path | None:
    """The raw folder if all four files are there (plain or .gz) and each one's size fits its header, else None
    (missing_message says why). Never downloads."""
    raw = _raw(root)
    ok = all(_present(raw, f) for f in IDX_FILES) and not unreadable_files(root)
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


def _unpack_gz(raw: Path) -> None:
    """Unpack each IDX file that is there only as .gz (as the MNIST mirrors serve them): torchvision reads
    only the unpacked files and, when it may not download, takes a .gz-only folder for a missing one. The .gz
    stays; the unpacked file appears atomically (temp file + rename), so a kill leaves no half file."""
    for f in IDX_FILES:
        src, dst = raw / (f + ".gz"), raw / f
        if dst.exists() or not src.exists():
            continue
        tmp = dst.with_name(f".{f}.{os.getpid()}.tmp")
        try:
            with gzip.open(src, "rb") as g, open(tmp, "wb") as out:
                while chunk := g.read(1 << 20):
                    out.write(chunk)
            os.replace(tmp, dst)
        except (OSError, EOFError) as e:
            tmp.unlink(missing_ok=True)
            raise MNISTMissing(_unreadable_message(raw, [f"{src.name} cannot be unpacked into {raw} ({e})"])) from None


@lru_cache(maxsize=4)
def _load(root: Path, download: bool) -> MNIST:
    raw = _raw(root)
    problems = unreadable_files(root)
    if problems:  # files that are there but broken: never reported as missing, never downloaded over
        raise MNISTMissing(_unreadable_message(raw, problems))
    _unpack_gz(raw)
    sets = []
    for train in (True, False):
        try:
            ds = _torchvision_mnist(root, train, download=False)
        except Exception as e:
            if all((raw / f).exists() for f in IDX_FILES):  # torchvision found them: reading them failed
                raise MNISTMissing(_unreadable_message(raw, [f"{type(e).__name__}: {e}"])) from None
            if not download:
                raise MNISTMissing(missing_message(root)) from None
            try:
                ds = _torchvision_mnist(root, train, download=True)
            except Exception:  # offline: URLError, socket errors, partial files
                raise MNISTMissing(missing_message(root, download_failed=True)) from None
        sets.append((ds.data.to(torch.uint8).contiguous(), ds.targets.to(torch.int64).contiguous()))
    (trx, try_), (tex, tey) = sets
    return MNIST(trx, try_, tex, tey, root)


def validation_indices(n: int, size: int = 5000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, val): the sorted positions, in a training set of n images, of the images split_validation keeps for
    training and of those it carves out for validation."""
    if size <= 0:
        return torch.arange(n), torch.arange(0)
    if size >= n:
        raise ValueError(f"validation size {size} must be smaller than the training set ({n})")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[size:].sort().values, perm[:size].sort().values


def split_validation(images: torch.Tensor, labels: torch.Tensor, size: int = 5000, seed: int = 0):
    """Carve a seeded validation set out of the training set. Returns (train_x, train_y, val_x, val_y)."""
    if size <= 0:
        return images, labels, images[:0], labels[:0]
    train, val = validation_indices(len(images), size, seed)
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
