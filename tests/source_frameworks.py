"""The source frameworks, run on their own checkpoints: Google's BERT forward pass (modeling.py's arithmetic: tanh
GELU, additive -10000 mask, LayerNorm over the last axis) written once over a few tensor operations, and those
operations in TensorFlow and in MindSpore. Checkpoints are written by each framework's own saver. Nothing of
bertbench is imported."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

GOOGLE_LAYER = {  # our logical names -> Google's scopes inside bert/encoder/layer_N/
    "query": "attention/self/query",
    "key": "attention/self/key",
    "value": "attention/self/value",
    "attn_out": "attention/output/dense",
    "attn_ln": "attention/output/LayerNorm",
    "inter": "intermediate/dense",
    "out": "output/dense",
    "out_ln": "output/LayerNorm",
}
ZOO_LAYER = {  # … and MindSpore's model zoo names inside bert.bert.bert_encoder.layers.N.
    "query": "attention.attention.query_layer",
    "key": "attention.attention.key_layer",
    "value": "attention.attention.value_layer",
    "attn_out": "attention.output.dense",
    "attn_ln": "attention.output.layernorm",
    "inter": "intermediate",
    "out": "output.dense",
    "out_ln": "output.layernorm",
}


@dataclass
class Shape:
    vocab: int
    hidden: int
    layers: int
    heads: int
    intermediate: int
    positions: int
    types: int = 2


def random_weights(shape: Shape, seed: int, std: float = 0.2) -> dict[str, np.ndarray]:
    """Random BERT weights under logical names; dense weights [in, out] (Google's kernel layout). The tests' 0.2 is
    ten times BERT's initializer range, so that a wrong transpose or name shows in small models."""
    rng = np.random.default_rng(seed)

    def normal(*dims: int) -> np.ndarray:
        return (rng.standard_normal(dims) * std).astype(np.float32)

    h, i = shape.hidden, shape.intermediate
    w: dict[str, np.ndarray] = {
        "word": normal(shape.vocab, h),
        "position": normal(shape.positions, h),
        "type": normal(shape.types, h),
        "emb_ln/gamma": 1 + normal(h),
        "emb_ln/beta": normal(h),
        "pooler/kernel": normal(h, h),
        "pooler/bias": normal(h),
        "mlm/kernel": normal(h, h),
        "mlm/bias": normal(h),
        "mlm_ln/gamma": 1 + normal(h),
        "mlm_ln/beta": normal(h),
        "mlm/output_bias": normal(shape.vocab),
        "nsp/weights": normal(2, h),  # [2, hidden] in every framework
        "nsp/bias": normal(2),
        "squad/weights": normal(2, h),
        "squad/bias": normal(2),
    }
    for layer in range(shape.layers):
        for part, (fan_in, fan_out) in {
            "query": (h, h),
            "key": (h, h),
            "value": (h, h),
            "attn_out": (h, h),
            "inter": (h, i),
            "out": (i, h),
        }.items():
            w[f"{layer}/{part}/kernel"] = normal(fan_in, fan_out)
            w[f"{layer}/{part}/bias"] = normal(fan_out)
        for part in ("attn_ln", "out_ln"):
            w[f"{layer}/{part}/gamma"] = 1 + normal(h)
            w[f"{layer}/{part}/beta"] = normal(h)
    return w


GOOGLE_FIXED = {
    "word": "bert/embeddings/word_embeddings",
    "position": "bert/embeddings/position_embeddings",
    "type": "bert/embeddings/token_type_embeddings",
    "emb_ln/gamma": "bert/embeddings/LayerNorm/gamma",
    "emb_ln/beta": "bert/embeddings/LayerNorm/beta",
    "pooler/kernel": "bert/pooler/dense/kernel",
    "pooler/bias": "bert/pooler/dense/bias",
}
GOOGLE_PRETRAINING = {
    "mlm/kernel": "cls/predictions/transform/dense/kernel",
    "mlm/bias": "cls/predictions/transform/dense/bias",
    "mlm_ln/gamma": "cls/predictions/transform/LayerNorm/gamma",
    "mlm_ln/beta": "cls/predictions/transform/LayerNorm/beta",
    "mlm/output_bias": "cls/predictions/output_bias",
    "nsp/weights": "cls/seq_relationship/output_weights",
    "nsp/bias": "cls/seq_relationship/output_bias",
}
GOOGLE_SQUAD = {"squad/weights": "cls/squad/output_weights", "squad/bias": "cls/squad/output_bias"}
ZOO_FIXED = {
    "word": "bert.bert.bert_embedding_lookup.embedding_table",
    "position": "bert.bert.bert_embedding_postprocessor.full_position_embedding.embedding_table",
    "type": "bert.bert.bert_embedding_postprocessor.token_type_embedding.embedding_table",
    "emb_ln/gamma": "bert.bert.bert_embedding_postprocessor.layernorm.gamma",
    "emb_ln/beta": "bert.bert.bert_embedding_postprocessor.layernorm.beta",
    "pooler/kernel": "bert.bert.dense.weight",
    "pooler/bias": "bert.bert.dense.bias",
    "mlm/kernel": "bert.cls1.dense.weight",
    "mlm/bias": "bert.cls1.dense.bias",
    "mlm_ln/gamma": "bert.cls1.layernorm.gamma",
    "mlm_ln/beta": "bert.cls1.layernorm.beta",
    "mlm/output_bias": "bert.cls1.output_bias",
    "nsp/weights": "bert.cls2.dense.weight",
    "nsp/bias": "bert.cls2.dense.bias",
}
ZOO_LEAF = {"kernel": "weight", "bias": "bias", "gamma": "gamma", "beta": "beta"}


def google_name(logical: str, squad: bool) -> str | None:
    """A logical name's TF1 variable (run_pretraining.py's heads, or run_squad.py's with `squad`)."""
    parts = logical.split("/")
    if parts[0].isdigit():
        return f"bert/encoder/layer_{parts[0]}/{GOOGLE_LAYER[parts[1]]}/{parts[2]}"
    return {**GOOGLE_FIXED, **(GOOGLE_SQUAD if squad else GOOGLE_PRETRAINING)}.get(logical)


def zoo_name(logical: str) -> str | None:
    """A logical name's MindSpore model zoo parameter (BertNetworkWithLoss)."""
    parts = logical.split("/")
    if parts[0].isdigit():
        return f"bert.bert.bert_encoder.layers.{parts[0]}.{ZOO_LAYER[parts[1]]}.{ZOO_LEAF[parts[2]]}"
    return ZOO_FIXED.get(logical)


def google_names(w: dict[str, np.ndarray], squad: bool) -> dict[str, np.ndarray]:
    """Logical weights under Google's TF1 variable names (kernels [in, out], as TF stores them)."""
    return {name: value for key, value in w.items() if (name := google_name(key, squad))}


def zoo_names(w: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Logical weights under MindSpore model zoo names; nn.Dense weights are [out, in]."""
    out = {}
    for key, value in w.items():
        name = zoo_name(key)
        if name:
            out[name] = np.ascontiguousarray(value.T) if key.endswith("/kernel") else value
    return out


@dataclass
class Ops:
    """The tensor operations the forward pass needs, in one framework."""

    constant: Callable[[np.ndarray], Any]
    matmul: Callable[[Any, Any], Any]
    transpose: Callable[[Any, tuple[int, ...]], Any]
    reshape: Callable[[Any, tuple[int, ...]], Any]
    gather: Callable[[Any, Any], Any]
    softmax: Callable[[Any], Any]
    tanh: Callable[[Any], Any]
    mean: Callable[[Any], Any]  # over the last axis, kept
    rsqrt: Callable[[Any], Any]
    numpy: Callable[[Any], np.ndarray]


def forward(
    ops: Ops, get: Callable[[str], Any], shape: Shape, ids: np.ndarray, types: np.ndarray, mask: np.ndarray, eps: float
) -> dict[str, np.ndarray]:
    """Google's BERT forward pass: hidden states, MLM logits, NSP logits (where the heads exist), QA logits.
    `get(logical)` returns the framework's tensor, dense weights [in, out]; None where the checkpoint lacks it."""
    batch, length = ids.shape
    head = shape.hidden // shape.heads

    def dense(x: Any, scope: str) -> Any:
        return ops.matmul(x, get(f"{scope}/kernel")) + get(f"{scope}/bias")

    def layer_norm(x: Any, scope: str) -> Any:
        mu = ops.mean(x)
        var = ops.mean((x - mu) * (x - mu))
        return (x - mu) * ops.rsqrt(var + eps) * get(f"{scope}/gamma") + get(f"{scope}/beta")

    def gelu(x: Any) -> Any:
        return 0.5 * x * (1.0 + ops.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x * x * x)))

    def split(x: Any) -> Any:
        return ops.transpose(ops.reshape(x, (batch, length, shape.heads, head)), (0, 2, 1, 3))

    x = ops.gather(get("word"), ops.constant(ids)) + ops.gather(get("type"), ops.constant(types))
    x = layer_norm(x + ops.constant(ops.numpy(get("position"))[:length][None]), "emb_ln")
    adder = ops.constant(((1.0 - mask.astype(np.float32)) * -10000.0)[:, None, None, :])
    for layer in range(shape.layers):
        q, k, v = (split(dense(x, f"{layer}/{part}")) for part in ("query", "key", "value"))
        scores = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) * (1.0 / math.sqrt(head)) + adder
        context = ops.reshape(ops.transpose(ops.matmul(ops.softmax(scores), v), (0, 2, 1, 3)), (batch, length, -1))
        attended = layer_norm(dense(context, f"{layer}/attn_out") + x, f"{layer}/attn_ln")
        x = layer_norm(dense(gelu(dense(attended, f"{layer}/inter")), f"{layer}/out") + attended, f"{layer}/out_ln")
    out = {"hidden": ops.numpy(x)}
    if get("mlm/kernel") is not None:
        transformed = layer_norm(gelu(dense(x, "mlm")), "mlm_ln")
        word = get("word")
        out["mlm"] = ops.numpy(ops.matmul(transformed, ops.transpose(word, (1, 0))) + get("mlm/output_bias"))
        pooled = ops.tanh(dense(ops.reshape(x[:, 0], (batch, shape.hidden)), "pooler"))
        out["nsp"] = ops.numpy(ops.matmul(pooled, ops.transpose(get("nsp/weights"), (1, 0))) + get("nsp/bias"))
    if get("squad/weights") is not None:
        out["qa"] = ops.numpy(ops.matmul(x, ops.transpose(get("squad/weights"), (1, 0))) + get("squad/bias"))
    return out


# ------------------------------------------------------------------------------------------------ TensorFlow


def tensorflow_ops() -> Ops:
    import tensorflow as tf

    return Ops(
        constant=tf.constant,
        matmul=tf.linalg.matmul,
        transpose=lambda x, perm: tf.transpose(x, perm),
        reshape=tf.reshape,
        gather=lambda table, ids: tf.gather(table, ids),
        softmax=lambda x: tf.nn.softmax(x, axis=-1),
        tanh=tf.math.tanh,
        mean=lambda x: tf.reduce_mean(x, axis=-1, keepdims=True),
        rsqrt=tf.math.rsqrt,
        numpy=lambda x: np.asarray(x),
    )


def save_tf1_checkpoint(variables: dict[str, np.ndarray], prefix: Path) -> None:
    """Write `variables` as TensorFlow 1 does (tf.compat.v1 Saver: .index, .data-00000-of-00001, .meta), with a
    global_step and Adam slots as a trained checkpoint has."""
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        made = []
        for name, value in variables.items():
            made.append(tf.compat.v1.get_variable(name, initializer=tf.constant(value)))
            for slot in ("adam_m", "adam_v"):
                made.append(tf.compat.v1.get_variable(f"{name}/{slot}", initializer=tf.zeros_like(value)))
        made.append(tf.compat.v1.train.get_or_create_global_step())
        saver = tf.compat.v1.train.Saver(made)
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            saver.save(session, str(prefix))


def tf1_getter(prefix: Path, squad: bool) -> Callable[[str], Any]:
    """Logical name -> the tensor TensorFlow's own checkpoint reader returns (None where absent)."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(str(prefix))

    def get(logical: str) -> Any:
        name = google_name(logical, squad)
        if name is None or not reader.has_tensor(name):
            return None
        return tf.constant(reader.get_tensor(name))

    return get


# ------------------------------------------------------------------------------------------------ MindSpore


def mindspore_ops() -> Ops:
    import mindspore
    from mindspore import ops

    return Ops(
        constant=lambda a: mindspore.Tensor(a),
        matmul=ops.matmul,
        transpose=lambda x, perm: ops.transpose(x, perm),
        reshape=ops.reshape,
        gather=lambda table, ids: ops.gather(table, ids, 0),
        softmax=lambda x: ops.softmax(x, axis=-1),
        tanh=ops.tanh,
        mean=lambda x: ops.mean(x, axis=-1, keep_dims=True),
        rsqrt=ops.rsqrt,
        numpy=lambda x: x.asnumpy(),
    )


def save_mindspore_checkpoint(parameters: dict[str, np.ndarray], path: Path, crc: bool = False) -> None:
    """Write `parameters` with MindSpore's own saver, plus the optimizer state a pretraining checkpoint holds."""
    import mindspore

    entries = [{"name": name, "data": mindspore.Tensor(value)} for name, value in parameters.items()]
    entries += [
        {"name": f"moments.{name}", "data": mindspore.Tensor(np.zeros_like(v))} for name, v in parameters.items()
    ]
    entries.append({"name": "global_step", "data": mindspore.Tensor(np.array([7], dtype=np.int32))})
    mindspore.save_checkpoint(entries, str(path), crc_check=crc)


def mindspore_getter(path: Path) -> Callable[[str], Any]:
    """Logical name -> the tensor MindSpore's own loader returns, dense weights transposed to [in, out] by MindSpore."""
    import mindspore
    from mindspore import ops

    loaded = mindspore.load_checkpoint(str(path))

    def get(logical: str) -> Any:
        name = zoo_name(logical)
        if name is None or name not in loaded:
            return None
        tensor = loaded[name].value() if hasattr(loaded[name], "value") else loaded[name]
        if logical.endswith("/kernel"):
            return ops.transpose(tensor, (1, 0))
        return tensor

    return get
