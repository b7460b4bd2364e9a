"""INT8 vs FP32 GEMM in isolation, on the linear layers of BERT's encoder: how much can INT8 gain on this CPU?

For each model's four weight shapes (QKV h->3h, attention output h->h, FFN in h->i, FFN out i->h) at M tokens,
one ONNX graph holding a single MatMul with a constant weight runs in ONNX Runtime in FP32, and the same graph
after ORT's quantize_dynamic (per-channel signed 8-bit weights, activations quantized on the fly: the kernels the
`ort int8 dynamic` path uses); torch's nn.Linear and its torch.ao dynamic INT8 Linear run beside them. Paths are
interleaved over rounds; the median time per call is kept. The layer ratio weights each shape by its FLOPs, as one
encoder layer does.

    python benchmarks/int8_gemm.py --threads 2 --output runs/int8-gemm.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

MODELS = {"bert-base": (768, 3072), "minilm-l6": (384, 1536)}


def shapes(hidden: int, intermediate: int) -> dict[str, tuple[int, int]]:
    return {
        "qkv": (hidden, 3 * hidden),
        "attention output": (hidden, hidden),
        "ffn in": (hidden, intermediate),
        "ffn out": (intermediate, hidden),
    }


def ort_sessions(k: int, n: int, threads: int, work: Path) -> dict:
    """FP32 and dynamically quantized single-MatMul sessions for an [M, k] x [k, n] product."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import QuantType, quantize_dynamic

    weight = np.random.default_rng(0).standard_normal((k, n)).astype(np.float32) * 0.05
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="linear")],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["m", k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["m", n])],
        [numpy_helper.from_array(weight, "w")],
    )
    fp32 = work / f"fp32-{k}-{n}.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(fp32))
    int8 = work / f"int8-{k}-{n}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_dynamic(str(fp32), str(int8), per_channel=True, weight_type=QuantType.QInt8)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return {
        name: ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        for name, path in (("ort fp32", fp32), ("ort int8", int8))
    }


def torch_linears(k: int, n: int) -> dict:
    import torch
    from torch import nn

    linear = nn.Linear(k, n).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        quantized = quantize_dynamic(nn.Sequential(linear), {"0": per_channel_dynamic_qconfig}, dtype=torch.qint8)
    return {"torch fp32": linear, "torch int8": quantized}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tokens", type=int, nargs="+", default=[4096, 170], help="M: tokens per call")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--output", type=Path, default=Path("runs/int8-gemm.json"))
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="int8-gemm-"))
    results = []
    for model, (hidden, intermediate) in MODELS.items():
        for m in args.tokens:
            times: dict[str, dict[str, float]] = {}
            flops = {}
            for layer, (k, n) in shapes(hidden, intermediate).items():
                sessions, linears = ort_sessions(k, n, args.threads, work), torch_linears(k, n)
                x = np.random.default_rng(1).standard_normal((m, k)).astype(np.float32)
                xt = torch.from_numpy(x)
                calls = {
                    **{name: (lambda s=s, x=x: s.run(None, {"x": x})) for name, s in sessions.items()},
                    **{name: (lambda f=f, xt=xt: f(xt)) for name, f in linears.items()},
                }
                repeats = max(3, int(2e10 / (2 * m * k * n)))  # ~0.1-0.3 s of work per path per round
                samples: dict[str, list[float]] = {name: [] for name in calls}
                with torch.inference_mode():
                    for call in calls.values():
                        call()  # warm-up: kernel selection, weight packing
                    for _ in range(args.rounds):
                        for name, call in calls.items():  # interleaved: A B C D A B C D …
                            start = time.perf_counter()
                            for _ in range(repeats):
                                call()
                            samples[name].append((time.perf_counter() - start) / repeats)
                times[layer] = {name: statistics.median(v) for name, v in samples.items()}
                flops[layer] = 2 * m * k * n
            # one encoder layer: qkv, output, ffn in, ffn out, once each (FLOP-weighted by construction)
            layer_time = {name: sum(t[name] for t in times.values()) for name in next(iter(times.values()))}
            row = {
                "model": model,
                "tokens": m,
                "threads": args.threads,
                "per_shape_ms": {layer: {k: v * 1e3 for k, v in t.items()} for layer, t in times.items()},
                "per_shape_gflops": {
                    layer: {k: flops[layer] / v / 1e9 for k, v in t.items()} for layer, t in times.items()
                },
                "layer_ms": {k: v * 1e3 for k, v in layer_time.items()},
                "ort_int8_speedup": layer_time["ort fp32"] / layer_time["ort int8"],
                "torch_int8_speedup": layer_time["torch fp32"] / layer_time["torch int8"],
                "ort_int8_vs_torch_fp32": layer_time["torch fp32"] / layer_time["ort int8"],
            }
            results.append(row)
            gf = row["per_shape_gflops"]
            print(
                f"{model} M={m}: encoder-layer linears ORT INT8 {row['ort_int8_speedup']:.2f}x ORT FP32, "
                f"torch INT8 {row['torch_int8_speedup']:.2f}x torch FP32; GFLOP/s ffn-in "
                + ", ".join(f"{k} {v:.0f}" for k, v in gf["ffn in"].items()),
                flush=True,
            )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
