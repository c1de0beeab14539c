"""Predictions and test-set evaluation; `python -m mnistviz.evaluate RUN [--json]` (RUN: a run folder or a run name)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


@torch.inference_mode()
def predict_logits(model: torch.nn.Module, images: torch.Tensor, batch_size: int = 2000) -> torch.Tensor:
    """images: uint8 N x 28 x 28 or float N x 1 x 28 x 28 in [0, 1]. Returns N x 10 logits."""
    was_training = model.training
    model.eval()
    out = []
    for i in range(0, len(images), batch_size):
        x = images[i:i + batch_size]
        if x.dtype == torch.uint8:
            x = x.unsqueeze(1).float().div_(255)
        out.append(model(x.contiguous(memory_format=torch.channels_last)).float())
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, 10)


def evaluate(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor):
    """(loss, accuracy, probabilities N x 10 as numpy float32)."""
    if len(images) == 0:
        return None, None, np.zeros((0, 10), np.float32)
    logits = predict_logits(model, images)
    loss = F.cross_entropy(logits, labels).item()
    acc = (logits.argmax(1) == labels).float().mean().item()
    return loss, acc, torch.softmax(logits, 1).cpu().numpy()  # .cpu(): the trainer evaluates on its device


def checkpoint_info(run_dir) -> dict:
    """Which checkpoint runs.load_model reads for the run and what it holds, to say so:
    {"checkpoint": "best.pt" or "last.pt" (best.pt is missing), "epoch": the epoch it is from (None when unknown),
     "about": a phrase such as "best.pt (epoch 3, the best test accuracy)"}. Raises RunError."""
    from .runs import Run, RunError, load_checkpoint

    run = Run(Path(run_dir))
    path = run.model_checkpoint()
    if not path.exists():
        raise RunError(f"run {run.name} has no checkpoint yet (neither best.pt nor last.pt): train or resume it")
    ck = load_checkpoint(path)
    ck = ck if isinstance(ck, dict) else {}
    if path == run.best_ckpt:
        epoch = ck.get("epoch")
        if not isinstance(epoch, int):  # a best.pt that does not say: the best epoch of the metrics
            epoch = run.best_epoch()
        return {"checkpoint": path.name, "epoch": epoch,
                "about": f"best.pt ({f'epoch {epoch}, ' if epoch else ''}the best test accuracy)"}
    state = ck.get("state") if isinstance(ck.get("state"), dict) else {}
    done, into = state.get("epoch"), state.get("step_in_epoch") or 0
    if isinstance(done, int) and into:
        where, epoch = f"{into} steps into epoch {done + 1}", None
    elif isinstance(done, int) and done:
        where, epoch = f"after epoch {done}", done
    else:
        where, epoch = None, None
    return {"checkpoint": path.name, "epoch": epoch,
            "about": f"last.pt ({f'{where}; ' if where else ''}the run has no best.pt)"}


def evaluate_run(run_dir) -> dict:
    """Test accuracy and loss of the weights runs.load_model reads, with which they are (checkpoint_info)."""
    from .data import load_mnist
    from .runs import load_model

    info = checkpoint_info(run_dir)
    model = load_model(run_dir)
    data = load_mnist()
    loss, acc, _ = evaluate(model, data.test_images, data.test_labels)
    return {"test_accuracy": acc, "test_loss": loss, "checkpoint": info["checkpoint"], "epoch": info["epoch"],
            "about": info["about"]}


def resolve_run(arg: str, runs_root=None) -> Path:
    """A run folder given as a path, or as a run name in the runs folder (as train's --resume takes it)."""
    from .runs import RunError, run_path, runs_dir

    p = Path(arg).expanduser()
    shown = arg if arg.isprintable() else repr(arg)  # one line, whatever the argument holds
    try:
        if p.is_dir():
            return p
        if p.exists():
            raise RunError(f"{shown} is a file, not a run folder")
    except OSError as e:  # a name longer than the system takes (ENAMETOOLONG), a folder that cannot be read...
        raise RunError(f"no run folder {shown}: {e.strerror}") from None
    try:
        named = run_path(arg, runs_root)
    except RunError:  # not a run name (a path, say)
        raise RunError(f"no folder {shown}") from None
    if named.is_dir():
        return named
    raise RunError(f"no folder {arg!r} here, and no run named {arg!r} in {runs_dir(runs_root)}")


def main(argv=None) -> int:
    from .cli import evaluate_parser
    from .data import MNISTMissing
    from .runs import RunError

    p = evaluate_parser()
    args = p.parse_args(argv)
    try:
        run_dir = resolve_run(args.run, args.runs_dir)
        res = evaluate_run(run_dir)
    except (RunError, MNISTMissing, OSError) as e:  # OSError: a file of the run that cannot be read
        print(f"{p.prog}: error: {e}", file=sys.stderr)
        return 2
    if res["checkpoint"] != "best.pt" and args.json:  # the plain line below says it itself
        print(f"{p.prog}: note: evaluating the weights in {res['about']}", file=sys.stderr)
    if args.json:
        print(json.dumps(res))
    else:
        print(f"test accuracy {res['test_accuracy']:.2%}, test loss {res['test_loss']:.4f}, weights from {res['about']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
