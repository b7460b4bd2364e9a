"""`bertbench finetune`: train a task head (and the encoder) on a task's training file, evaluating each epoch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bertbench.cache import Cache
from bertbench.configs import FinetuneConfig
from bertbench.console import info
from bertbench.jobs.training_job import TrainingContext, run_training
from bertbench.models import LoadedModel
from bertbench.results.record import RunRecord
from bertbench.tasks.base import EvalData, TrainData
from bertbench.tasks.labels import head_labels
from bertbench.tasks.registry import get_task
from bertbench.training.loop import Trainer, TrainResult


class FinetuneSpec:
    """Fine-tuning: evaluation after each epoch into DIR/eval/epoch-N/, the last one's metrics in the record."""

    command = "finetune"
    eval_every_samples = None

    def __init__(self, config: FinetuneConfig) -> None:
        self.config, self.training, self.task = config, config.training, get_task(config.task)
        self.table_keys = (
            "model",
            "num_train_samples",
            "steps",
            "final_loss",
            "train_samples_per_s",
            *self.task.metrics,
            "eval_samples_per_s",
            "wall_s",
        )

    def prepare_model(self, loaded: LoadedModel) -> None:
        """Nothing to adjust: the task head comes from the checkpoint or is fresh."""

    def data_files(self) -> tuple[list[Path], list[Path], str, str]:
        """The training file and the evaluated one."""
        return [self.config.train], [self.config.eval] if self.config.eval else [], "--train", "--eval"

    def load_data(self, loaded: LoadedModel, cache: Cache) -> tuple[TrainData, EvalData | None]:
        """The training file's samples and the evaluation file's."""
        config, options = self.config, self.config.task_options
        labels = head_labels(self.task, loaded.model.config)
        train = self.task.load_train_data(
            config.train,
            loaded.tokenizer,
            options,
            cache,
            self.training.seed,
            max_examples=config.max_train_samples,
            labels=labels,
        )
        if config.eval is None:
            return train, None
        return train, self.task.load_eval_data(
            config.eval, loaded.tokenizer, options, cache, max_examples=config.max_eval_samples, labels=labels
        )

    def evaluates_at_start(self) -> bool:
        """Fine-tuning scores at epoch ends only."""
        return False

    def on_run_start(self, ctx: TrainingContext, trainer: Trainer) -> None:
        """Nothing to log: fine-tuning speaks no MLPerf Training."""

    def on_evaluation_start(self, progress: dict[str, Any], ctx: TrainingContext) -> None:
        """Nothing to log."""

    def on_run_end(self, result: TrainResult | None, ctx: TrainingContext) -> None:
        """Nothing to log."""

    def on_evaluation(
        self, progress: dict[str, Any], predictions: Any, metrics: dict[str, Any], ctx: TrainingContext
    ) -> dict[str, Any]:
        """Write the epoch's predictions and metrics; the headline goes into the training history."""
        if not ctx.dist.is_main:
            return {}
        epoch, step = progress["epoch"], progress["step"]
        epoch_dir = ctx.output_dir / "eval" / f"epoch-{epoch}"
        epoch_dir.mkdir(parents=True, exist_ok=True)
        self.task.write_predictions(predictions, epoch_dir, ctx.eval_data)
        RunRecord(
            "eval",
            {
                "task": self.config.task,
                "model": str(ctx.output_dir),
                "epoch": epoch,
                "step": step,
                "backend": "torch",
                "precision": "fp32",
                **ctx.eval_data.describe(),
                **self.config.task_options.as_dict(),
                "threads": ctx.threads,
                "world_size": ctx.dist.world_size,
            },
            metrics,
        ).write(epoch_dir)
        headline = {k: metrics[k] for k in self.task.metrics if isinstance(metrics.get(k), int | float)}
        info(f"epoch {epoch} (step {step}): " + ", ".join(f"{k} {v:.4f}" for k, v in headline.items()))
        return {**headline, "eval_samples_per_s": metrics["eval_samples_per_s"]}

    def record_config(self, ctx: TrainingContext) -> dict[str, Any]:
        """Data and task options of the run."""
        train_facts = ctx.train_data.describe()
        return {
            "train_data": str(self.config.train),
            "eval_data": str(self.config.eval) if self.config.eval else None,
            "num_train_examples": train_facts["num_examples"],
            "train_data_problems": train_facts.get("data_problems", {}),
            "train_data_problem_locations": train_facts.get("data_problem_locations", []),
            "num_train_samples": ctx.train_data.num_samples,
            **self.config.task_options.as_dict(),
        }

    def record_metrics(self, result: TrainResult, ctx: TrainingContext) -> dict[str, Any]:
        """The last evaluation's headline."""
        final = result.eval_history[-1] if result.eval_history else {}
        return {k: v for k, v in final.items() if k not in ("epoch", "step", "samples_seen")}

    def report(self, record: dict[str, Any]) -> None:
        """The table says it all."""


def run_finetune(config: FinetuneConfig) -> RunRecord | None:
    """Fine-tune, evaluate after each epoch, save the model in Hugging Face format; returns the record."""
    return run_training(FinetuneSpec(config))
