"""What recording the training set's cartography costs a training: one epoch with the recording on and one with it
off, alternating, for the default recipe (batch 256) and LeNet-5 at batch 32 (eight times the steps: the most a
per-step hook can cost).

    MNISTVIZ_DATA=../shared/data python bench/cartography_speed.py [--repeat 3] [--recipe lenet5] [--limit-train N]

Both sides run in this process on the same machine and thread count, taking turns to go first. Prints each round's training seconds (steps
only, as train_seconds) and their ratio, then the best-of-rounds ratio and the median of the per-round ratios. It
also times the hook itself inside the recorded epochs (cartography.record after each step, cartography.save at the
epoch's end), as a share of the epoch's training seconds: a figure the minute-to-minute noise of a shared VM (which
only ever adds time, to both sides alike) does not blur.
"""
import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from mnistviz import cartography, data, train  # noqa: E402

RECIPES = {
    "default": dict(epochs=1),  # the default recipe, batch 256
    "lenet5": dict(model="lenet5", optimizer="sgd", lr=0.01, momentum=0.9, nesterov=False,
                              weight_decay=0.0, schedule="none", label_smoothing=0.0, batch_size=32, epochs=1,
                              augment="none", val_size=0),
}
hook_s = 0.0


def timed(f):
    def wrapper(*args, **kwargs):
        global hook_s
        t0 = time.perf_counter()
        try:
            return f(*args, **kwargs)
        finally:
            hook_s += time.perf_counter() - t0
    return wrapper


def epoch(runs_dir: Path, recipe: dict, name: str, on: bool, limit: int) -> float:
    cartography.set_enabled(on)
    run = train.create_run(train.Config(**recipe, name=name, limit_train=limit), runs_dir)
    return train.train_run(run)["train_seconds"]


def main():
    global hook_s
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--recipe", choices=[*RECIPES, "all"], default="all",
                    help="default: the default recipe (batch 256); lenet5: LeNet-5 at batch 32")
    ap.add_argument("--limit-train", type=int, default=0, help="train on the first N images only (shorter rounds)")
    args = ap.parse_args()
    data.load_mnist()  # fail early, with the message, if MNIST is missing
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, MNIST at {data.data_root()}")
    cartography.record, cartography.save = timed(cartography.record), timed(cartography.save)
    with tempfile.TemporaryDirectory() as tmp:
        for label, recipe in RECIPES.items():
            if args.recipe not in ("all", label):
                continue
            ons, offs, ratios, shares = [], [], [], []
            for k in range(args.repeat):
                # the side that goes first alternates: a load that fades or grows during a round favours neither
                if k % 2:
                    off = epoch(Path(tmp), recipe, f"off-{label}-{k}", False, args.limit_train)
                hook_s = 0.0
                on = epoch(Path(tmp), recipe, f"on-{label}-{k}", True, args.limit_train)
                shares.append(hook_s / on)
                if not k % 2:
                    off = epoch(Path(tmp), recipe, f"off-{label}-{k}", False, args.limit_train)
                ons.append(on)
                offs.append(off)
                ratios.append(on / off)
                print(f"{label}, round {k + 1}: recording {on:6.2f} s, without {off:6.2f} s: {on / off:.3f}; "
                      f"the hook itself {hook_s * 1000:.0f} ms = {shares[-1]:.2%} of the recorded epoch", flush=True)
            print(f"{label}: best of rounds {min(ons):.2f} s vs {min(offs):.2f} s = {min(ons) / min(offs):.3f}; "
                  f"median ratio {statistics.median(ratios):.3f}; hook {statistics.median(shares):.2%} of training "
                  f"(median)\n", flush=True)
    cartography.set_enabled(True)


if __name__ == "__main__":
    main()
