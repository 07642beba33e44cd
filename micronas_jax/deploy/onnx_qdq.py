"""The found cell as a static QDQ int8 ONNX: the 8-bit file ST Edge AI Core (STM32Cube.AI) takes.

The float ONNX of `export.to_onnx` (NCHW, BN folded) is quantized by onnxruntime's own
`quantize_static`: QuantizeLinear/DequantizeLinear pairs around every quantized op, int8
activations with per-tensor scales calibrated (min/max) on the user's images, int8 weights per
output channel. onnxruntime, onnx and jax2onnx come with the `export` extra.
"""
from __future__ import annotations

import pathlib
import tempfile

import numpy as np

from micronas_jax import export, model


def convert(variables: model.Variables, ops, config: model.NetworkConfig,
            calibration: np.ndarray, path: str | pathlib.Path) -> None:
  """Writes the QDQ int8 ONNX of the network of cell `ops: [6]` with float `variables` to
  `path`, its activation scales calibrated on normalized NHWC images `calibration [N, r, r, c]`.
  """
  export.require_onnx()
  from onnxruntime import quantization

  class Images(quantization.CalibrationDataReader):
    def __init__(self):
      self.images = iter(np.asarray(calibration, np.float32).transpose(0, 3, 1, 2))

    def get_next(self):
      image = next(self.images, None)
      return None if image is None else {export.INPUT_NAME: image[None]}

  with tempfile.TemporaryDirectory() as scratch:
    float_model, prepared = pathlib.Path(scratch) / "float.onnx", pathlib.Path(scratch) / "in.onnx"
    export.to_onnx(variables, ops, config, float_model, batch_size=1)
    # onnxruntime's own preparation: shape inference, and each bias Add folded into its Conv, so
    # that the bias is quantized to int32 with the conv's scales instead of as an int8 Add.
    quantization.shape_inference.quant_pre_process(float_model, prepared,
                                                   skip_symbolic_shape=True)
    _vector_gemm_bias(prepared)
    quantization.quantize_static(
        prepared, path, Images(), quant_format=quantization.QuantFormat.QDQ, per_channel=True,
        activation_type=quantization.QuantType.QInt8, weight_type=quantization.QuantType.QInt8,
        calibrate_method=quantization.CalibrationMethod.MinMax)


def _vector_gemm_bias(path: pathlib.Path) -> None:
  """Gives each Gemm with a scalar bias (jax2onnx writes `x @ W` as a Gemm with bias 0) the
  bias vector of its outputs, which `quantize_static` requires (it quantizes a bias per
  channel)."""
  onnx = export.require_onnx()[1]
  from onnx import numpy_helper

  proto = onnx.load(str(path))
  initializers = {tensor.name: tensor for tensor in proto.graph.initializer}
  for node in proto.graph.node:
    if node.op_type != "Gemm" or len(node.input) < 3 or node.input[2] not in initializers:
      continue
    bias = numpy_helper.to_array(initializers[node.input[2]])
    if bias.ndim == 0:
      weight = numpy_helper.to_array(initializers[node.input[1]])
      transposed = any(a.name == "transB" and a.i for a in node.attribute)
      outputs = weight.shape[0] if transposed else weight.shape[1]
      name = f"{node.input[2]}_vector"  # a new name: shape inference recorded the scalar's
      proto.graph.initializer.append(
          numpy_helper.from_array(np.full(outputs, bias, bias.dtype), name))
      stale = node.input[2]
      node.input[2] = name
      if not any(stale in other.input for other in proto.graph.node):
        proto.graph.initializer.remove(initializers[stale])
  onnx.save(proto, str(path))


def run(path: str | pathlib.Path, images: np.ndarray) -> np.ndarray:
  """Float logits `[N, K]` of the ONNX model at `path` in onnxruntime (CPU) on normalized NHWC
  images `[N, r, r, c]`, one at a time (the model's batch is 1)."""
  _, _, onnxruntime = export.require_onnx()
  session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
  nchw = np.asarray(images, np.float32).transpose(0, 3, 1, 2)
  return np.concatenate([session.run([export.OUTPUT_NAME], {export.INPUT_NAME: image[None]})[0]
                         for image in nchw])


def op_types(path: str | pathlib.Path) -> list[str]:
  """The op type of every node of the ONNX graph at `path`, in order."""
  onnx = export.require_onnx()[1]
  return [node.op_type for node in onnx.load(str(path)).graph.node]
