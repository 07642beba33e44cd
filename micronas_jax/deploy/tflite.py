"""The found cell as a full-integer int8 `.tflite`, and its runs in TFLite Micro and LiteRT.

The network is the NHWC pass over its graph (`export.inference_function`, BN folded, dead code
removed as a runtime would), traced by `jax2tf` into a `tf.function` and converted by TensorFlow's
own `TFLiteConverter`: int8 input and output, per-channel int8 weights, int32 biases, activation
scales calibrated on the user's images. The converter fuses a ReLU into the op that makes its
input where that tensor has no other reader. Its operators are then put in the graph's order
(which TFLM's arena depends on, and which `hardware.tflm` models byte for byte), and the names
TFLM never reads are stripped.

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

from micronas_jax import export, graph, model
from micronas_jax.errors import ParamError
from micronas_jax.hardware import tflm

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
  weights = export.folded_weights(variables, ops, config)
  forward = export.inference_function(weights, ops, config, layout="NHWC", dead_code=True)
  converted = convert_function(forward, config.input_shape, calibration)
  return without_names(in_graph_order(converted, ops, config))


def convert_function(forward, input_shape: tuple[int, ...], calibration: np.ndarray) -> bytes:
  """The full-integer int8 `.tflite` (bytes) of a JAX function `forward: [1, *input_shape] ->
  [1, K]` float logits, its activation scales calibrated on `calibration [N, *input_shape]`:
  int8 input and output, per-channel int8 weights, int32 biases, operators as the converter
  orders them."""
  _require()
  with _quiet_tensorflow():
    import tensorflow as tf
    from jax.experimental import jax2tf

    function = tf.function(jax2tf.convert(forward, with_gradient=False), autograph=False,
                           input_signature=[tf.TensorSpec((1, *input_shape), tf.float32)])
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [function.get_concrete_function()], function)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([image[None]] for image in
                                                np.asarray(calibration, np.float32))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    outcome = {}

    def run():
      try:
        with warnings.catch_warnings():
          # The input's statistics come from the images themselves; the converter's note on
          # it is no news to the user.
          warnings.simplefilter("ignore", UserWarning)
          outcome["model"] = bytes(converter.convert())
      except Exception as error:  # the converter raises its own ConverterError and others
        outcome["error"] = error

    # The converter's MLIR diagnostics go to file descriptor 2; the first says what failed.
    log = _stderr_of(run)
    if "error" in outcome:
      error = outcome["error"]
      reasons = [line.strip() for line in [*str(error).splitlines(), *log.splitlines()]
                 if "error" in line.lower() and line.strip()]
      raise TFLiteError("TFLiteConverter failed: "
                        + (reasons[0] if reasons else type(error).__name__)) from None
    return outcome["model"]


def in_graph_order(tflite: bytes, ops, config: model.NetworkConfig) -> bytes:
  """`tflite` with its operators in the order of the network's graph, dead code removed
  (`run_in_order`); as it is where they do not match the graph (then TFLM's arena may differ
  from `hardware.tflm`'s plan)."""
  converted, _ = tflm.converter_ops(graph.build(ops, config, dead_code=True))
  return run_in_order(tflite, converted) or tflite


def _schema():
  from ai_edge_litert import schema_py_generated
  return schema_py_generated


@dataclasses.dataclass(frozen=True)
class Operator:
  """One operator of a `.tflite`: its builtin op, the name of its output tensor (the converter
  writes there the named scopes of the ops it made the operator of, joined by ';'), and the
  indices of the activation tensors it reads and of the one it writes."""
  builtin: str
  name: str
  inputs: tuple[int, ...]
  output: int


def operators(tflite: bytes) -> tuple[list[Operator], int]:
  """The model's operators in execution order, and the index of its input tensor."""
  schema = _schema()
  root = schema.Model.GetRootAs(tflite, 0)
  subgraph = root.Subgraphs(0)
  builtins = {code: name for name, code in vars(schema.BuiltinOperator).items()
              if not name.startswith("_")}

  def constant(index):
    return root.Buffers(subgraph.Tensors(index).Buffer()).DataLength() > 0

  made = []
  for i in range(subgraph.OperatorsLength()):
    op = subgraph.Operators(i)
    code = root.OperatorCodes(op.OpcodeIndex())
    builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
    inputs = tuple(int(t) for t in op.InputsAsNumpy() if t >= 0 and not constant(int(t)))
    name = subgraph.Tensors(op.Outputs(0)).Name() or b""  # none once stripped
    made.append(Operator(builtins[builtin], name.decode(), inputs, int(op.Outputs(0))))
  return made, int(subgraph.Inputs(0))


def _match(made: list[Operator], image: int, ours) -> list[int] | None:
  """For each of `ours` (`tflm.Op`), the index of the operator in `made` that computes it, or
  None where they do not match one to one. An operator is found by the named scope of its op
  (`export`'s NHWC function runs each under its tensor's name); a RELU or PAD, whose scope the
  converter drops, by its op and the tensors it reads."""
  position: dict[int, int] = {}
  for k, op in enumerate(ours):
    found = [i for i, operator in enumerate(made) if f"/{op.output}/" in operator.name]
    if len(found) == 1:
      position[k] = found[0]
  if len(set(position.values())) != len(position):
    return None
  tensor = {image: graph.IMAGE}
  changed = True
  while changed:
    changed = False
    for k, i in position.items():
      if made[i].output not in tensor:
        tensor[made[i].output] = ours[k].output
        changed = True
    taken = set(position.values())
    for i, operator in enumerate(made):
      if i in taken or not all(t in tensor for t in operator.inputs):
        continue
      reads = tuple(tensor[t] for t in operator.inputs)
      found = [k for k, op in enumerate(ours) if k not in position
               and op.builtin == operator.builtin and op.inputs == reads]
      if len(found) == 1:
        position[found[0]] = i
        changed = True
  if len(position) != len(ours) or len(made) != len(ours):
    return None
  return [position[k] for k in range(len(ours))]


def run_in_order(tflite: bytes, ours) -> bytes | None:
  """`tflite` with its operators run in the order of `ours`, the ops `hardware.tflm` lowers the
  graph to (`tflm.converter_ops`), or None when its operators do not match them one to one.

  The converter sorts the ops its own way, and TFLM's arena depends on the order; running them
  in the graph's order makes the arena the one `hardware.tflm` plans. Only the offsets in the
  subgraph's operator vector move, so every buffer keeps the converter's alignment.
  """
  made, image = operators(tflite)
  order = _match(made, image, ours)
  if order is None:
    return None
  root = _schema().Model.GetRootAs(tflite, 0)
  subgraph = root.Subgraphs(0)
  ordered = bytearray(tflite)
  _permute_tables(ordered, subgraph, _OPERATORS, order)
  # TFLM's planner breaks ties between equal sizes by tensor index: number the activations in
  # the new order too (the image first, then each op's output), reusing their indices.
  wanted = [image] + [made[i].output for i in order]
  slots = sorted(wanted)
  if slots[0] != image:
    return None  # a zero index is left out of the file, and cannot be rewritten in place
  renumbered = dict(zip(wanted, slots))
  permutation = list(range(subgraph.TensorsLength()))
  for old, new in renumbered.items():
    permutation[new] = old
  _permute_tables(ordered, subgraph, _TENSORS, permutation)
  for position in _tensor_index_positions(root):
    index = int.from_bytes(ordered[position:position + 4], "little", signed=True)
    if index in renumbered:
      ordered[position:position + 4] = renumbered[index].to_bytes(4, "little", signed=True)
  return bytes(ordered)


# Field offsets of the TFLite schema's tables (the vtable slots its generated code reads).
_TENSORS, _SUBGRAPH_INPUTS, _SUBGRAPH_OUTPUTS, _OPERATORS = 4, 6, 8, 10
_OP_INPUTS, _OP_OUTPUTS, _OP_INTERMEDIATES = 6, 8, 20
_TENSOR_INDEX = 6  # TensorMap.tensor_index


def _vector(table, field: int) -> tuple[int, int]:
  """(position of the first element, length) of vector `field` of `table`; (0, 0) if absent."""
  offset = table._tab.Offset(field)
  return (table._tab.Vector(offset), table._tab.VectorLen(offset)) if offset else (0, 0)


def _permute_tables(data: bytearray, table, field: int, order: list[int]) -> None:
  """Makes slot k of the vector of tables `field` of `table` point at the table slot
  `order[k]` pointed at. Each slot holds its table's offset relative to the slot itself."""
  start, length = _vector(table, field)
  slot = lambda i: start + 4 * i
  targets = [slot(i) + int.from_bytes(data[slot(i):slot(i) + 4], "little")
             for i in range(length)]
  for k, i in enumerate(order):
    data[slot(k):slot(k) + 4] = (targets[i] - slot(k)).to_bytes(4, "little")


def _tensor_index_positions(root) -> list[int]:
  """Where the file stores a tensor index of the first subgraph: its inputs and outputs, each
  operator's inputs, outputs and intermediates, and the signatures' tensor maps."""
  subgraph = root.Subgraphs(0)
  positions = []

  def vector(table, field):
    start, length = _vector(table, field)
    positions.extend(start + 4 * i for i in range(length))

  vector(subgraph, _SUBGRAPH_INPUTS)
  vector(subgraph, _SUBGRAPH_OUTPUTS)
  for i in range(subgraph.OperatorsLength()):
    op = subgraph.Operators(i)
    for field in (_OP_INPUTS, _OP_OUTPUTS, _OP_INTERMEDIATES):
      vector(op, field)
  for i in range(root.SignatureDefsLength()):
    signature = root.SignatureDefs(i)
    for maps, count in ((signature.Inputs, signature.InputsLength()),
                        (signature.Outputs, signature.OutputsLength())):
      for j in range(count):
        tensor_map = maps(j)
        offset = tensor_map._tab.Offset(_TENSOR_INDEX)
        if offset:
          positions.append(tensor_map._tab.Pos + offset)
  return positions


def without_names(tflite: bytes) -> bytes:
  """`tflite` without its tensor and subgraph names, description and signatures (what TFLM
  never reads: flash saved on the MCU), its buffers realigned to 16 bytes by TFLM's own
  `tflite_flatbuffer_align` tool, as `tensorflow.lite.tools.flatbuffer_utils.strip_strings`
  would leave them unaligned."""
  import flatbuffers
  from tflite_micro.tensorflow.lite.micro.tools import tflite_flatbuffer_align_wrapper

  schema = _schema()
  model_object = schema.ModelT.InitFromPackedBuf(tflite, 0)
  model_object.description = None
  model_object.signatureDefs = None
  for subgraph in model_object.subgraphs:
    subgraph.name = None
    for tensor in subgraph.tensors:
      tensor.name = None
  builder = flatbuffers.Builder(len(tflite))
  builder.Finish(model_object.Pack(builder), file_identifier=b"TFL3")
  with tempfile.TemporaryDirectory() as folder:
    packed, aligned = os.path.join(folder, "packed.tflite"), os.path.join(folder, "aligned.tflite")
    with open(packed, "wb") as file:
      file.write(builder.Output())
    tflite_flatbuffer_align_wrapper.align_tflite_model(packed, aligned)
    with open(aligned, "rb") as file:
      return file.read()


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
