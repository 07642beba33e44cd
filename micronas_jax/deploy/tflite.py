"""The found cell as a full-integer int8 `.tflite`, and its runs in TensorFlow Lite Micro and LiteRT.

The network is the NHWC pass over its graph (`export.inference_function`, BN folded, dead code
removed as a runtime would), traced by `jax2tf` into a `tf.function` and converted by TensorFlow's
own `TFLiteConverter`: int8 input and output, per-channel int8 weights, int32 biases, activation
scales calibrated on the user's images. The converter fuses a ReLU into the op that makes its
input where that tensor has no other reader.

TFLite Micro (the `tflite-micro` package: TFLM's interpreter and reference kernels built for the
host) is the reference, since it is what runs on the MCU; LiteRT (`ai-edge-litert`, XNNPACK) is
the second opinion. All of TensorFlow, tflite-micro and ai-edge-litert come with the `tflite`
extra and are imported only here.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import tempfile
import warnings
from collections.abc import Iterator

import numpy as np

from micronas_jax import export, model
from micronas_jax.errors import ParamError

INSTALL = "pip install 'micronas-jax[tflite]'"
# The TFLM arena the interpreter is given to measure what it uses; far above any network that
# fits an MCU, and the recording allocator reports the part it used.
MEASURING_ARENA_BYTES = 64 * 2**20


class TFLiteError(ParamError, RuntimeError):
  """A TFLite export that cannot run (the `tflite` extra is missing) or whose conversion failed."""


def missing() -> str | None:
  """Why the TFLite export cannot run here (one line with the install command), or None."""
  for module in ("tensorflow", "tflite_micro", "ai_edge_litert"):
    try:
      with _quiet_tensorflow():
        __import__(module)
    except ImportError:
      return f"the TFLite export needs {module.replace('_', '-')}: {INSTALL}"
  return None


def _require() -> None:
  reason = missing()
  if reason:
    raise TFLiteError(reason)


@contextlib.contextmanager
def _quiet_tensorflow() -> Iterator[None]:
  # TensorFlow logs its oneDNN and converter notes on stderr; the CLI's stderr is for progress.
  previous = os.environ.get("TF_CPP_MIN_LOG_LEVEL")
  os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
  try:
    yield
  finally:
    if previous is None:
      os.environ.pop("TF_CPP_MIN_LOG_LEVEL", None)
    else:
      os.environ["TF_CPP_MIN_LOG_LEVEL"] = previous


def convert(variables: model.Variables, ops, config: model.NetworkConfig,
            calibration: np.ndarray) -> bytes:
  """The int8 `.tflite` (bytes) of the network of cell `ops: [6]` with float `variables`, its
  activation scales calibrated on normalized images `calibration [N, r, r, c]`."""
  _require()
  with _quiet_tensorflow():
    import tensorflow as tf
    from jax.experimental import jax2tf

    weights = export.folded_weights(variables, ops, config)
    forward = export.inference_function(weights, ops, config, layout="NHWC", dead_code=True)
    function = tf.function(jax2tf.convert(forward, with_gradient=False), autograph=False,
                           input_signature=[tf.TensorSpec((1, *config.input_shape), tf.float32)])
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [function.get_concrete_function()], function)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([image[None]] for image in
                                                np.asarray(calibration, np.float32))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    try:
      with warnings.catch_warnings():
        # The input's statistics come from the images themselves; the converter's note on it
        # is no news to the user.
        warnings.simplefilter("ignore", UserWarning)
        return bytes(converter.convert())
    except Exception as error:  # the converter raises its own ConverterError and others
      raise TFLiteError(f"TFLiteConverter failed: {str(error).splitlines()[0]}") from None


@dataclasses.dataclass(frozen=True)
class Quantization:
  """The affine int8 quantization of a tensor: real = scale * (q - zero_point)."""
  scale: float
  zero_point: int

  def quantize(self, x: np.ndarray) -> np.ndarray:
    """int8 of real `x` (round to nearest, saturated)."""
    return np.clip(np.round(np.asarray(x) / self.scale) + self.zero_point, -128,
                   127).astype(np.int8)

  def dequantize(self, q: np.ndarray) -> np.ndarray:
    """Real values of int8 `q`."""
    return (np.asarray(q, np.float32) - self.zero_point) * self.scale


def _litert(tflite: bytes, delegates: bool = True):
  from ai_edge_litert.interpreter import Interpreter, OpResolverType
  resolver = (OpResolverType.AUTO if delegates
              else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
  interpreter = Interpreter(model_content=tflite, experimental_op_resolver_type=resolver)
  interpreter.allocate_tensors()
  return interpreter


def io_quantization(tflite: bytes) -> tuple[Quantization, Quantization]:
  """The quantization of the model's input image and of its output logits."""
  interpreter = _litert(tflite)
  (given,), (made,) = interpreter.get_input_details(), interpreter.get_output_details()
  return tuple(Quantization(float(d["quantization"][0]), int(d["quantization"][1]))
               for d in (given, made))


def op_names(tflite: bytes) -> list[str]:
  """The builtin op of every operator of the model, in execution order."""
  # Without XNNPACK, which would list its delegated partitions instead of the model's ops.
  return [op["op_name"] for op in _litert(tflite, delegates=False)._get_ops_details()]


@dataclasses.dataclass(frozen=True)
class Arena:
  """What TFLM's recording allocator reports of the tensor arena, in bytes.

  Attributes:
    total: head + tail, the arena the model needs (the size to give `tensor_arena`).
    head: the non-persistent part: the activations as TFLM's memory planner laid them out, and
      the kernels' scratch buffers.
    tail: the persistent part: tensor and node structs, quantization data, the kernels' op data.
    parts: the tail's allocations by what TFLM names them ('TfLiteEvalTensor data', ...).
  """
  total: int
  head: int
  tail: int
  parts: dict


_ALLOCATION = re.compile(r"Arena allocation (total|head|tail) (\d+) bytes")
_PART = re.compile(r"'([^']+)' used (\d+) bytes")


def parse_allocations(text: str) -> Arena:
  """The `Arena` of the lines TFLM's `print_allocations()` writes."""
  sizes = {kind: int(size) for kind, size in _ALLOCATION.findall(text)}
  if set(sizes) != {"total", "head", "tail"}:
    raise TFLiteError("tflite-micro printed no arena allocation (is this its recording "
                      "interpreter?)")
  return Arena(**sizes, parts={name: int(size) for name, size in _PART.findall(text)})


def _stderr_of(call) -> str:
  """What `call()` writes to file descriptor 2 (TFLM's C++ logging), which Python cannot see."""
  with tempfile.TemporaryFile(mode="w+b") as captured:
    saved = os.dup(2)
    try:
      os.dup2(captured.fileno(), 2)
      call()
    finally:
      os.dup2(saved, 2)
      os.close(saved)
    captured.seek(0)
    return captured.read().decode(errors="replace")


def tflm_run(tflite: bytes, images_q: np.ndarray) -> tuple[np.ndarray, Arena]:
  """int8 outputs `[N, K]` of TFLite Micro's interpreter on int8 images `[N, r, r, c]` (one
  invoke each), and the arena it used."""
  _require()
  from tflite_micro.python.tflite_micro import runtime

  interpreter = runtime.Interpreter.from_bytes(tflite, arena_size=MEASURING_ARENA_BYTES)
  outputs = []
  for image in np.asarray(images_q, np.int8):
    interpreter.set_input(image[None], 0)
    interpreter.invoke()
    outputs.append(np.array(interpreter.get_output(0)).reshape(-1))
  arena = parse_allocations(_stderr_of(interpreter.print_allocations))
  return np.stack(outputs), arena


def litert_run(tflite: bytes, images_q: np.ndarray) -> np.ndarray:
  """int8 outputs `[N, K]` of LiteRT (XNNPACK) on int8 images `[N, r, r, c]`."""
  _require()
  interpreter = _litert(tflite)
  (given,), (made,) = interpreter.get_input_details(), interpreter.get_output_details()
  outputs = []
  for image in np.asarray(images_q, np.int8):
    interpreter.set_tensor(given["index"], image[None])
    interpreter.invoke()
    outputs.append(interpreter.get_tensor(made["index"]).reshape(-1).copy())
  return np.stack(outputs)
