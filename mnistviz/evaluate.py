"""Predictions and test-set evaluation; `python -m mnistviz.evaluate RUN_DIR [--json]`."""
from __future__ import annotations

import argparse
import json
import sys

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
    return loss, acc, torch.softmax(logits, 1).numpy()


def evaluate_run(run_dir) -> dict:
    from .data import load_mnist
    from .runs import load_model

    model = load_model(run_dir)
    data = load_mnist()
    loss, acc, _ = evaluate(model, data.test_images, data.test_labels)
    return {"test_accuracy": acc, "test_loss": loss}


def main(argv=None) -> int:
    from .data import MNISTMissing
    from .runs import RunError

    p = argparse.ArgumentParser(prog="python -m mnistviz.evaluate",
                                description="Evaluate a run's best checkpoint on the MNIST test set.")
    p.add_argument("run_dir")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = p.parse_args(argv)
    try:
        res = evaluate_run(args.run_dir)
    except (RunError, MNISTMissing) as e:
        print(f"mnistviz.evaluate: error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(res))
    else:
        print(f"test accuracy {res['test_accuracy']:.2%}, test loss {res['test_loss']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
