"""Command line: parse, build a config, call the library. Every command is callable in-process via main(argv)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NoReturn

from bertbench import __version__
from bertbench.errors import BertbenchError, UsageError

TASK_CHOICES = ("squad",)
BACKENDS = ("torch",)
PRECISIONS = ("fp32", "bf16", "fp16", "int8")
PADDINGS = ("sorted", "longest", "fixed")


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line as one UsageError line instead of usage text + exit."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def _add_model(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="HF directory, hub id, 'minilm-l6' or a preset (bert-tiny…)")
    p.add_argument("--allow-pickle", action="store_true", help="allow loading pytorch_model.bin (pickle)")
    p.add_argument("--seed", type=int, default=42, help="seed for fresh heads and training")


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output-dir", type=Path, required=True)
    p.add_argument("--overwrite", action="store_true", help="replace results in a non-empty output directory")
    p.add_argument("--threads", type=_positive_int, default=None, help="compute threads (default: available cores)")
    p.add_argument("--cache-dir", type=Path, default=None, help="default ${XDG_CACHE_HOME:-~/.cache}/bertbench")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _add_task_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-seq-length", type=_positive_int, default=384)
    p.add_argument("--doc-stride", type=_positive_int, default=128, help="step between window starts (SQuAD)")
    p.add_argument("--max-query-length", type=_positive_int, default=64)
    p.add_argument("--n-best", type=_positive_int, default=20)
    p.add_argument("--max-answer-length", type=_positive_int, default=30)
    p.add_argument("--null-score-threshold", type=float, default=0.0, help="SQuAD v2.0 null-answer threshold")


def build_parser() -> argparse.ArgumentParser:
    """The full command-line grammar."""
    parser = _Parser(prog="bertbench", description="Fine-tune, evaluate and benchmark BERT models.")
    parser.add_argument("--version", action="version", version=f"bertbench {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    ev = commands.add_parser("eval", help="accuracy mode: score a model on a task's data")
    ev.add_argument("task", choices=TASK_CHOICES)
    _add_model(ev)
    ev.add_argument("--data", type=Path, required=True)
    _add_common(ev)
    ev.add_argument("--backend", choices=BACKENDS, default="torch")
    ev.add_argument("--precision", choices=PRECISIONS, default="fp32")
    ev.add_argument("--batch-size", type=_positive_int, default=32)
    ev.add_argument("--padding", choices=PADDINGS, default="sorted", help="batch padding (results never change)")
    ev.add_argument("--max-samples", type=_positive_int, default=None, help="SQuAD: first N questions")
    _add_task_options(ev)

    ft = commands.add_parser("finetune", help="fine-tune a model on a task")
    ft.add_argument("task", choices=TASK_CHOICES)
    _add_model(ft)
    ft.add_argument("--train", type=Path, required=True)
    ft.add_argument("--eval", type=Path, default=None, help="evaluate on this file after each epoch")
    _add_common(ft)
    ft.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --output-dir")
    ft.add_argument("--learning-rate", "--lr", type=float, default=5e-5)
    ft.add_argument("--epochs", type=_positive_int, default=2)
    ft.add_argument("--max-steps", type=_positive_int, default=None, help="stop after N optimizer steps")
    ft.add_argument("--batch-size", type=_positive_int, default=16, help="per process")
    ft.add_argument("--grad-accum", type=_positive_int, default=1)
    ft.add_argument("--warmup-ratio", type=float, default=0.1)
    ft.add_argument("--warmup-steps", type=int, default=None)
    ft.add_argument("--weight-decay", type=float, default=0.01)
    ft.add_argument("--max-grad-norm", type=float, default=1.0)
    ft.add_argument("--save-steps", type=int, default=0, help="also checkpoint every N steps (0: epoch ends only)")
    ft.add_argument("--keep-checkpoints", type=int, default=2)
    ft.add_argument("--log-every", type=_positive_int, default=10)
    ft.add_argument("--eval-batch-size", type=_positive_int, default=64)
    ft.add_argument("--max-train-samples", type=_positive_int, default=None, help="SQuAD: first N questions")
    ft.add_argument("--max-eval-samples", type=_positive_int, default=None)
    ft.add_argument("--dist-timeout", type=float, default=120.0, help="process-group timeout (s) under torchrun")
    ft.add_argument("--dropout", type=float, default=None, help="override all dropout rates (0 for parity runs)")
    _add_task_options(ft)
    return parser


def _task_options(args: argparse.Namespace):
    from bertbench.tasks.options import TaskOptions

    return TaskOptions(
        max_seq_length=args.max_seq_length,
        doc_stride=args.doc_stride,
        max_query_length=args.max_query_length,
        n_best=args.n_best,
        max_answer_length=args.max_answer_length,
        null_score_threshold=args.null_score_threshold,
    )


def _eval(args: argparse.Namespace) -> None:
    from bertbench.jobs.evaluate import EvalConfig, run_eval

    run_eval(
        EvalConfig(
            task=args.task,
            model=args.model,
            data=args.data,
            output_dir=args.output_dir,
            backend=args.backend,
            precision=args.precision,
            device=args.device,
            batch_size=args.batch_size,
            padding=args.padding,
            threads=args.threads,
            cache_dir=args.cache_dir,
            max_samples=args.max_samples,
            seed=args.seed,
            overwrite=args.overwrite,
            allow_pickle=args.allow_pickle,
            show_progress=not args.no_progress,
            task_options=_task_options(args),
        )
    )


def _finetune(args: argparse.Namespace) -> None:
    from bertbench.jobs.finetune import FinetuneConfig, run_finetune
    from bertbench.training.loop import TrainConfig

    train = TrainConfig(
        learning_rate=args.learning_rate,
        epochs=args.epochs,
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        warmup_ratio=args.warmup_ratio,
        warmup_steps=args.warmup_steps,
        weight_decay=args.weight_decay,
        max_grad_norm=args.max_grad_norm,
        seed=args.seed,
        save_steps=args.save_steps,
        keep_checkpoints=args.keep_checkpoints,
        log_every=args.log_every,
    )
    run_finetune(
        FinetuneConfig(
            task=args.task,
            model=args.model,
            train=args.train,
            eval=args.eval,
            output_dir=args.output_dir,
            train_config=train,
            task_options=_task_options(args),
            threads=args.threads,
            cache_dir=args.cache_dir,
            max_train_samples=args.max_train_samples,
            max_eval_samples=args.max_eval_samples,
            eval_batch_size=args.eval_batch_size,
            device=args.device,
            resume=args.resume,
            overwrite=args.overwrite,
            allow_pickle=args.allow_pickle,
            dist_timeout_s=args.dist_timeout,
            dropout=args.dropout,
            show_progress=not args.no_progress,
        )
    )


COMMANDS = {"eval": _eval, "finetune": _finetune}


def main(argv: list[str] | None = None) -> int:
    """Run one command; bad input ends with one line on stderr and a non-zero return code."""
    try:
        args = build_parser().parse_args(argv)
        COMMANDS[args.command](args)
    except BertbenchError as exc:
        print(f"bertbench: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("bertbench: interrupted", file=sys.stderr)
        return 130
    return 0
