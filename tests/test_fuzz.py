"""Property-based fuzzing of everything a user hands bertbench: SQuAD JSON, SST-2 TSV, corpora, model directories
and option values, through the real CLI entry point in-process.

The property, for every input: the exit code is 0, 1, 2 or 3 (never the internal-error 70), stderr holds no
traceback and at most a few lines, and nothing is half-written (no temporary file left, no metrics.json from a
failed run, no empty output directory). Inputs are drawn from a fixed seed (derandomize), so CI replays the same
cases; `BERTBENCH_FUZZ_EXAMPLES` scales the count for a longer local hunt.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

from bertbench.cli import main
from bertbench.models import BertConfig, BertForSequenceClassification, save_model
from bertbench.models.loading import minilm_directory
from bertbench.models.tokenizer import WordPieceTokenizer
from bertbench.results.record import RunRecord
from bertbench.results.store import SCHEMA_VERSION, ResultsStore

from .conftest import DATA

pytestmark = pytest.mark.e2e  # whole commands, processes and runtimes: `pytest -m 'not e2e'` skips them

SCALE = float(os.environ.get("BERTBENCH_FUZZ_EXAMPLES", "1"))
ALLOWED_EXIT = {0, 1, 2, 3}
MAX_STDERR_LINES = 6


def fuzz(examples: int) -> settings:
    return settings(
        max_examples=max(1, int(examples * SCALE)),
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def run_cli(workdir: Path, build_argv: Callable[[Path], list[str]]) -> None:
    """Run one command into a fresh output directory and check the property."""
    scratch = Path(tempfile.mkdtemp(dir=workdir))
    out = scratch / "out"
    err, sink = io.StringIO(), io.StringIO()
    argv = [*build_argv(out), "--store", str(workdir / "store.sqlite")]
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(sink):
        code = main(argv)
    text = err.getvalue()
    lines = [line for line in text.splitlines() if line.strip()]
    assert code in ALLOWED_EXIT, f"exit {code} for {argv}: {text}"
    assert "Traceback" not in text, text
    assert len(lines) <= MAX_STDERR_LINES, text
    if code != 0:
        assert sum(line.startswith("bertbench: error") for line in lines) == 1, text
        assert not (out / "metrics.json").exists()
        assert not out.exists() or any(out.iterdir()), "an empty output directory was left behind"
    leftovers = [p for p in scratch.rglob("*") if p.name.endswith(".tmp") or ".tmp." in p.name]
    leftovers += [p for p in (workdir / "cache").rglob("*.tmp")] if (workdir / "cache").exists() else []
    assert not leftovers, f"half-written: {leftovers}"
    shutil.rmtree(scratch, ignore_errors=True)


def common(workdir: Path, out: Path) -> list[str]:
    return ["--output-dir", str(out), "--cache-dir", str(workdir / "cache"), "--no-progress", "--threads", "1"]


# ---- strategies -------------------------------------------------------------------------------------------------

TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    TEXT,
)
ANY_JSON = st.recursive(
    SCALAR, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3), max_leaves=8
)


@st.composite
def squad_question(draw: st.DrawFn, context: str) -> dict:
    """A question whose fields are each either plausible or hostile."""
    start = draw(st.integers(0, max(0, len(context) - 1)))
    length = draw(st.integers(1, 12))
    answer = {"text": context[start : start + length] or "x", "answer_start": start}
    if draw(st.booleans()):
        answer[draw(st.sampled_from(["text", "answer_start"]))] = draw(SCALAR)
    qa = {"id": draw(st.one_of(st.text(min_size=1, max_size=4), SCALAR)), "question": draw(TEXT), "answers": [answer]}
    if draw(st.integers(0, 3)) == 0:
        qa[draw(st.sampled_from(["id", "question", "answers", "is_impossible"]))] = draw(ANY_JSON)
    if draw(st.integers(0, 5)) == 0:
        del qa[draw(st.sampled_from(["id", "question", "answers"]))]
    return qa


@st.composite
def squad_document(draw: st.DrawFn) -> str:
    """A SQuAD file: mostly the official layout with hostile fields, sometimes any JSON, sometimes not JSON."""
    kind = draw(st.sampled_from(["layout", "layout", "layout", "any-json", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200)).decode("latin-1")
    if kind == "any-json":
        return json.dumps(draw(ANY_JSON))
    paragraphs = []
    for _ in range(draw(st.integers(1, 3))):
        context = draw(st.one_of(st.text(min_size=1, max_size=300), SCALAR))
        qas = [
            draw(squad_question(context if isinstance(context, str) else "")) for _ in range(draw(st.integers(0, 3)))
        ]
        paragraph = {"context": context, "qas": qas if draw(st.integers(0, 6)) else draw(ANY_JSON)}
        paragraphs.append(paragraph)
    data = [{"title": draw(TEXT), "paragraphs": paragraphs}]
    return json.dumps({"version": "1.1", "data": data if draw(st.integers(0, 8)) else draw(ANY_JSON)})


SST2_CELL = st.one_of(TEXT, st.sampled_from(["0", "1", "7", "pos", "-1", "", " 1", "1.0"]))
SST2_ROW = st.lists(SST2_CELL, max_size=4).map("\t".join)
SST2_HEADER = st.sampled_from(["sentence\tlabel", "sentence\tlabel", "index\tsentence", "label\tsentence", "", "x"])
SST2_FILE = st.one_of(
    st.builds(lambda header, rows: "\n".join([header, *rows]) + "\n", SST2_HEADER, st.lists(SST2_ROW, max_size=10)),
    st.binary(max_size=120).map(lambda raw: raw.decode("latin-1")),
)
CORPUS = st.one_of(
    st.lists(st.one_of(TEXT, st.just(""), st.text(min_size=200, max_size=2000)), max_size=12).map("\n".join),
    st.binary(max_size=200).map(lambda raw: raw.decode("latin-1")),
)


def write(path: Path, text: str, raw: bool = False) -> Path:
    path.write_bytes(text.encode("latin-1") if raw else text.encode("utf-8", "surrogatepass"))
    return path


# ---- families -------------------------------------------------------------------------------------------------


@fuzz(40)
@given(document=squad_document())
def test_fuzz_squad_json(workdir: Path, document: str) -> None:
    data = write(Path(tempfile.mkstemp(dir=workdir, suffix=".json")[1]), document)
    options = ["--max-seq-length", "64", "--doc-stride", "32", "--max-query-length", "16"]
    run_cli(
        workdir,
        lambda out: ["eval", "squad", "--model", "bert-tiny", "--data", str(data), *options, *common(workdir, out)],
    )


@fuzz(40)
@given(content=SST2_FILE, train=st.booleans())
def test_fuzz_sst2_tsv(workdir: Path, content: str, train: bool) -> None:
    data = write(Path(tempfile.mkstemp(dir=workdir, suffix=".tsv")[1]), content)
    if train:
        argv = ["finetune", "sst2", "--model", "bert-tiny", "--train", str(data), "--max-steps", "1"]
    else:
        argv = ["eval", "sst2", "--model", "bert-tiny", "--data", str(data)]
    run_cli(workdir, lambda out: [*argv, "--max-seq-length", "32", *common(workdir, out)])


@fuzz(24)
@given(corpus=CORPUS)
def test_fuzz_corpus(workdir: Path, corpus: str) -> None:
    data = write(Path(tempfile.mkstemp(dir=workdir, suffix=".txt")[1]), corpus)
    options = ["--max-seq-length", "32", "--max-samples", "16"]
    run_cli(
        workdir,
        lambda out: ["eval", "mlm", "--model", "bert-tiny", "--data", str(data), *options, *common(workdir, out)],
    )


# ---- model directories ------------------------------------------------------------------------------------------

CONFIG_KEYS = [
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "max_position_embeddings",
    "type_vocab_size",
    "layer_norm_eps",
    "hidden_act",
    "hidden_dropout_prob",
    "pad_token_id",
    "model_type",
    "position_embedding_type",
]


@pytest.fixture(scope="module")
def model_template(workdir: Path) -> Path:
    """A small real model directory (bert-tiny shapes, the MiniLM tokenizer) to damage."""
    directory = workdir / "template"
    config = BertConfig.preset("bert-tiny")
    model = BertForSequenceClassification(config)
    model.init_weights(torch.Generator().manual_seed(0))
    save_model(model, WordPieceTokenizer.from_directory(minilm_directory()), directory)
    return directory


@st.composite
def model_damage(draw: st.DrawFn) -> list[tuple]:
    """A list of damages: (what, arguments)."""
    damages = []
    for _ in range(draw(st.integers(1, 2))):
        what = draw(
            st.sampled_from(["config-field", "config-bytes", "truncate", "reshape", "drop-tensor", "tokenizer"])
        )
        if what == "config-field":
            damages.append((what, draw(st.sampled_from(CONFIG_KEYS)), draw(st.one_of(SCALAR, st.integers(-4, 5000)))))
        elif what == "config-bytes":
            damages.append((what, draw(st.binary(max_size=60))))
        elif what == "truncate":
            damages.append((what, draw(st.floats(0.0, 0.999))))
        elif what in ("reshape", "drop-tensor"):
            damages.append((what, draw(st.integers(0, 10_000))))
        else:
            damages.append((what, draw(st.binary(max_size=40))))
    return damages


def apply_damage(directory: Path, damages: list[tuple]) -> None:
    for what, *args in damages:
        weights, config = directory / "model.safetensors", directory / "config.json"
        if what == "config-field" and config.exists():
            try:
                raw = json.loads(config.read_text())
            except (ValueError, UnicodeDecodeError):
                continue
            raw[args[0]] = args[1]
            config.write_text(json.dumps(raw))
        elif what == "config-bytes":
            config.write_bytes(args[0])
        elif what == "truncate" and weights.exists():
            weights.write_bytes(weights.read_bytes()[: int(weights.stat().st_size * args[0])])
        elif what in ("reshape", "drop-tensor") and weights.exists():
            try:
                state = load_file(str(weights))
            except Exception:
                continue
            name = sorted(state)[args[0] % len(state)]
            if what == "drop-tensor":
                del state[name]
            else:
                state[name] = state[name].reshape(-1)[: max(1, state[name].numel() // 2)].clone()
            save_file(state, str(weights))
        elif what == "tokenizer":
            for name in ("tokenizer.json", "vocab.txt"):
                if (directory / name).exists():
                    (directory / name).write_bytes(args[0])


@fuzz(32)
@given(damages=model_damage())
def test_fuzz_model_directory(workdir: Path, model_template: Path, damages: list[tuple]) -> None:
    directory = Path(tempfile.mkdtemp(dir=workdir)) / "model"
    shutil.copytree(model_template, directory)
    apply_damage(directory, damages)
    data = DATA / "sst2" / "dev.tsv"
    argv = ["eval", "sst2", "--model", str(directory), "--data", str(data), "--max-samples", "8"]
    run_cli(workdir, lambda out: [*argv, "--max-seq-length", "32", *common(workdir, out)])


# ---- option values ----------------------------------------------------------------------------------------------

VALUE = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["0", "1", "-1", "2", "1e309", "nan", "inf", "-inf", "0x10", "1_000", "", "auto", "32,0", "1,8"]),
    TEXT,
)
EVAL_OPTIONS = [
    "--batch-size",
    "--max-samples",
    "--max-seq-length",
    "--threads",
    "--seed",
    "--accuracy-target",
    "--padding",
    "--precision",
    "--backend",
    "--quantization",
    "--calibration-samples",
]
TRAIN_OPTIONS = [
    "--learning-rate",
    "--warmup-ratio",
    "--warmup-steps",
    "--weight-decay",
    "--dropout",
    "--batch-size",
    "--grad-accum",
    "--max-grad-norm",
    "--decay-power",
    "--keep-checkpoints",
    "--save-steps",
    "--log-every",
    "--epochs",
    "--seed",
    "--max-seq-length",
    "--eval-batch-size",
]


@fuzz(32)
@given(chosen=st.lists(st.tuples(st.sampled_from(EVAL_OPTIONS), VALUE), min_size=1, max_size=2))
def test_fuzz_eval_options(workdir: Path, chosen: list[tuple[str, str]]) -> None:
    data = DATA / "sst2" / "dev.tsv"
    options = [f"{name}={value}" for name, value in chosen]
    argv = ["eval", "sst2", "--model", "bert-tiny", "--data", str(data), "--max-samples", "16"]
    run_cli(workdir, lambda out: [*argv, *common(workdir, out), *options])


@fuzz(16)
@given(chosen=st.lists(st.tuples(st.sampled_from(TRAIN_OPTIONS), VALUE), min_size=1, max_size=2))
def test_fuzz_training_options(workdir: Path, chosen: list[tuple[str, str]]) -> None:
    data = DATA / "sst2" / "dev.tsv"
    options = [f"{name}={value}" for name, value in chosen]
    argv = ["finetune", "sst2", "--model", "bert-tiny", "--train", str(data), "--max-train-samples", "32"]
    # The step budget comes last so that a fuzzed value can never ask for a long run.
    run_cli(workdir, lambda out: [*argv, *common(workdir, out), *options, "--max-steps", "1"])


# ---- workload files ---------------------------------------------------------------------------------------------

ESCAPE = "fuzz-escape.txt"  # a file outside every output root that no workload may write
GOOD_NAME = st.sampled_from(["ok", "a-b", "x.y", "c1", "d_2", "Case9", "e"])
HOSTILE_NAME = st.one_of(
    st.sampled_from(["../up", "/abs/x", "x/", ".hidden", "logs", "REPORT.html", "", "a b", "x" * 130, "{x}", "OK"]),
    st.text(alphabet="ab./-_{}A", min_size=1, max_size=8),
)
NAME = st.one_of(GOOD_NAME, GOOD_NAME, GOOD_NAME, GOOD_NAME, HOSTILE_NAME)
CORPUS_OUTPUT = st.sampled_from(["{output}/c.txt", "{output}/sub/c.txt", f"../{ESCAPE}", "{output}/../../" + ESCAPE])
OPTION_VALUE = st.one_of(SCALAR, st.lists(st.one_of(st.integers(0, 40), TEXT), max_size=3))


FAULTS = ("none", "workload-name", "case-name", "output", "matrix", "needs", "processes", "job", "options", "bytes")


@st.composite
def workload_document(draw: st.DrawFn, escape: Path) -> tuple[str, bool]:
    """(a workload file, whether every case is a build-corpus case: cheap enough to run for real). Each file has
    one or two faults (or none): a name that is a path, an output outside the case's folder, a huge matrix, …"""
    faults = set(draw(st.lists(st.sampled_from(FAULTS), min_size=1, max_size=2)))
    if "bytes" in faults:
        return draw(st.one_of(TEXT, st.binary(max_size=80).map(lambda b: b.decode("latin-1")))), False
    names = draw(st.lists(GOOD_NAME, min_size=1, max_size=3, unique=True))
    cases = []
    for i, name in enumerate(names):
        faulty = i == len(names) - 1  # the last case carries the faults
        case: dict = {"name": draw(HOSTILE_NAME) if faulty and "case-name" in faults else name, "job": "build-corpus"}
        output = draw(st.one_of(CORPUS_OUTPUT, st.just(str(escape)))) if faulty and "output" in faults else None
        case["options"] = {"sst2": ["{data}/sst2/dev.tsv"], "output": output or "{output}/c.txt"}
        if faulty and "job" in faults:
            case["job"] = draw(st.sampled_from(["eval", "bench", "pretrain", "x"]))
            case["task"] = draw(st.sampled_from(["sst2", "squad", "mlm", "nope"]))
            case["options"] = {"model": "bert-tiny", "data": "{data}/sst2/dev.tsv"}
        if faulty and "options" in faults:
            for key in draw(st.lists(st.sampled_from(["batch_size", "precision", "frobnicate", "output"]), max_size=2)):
                case["options"][key] = draw(OPTION_VALUE)
        if faulty and "matrix" in faults:
            sizes = draw(st.lists(st.sampled_from([0, 1, 2, 5000]), min_size=1, max_size=3))
            axes = ["seed", "threads", "batch_size"]
            case["matrix"] = {axes[k]: list(range(size)) for k, size in enumerate(sizes)}
        if faulty and "needs" in faults:
            case["needs"] = draw(st.lists(st.one_of(st.sampled_from(names), HOSTILE_NAME), min_size=1, max_size=2))
        if faulty and "processes" in faults:
            case["processes"] = draw(st.one_of(st.integers(-2, 100_000), SCALAR))
        cases.append(case)
    workload_name = draw(HOSTILE_NAME) if "workload-name" in faults else "fuzz"
    document = {"name": workload_name, "description": "fuzz", "cases": cases}
    cheap = all(c["job"] == "build-corpus" for c in cases)
    return yaml.safe_dump(document, allow_unicode=True), cheap


def _tree(root: Path, skip: Path) -> dict[str, int]:
    return {str(p): p.stat().st_size for p in root.rglob("*") if p.is_file() and skip not in p.parents}


@fuzz(20)
@given(data=st.data())
def test_fuzz_workload_files(workdir: Path, data: st.DataObject) -> None:
    scratch = Path(tempfile.mkdtemp(dir=workdir))
    escape = scratch / ESCAPE
    text, cheap = data.draw(workload_document(escape))
    path = write(scratch / "w.yaml", text)
    root, store = scratch / "runs", scratch / "store.sqlite"
    before = _tree(scratch, root)
    argv = ["run", str(path), "--data-dir", str(DATA), "--output-root", str(root), "--store", str(store)]
    argv += ["--no-progress", *([] if cheap else ["--dry-run"])]
    err, sink = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(sink):
        code = main(argv)
    lines = [line for line in err.getvalue().splitlines() if line.strip()]
    assert code in {0, 1, 2}, f"exit {code}: {err.getvalue()}"
    assert "Traceback" not in err.getvalue()
    if code != 0:
        assert sum(line.startswith("bertbench: error") for line in lines) == 1, err.getvalue()
    after = _tree(scratch, root)
    touched = {k for k in after if before.get(k) != after[k]} - {str(store), str(path)}
    touched = {k for k in touched if not k.startswith(str(store))}  # the store's own WAL and pending files
    assert not touched and not escape.exists() and not (workdir / ESCAPE).exists(), touched
    if store.exists():
        running = ResultsStore(store).runs("status = 'running'")
        assert not running, [r.command for r in running]
    shutil.rmtree(scratch, ignore_errors=True)


# ---- store files ------------------------------------------------------------------------------------------------


@st.composite
def store_damage(draw: st.DrawFn) -> tuple[str, object]:
    kind = draw(st.sampled_from(["bytes", "truncate", "foreign", "newer", "json-row", "null-row", "flip"]))
    if kind == "bytes":
        return kind, draw(st.binary(max_size=600))
    if kind in ("truncate", "flip"):
        return kind, draw(st.floats(0.0, 0.999))
    if kind in ("json-row", "null-row"):
        return kind, draw(st.sampled_from(["config", "metrics", "environment"]))
    return kind, draw(st.integers(SCHEMA_VERSION + 1, 999))


@pytest.fixture(scope="module")
def store_template(workdir: Path) -> Path:
    """A real store with a few finished rows, to damage."""
    path = workdir / "template.sqlite"
    store = ResultsStore(path)
    for value in (0.5, 0.6, 0.7):
        config = {"task": "sst2", "model": "m", "backend": "torch", "precision": "fp32", "batch_size": 32}
        store.add(
            RunRecord("eval", config, {"accuracy": value, "throughput": 10 * value}, environment={"git_sha": "x"})
        )
    return path


@fuzz(30)
@given(damage=store_damage())
def test_fuzz_store_files(workdir: Path, store_template: Path, damage: tuple[str, object]) -> None:
    scratch = Path(tempfile.mkdtemp(dir=workdir))
    path = scratch / "s.sqlite"
    kind, arg = damage
    shutil.copy(store_template, path)
    if kind == "bytes":
        path.write_bytes(arg)
    elif kind == "truncate":
        path.write_bytes(path.read_bytes()[: int(path.stat().st_size * arg)])
    elif kind == "flip":
        raw = bytearray(path.read_bytes())
        raw[int(len(raw) * arg)] ^= 0xFF
        path.write_bytes(bytes(raw))
    else:
        db = sqlite3.connect(path)
        if kind == "foreign":
            db.execute("PRAGMA user_version = 0")
            db.execute("DROP TABLE runs")
            db.execute("CREATE TABLE notes (x TEXT)")
        elif kind == "newer":
            db.execute(f"PRAGMA user_version = {arg}")
        else:
            db.execute(f"UPDATE runs SET {arg} = ? WHERE id = 2", ("{broken" if kind == "json-row" else "null",))
        db.commit()
        db.close()
    for argv in (["report", "--format", "json"], ["results", "import", str(scratch / "nothing-here")]):
        err, sink = io.StringIO(), io.StringIO()
        (scratch / "nothing-here").mkdir(exist_ok=True)
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(sink):
            code = main([*argv, "--store", str(path)])
        lines = [line for line in err.getvalue().splitlines() if line.strip()]
        assert code in {0, 1}, f"exit {code} for {kind}: {err.getvalue()}"
        assert "Traceback" not in err.getvalue() and len(lines) <= MAX_STDERR_LINES
        if code != 0:
            errors = [line for line in lines if line.startswith("bertbench: error")]
            assert len(errors) == 1 and str(path) in errors[0], err.getvalue()
    shutil.rmtree(scratch, ignore_errors=True)
