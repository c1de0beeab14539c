"""One LeNet-5 epoch (batch 32, SGD lr 0.01 momentum 0.9): the seeds' DataLoader loop vs mnistviz's trainer.

    MNISTVIZ_DATA=../shared/data python bench/train_speed.py [--repeat 3]

Both run in this process, alternating, on the same machine and thread count; prints every round and
its ratio, then the ratio of the best epoch of each side and the median of the per-round ratios.
Each round also runs mnistviz's trainer with its native kernels off (mnistviz/native.py: torch's kernels only,
as on a machine without a C compiler), for the same figures.
Best-of-rounds is the figure of merit (as `timeit` does it): on a shared 2-core VM the same loop varies
by +-30% from minute to minute, and noise only ever adds time, to both sides alike.
The reference times only its training loop (its dataset is built before the clock starts); mnistviz reports
train_seconds (training steps only, no start-up, no evaluation).
"""
import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _reference import reference_epoch, seed_lenet5  # noqa: E402

from mnistviz import data, native, train  # noqa: E402


def mnistviz_epoch(runs_dir: Path, k: int) -> tuple[float, float]:
    cfg = train.Config(model="lenet5", optimizer="sgd", lr=0.01, momentum=0.9, nesterov=False, weight_decay=0.0,
                       schedule="none", label_smoothing=0.0, batch_size=32, epochs=1, augment="none", val_size=0,
                       name=f"speed{k}")
    run = train.create_run(cfg, runs_dir)
    res = train.train_run(run)
    return res["train_seconds"], res["test_accuracy"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    root = data.data_root()
    data.load_mnist()  # fail early, with the message, if MNIST is missing
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, MNIST at {root}")
    print("mnistviz's native kernels:", "on" if native.lib() else f"unavailable ({native.why_not()})")
    refs, ourss, plains = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.repeat):
            ref = reference_epoch(seed_lenet5(), root)
            ours, acc = mnistviz_epoch(Path(tmp), k)
            native.set_enabled(False)
            plain, plain_acc = mnistviz_epoch(Path(tmp), args.repeat + k)
            native.set_enabled(True)
            refs.append(ref)
            ourss.append(ours)
            plains.append(plain)
            print(f"round {k + 1}: reference DataLoader loop {ref:6.2f} s/epoch ({60000 / ref:5.0f} images/s), "
                  f"mnistviz {ours:5.2f} s/epoch ({60000 / ours:5.0f} images/s, test accuracy {acc:.2%}): "
                  f"{ref / ours:.2f}x; native kernels off {plain:5.2f} s/epoch ({plain_acc:.2%}): {ref / plain:.2f}x",
                  flush=True)
    med = statistics.median
    print(f"best of {args.repeat}: reference {min(refs):.2f} s, mnistviz {min(ourss):.2f} s, "
          f"speed-up {min(refs) / min(ourss):.2f}x "
          f"(median of the rounds' ratios {med(r / o for r, o in zip(refs, ourss)):.2f}x)")
    print(f"  native kernels off: mnistviz {min(plains):.2f} s, speed-up {min(refs) / min(plains):.2f}x "
          f"(median {med(r / o for r, o in zip(refs, plains)):.2f}x)")

if __name__ == "__main__":
    main()
