"""The conversion round trip on a bert-base-shaped checkpoint: TensorFlow writes a TF1 checkpoint of random weights
under Google's names (with Adam slots, as a trained one has), `bertbench convert` turns it into a Hugging Face
directory (timed, in its own process, over --rounds), and TensorFlow's forward pass on the source is compared with
bertbench's and transformers' on the result (max |difference| of hidden states, MLM and NSP logits).

Needs the frameworks extra: pip install -e ".[frameworks]".

    python benchmarks/convert_roundtrip.py --work runs/convert-roundtrip --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.source_frameworks import (  # noqa: E402
    Shape,
    forward,
    google_names,
    random_weights,
    save_tf1_checkpoint,
    tensorflow_ops,
    tf1_getter,
)
from tests.test_convert import _google_config, _inputs, _max_differences, _ours, _transformers, _vocab  # noqa: E402

from bench_cli import bertbench, other_cores_now, run  # noqa: E402

BERT_BASE = Shape(vocab=30522, hidden=768, layers=12, heads=12, intermediate=3072, positions=512)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="a new folder for the checkpoint and conversions")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    source = args.work / "uncased_L-12_H-768_A-12"
    source.mkdir(parents=True)
    started = time.perf_counter()
    weights = random_weights(BERT_BASE, 0, std=0.02)  # BERT's initializer range
    save_tf1_checkpoint(google_names(weights, squad=False), source / "bert_model.ckpt")
    _google_config(source / "bert_config.json", BERT_BASE)
    _vocab(source / "vocab.txt", BERT_BASE.vocab)
    size = sum(p.stat().st_size for p in source.glob("bert_model.ckpt.*")) / 1e9
    print(f"TensorFlow wrote {size:.2f} GB (weights and Adam slots) in {time.perf_counter() - started:.1f} s")
    print(f"other processes keep {other_cores_now():.2f} cores busy")
    times = []
    for round_ in range(args.rounds):
        out = args.work / f"hf-{round_}"
        times.append(run(bertbench("convert", str(source), "--output-dir", str(out))))
    spread = f"min {min(times):.1f}, max {max(times):.1f}"
    print(f"convert: median {statistics.median(times):.1f} s ({spread}) over {len(times)} rounds")
    ids, types, mask = _inputs(BERT_BASE.vocab, 128)
    getter = tf1_getter(source / "bert_model.ckpt", squad=False)
    reference = forward(tensorflow_ops(), getter, BERT_BASE, ids, types, mask, 1e-12)
    from bertbench.models import BertForPreTraining

    ours = _ours(args.work / "hf-0", BertForPreTraining, ids, types, mask)
    theirs = _transformers(args.work / "hf-0", False, ids, types, mask)
    print("max |TensorFlow output|:", {k: float(abs(v).max()) for k, v in reference.items()})
    print("max |TensorFlow - bertbench|:", _max_differences(reference, ours, mask=mask))
    print("max |TensorFlow - transformers|:", _max_differences(reference, theirs, mask=mask))


if __name__ == "__main__":
    main()
