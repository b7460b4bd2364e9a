"""Peer inference baselines that bertbench is measured against. Standalone: imports nothing from bertbench.

Both peers read the same prebuilt windows (an .npz of input_ids / token_type_ids / lengths, padded to the
maximum length) and write their start/end logits back, so the orchestrator scores every path with one metric:

* hf-eager:  transformers' BertForQuestionAnswering in PyTorch eager FP32, batches in input order padded to
             their longest member (what DataCollatorWithPadding gives a transformers user);
* ort-int8:  what optimum's default dynamic quantization produces: the model exported to ONNX, fused with
             onnxruntime.transformers.optimizer, quantize_dynamic (per-channel QInt8 weights, as optimum's avx2
             config), same batching as hf-eager.

    python benchmarks/peers.py hf-eager --model-dir DIR --inputs in.npz --output out.npz --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

NAMES = ("input_ids", "attention_mask", "token_type_ids")


def batches(inputs: dict[str, np.ndarray], batch_size: int) -> list[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """Input order, each batch padded to its longest member."""
    lengths = inputs["lengths"]
    out = []
    for start in range(0, len(lengths), batch_size):
        rows = np.arange(start, min(start + batch_size, len(lengths)))
        width = int(lengths[rows].max())
        mask = (np.arange(width)[None, :] < lengths[rows, None]).astype(np.int64)
        out.append(
            (
                rows,
                {
                    "input_ids": inputs["input_ids"][rows, :width].astype(np.int64),
                    "attention_mask": mask,
                    "token_type_ids": inputs["token_type_ids"][rows, :width].astype(np.int64),
                },
            )
        )
    return out


def timed_run(run, plan, n: int, max_len: int) -> tuple[dict[str, np.ndarray], float, float]:
    """Warm up on the first batch, then time every batch; logits scattered into (n, max_len)."""
    start = time.perf_counter()
    run(plan[0][1])
    warmup = time.perf_counter() - start
    starts = np.full((n, max_len), -1e4, dtype=np.float32)
    ends = np.full((n, max_len), -1e4, dtype=np.float32)
    begin = time.perf_counter()
    for rows, feed in plan:
        s, e = run(feed)
        starts[rows, : s.shape[1]] = s
        ends[rows, : e.shape[1]] = e
    return {"start_logits": starts, "end_logits": ends}, time.perf_counter() - begin, warmup


def hf_eager(model_dir: str, threads: int):
    """A run(feed) -> (start, end) closure over transformers' model in eager FP32."""
    import torch
    from transformers import BertForQuestionAnswering

    torch.set_num_threads(threads)
    model = BertForQuestionAnswering.from_pretrained(model_dir).eval()

    def run(feed: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode():
            out = model(**{k: torch.from_numpy(v) for k, v in feed.items()})
        return out.start_logits.numpy(), out.end_logits.numpy()

    return run


def ort_int8(model_dir: str, threads: int):
    """A run(feed) closure over an ONNX Runtime session of the dynamically quantized, fused graph."""
    import onnx
    import onnxruntime as ort
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model
    from transformers import BertForQuestionAnswering

    model = BertForQuestionAnswering.from_pretrained(model_dir, attn_implementation="eager").eval()
    work = Path(tempfile.mkdtemp(prefix="peer-ort-"))
    dummy = {k: torch.ones(2, 16, dtype=torch.long) for k in NAMES}
    dummy["attention_mask"][1, 9:] = 0
    axes = {k: {0: "batch", 1: "sequence"} for k in (*NAMES, "start_logits", "end_logits")}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (dummy["input_ids"], dummy["attention_mask"], dummy["token_type_ids"]),
            str(work / "model.onnx"),
            input_names=list(NAMES),
            output_names=["start_logits", "end_logits"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )
        config = model.config
        optimized = optimize_model(
            str(work / "model.onnx"),
            model_type="bert",
            num_heads=config.num_attention_heads,
            hidden_size=config.hidden_size,
        )
        optimized.save_model_to_file(str(work / "optimized.onnx"))
        quantize_dynamic(
            str(work / "optimized.onnx"),
            str(work / "int8.onnx"),
            per_channel=True,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul", "Attention"],
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(work / "int8.onnx"), options, providers=["CPUExecutionProvider"])

    def run(feed: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        start, end = session.run(["start_logits", "end_logits"], feed)
        return start, end

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("peer", choices=("hf-eager", "ort-int8"))
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--inputs", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    with np.load(args.inputs) as data:
        inputs = {k: data[k] for k in data.files}
    start = time.perf_counter()
    run = (hf_eager if args.peer == "hf-eager" else ort_int8)(args.model_dir, args.threads)
    prepare_s = time.perf_counter() - start
    plan = batches(inputs, args.batch_size)
    n, max_len = inputs["input_ids"].shape
    outputs, timed_s, warmup_s = timed_run(run, plan, n, max_len)
    np.savez(args.output, **outputs)
    padded = sum(len(rows) * feed["input_ids"].shape[1] for rows, feed in plan)
    Path(args.output).with_suffix(".json").write_text(
        json.dumps(
            {
                "peer": args.peer,
                "throughput": n / timed_s,
                "inference_s": timed_s,
                "warmup_s": warmup_s,
                "prepare_s": prepare_s,
                "num_samples": n,
                "threads": args.threads,
                "batch_size": args.batch_size,
                "padding": "longest",
                "mean_padded_tokens": padded / n,
                "padded_tokens_x_len": int(sum(len(r) * f["input_ids"].shape[1] ** 2 for r, f in plan)),
            }
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
