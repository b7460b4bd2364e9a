"""Peer inference baselines that bertbench is measured against. Standalone: imports nothing from bertbench.

Every peer reads the same prebuilt windows (an .npz of input_ids / token_type_ids / lengths, padded to the
maximum length) and writes its start/end logits back, so the orchestrator scores every path with one metric:

* hf-eager:  transformers' BertForQuestionAnswering in PyTorch eager FP32, batches in input order padded to
             their longest member (what DataCollatorWithPadding gives a transformers user);
* ort-int8:  what optimum's default dynamic quantization produces: the model exported to ONNX, fused with
             onnxruntime.transformers.optimizer, quantize_dynamic (per-channel QInt8 weights, as optimum's avx2
             config), same batching as hf-eager;
* openvino:  OpenVINO at its default precision: the same ONNX export converted with openvino.convert_model and
             compiled for the CPU with only a thread count, no precision hint, so the plugin picks its native
             default (BF16 where the CPU has avx512_bf16 / AMX, FP32 elsewhere); the precision it picked is
             reported as inference_precision. Same batching as hf-eager.

    python benchmarks/peers.py hf-eager --model-dir DIR --inputs in.npz --output out.npz --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

NAMES = ("input_ids", "attention_mask", "token_type_ids")
# run(feed) -> (start logits, end logits) of one batch
Run = Callable[[dict[str, np.ndarray]], tuple[np.ndarray, np.ndarray]]


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


def hf_eager(model_dir: str, threads: int) -> tuple[Run, dict]:
    """A run(feed) -> (start, end) closure over transformers' model in eager FP32 (and no extra facts)."""
    import torch
    from transformers import BertForQuestionAnswering

    torch.set_num_threads(threads)
    model = BertForQuestionAnswering.from_pretrained(model_dir).eval()

    def run(feed: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode():
            out = model(**{k: torch.from_numpy(v) for k, v in feed.items()})
        return out.start_logits.numpy(), out.end_logits.numpy()

    return run, {}


def export_onnx(model_dir: str, path: Path) -> Any:
    """transformers' model exported to ONNX (TorchScript exporter, opset 17) with dynamic batch and sequence
    axes; returns the model's config (ort-int8's fusions need its head count and width)."""
    import torch
    from transformers import BertForQuestionAnswering

    # eager attention: the explicit softmax(QK^T)V subgraph that onnxruntime's BERT fusions recognise (the
    # openvino peer takes the same graph, so both exported peers start from one export)
    model = BertForQuestionAnswering.from_pretrained(model_dir, attn_implementation="eager").eval()
    dummy = {k: torch.ones(2, 16, dtype=torch.long) for k in NAMES}
    dummy["attention_mask"][1, 9:] = 0
    axes = {k: {0: "batch", 1: "sequence"} for k in (*NAMES, "start_logits", "end_logits")}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (dummy["input_ids"], dummy["attention_mask"], dummy["token_type_ids"]),
            str(path),
            input_names=list(NAMES),
            output_names=["start_logits", "end_logits"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )
    return model.config


def ort_int8(model_dir: str, threads: int) -> tuple[Run, dict]:
    """A run(feed) closure over an ONNX Runtime session of the dynamically quantized, fused graph."""
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model

    work = Path(tempfile.mkdtemp(prefix="peer-ort-"))
    config = export_onnx(model_dir, work / "model.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
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

    return run, {}


def openvino(model_dir: str, threads: int) -> tuple[Run, dict]:
    """A run(feed) closure over OpenVINO's CPU plugin at its default precision, and the precision it chose.

    The model goes through the same ONNX export as ort-int8 rather than openvino.convert_model on the torch module:
    both work offline, but this way the two exported peers start from one identical graph (so the comparison between
    them is of runtimes, not of converters), and the export's dynamic batch/sequence axes carry over as they are.
    """
    import openvino as ov

    work = Path(tempfile.mkdtemp(prefix="peer-ov-"))
    export_onnx(model_dir, work / "model.onnx")
    core = ov.Core()
    model = ov.convert_model(str(work / "model.onnx"))
    # Threads only: no INFERENCE_PRECISION_HINT (the plugin's default is the point of this peer) and no
    # performance hint or stream count beyond the plugin's own defaults, as a user compiling it plainly gets.
    compiled = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": threads})
    request = compiled.create_infer_request()
    start_out, end_out = compiled.output("start_logits"), compiled.output("end_logits")

    def run(feed: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        results = request.infer(feed)  # share_outputs=False (the default): copies, safe past the next call
        return results[start_out], results[end_out]

    facts = {
        # what the plugin computes in, as it reports it: "bf16" or "f32" (ov.Type's short name)
        "inference_precision": compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name(),
        # the plugin's defaults that decide how it runs (PERFORMANCE mode is what lets it pick bf16)
        "execution_mode": _enum_name(compiled.get_property("EXECUTION_MODE_HINT")),
        "performance_hint": _enum_name(compiled.get_property("PERFORMANCE_HINT")),
        "openvino_threads": compiled.get_property("INFERENCE_NUM_THREADS"),
        "openvino_version": ov.get_version(),
    }
    return run, facts


def _enum_name(value: object) -> str:
    """An OpenVINO property as its bare name: "ExecutionMode.PERFORMANCE" and "PERFORMANCE" both -> "PERFORMANCE"."""
    return str(value).rsplit(".", 1)[-1]


PEERS: dict[str, Callable[[str, int], tuple[Run, dict]]] = {
    "hf-eager": hf_eager,
    "ort-int8": ort_int8,
    "openvino": openvino,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("peer", choices=tuple(PEERS))
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--inputs", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    with np.load(args.inputs) as data:
        inputs = {k: data[k] for k in data.files}
    start = time.perf_counter()
    run, facts = PEERS[args.peer](args.model_dir, args.threads)
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
                **facts,  # what only this peer knows (openvino: the precision its plugin chose)
            }
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
