"""Checkpoints: model in Hugging Face format plus everything needed to continue exactly where a run stopped.

`DIR/checkpoints/step-00000123/` holds config.json, model.safetensors, tokenizer files and trainer_state.pt
(optimizer, scheduler, counters, every rank's RNG states, the training config). Each is written to a temporary
directory and renamed into place, so a checkpoint either exists whole or not at all.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from bertbench.holds import hold
from bertbench.io_utils import atomic_directory, atomic_write_json
from bertbench.models import BertHeadModel, WordPieceTokenizer, save_model

CHECKPOINTS = "checkpoints"
STATE_FILE = "trainer_state.pt"
OWNER_FILE = "owner.json"  # in checkpoints/: which training command wrote them (the --overwrite policy reads it)


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch RNG states as tensors and plain values (loadable with weights_only=True)."""
    np_state = np.random.get_state()
    state = {
        "python": _python_state_to_list(random.getstate()),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what rng_state() captured."""
    random.setstate(_python_state_from_list(state["python"]))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def _python_state_to_list(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _python_state_from_list(state: list) -> tuple:
    version, internal, gauss = state
    return (version, tuple(internal), gauss)


def save_checkpoint(
    output_dir: Path,
    step: int,
    model: BertHeadModel,
    tokenizer: WordPieceTokenizer,
    trainer_state: dict[str, Any],
    keep: int,
    owner: str = "",
) -> Path:
    """Write checkpoint `step` atomically and prune all but the newest `keep`."""
    final = output_dir / CHECKPOINTS / f"step-{step:08d}"
    if owner and not (output_dir / CHECKPOINTS / OWNER_FILE).exists():
        atomic_write_json(output_dir / CHECKPOINTS / OWNER_FILE, {"command": owner})
    with atomic_directory(final) as tmp:
        save_model(model, tokenizer, tmp)
        torch.save(trainer_state, tmp / STATE_FILE)
        hold("checkpoint-write", step)  # written, not yet renamed: a kill test's chosen point (bertbench.holds)
    for old in list_checkpoints(output_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(output_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    root = output_dir / CHECKPOINTS
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("step-*") if (p / STATE_FILE).exists() and (p / "model.safetensors").exists())


class CheckpointMismatch(ValueError):
    """A readable checkpoint of another model: an error of the user's, not corruption (no fallback)."""


def checkpoint_owner(path: Path) -> str | None:
    """The training command whose checkpoints DIR holds: "" when unknown, None when DIR has no checkpoints."""
    root = path / CHECKPOINTS
    if not root.is_dir() or not any(root.glob("step-*")):
        return None
    try:
        return str(json.loads((root / OWNER_FILE).read_text()).get("command", ""))
    except (OSError, ValueError, AttributeError):
        return ""


def remove_partial_checkpoints(output_dir: Path) -> list[Path]:
    """Delete what a killed checkpoint write left: `.step-*.tmp` (never renamed) and `.step-*.old-*` (replaced)."""
    root = output_dir / CHECKPOINTS
    leftovers = sorted(root.glob(".step-*")) if root.is_dir() else []
    for path in leftovers:
        shutil.rmtree(path, ignore_errors=True)
    return leftovers


def load_checkpoint(path: Path, model: BertHeadModel) -> dict[str, Any]:
    """Load weights into `model` (strictly) and return the trainer state."""
    state = load_file(str(path / "model.safetensors"))
    expected = model.state_dict()
    missing = [k for k in expected if k not in state and k != "cls.predictions.decoder.weight"]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in state if k in expected and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        raise CheckpointMismatch(
            f"checkpoint does not match the model (missing {missing[:3]}, extra {unexpected[:3]}, shape {wrong[:3]})"
        )
    model.load_state_dict(state, strict=False)
    model.tie_weights()
    return torch.load(path / STATE_FILE, map_location="cpu", weights_only=True)
