import shutil
import subprocess
import sys

import pytest
import torch

from mnistviz import data
from tests.conftest import ROOT


def test_loads_idx_files_through_torchvision(tiny_data):
    d = data.load_mnist(tiny_data, download=False)
    assert d.train_images.shape == (600, 28, 28) and d.train_images.dtype == torch.uint8
    assert d.test_images.shape == (200, 28, 28) and d.test_labels.dtype == torch.int64
    assert set(d.train_labels.tolist()) == set(range(10))
    assert data.find_mnist(tiny_data) is not None


def test_class_balance_counts_and_percentages(tiny_data):
    df = data.class_balance(data.load_mnist(tiny_data, download=False))
    assert df["train_count"].sum() == 600 and df["test_count"].sum() == 200
    # uneven labels, so equal counts or swapped digits would show
    d = data.MNIST(torch.zeros(5, 28, 28, dtype=torch.uint8), torch.tensor([0, 0, 0, 1, 9]),
                   torch.zeros(1, 28, 28, dtype=torch.uint8), torch.tensor([2]), tiny_data)
    df = data.class_balance(d)
    assert df.index.tolist() == list(range(10))
    assert df["train_count"].tolist() == [3, 1, 0, 0, 0, 0, 0, 0, 0, 1]
    assert df["train_pct"].tolist() == [60.0, 20.0, 0, 0, 0, 0, 0, 0, 0, 20.0]
    assert df["test_count"].tolist() == [0, 0, 1, 0, 0, 0, 0, 0, 0, 0]
    assert df["test_pct"].tolist() == [0, 0, 100.0, 0, 0, 0, 0, 0, 0, 0]


def test_validation_split_is_seeded_and_disjoint():
    x = torch.arange(100).view(100, 1, 1).expand(100, 28, 28).to(torch.uint8)
    y = torch.arange(100)
    a = data.split_validation(x, y, 10, seed=3)
    b = data.split_validation(x, y, 10, seed=3)
    c = data.split_validation(x, y, 10, seed=4)
    assert torch.equal(a[3], b[3]) and not torch.equal(a[3], c[3])
    assert len(a[1]) == 90 and len(a[3]) == 10
    assert not set(a[1].tolist()) & set(a[3].tolist())
    tr_x, tr_y, vx, vy = data.split_validation(x, y, 0)
    assert len(tr_y) == 100 and len(vy) == 0


def test_missing_data_message_names_folder_and_files(tmp_path):
    with pytest.raises(data.MNISTMissing) as e:
        data.load_mnist(tmp_path, download=False)
    msg = str(e.value)
    assert str((tmp_path / "MNIST" / "raw").resolve()) in msg
    for f in data.IDX_FILES:
        assert f in msg
    # nothing tried a download (the dashboard never does): the message says how to get the files, not that a
    # download failed
    assert "could not be downloaded" not in msg and "python -m mnistviz.train" in msg and "restart" in msg


def test_cli_offline_says_where_to_put_files(tmp_path):
    # an unreachable proxy makes torchvision's download fail fast, as offline
    env = {"MNISTVIZ_DATA": str(tmp_path / "nodata"), "MNISTVIZ_RUNS": str(tmp_path / "runs"), "PATH": "/usr/bin:/bin",
           "https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9", "HOME": str(tmp_path)}
    p = subprocess.run([sys.executable, "-m", "mnistviz.train"], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 2
    assert "Traceback" not in p.stderr
    assert "train-images-idx3-ubyte" in p.stderr and "MNIST/raw" in p.stderr
    assert "could not be downloaded" in p.stderr  # here a download was tried
    assert len(p.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())  # no failed run left behind


def _gzip_only(raw, name):
    import gzip
    (raw / (name + ".gz")).write_bytes(gzip.compress((raw / name).read_bytes()))
    (raw / name).unlink()


def _truncate(path, keep=0.5):
    b = path.read_bytes()
    path.write_bytes(b[:int(len(b) * keep)])


# each: how the files get broken, the file the message must name
BROKEN = {
    "truncated test images": (lambda raw: _truncate(raw / "t10k-images-idx3-ubyte"), "t10k-images-idx3-ubyte"),
    "truncated train labels": (lambda raw: _truncate(raw / "train-labels-idx1-ubyte", 0.9), "train-labels-idx1-ubyte"),
    "garbage": (lambda raw: (raw / "train-images-idx3-ubyte").write_bytes(b"<html>404 Not Found</html>" * 99),
                "train-images-idx3-ubyte"),
    "counts disagree": (lambda raw: shutil.copy(raw.parent.parent / "other" / "t10k-labels-idx1-ubyte",
                                                raw / "t10k-labels-idx1-ubyte"), "t10k-labels-idx1-ubyte"),
    "truncated .gz": (lambda raw: (_truncate(raw / "t10k-images-idx3-ubyte"), _gzip_only(raw, "t10k-images-idx3-ubyte")),
                      "t10k-images-idx3-ubyte.gz"),
}


@pytest.fixture
def broken_data(tmp_path, request):
    from tests.conftest import write_idx
    break_it, name = BROKEN[request.param]
    write_idx(tmp_path / "MNIST" / "raw", n_train=300, n_test=100)
    write_idx(tmp_path / "other", n_train=10, n_test=150)  # labels for another test set (counts disagree)
    assert data.find_mnist(tmp_path) is not None
    break_it(tmp_path / "MNIST" / "raw")
    return tmp_path, name


def _load_error(root) -> str:
    with pytest.raises(data.MNISTMissing) as e:
        data.load_mnist(root, download=False)
    return str(e.value)


@pytest.mark.parametrize("broken_data", list(BROKEN), indirect=True)
def test_unreadable_files_are_not_reported_missing(broken_data):
    root, name = broken_data
    assert data.find_mnist(root) is None  # the sidebar and the Train page no longer say MNIST is there
    for msg in (data.missing_message(root), _load_error(root)):
        assert "could not be read (truncated or corrupt?)" in msg and name in msg, msg
        assert str((root / "MNIST" / "raw").resolve()) in msg and "Replace" in msg
        assert "not found" not in msg


def test_gz_files_whose_sizes_fit_are_found_and_load(tmp_path):
    from tests.conftest import write_idx
    raw = tmp_path / "MNIST" / "raw"
    write_idx(raw, n_train=300, n_test=100)
    for f in data.IDX_FILES:
        _gzip_only(raw, f)
    assert data.find_mnist(tmp_path) == raw.resolve() and data.unreadable_files(tmp_path) == []
    # and they load, offline, without a download: torchvision reads only unpacked files, so they are unpacked
    d = data.load_mnist(tmp_path, download=False)
    assert d.train_images.shape == (300, 28, 28) and d.test_labels.shape == (100,)
    assert sorted(p.name for p in raw.iterdir()) == sorted([f for f in data.IDX_FILES] +
                                                           [f + ".gz" for f in data.IDX_FILES])


def test_cli_with_a_truncated_file_says_so_and_creates_nothing(tmp_path):
    from tests.conftest import write_idx
    raw = tmp_path / "data" / "MNIST" / "raw"
    write_idx(raw, n_train=300, n_test=100)
    _truncate(raw / "t10k-images-idx3-ubyte")
    # an unreachable proxy: had the files been taken for missing, the download would fail fast, as offline
    env = {"MNISTVIZ_DATA": str(tmp_path / "data"), "MNISTVIZ_RUNS": str(tmp_path / "runs"), "PATH": "/usr/bin:/bin",
           "https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9", "HOME": str(tmp_path)}
    p = subprocess.run([sys.executable, "-m", "mnistviz.train"], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    assert "could not be read (truncated or corrupt?)" in p.stderr and "t10k-images-idx3-ubyte" in p.stderr
    assert "not found" not in p.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    assert (raw / "t10k-images-idx3-ubyte").stat().st_size == (16 + 100 * 784) // 2  # the user's file left alone
