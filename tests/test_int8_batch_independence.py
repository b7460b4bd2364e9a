"""Dynamic INT8 whose answer for a window does not depend on the other windows of its batch: per-token activation
scales (runtimes/onnx_token_quant) against ORT's per-batch DynamicQuantizeLinear, on real SQuAD windows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from bertbench.cache import Cache
from bertbench.models import BertForQuestionAnswering, load_model, resolve_model
from bertbench.results.identity import experiment_id
from bertbench.runtimes.onnx_graph import export_onnx, optimize_bert_graph
from bertbench.runtimes.onnx_quant import Int8Variant, quantize_dynamic_int8
from bertbench.runtimes.onnx_token_quant import per_token_activations
from bertbench.runtimes.options import Placement, RuntimeOptions
from bertbench.runtimes.ort_options import DEFAULT_INT8_ACTIVATIONS, OrtOptions
from bertbench.runtimes.registry import create_runtime
from bertbench.tasks.squad import task as squad
from bertbench.tasks.squad.options import SquadOptions

from .conftest import SQUAD_DEV
from .test_runtimes import run_eval

OUTPUTS = squad.SQUAD.per_token_outputs  # start and end logits


def _windows(model: Path | str, cache_dir: Path, questions: int, seq_len: int, seed: int = 0):
    loaded = load_model(resolve_model(str(model)), BertForQuestionAnswering, seed=seed)
    options = SquadOptions(max_seq_length=seq_len)
    return loaded, squad.load_dataset(SQUAD_DEV, loaded.tokenizer, options, Cache(cache_dir), max_examples=questions)


def _logits(runtime, dataset, order: np.ndarray, batch_size: int, seq_len: int) -> dict[str, np.ndarray]:
    """Every window's logits, run in batches of `batch_size` taken in `order`, each padded to its longest member
    (so batch-mates change the padded length too), scattered back to window order."""
    out = {name: np.zeros((len(order), seq_len), np.float32) for name in OUTPUTS}
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        longest = int(dataset.lengths[rows].max())
        result = runtime.infer(dataset.model_inputs(rows, longest))
        for name in OUTPUTS:
            out[name][rows, :longest] = result[name]
    return out


def _gap(a: dict[str, np.ndarray], b: dict[str, np.ndarray], lengths: np.ndarray) -> np.ndarray:
    """Per window: the largest |logit difference| over its real positions."""
    real = np.arange(a[OUTPUTS[0]].shape[1])[None, :] < lengths[:, None]
    return np.max([np.where(real, np.abs(a[n] - b[n]), 0).max(axis=1) for n in OUTPUTS], axis=0)


def _int8_runtime(loaded, activations: str, artifacts: Path):
    runtime = create_runtime("onnxruntime")
    options = RuntimeOptions(backend="onnxruntime", precision="int8", own=OrtOptions(int8_activations=activations))
    runtime.prepare(loaded, options, Placement(threads=2, cache_dir=artifacts))
    return runtime


@pytest.mark.e2e
def test_a_windows_int8_logits_do_not_depend_on_its_batch_mates(tiny_squad_model: Path, cache_dir: Path) -> None:
    """The same windows in two batch compositions (batches of 8 in order, batches of 32 shuffled): per-token INT8
    gives each window the same logits; ORT's per-batch scales do not (so the comparison can fail)."""
    loaded, dataset = _windows(tiny_squad_model, cache_dir, questions=40, seq_len=256)
    windows = len(dataset.lengths)
    assert windows >= 40
    shuffled = np.random.default_rng(0).permutation(windows)
    gaps = {}
    for activations in ("per-token", "per-batch"):
        runtime = _int8_runtime(loaded, activations, cache_dir)
        assert runtime.describe()["int8_activations"] == activations
        in_eights = _logits(runtime, dataset, np.arange(windows), 8, 256)
        in_thirty_twos = _logits(runtime, dataset, shuffled, 32, 256)
        gaps[activations] = _gap(in_eights, in_thirty_twos, dataset.lengths)
        if activations == "per-token":
            for name in OUTPUTS:
                real = np.arange(256)[None, :] < dataset.lengths[:, None]
                masked = [
                    np.where(real, logits[name], -np.inf).argmax(axis=1) for logits in (in_eights, in_thirty_twos)
                ]
                np.testing.assert_array_equal(*masked)
    # Only FP32 parts outside the integer GEMMs could differ (by blocking); measured here: not at all.
    assert gaps["per-token"].max() <= 1e-5, gaps["per-token"].max()
    # One scale per batch moves most windows' logits when their batch-mates change.
    assert (gaps["per-batch"] > 1e-5).mean() > 0.5, gaps["per-batch"]


def test_the_rewrite_leaves_no_batch_scale_and_stays_close_to_fp32(tmp_path: Path, cache_dir: Path) -> None:
    """ORT's quantize_dynamic output rewritten to per-token scales, on the pretrained MiniLM (real biases: ORT's
    fused MatMulIntegerToFloat would scale them by each token's scale) and real SQuAD windows, in ORT's default
    session (all graph optimizations)."""
    loaded, dataset = _windows("minilm-l6", cache_dir, questions=8, seq_len=384, seed=3)
    export_onnx(loaded.model, tmp_path / "exported.onnx")
    config = loaded.model.config
    heads, hidden = config.num_attention_heads, config.hidden_size
    optimize_bert_graph(tmp_path / "exported.onnx", tmp_path / "fp32.onnx", heads, hidden, fuse_attention=False)
    quantize_dynamic_int8(tmp_path / "fp32.onnx", tmp_path / "per-batch.onnx", Int8Variant())
    quantize_dynamic_int8(tmp_path / "fp32.onnx", tmp_path / "per-token.onnx", Int8Variant(activations="per-token"))

    ops = {
        name: [node.op_type for node in onnx.load(str(tmp_path / f"{name}.onnx")).graph.node]
        for name in ("per-batch", "per-token")
    }
    # ORT's graph: one DynamicQuantizeLinear per distinct MatMul input (Q/K/V share one), each feeding MatMulInteger
    assert ops["per-batch"].count("DynamicQuantizeLinear") == 4 * config.num_hidden_layers + 1
    assert ops["per-batch"].count("MatMulInteger") == 6 * config.num_hidden_layers + 1
    assert "DynamicQuantizeLinear" not in ops["per-token"] and "MatMulInteger" not in ops["per-token"]
    assert ops["per-token"].count("MatMulIntegerToFloat") == ops["per-batch"].count("MatMulInteger")
    assert ops["per-token"].count("ReduceMax") == ops["per-batch"].count("DynamicQuantizeLinear")
    # Rewriting again finds nothing to rewrite.
    assert per_token_activations(onnx.load(str(tmp_path / "per-token.onnx"))) == 0

    rows = np.arange(len(dataset.lengths))
    inputs = dataset.model_inputs(rows, int(dataset.lengths.max()))
    real = np.arange(inputs["input_ids"].shape[1])[None, :] < dataset.lengths[:, None]
    logits = {}
    for name in ("fp32", "per-batch", "per-token"):
        session = ort.InferenceSession(str(tmp_path / f"{name}.onnx"), providers=["CPUExecutionProvider"])
        logits[name] = np.stack([o[real] for o in session.run(list(OUTPUTS), inputs)])
    fp32 = logits["fp32"].ravel()
    cosine = {}
    for name in ("per-batch", "per-token"):
        got = logits[name].ravel()
        cosine[name] = float(fp32 @ got / np.linalg.norm(fp32) / np.linalg.norm(got))
    # measured: per-token 0.997, ORT's per-batch 0.988; with the bias scaled by each token's scale (ORT's own
    # fusion of the pattern) 0.85
    assert cosine["per-token"] > 0.99, cosine


def test_the_option_reaches_the_artifact_and_the_identity_only_where_it_applies() -> None:
    own = OrtOptions()
    assert own.activation_scales("int8", "dynamic") == DEFAULT_INT8_ACTIVATIONS
    assert OrtOptions(int8_activations="per-batch").activation_scales("int8", "dynamic") == "per-batch"
    # static INT8's scales are calibrated (batch-independent already); float precisions have none
    assert OrtOptions(int8_activations="per-token").activation_scales("int8", "static") is None
    assert own.activation_scales("fp32", "dynamic") is None
    run = {"backend": "onnxruntime", "precision": "int8", "quantization": "dynamic"}
    ids = {experiment_id({**run, "int8_activations": value}) for value in ("per-token", "per-batch", None)}
    assert len(ids) == 3


@pytest.mark.e2e
def test_eval_squad_records_the_activation_scales(tiny_squad_model: Path, tmp_path: Path, cache_dir: Path) -> None:
    """`bertbench eval squad --backend onnxruntime --precision int8 --int8-activations …` on the shared dev data:
    per-token answers the same at batch sizes 3 and 32; each mode is its own cached artifact and experiment."""
    base = ["squad", "--model", str(tiny_squad_model), "--data", str(SQUAD_DEV), "--max-samples", "30"]
    base += ["--max-seq-length", "256", "--backend", "onnxruntime", "--precision", "int8"]
    runs = {
        "per-token-bs3": ["--int8-activations", "per-token", "--batch-size", "3"],
        "per-token-bs32": ["--int8-activations", "per-token", "--batch-size", "32"],
        "per-batch": ["--int8-activations", "per-batch"],
    }
    records = {name: run_eval(tmp_path / name, cache_dir, *base, *extra) for name, extra in runs.items()}
    token, batch = records["per-token-bs32"], records["per-batch"]
    assert token["int8_activations"] == "per-token" and batch["int8_activations"] == "per-batch"
    assert "per-token scales" in token["quantization_format"] and "QAttention" in batch["quantization_format"]
    # per-token INT8 attention: Q/K/V as MatMuls (no fused Attention), every linear weight still INT8
    assert token["quantize_attention"] is True and "Attention" not in token["fused_ops"]
    assert token["int8_linear_fraction"] >= 0.98 and token["partial_int8"] is False
    assert token["artifact_dir"] != batch["artifact_dir"]
    predictions = [json.loads((tmp_path / name / "predictions.json").read_text()) for name in runs]
    assert predictions[0] == predictions[1] and token["f1"] == records["per-token-bs3"]["f1"]
