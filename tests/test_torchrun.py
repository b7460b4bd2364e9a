"""torchrun with 2 gloo processes: one optimisation step equals the single-process step on the same global batch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from bertbench.cli import main
from bertbench.models import BertForQuestionAnswering, load_model, resolve_model

from .conftest import SQUAD_DEV, SQUAD_TRAIN

pytestmark = pytest.mark.e2e  # whole commands, processes and runtimes: `pytest -m 'not e2e'` skips them


def args(out: Path, cache_dir: Path, batch_size: int) -> list[str]:
    return [
        "finetune",
        "squad",
        "--model",
        "bert-tiny",
        "--train",
        str(SQUAD_TRAIN),
        "--max-train-samples",
        "40",
        "--eval",
        str(SQUAD_DEV),
        "--max-eval-samples",
        "30",
        "--output-dir",
        str(out),
        "--cache-dir",
        str(cache_dir),
        "--max-steps",
        "1",
        "--warmup-steps",
        "0",
        "--batch-size",
        str(batch_size),
        "--learning-rate",
        "1e-3",
        "--dropout",
        "0",
        "--threads",
        "1",
        "--no-progress",
        "--max-seq-length",
        "128",
        "--doc-stride",
        "64",
        "--dist-timeout",
        "60",
    ]


@pytest.mark.timeout(300)
def test_two_gloo_processes_match_one_process(tmp_path: Path, cache_dir: Path) -> None:
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or "torchrun"
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
    distributed = tmp_path / "two"
    proc = subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "bertbench", *args(distributed, cache_dir, 4)],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]

    single = tmp_path / "one"
    assert main(args(single, cache_dir, 8)) == 0  # same global batch of 8, same thread count per process

    two = load_file(str(distributed / "model.safetensors"))
    one = load_file(str(single / "model.safetensors"))
    assert one.keys() == two.keys()
    assert max(float((two[k] - one[k]).abs().max()) for k in two) <= 1e-5
    # ... and the step did move the weights (a no-op on both sides would also "match").
    initial = load_model(resolve_model("bert-tiny"), BertForQuestionAnswering).model.state_dict()
    assert max(float((one[k] - initial[k]).abs().max()) for k in one) > 1e-4
    record_two = json.loads((distributed / "metrics.json").read_text())
    record_one = json.loads((single / "metrics.json").read_text())
    assert record_two["world_size"] == 2 and record_one["world_size"] == 1
    assert abs(record_two["final_loss"] - record_one["final_loss"]) < 1e-5
    # Distributed evaluation scores every question once (no duplicated samples) and agrees with one process.
    assert record_two["f1"] == pytest.approx(record_one["f1"], abs=1e-6)
    assert len(json.loads((distributed / "eval" / "epoch-1" / "predictions.json").read_text())) == 30
    # Only rank 0 wrote: one log, one set of checkpoints.
    assert len(list((distributed / "checkpoints").glob("step-*"))) == 1
    assert (distributed / "train_log.jsonl").read_text().count("\n") >= 1
