"""Training across nodes through torchrun's own c10d rendezvous: two launchers on this host, one process each,
give the weights of one node with two processes; both nodes killed and started again resume to them; a workload's
`nodes:` key prints each node's command and runs the nodes here when they are all this host."""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from bertbench.cli import main
from bertbench.results.store import ResultsStore

from .conftest import DATA, hold_at, wait_for_hold
from .test_kill import completed_checkpoints, max_difference
from .test_pretrain import pretrain_args

COMMON = ("--warmup-steps", "0", "--dropout", "0", "--threads", "1", "--dist-timeout", "60", "--batch-size", "8")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launch_nodes(
    args: list[str], nodes: int = 2, nnodes: str | None = None, env: dict[str, str] | None = None
) -> list[subprocess.Popen]:
    """The command each node runs, as a user starts it: torchrun with c10d rendezvous, one process per node
    (`nnodes` MIN:MAX for the elastic form). No GLOO_SOCKET_IFNAME: bertbench picks the interface towards the
    rendezvous host itself."""
    endpoint = f"127.0.0.1:{free_port()}"
    env = {k: v for k, v in (env or os.environ).items() if k != "GLOO_SOCKET_IFNAME"} | {"OMP_NUM_THREADS": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nnodes", nnodes or str(nodes)]
    rendezvous = ["--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint, "--nproc-per-node", "1"]
    return [
        subprocess.Popen(
            [*torchrun, "--node-rank", str(rank), *rendezvous, "-m", "bertbench", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            start_new_session=True,
        )
        for rank in range(nodes)
    ]


def one_node_two_processes(args: list[str]) -> None:
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    proc = subprocess.run([*command, "-m", "bertbench", *args], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.e2e
@pytest.mark.timeout(600)
def test_two_nodes_killed_and_started_again_end_with_one_nodes_weights(
    tmp_path: Path, cache_dir: Path, small_corpora
) -> None:
    extra = (*COMMON, "--max-steps", "24", "--save-steps", "2")
    reference = tmp_path / "one-node"
    one_node_two_processes(pretrain_args(reference, cache_dir, small_corpora, *extra))

    out = tmp_path / "two-nodes"
    env, marker = hold_at(tmp_path, "checkpoint", 6)  # global rank 0 holds after step 6's checkpoint
    nodes = launch_nodes(pretrain_args(out, cache_dir, small_corpora, *extra), env=env)
    wait_for_hold(marker, *nodes)
    for node in nodes:  # both machines go down at once
        os.killpg(node.pid, signal.SIGKILL)
        node.wait(timeout=60)
    assert completed_checkpoints(out)[-1].name == "step-00000006" and not (out / "metrics.json").exists()

    again = launch_nodes(pretrain_args(out, cache_dir, small_corpora, *extra, "--resume"))
    for node in again:
        output, _ = node.communicate(timeout=300)
        assert node.returncode == 0, output[-3000:]
    record = json.loads((out / "metrics.json").read_text())
    assert record["resumed_from_step"] == 6
    assert (record["nodes"], record["processes_per_node"], record["world_size"]) == (2, 1, 2)
    assert record["gloo_interface"]  # chosen from the rendezvous address, not left to gloo's guess
    assert max_difference(reference, out) <= 1e-6


@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_the_elastic_form_trains_on_the_nodes_that_come(tmp_path: Path, cache_dir: Path, small_corpora) -> None:
    out = tmp_path / "elastic"
    nodes = launch_nodes(pretrain_args(out, cache_dir, small_corpora, *COMMON, "--max-steps", "2"), nnodes="1:2")
    for node in nodes:
        output, _ = node.communicate(timeout=240)
        assert node.returncode == 0, output[-3000:]
    record = json.loads((out / "metrics.json").read_text())
    assert (record["nodes"], record["world_size"]) == (2, 2)  # both launchers joined the one rendezvous


WORKLOAD = """
name: nodes
description: one fine-tune on two nodes of this host
cases:
  - name: tune
    job: finetune
    task: squad
    nodes: 2
    options:
      model: bert-tiny
      train: "{data}/squad/train.json"
      max_train_samples: 40
      max_seq_length: 128
      doc_stride: 64
      batch_size: 4
      max_steps: 2
      warmup_steps: 0
      learning_rate: 1.0e-3
      dropout: 0
      threads: 1
      dist_timeout: 60
"""


def torchrun_lines(printed: str) -> list[list[str]]:
    """The torchrun command lines `run --dry-run` printed, split as a shell would."""
    return [shlex.split(line) for line in printed.splitlines() if "torch.distributed.run" in line]


def _run_argv(tmp_path: Path, workload: Path, cache_dir: Path) -> list[str]:
    args = ["run", str(workload), "--data-dir", str(DATA), "--output-root", str(tmp_path / "runs")]
    return [*args, "--store", str(tmp_path / "s.sqlite"), "--cache-dir", str(cache_dir), "--no-progress"]


@pytest.mark.e2e
@pytest.mark.timeout(600)
def test_a_workload_case_on_two_nodes_of_this_host_runs_them_and_records_the_shape(
    tmp_path: Path, cache_dir: Path, capsys
) -> None:
    workload = tmp_path / "nodes.yaml"
    workload.write_text(WORKLOAD)
    assert main([*_run_argv(tmp_path, workload, cache_dir), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    commands = torchrun_lines(printed)
    assert [c[c.index("--node-rank") + 1] for c in commands] == ["0", "1"]
    assert all(c[c.index("--nnodes") + 1] == "2" and c[c.index("--rdzv-backend") + 1] == "c10d" for c in commands)

    assert main(_run_argv(tmp_path, workload, cache_dir)) == 0
    case = tmp_path / "runs" / "nodes" / "tune"
    record = json.loads((case / "metrics.json").read_text())
    assert (record["nodes"], record["processes_per_node"], record["world_size"]) == (2, 1, 2)
    rows = ResultsStore(tmp_path / "s.sqlite").runs("case_name = 'tune'")
    assert [row.status for row in rows] == ["finished"]  # one row, written once (by global rank 0)

    # the same fine-tune on one node with two processes: the same weights
    options = ["--model", "bert-tiny", "--train", str(DATA / "squad" / "train.json"), "--max-train-samples", "40"]
    options += ["--max-seq-length", "128", "--doc-stride", "64", "--batch-size", "4", "--max-steps", "2"]
    options += ["--warmup-steps", "0", "--learning-rate", "1e-3", "--dropout", "0", "--threads", "1"]
    one = tmp_path / "one-node"
    options += ["--output-dir", str(one), "--cache-dir", str(cache_dir), "--no-progress", "--dist-timeout", "60"]
    one_node_two_processes(["finetune", "squad", *options])
    assert max_difference(one, case) <= 1e-6


REMOTE = WORKLOAD.replace("nodes: 2", "nodes: [trainer-a.example, trainer-b.example]")


def test_nodes_on_other_hosts_print_each_nodes_command_and_are_not_run_here(
    tmp_path: Path, cache_dir: Path, capsys
) -> None:
    workload = tmp_path / "remote.yaml"
    workload.write_text(REMOTE)
    assert main([*_run_argv(tmp_path, workload, cache_dir), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "# tune, node 0 (trainer-a.example):" in printed and "# tune, node 1 (trainer-b.example):" in printed
    commands = torchrun_lines(printed)
    assert {c[c.index("--rdzv-endpoint") + 1] for c in commands} == {"trainer-a.example:29400"}
    assert main(_run_argv(tmp_path, workload, cache_dir)) == 2
    error = capsys.readouterr().err
    assert "runs on trainer-a.example, trainer-b.example" in error and "--dry-run" in error
    assert not (tmp_path / "runs" / "remote").exists() or not any((tmp_path / "runs" / "remote").iterdir())


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("nodes: 2", "nodes: 0"), "nodes: must be between 1 and 64"),
        (("nodes: 2", "nodes: [a, 'b c']"), "'b c' is not a host name"),
        (("nodes: 2", "nodes: true"), "nodes: must be an integer or a list"),
        (("job: finetune", "job: eval"), "nodes: only"),
    ],
)
def test_bad_nodes_are_one_line(tmp_path: Path, cache_dir: Path, capsys, edit: tuple[str, str], message: str) -> None:
    workload = tmp_path / "bad.yaml"
    text = WORKLOAD.replace(*edit)
    if edit[1] == "job: eval":
        text = text.replace("      train:", "      data:").replace("max_train_samples", "max_samples")
    workload.write_text(text)
    assert main([*_run_argv(tmp_path, workload, cache_dir), "--dry-run"]) == 2
    error = capsys.readouterr().err
    assert message in error and str(workload) in error
