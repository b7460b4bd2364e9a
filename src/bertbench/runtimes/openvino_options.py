"""What only the OpenVINO backend takes (beside the options every runtime shares, in `options`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bertbench.cliargs import option


@dataclass(frozen=True, kw_only=True)
class OpenVinoOptions:
    """NNCF's overflow fix (ORT's `reduce_range` under the same flag) and where to export the IR."""

    reduce_range: bool = option(
        False, help="7-bit INT8 weights (ORT's advice without VNNI; cost 8 F1 on MiniLM SQuAD here)"
    )
    export_dir: Path | None = option(None, help="also write the prepared ONNX/OpenVINO artifact here")
