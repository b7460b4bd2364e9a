"""Least-squares mask tuning (Kwon et al. 2022, step 3), layer by layer, without retraining.

After pruning, each kept head and neuron gets a scale m, chosen so that every sublayer's output before its
LayerNorm (projection + residual) is as close as possible to the unpruned model's on the same samples:
min_m ||sum_g m_g C_g + residual - target||^2 + damping ||m - 1||^2, where C_g is group g's contribution to the
projection (a head: its context columns times their weight columns; a neuron: its activation times its column).
Earlier layers are tuned first, so each layer corrects what the layers below it changed. The scales are folded
into the projection's weight columns: the tuned model is an ordinary model of the same shape.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch

from bertbench.models import BertHeadModel

DAMPING = 1e-2  # relative to the mean diagonal of the normal equations: keeps scales near 1 where data is thin


class _Stop(Exception):
    """Raised by a capture hook once it has what it needs: the rest of the forward pass is not run."""


@contextlib.contextmanager
def _capture(module: torch.nn.Module, store: dict[str, torch.Tensor], stop: bool) -> Iterator[None]:
    """Keep the (input, residual) of a BertDenseResidual when it runs; with `stop`, end the forward pass there."""

    def hook(mod, args):
        store["x"], store["residual"] = args[0].detach(), args[1].detach()
        if stop:
            raise _Stop

    handle = module.register_forward_pre_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def _run_until(
    model: BertHeadModel, module: torch.nn.Module, batch: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    store: dict[str, torch.Tensor] = {}
    with _capture(module, store, stop=True), contextlib.suppress(_Stop), torch.no_grad():
        model(*(batch[name] for name in model.input_names if name in batch))
    return store


def _sublayers(model: BertHeadModel, layer: int) -> list[tuple[str, torch.nn.Module]]:
    block = model.bert.encoder.layer[layer]
    return [("attention", block.attention.output), ("ffn", block.output)]


def tune_masks(
    parent: BertHeadModel,
    pruned: BertHeadModel,
    batches: list[dict[str, torch.Tensor]],
    on_step: Callable[[], None] | None = None,
) -> list[dict[str, float]]:
    """Tune `pruned` in place towards `parent` on `batches` (inputs with attention_mask); returns per sublayer the
    relative reconstruction error before and after."""
    parent.eval()
    pruned.eval()
    log = []
    for layer in range(pruned.config.num_hidden_layers):
        for (kind, target_module), (_, module) in zip(
            _sublayers(parent, layer), _sublayers(pruned, layer), strict=True
        ):
            if module.dense.in_features == 0:  # every head or neuron removed: no scale to tune
                if on_step is not None:
                    on_step()
                continue
            head_dim = pruned.bert.encoder.layer[layer].attention.self.head_dim
            group = head_dim if kind == "attention" else 1
            log.append(
                {"layer": layer, "sublayer": kind, **_tune_one(parent, pruned, target_module, module, group, batches)}
            )
            if on_step is not None:
                on_step()
    return log


@torch.no_grad()
def _tune_one(
    parent: BertHeadModel,
    pruned: BertHeadModel,
    target_module: torch.nn.Module,
    module: torch.nn.Module,
    group: int,
    batches: list[dict[str, torch.Tensor]],
) -> dict[str, float]:
    weight = module.dense.weight.detach().double()  # (hidden, width)
    bias = module.dense.bias.detach().double()
    groups = weight.shape[1] // group
    gram = torch.zeros(groups, groups, dtype=torch.float64, device=weight.device)
    moment = torch.zeros(groups, dtype=torch.float64, device=weight.device)
    target_energy = residual_error = 0.0
    for batch in batches:
        real = batch["attention_mask"].bool()
        ours = _run_until(pruned, module, batch)
        theirs = _run_until(parent, target_module, batch)
        x = ours["x"][real].double()
        target = (
            torch.nn.functional.linear(
                theirs["x"][real].double(), target_module.dense.weight.double(), target_module.dense.bias.double()
            )
            + theirs["residual"][real].double()
        )
        y = target - ours["residual"][real].double() - bias  # what the kept groups should add up to
        if group == 1:
            gram += (x.T @ x) * (weight.T @ weight)
            moment += ((y @ weight) * x).sum(0)
        else:
            parts = torch.einsum("tgd,hgd->tgh", x.view(len(x), groups, group), weight.view(-1, groups, group))
            gram += torch.einsum("tgh,tkh->gk", parts, parts)
            moment += torch.einsum("tgh,th->g", parts, y)
        target_energy += float(target.pow(2).sum())
        residual_error += float(y.pow(2).sum())
    ones = torch.ones(groups, dtype=torch.float64, device=weight.device)
    damping = DAMPING * float(gram.diagonal().mean())
    eye = torch.eye(groups, dtype=torch.float64, device=weight.device)
    scales = torch.linalg.solve(gram + damping * eye, moment + damping * ones)

    def error(m: torch.Tensor) -> float:
        # ||A m - y||^2 = m'Gm - 2 m'b + y'y
        return float(m @ gram @ m - 2 * m @ moment) + residual_error

    before, after = error(ones), error(scales)
    if after < before:
        with torch.no_grad():
            module.dense.weight.mul_(scales.repeat_interleave(group).to(module.dense.weight.dtype)[None, :])
    scale = target_energy or 1.0
    return {"error_before": before / scale, "error_after": min(after, before) / scale}
