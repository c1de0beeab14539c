"""How long does the Embeddings page take to make a projection the first time? Each method on real MNIST's test
set with the committed default model, at the stage the page starts on (what the last layer reads), each in a
fresh Python process as in a newly started app (imports, and umap-learn's numba compilation, included), then
once more in the same process, then read back from the run folder as a second visit does.

    MNISTVIZ_DATA=../shared/data python bench/embedding_speed.py [--n 10000] [--methods pca umap] [--threads 1 2]
        [--tsne-threads]

Side by side in the same run: torch's randomized PCA (ours) and scikit-learn's PCA; with --tsne-threads, t-SNE on
one OpenMP thread and on every core. Goals (issue 23): PCA <= 1 s, UMAP <= 20 s for 10,000 points on 2 cores.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def child(method: str, n: int, threads: int, run_dir: str) -> dict:
    """One method's first and second compute in this (fresh) process, and a read of the stored result."""
    t0 = time.perf_counter()
    import torch

    from mnistviz import data, embeddings as E, runs

    torch.set_num_threads(threads)  # what the page gives torch while no training runs: every core
    run = runs.Run(run_dir)
    (w,) = E.weight_choices(run)
    model = E.load_weights(run, w.path)
    mnist = data.load_mnist(download=False)
    images, labels = mnist.test_images, mnist.test_labels.numpy()
    ready = time.perf_counter() - t0
    out = {"method": method, "n": n, "threads": threads, "startup_s": ready}
    stage = E.default_stage(model)
    if method == "pca-sklearn":  # the reference: the same features through scikit-learn's PCA (its import included)
        feats, _ = E.activations(model, images[torch.as_tensor(E.stratified_sample(labels, n))], stage)
        for key in ("first_s", "again_s"):
            t = time.perf_counter()
            from sklearn.decomposition import PCA
            PCA(2, random_state=0).fit_transform(feats)
            out[key] = time.perf_counter() - t
        return out
    phases = []
    for key in ("first_s", "again_s"):
        phases.clear()
        t = time.perf_counter()
        e = E.compute(model, w, stage, method, images, labels, n,
                      progress=lambda f, text: phases.append((round(time.perf_counter() - t, 2), text)))
        out[key] = time.perf_counter() - t
        if key == "first_s":
            out["activations_s"] = phases[1][0]  # compute's second report: the activations are done
            out["phases"] = phases[:: max(1, len(phases) // 10)]
    E.save(run, w, e)  # as the page stores it, then read back as a second visit does
    t = time.perf_counter()
    assert E.load_cached(run, w, stage, method, n, 0, labels) is not None
    out["stored_read_s"] = time.perf_counter() - t
    return out


def fresh(method: str, n: int, threads: int, run_dir: str) -> dict:
    p = subprocess.run([sys.executable, __file__, "--child", method, str(n), str(threads), run_dir], cwd=ROOT,
                       capture_output=True, text=True)
    if p.returncode:
        raise SystemExit(f"{method}: {p.stderr[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--methods", nargs="+", default=["pca", "umap"], choices=["pca", "tsne", "umap"])
    ap.add_argument("--threads", type=int, nargs="+", help="torch threads (t-SNE's too) to run each method with "
                                                           "(default: every core, as the page while no training runs)")
    ap.add_argument("--tsne-threads", action="store_true", help="also t-SNE on 1 thread and on every core")
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        method, n, threads, run_dir = args.child
        print(json.dumps(child(method, int(n), int(threads), run_dir)))
        return
    from mnistviz import data

    if data.find_mnist() is None:
        raise SystemExit(data.missing_message())
    cores = os.cpu_count() or 1
    print(f"{cores} CPUs, load average {os.getloadavg()[0]:.1f}; default model (fast), {args.n:,} test images, "
          f"stage flatten")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = shutil.copytree(ROOT / "checkpoints" / "default", Path(tmp) / "default")
        todo = [(m, t) for t in args.threads or [cores] for m in args.methods]
        if "pca" in args.methods:
            todo.insert(1 + todo.index(("pca", (args.threads or [cores])[0])), ("pca-sklearn", cores))
        if args.tsne_threads:
            todo += [("tsne", 1), ("tsne", cores)] if "tsne" not in args.methods else [("tsne", 1)]
        for method, threads in todo:
            r = fresh(method, args.n, threads, str(run_dir))
            rows.append(r)
            stored = f", read back {r['stored_read_s'] * 1000:.0f} ms" if "stored_read_s" in r else ""
            acts = f" (activations {r['activations_s']:.2f} s)" if "activations_s" in r else ""
            print(f"{method:12s} torch threads {threads}: first {r['first_s']:6.2f} s{acts} in a fresh process "
                  f"(after {r['startup_s']:.1f} s of start-up), again {r['again_s']:6.2f} s{stored}", flush=True)
            for at, text in r.get("phases", []):
                print(f"    {at:7.2f} s  {text}")
    by = {(r["method"], r["threads"]): r for r in rows}
    for threads in args.threads or [cores]:
        if ("pca", threads) in by:
            r = by["pca", threads]
            ref = (f" vs scikit-learn's {by['pca-sklearn', cores]['first_s']:.2f} s (its import included)"
                   if ("pca-sklearn", cores) in by else "")
            print(f"{threads} thread(s): PCA first compute (activations + projection) {r['first_s']:.2f} s "
                  f"(goal <= 1 s); the projection alone {r['first_s'] - r['activations_s']:.2f} s{ref}")
        if ("umap", threads) in by:
            r = by["umap", threads]
            print(f"{threads} thread(s): UMAP first compute (activations + projection) {r['first_s']:.1f} s "
                  f"(goal <= 20 s); again in the same process (umap-learn compiled) {r['again_s']:.1f} s")
    if ("tsne", 1) in by and ("tsne", cores) in by:
        print(f"t-SNE: 1 thread {by['tsne', 1]['again_s']:.1f} s, {cores} threads {by['tsne', cores]['again_s']:.1f} s"
              f" (ratio {by['tsne', 1]['again_s'] / by['tsne', cores]['again_s']:.2f})")
    print(json.dumps({f"{m}@{t}": {k: round(v, 3) for k, v in r.items() if isinstance(v, float)}
                      for (m, t), r in by.items()}))


if __name__ == "__main__":
    main()
