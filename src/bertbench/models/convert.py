"""Checkpoints the seeds start from -> our (Hugging Face's) parameter names, config and vocabulary.

Three source formats: Google's TensorFlow 1 BERT checkpoints (a folder or the release zip), MindSpore's model-zoo
BERT `.ckpt`, and NVIDIA DeepLearningExamples' PyTorch checkpoints. Each is read without its framework; names are
mapped, kernels transposed where the framework stores them [in, out], optimizer state dropped, and anything else is
refused by name: a converted model holds exactly the source's weights or nothing is written.
"""

from __future__ import annotations

import json
import re
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bertbench.models.config import BertConfig
from bertbench.models.mindspore_checkpoint import read_mindspore_checkpoint
from bertbench.models.tf_checkpoint import CheckpointFormatError, read_checkpoint

FORMATS = ("tf1", "mindspore", "nvidia")
TORCH_SUFFIXES = (".pt", ".pth", ".bin")
# Part of a converted model's cache key: a change of the mapping or of the math kept must rebuild old conversions
CONVERSION_VERSION = 1
# Each framework's GELU and LayerNorm epsilon: outputs equal the source's only when these are the source's own.
# Google's modeling.py and MindSpore's model zoo compute GELU with the tanh approximation (transformers'
# "gelu_new"); NVIDIA's with erf ("gelu"). MindSpore's LayerNorm uses epsilon 1e-7.
FRAMEWORK_MATH = {
    "tf1": {"hidden_act": "gelu_new", "layer_norm_eps": 1e-12},
    "mindspore": {"hidden_act": "gelu_new", "layer_norm_eps": 1e-7},
    "nvidia": {"hidden_act": "gelu", "layer_norm_eps": 1e-12},
}
GOOGLE_CONFIG_KEYS = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "max_position_embeddings",
    "type_vocab_size",
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "initializer_range",
)
HEAD_SIZE = 64  # every published BERT's attention head width: heads = hidden / 64 where no config says


@dataclass
class Checkpoint:
    """What a source checkpoint converts to, before anything is written."""

    source_format: str
    files: list[Path]  # the files read (hashed into the provenance record)
    tensors: dict[str, np.ndarray]  # our names -> arrays
    config: BertConfig
    architecture: str
    vocab: Path
    tokenizer: Any  # the WordPieceTokenizer built from the source's vocabulary (checked before anything is written)
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------- name mapping


_TF_LAYER_PARTS = {
    "attention/self/query": "attention.self.query",
    "attention/self/key": "attention.self.key",
    "attention/self/value": "attention.self.value",
    "attention/output/dense": "attention.output.dense",
    "attention/output/LayerNorm": "attention.output.LayerNorm",
    "intermediate/dense": "intermediate.dense",
    "output/dense": "output.dense",
    "output/LayerNorm": "output.LayerNorm",
}
_TF_FIXED = {
    "bert/embeddings/word_embeddings": "bert.embeddings.word_embeddings.weight",
    "bert/embeddings/position_embeddings": "bert.embeddings.position_embeddings.weight",
    "bert/embeddings/token_type_embeddings": "bert.embeddings.token_type_embeddings.weight",
    "cls/predictions/output_bias": "cls.predictions.bias",
    "cls/seq_relationship/output_weights": "cls.seq_relationship.weight",  # stored [2, hidden]: no transpose
    "cls/seq_relationship/output_bias": "cls.seq_relationship.bias",
    "cls/squad/output_weights": "qa_outputs.weight",  # run_squad.py: [2, hidden]
    "cls/squad/output_bias": "qa_outputs.bias",
    "output_weights": "classifier.weight",  # run_classifier.py: [labels, hidden]
    "output_bias": "classifier.bias",
}
_TF_MODULES = {
    "bert/embeddings/LayerNorm": "bert.embeddings.LayerNorm",
    "bert/pooler/dense": "bert.pooler.dense",
    "cls/predictions/transform/dense": "cls.predictions.transform.dense",
    "cls/predictions/transform/LayerNorm": "cls.predictions.transform.LayerNorm",
}
_TF_LEAVES = {"kernel": "weight", "bias": "bias", "gamma": "weight", "beta": "bias"}
# Training state, not weights: Adam/LAMB slots, the step counter, NVIDIA's AMP loss scaling
_TF_TRAINING_STATE = re.compile(
    r"(^|/)(adam_m|adam_v|Adam|Adam_1|Momentum|LAMB|LAMB_1|beta1_power|beta2_power|global_step|loss_scale|good_steps|"
    r"current_loss_scale)$"
)


def _module(module: str, modules: dict[str, str], layer: re.Pattern[str], parts: dict[str, str]) -> str | None:
    """Our module for a framework's module name: a fixed one, or an encoder layer's part (`layer` captures the
    layer number and the part's name)."""
    if module in modules:
        return modules[module]
    match = layer.fullmatch(module)
    if match and match.group(2) in parts:
        return f"bert.encoder.layer.{match.group(1)}.{parts[match.group(2)]}"
    return None


_TF_LAYER = re.compile(r"bert/encoder/layer_(\d+)/(.+)")
_MS_LAYER = re.compile(r"bert_encoder\.layers\.(\d+)\.(.+)")


def tf_name(name: str) -> tuple[str, bool] | None:
    """Google's variable name -> (our name, transpose?), or None for a name that is not a weight of BERT."""
    if name in _TF_FIXED:
        return _TF_FIXED[name], False
    module, _, leaf = name.rpartition("/")
    if leaf not in _TF_LEAVES:
        return None
    ours = _module(module, _TF_MODULES, _TF_LAYER, _TF_LAYER_PARTS)
    if ours is None:
        return None
    return f"{ours}.{_TF_LEAVES[leaf]}", leaf == "kernel"


_MS_LAYER_PARTS = {
    "attention.attention.query_layer": "attention.self.query",
    "attention.attention.key_layer": "attention.self.key",
    "attention.attention.value_layer": "attention.self.value",
    "attention.output.dense": "attention.output.dense",
    "attention.output.layernorm": "attention.output.LayerNorm",
    "intermediate": "intermediate.dense",
    "output.dense": "output.dense",
    "output.layernorm": "output.LayerNorm",
}
_MS_FIXED = {
    "bert_embedding_lookup.embedding_table": "bert.embeddings.word_embeddings.weight",
    "bert_embedding_postprocessor.token_type_embedding.embedding_table": "bert.embeddings.token_type_embeddings.weight",
    "bert_embedding_postprocessor.embedding_table": "bert.embeddings.token_type_embeddings.weight",  # older zoo
    "bert_embedding_postprocessor.full_position_embedding.embedding_table": (
        "bert.embeddings.position_embeddings.weight"
    ),
    "bert_embedding_postprocessor.full_position_embeddings": "bert.embeddings.position_embeddings.weight",
    "cls1.output_bias": "cls.predictions.bias",
}
_MS_MODULES = {
    "bert_embedding_postprocessor.layernorm": "bert.embeddings.LayerNorm",
    "cls1.dense": "cls.predictions.transform.dense",
    "cls1.layernorm": "cls.predictions.transform.LayerNorm",
    "cls2.dense": "cls.seq_relationship",
    "dense1": "qa_outputs",  # BertSquadModel
    "dense_1": "classifier",  # BertCLSModel
}
_MS_LEAVES = {"weight": "weight", "bias": "bias", "gamma": "weight", "beta": "bias"}
# Where the zoo's backbone (BertModel) and heads sit inside the training wrappers: `bert.bert.…`, `bert.cls1.…`
_MS_BACKBONE = re.compile(
    r"^(?:\w+\.)*?bert\.(bert_embedding_lookup|bert_embedding_postprocessor|bert_encoder|dense)\."
)
_MS_HEAD = re.compile(r"^(?:[\w]+\.)*?(cls1|cls2|dense1|dense_1)\.")


def mindspore_name(name: str) -> str | None:
    """The model zoo's parameter name -> ours, or None for a name that is not a weight of BERT."""
    backbone = _MS_BACKBONE.match(name)
    rest = None
    if backbone:
        rest = name[backbone.start(1) :]
        if rest.startswith("dense."):  # BertModel.dense: the pooler
            leaf = rest.removeprefix("dense.")
            return f"bert.pooler.dense.{_MS_LEAVES[leaf]}" if leaf in _MS_LEAVES else None
    else:
        head = _MS_HEAD.match(name)
        if head is None:
            return None
        rest = name[head.start(1) :]
    if rest in _MS_FIXED:
        return _MS_FIXED[rest]
    module, _, leaf = rest.rpartition(".")
    if leaf not in _MS_LEAVES:
        return None
    ours = _module(module, _MS_MODULES, _MS_LAYER, _MS_LAYER_PARTS)
    return None if ours is None else f"{ours}.{_MS_LEAVES[leaf]}"


_MS_TRAINING_STATE = re.compile(
    r"^(adam_m|adam_v|lamb_m|lamb_v|moments|accu_grads|global_step|learning_rate|beta1_power|beta2_power|loss_scale|"
    r"scale_sense|current_iterator_step|last_overflow_iterator_step|epoch_num|step_num|total_num|start_num|end_num)"
    r"(\.|$)"
)


def nvidia_name(name: str) -> str | None:
    """NVIDIA's state-dict key -> ours (their fused `dense_act` layers are plain dense layers plus GELU)."""
    name = name.removeprefix("module.")
    name = name.replace(".dense_act.", ".dense.")
    name = name.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
    if name.startswith(("embeddings.", "encoder.", "pooler.")):
        name = "bert." + name
    if name.endswith("position_ids"):
        return None
    return name


# ---------------------------------------------------------------------------------------------- sources


@dataclass
class Source:
    """A located source checkpoint: its format, weight file(s) and the config/vocabulary found beside it."""

    source_format: str
    weights: Path  # the TF prefix (…/bert_model.ckpt), the MindSpore .ckpt or the torch file
    config: Path | None
    vocab: Path | None
    files: list[Path]


def holds_checkpoint(directory: Path) -> bool:
    """Whether a folder holds a checkpoint `locate` would look for (a TF1 index, a MindSpore .ckpt, a torch file)."""
    return any(p.is_file() and p.suffix in (".index", ".ckpt", *TORCH_SUFFIXES) for p in directory.iterdir())


def _beside(folder: Path, names: tuple[str, ...]) -> Path | None:
    for name in names:
        if (folder / name).is_file():
            return folder / name
    return None


def locate(src: Path, config: Path | None, vocab: Path | None, unpack_into: Path | None = None) -> Source:
    """Find the checkpoint `src` designates (a folder, a release zip, a TF prefix or index, a .ckpt, a torch file)."""
    if not src.exists() and not Path(f"{src}.index").exists():
        raise CheckpointFormatError(f"{src}: not found")
    if src.is_file() and src.suffix == ".zip":
        if unpack_into is None:
            raise CheckpointFormatError(f"{src}: a zip needs a place to unpack to")
        src = _unzip(src, unpack_into, config is not None)
    if src.is_dir():
        if (src / "config.json").exists() and not list(src.glob("*.ckpt*")):
            raise CheckpointFormatError(f"{src}: already a Hugging Face model directory (give it to --model)")
        indexes = sorted(src.glob("*.index"))
        ckpts = sorted(p for p in src.glob("*.ckpt") if p.is_file())
        torch_files = sorted(p for p in src.iterdir() if p.suffix in TORCH_SUFFIXES)
        found = [*indexes, *ckpts, *torch_files]
        if len(found) != 1:
            what = ", ".join(p.name for p in found) or "no checkpoint file"
            raise CheckpointFormatError(
                f"{src}: expected one checkpoint (a TensorFlow .index, a MindSpore .ckpt or a PyTorch file), "
                f"found {what}"
            )
        src = found[0]
    folder = src.parent
    config = config or _beside(folder, ("bert_config.json", "config.json"))
    vocab = vocab or _beside(folder, ("vocab.txt",))
    if src.suffix == ".index" or Path(f"{src}.index").exists():
        prefix = src.with_suffix("") if src.suffix == ".index" else src
        index = Path(f"{prefix}.index")
        shards = sorted(folder.glob(f"{prefix.name}.data-*"))
        return Source("tf1", prefix, config, vocab, [index, *shards])
    if src.suffix == ".ckpt":
        return Source("mindspore", src, config, vocab, [src])
    if src.suffix in TORCH_SUFFIXES:
        return Source("nvidia", src, config, vocab, [src])
    raise CheckpointFormatError(f"{src}: not a checkpoint bertbench converts (TensorFlow 1, MindSpore, PyTorch)")


def _unzip(archive: Path, into: Path, config_given: bool) -> Path:
    """Unpack a release zip (Google's `uncased_L-12_H-768_A-12.zip`) safely; the folder holding its checkpoint."""
    try:
        with zipfile.ZipFile(archive) as zipped:
            members = [m for m in zipped.namelist() if not _resource_fork(m)]
            for member in members:
                target = (into / member).resolve()
                if not target.is_relative_to(into.resolve()):
                    raise CheckpointFormatError(f"{archive}: {member} would unpack outside its folder")
            zipped.extractall(into, members)
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError, zlib.error) as exc:
        raise CheckpointFormatError(f"{archive}: not a readable zip file ({type(exc).__name__}: {exc})") from None
    indexes = [p for p in sorted(into.rglob("*.index")) if not _resource_fork(str(p))]
    if len(indexes) != 1:
        found = ", ".join(str(p.relative_to(into)) for p in indexes) or "none"
        raise CheckpointFormatError(f"{archive}: expected one TensorFlow checkpoint inside, found {found}")
    folder = indexes[0].parent
    if not config_given and _beside(folder, ("bert_config.json", "config.json")) is None:
        raise CheckpointFormatError(f"{archive}: no bert_config.json beside {indexes[0].name} (or give --config)")
    return folder


def _resource_fork(member: str) -> bool:
    """macOS's zip extras (`__MACOSX/…`, `._name`): not files of the release."""
    return "__MACOSX" in member or Path(member).name.startswith("._")


# ---------------------------------------------------------------------------------------------- conversion


def _read_torch(path: Path) -> dict[str, np.ndarray]:
    import torch

    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise CheckpointFormatError(
            f"{path}: not loadable as tensors only ({type(exc).__name__}: {first[:160]}); a training checkpoint that "
            "pickles Python objects (NVIDIA's data loader state) is not read: save its 'model' state dict alone"
        ) from None
    state = loaded.get("model", loaded) if isinstance(loaded, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointFormatError(f"{path}: no state dict (neither the checkpoint nor its 'model' entry)")
    return {k: v.detach().float().numpy() if v.is_floating_point() else v.numpy() for k, v in state.items()}


def _mapped(source: Source, tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The source's weights (training state already left unread) under our names; an unknown name refused."""
    out: dict[str, np.ndarray] = {}
    where = source.weights if source.source_format != "tf1" else Path(f"{source.weights}.index")
    for name, array in tensors.items():
        if source.source_format == "tf1":
            mapped = tf_name(name)
            ours, transpose = mapped if mapped else (None, False)
        elif source.source_format == "mindspore":
            ours, transpose = mindspore_name(name), False
        else:
            ours, transpose = nvidia_name(name), False
            if ours is None:
                continue
        if ours is None:
            raise CheckpointFormatError(f"{where}: {name} is not a variable of BERT bertbench knows")
        if ours in out:
            raise CheckpointFormatError(f"{where}: {name} maps onto {ours} a second time")
        value = np.ascontiguousarray(array.T if transpose else array)
        out[ours] = value.astype(np.float32) if value.dtype.kind == "f" else value
    # tied to the word embeddings and the output bias (NVIDIA and transformers save both copies)
    for tied, owner in (
        ("cls.predictions.decoder.weight", "bert.embeddings.word_embeddings.weight"),
        ("cls.predictions.decoder.bias", "cls.predictions.bias"),
    ):
        if tied in out:
            copy = out.pop(tied)
            if owner not in out or not np.array_equal(copy, out[owner]):
                raise CheckpointFormatError(f"{where}: {tied} differs from {owner} (BERT ties them)")
    return out


def _config(source: Source, tensors: dict[str, np.ndarray]) -> tuple[BertConfig, list[str]]:
    """The model's config: the source's config file (Google's keys) where there is one, else the sizes the tensors
    show; the framework's own GELU and LayerNorm epsilon either way."""
    notes: list[str] = []
    words = tensors.get("bert.embeddings.word_embeddings.weight")
    if words is None:
        raise CheckpointFormatError(f"{source.weights}: no word embeddings (not a BERT checkpoint)")

    def rows(name: str) -> int:
        tensor = tensors.get(name)
        if tensor is None or tensor.ndim != 2:
            raise CheckpointFormatError(f"{source.weights}: no {name} (as BERT has)")
        return int(tensor.shape[0])

    if words.ndim != 2:
        raise CheckpointFormatError(f"{source.weights}: the word embeddings are not a matrix ({words.shape})")
    layers = sorted({int(k.split(".")[3]) for k in tensors if k.startswith("bert.encoder.layer.")})
    if not layers:
        raise CheckpointFormatError(f"{source.weights}: no encoder layers")
    inferred = {
        "vocab_size": int(words.shape[0]),
        "hidden_size": int(words.shape[1]),
        "num_hidden_layers": len(layers),
        "intermediate_size": rows("bert.encoder.layer.0.intermediate.dense.weight"),
        "max_position_embeddings": rows("bert.embeddings.position_embeddings.weight"),
        "type_vocab_size": rows("bert.embeddings.token_type_embeddings.weight"),
    }
    data: dict[str, Any] = {}
    if source.config is not None:
        try:
            data = json.loads(source.config.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CheckpointFormatError(f"{source.config}: not a JSON config ({exc})") from None
        if not isinstance(data, dict):
            raise CheckpointFormatError(f"{source.config}: not a JSON object")
        data = {k: data[k] for k in GOOGLE_CONFIG_KEYS if k in data}
        for key, value in inferred.items():
            said = data.get(key)
            if said is None:
                data[key] = value
            elif key == "vocab_size" and isinstance(said, int) and value > said and value % 8 == 0:
                # NVIDIA pads the embedding table to a multiple of 8 (30522 -> 30528); the rows past the
                # vocabulary are never looked up, and the MLM logits keep the source's width
                notes.append(f"vocab_size {said} in {source.config.name}; the embeddings hold {value} rows (padded)")
                data[key] = value
            elif said != value:
                raise CheckpointFormatError(
                    f"{source.config}: {key} {said} disagrees with the checkpoint's tensors ({value})"
                )
    else:
        data = dict(inferred)
        notes.append("no config file: sizes read from the tensors")
    if "num_attention_heads" not in data:
        data["num_attention_heads"] = max(1, inferred["hidden_size"] // HEAD_SIZE)
        notes.append(
            f"{data['num_attention_heads']} attention heads: hidden {inferred['hidden_size']} / {HEAD_SIZE}, as every "
            "published BERT (no config says)"
        )
    data.update(FRAMEWORK_MATH[source.source_format])
    if "classifier.weight" in tensors:
        data["num_labels"] = int(tensors["classifier.weight"].shape[0])
    where = str(source.config or source.weights)
    try:
        config = BertConfig.from_hf_dict(data)
        config.validate(where)
    except (TypeError, ValueError) as exc:
        message = str(exc)
        raise CheckpointFormatError(message if message.startswith(where) else f"{where}: {message}") from None
    return config, notes


def _architecture(tensors: dict[str, np.ndarray]) -> str:
    if "qa_outputs.weight" in tensors:
        return "BertForQuestionAnswering"
    if "classifier.weight" in tensors:
        return "BertForSequenceClassification"
    if "cls.seq_relationship.weight" in tensors:
        return "BertForPreTraining"
    return "BertForMaskedLM" if "cls.predictions.bias" in tensors else "BertModel"


def _tokenizer(vocab: Path, lower_case: bool) -> Any:
    """The tokenizer of a source's vocab.txt, built (and so checked) in a scratch folder."""
    import shutil
    import tempfile

    from bertbench.models.tokenizer import WordPieceTokenizer

    with tempfile.TemporaryDirectory(prefix="bertbench-vocab-") as scratch:
        shutil.copyfile(vocab, Path(scratch) / "vocab.txt")
        (Path(scratch) / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": lower_case}))
        try:
            return WordPieceTokenizer.from_directory(scratch)
        except Exception as exc:
            raise CheckpointFormatError(
                f"{vocab}: not a BERT vocabulary ({type(exc).__name__}: {exc}; it needs [PAD], [UNK], [CLS], [SEP], "
                "[MASK])"
            ) from None


def read_source(source: Source, lower_case: bool = True) -> Checkpoint:
    """Read and map `source`: weights under our names, its config and vocabulary (a missing one is named)."""
    if source.vocab is None:
        raise CheckpointFormatError(f"{source.weights}: no vocab.txt beside it (give --vocab)")
    if source.source_format == "tf1":
        raw = read_checkpoint(source.weights, lambda name: not _TF_TRAINING_STATE.search(name))
    elif source.source_format == "mindspore":
        raw = read_mindspore_checkpoint(source.weights, lambda name: not _MS_TRAINING_STATE.match(name))
    else:
        raw = _read_torch(source.weights)
    tensors = _mapped(source, raw)
    config, notes = _config(source, tensors)
    if "classifier.weight" in tensors:
        notes.append(
            f"a {config.num_labels}-label head converted as a sentence classifier (MindSpore's and NVIDIA's NER heads "
            "carry the same names: a token classifier would be converted the same way)"
        )
    vocab_lines = sum(1 for _ in source.vocab.open(encoding="utf-8"))
    if vocab_lines > config.vocab_size:
        raise CheckpointFormatError(
            f"{source.vocab}: {vocab_lines} tokens, more than the checkpoint's {config.vocab_size} embeddings"
        )
    tokenizer = _tokenizer(source.vocab, lower_case)
    architecture = _architecture(tensors)
    return Checkpoint(
        source.source_format, list(source.files), tensors, config, architecture, source.vocab, tokenizer, notes
    )


def read_checked(src: Path, config: Path | None, vocab: Path | None, lower_case: bool, scratch: Path) -> Checkpoint:
    """Locate (a zip unpacked into `scratch`), read, map and shape-check a source: nothing is written yet."""
    source = locate(src, config, vocab, scratch)
    checkpoint = read_source(source, lower_case)
    check_shapes(checkpoint, source.weights)
    return checkpoint


# ---------------------------------------------------------------------------------------------- writing

CONVERSION_RECORD = "conversion.json"


def check_shapes(checkpoint: Checkpoint, where: Path) -> None:
    """Every mapped tensor has the shape the config gives it, and the encoder is complete."""
    from bertbench.models import bert

    def shapes(model: Any) -> dict[str, tuple[int, ...]]:
        return {k: tuple(v.shape) for k, v in model.state_dict().items()}

    expected = shapes(bert.BertForPreTraining(checkpoint.config))  # the body, the pooler, both pretraining heads
    if checkpoint.architecture in ("BertForQuestionAnswering", "BertForSequenceClassification"):
        expected.update(shapes(getattr(bert, checkpoint.architecture)(checkpoint.config)))
    for name, array in checkpoint.tensors.items():
        if name not in expected:
            raise CheckpointFormatError(f"{where}: {name} is not a weight of BERT bertbench knows")
        if expected[name] != tuple(array.shape):
            raise CheckpointFormatError(
                f"{where}: {name} has shape {tuple(array.shape)}, the config gives {expected[name]}"
            )
    body = [k for k in expected if k.startswith(("bert.embeddings.", "bert.encoder."))]
    missing = [k for k in body if k not in checkpoint.tensors]
    if missing:
        raise CheckpointFormatError(f"{where}: {len(missing)} encoder weights missing, e.g. {missing[0]}")


def state_dict(checkpoint: Checkpoint) -> dict[str, Any]:
    """The converted weights as torch tensors (float32), ready for safetensors."""
    import torch

    return {name: torch.from_numpy(np.ascontiguousarray(array)) for name, array in checkpoint.tensors.items()}


def says_cased(src: Path) -> bool:
    """Google's release names say the vocabulary's case: `cased_L-12_H-768_A-12` keeps it, `uncased_…` does not.
    The name read is the release's: the zip's or folder's own, or the folder holding a checkpoint file."""
    src = src.expanduser().resolve()
    named = src if src.is_dir() or src.suffix == ".zip" else src.parent
    return re.search(r"(^|[^n])cased", named.name.lower()) is not None


def write_directory(
    checkpoint: Checkpoint, directory: Path, source: Path, digests: dict[Path, str] | None = None
) -> dict[str, Any]:
    """Write the Hugging Face directory (model.safetensors, config.json, tokenizer files, conversion.json, the last
    written: a folder without it is not a finished conversion). Returns the conversion record. `digests`: SHA-256s
    of source files the caller has already computed (a checkpoint is gigabytes: never hashed twice)."""
    from safetensors.torch import save

    from bertbench.io_utils import atomic_write_bytes, atomic_write_json, sha256_file

    directory.mkdir(parents=True, exist_ok=True)
    (directory / CONVERSION_RECORD).unlink(missing_ok=True)
    metadata = {"format": "pt", "converted_from": checkpoint.source_format}
    atomic_write_bytes(directory / "model.safetensors", save(state_dict(checkpoint), metadata=metadata))
    config = checkpoint.config.to_hf_dict(checkpoint.architecture)
    atomic_write_json(directory / "config.json", config)
    checkpoint.tokenizer.save(directory)  # tokenizer.json, vocab.txt, …: an earlier conversion's are replaced
    record = {
        "source": str(source),
        "source_format": checkpoint.source_format,
        "files": {str(path): (digests or {}).get(path) or sha256_file(path) for path in checkpoint.files},
        "architecture": checkpoint.architecture,
        "do_lower_case": checkpoint.tokenizer.do_lower_case,
        "notes": checkpoint.notes,
    }
    atomic_write_json(directory / CONVERSION_RECORD, record)
    return record
