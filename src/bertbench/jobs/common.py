"""Set-up shared by the jobs: output directories, precision checks, data problems."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path
from typing import Any

from bertbench.console import warn
from bertbench.errors import BertbenchError, DataProblemsError
from bertbench.hardware import has_native_bf16
from bertbench.runtimes.accepts import device_kind
from bertbench.training.checkpoint import CHECKPOINTS, checkpoint_owner
from bertbench.training.distributed import DistEnv

# `bertbench run` marks the folders of its cases with this file (jobs.case_folders); it does not make a folder
# non-empty, and --overwrite never removes it.
CASE_MARK = ".bertbench-case.json"

# What a training run writes into its directory; `--overwrite` of that training clears these and nothing else.
TRAINING_OUTPUTS = (
    CHECKPOINTS,
    "eval",
    "train_log.jsonl",
    "metrics.json",
    "initial_head.safetensors",
    "model.safetensors",
    "config.json",
)


def prepare_output_dir(
    path: str | Path, overwrite: bool = False, resume: bool = False, training: str | None = None
) -> Path:
    """Check the overwrite policy (check_output_policy), clear a retrained directory, create DIR writable."""
    path = Path(path)
    check_output_policy(path, overwrite, resume, training)
    if overwrite and not resume and training:
        # Stale checkpoints and results of an earlier run must never be resumed into or mixed with a new one.
        for name in TRAINING_OUTPUTS:
            stale = path / name
            if stale.is_dir():
                shutil.rmtree(stale)
            else:
                stale.unlink(missing_ok=True)
    _make_writable_dir(path)
    return path


def check_output_policy(path: Path, overwrite: bool, resume: bool, training: str | None) -> None:
    """Refuse what would lose or mix results; reads only.

    A non-empty DIR is refused unless --overwrite or --resume. `training` names the training command and task
    ("finetune squad") when the caller is one: only that training may replace a directory that holds checkpoints
    (the checkpoints of another run are never deleted by an eval's or a bench's --overwrite). --resume needs a
    checkpoint to resume from in a non-empty directory, so stale outputs are never mixed with a fresh run's.
    """
    if path.exists() and not path.is_dir():
        raise BertbenchError(f"{path}: output path exists and is not a directory")
    non_empty = path.is_dir() and any(p.name != CASE_MARK for p in path.iterdir())
    if non_empty and not (overwrite or resume):
        hint = "--resume to continue or --overwrite" if training else "--overwrite to replace its results"
        raise BertbenchError(f"{path}: output directory is not empty (pass {hint})")
    owner = checkpoint_owner(path)
    if non_empty and owner is not None and not resume and owner not in ("", training):
        doer = f"`{training}`" if training else "this command"
        raise BertbenchError(
            f"{path}: holds the checkpoints of `{owner}`; {doer} will not overwrite them (choose another --output-dir)"
        )
    if non_empty and owner == "" and not training:
        raise BertbenchError(f"{path}: holds training checkpoints; this command will not overwrite them")
    if resume and non_empty and owner is None:
        raise BertbenchError(
            f"{path}: --resume, but the directory holds no checkpoint to resume from (pass --overwrite to start over)"
        )


def _make_writable_dir(path: Path) -> None:
    """mkdir -p, then prove that a file can be created there: fail before any work, not after it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except FileExistsError:
        raise BertbenchError(f"{path}: a parent of the output directory is a file") from None
    except NotADirectoryError:
        raise BertbenchError(f"{path}: a parent of the output directory is not a directory") from None
    except OSError as exc:
        raise BertbenchError(f"{path}: cannot write to the output directory ({exc.strerror or exc})") from None


def announce_model(loaded: Any, given: str, seed: int, use: str = "its accuracy means nothing") -> None:
    """The same two lines wherever a model is loaded: random weights (a size preset, or a model pruned from one),
    and heads freshly initialised because the checkpoint lacks them."""
    if loaded.describe()["random_weights"]:
        warn(f"model {given} has random weights: {use} (speed figures are fine)")
    if loaded.fresh_head:
        warn(f"{', '.join(loaded.fresh_parameters)} of {given} freshly initialised (seed {seed}): an untrained head")


def check_device(device: str) -> None:
    """A CUDA device this machine has (one line before any work when it has none)."""
    if device_kind(device) != "cuda":
        return
    import torch

    if not torch.cuda.is_available():
        raise BertbenchError(f"--device {device}: no CUDA device is available")
    index = int(device.partition(":")[2] or 0)
    if index >= torch.cuda.device_count():
        raise BertbenchError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")


def check_training_precision(amp: str, device: str) -> None:
    """FP16 mixed precision needs CUDA (loss scaling on GPU); BF16 on a CPU runs but is emulated and slow."""
    if amp == "fp16" and not device.startswith("cuda"):
        raise BertbenchError("--precision fp16: mixed-precision training in FP16 needs a CUDA device")
    if amp == "bf16" and not device.startswith("cuda") and not has_native_bf16():
        warn("--precision bf16 on this CPU: no native BF16, so autocast is emulated and slow")


def check_output_dir(path: Path, dist: DistEnv, overwrite: bool, resume: bool, training: str) -> Path:
    """prepare_output_dir for a (possibly distributed) training job: every rank checks, rank 0 acts."""
    check_output_policy(path, overwrite, resume, training)  # on every rank, so that all of them stop together
    dist.barrier()
    if dist.is_main:
        prepare_output_dir(path, overwrite=overwrite, resume=resume, training=training)
    dist.barrier()
    return path


def announce_data_problems(dataset: Any, strict: bool, speak: bool = True) -> None:
    """One terminal line for a data file's skipped or suspect rows (counts by kind, the first locations);
    with --strict-data the same line is an error (exit 2). metrics.json keeps the counts either way."""
    facts = dataset.describe()
    counts: dict[str, int] = facts.get("data_problems") or {}
    if not counts:
        return
    kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items(), key=lambda item: -item[1]))
    first = "; ".join(facts.get("data_problem_locations", [])[:3])
    line = f"{facts.get('data', 'data')}: {sum(counts.values())} problem rows ({kinds}); first: {first}"
    if strict:
        raise DataProblemsError(f"{line} (--strict-data)")
    if speak:
        warn(f"{line}; unusable rows skipped (data_problems in metrics.json; --strict-data makes them an error)")


def check_new_file(path: Path, overwrite: bool, inputs: tuple[Path, ...] = (), ours: str | None = None) -> None:
    """A file a command is about to write: never one of its inputs; an existing file only with --overwrite, or
    when it carries `ours` (a mark in its first kilobytes saying this tool wrote it)."""
    for source in inputs:
        if source.exists() and path.exists() and path.resolve() == source.resolve():
            raise BertbenchError(f"{path}: is one of the inputs; choose another output file")
    if path.is_dir():
        raise BertbenchError(f"{path}: is a directory, not a file")
    if not path.exists() or overwrite:
        return
    if ours is not None:
        with contextlib.suppress(OSError), open(path, "rb") as handle:
            if ours.encode() in handle.read(4096):
                return
    raise BertbenchError(f"{path}: exists and this command did not write it (pass --overwrite to replace it)")
