"""Every closed list of values the command line accepts, in one module that imports nothing heavy."""

from __future__ import annotations

# null: answers at once with zeros (the harness's ceiling)
BACKENDS = ("torch", "onnxruntime", "openvino", "null")
BACKEND_ALIASES = {"ort": "onnxruntime", "ov": "openvino"}
PRECISIONS = ("fp32", "bf16", "fp16", "int8")
TRAINING_PRECISIONS = ("fp32", "bf16", "fp16")  # autocast mixed precision; INT8 is inference-only
QUANTIZATION_MODES = ("dynamic", "static")
INT8_WEIGHT_TYPES = ("s8", "u8")  # signed or unsigned INT8 weights
INT8_ACTIVATION_SCALES = ("per-token", "per-batch")  # dynamic INT8: one activation scale per token, or per tensor
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
PADDING_MODES = ("sorted", "longest", "fixed")
PROVIDERS = ("cpu", "cuda", "tensorrt")
OPTIMIZERS = ("adamw", "lamb")
SCENARIOS = ("offline", "singlestream", "multistream", "server")  # MLPerf LoadGen scenarios
# Queries a LoadGen test issues at least, scaled to a 2-core machine (MLPerf's own are far more).
DEFAULT_MIN_QUERIES = {"offline": 1, "singlestream": 64, "multistream": 64, "server": 64}
BENCH_MODES = ("performance", "accuracy")
OUTPUT_DTYPES = ("float32", "float16")  # the accuracy log's logits (MLPerf's --output_dtype)
COMPLIANCE_TESTS = ("TEST01", "TEST05")  # MLPerf Inference audit tests bertbench runs
