"""`deploy --format tflite|onnx-qdq`: the found cell as one standard int8 file, checked in the
runtime that will run it (TFLite Micro and LiteRT for `.tflite`, onnxruntime for the QDQ `.onnx`).

The file is written under a temporary name and renamed into place once converted and checked, so
an interrupted or failed deploy leaves the old file or none, never half of one.
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import numpy as np

from micronas_jax import export, model, paths, space
from micronas_jax.deploy import api, onnx_qdq, tflite
from micronas_jax.errors import LIBRARY, Names, Param
from micronas_jax.hardware import tflm

C, TFLITE, ONNX_QDQ = "c", "tflite", "onnx-qdq"
FORMATS = (C, TFLITE, ONNX_QDQ)
FILE_FORMATS = (TFLITE, ONNX_QDQ)
# int8 outputs of TFLM and LiteRT differ by the rounding inside their kernels: by 1 LSB on a
# share of the logits, and on a deep network (N=5) by 2 on a few (6 of 2,560 measured, for
# cell 13987 at C=16). More, or more than a few, is a bug.
MAX_LITERT_LSB = 2
MIN_WITHIN_ONE_LSB = 0.99


@dataclasses.dataclass(frozen=True)
class FileReport:
  """What a file-format deploy did, as plain JSON-ready data.

  Attributes:
    out: the file; format: TFLITE or ONNX_QDQ; size_bytes: its size.
    index, arch, network, weights, calibration: as in `api.DeployReport`.
    ops: the model's op types, in order.
    arena: TFLM's report of its arena (`total`, `head`, `tail`, `parts`; TFLITE only).
    estimated: `hardware.tflm`'s model of the TFLITE file in TFLM: `arena_host` (head, tail,
      total, ... on the 64-bit host build TFLM's report comes from), `arena_cortex_m` (the
      arena on a 32-bit Cortex-M with CMSIS-NN) and `model_bytes` (the `.tflite`'s size).
    checks: per check run, its `status` and `detail`; {} without verify.
    passed: whether no check failed.
    seconds, conversion_seconds: wall time of the deploy and of the conversion alone.
  """
  out: str
  format: str
  size_bytes: int
  index: int
  arch: str
  network: dict
  weights: str
  calibration: str
  ops: list
  arena: dict | None
  estimated: dict
  checks: dict
  passed: bool
  seconds: float
  conversion_seconds: float

  def to_dict(self) -> dict:
    """The report as JSON-ready data."""
    return dataclasses.asdict(self)

  def summary(self, names: Names = LIBRARY) -> str:
    """The lines a person reads; `names` spells the parameters they mention."""
    what = "int8 TFLite" if self.format == TFLITE else "QDQ int8 ONNX"
    counts = {}
    for op in self.ops:
      counts[op] = counts.get(op, 0) + 1
    lines = [(f"wrote {self.out}: {what} of cell {self.index} {self.arch} "
              f"(C={self.network['channels']}, N={self.network['cells_per_stage']}), "
              f"{self.size_bytes / 1024:.1f} KB, converted in {self.conversion_seconds:.1f} s"),
             f"weights: {self.weights}", f"scales: {self.calibration}",
             "ops: " + ", ".join(f"{op} x{count}" for op, count in counts.items())]
    est = self.estimated
    if self.arena:
      arena, host = self.arena, est["arena_host"]
      lines.append(f"TFLM arena {arena['total']:,} bytes (head {arena['head']:,} activations, "
                   f"tail {arena['tail']:,} persistent; 64-bit host build); modelled "
                   f"{host['total']:,} ({_error(host['total'], arena['total'])})")
      lines.append(f"modelled on a 32-bit Cortex-M with CMSIS-NN: {est['arena_cortex_m']:,} "
                   "bytes (not measured: no board here)")
      lines.append(f"flash: the .tflite {self.size_bytes:,} bytes, modelled "
                   f"{est['model_bytes']:,} ({_error(est['model_bytes'], self.size_bytes)}); "
                   "plus the interpreter's code, which the host build cannot show")
    else:
      lines.append(f"flash: the model file {self.size_bytes:,} bytes")
    lines.append(api.checks_line(self.checks, names))
    return "\n".join(lines)


def _error(estimate: int, measured: int) -> str:
  return f"{100 * (estimate - measured) / measured:+.1f} %"


def _check(passed: bool, detail: str) -> dict:
  return {"status": "passed" if passed else "failed", "detail": detail}


def _agreement(name: str, logits: np.ndarray, floats: np.ndarray) -> dict:
  agreement = float(np.mean(logits.argmax(1) == floats.argmax(1)))
  return _check(agreement >= api.MIN_AGREEMENT,
                f"{name} vs float top-1 {100 * agreement:.1f} % of {len(floats)} images "
                f"(>= {100 * api.MIN_AGREEMENT:.0f} %)")


def deploy_file(ops, out, format: str = TFLITE, checkpoint=None, images=None, *,
                verify: bool = False, seed: int = 0, channels: int | None = None,
                cells: int | None = None, network=None, calibration_images: int = 256,
                agreement_images: int = 256,
                log: Callable[[str], None] = print) -> FileReport:
  """Converts the network of cell `ops` to int8 in `format` (TFLITE or ONNX_QDQ), writes it to
  the file `out` and, with `verify`, checks it in its runtime.

  Args: as `api.deploy` (ops, checkpoint, images, seed, channels, cells, network,
    calibration_images,
    agreement_images, log). The TFLite file is always run once in TFLite Micro for its arena.
    verify: TFLITE: TFLM's top-1 agrees with the float network's on >= MIN_AGREEMENT of the
      check images, and TFLM's int8 outputs equal LiteRT's within 1 LSB on
      MIN_WITHIN_ONE_LSB of the logits and within MAX_LITERT_LSB on all; ONNX_QDQ:
      onnxruntime's top-1 agrees the same.

  Raises DeployError (one line), with `out` as it was: bad input (a checkpoint of another cell,
  images of the wrong shape), a missing extra, an output that cannot be written, a network whose
  output does not depend on its input.
  """
  start = time.perf_counter()
  if format not in FILE_FORMATS:
    raise api.DeployError(Param("format", format), f": one of {', '.join(FILE_FORMATS)}")
  ops = api._resolve_ops(ops)
  reason = tflite.missing() if format == TFLITE else _onnx_missing()
  if reason:
    raise api.DeployError(reason)
  try:
    paths.check_writable(out, create_parents=True)
  except paths.PathError as error:
    raise api.DeployError(error) from None
  if api._constant_output(ops):
    raise api.DeployError(f"cell {space.index_of(ops)} {space.format_arch(ops)}: its output does "
                          "not depend on the image (no path of edges from the input); there is "
                          "no network to deploy")
  config = api._network_config(ops, checkpoint, channels, cells, network)
  x, images_note = api._images(images, config, calibration_images + agreement_images, seed)
  try:
    variables, config, weights_note = export.cell_variables(ops, checkpoint, seed, channels, cells,
                                                              network)
  except export.WeightsError as error:
    raise api.DeployError(error) from None
  calibration, checking = x[:calibration_images], x[calibration_images:]
  if len(checking) == 0:
    checking = calibration
    images_note += "; checks run on the calibration images themselves"
  log(f"converting to {format}: {weights_note}; scales from {images_note}")
  result = {}

  def write(tmp):
    began = time.perf_counter()
    if format == TFLITE:
      result["model"] = tflite.convert(variables, ops, config, calibration)
      tmp.write_bytes(result["model"])
    else:
      onnx_qdq.convert(variables, ops, config, calibration, tmp)
    result["seconds"] = time.perf_counter() - began
    result["size"] = tmp.stat().st_size
    result.update(_run_checks(format, tmp, result.get("model"), variables, ops, config,
                              checking, verify, log))

  try:
    paths.write_atomically(out, write)
  except (paths.PathError, tflite.TFLiteError, export.ExportError) as error:
    raise api.DeployError(error) from None
  host, cortex_m = (tflm.arena(ops, config, target) for target in (tflm.HOST, tflm.CORTEX_M))
  estimated = {"arena_host": host.to_dict(), "arena_cortex_m": cortex_m.total,
               "model_bytes": host.file_bytes}
  checks = result["checks"]
  return FileReport(
      out=str(out), format=format, size_bytes=int(result["size"]),
      index=int(space.index_of(ops)), arch=space.format_arch(ops),
      network=dataclasses.asdict(config), weights=weights_note,
      calibration=f"{len(calibration)} of {images_note}", ops=result["ops"],
      arena=result.get("arena"), estimated=estimated, checks=checks,
      passed=all(check["status"] != "failed" for check in checks.values()),
      seconds=round(time.perf_counter() - start, 1),
      conversion_seconds=round(result["seconds"], 2))


def _onnx_missing() -> str | None:
  try:
    export.require_onnx()
  except export.ExportError as error:
    return str(error)
  return None


def _run_checks(format: str, path, tflite_model: bytes | None, variables, ops,
                config: model.NetworkConfig, images: np.ndarray, verify: bool, log) -> dict:
  """The file's ops, TFLM's arena (TFLITE) and the checks of `verify`, on `images`."""
  weights = export.folded_weights(variables, ops, config)
  if format == ONNX_QDQ:
    found = {"ops": onnx_qdq.op_types(path), "checks": {}}
    if verify:
      floats = float_logits(weights, ops, config, images)
      log(f"onnxruntime on {len(images)} images")
      found["checks"]["onnx-agreement"] = _agreement("onnxruntime QDQ",
                                                     onnx_qdq.run(path, images), floats)
    return found
  given, _ = tflite.io_quantization(tflite_model)
  images_q = given.quantize(images if verify else images[:1])
  log(f"TFLite Micro on {len(images_q)} images")
  outputs, arena = tflite.tflm_run(tflite_model, images_q)
  found = {"ops": tflite.op_names(tflite_model), "arena": dataclasses.asdict(arena),
           "checks": {}}
  if verify:
    floats = float_logits(weights, ops, config, images)
    found["checks"]["tflm-agreement"] = _agreement("TFLite Micro", outputs, floats)
    log(f"LiteRT on {len(images_q)} images")
    difference = np.abs(outputs.astype(np.int32) - tflite.litert_run(tflite_model, images_q))
    lsb, within_one = int(difference.max()), float(np.mean(difference <= 1))
    found["checks"]["litert"] = _check(
        lsb <= MAX_LITERT_LSB and within_one >= MIN_WITHIN_ONE_LSB,
        f"TFLite Micro vs LiteRT int8 outputs: {100 * within_one:.2f} % within 1 LSB "
        f"(>= {100 * MIN_WITHIN_ONE_LSB:.0f} %), at most {lsb} LSB (<= {MAX_LITERT_LSB}) over "
        f"{len(images_q)} images")
  return found


def float_logits(weights, ops, config, images) -> np.ndarray:
  import jax
  forward = jax.jit(export.inference_function(weights, ops, config, layout="NHWC",
                                              dead_code=True))
  return np.concatenate([np.asarray(forward(images[i:i + 64]))
                         for i in range(0, len(images), 64)])
