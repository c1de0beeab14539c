"""The best recipe found: `python -m mnistviz.train --preset best` (wide CNN, 16 epochs, light augmentation),
through the CLI; prints its test accuracy per epoch and the training seconds. Target: at least 99.5%.

    MNISTVIZ_DATA=../shared/data python bench/best_recipe.py
"""
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

with tempfile.TemporaryDirectory() as tmp:
    p = subprocess.run([sys.executable, "-m", "mnistviz.train", "--preset", "best", "--runs-dir", tmp, "--no-progress"],
                       cwd=ROOT, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(p.stderr)
    res = json.loads(p.stdout.strip().splitlines()[-1])
    for line in open(Path(res["run_dir"]) / "metrics.jsonl"):
        r = json.loads(line)
        if "epoch" in r:
            print(f"epoch {r['epoch']:2d}: test accuracy {r['test_acc']:.2%}  ({r['train_seconds']:.0f} s of training)")
    print(f"best recipe: final test accuracy {res['test_accuracy']:.2%}, best {res['best_test_accuracy']:.2%}, "
          f"{res['train_seconds']:.0f} s of training")
