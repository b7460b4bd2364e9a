"""The training loop shared by fine-tuning and pretraining.

Exactness rules (GUIDE §4): the loss of an optimizer step is the mean over all of its samples, however they are
split across processes and accumulation micro-batches; the schedule's horizon comes from the config; a
checkpoint captures optimizer, scheduler, position and every RNG, so a resumed run retraces the same steps.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from bertbench.console import info, warn
from bertbench.errors import BertbenchError
from bertbench.holds import hold
from bertbench.io_utils import atomic_write_text
from bertbench.models import BertHeadModel, WordPieceTokenizer
from bertbench.progress import progress_bar
from bertbench.tasks.base import TrainData
from bertbench.training.checkpoint import (
    CheckpointMismatch,
    list_checkpoints,
    load_checkpoint,
    remove_partial_checkpoints,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from bertbench.training.config import TrainConfig
from bertbench.training.distributed import DistEnv
from bertbench.training.optim import build_optimizer, parameter_groups, warmup_decay_schedule
from bertbench.training.sampler import epoch_order, length_grouped_order, micro_batches, steps_per_epoch

# Config fields that do not change the trajectory: they may differ between a run and its resumption.
NON_TRAJECTORY_FIELDS = ("save_steps", "keep_checkpoints", "log_every", "eval_every_steps")


LossFn = Callable[[tuple[torch.Tensor, ...], dict[str, torch.Tensor]], torch.Tensor]
# on_evaluate(progress, model) -> metrics; progress has epoch, step, samples_seen, wall_s; metrics may hold
# "stop": True to end training after this evaluation (e.g. a target accuracy was reached).
EvalHook = Callable[[dict[str, Any], BertHeadModel], dict[str, Any]]


@dataclass
class TrainResult:
    """What the run did, for training.json."""

    global_step: int
    total_steps: int
    samples_seen: int
    train_s: float
    final_loss: float
    resumed_from_step: int | None
    eval_history: list[dict[str, Any]]
    wall_s: float = 0.0

    @property
    def samples_per_s(self) -> float:
        """Training throughput (samples per second of optimisation, evaluation and saving excluded)."""
        return self.samples_seen / self.train_s if self.train_s > 0 else float("nan")


class TrainingDiverged(BertbenchError):
    """A non-finite loss or gradient: training stops before the optimizer writes it into the weights."""

    def __init__(self, step: int, loss: float, grad_norm: float, detail: str = "") -> None:
        detail = detail or f"loss {loss}, gradient norm {grad_norm}"
        super().__init__(f"training diverged at step {step}: {detail}")
        self.step = step


def check_finite_weights(model: torch.nn.Module, step: int) -> None:
    """The last step may have written infinities into the weights: such a model is never saved as a success."""
    bad = [name for name, param in model.named_parameters() if not torch.isfinite(param).all()]
    if bad:
        raise TrainingDiverged(step, float("nan"), float("nan"), f"{len(bad)} weight tensors are not finite ({bad[0]})")


TRAINER_STATE_KEYS = ("global_step", "samples_seen", "train_s", "optimizer", "scheduler", "rng", "config", "world_size")


def _check_trainer_state(state: Any) -> None:
    """A trainer_state.pt that unpickled but is not one of ours counts as corrupt."""
    if not isinstance(state, dict) or any(key not in state for key in TRAINER_STATE_KEYS):
        raise ValueError("trainer_state.pt lacks the trainer's fields")


class Trainer:
    """Runs optimisation steps over a task's training data for any head model."""

    def __init__(
        self,
        model: BertHeadModel,
        tokenizer: WordPieceTokenizer,
        source: TrainData,
        loss_fn: LossFn,
        config: TrainConfig,
        output_dir: Path,
        dist: DistEnv,
        *,
        on_evaluate: EvalHook | None = None,
        show_progress: bool = True,
        owner: str = "",
        checkpoints: bool = True,
        label: str = "train",
    ) -> None:
        config.validate()
        self.owner = owner  # the training command, written beside its checkpoints
        self.checkpoints, self.label = checkpoints, label  # a short distillation keeps no checkpoints
        self.model, self.tokenizer, self.source, self.loss_fn = model, tokenizer, source, loss_fn
        self.config, self.output_dir, self.dist = config, output_dir, dist
        self.on_evaluate, self.show_progress = on_evaluate, show_progress
        self.parts = dist.world_size * config.grad_accum
        self.global_batch = config.batch_size * self.parts
        self.steps_per_epoch = steps_per_epoch(source.num_samples, self.global_batch, self.parts)
        if self.steps_per_epoch == 0:
            raise BertbenchError(
                f"training data has {source.num_samples} samples, fewer than one global batch needs "
                f"({self.parts} = processes x grad accumulation)"
            )
        self.total_steps = config.max_steps or config.epochs * self.steps_per_epoch
        warmup = (
            config.warmup_steps if config.warmup_steps is not None else round(config.warmup_ratio * self.total_steps)
        )
        self.warmup_steps = warmup
        self.optimizer = build_optimizer(
            config.optimizer, parameter_groups(model, config.weight_decay), config.learning_rate
        )
        # Loss scaling only matters for fp16; disabled it is a pass-through.
        self.scaler = torch.amp.GradScaler(enabled=config.amp == "fp16")
        self.scheduler = warmup_decay_schedule(self.optimizer, warmup, self.total_steps, config.decay_power)
        self.global_step = 0
        self.samples_seen = 0
        self.train_s = 0.0
        self.wall_s = 0.0  # training, evaluation and checkpoints since step 0 (carried across resumes)
        self.eval_history: list[dict[str, Any]] = []
        self.resumed_from: int | None = None
        self.resumed_path: Path | None = None

    # ---- checkpoints -------------------------------------------------------------------------------------

    def _trainer_state(self) -> dict[str, Any]:
        return {
            "global_step": self.global_step,
            "samples_seen": self.samples_seen,
            "train_s": self.train_s,
            "wall_s": self.wall_s,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": self.dist.gather(rng_state()),
            "config": asdict(self.config),
            "world_size": self.dist.world_size,
            "train_samples": self.source.num_samples,  # the data the trajectory ran on (a cut changes it)
            "eval_history": self.eval_history,
        }

    def save(self) -> None:
        """Checkpoint on rank 0 (all ranks must call: RNG states are gathered); nothing without checkpoints."""
        if not self.checkpoints:
            return
        state = self._trainer_state()
        if self.dist.is_main:
            save_checkpoint(
                self.output_dir,
                self.global_step,
                self.model,
                self.tokenizer,
                state,
                self.config.keep_checkpoints,
                self.owner,
            )
        self.dist.barrier()

    def resume(self) -> bool:
        """Continue from the newest checkpoint in the output directory; False when there is none."""
        # Rank 0 clears what a kill left half-written and chooses; every rank then loads rank 0's choice. Ranks
        # that listed the folder on their own raced the clean-up and resumed from different steps (found by a
        # two-node resume test: one rank finished while the other waited in DDP's first broadcast).
        chosen: tuple[Path, dict[str, Any]] | None = None
        if self.dist.is_main:
            remove_partial_checkpoints(self.output_dir)
            checkpoints = list_checkpoints(self.output_dir)
            chosen = self._newest_readable(checkpoints) if checkpoints else None
        path_text = self.dist.gather(str(chosen[0]) if chosen else None)[0]
        if path_text is None:
            return False
        if chosen is not None:
            path, state = chosen
        else:
            path = Path(path_text)
            try:
                state = load_checkpoint(path, self.model)
                _check_trainer_state(state)
            except Exception as exc:
                raise BertbenchError(
                    f"{path}: rank {self.dist.rank} cannot read the checkpoint rank 0 resumes from ({exc}); every "
                    "node must see the same output folder (a shared file system, or a copy of it)"
                ) from None
        self.resumed_path = path
        saved = {k: v for k, v in state["config"].items() if k not in NON_TRAJECTORY_FIELDS}
        asked = {k: v for k, v in asdict(self.config).items() if k not in NON_TRAJECTORY_FIELDS}
        changed = {k: (saved.get(k), v) for k, v in asked.items() if saved.get(k) != v}
        if state.get("train_samples", self.source.num_samples) != self.source.num_samples:  # older checkpoints lack it
            changed["training samples"] = (state["train_samples"], self.source.num_samples)
        if changed or state["world_size"] != self.dist.world_size:
            detail = ", ".join(f"{k}: {a} -> {b}" for k, (a, b) in changed.items()) or (
                f"world size {state['world_size']} -> {self.dist.world_size}"
            )
            raise BertbenchError(f"{path}: --resume with different training settings ({detail})")
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.global_step = state["global_step"]
        self.samples_seen = state["samples_seen"]
        self.train_s = state["train_s"]
        self.wall_s = state.get("wall_s", 0.0)
        self.eval_history = list(state.get("eval_history", []))
        set_rng_state(state["rng"][self.dist.rank])
        self.resumed_from = self.global_step
        self._truncate_log(self.global_step)
        return True

    def _newest_readable(self, checkpoints: list[Path]) -> tuple[Path, dict[str, Any]]:
        """The newest checkpoint that loads; a corrupt one (a torn disk, a bad copy) falls back to the one before."""
        problems = []
        for path in reversed(checkpoints):
            try:
                state = load_checkpoint(path, self.model)
                _check_trainer_state(state)
            except CheckpointMismatch as exc:
                raise BertbenchError(f"{path}: cannot resume ({exc})") from None
            except Exception as exc:  # unreadable: safetensors, unpickling and tensor errors all mean "corrupt"
                reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
                problems.append(f"{path.name} ({reason})")
                if self.dist.is_main:
                    warn(f"{path}: checkpoint is corrupt ({reason}); trying the one before it")
                continue
            return path, state
        raise BertbenchError(
            f"{self.output_dir / 'checkpoints'}: no readable checkpoint to resume from: {'; '.join(problems)}"
        )

    # ---- the loop ----------------------------------------------------------------------------------------

    def _seed(self) -> None:
        random.seed(self.config.seed)
        np.random.seed(self.config.seed)
        # Each rank draws its own dropout masks.
        torch.manual_seed(self.config.seed + self.dist.rank)

    def _to_device(self, batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        return {k: torch.from_numpy(v).to(self.dist.device) for k, v in batch.items()}

    def train(self, resume: bool = False) -> TrainResult:
        """Run until total_steps; checkpoint at epoch ends (and every save_steps)."""
        self._seed()
        self.model.to(self.dist.device)
        if resume and not self.resume():
            warn(f"--resume: no checkpoint in {self.output_dir / 'checkpoints'}; starting from step 0")
        elif resume and self.dist.is_main:
            info(f"resumed from step {self.global_step} ({self.resumed_path})")
        model = self.model.train()
        wrapped: torch.nn.Module = DistributedDataParallel(model) if self.dist.distributed else model
        wall_start, wall_before = time.perf_counter(), self.wall_s
        stopped = False
        loss_value = float("nan")
        start_step = self.global_step
        with progress_bar(
            self.label,
            total=self.total_steps - start_step,
            enabled=self.show_progress and self.dist.is_main,
            fields="loss {task.fields[loss]:.4f}  lr {task.fields[lr]:.2e}",
            initial={"loss": float("nan"), "lr": self.scheduler.get_last_lr()[0]},
        ) as advance:
            while self.global_step < self.total_steps and not stopped:
                epoch, step_in_epoch = divmod(self.global_step, self.steps_per_epoch)
                order = self._order(epoch)
                t0 = time.perf_counter()
                loss_value, step_samples = self._step(wrapped, order, step_in_epoch, epoch)
                self.train_s += time.perf_counter() - t0
                self.samples_seen += step_samples
                self.global_step += 1
                advance(1, loss=loss_value, lr=self.scheduler.get_last_lr()[0])
                if self.dist.is_main and (self.global_step % self.config.log_every == 0 or self.global_step == 1):
                    self._log(
                        {
                            "step": self.global_step,
                            "epoch": epoch + 1,
                            "loss": loss_value,
                            "lr": self.scheduler.get_last_lr()[0],
                            "samples_per_s": self.samples_seen / self.train_s,
                        }
                    )
                epoch_done = self.global_step % self.steps_per_epoch == 0 or self.global_step == self.total_steps
                every = self.config.eval_every_steps
                if self.on_evaluate is not None and (epoch_done or (every and self.global_step % every == 0)):
                    self.wall_s = wall_before + time.perf_counter() - wall_start
                    progress = {"epoch": epoch + 1, "step": self.global_step, "samples_seen": self.samples_seen}
                    model.eval()
                    metrics = {**progress, **self.on_evaluate({**progress, "wall_s": self.wall_s}, model)}
                    model.train()
                    stopped = bool(metrics.pop("stop", False))
                    self.eval_history.append(metrics)
                    if self.dist.is_main:
                        self._log({"eval": metrics})
                self.wall_s = wall_before + time.perf_counter() - wall_start
                if epoch_done or stopped or (self.config.save_steps and self.global_step % self.config.save_steps == 0):
                    self.save()
                    if self.dist.is_main and self.checkpoints:
                        hold("checkpoint", self.global_step)  # a kill test's chosen point (bertbench.holds)
        model.eval()
        check_finite_weights(self.model, self.global_step)
        return TrainResult(
            global_step=self.global_step,
            total_steps=self.total_steps,
            samples_seen=self.samples_seen,
            train_s=self.train_s,
            final_loss=loss_value,
            resumed_from_step=self.resumed_from,
            eval_history=self.eval_history,
            wall_s=self.wall_s,
        )

    def _order(self, epoch: int) -> np.ndarray:
        if self.config.group_by_length:
            return length_grouped_order(np.asarray(self.source.lengths), self.config.seed, epoch, self.global_batch)
        return epoch_order(self.source.num_samples, self.config.seed, epoch)

    def _autocast(self) -> Any:
        if self.config.amp == "fp32":
            return nullcontext()
        dtype = torch.bfloat16 if self.config.amp == "bf16" else torch.float16
        return torch.autocast(device_type=self.dist.device.split(":")[0], dtype=dtype)

    def _step(self, wrapped: torch.nn.Module, order: np.ndarray, step_in_epoch: int, epoch: int) -> tuple[float, int]:
        """One optimizer step; returns (mean loss over the step's samples, samples in the step)."""
        micro, total = micro_batches(
            order, step_in_epoch, self.global_batch, self.dist.world_size, self.config.grad_accum, self.dist.rank
        )
        # DDP averages gradients over ranks; scaling the summed loss by world/total makes that average the
        # gradient of the mean over all `total` samples, whatever the split.
        scale = self.dist.world_size / total
        loss_sum = 0.0
        for m, rows in enumerate(micro):
            batch = self._to_device(self.source.training_batch(rows, epoch))
            last = m == len(micro) - 1
            sync = nullcontext() if last or not self.dist.distributed else wrapped.no_sync()
            with sync:
                with self._autocast():
                    outputs = wrapped(**{k: batch[k] for k in self.model.input_names if k in batch})
                    per_sample = self.loss_fn(outputs, batch).float()
                self.scaler.scale(per_sample.sum() * scale).backward()
            loss_sum += float(per_sample.detach().sum())
        self.scaler.unscale_(self.optimizer)
        # clip_grad_norm_ with an infinite bound clips nothing but still returns the norm the check needs.
        bound = self.config.max_grad_norm if self.config.max_grad_norm > 0 else float("inf")
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), bound))
        loss = self.dist.sum(loss_sum) / total
        # FP16's scaler skips steps with overflowing gradients on purpose; elsewhere a non-finite value means
        # the run has diverged, and the optimizer must not write it into the weights.
        if self.config.amp != "fp16" and not (math.isfinite(loss) and math.isfinite(grad_norm)):
            self.optimizer.zero_grad(set_to_none=True)
            raise TrainingDiverged(self.global_step + 1, loss, grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss, total

    # ---- log ---------------------------------------------------------------------------------------------

    @property
    def log_path(self) -> Path:
        """JSON-lines training log (rank 0)."""
        return self.output_dir / "train_log.jsonl"

    def _log(self, entry: dict[str, Any]) -> None:
        with open(self.log_path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")

    def _truncate_log(self, step: int) -> None:
        """Drop log lines past the checkpoint a run resumes from (those steps are redone)."""
        if not self.dist.is_main or not self.log_path.exists():
            return
        kept = []
        for line in self.log_path.read_text().splitlines():
            entry = json.loads(line)
            if entry.get("step", entry.get("eval", {}).get("step", 0)) <= step:
                kept.append(line)
        atomic_write_text(self.log_path, "".join(f"{line}\n" for line in kept))
