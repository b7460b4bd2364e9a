"""PyTorch INT8 dynamic quantization of Linear layers.

torch.ao.quantization is deprecated in favour of torchao; it is used here, and only here, so that swapping it
for torchao later touches one module.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn


def quantize_linear_dynamic(model: nn.Module, keep_fp32: tuple[str, ...] = (), per_channel: bool = True) -> nn.Module:
    """INT8 weights (per output channel, or one scale per tensor), dynamically quantized activations, for every
    nn.Linear except those under `keep_fp32`."""
    targets = {
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and not any(f".{k}." in f".{name}." for k in keep_fp32)
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig, quantize_dynamic

        qconfig = per_channel_dynamic_qconfig if per_channel else default_dynamic_qconfig
        return quantize_dynamic(model, dict.fromkeys(targets, qconfig), dtype=torch.qint8)


def int8_linear_fraction(model: nn.Module) -> float:
    """Linear weights (~ linear FLOPs) held in INT8 / all linear weights."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    int8 = total = 0
    for module in model.modules():
        if isinstance(module, DynamicLinear):
            n = module.in_features * module.out_features
            int8 += n
            total += n
        elif isinstance(module, nn.Linear):
            total += module.in_features * module.out_features
    return int8 / total if total else 0.0
