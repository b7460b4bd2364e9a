"""`bertbench pretrain`: masked-LM pretraining with evaluation every N samples and a target accuracy.

Time to train is measured as MLPerf measures it: from the start of training to the evaluation that first reaches
the target, evaluations included (model building and data preparation excluded). A run that ends without reaching
its target records `target_reached: false` and no time to train. Rank 0 also writes MLPerf Training's own log
(results.mlperf_training), which MLCommons' compliance checker reads.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from bertbench.cache import Cache
from bertbench.configs import PretrainConfig
from bertbench.console import info, warn
from bertbench.errors import BertbenchError
from bertbench.jobs.training_job import TrainingContext, run_training
from bertbench.models import LoadedModel
from bertbench.models.loading import init_weights_from
from bertbench.results.mlperf_training import CLOSED_TARGET, LOG_NAME, MlperfUnavailable, TrainingLog, now_ms
from bertbench.results.record import RunRecord
from bertbench.tasks.base import EvalData, TrainData
from bertbench.tasks.mlm.task import MlmTask
from bertbench.training.loop import Trainer, TrainResult


class PretrainSpec:
    """Masked-LM (+NSP) pretraining: evaluation on a fixed held-out set every N samples, stop at the target."""

    command = "pretrain"
    table_keys = (
        "model",
        "num_train_sequences",
        "steps",
        "samples_seen",
        "final_loss",
        "train_samples_per_s",
        "initial_mlm_accuracy",
        "mlm_accuracy",
        "best_mlm_accuracy",
        "target_mlm_accuracy",
        "target_reached",
        "time_to_train_s",
        "wall_s",
    )

    def __init__(self, config: PretrainConfig) -> None:
        if not config.eval_corpus and config.target_mlm_accuracy is not None:
            raise BertbenchError("--target-mlm-accuracy needs --eval-corpus (held-out documents to measure it on)")
        self.config, self.training = config, config.training
        self.task = MlmTask(nsp=config.nsp)
        self.eval_every_samples = config.eval_every_samples
        self.init_start_ms = now_ms()  # MLPerf's initialisation begins with the job
        self.mllog: TrainingLog | None = None
        self.mlperf_facts: dict[str, Any] = {}

    def prepare_model(self, loaded: LoadedModel) -> None:
        """--init-from replaces the weights (shapes checked); what the checkpoint lacks stays fresh."""
        if self.config.init_from:
            described_by = f"the config of --model {self.config.model}"
            loaded.fresh_parameters = init_weights_from(
                loaded.model, self.config.init_from, described_by, self.config.allow_pickle, self.config.cache_dir
            )

    def data_files(self) -> tuple[list[Path], list[Path], str, str]:
        """The corpus files and the held-out ones."""
        return list(self.config.corpus), list(self.config.eval_corpus), "--corpus", "--eval-corpus"

    def load_data(self, loaded: LoadedModel, cache: Cache) -> tuple[TrainData, EvalData | None]:
        """Packed corpus sequences, and the fixed evaluation set of the held-out corpus."""
        config = self.config
        train = self.task.load_train_data(
            config.corpus, loaded.tokenizer, config.task_options, cache, self.training.seed
        )
        if not config.eval_corpus:
            return train, None
        return train, self.task.load_eval_data(
            config.eval_corpus, loaded.tokenizer, config.task_options, cache, max_examples=config.eval_samples
        )

    def evaluates_at_start(self) -> bool:
        """The curve starts at step 0."""
        return True

    def on_evaluation(
        self, progress: dict[str, Any], predictions: Any, metrics: dict[str, Any], ctx: TrainingContext
    ) -> dict[str, Any]:
        """Every rank learns rank 0's accuracy, so that all stop together at the target."""
        accuracy = ctx.dist.gather(metrics.get("mlm_accuracy"))[0]
        if ctx.dist.is_main:
            info(f"step {progress['step']} ({progress['samples_seen']} samples): mlm_accuracy {accuracy:.4f}")
        out = {"mlm_accuracy": accuracy, "wall_s": progress.get("wall_s", 0.0)}
        target = self.config.target_mlm_accuracy
        if target is not None and accuracy >= target:
            out["stop"] = True
        if self.mllog is not None and progress["step"] > 0:
            self.mllog.evaluated(progress["samples_seen"], accuracy)
            if not out.get("stop"):
                self.mllog.block_started(progress["samples_seen"], self._block_samples(ctx))
        return out

    # ---- MLPerf Training's log (rank 0) ----------------------------------------------------------------------

    def _block_samples(self, ctx: TrainingContext) -> int:
        return self.config.eval_every_samples or ctx.train_data.num_samples

    def on_run_start(self, ctx: TrainingContext, trainer: Trainer) -> None:
        """Initialisation ends (model, data, the first evaluation); MLPerf's timed run begins."""
        if not ctx.dist.is_main:
            return
        if self.config.resume:  # MLPerf times a run from its start: a resumed one has no MLPerf log of its own
            info("a resumed run writes no MLPerf Training log (MLPerf times a run from its start)")
            (ctx.output_dir / LOG_NAME).unlink(missing_ok=True)  # the interrupted start's log ends nowhere
            return
        try:
            self.mllog = TrainingLog(ctx.output_dir / LOG_NAME, self.init_start_ms)
        except MlperfUnavailable as exc:
            info(f"no MLPerf Training log ({exc})")
            return
        config, training = self.config, self.training
        target = config.target_mlm_accuracy
        closed = target == CLOSED_TARGET and training.optimizer == "lamb"
        env = ctx.environment
        self.mllog.submission(
            config.mlperf_submitter, f"{env.get('hostname')} ({env.get('cpu_model')})", "closed" if closed else "open"
        )
        values: dict[str, Any] = {
            "seed": training.seed,
            "global_batch_size": training.batch_size * training.grad_accum * ctx.dist.world_size,
            "gradient_accumulation_steps": training.grad_accum,
            "max_sequence_length": config.task_options.max_seq_length,
            "opt_name": training.optimizer,
            "opt_base_learning_rate": training.learning_rate,
            "opt_learning_rate_training_steps": trainer.total_steps,
            "opt_learning_rate_warmup_steps": trainer.warmup_steps,
            "num_warmup_steps": trainer.warmup_steps,
            "start_warmup_step": 0,
        }
        if training.optimizer == "lamb":  # training.lamb's defaults: betas (0.9, 0.999), eps 1e-6
            values.update(
                {
                    "opt_lamb_beta_1": 0.9,
                    "opt_lamb_beta_2": 0.999,
                    "opt_lamb_epsilon": 1e-6,
                    "opt_lamb_weight_decay_rate": training.weight_decay,
                    "opt_lamb_learning_rate_decay_poly_power": training.decay_power,
                }
            )
        self.mllog.hyperparameters(values)
        self.mllog.run_started()
        self.mllog.block_started(0, self._block_samples(ctx))

    def on_evaluation_start(self, progress: dict[str, Any], ctx: TrainingContext) -> None:
        """An evaluation during the run: the block of training samples ends."""
        if self.mllog is not None and progress["step"] > 0:
            self.mllog.evaluation_started(progress["samples_seen"])

    def on_run_end(self, result: TrainResult | None, ctx: TrainingContext) -> None:
        """MLPerf's run ends: success when the target was reached, aborted otherwise (or without a result); its
        time to train."""
        if self.mllog is None:
            return
        target = self.config.target_mlm_accuracy
        history = result.eval_history if result is not None else []
        reached = target is not None and any(e.get("mlm_accuracy", -1) >= target for e in history)
        eval_samples = ctx.eval_data.num_samples if ctx.eval_data is not None else 0
        samples = result.samples_seen if result is not None else self.mllog.block_from
        seconds = self.mllog.run_stopped(samples, eval_samples, reached)
        self.mllog = None
        self.mlperf_facts = {"mlperf_training_log": str(ctx.output_dir / LOG_NAME), "mlperf_run_s": seconds}

    def record_config(self, ctx: TrainingContext) -> dict[str, Any]:
        """Corpora, sequence and masking settings."""
        config = self.config
        return {
            "init_from": config.init_from,
            "corpus": [str(p) for p in config.corpus],
            "eval_corpus": [str(p) for p in config.eval_corpus],
            "num_train_sequences": ctx.train_data.num_samples,
            "num_eval_sequences": ctx.eval_data.num_samples if ctx.eval_data is not None else 0,
            "max_seq_length": config.task_options.max_seq_length,
            **{f"masking_{k}": v for k, v in asdict(config.task_options.masking).items()},
            "nsp": config.nsp,
            "eval_every_samples": config.eval_every_samples,
        }

    def record_metrics(self, result: TrainResult, ctx: TrainingContext) -> dict[str, Any]:
        """The accuracy curve's summary and time to train."""
        target = self.config.target_mlm_accuracy
        curve = [e for e in result.eval_history if "mlm_accuracy" in e]
        reached = next((e for e in curve if target is not None and e["mlm_accuracy"] >= target), None)
        return {
            "target_mlm_accuracy": target,
            "target_reached": reached is not None if target is not None else None,
            "time_to_train_s": reached["wall_s"] if reached else None,
            "samples_to_target": reached["samples_seen"] if reached else None,
            "initial_mlm_accuracy": ctx.initial_metrics.get("mlm_accuracy"),
            "mlm_accuracy": curve[-1]["mlm_accuracy"] if curve else None,
            "best_mlm_accuracy": max((e["mlm_accuracy"] for e in curve), default=None),
            **self.mlperf_facts,
        }

    def report(self, record: dict[str, Any]) -> None:
        """Say whether the target was reached, and when."""
        target = self.config.target_mlm_accuracy
        if target is not None and not record["target_reached"]:
            warn(f"target mlm_accuracy {target} NOT reached (best {record['best_mlm_accuracy']})")
        elif record.get("target_reached"):
            info(
                f"target mlm_accuracy {target} reached after {record['samples_to_target']} samples, "
                f"{record['time_to_train_s']:.1f} s"
            )


def run_pretrain(config: PretrainConfig) -> RunRecord | None:
    """Pretrain, evaluate every N samples, stop at the target; saves the model and metrics.json."""
    return run_training(PretrainSpec(config))
