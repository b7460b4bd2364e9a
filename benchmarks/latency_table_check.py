"""How well `bertbench prune --latency`'s table predicts: the table of a parent on this machine (measured, or from
the cache), and for each pruned model of that parent the time per batch it predicts, against the unpruned parent's.
Compare the printed fractions with the measured speed-ups of the same pruned models in runtimes_squad.py's table
(same backend, precision and batch).

    python benchmarks/latency_table_check.py --model runs/minilm-squad --pruned runs/p07 --backend onnxruntime \
        --precision int8 --window 178 --batch 32
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bertbench.bench.layer_latency import latency_table
from bertbench.cache import Cache
from bertbench.hardware import configure_threads
from bertbench.models import BertConfig, BertForQuestionAnswering, load_model, resolve_model
from bertbench.runtimes.options import Placement, RuntimeOptions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="the unpruned parent")
    parser.add_argument("--pruned", nargs="+", type=Path, default=[], help="`bertbench prune` outputs of --model")
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--window", type=int, required=True, help="tokens per window (the data's mean)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--cache-dir", type=Path, default=None)
    args = parser.parse_args()
    threads = configure_threads(args.threads)
    cache = Cache(args.cache_dir)
    parent = load_model(resolve_model(args.model), BertForQuestionAnswering)
    options = RuntimeOptions(backend=args.backend, precision=args.precision)
    options.check()
    placement = Placement(threads=threads, cache_dir=cache.root)
    table, hit = latency_table(parent, options, placement, args.window, args.batch, cache)
    print(json.dumps({k: v for k, v in table.as_dict().items() if k != "facts"}, indent=1))
    print(f"measured (ms per batch of one-layer models): {json.dumps(table.facts['measured_ms'])}")
    print(f"other cores during the measurement: {table.facts['other_cores']:.2f}; from the cache: {hit}")
    print(f"parent: {table.parent_ms:.1f} ms per batch predicted")
    for directory in args.pruned:
        config = BertConfig.from_hf_dict(json.loads((directory / "config.json").read_text()))
        layers = range(config.num_hidden_layers)
        predicted = table.model_ms(
            [config.heads_in_layer(i) for i in layers], [config.neurons_in_layer(i) for i in layers]
        )
        print(
            f"{directory.name}: {predicted:.1f} ms predicted, {predicted / table.parent_ms:.3f} of the parent's "
            f"(speed-up {table.parent_ms / predicted:.2f}x)"
        )


if __name__ == "__main__":
    main()
