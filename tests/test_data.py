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


def test_cli_offline_says_where_to_put_files(tmp_path):
    # an unreachable proxy makes torchvision's download fail fast, as offline
    env = {"MNISTVIZ_DATA": str(tmp_path / "nodata"), "MNISTVIZ_RUNS": str(tmp_path / "runs"), "PATH": "/usr/bin:/bin",
           "https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9", "HOME": str(tmp_path)}
    p = subprocess.run([sys.executable, "-m", "mnistviz.train"], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 2
    assert "Traceback" not in p.stderr
    assert "train-images-idx3-ubyte" in p.stderr and "MNIST/raw" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())  # no failed run left behind
