"""The OpenVINO backend: FP32 parity with torch, NNCF INT8 against FP32, calibration hygiene, the artifact cache,
pinned instances through `bench`, and the refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bertbench.cache import MANIFEST
from bertbench.cli import main
from bertbench.io_utils import sha256_file

from .conftest import SQUAD_DEV, SST2_DEV, SST2_TRAIN, two_single_core_instances
from .test_runtimes import _labels, fp32_logit_gap, run_eval

pytestmark = pytest.mark.e2e  # whole commands, processes and runtimes: `pytest -m 'not e2e'` skips them

INT8 = ["--backend", "openvino", "--precision", "int8", "--quantization", "static"]


@pytest.mark.parametrize("model_name", ["bert-tiny", "minilm-l6"])
def test_openvino_fp32_matches_torch(model_name: str, tmp_path: Path, cache_dir: Path) -> None:
    gap, facts, _ = fp32_logit_gap(model_name, "openvino", tmp_path, cache_dir)
    assert gap < 1e-4
    assert facts["openvino_threads"] == 2


def test_openvino_int8_agrees_with_fp32_and_is_guarded(sst2_model: Path, tmp_path: Path, cache_dir: Path) -> None:
    base = ["sst2", "--model", str(sst2_model), "--data", str(SST2_DEV)]
    fp32 = run_eval(tmp_path / "fp32", cache_dir, *base)
    calibrated = ["--calibration-data", str(SST2_TRAIN), "--calibration-samples", "256"]
    record = run_eval(tmp_path / "int8", cache_dir, *base, *INT8, *calibrated)
    int8_labels, fp32_labels = (_labels(tmp_path / name / "predictions.tsv") for name in ("int8", "fp32"))
    agreement = (int8_labels == fp32_labels).mean()
    # The level the ORT and torch INT8 paths are held to (test_runtimes): a broken quantizer lands near 0.5.
    assert agreement >= 0.90
    assert record["reference_accuracy"] == fp32["accuracy"]
    assert record["relative_accuracy"] == pytest.approx(record["accuracy"] / fp32["accuracy"])
    assert record["quantization_format"].startswith("NNCF") and record["calibration_samples"] == 256
    assert record["int8_linear_fraction"] >= 0.9 and record["partial_int8"] is False
    assert record["calibration_data_sha256"] != record["data_sha256"]


def test_openvino_int8_calibration_is_training_data_only(
    sst2_model: Path, tmp_path: Path, cache_dir: Path, capsys
) -> None:
    def errors(*extra: str, name: str, exit_code: int = 1) -> list[str]:
        argv = ["eval", "sst2", "--model", str(sst2_model), "--data", str(SST2_DEV), "--output-dir"]
        code = main([*argv, str(tmp_path / name), "--cache-dir", str(cache_dir), "--no-progress", *extra])
        lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("bertbench: error")]
        assert code == exit_code and len(lines) == 1 and not (tmp_path / name / "metrics.json").exists()
        return lines

    assert "calibration data is the evaluated file" in errors(*INT8, "--calibration-data", str(SST2_DEV), name="a")[0]
    # impossible combinations are refused when the command line is parsed (exit 2)
    assert "--calibration-data" in errors(*INT8, name="b", exit_code=2)[0]
    # INT8 here is static only: asking for the default (dynamic) says what to add instead of guessing.
    assert "--quantization static" in errors(*INT8[:4], name="c", exit_code=2)[0]


def test_openvino_artifacts_are_cached_and_rebuilt(tiny_squad_model: Path, tmp_path: Path, capsys) -> None:
    cache = tmp_path / "cache"
    base = ["squad", "--model", str(tiny_squad_model), "--data", str(SQUAD_DEV), "--max-samples", "20"]
    base += ["--backend", "openvino", "--max-seq-length", "256"]
    first = run_eval(tmp_path / "1", cache, *base)
    second = run_eval(tmp_path / "2", cache, *base)
    assert first["artifact_cache_hit"] is False and second["artifact_cache_hit"] is True
    assert first["relative_accuracy"] == pytest.approx(1.0, abs=1e-6)  # FP32 OpenVINO scores as torch does
    entry = Path(first["artifact_dir"])
    weights = entry / "model.bin"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated: the manifest catches it
    rebuilt = run_eval(tmp_path / "3", cache, *base)
    assert rebuilt["artifact_cache_hit"] is False and rebuilt["rebuilt_corrupt_artifacts"] == 1
    assert rebuilt["f1"] == first["f1"]
    # A graph file OpenVINO cannot parse, its hash written into the manifest (a hand-edited entry): one warning
    # line naming the entry, then the entry is rebuilt.
    graph = entry / "model.xml"
    graph.write_text("<net>not a graph</net>")
    manifest = json.loads((entry / MANIFEST).read_text())
    manifest["files"]["model.xml"] = sha256_file(graph)
    (entry / MANIFEST).write_text(json.dumps(manifest))
    capsys.readouterr()
    again = run_eval(tmp_path / "4", cache, *base)
    warnings = [line for line in capsys.readouterr().err.splitlines() if "cannot read this cached artifact" in line]
    assert len(warnings) == 1 and str(entry) in warnings[0]
    assert again["rebuilt_corrupt_artifacts"] == 1 and again["f1"] == first["f1"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--precision", "fp16"], "--backend openvino --precision fp16: not offered by openvino"),
        (["--device", "cuda"], "openvino runs fp32 on cpu only"),
        (["--precision", "int8"], "openvino offers static INT8 only; NNCF post-training quantization"),
    ],
)
def test_openvino_refusals_are_one_line(
    extra: list[str], message: str, tmp_path: Path, cache_dir: Path, capsys
) -> None:
    argv = ["eval", "squad", "--model", "bert-tiny", "--data", str(SQUAD_DEV), "--max-samples", "5"]
    argv += ["--output-dir", str(tmp_path / "o"), "--cache-dir", str(cache_dir), "--no-progress"]
    code = main([*argv, "--backend", "openvino", *extra])
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("bertbench: error")]
    assert code == 2 and len(err) == 1 and message in err[0]  # refused when parsed: nothing was loaded
    assert not (tmp_path / "o").exists()


def test_openvino_bf16_is_refused_where_the_cpu_would_compute_fp32(monkeypatch: pytest.MonkeyPatch) -> None:
    from bertbench.errors import UsageError
    from bertbench.runtimes import options

    bf16 = options.RuntimeOptions(backend="openvino", precision="bf16")
    monkeypatch.setattr(options, "cpu_flags", lambda: frozenset({"avx2", "avx512f", "avx512_vnni"}))
    with pytest.raises(UsageError, match=r"this CPU has no native BF16 \(avx512_bf16 or amx_bf16"):
        bf16.check("cpu", "squad")
    for flags in ({"avx512_bf16"}, {"amx_bf16", "amx_int8"}):
        monkeypatch.setattr(options, "cpu_flags", lambda flags=flags: frozenset(flags))
        bf16.check("cpu", "squad")  # offered
    with pytest.raises(UsageError, match="openvino runs bf16 on cpu only"):
        bf16.check("cuda", "squad")


def test_openvino_bf16_computes_in_bf16_and_is_guarded_against_fp32(
    tiny_squad_model: Path, tmp_path: Path, cache_dir: Path, capsys
) -> None:
    from bertbench.hardware import has_native_bf16

    base = ["squad", "--model", str(tiny_squad_model), "--data", str(SQUAD_DEV), "--max-samples", "60"]
    if not has_native_bf16():  # this CPU: refused, saying why (the other branch runs where the CPU has BF16)
        code = main(
            ["eval", *base, "--output-dir", str(tmp_path / "o"), "--backend", "openvino", "--precision", "bf16"]
        )
        assert code == 2 and "this CPU has no native BF16" in capsys.readouterr().err
        return
    fp32 = run_eval(tmp_path / "fp32", cache_dir, *base)
    record = run_eval(tmp_path / "bf16", cache_dir, *base, "--backend", "openvino", "--precision", "bf16")
    assert record["openvino_inference_precision"] == "bf16" and record["emulated"] is False
    assert record["reference_f1"] == fp32["f1"]  # the guard: FP32 torch on the same data
    assert record["relative_accuracy"] == pytest.approx(record["f1"] / fp32["f1"])
    assert abs(record["f1"] - fp32["f1"]) < 10  # BF16's 8-bit mantissa moves answers, not the whole model


def test_openvino_runs_under_loadgen_in_two_pinned_instances(tmp_path: Path, cache_dir: Path) -> None:
    out = tmp_path / "bench"
    argv = ["bench", "sst2", "--model", "bert-tiny", "--data", str(SST2_DEV), "--output-dir", str(out)]
    argv += ["--cache-dir", str(cache_dir), "--min-duration", "1", "--no-progress", "--max-samples", "40"]
    two, pinned = two_single_core_instances()
    assert main([*argv, "--backend", "ov", *two, "--batch-size", "4"]) == 0
    record = json.loads((out / "metrics.json").read_text())
    assert record["backend"] == "openvino" and record["openvino_threads"] == 1
    assert [i["cores"] for i in record["per_instance"]] == pinned
    assert sum(i["samples"] for i in record["per_instance"]) == record["num_samples"]
