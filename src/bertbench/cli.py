"""Command line: parse, build a config, call the library. Every command is callable in-process via main(argv)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, NoReturn

from bertbench import __version__
from bertbench.errors import BertbenchError, UsageError

EVAL_TASKS = ("squad", "sst2", "mlm")
FINETUNE_TASKS = ("squad", "sst2")
DEFAULT_MAX_SEQ_LENGTH = {"squad": 384, "sst2": 128, "mlm": 128}
BACKENDS = ("torch", "onnxruntime", "ort")  # "ort" is an alias
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


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1")
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
    p.add_argument("--max-seq-length", type=_positive_int, default=None, help="default: squad 384, sst2/mlm 128")
    p.add_argument("--doc-stride", type=_positive_int, default=128, help="SQuAD: step between window starts")
    p.add_argument("--max-query-length", type=_positive_int, default=64)
    p.add_argument("--n-best", type=_positive_int, default=20)
    p.add_argument("--max-answer-length", type=_positive_int, default=30)
    p.add_argument("--null-score-threshold", type=float, default=0.0, help="SQuAD v2.0 null-answer threshold")


def _add_masking(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mask-prob", type=_fraction, default=0.15)
    p.add_argument("--max-predictions-per-seq", type=_positive_int, default=20)
    p.add_argument("--whole-word-masking", action="store_true")


def _add_training(p: argparse.ArgumentParser, lr: float, epochs: int, batch_size: int) -> None:
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --output-dir")
    p.add_argument("--learning-rate", "--lr", type=float, default=lr)
    p.add_argument("--epochs", type=_positive_int, default=epochs)
    p.add_argument("--max-steps", type=_positive_int, default=None, help="stop after N optimizer steps")
    p.add_argument("--batch-size", type=_positive_int, default=batch_size, help="per process")
    p.add_argument("--grad-accum", type=_positive_int, default=1)
    p.add_argument("--warmup-ratio", type=float, default=0.1)
    p.add_argument("--warmup-steps", type=int, default=None)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--max-grad-norm", type=float, default=1.0)
    p.add_argument("--save-steps", type=int, default=0, help="also checkpoint every N steps (0: epoch ends only)")
    p.add_argument("--keep-checkpoints", type=int, default=2)
    p.add_argument("--log-every", type=_positive_int, default=10)
    p.add_argument("--eval-batch-size", type=_positive_int, default=64)
    p.add_argument("--dist-timeout", type=float, default=120.0, help="process-group timeout (s) under torchrun")
    p.add_argument("--dropout", type=float, default=None, help="override all dropout rates (0 for parity runs)")
    p.add_argument("--group-by-length", action="store_true", help="batch samples of similar length (less padding)")
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32", help="mixed precision (AMP)")


def _add_runtime_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quantization", choices=("dynamic", "static"), default="dynamic", help="INT8 mode")
    p.add_argument("--calibration-data", type=Path, default=None, help="training data for static INT8 / fallback")
    p.add_argument("--calibration-samples", type=_positive_int, default=1000)
    p.add_argument("--calibration-method", choices=("minmax", "entropy", "percentile"), default="minmax")
    p.add_argument(
        "--per-channel", action=argparse.BooleanOptionalAction, default=True, help="per-channel INT8 weight scales"
    )
    p.add_argument(
        "--reduce-range",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="7-bit INT8 weights (ORT's advice for u8s8 kernels without VNNI; cost 8 F1 on MiniLM SQuAD here)",
    )
    p.add_argument("--compile", action="store_true", help="torch.compile the model (torch backend)")
    p.add_argument(
        "--provider",
        action="append",
        choices=("cpu", "cuda", "tensorrt"),
        default=None,
        help="onnxruntime execution provider (repeatable; default from --device)",
    )
    p.add_argument("--export-dir", type=Path, default=None, help="also write the prepared ONNX artifact here")
    p.add_argument("--accuracy-target", type=_fraction, default=0.99, help="relative to FP32 (MLPerf bert-99)")
    p.add_argument("--strict", action="store_true", help="exit non-zero when the accuracy target is missed")
    p.add_argument(
        "--int8-fallback",
        action="store_true",
        help="keep the most INT8-sensitive layers in FP32 until the target is met (tuned on --calibration-data)",
    )
    p.add_argument("--tuning-samples", type=_positive_int, default=200)


def build_parser() -> argparse.ArgumentParser:
    """The full command-line grammar."""
    parser = _Parser(prog="bertbench", description="Fine-tune, pretrain, evaluate and benchmark BERT models.")
    parser.add_argument("--version", action="version", version=f"bertbench {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    ev = commands.add_parser("eval", help="accuracy mode: score a model on a task's data")
    ev.add_argument("task", choices=EVAL_TASKS)
    _add_model(ev)
    ev.add_argument("--data", type=Path, required=True, help="SQuAD JSON, SST-2 TSV, or a text corpus (mlm)")
    _add_common(ev)
    ev.add_argument("--backend", choices=BACKENDS, default="torch")
    ev.add_argument("--precision", choices=PRECISIONS, default="fp32")
    ev.add_argument("--batch-size", type=_positive_int, default=32)
    ev.add_argument("--padding", choices=PADDINGS, default="sorted", help="batch padding (results never change)")
    ev.add_argument("--max-samples", type=_positive_int, default=None, help="SQuAD: first N questions; else rows")
    _add_task_options(ev)
    _add_masking(ev)
    _add_runtime_options(ev)

    ft = commands.add_parser("finetune", help="fine-tune a model on a task")
    ft.add_argument("task", choices=FINETUNE_TASKS)
    _add_model(ft)
    ft.add_argument("--train", type=Path, required=True)
    ft.add_argument("--eval", type=Path, default=None, help="evaluate on this file after each epoch")
    _add_common(ft)
    _add_training(ft, lr=5e-5, epochs=2, batch_size=16)
    ft.add_argument("--max-train-samples", type=_positive_int, default=None, help="SQuAD: first N questions")
    ft.add_argument("--max-eval-samples", type=_positive_int, default=None)
    _add_task_options(ft)

    pt = commands.add_parser("pretrain", help="masked-LM pretraining with a target accuracy")
    _add_model(pt)
    pt.add_argument("--corpus", type=Path, nargs="+", required=True, help="text files, blank line between documents")
    pt.add_argument("--eval-corpus", type=Path, nargs="+", default=[], help="held-out documents for mlm_accuracy")
    _add_common(pt)
    _add_training(pt, lr=1e-3, epochs=1, batch_size=32)
    pt.add_argument("--optimizer", choices=("lamb", "adamw"), default="lamb")
    pt.add_argument("--decay-power", type=float, default=1.0, help="polynomial decay after warm-up (1: linear)")
    pt.add_argument("--max-seq-length", type=_positive_int, default=128)
    _add_masking(pt)
    pt.add_argument("--nsp", action="store_true", help="also train next-sentence prediction")
    pt.add_argument("--init-from", default=None, help="start from this checkpoint's weights (shapes checked)")
    pt.add_argument("--eval-every-samples", type=_positive_int, default=None)
    pt.add_argument("--eval-samples", type=_positive_int, default=10000, help="size of the fixed evaluation set")
    pt.add_argument("--target-mlm-accuracy", type=_fraction, default=None, help="stop when reached")

    bc = commands.add_parser("build-corpus", help="write a pretraining corpus from SQuAD contexts and SST-2 sentences")
    bc.add_argument("--squad", type=Path, nargs="*", default=[])
    bc.add_argument("--sst2", type=Path, nargs="*", default=[])
    bc.add_argument("--output", type=Path, required=True)
    return parser


def _task_options(args: argparse.Namespace, task: str) -> Any:
    from bertbench.tasks.options import TaskOptions

    return TaskOptions(
        max_seq_length=args.max_seq_length or DEFAULT_MAX_SEQ_LENGTH[task],
        doc_stride=getattr(args, "doc_stride", 128),
        max_query_length=getattr(args, "max_query_length", 64),
        n_best=getattr(args, "n_best", 20),
        max_answer_length=getattr(args, "max_answer_length", 30),
        null_score_threshold=getattr(args, "null_score_threshold", 0.0),
        mask_prob=getattr(args, "mask_prob", 0.15),
        max_predictions_per_seq=getattr(args, "max_predictions_per_seq", 20),
        whole_word_masking=getattr(args, "whole_word_masking", False),
    )


def _train_config(args: argparse.Namespace, **extra: Any) -> Any:
    from bertbench.training.loop import TrainConfig

    return TrainConfig(
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
        group_by_length=args.group_by_length,
        amp=args.precision,
        **extra,
    )


def _eval(args: argparse.Namespace) -> None:
    from bertbench.jobs.evaluate import EvalConfig, run_eval

    run_eval(
        EvalConfig(
            task=args.task,
            model=args.model,
            data=args.data,
            output_dir=args.output_dir,
            backend="onnxruntime" if args.backend == "ort" else args.backend,
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
            task_options=_task_options(args, args.task),
            quantization=args.quantization,
            calibration_data=args.calibration_data,
            calibration_samples=args.calibration_samples,
            calibration_method=args.calibration_method,
            per_channel=args.per_channel,
            reduce_range=args.reduce_range,
            compile=args.compile,
            providers=tuple(args.provider or ()),
            export_dir=args.export_dir,
            accuracy_target=args.accuracy_target,
            strict=args.strict,
            int8_fallback=args.int8_fallback,
            tuning_samples=args.tuning_samples,
        )
    )


def _finetune(args: argparse.Namespace) -> None:
    from bertbench.jobs.finetune import FinetuneConfig, run_finetune

    run_finetune(
        FinetuneConfig(
            task=args.task,
            model=args.model,
            train=args.train,
            eval=args.eval,
            output_dir=args.output_dir,
            train_config=_train_config(args),
            task_options=_task_options(args, args.task),
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


def _pretrain(args: argparse.Namespace) -> None:
    from bertbench.jobs.pretrain import PretrainConfig, run_pretrain
    from bertbench.tasks.mlm.masking import MaskingParams

    run_pretrain(
        PretrainConfig(
            model=args.model,
            corpus=args.corpus,
            output_dir=args.output_dir,
            eval_corpus=args.eval_corpus,
            train_config=_train_config(args, optimizer=args.optimizer, decay_power=args.decay_power),
            max_seq_length=args.max_seq_length,
            masking=MaskingParams(args.mask_prob, args.max_predictions_per_seq, args.whole_word_masking),
            nsp=args.nsp,
            init_from=args.init_from,
            eval_every_samples=args.eval_every_samples,
            eval_samples=args.eval_samples,
            eval_batch_size=args.eval_batch_size,
            target_mlm_accuracy=args.target_mlm_accuracy,
            threads=args.threads,
            cache_dir=args.cache_dir,
            device=args.device,
            resume=args.resume,
            overwrite=args.overwrite,
            allow_pickle=args.allow_pickle,
            dist_timeout_s=args.dist_timeout,
            dropout=args.dropout,
            show_progress=not args.no_progress,
        )
    )


def _build_corpus(args: argparse.Namespace) -> None:
    from bertbench.results.console import info
    from bertbench.tasks.mlm.corpus import build_corpus

    counts = build_corpus(args.squad, args.sst2, args.output)
    info(f"wrote {args.output}: {counts['documents']} documents, {counts['sentences']} sentences")


COMMANDS = {"eval": _eval, "finetune": _finetune, "pretrain": _pretrain, "build-corpus": _build_corpus}


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
