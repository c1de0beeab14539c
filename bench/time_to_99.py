"""Training seconds until the default recipe (`python -m mnistviz.train` with no arguments) first reaches
99.0% test accuracy, through the CLI itself.

    MNISTVIZ_DATA=../shared/data python bench/time_to_99.py [--seeds 0 1 2]
"""
import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            p = subprocess.run([sys.executable, "-m", "mnistviz.train", "--target-accuracy", "0.99", "--seed", str(seed),
                                "--runs-dir", tmp, "--no-progress"], cwd=ROOT, capture_output=True, text=True)
            if p.returncode != 0:
                sys.exit(p.stderr)
            res = json.loads(p.stdout.strip().splitlines()[-1])
            reached = res["best_test_accuracy"] >= 0.99
            recs = [json.loads(line) for line in open(Path(res["run_dir"]) / "metrics.jsonl") if '"epoch"' in line]
            first = next((r for r in recs if r["test_acc"] >= 0.99), None)
            print(f"seed {seed}: {'reached' if reached else 'did NOT reach'} 99.0% "
                  + (f"after epoch {first['epoch']} in {first['train_seconds']:.1f} s of training "
                     f"(test accuracy {first['test_acc']:.2%})" if first else
                     f"(best {res['best_test_accuracy']:.2%} in {res['train_seconds']:.1f} s)"))


if __name__ == "__main__":
    main()
