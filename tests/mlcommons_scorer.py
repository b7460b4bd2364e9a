"""MLPerf's BERT accuracy script, `language/bert/accuracy-squad.py` (MLCommons' copy in ../shared, unmodified), run as
a submitter runs it. It imports google-research/bert's `tokenization` (its `BasicTokenizer` maps answers back to the
text) and `pkg_resources`; neither is installed here, so a folder of two small stand-ins goes first on its path:
`tokenization` hands it transformers' own port of that BasicTokenizer, `pkg_resources` lists the installed
distributions. Nothing of bertbench is imported."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from .conftest import MLCOMMONS

SCRIPT = MLCOMMONS / "language" / "bert" / "accuracy-squad.py"
TOKENIZATION = '''"""google-research/bert's tokenization, as accuracy-squad.py and create_squad_data.py use it."""
from transformers.models.bert.tokenization_bert_legacy import BasicTokenizer  # noqa: F401


def printable_text(text):
    return text


def whitespace_tokenize(text):
    return text.strip().split()
'''
PKG_RESOURCES = '''"""What accuracy-squad.py reads of setuptools' pkg_resources: the installed distributions."""
from importlib import metadata
from types import SimpleNamespace

working_set = [SimpleNamespace(key=d.metadata["Name"].lower()) for d in metadata.distributions() if d.metadata["Name"]]
'''


def score(
    data: Path, vocab: Path, log: Path, work: Path, dtype: str = "float32", transposed: bool = False
) -> tuple[dict[str, float] | None, dict[str, str]]:
    """(the exact match and F1 the script prints, its prediction for every question) for a LoadGen accuracy log."""
    shims = work / "shims"
    shims.mkdir(parents=True, exist_ok=True)
    (shims / "tokenization.py").write_text(TOKENIZATION)
    (shims / "pkg_resources.py").write_text(PKG_RESOURCES)
    out = work / "predictions.json"
    argv = [sys.executable, str(SCRIPT), "--vocab_file", str(vocab), "--val_data", str(data), "--log_file", str(log)]
    argv += ["--out_file", str(out), "--features_cache_file", str(work / "features.pickle"), "--output_dtype", dtype]
    argv += ["--output_transposed"] if transposed else []
    env = {
        **os.environ,
        "PYTHONPATH": str(shims),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",  # its `python3`
    }
    done = subprocess.run(argv, capture_output=True, text=True, timeout=900, cwd=work, env=env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    printed = re.search(r'\{"exact_match": [^}]*\}', done.stdout)
    return (json.loads(printed.group(0)) if printed else None), json.loads(out.read_text())
