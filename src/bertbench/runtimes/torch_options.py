"""What only the PyTorch runtime takes (beside the options every runtime shares, in `options`)."""

from __future__ import annotations

from dataclasses import dataclass

from bertbench.cliargs import option


@dataclass(frozen=True, kw_only=True)
class TorchOptions:
    """PyTorch eager, optionally compiled."""

    compile: bool = option(False, help="torch.compile the model (torch backend)")
