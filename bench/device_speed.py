"""The trainer on this machine's GPU and on its CPU, side by side in one run: a LeNet-5 epoch (the seeds' recipe:
SGD 0.01 / 0.9, all 60,000 images) at batch 32 and at batch 256, and the default recipe's training seconds to 99.0%
test accuracy (`python -m mnistviz.train` with no arguments, stopped there).

    MNISTVIZ_DATA=../shared/data python bench/device_speed.py [--bf16] [--compile] [--no-cpu] [--cpu]

Everything runs in this process through train.train_run, after a short warm-up run per device (CUDA's start-up
and cuDNN's first choices are not a LeNet-5 epoch); each figure is the run's train_seconds (training steps only,
the GPU waited for at every record), so it includes the first steps of each run. Columns: the GPU in fp32;
with --bf16 the GPU with bf16 autocast; with --compile the GPU with the model under torch.compile, its
compilation inside the figure (it happens in the first steps); the CPU unless --no-cpu. Without a GPU it says so
and exits 0, unless --cpu asks for the CPU column alone.
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from mnistviz import device, train  # noqa: E402

LENET = dict(model="lenet5", optimizer="sgd", lr=0.01, momentum=0.9, nesterov=False, weight_decay=0.0,
             schedule="none", label_smoothing=0.0, epochs=1, augment="none", val_size=0)
FIGURES = [("LeNet-5 epoch, batch 32", dict(LENET, batch_size=32)),
           ("LeNet-5 epoch, batch 256", dict(LENET, batch_size=256)),
           ("default recipe to 99.0%", dict(target_accuracy=0.99))]


def timed(runs_dir: Path, name: str, **cfg) -> str:
    run = train.create_run(train.Config(name=name, **cfg), runs_dir)
    res = train.train_run(run)
    if cfg.get("target_accuracy") is None:
        return f"{res['train_seconds']:.2f} s"
    first = next((r for r in run.epoch_records() if r["test_acc"] >= 0.99), None)
    if first is None:
        return f"not reached ({res['best_test_accuracy']:.2%} in {res['train_seconds']:.2f} s)"
    return f"{first['train_seconds']:.2f} s (epoch {first['epoch']}, {first['test_acc']:.2%})"


def column(runs_dir: Path, label: str, dev: str, **extra) -> tuple[str, list[str]]:
    print(f"timing {label} ...", flush=True)
    timed(runs_dir, f"warm-{len(list(runs_dir.iterdir()))}", device=dev, epochs=1, limit_train=4096, val_size=0,
          **extra)
    return label, [timed(runs_dir, f"r{len(list(runs_dir.iterdir()))}", device=dev, **fig, **extra)
                   for _, fig in FIGURES]


def compiled_column(runs_dir: Path, dev: str):
    real_build = train.build
    train.build = lambda name: torch.compile(real_build(name))  # the trainer's model, compiled where it is built
    try:
        return column(runs_dir, f"{dev}, torch.compile", dev)
    finally:
        train.build = real_build


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bf16", action="store_true", help="also the GPU with bf16 autocast")
    ap.add_argument("--compile", action="store_true", help="also the GPU with the model under torch.compile")
    ap.add_argument("--no-cpu", action="store_true", help="the GPU's columns only")
    ap.add_argument("--cpu", action="store_true", help="without a GPU: time the CPU column alone")
    args = ap.parse_args()
    gpus = [d for d in device.present() if d != "cpu"]
    print(f"torch {torch.__version__}; devices here: "
          + ", ".join(f"{d} ({device.describe(d)})" for d in device.present()), flush=True)
    if not gpus and not args.cpu:
        print("no GPU here: nothing to compare (--cpu times the CPU column alone)")
        return 0
    cols = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if gpus:
            gpu = gpus[0]
            cols.append(column(root, f"{gpu} fp32", gpu))
            if args.bf16:
                cols.append(column(root, f"{gpu} bf16", gpu, precision="bf16"))
            if args.compile:
                cols.append(compiled_column(root, gpu))
        if not args.no_cpu:
            cols.append(column(root, "cpu", "cpu"))
    width = max(len(f) for f, _ in FIGURES) + 2
    cw = max(28, *(len(label) + 2 for label, _ in cols))
    print("".ljust(width) + "".join(label.ljust(cw) for label, _ in cols))
    for i, (fig, _) in enumerate(FIGURES):
        print(fig.ljust(width) + "".join(vals[i].ljust(cw) for _, vals in cols))
    if len(cols) > 1 and cols[-1][0] == "cpu":
        for i, (fig, _) in enumerate(FIGURES):
            try:
                ratio = float(cols[-1][1][i].split()[0]) / float(cols[0][1][i].split()[0])
                print(f"{fig}: the GPU ({cols[0][0]}) takes 1/{ratio:.1f} of the CPU's time")
            except ValueError:
                pass  # "not reached": no ratio
    print("measured", time.strftime("%Y-%m-%d %H:%M %Z"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
