"""Our BERT against transformers' on the same weights, loading rules, and Hugging Face format round trips."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers

from bertbench.errors import BertbenchError
from bertbench.models import (
    BertForMaskedLM,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    load_model,
    resolve_model,
    save_model,
)
from bertbench.models.loading import minilm_directory

TOL = 1e-4


def ragged_batch(tokenizer, texts: list[str]) -> dict[str, torch.Tensor]:
    """Real token ids of several lengths, padded, with a second segment so token types matter."""
    encodings = tokenizer.encode_batch(texts)
    length = max(len(e.ids) for e in encodings) + 2
    ids = torch.zeros(len(texts), length, dtype=torch.long)
    mask = torch.zeros_like(ids)
    types = torch.zeros_like(ids)
    for row, e in enumerate(encodings):
        seq = [tokenizer.cls_id, *e.ids, tokenizer.sep_id]
        ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1
        types[row, len(seq) // 2 : len(seq)] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


TEXTS = [
    "The Normans were the people who in the 10th and 11th centuries gave their name to Normandy.",
    "Short one.",
    "Zürich, café and 北京: non-ASCII text tokenises too.",
]


def _max_diff(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> float:
    # Compare real positions only: padded positions are undefined in both implementations.
    keep = mask.bool()
    return float((a[keep] - b[keep]).abs().max())


def test_minilm_encoder_matches_transformers_bertmodel(tokenizer) -> None:
    loaded = load_model(resolve_model("minilm-l6"), BertForQuestionAnswering)
    reference = transformers.BertModel.from_pretrained(minilm_directory()).eval()
    batch = ragged_batch(tokenizer, TEXTS)
    with torch.no_grad():
        ours = loaded.model.bert(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        theirs = reference(**batch).last_hidden_state
    assert _max_diff(ours, theirs, batch["attention_mask"]) < TOL


def test_minilm_qa_logits_match_transformers_after_save(tokenizer, tmp_path: Path) -> None:
    loaded = load_model(resolve_model("minilm-l6"), BertForQuestionAnswering, seed=3)
    assert loaded.fresh_parameters == ["qa_outputs"]
    save_model(loaded.model, loaded.tokenizer, tmp_path)
    reference = transformers.BertForQuestionAnswering.from_pretrained(tmp_path).eval()
    batch = ragged_batch(tokenizer, TEXTS)
    for attention in ("sdpa", "eager"):
        loaded.model.bert.set_attention_implementation(attention)
        with torch.no_grad():
            start, end = loaded.model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
            out = reference(**batch)
        assert _max_diff(start, out.start_logits, batch["attention_mask"]) < TOL
        assert _max_diff(end, out.end_logits, batch["attention_mask"]) < TOL
    # The saved tokenizer loads in transformers and tokenises identically.
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert hf_tokenizer(TEXTS[2], add_special_tokens=False).input_ids == tokenizer.encode_batch([TEXTS[2]])[0].ids


@pytest.fixture()
def tiny_hf_dir(tmp_path: Path) -> Path:
    """A random hidden-32, 2-layer BERT written by transformers itself (not by us)."""
    config = transformers.BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64
    )
    torch.manual_seed(0)
    model = transformers.BertForPreTraining(config)
    model.save_pretrained(tmp_path)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(minilm_directory() / name, tmp_path / name)
    return tmp_path


@pytest.mark.parametrize(
    ("ours", "theirs", "output"),
    [
        (BertForQuestionAnswering, transformers.BertForQuestionAnswering, "start_logits"),
        (BertForSequenceClassification, transformers.BertForSequenceClassification, "logits"),
        (BertForMaskedLM, transformers.BertForMaskedLM, "logits"),
    ],
)
def test_tiny_random_heads_match_transformers(tokenizer, tiny_hf_dir: Path, tmp_path: Path, ours, theirs, output):
    loaded = load_model(resolve_model(str(tiny_hf_dir)), ours, seed=1)
    saved = tmp_path / "saved"
    save_model(loaded.model, loaded.tokenizer, saved)
    reference = theirs.from_pretrained(saved).eval()
    batch = ragged_batch(tokenizer, TEXTS)
    with torch.no_grad():
        mine = loaded.model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])[0]
        other = getattr(reference(**batch), output)
    if mine.ndim == 2 and output == "logits":  # classification: one row per sample
        assert float((mine - other).abs().max()) < TOL
    else:
        assert _max_diff(mine, other, batch["attention_mask"]) < TOL
    # Pretraining checkpoint: the MLM head is loaded, not fresh; QA/classifier heads are fresh.
    assert loaded.fresh_head == (ours is not BertForMaskedLM)


def test_presets_are_random_seeded_and_labelled() -> None:
    source = resolve_model("bert-tiny")
    assert source.random_weights and source.kind == "preset"
    a = load_model(source, BertForQuestionAnswering, seed=1).model.state_dict()
    b = load_model(resolve_model("bert-tiny"), BertForQuestionAnswering, seed=2).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)  # the preset's weights do not depend on --seed
    cfg = resolve_model("bert-large").config
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads) == (24, 1024, 16)


def test_fresh_head_depends_on_seed_only() -> None:
    source = resolve_model("minilm-l6")
    h1 = load_model(source, BertForQuestionAnswering, seed=1).model.qa_outputs.weight
    h1b = load_model(source, BertForQuestionAnswering, seed=1).model.qa_outputs.weight
    h2 = load_model(source, BertForQuestionAnswering, seed=2).model.qa_outputs.weight
    assert torch.equal(h1, h1b) and not torch.equal(h1, h2)


def test_pickle_weights_refused_unless_allowed(tiny_hf_dir: Path) -> None:
    state = transformers.BertForPreTraining.from_pretrained(tiny_hf_dir).state_dict()
    (tiny_hf_dir / "model.safetensors").unlink()
    torch.save(state, tiny_hf_dir / "pytorch_model.bin")
    with pytest.raises(BertbenchError, match=r"pickle.*--allow-pickle"):
        resolve_model(str(tiny_hf_dir))
    loaded = load_model(resolve_model(str(tiny_hf_dir), allow_pickle=True), BertForMaskedLM)
    assert torch.equal(
        loaded.model.bert.embeddings.word_embeddings.weight, state["bert.embeddings.word_embeddings.weight"]
    )


def test_hub_id_fails_fast_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    with pytest.raises(BertbenchError, match="HF_HUB_OFFLINE"):
        resolve_model("no-such-org/no-such-bert")
    assert time.perf_counter() - started < 5


def test_a_path_that_does_not_exist_is_a_missing_directory_not_a_hub_id(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    for name in ("runs/sst2", "./sst2", "../x/y", "a/b/c", "~/nothing-here"):
        started = time.perf_counter()
        with pytest.raises(BertbenchError, match=f"model {name}: directory not found"):
            resolve_model(name)
        assert time.perf_counter() - started < 1  # no hub attempt


def test_hub_id_without_network_fails_within_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HOME", os.devnull + "-none")  # no local hub cache to fall back on
    started = time.perf_counter()
    with pytest.raises(BertbenchError, match="no-such-org/no-such-bert"):
        resolve_model("no-such-org/no-such-bert")
    assert time.perf_counter() - started < 15


def test_shape_mismatch_is_one_clear_error(tiny_hf_dir: Path) -> None:
    import json

    config = json.loads((tiny_hf_dir / "config.json").read_text())
    config["intermediate_size"] = 128
    (tiny_hf_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(BertbenchError, match=r"intermediate\.dense\.\w+ has shape"):
        load_model(resolve_model(str(tiny_hf_dir)), BertForQuestionAnswering)


def test_saved_model_reloads_identically(tmp_path: Path) -> None:
    loaded = load_model(resolve_model("bert-tiny"), BertForMaskedLM)
    save_model(loaded.model, loaded.tokenizer, tmp_path)
    again = load_model(resolve_model(str(tmp_path)), BertForMaskedLM)
    assert not again.fresh_head and not again.source.random_weights
    for key, value in loaded.model.state_dict().items():
        assert np.array_equal(value.numpy(), again.model.state_dict()[key].numpy()), key
    # Tied decoder stays tied after loading.
    assert again.model.cls.predictions.decoder.weight is again.model.bert.embeddings.word_embeddings.weight
