"""The seeds' other tasks — named entities (CLUENER2020, WNUT-17), TNEWS, GLUE MRPC/RTE/STS-B — on real data:
readers and their one-line errors, metrics against the official tools (seqeval, scikit-learn, scipy) and hand-
computed CLUENER spans, windows of long sentences, and the pipeline end to end (finetune, eval on the runtimes,
LoadGen accuracy mode, prune, transformers loading the saved models with equal outputs)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bertbench.cache import Cache
from bertbench.cli import main
from bertbench.errors import BertbenchError
from bertbench.tasks.labels import LabelSet
from bertbench.tasks.ner.data import read_ner, spans_to_tags
from bertbench.tasks.ner.features import IGNORED
from bertbench.tasks.ner.metrics import entities, entity_scores
from bertbench.tasks.ner.options import NerOptions
from bertbench.tasks.ner.task import NER
from bertbench.tasks.registry import get_task
from bertbench.tasks.sentences import metrics as glue
from bertbench.tasks.sentences.options import SentenceOptions

from .conftest import DATA

CLUENER_TRAIN, CLUENER_DEV = DATA / "cluener" / "train.json", DATA / "cluener" / "dev.json"
WNUT_TRAIN, WNUT_DEV = DATA / "wnut17" / "train.conll", DATA / "wnut17" / "dev.conll"
GLUE = DATA / "glue"
# task, training file, dev file
CASES = {
    "cluener": ("ner", CLUENER_TRAIN, CLUENER_DEV),
    "wnut17": ("ner", WNUT_TRAIN, WNUT_DEV),
    "tnews": ("tnews", DATA / "tnews" / "train.json", DATA / "tnews" / "dev.json"),
    "mrpc": ("mrpc", GLUE / "MRPC" / "train.tsv", GLUE / "MRPC" / "dev.tsv"),
    "rte": ("rte", GLUE / "RTE" / "train.tsv", GLUE / "RTE" / "dev.tsv"),
    "stsb": ("stsb", GLUE / "STS-B" / "train.tsv", GLUE / "STS-B" / "dev.tsv"),
}


# ---------------------------------------------------------------- readers on the real files


def test_real_files_parse_as_their_readme_counts_them() -> None:
    assert len(read_ner(CLUENER_DEV).sentences) == 1343 and read_ner(CLUENER_DEV).format == "cluener"
    wnut = read_ner(WNUT_DEV)
    assert len(wnut.sentences) == 1009 and wnut.format == "conll"
    assert {t[2:] for t in wnut.tag_set() if t != "O"} == {
        "person",
        "location",
        "group",
        "creative-work",
        "corporation",
        "product",
    }
    expected = {"tnews": 10000, "mrpc": 408, "rte": 277, "stsb": 1500}
    for name, count in expected.items():
        task = get_task(name)
        data = task.family.read(CASES[name][2])
        assert len(data.first) == count and data.labels is not None
        assert (data.second is None) == (name == "tnews")
    assert len(get_task("tnews").data_labels(CASES["tnews"][1]).names) == 15
    mrpc = get_task("mrpc").family.read(CASES["mrpc"][2])
    assert mrpc.first[0].startswith("He said the foodservice pie business")  # the BOM is not part of the header
    assert mrpc.second[0].startswith('"The foodservice pie business')  # quotes are text, unbalanced or not


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("tags.conll", "Paris\tB-location\nis\nnice\tO\n", r"tags.conll: line 2: a token without a tag"),
        ("tags.conll", "Paris\tX-location\n", r"line 1: tag 'X-location' is not O or B-/I-/E-/S-TYPE"),
        (
            "spans.json",
            '{"text": "abc", "label": {"name": {"bc": [[1, 2]]}}}\n'
            '{"text": "ab", "label": {"name": {"b": [[1, 5]]}}}\n',
            r"spans.json: line 2: name 'b': span \[1, 5\] lies outside the text \(2 characters\)",
        ),
        ("spans.json", '{"text": "abc", "label": {"name": {"ab": [[1, 2]]}}}\n', r"span \[1, 2\] covers 'bc'"),
    ],
)
def test_bad_ner_files_are_one_line_naming_file_and_row(tmp_path: Path, name: str, content: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(BertbenchError, match=message):
        read_ner(path)


def test_a_tsv_row_with_a_missing_column_is_named(tmp_path: Path) -> None:
    path = tmp_path / "rte.tsv"
    path.write_text("index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\tonly one sentence\tentailment\n")
    with pytest.raises(BertbenchError, match=r"rte.tsv: line 3: 3 fields, the header has 4"):
        get_task("rte").family.read(path)
    path.write_text("index\tsentence1\tlabel\n0\ta\tentailment\n")
    with pytest.raises(BertbenchError, match=r"rte.tsv: line 1: no column 'sentence2'"):
        get_task("rte").family.read(path)


def test_an_unknown_label_in_dev_is_named_with_its_row(tmp_path: Path, tokenizer) -> None:
    dev = tmp_path / "dev.tsv"
    dev.write_text("index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\tc\td\tcontradiction\n")
    model_labels = LabelSet(("entailment", "not_entailment"))
    with pytest.raises(BertbenchError, match=r"dev.tsv: line 3: label 'contradiction' is not one the model predicts"):
        get_task("rte").load_eval_data(dev, tokenizer, SentenceOptions(), Cache(tmp_path / "c"), labels=model_labels)
    conll = tmp_path / "dev.conll"
    conll.write_text("Paris\tB-location\n\nBob\tB-person\n")
    with pytest.raises(BertbenchError, match=r"dev.conll: line 3: label 'B-person' is not one the model predicts"):
        NER.load_eval_data(conll, tokenizer, NerOptions(), Cache(tmp_path / "c"), labels=LabelSet(("O", "B-location")))


# ---------------------------------------------------------------- metrics against the official tools

TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "E-LOC", "S-PER", "I-ORG"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.sampled_from(TAGS), min_size=1, max_size=12), min_size=1, max_size=6), st.randoms())
def test_entity_scores_equal_seqeval_default_mode(gold: list[list[str]], rng) -> None:
    from seqeval.metrics import f1_score, precision_score, recall_score
    from seqeval.metrics.sequence_labeling import get_entities

    predicted = [[rng.choice(TAGS) for _ in sentence] for sentence in gold]
    for sentence in gold:
        assert entities(sentence) == set(get_entities(sentence))
    ours = entity_scores([entities(s) for s in gold], [entities(s) for s in predicted])
    assert ours["f1"] == pytest.approx(f1_score(gold, predicted), abs=1e-12)
    assert ours["precision"] == pytest.approx(precision_score(gold, predicted), abs=1e-12)
    assert ours["recall"] == pytest.approx(recall_score(gold, predicted), abs=1e-12)


def test_glue_metrics_equal_scikit_learn_and_scipy() -> None:
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import accuracy_score, f1_score

    rng = np.random.default_rng(0)
    gold = [str(v) for v in rng.integers(0, 2, 400)]
    predicted = [g if rng.random() < 0.7 else str(1 - int(g)) for g in gold]
    assert glue.accuracy(predicted, gold) == pytest.approx(accuracy_score(gold, predicted), abs=1e-12)
    assert glue.positive_f1(predicted, gold, "1") == pytest.approx(f1_score(gold, predicted, pos_label="1"), abs=1e-12)
    scores, truth = rng.normal(size=300), rng.normal(size=300)
    correlations = glue.correlations(scores.tolist(), truth.tolist())
    assert correlations["pearson"] == pytest.approx(pearsonr(scores, truth)[0], abs=1e-12)
    assert correlations["spearman"] == pytest.approx(spearmanr(scores, truth)[0], abs=1e-12)
    assert glue.correlations([1.0, 1.0], [0.0, 2.0]) == {"pearson": None, "spearman": None}


def test_cluener_spans_scored_by_hand(tmp_path: Path, tokenizer) -> None:
    """Nested, adjacent and sentence-final spans; gold spans as the JSON gives them, predictions from tags."""
    text = "北京大学张三李四在上海"  # 11 characters
    label = {
        "organization": {"北京大学": [[0, 3]]},
        "address": {"北京": [[0, 1]], "上海": [[9, 10]]},  # 北京 nested in 北京大学; 上海 ends the sentence
        "name": {"张三": [[4, 5]], "李四": [[6, 7]]},  # adjacent names
    }
    path = tmp_path / "dev.json"
    path.write_text(json.dumps({"text": text, "label": label}, ensure_ascii=False) + "\n", encoding="utf-8")
    data = read_ner(path)
    sentence = data.sentences[0]
    assert data.overlapping_spans == 1  # the nested address cannot be a BIO tag; it stays a gold span
    assert sentence.tags[:9] == ["B-organization", *["I-organization"] * 3, "B-name", "I-name", "B-name", "I-name", "O"]
    assert sentence.tags[9:] == ["B-address", "I-address"]
    # predicting every taggable span exactly: 4 of 5 gold spans found, nothing wrong predicted
    labels = NER.data_labels(path)
    dataset = NER.load_eval_data(path, tokenizer, NerOptions(), Cache(tmp_path / "c"), labels=labels)
    gold_rows = dataset.windows.label_ids.astype(np.float32)
    _, metrics = NER.score(dataset, {"tags": np.where(gold_rows == IGNORED, 0, gold_rows)}, NerOptions())
    assert metrics["entity_precision"] == 1.0 and metrics["entity_recall"] == pytest.approx(4 / 5)
    assert metrics["f1"] == pytest.approx(2 * 1.0 * 0.8 / 1.8)
    assert metrics["per_type"]["address"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2}
    # one wrong boundary (上海 predicted as 在上海): a false positive and a miss of the same type
    tags, _ = spans_to_tags({("organization", 0, 3), ("name", 4, 5), ("name", 6, 7), ("address", 8, 10)}, 11)
    scores = entity_scores([sentence.spans], [entities(tags)])
    assert (scores["precision"], scores["recall"]) == (pytest.approx(3 / 4), pytest.approx(3 / 5))


def test_a_sentence_longer_than_the_window_is_split_never_cut(tmp_path: Path, tokenizer) -> None:
    words = [f"word{i}" for i in range(150)]
    tags = ["B-person" if i % 7 == 0 else "O" for i in range(150)]
    tags[-1] = "B-location"  # an entity at the very end of the sentence
    path = tmp_path / "long.conll"
    path.write_text("".join(f"{w}\t{t}\n" for w, t in zip(words, tags, strict=True)))
    options = NerOptions(max_seq_length=32, stride=8)
    labels = NER.data_labels(path)
    dataset = NER.load_eval_data(path, tokenizer, options, Cache(tmp_path / "c"), labels=labels)
    assert dataset.num_samples > 1 and dataset.describe()["split_sentences"] == 1
    decided = dataset.windows.word_of[dataset.windows.word_of >= 0]
    assert sorted(decided.tolist()) == list(range(150))  # every word predicted once, from one window
    gold_rows = dataset.windows.label_ids.astype(np.float32)
    predicted, metrics = NER.score(dataset, {"tags": np.where(gold_rows == IGNORED, 0, gold_rows)}, options)
    assert predicted[0] == tags and metrics["f1"] == 1.0
    NER.write_predictions(predicted, tmp_path, dataset)
    lines = (tmp_path / "predictions.conll").read_text().splitlines()
    assert len(lines) == 150 and lines[-1] == "word149\tB-location\tB-location"


def test_token_loss_is_transformers_mean_over_labelled_tokens() -> None:
    torch.manual_seed(0)
    logits = torch.randn(3, 7, 5)
    labels = torch.randint(0, 5, (3, 7))
    labels[0, 4:] = IGNORED
    labels[2, 1:] = IGNORED
    ours = NER.loss((logits,), {"labels": labels}).mean()
    reference = torch.nn.functional.cross_entropy(logits.reshape(-1, 5), labels.reshape(-1), ignore_index=IGNORED)
    assert float(ours) == pytest.approx(float(reference), rel=1e-6)


# ---------------------------------------------------------------- end to end through the CLI


def _finetune(case: str, out: Path, cache_dir: Path, model: str, steps: int, samples: int, lr: str) -> None:
    task, train, dev = CASES[case]
    args = [
        *("finetune", task, "--model", model, "--train", str(train), "--eval", str(dev)),
        *("--max-train-samples", str(samples), "--max-eval-samples", "48", "--max-steps", str(steps)),
        *("--batch-size", "16", "--learning-rate", lr, "--threads", "2", "--no-progress", "--overwrite"),
        *("--output-dir", str(out), "--cache-dir", str(cache_dir), "--log-every", "1"),
    ]
    assert main(args) == 0


@pytest.fixture(scope="session")
def seed_models(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> dict[str, Path]:
    """Every case fine-tuned briefly: bert-tiny for most (fast), MiniLM on WNUT-17 (a model that finds entities)."""
    models = {}
    for case in CASES:
        out = tmp_path_factory.mktemp(f"seed-{case}")
        if case == "wnut17":
            _finetune(case, out, cache_dir, "minilm-l6", steps=60, samples=960, lr="2e-4")
        else:
            _finetune(case, out, cache_dir, "bert-tiny", steps=8, samples=128, lr="1e-3")
        models[case] = out
    return models


def _hf_outputs(directory: Path, task: str) -> tuple[torch.Tensor, torch.Tensor, object]:
    """transformers' and our outputs of the saved model on the same random batch, and transformers' config."""
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

    from bertbench.models import load_model, resolve_model

    head = get_task(task).head
    auto = AutoModelForTokenClassification if head.__name__ == "BertForTokenClassification" else None
    hf = (auto or AutoModelForSequenceClassification).from_pretrained(directory).eval()
    ours = load_model(resolve_model(str(directory)), head).model.eval()
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 8000, (3, 24), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, 15:] = 0
    types = torch.zeros_like(ids)
    types[:, 12:] = 1
    with torch.no_grad():
        return hf(input_ids=ids, attention_mask=mask, token_type_ids=types).logits, ours(ids, mask, types)[0], hf.config


@pytest.mark.e2e
@pytest.mark.parametrize("case", list(CASES))
def test_each_task_finetunes_and_loads_in_transformers_with_equal_outputs(case: str, seed_models) -> None:
    task, train, _ = CASES[case]
    directory = seed_models[case]
    record = json.loads((directory / "metrics.json").read_text())
    for metric in get_task(task).metrics:
        assert metric in record
    losses = [
        e["loss"] for e in map(json.loads, (directory / "train_log.jsonl").read_text().splitlines()) if "loss" in e
    ]
    assert np.isfinite(losses).all() and len(losses) >= 8
    theirs, ours, config = _hf_outputs(directory, task)
    assert torch.allclose(theirs, ours, atol=1e-5)
    expected = get_task(task).data_labels(train)
    assert tuple(config.id2label[i] for i in range(config.num_labels)) == expected.names
    kind = {"ner": None, "stsb": "regression"}.get(task, "single_label_classification")
    assert config.problem_type == kind
    if case == "wnut17":  # MiniLM learnt to lower its loss on real tweets
        assert np.mean(losses[-10:]) < np.mean(losses[:10]) - 0.2


def _official_scores(task: str, out: Path, dev: Path) -> dict[str, float]:
    """The metrics as the official tools compute them from the predictions file eval wrote."""
    if task == "ner" and (out / "predictions.json").exists():  # CLUENER: exact (type, start, end) span matches
        gold_rows = [json.loads(line) for line in dev.read_text(encoding="utf-8").splitlines() if line.strip()]
        rows = [json.loads(line) for line in (out / "predictions.json").read_text(encoding="utf-8").splitlines()]

        def spans(label: dict) -> set:
            return {(t, s, e) for t, mentions in label.items() for places in mentions.values() for s, e in places}

        pairs = [(spans(g["label"]), spans(p["label"])) for g, p in zip(gold_rows, rows, strict=False)]
        hits = sum(len(g & p) for g, p in pairs)
        n_pred, n_gold = sum(len(p) for _, p in pairs), sum(len(g) for g, _ in pairs)
        precision, recall = (hits / n_pred if n_pred else 0.0), (hits / n_gold if n_gold else 0.0)
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return {"f1": f1, "entity_precision": precision, "entity_recall": recall}
    if task == "ner":
        from seqeval.metrics import f1_score, precision_score, recall_score

        sentences = [block.splitlines() for block in (out / "predictions.conll").read_text().split("\n\n")]
        gold = [[line.split("\t")[1] for line in s] for s in sentences if s]
        predicted = [[line.split("\t")[2] for line in s] for s in sentences if s]
        return {
            "f1": f1_score(gold, predicted),
            "entity_precision": precision_score(gold, predicted),
            "entity_recall": recall_score(gold, predicted),
        }
    predictions = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [p["index"] for p in predictions] == list(range(len(predictions)))
    data = get_task(task).family.read(dev)
    gold = data.labels[: len(predictions)]
    values = [p["prediction"] for p in predictions]
    if task == "stsb":
        from scipy.stats import pearsonr, spearmanr

        truth = [float(g) for g in gold]
        return {"pearson": pearsonr(values, truth)[0], "spearman": spearmanr(values, truth)[0]}
    from sklearn.metrics import accuracy_score, f1_score

    scores = {"accuracy": accuracy_score(gold, values)}
    if task == "mrpc":
        scores["f1"] = f1_score(gold, values, pos_label="1")
    return scores


def _eval(task: str, model: Path, dev: Path, out: Path, cache_dir: Path, *backend: str) -> dict:
    args = ["eval", task, "--model", str(model), "--data", str(dev), "--output-dir", str(out), "--max-samples", "48"]
    assert main([*args, "--cache-dir", str(cache_dir), "--threads", "2", "--no-progress", *backend]) == 0
    return json.loads((out / "metrics.json").read_text())


def _predictions(task: str, out: Path) -> list:
    if task == "ner" and (out / "predictions.json").exists():
        return [json.loads(line)["label"] for line in (out / "predictions.json").read_text().splitlines()]
    if task == "ner":
        return [line.split("\t")[2] for line in (out / "predictions.conll").read_text().splitlines() if line]
    return [json.loads(line)["prediction"] for line in (out / "predictions.jsonl").read_text().splitlines()]


FAST_BACKENDS = {
    "torch": (),
    "ort-fp32": ("--backend", "onnxruntime"),
    "ort-int8-dynamic": ("--backend", "onnxruntime", "--precision", "int8"),
    "openvino-fp32": ("--backend", "openvino"),
}


def _check_backends(case: str, seed_models, tmp_path: Path, cache_dir: Path, backends: dict[str, tuple]) -> None:
    task, train, dev = CASES[case]
    reference = _eval(task, seed_models[case], dev, tmp_path / "reference", cache_dir)
    expected = _predictions(task, tmp_path / "reference")
    for name, options in backends.items():
        options = tuple(str(train) if o == "TRAIN" else o for o in options)
        out = tmp_path / name
        record = _eval(task, seed_models[case], dev, out, cache_dir, *options)
        official = _official_scores(task, out, dev)
        for metric, value in official.items():
            assert record[metric] == pytest.approx(value, abs=1e-9), (name, metric)
        got = _predictions(task, out)
        assert len(got) == len(expected)
        if task == "stsb":
            tolerance = 0.05 if record["precision"] == "int8" else 1e-3
            assert np.abs(np.subtract(got, expected)).max() < tolerance, name
        else:
            agree = np.mean([a == b for a, b in zip(got, expected, strict=True)])
            assert agree >= (0.9 if record["precision"] == "int8" else 0.98), (name, agree)
        if record["precision"] == "int8":  # each reduced precision reports its drop against FP32 of the same model
            primary = get_task(task).primary_metric
            assert record[f"reference_{primary}"] == pytest.approx(reference[primary], abs=1e-9)


@pytest.mark.e2e
@pytest.mark.parametrize("case", ["wnut17", "stsb"])  # MRPC and the others: the slow lane's every-backend test
def test_every_runtime_scores_as_the_official_tools(case: str, seed_models, tmp_path: Path, cache_dir: Path) -> None:
    """Tags and a score on torch, ONNX Runtime FP32 and INT8, OpenVINO (pair classes: the seed models' test)."""
    _check_backends(case, seed_models, tmp_path, cache_dir, FAST_BACKENDS)


ALL_BACKENDS = {
    **FAST_BACKENDS,
    "torch-compile": ("--compile",),
    "ort-int8-static": ("--backend", "onnxruntime", "--precision", "int8", "--quantization", "static"),
    "openvino-int8": ("--backend", "openvino", "--precision", "int8", "--quantization", "static"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_every_task_on_every_backend(case: str, seed_models, tmp_path: Path, cache_dir: Path) -> None:
    backends = {
        name: (*options, "--calibration-data", "TRAIN", "--calibration-samples", "64")
        if "static" in options
        else options
        for name, options in ALL_BACKENDS.items()
    }
    _check_backends(case, seed_models, tmp_path, cache_dir, backends)


@pytest.mark.e2e
@pytest.mark.parametrize("case", ["wnut17", "stsb"])
def test_loadgen_accuracy_mode_scores_the_logged_outputs(case: str, seed_models, tmp_path: Path, cache_dir) -> None:
    task, _, dev = CASES[case]
    evaluated = _eval(task, seed_models[case], dev, tmp_path / "eval", cache_dir)
    args = ["bench", task, "--model", str(seed_models[case]), "--data", str(dev), "--mode", "accuracy"]
    args += ["--max-samples", "48", "--output-dir", str(tmp_path / "bench"), "--cache-dir", str(cache_dir)]
    assert main([*args, "--no-progress"]) == 0
    benched = json.loads((tmp_path / "bench" / "metrics.json").read_text())
    assert (tmp_path / "bench" / "loadgen" / "mlperf_log_accuracy.json").is_file()
    for metric in get_task(task).metrics:
        assert benched[metric] == pytest.approx(evaluated[metric], abs=1e-6), metric


@pytest.mark.e2e
@pytest.mark.parametrize("case", ["wnut17", "stsb"])  # tags, and a score (distilled by squared error)
def test_prune_keeps_the_task_and_transformers_reads_the_result(case: str, seed_models, tmp_path: Path, cache_dir):
    task, train, dev = CASES[case]
    out = tmp_path / "pruned"
    args = ["prune", task, "--model", str(seed_models[case]), "--train", str(train), "--eval", str(dev)]
    args += ["--flops", "0.7", "--importance-samples", "32", "--max-eval-samples", "32", "--distill-steps", "2"]
    assert main([*args, "--output-dir", str(out), "--cache-dir", str(cache_dir), "--no-progress"]) == 0
    record = json.loads((out / "metrics.json").read_text())
    assert record["flops_fraction"] <= 0.7 + 1e-3 and get_task(task).primary_metric in record
    theirs, ours, config = _hf_outputs(out, task)
    assert torch.allclose(theirs, ours, atol=1e-5) and config.num_labels == ours.shape[-1]


def test_the_seed_tasks_workload_covers_every_task_at_fp32_and_int8(capsys) -> None:
    assert main(["run", "seed-tasks", "--list", "--data-dir", str(DATA)]) == 0
    listed = capsys.readouterr().out
    for case in CASES:
        for kind in ("training-finetune", "accuracy-fp32", "accuracy-int8-dynamic"):
            assert f"{case}-minilm-{kind}" in listed


def test_kpi_rows_show_each_tasks_metric_with_its_scale() -> None:
    from bertbench.results.formatting import format_cell
    from bertbench.results.kpi import kpi_row

    stsb = kpi_row({"command": "eval", "task": "stsb", "pearson": 0.8123, "precision": "fp32"}).values
    ner = kpi_row({"command": "eval", "task": "ner", "f1": 0.41234, "precision": "fp32"}).values
    assert stsb["Pearson"] == 0.8123 and format_cell(ner["F1"], "F1") == "0.4123"
    assert format_cell(88.214, "F1") == "88.21"  # SQuAD's F1 is in percent


def test_untagged_input_gets_predictions_in_its_own_shape(tmp_path: Path, tokenizer) -> None:
    conll = tmp_path / "test.conll"
    conll.write_text("Paris\nis\n\nnice\n")
    dataset = NER.load_eval_data(conll, tokenizer, NerOptions(), Cache(tmp_path / "c"), labels=LabelSet(("O", "B-x")))
    tags = np.ones((dataset.num_samples, 128), dtype=np.float32)
    predicted, metrics = NER.score(dataset, {"tags": tags}, NerOptions())
    assert metrics == {} and predicted == [["B-x", "B-x"], ["B-x"]]
    NER.write_predictions(predicted, tmp_path, dataset)
    assert (tmp_path / "predictions.conll").read_text() == "Paris\tB-x\nis\tB-x\n\nnice\tB-x\n"
    cluener = tmp_path / "test.json"
    cluener.write_text('{"id": 7, "text": "北京"}\n', encoding="utf-8")
    dataset = NER.load_eval_data(
        cluener, tokenizer, NerOptions(), Cache(tmp_path / "c"), labels=LabelSet(("O", "B-address", "I-address"))
    )
    tags = np.zeros((1, 128), dtype=np.float32)
    tags[0, 1:3] = [1, 2]  # [CLS] 北 京 [SEP]
    predicted, _ = NER.score(dataset, {"tags": tags}, NerOptions())
    NER.write_predictions(predicted, tmp_path, dataset)
    written = json.loads((tmp_path / "predictions.json").read_text(encoding="utf-8"))
    assert written == {"id": 7, "text": "北京", "label": {"address": {"北京": [[0, 1]]}}}
