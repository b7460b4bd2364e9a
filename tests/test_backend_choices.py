"""Backend configuration as a choice: each backend's options class states what it runs, and an impossible
combination is one line when the command line (or a workload case) is parsed, before any model is loaded."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bertbench.cli import main, parse
from bertbench.errors import UsageError
from bertbench.runtimes.options import BACKEND_OPTIONS, RuntimeOptions
from bertbench.runtimes.ort_options import OrtOptions

BASE = ["squad", "--model", "bert-large", "--data", "d.json", "--output-dir", "o"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--backend", "openvino", "--device", "cuda"], "openvino runs fp32 on cpu only"),
        (["--backend", "openvino", "--precision", "int8"], "openvino offers static INT8 only"),
        (["--backend", "ort", "--precision", "int8", "--quantization", "static"], "needs --calibration-data"),
        (["--backend", "ort", "--precision", "bf16"], "not offered by onnxruntime"),
        (["--backend", "ort", "--precision", "fp16"], "onnxruntime runs fp16 on cuda only"),
        (["--backend", "torch", "--precision", "int8", "--device", "cuda:1"], "torch runs int8 on cpu only"),
        (["--backend", "torch", "--precision", "int8", "--quantization", "static"], "torch offers dynamic INT8 only"),
        (["--backend", "torch", "--precision", "fp16"], "torch runs fp16 on cuda only"),
    ],
)
@pytest.mark.parametrize("command", ["eval", "bench"])
def test_an_impossible_combination_is_refused_when_parsed(command: str, extra: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse([command, *BASE, *extra])


@pytest.mark.parametrize(
    "extra",
    [
        ["--backend", "ort", "--precision", "fp16", "--provider", "cuda"],  # the provider decides the device
        ["--backend", "ort", "--precision", "int8", "--quantization", "static", "--calibration-data", "t.json"],
        ["--backend", "openvino", "--precision", "int8", "--quantization", "static", "--calibration-data", "t"],
        ["--backend", "torch", "--precision", "bf16"],
        ["--backend", "torch", "--precision", "fp16", "--device", "cuda:0"],
    ],
)
def test_possible_combinations_parse(extra: list[str]) -> None:
    _, _, config = parse(["eval", *BASE, *extra])
    assert type(config.runtime.own) is BACKEND_OPTIONS[config.runtime.backend]


def test_masked_lm_runs_on_torch_only() -> None:
    for backend in ("ort", "openvino"):
        with pytest.raises(UsageError, match="not mlm"):
            parse(["eval", "mlm", "--model", "m", "--data", "c.txt", "--output-dir", "o", "--backend", backend])
    assert parse(["eval", "mlm", "--model", "m", "--data", "c.txt", "--output-dir", "o"])[2].runtime.backend == "torch"


def test_runtime_options_hold_the_chosen_backend_only() -> None:
    _, _, config = parse(["eval", *BASE, "--backend", "ort", "--provider", "cpu", "--reduce-range"])
    own = config.runtime.own
    assert isinstance(own, OrtOptions) and own.providers == ("cpu",) and own.reduce_range is True
    assert not hasattr(config.runtime, "torch") and not hasattr(config.runtime, "openvino")
    assert type(RuntimeOptions(backend="openvino").own).__name__ == "OpenVinoOptions"
    with pytest.raises(UsageError, match="options of another backend"):
        RuntimeOptions(backend="torch", own=OrtOptions())


def test_null_backend_takes_no_compliance_test() -> None:
    with pytest.raises(UsageError, match="no --compliance"):
        parse(["bench", *BASE, "--backend", "null", "--compliance", "TEST01"])


def test_the_refusal_comes_before_any_model_or_library_is_loaded(tmp_path: Path) -> None:
    """The whole command, for a bert-large preset: exit 2, one line, and neither torch nor onnxruntime imported."""
    script = (
        "import sys\n"
        "from bertbench.cli import main\n"
        f"code = main({['eval', *BASE[:3], '--data', str(tmp_path / 'd.json'), '--output-dir', str(tmp_path / 'o')]!r}"
        " + sys.argv[1:])\n"
        "heavy = sorted(m for m in ('torch', 'onnxruntime', 'openvino', 'transformers') if m in sys.modules)\n"
        "print(f'EXIT {code} HEAVY {heavy}')\n"
    )
    for extra in (
        ["--backend", "openvino", "--device", "cuda"],
        ["--backend", "ort", "--precision", "int8", "--quantization", "static"],
    ):
        proc = subprocess.run([sys.executable, "-c", script, *extra], capture_output=True, text=True, timeout=60)
        errors = [line for line in proc.stderr.splitlines() if line.strip()]
        assert "EXIT 2 HEAVY []" in proc.stdout, (proc.stdout, proc.stderr)
        assert len(errors) == 1 and errors[0].startswith("bertbench: error: --"), errors
        assert not (tmp_path / "o").exists()


def test_run_dry_run_names_the_impossible_case(tmp_path: Path, capsys) -> None:
    workload = tmp_path / "w.yaml"
    cases = [
        {"name": "fine", "job": "bench", "task": "sst2", "options": {"model": "bert-large", "data": "x.tsv"}},
        {
            "name": "ov-int8",
            "job": "eval",
            "task": "sst2",
            "options": {"model": "bert-large", "data": "x.tsv", "backend": "openvino", "precision": "int8"},
        },
    ]
    workload.write_text(json.dumps({"name": "w", "description": "impossible", "cases": cases}))
    code = main(["run", str(workload), "--dry-run", "--store", str(tmp_path / "s.sqlite")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0, err
    assert str(workload) in err and "case ov-int8" in err and "openvino offers static INT8 only" in err
