"""Runtimes and precisions: ORT parity with torch, graph fusion, INT8 (dynamic, static) against FP32, the
accuracy guard, calibration hygiene, the artifact cache and the hardware refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bertbench.accuracy import guard
from bertbench.bench.runner import run_inference
from bertbench.cache import Cache
from bertbench.cli import main
from bertbench.models import BertForQuestionAnswering, load_model, resolve_model
from bertbench.runtimes.options import Placement, RuntimeOptions
from bertbench.runtimes.ort_options import DEFAULT_INT8_ACTIVATIONS
from bertbench.runtimes.registry import create_runtime
from bertbench.tasks.squad import task as squad
from bertbench.tasks.squad.options import SquadOptions

from .conftest import SQUAD_DEV, SST2_DEV, SST2_TRAIN

pytestmark = pytest.mark.e2e  # whole commands, processes and runtimes: `pytest -m 'not e2e'` skips them


def run_eval(out: Path, cache_dir: Path, *args: str) -> dict:
    assert (
        main(
            [
                "eval",
                *args,
                "--output-dir",
                str(out),
                "--cache-dir",
                str(cache_dir),
                "--threads",
                "2",
                "--no-progress",
                "--overwrite",
            ]
        )
        == 0
    )
    return json.loads((out / "metrics.json").read_text())


def fp32_logit_gap(model_name: str, backend: str, artifacts: Path, cache_dir: Path) -> tuple[float, dict, object]:
    """(largest |logit| difference from torch FP32 over real positions, the backend's facts, the loaded model) on the
    first 24 questions of the real dev file, in batches of 5 (ragged masks)."""
    loaded = load_model(resolve_model(model_name), BertForQuestionAnswering, seed=5)
    options = SquadOptions(max_seq_length=384)
    dataset = squad.load_dataset(SQUAD_DEV, loaded.tokenizer, options, Cache(cache_dir), max_examples=24)
    outputs, facts = {}, {}
    for name in ("torch", backend):
        runtime = create_runtime(name)
        runtime.prepare(loaded, RuntimeOptions(backend=name), Placement(threads=2, cache_dir=artifacts))
        result = run_inference(
            runtime,
            dataset,
            batch_size=5,
            padding="sorted",
            max_seq_length=384,
            per_token_outputs=squad.SQUAD.per_token_outputs,
            show_progress=False,
        )
        outputs[name], facts = result.outputs, runtime.describe()
    real = np.arange(384)[None, :] < dataset.lengths[:, None]  # ragged masks: compare real positions only
    gap = max(
        float(np.abs(outputs["torch"][name][real] - outputs[backend][name][real]).max())
        for name in squad.SQUAD.per_token_outputs
    )
    return gap, facts, loaded


@pytest.mark.parametrize("model_name", ["bert-tiny", "minilm-l6"])
def test_onnxruntime_fp32_matches_torch_and_fuses_every_attention(
    model_name: str, tmp_path: Path, cache_dir: Path
) -> None:
    gap, facts, loaded = fp32_logit_gap(model_name, "onnxruntime", tmp_path, cache_dir)
    assert gap < 1e-4
    layers = loaded.model.config.num_hidden_layers
    assert facts["fused_ops"]["Attention"] == layers and facts["fused_ops"]["EmbedLayerNormalization"] == 1


def test_padding_never_changes_onnxruntime_results(tiny_squad_model: Path, tmp_path: Path, cache_dir: Path) -> None:
    base = [
        "squad",
        "--model",
        str(tiny_squad_model),
        "--data",
        str(SQUAD_DEV),
        "--max-samples",
        "60",
        "--backend",
        "onnxruntime",
        "--max-seq-length",
        "256",
        "--batch-size",
        "7",
    ]
    fixed = run_eval(tmp_path / "fixed", cache_dir, *base, "--padding", "fixed")
    packed = run_eval(tmp_path / "sorted", cache_dir, *base, "--padding", "sorted")
    assert json.loads((tmp_path / "fixed" / "predictions.json").read_text()) == json.loads(
        (tmp_path / "sorted" / "predictions.json").read_text()
    )
    assert fixed["f1"] == packed["f1"] and packed["mean_padded_tokens"] < fixed["mean_padded_tokens"]
    # An ORT FP32 run is guarded against torch FP32 too: same model, same data.
    assert packed["relative_accuracy"] == pytest.approx(1.0, abs=1e-9) and packed["reference_f1"] == packed["f1"]


def _labels(path: Path) -> np.ndarray:
    return np.array([int(line.split("\t")[1]) for line in path.read_text().splitlines()[1:]])


def test_int8_paths_agree_with_fp32_and_the_guard_is_computed(
    sst2_model: Path, tmp_path: Path, cache_dir: Path
) -> None:
    base = ["sst2", "--model", str(sst2_model), "--data", str(SST2_DEV)]
    fp32 = run_eval(tmp_path / "fp32", cache_dir, *base)
    reference = _labels(tmp_path / "fp32" / "predictions.tsv")
    runs = {
        "ort-dynamic": ["--backend", "onnxruntime", "--precision", "int8"],
        "ort-static": [
            "--backend",
            "onnxruntime",
            "--precision",
            "int8",
            "--quantization",
            "static",
            "--calibration-data",
            str(SST2_TRAIN),
            "--calibration-samples",
            "256",
        ],
        "torch-dynamic": ["--backend", "torch", "--precision", "int8"],
        # the INT8 study's other knobs: unsigned weights, attention left in FP32
        "ort-dynamic-u8-fp32-attention": [
            "--backend",
            "onnxruntime",
            "--precision",
            "int8",
            "--int8-weights",
            "u8",
            "--no-quantize-attention",
        ],
    }
    for name, extra in runs.items():
        record = run_eval(tmp_path / name, cache_dir, *base, *extra)
        predictions = _labels(tmp_path / name / "predictions.tsv")
        # Quantization noise flips only sentences near the decision boundary. This lightly trained model (~0.78
        # accuracy, small margins) measured 0.93-0.99 agreement across the INT8 paths (0.93: ORT dynamic with
        # reduce_range); a broken quantizer (wrong scales or layout) lands near chance (~0.5). 0.90 separates them.
        assert (predictions == reference).mean() >= 0.90, name
        assert record["reference_accuracy"] == fp32["accuracy"]  # the FP32 run's own figure, found or recomputed
        assert record["relative_accuracy"] == pytest.approx(record["accuracy"] / fp32["accuracy"])
        assert record["meets_accuracy_target"] == (record["relative_accuracy"] >= 0.99)
        # Static QDQ leaves the Gemm pooler/classifier (~1.4 % of MiniLM's linear weights) in FP32.
        if name == "ort-dynamic-u8-fp32-attention":
            # FP32 Attention keeps its QKV projection (a quarter of each layer's linear weights) in FP32: said so
            assert 0.6 < record["int8_linear_fraction"] < 0.9 and record["partial_int8"] is True
        else:
            assert record["int8_linear_fraction"] >= 0.98 and record["partial_int8"] is False
        # The defaults: per-channel 8-bit weights (the measured best on this CPU).
        assert name == "torch-dynamic" or (record["reduce_range"] is False and record["per_channel"] is True)
    static = json.loads((tmp_path / "ort-static" / "metrics.json").read_text())
    assert static["quantization_format"].startswith("QDQ") and static["calibration_samples"] == 256
    # Attention in INT8 by default only where the study found it pays: dynamic (QAttention), not static.
    assert static["quantize_attention"] is False
    dynamic = json.loads((tmp_path / "ort-dynamic" / "metrics.json").read_text())
    assert dynamic["quantize_attention"] is True and dynamic["int8_activations"] == DEFAULT_INT8_ACTIVATIONS
    # QAttention takes one activation scale: with per-token scales, Q/K/V are quantized as MatMuls instead
    attention_format = (
        "per-token scales: FP32 attention scores" if DEFAULT_INT8_ACTIVATIONS == "per-token" else "QAttention"
    )
    assert attention_format in dynamic["quantization_format"] and static["int8_activations"] is None
    variant = json.loads((tmp_path / "ort-dynamic-u8-fp32-attention" / "metrics.json").read_text())
    assert variant["int8_weights"] == "u8" and variant["quantize_attention"] is False
    assert "FP32 Attention" in variant["quantization_format"]
    assert static["calibration_method"] == "minmax"


def test_calibration_never_reads_the_evaluated_file(sst2_model: Path, tmp_path: Path, cache_dir: Path, capsys) -> None:
    base = [
        "eval",
        "sst2",
        "--model",
        str(sst2_model),
        "--data",
        str(SST2_DEV),
        "--backend",
        "onnxruntime",
        "--precision",
        "int8",
        "--quantization",
        "static",
        "--cache-dir",
        str(cache_dir),
        "--no-progress",
    ]
    assert main([*base, "--calibration-data", str(SST2_DEV), "--output-dir", str(tmp_path / "same")]) == 1
    assert "calibration data is the evaluated file" in capsys.readouterr().err
    assert not (tmp_path / "same" / "metrics.json").exists()
    assert main([*base, "--output-dir", str(tmp_path / "none")]) == 2  # refused when parsed, before any work
    assert "--calibration-data" in capsys.readouterr().err
    # With training data, the artifact depends on the calibration sample only: evaluating another slice of the
    # evaluation file reuses it unchanged.
    calibrated = [*base[1:], "--calibration-data", str(SST2_TRAIN), "--calibration-samples", "64"]
    first = run_eval(tmp_path / "a", cache_dir, *calibrated, "--max-samples", "300")
    second = run_eval(tmp_path / "b", cache_dir, *calibrated, "--max-samples", "500")
    assert first["calibration_data_sha256"] != first["data_sha256"]
    assert second["artifact_cache_hit"] is True and second["artifact_dir"] == first["artifact_dir"]


def test_artifacts_are_cached_rebuilt_on_change_and_on_corruption(tiny_squad_model: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    base = [
        "squad",
        "--model",
        str(tiny_squad_model),
        "--data",
        str(SQUAD_DEV),
        "--max-samples",
        "20",
        "--backend",
        "onnxruntime",
        "--precision",
        "int8",
        "--max-seq-length",
        "256",
    ]
    first = run_eval(tmp_path / "1", cache, *base)
    second = run_eval(tmp_path / "2", cache, *base)
    assert first["artifact_cache_hit"] is False and second["artifact_cache_hit"] is True
    assert run_eval(tmp_path / "3", cache, *base, "--no-per-channel")["artifact_cache_hit"] is False  # an option
    other = run_eval(tmp_path / "4", cache, *base[:2], "bert-tiny", *base[3:])  # other weights
    assert other["artifact_cache_hit"] is False and other["artifact_dir"] != first["artifact_dir"]
    onnx_file = Path(first["artifact_dir"]) / "model.onnx"
    onnx_file.write_bytes(onnx_file.read_bytes()[:1000])  # truncated: a corrupt entry
    rebuilt = run_eval(tmp_path / "5", cache, *base)
    assert rebuilt["artifact_cache_hit"] is False and rebuilt["rebuilt_corrupt_artifacts"] == 1
    assert rebuilt["f1"] == first["f1"]


def test_export_dir_gets_the_deployable_artifact(tiny_squad_model: Path, tmp_path: Path, cache_dir: Path) -> None:
    export = tmp_path / "deploy"
    run_eval(
        tmp_path / "run",
        cache_dir,
        "squad",
        "--model",
        str(tiny_squad_model),
        "--data",
        str(SQUAD_DEV),
        "--max-samples",
        "5",
        "--backend",
        "ort",
        "--export-dir",
        str(export),
        "--max-seq-length",
        "256",
    )
    import onnxruntime as ort

    session = ort.InferenceSession(str(export / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input_ids", "attention_mask", "token_type_ids"]
    assert json.loads((export / "artifact.json").read_text())["fused_ops"]["Attention"] == 2


@pytest.mark.parametrize(
    ("extra", "message", "exit_code"),
    [
        # impossible anywhere: refused when the command line is parsed (exit 2), nothing loaded
        (["--backend", "onnxruntime", "--precision", "fp16"], "needs the CUDA or TensorRT provider, a GPU", 2),
        (["--backend", "onnxruntime", "--precision", "bf16"], "--precision bf16: not offered by onnxruntime", 2),
        (["--backend", "torch", "--precision", "fp16"], "torch runs fp16 on cuda only", 2),
        # possible, but not on this machine: refused when the runtime is prepared (exit 1)
        (["--backend", "onnxruntime", "--provider", "tensorrt"], "execution provider tensorrt: not available", 1),
        (["--backend", "torch", "--device", "cuda"], "no CUDA device is available", 1),
    ],
)
def test_hardware_the_machine_lacks_is_refused_in_one_line(
    extra: list[str], message: str, exit_code: int, tmp_path: Path, cache_dir: Path, capsys
) -> None:
    code = main(
        [
            "eval",
            "squad",
            "--model",
            "bert-tiny",
            "--data",
            str(SQUAD_DEV),
            "--max-samples",
            "5",
            "--output-dir",
            str(tmp_path / "o"),
            "--cache-dir",
            str(cache_dir),
            "--no-progress",
            *extra,
        ]
    )
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("bertbench: error")]
    assert code == exit_code and len(err) == 1 and message in err[0]
    assert not (tmp_path / "o" / "metrics.json").exists()


def test_bf16_on_this_cpu_runs_and_says_it_is_emulated(sst2_model: Path, tmp_path: Path, cache_dir: Path) -> None:
    record = run_eval(
        tmp_path / "bf16",
        cache_dir,
        "sst2",
        "--model",
        str(sst2_model),
        "--data",
        str(SST2_DEV),
        "--max-samples",
        "200",
        "--precision",
        "bf16",
    )
    from bertbench.hardware import has_native_bf16

    assert record["emulated"] is (not has_native_bf16())
    assert record["relative_accuracy"] is not None and record["reference_accuracy"] > 0


def test_guard_arithmetic_and_strict_exit(sst2_model: Path, tmp_path: Path, cache_dir: Path) -> None:
    result = guard({"f1": 88.0}, {"f1": 90.0}, "f1", 0.99)
    assert result["relative_accuracy"] == pytest.approx(88 / 90) and result["meets_accuracy_target"] is False
    assert result["f1_drop"] == pytest.approx(2.0)
    # A reference that scores 0 gives no ratio: the guard is undefined (None), never a failure to report.
    undefined = guard({"accuracy": 0.0}, {"accuracy": 0.0}, "accuracy", 0.99)
    assert undefined["relative_accuracy"] is None and undefined["meets_accuracy_target"] is None
    # A target no reduced-precision run can beat (relative accuracy above 1.0) trips --strict: exit 3, record kept.
    out = tmp_path / "strict"
    code = main(
        [
            "eval",
            "sst2",
            "--model",
            str(sst2_model),
            "--data",
            str(SST2_DEV),
            "--max-samples",
            "100",
            "--precision",
            "int8",
            "--accuracy-target",
            "1.0",
            "--strict",
            "--output-dir",
            str(out),
            "--cache-dir",
            str(cache_dir),
            "--no-progress",
        ]
    )
    record = json.loads((out / "metrics.json").read_text())
    assert code == (0 if record["meets_accuracy_target"] else 3)
    assert record["relative_accuracy"] == pytest.approx(record["accuracy"] / record["reference_accuracy"])


def test_int8_fallback_keeps_sensitive_layers_in_fp32(sst2_model: Path, tmp_path: Path, cache_dir: Path) -> None:
    record = run_eval(
        tmp_path / "fallback",
        cache_dir,
        "sst2",
        "--model",
        str(sst2_model),
        "--data",
        str(SST2_DEV),
        "--backend",
        "onnxruntime",
        "--precision",
        "int8",
        "--int8-fallback",
        "--calibration-data",
        str(SST2_TRAIN),
        "--tuning-samples",
        "120",
        "--accuracy-target",
        "1.0",
    )
    search, kept = record["int8_fallback_search"], record["int8_fallback_layers"]
    assert search[0]["kept_fp32"] == []
    if kept:  # every step of the search keeps one more layer; it stops once the tuning target is met
        assert [len(s["kept_fp32"]) for s in search] == list(range(len(search)))
        assert search[-1]["tuning_relative_accuracy"] >= 1.0 or len(kept) == 6
        assert record["int8_linear_fraction"] < 1.0 and record["keep_fp32"] == kept
    else:
        assert search[0]["tuning_relative_accuracy"] >= 1.0 and record["int8_linear_fraction"] >= 0.99


def test_torch_compile_with_freezing_scores_as_eager(tiny_squad_model: Path, tmp_path: Path, cache_dir: Path) -> None:
    base = ["squad", "--model", str(tiny_squad_model), "--data", str(SQUAD_DEV), "--max-samples", "30"]
    base += ["--max-seq-length", "256", "--batch-size", "8"]
    eager = run_eval(tmp_path / "eager", cache_dir, *base)
    compiled = run_eval(tmp_path / "compiled", cache_dir, *base, "--compile")
    assert compiled["compiled"] is True and compiled["inductor_freezing"] is True
    # Inductor reorders float sums: logits move by ~1e-6, the chosen spans (hence F1) do not.
    assert compiled["f1"] == pytest.approx(eager["f1"], abs=1e-9)
    assert compiled["relative_accuracy"] == pytest.approx(1.0, abs=1e-9)
