"""`bertbench convert` and `--model CHECKPOINT`: Google's TF1, MindSpore's and NVIDIA's checkpoints as Hugging Face
directories whose outputs equal the source framework's. Tests marked `frameworks` run TensorFlow and MindSpore
themselves (`pip install -e ".[frameworks]"`, `pytest -m frameworks`); the others need neither."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from bertbench.cli import main
from bertbench.models import BertForPreTraining, BertForQuestionAnswering, load_model, resolve_model

from .conftest import DATA, REPO
from .source_frameworks import (
    Shape,
    forward,
    google_names,
    mindspore_getter,
    mindspore_ops,
    random_weights,
    save_mindspore_checkpoint,
    save_tf1_checkpoint,
    tensorflow_ops,
    tf1_getter,
    zoo_names,
)

SHARED_TF1 = REPO.parent / "shared" / "checkpoints" / "tf1-google-tiny"
SST2_TRAIN, SST2_DEV = DATA / "sst2" / "train.tsv", DATA / "sst2" / "dev.tsv"
TOLERANCE = 1e-4  # float32 noise over a few layers of different kernels (measured ~5e-6)
MINDSPORE_NOISE = 1e-3  # MindSpore's CPU kernels vs TensorFlow's on the same weights: up to 2.2e-4 measured
SMALL = Shape(vocab=40, hidden=64, layers=2, heads=4, intermediate=128, positions=64)


def _vocab(path: Path, size: int) -> Path:
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(size - 5)]
    path.write_text("".join(f"{t}\n" for t in tokens), encoding="utf-8")
    return path


def _google_config(path: Path, shape: Shape) -> Path:
    config = {
        "vocab_size": shape.vocab,
        "hidden_size": shape.hidden,
        "num_hidden_layers": shape.layers,
        "num_attention_heads": shape.heads,
        "intermediate_size": shape.intermediate,
        "max_position_embeddings": shape.positions,
        "type_vocab_size": shape.types,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "initializer_range": 0.02,
    }
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


def _inputs(vocab: int, length: int = 9) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    ids = rng.integers(5, vocab, size=(2, length))
    ids[:, 0], ids[1, 5:] = 2, 0  # [CLS] first; the second row padded
    types = np.zeros_like(ids)
    types[0, 4:] = 1
    return ids, types, (ids > 0).astype(np.int64)


def _convert(capsys, *argv: str) -> tuple[int, str]:
    code = main(["convert", *argv])
    return code, capsys.readouterr().err


def _ours(directory: Path, head: type, ids: np.ndarray, types: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    """bertbench's outputs on the converted directory."""
    model = load_model(resolve_model(str(directory)), head).model
    args = [torch.from_numpy(a) for a in (ids, mask, types)]
    with torch.no_grad():
        out = {"hidden": model.bert(*args).numpy()}
        if head is BertForPreTraining:
            mlm, nsp = model(*args)
            out.update(mlm=mlm.numpy(), nsp=nsp.numpy())
        else:
            start, end = model(*args)
            out["qa"] = torch.stack([start, end], dim=-1).numpy()
    return out


def _transformers(directory: Path, qa: bool, ids: np.ndarray, types: np.ndarray, mask: np.ndarray) -> dict:
    """transformers' outputs on the converted directory (its own classes, its own loader)."""
    import transformers

    kind = transformers.BertForQuestionAnswering if qa else transformers.BertForPreTraining
    model = kind.from_pretrained(directory).eval()
    args = {
        "input_ids": torch.from_numpy(ids),
        "attention_mask": torch.from_numpy(mask),
        "token_type_ids": torch.from_numpy(types),
    }
    with torch.no_grad():
        out = model(**args, output_hidden_states=True)
    result = {"hidden": out.hidden_states[-1].numpy()}
    if qa:
        result["qa"] = torch.stack([out.start_logits, out.end_logits], dim=-1).numpy()
    else:
        result.update(mlm=out.prediction_logits.numpy(), nsp=out.seq_relationship_logits.numpy())
    return result


def _max_differences(reference: dict, *others: dict, mask: np.ndarray) -> dict[str, float]:
    """Max |difference| per output over real (unpadded) positions; padded rows carry no meaning."""
    worst: dict[str, float] = {}
    keep = mask.astype(bool)
    for other in others:
        for name, value in reference.items():
            a, b = value, other[name]
            if a.ndim == 3 and a.shape[:2] == keep.shape:
                a, b = a[keep], b[keep]
            worst[name] = max(worst.get(name, 0.0), float(np.abs(a - b).max()))
    return worst


# ------------------------------------------------------------------------------------- no framework needed


def test_the_shared_tf1_checkpoint_converts_and_loads_in_transformers(tmp_path: Path, capsys) -> None:
    code, err = _convert(capsys, str(SHARED_TF1), "--output-dir", str(tmp_path / "hf"))
    assert code == 0, err
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["architectures"] == ["BertForPreTraining"] and config["hidden_act"] == "gelu_new"
    record = json.loads((tmp_path / "hf" / "conversion.json").read_text())
    assert record["source_format"] == "tf1" and len(record["files"]) == 2  # index and data, hashed
    ids, types, mask = _inputs(15, 8)
    ours = _ours(tmp_path / "hf", BertForPreTraining, ids, types, mask)
    theirs = _transformers(tmp_path / "hf", False, ids, types, mask)
    assert max(_max_differences(theirs, ours, mask=mask).values()) < TOLERANCE


def _nvidia_checkpoint(folder: Path) -> tuple[Path, object]:
    """An NVIDIA DeepLearningExamples-style checkpoint of a random BERT: `{"model": state_dict, …}` with their
    fused `dense_act` names, the vocabulary padded to a multiple of 8, and optimizer state beside it."""
    import transformers

    folder.mkdir()
    config = transformers.BertConfig(
        vocab_size=48, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=64, hidden_act="gelu",
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.BertForPreTraining(config).eval()
    state = {}
    for key, value in model.state_dict().items():
        if key == "cls.predictions.decoder.bias":  # transformers' alias of cls.predictions.bias; NVIDIA has none
            continue
        key = key.replace("intermediate.dense.", "intermediate.dense_act.").replace(
            "pooler.dense.", "pooler.dense_act."
        )
        state[key.replace("transform.dense.", "transform.dense_act.")] = value.clone()
    torch.save({"model": state, "optimizer": {"state": {}}, "epoch": 3}, folder / "ckpt_8601.pt")
    _google_config(folder / "bert_config.json", Shape(45, 32, 2, 2, 64, 64))  # 45 words, padded to 48 rows
    _vocab(folder / "vocab.txt", 45)
    return folder / "ckpt_8601.pt", model


def test_an_nvidia_checkpoint_gives_the_outputs_pytorch_gave(tmp_path: Path, capsys) -> None:
    checkpoint, source = _nvidia_checkpoint(tmp_path / "nv")
    code, err = _convert(capsys, str(checkpoint), "--output-dir", str(tmp_path / "hf"))
    assert code == 0, err
    assert "vocab_size 45" in err and "48 rows" in err  # the padding is said, and kept
    ids, types, mask = _inputs(45)
    with torch.no_grad():
        out = source(
            input_ids=torch.from_numpy(ids),
            attention_mask=torch.from_numpy(mask),
            token_type_ids=torch.from_numpy(types),
            output_hidden_states=True,
        )
    reference = {
        "hidden": out.hidden_states[-1].numpy(),
        "mlm": out.prediction_logits.numpy(),
        "nsp": out.seq_relationship_logits.numpy(),
    }
    ours = _ours(tmp_path / "hf", BertForPreTraining, ids, types, mask)
    theirs = _transformers(tmp_path / "hf", False, ids, types, mask)
    assert max(_max_differences(reference, ours, theirs, mask=mask).values()) < 1e-5


@pytest.mark.e2e
def test_finetune_eval_and_bench_take_a_checkpoint_as_model(tmp_path: Path, capsys, cache_dir: Path) -> None:
    """--model names the NVIDIA checkpoint's folder: converted once into the cache, then an ordinary model."""
    checkpoint, _ = _nvidia_checkpoint(tmp_path / "nv")
    common = ["--cache-dir", str(cache_dir), "--no-progress"]
    argv = ["finetune", "sst2", "--model", str(checkpoint.parent), "--train", str(SST2_TRAIN), "--eval", str(SST2_DEV)]
    argv += ["--max-train-samples", "64", "--max-eval-samples", "64", "--epochs", "1", "--batch-size", "16"]
    assert main([*argv, "--max-seq-length", "64", "--output-dir", str(tmp_path / "ft"), *common]) == 0
    converted = list((cache_dir / "converted").iterdir())
    assert any((entry / "conversion.json").exists() for entry in converted)
    argv = ["eval", "sst2", "--model", str(tmp_path / "ft"), "--data", str(SST2_DEV), "--max-samples", "32"]
    assert main([*argv, "--max-seq-length", "64", "--output-dir", str(tmp_path / "ev"), *common]) == 0
    assert 0 <= json.loads((tmp_path / "ev" / "metrics.json").read_text())["accuracy"] <= 1
    argv = ["bench", "sst2", "--model", str(checkpoint), "--data", str(SST2_DEV), "--max-samples", "32"]
    argv += ["--min-duration", "0.5", "--max-seq-length", "64", "--output-dir", str(tmp_path / "b")]
    assert main([*argv, *common]) == 0
    assert json.loads((tmp_path / "b" / "metrics.json").read_text())["throughput"] > 0
    capsys.readouterr()


def _copy_shared(tmp_path: Path, name: str = "tf1") -> Path:
    folder = tmp_path / name
    shutil.copytree(SHARED_TF1, folder, copy_function=shutil.copyfile)  # writable copies of a read-only fixture
    folder.chmod(0o755)
    return folder


def _flipped(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def _damaged_data(tmp_path: Path) -> tuple[list[str], str]:
    folder = _copy_shared(tmp_path)
    data = folder / "bert_model.ckpt.data-00000-of-00001"
    _flipped(data, 100)  # one bit of some weight
    return [str(folder)], "checksum does not match (a damaged data file)"


def _damaged_index(tmp_path: Path) -> tuple[list[str], str]:
    folder = _copy_shared(tmp_path)
    index = folder / "bert_model.ckpt.index"
    _flipped(index, 60)  # one bit inside the first table block
    return [str(folder)], f"{index}: a table block's checksum does not match"


def _vocab_without_specials(tmp_path: Path) -> tuple[list[str], str]:
    folder = _copy_shared(tmp_path)
    (folder / "vocab.txt").write_text("".join(f"w{i}\n" for i in range(15)))
    return [str(folder)], f"{folder / 'vocab.txt'}: not a BERT vocabulary"


def _truncated_data(tmp_path: Path) -> tuple[list[str], str]:
    folder = _copy_shared(tmp_path)
    data = folder / "bert_model.ckpt.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[:200])
    return [str(folder)], f"{data}: truncated"


def _missing_shard(tmp_path: Path) -> tuple[list[str], str]:
    folder = _copy_shared(tmp_path)
    data = folder / "bert_model.ckpt.data-00000-of-00001"
    data.unlink()
    return [str(folder)], f"{data}: missing"


def _zip_without_config(tmp_path: Path) -> tuple[list[str], str]:
    archive = tmp_path / "uncased_L-2_H-4_A-4.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in SHARED_TF1.iterdir():
            if path.name != "bert_config.json":
                zipped.write(path, f"uncased_L-2_H-4_A-4/{path.name}")
    return [str(archive)], f"{archive}: no bert_config.json"


def _not_a_mindspore_checkpoint(tmp_path: Path) -> tuple[list[str], str]:
    path = tmp_path / "bert_large.ckpt"
    path.write_bytes(b"\xff\xfe this is no checkpoint \x00\x01")
    _vocab(tmp_path / "vocab.txt", 10)
    return [str(path)], f"{path}: not a MindSpore checkpoint"


def _shape_against_config(tmp_path: Path) -> tuple[list[str], str]:
    folder = _copy_shared(tmp_path)
    config = json.loads((folder / "bert_config.json").read_text())
    (folder / "bert_config.json").write_text(json.dumps({**config, "intermediate_size": 32}))
    return [str(folder)], "intermediate_size 32 disagrees with the checkpoint's tensors (16)"


def _unknown_variable(tmp_path: Path) -> tuple[list[str], str]:
    checkpoint, _ = _nvidia_checkpoint(tmp_path / "nv")
    saved = torch.load(checkpoint, weights_only=True)
    saved["model"]["bert.encoder.layer.0.adapter.weight"] = torch.zeros(2, 2)
    torch.save(saved, checkpoint)
    return [str(checkpoint)], f"{checkpoint}: bert.encoder.layer.0.adapter.weight is not a weight of BERT"


@pytest.mark.parametrize(
    "make",
    [
        _truncated_data,
        _damaged_data,
        _damaged_index,
        _vocab_without_specials,
        _missing_shard,
        _zip_without_config,
        _not_a_mindspore_checkpoint,
        _shape_against_config,
        _unknown_variable,
    ],
)
def test_a_bad_checkpoint_is_one_line_exit_2_and_nothing_written(tmp_path: Path, capsys, make) -> None:
    argv, expected = make(tmp_path)
    code, err = _convert(capsys, *argv, "--output-dir", str(tmp_path / "out"))
    assert code == 2 and err.count("\n") == 1 and expected in err, err
    assert not (tmp_path / "out").exists()


def test_a_checkpoint_without_a_vocabulary_names_what_is_missing(tmp_path: Path, capsys) -> None:
    folder = _copy_shared(tmp_path)
    (folder / "vocab.txt").unlink()
    code, err = _convert(capsys, str(folder), "--output-dir", str(tmp_path / "out"))
    assert code == 2 and "no vocab.txt beside it (give --vocab)" in err
    code, err = _convert(
        capsys, str(folder), "--vocab", str(SHARED_TF1 / "vocab.txt"), "--output-dir", str(tmp_path / "o")
    )
    assert code == 0, err


# ------------------------------------------------------------------------------------- the source frameworks


@pytest.mark.frameworks
def test_every_variable_of_the_shared_checkpoint_is_what_tensorflow_reads(tmp_path: Path) -> None:
    import tensorflow as tf

    from bertbench.models.tf_checkpoint import read_checkpoint

    prefix = SHARED_TF1 / "bert_model.ckpt"
    ours = read_checkpoint(prefix)
    reader = tf.train.load_checkpoint(str(prefix))
    shapes = reader.get_variable_to_shape_map()
    assert set(ours) == set(shapes)
    for name in shapes:
        theirs = np.asarray(reader.get_tensor(name))
        assert ours[name].dtype == theirs.dtype and np.array_equal(ours[name], theirs), name


@pytest.mark.frameworks
@pytest.mark.parametrize("squad", [False, True], ids=["pretraining", "squad"])
def test_a_tf1_checkpoint_tensorflow_wrote_gives_tensorflows_outputs(tmp_path: Path, capsys, squad: bool) -> None:
    folder = tmp_path / ("uncased_squad" if squad else "uncased_pretraining")
    folder.mkdir()
    save_tf1_checkpoint(google_names(random_weights(SMALL, 1), squad), folder / "bert_model.ckpt")
    _google_config(folder / "bert_config.json", SMALL)
    _vocab(folder / "vocab.txt", SMALL.vocab)
    code, err = _convert(capsys, str(folder), "--output-dir", str(tmp_path / "hf"))
    assert code == 0, err
    ids, types, mask = _inputs(SMALL.vocab)
    reference = forward(tensorflow_ops(), tf1_getter(folder / "bert_model.ckpt", squad), SMALL, ids, types, mask, 1e-12)
    head = BertForQuestionAnswering if squad else BertForPreTraining
    ours = _ours(tmp_path / "hf", head, ids, types, mask)
    theirs = _transformers(tmp_path / "hf", squad, ids, types, mask)
    differences = _max_differences(reference, ours, theirs, mask=mask)
    print("tf1", "squad" if squad else "pretraining", differences)
    assert set(differences) == ({"hidden", "qa"} if squad else {"hidden", "mlm", "nsp"})
    assert max(differences.values()) < TOLERANCE


@pytest.mark.frameworks
@pytest.mark.parametrize("crc", [False, True], ids=["plain", "crc"])
def test_a_mindspore_checkpoint_mindspore_wrote_gives_mindspores_outputs(tmp_path: Path, capsys, crc: bool) -> None:
    weights = random_weights(SMALL, 2)
    path = tmp_path / "bert_base_ascend_v130_zhwiki.ckpt"
    save_mindspore_checkpoint(zoo_names(weights), path, crc)
    _vocab(tmp_path / "vocab.txt", SMALL.vocab)
    code, err = _convert(capsys, str(path), "--output-dir", str(tmp_path / "hf"))
    assert code == 0, err
    assert "no config file" in err  # the sizes came from the tensors, the head count from hidden / 64
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["layer_norm_eps"] == 1e-7 and config["num_attention_heads"] == 1
    shape = Shape(SMALL.vocab, SMALL.hidden, SMALL.layers, 1, SMALL.intermediate, SMALL.positions)
    ids, types, mask = _inputs(SMALL.vocab)
    loaded = mindspore_getter(path)  # MindSpore's own loader
    reference = forward(mindspore_ops(), loaded, shape, ids, types, mask, 1e-7)
    ours = _ours(tmp_path / "hf", BertForPreTraining, ids, types, mask)
    theirs = _transformers(tmp_path / "hf", False, ids, types, mask)
    differences = _max_differences(reference, ours, theirs, mask=mask)
    # MindSpore's CPU kernels are themselves ~1e-4 away from TensorFlow's on the same weights (measured 2.2e-4 on
    # the MLM logits, |logits| ~4, where ours and TensorFlow's agree to 5e-6): its outputs within MINDSPORE_NOISE,
    # and the weights MindSpore loaded, run through TensorFlow's kernels, within the float32 TOLERANCE
    print("mindspore", "crc" if crc else "plain", differences)
    assert max(differences.values()) < MINDSPORE_NOISE
    import tensorflow as tf

    def through_tensorflow(name: str) -> object:
        tensor = loaded(name)
        return None if tensor is None else tf.constant(tensor.asnumpy())

    reference = forward(tensorflow_ops(), through_tensorflow, shape, ids, types, mask, 1e-7)
    assert max(_max_differences(reference, ours, theirs, mask=mask).values()) < TOLERANCE
    # with the config given, the head count is the config's
    _google_config(tmp_path / "bert_config.json", SMALL)
    argv = [str(path), "--config", str(tmp_path / "bert_config.json"), "--output-dir", str(tmp_path / "c")]
    code, err = _convert(capsys, *argv)
    assert code == 0, err
    reference = forward(tensorflow_ops(), through_tensorflow, SMALL, ids, types, mask, 1e-7)
    differences = _max_differences(reference, _ours(tmp_path / "c", BertForPreTraining, ids, types, mask), mask=mask)
    assert max(differences.values()) < TOLERANCE


def test_each_formats_names_map_onto_ours() -> None:
    from bertbench.models.convert import mindspore_name, nvidia_name, tf_name

    # MindSpore: the fine-tuning wrappers' heads and the older zoo's embedding names
    assert mindspore_name("bert.dense1.weight") == "qa_outputs.weight"  # BertSquadModel
    assert mindspore_name("bert.dense_1.bias") == "classifier.bias"  # BertCLSModel
    assert mindspore_name("bert.bert.bert_embedding_postprocessor.embedding_table") == (
        "bert.embeddings.token_type_embeddings.weight"
    )
    assert mindspore_name("bert.bert.bert_embedding_postprocessor.full_position_embeddings") == (
        "bert.embeddings.position_embeddings.weight"
    )
    assert mindspore_name("bert.bert.bert_encoder.layers.11.intermediate.weight") == (
        "bert.encoder.layer.11.intermediate.dense.weight"
    )
    assert mindspore_name("bert.bert.dense.bias") == "bert.pooler.dense.bias"
    assert mindspore_name("bert.bert.bert_encoder.layers.0.attention.attention.query_layer.scale") is None
    # NVIDIA: DataParallel's prefix, fused dense_act layers
    assert nvidia_name("module.bert.encoder.layer.3.intermediate.dense_act.weight") == (
        "bert.encoder.layer.3.intermediate.dense.weight"
    )
    assert nvidia_name("cls.predictions.transform.dense_act.bias") == "cls.predictions.transform.dense.bias"
    # Google: kernels transposed, [labels, hidden] heads not
    assert tf_name("bert/encoder/layer_0/attention/self/query/kernel") == (
        "bert.encoder.layer.0.attention.self.query.weight",
        True,
    )
    assert tf_name("output_weights") == ("classifier.weight", False)
    assert tf_name("bert/encoder/layer_0/attention/self/rotary/kernel") is None


def test_the_release_name_says_the_case_and_an_overwrite_leaves_no_old_tokenizer(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bertbench.models.loading import minilm_directory

    cased = _copy_shared(tmp_path, "cased_L-2_H-4_A-4")
    monkeypatch.chdir(cased)  # `convert .` inside the release folder: the folder's own name counts
    out = tmp_path / "hf"
    shutil.copytree(minilm_directory(), out)  # an earlier model's tokenizer files (30,522 tokens) in the way
    code, err = _convert(capsys, ".", "--output-dir", str(out), "--overwrite")
    assert code == 0, err
    assert json.loads((out / "tokenizer_config.json").read_text())["do_lower_case"] is False
    assert len((out / "vocab.txt").read_text().splitlines()) == 15
    assert len(json.loads((out / "tokenizer.json").read_text())["model"]["vocab"]) == 15


def test_a_release_zip_with_macos_extras_converts(tmp_path: Path, capsys) -> None:
    archive = tmp_path / "uncased_L-2_H-4_A-4.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in SHARED_TF1.iterdir():
            zipped.write(path, f"uncased_L-2_H-4_A-4/{path.name}")
            zipped.writestr(f"__MACOSX/uncased_L-2_H-4_A-4/._{path.name}", b"\x00\x05\x16\x07")
    code, err = _convert(capsys, str(archive), "--output-dir", str(tmp_path / "hf"))
    assert code == 0, err
    assert json.loads((tmp_path / "hf" / "conversion.json").read_text())["source_format"] == "tf1"
