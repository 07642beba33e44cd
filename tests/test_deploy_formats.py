"""`deploy --format tflite|onnx-qdq`: the int8 file converted by the official tools, run in
TFLite Micro, LiteRT and onnxruntime (the `tflite` and `export` extras, which CI installs)."""
import numpy as np
import pytest
from click.testing import CliRunner

from micronas_jax import cli, model, space, train
from micronas_jax.commands import deploy as deploy_command
from micronas_jax.deploy import formats, tflite

pytest.importorskip("tensorflow", reason="the tflite extra: pip install 'micronas-jax[tflite]'")
pytest.importorskip("tflite_micro", reason="the tflite extra")

TINY = ("--channels", "4", "--cells", "1")
FEW = dict(channels=4, cells=1, calibration_images=16, agreement_images=32)


def invoke(*args):
  return CliRunner().invoke(cli.cli, ["deploy", *[str(a) for a in args]])


def test_the_cli_lists_the_library_formats():
  assert deploy_command.DEPLOY_FORMATS == formats.FORMATS


def test_tflite_deploy_writes_an_int8_flatbuffer_checked_in_tflm_and_litert(tmp_path):
  out = tmp_path / "models" / "cell.tflite"
  result = invoke("13987", "--format", "tflite", "--out", out, "--verify", *TINY)
  assert result.exit_code == 0, result.output
  assert out.read_bytes()[4:8] == b"TFL3"  # the TFLite flatbuffer's file identifier
  assert "TFLM arena" in result.output and "checks: 2 passed" in result.output
  assert "TFLite Micro vs float top-1" not in result.output  # passed checks are counted, not told
  assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temporary left


def test_the_tflite_model_uses_native_ops_and_reports_the_arena(tmp_path):
  report = formats.deploy_file("13987", tmp_path / "c.tflite", formats.TFLITE, verify=True,
                               log=lambda line: None, **FEW)
  # Real convolutions and pools, no patches-and-matmul workaround, BN folded, one int8 input.
  assert {"CONV_2D", "AVERAGE_POOL_2D", "ADD", "FULLY_CONNECTED"} <= set(report.ops)
  assert not {"BATCH_MATMUL", "STRIDED_SLICE", "GATHER", "QUANTIZE", "DEQUANTIZE"} & set(report.ops)
  arena = report.arena
  assert arena["total"] == arena["head"] + arena["tail"] > 0
  # At C=4 a stage-1 tensor is 4 KB (int8), and a conv holds its input and output at once.
  assert arena["head"] >= 2 * 4 * 32 * 32
  assert report.checks["tflm-agreement"]["status"] == "passed"
  assert report.checks["litert"]["status"] == "passed", report.checks["litert"]["detail"]
  assert report.passed and report.size_bytes == (tmp_path / "c.tflite").stat().st_size


def test_tflm_outputs_follow_the_float_network(tmp_path):
  """The int8 logits TFLM computes, dequantized, are the float network's within a few steps."""
  ops = space.resolve("13987")
  from micronas_jax import export
  variables, config, _ = export.cell_variables(ops, None, 0, 4, 1)
  images = np.random.default_rng(1).standard_normal((24, *config.input_shape), np.float32)
  model_bytes = tflite.convert(variables, ops, config, images[:16])
  given, made = tflite.io_quantization(model_bytes)
  outputs, _ = tflite.tflm_run(model_bytes, given.quantize(images[16:]))
  expected, _ = model.apply(variables, ops, images[16:], config, train=False)
  error = np.abs(made.dequantize(outputs) - np.asarray(expected))
  spread = float(np.ptp(np.asarray(expected)))
  assert error.max() < 0.1 * spread, (error.max(), spread)


def test_onnx_qdq_deploy_is_checked_in_onnxruntime(tmp_path):
  report = formats.deploy_file("13987", tmp_path / "c.onnx", formats.ONNX_QDQ, verify=True,
                               log=lambda line: None, **FEW)
  assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= set(report.ops)
  assert report.checks["onnx-agreement"]["status"] == "passed"
  assert report.arena is None and (tmp_path / "c.onnx").stat().st_size == report.size_bytes


def test_a_missing_extra_is_one_line_with_the_install_command(one_line_error, tmp_path,
                                                             monkeypatch):
  monkeypatch.setattr(tflite, "missing", lambda: f"the TFLite export needs tensorflow: "
                      f"{tflite.INSTALL}")
  one_line_error(invoke("13987", "--format", "tflite", "--out", tmp_path / "c.tflite", *TINY),
                 "pip install 'micronas-jax[tflite]'")
  assert not list(tmp_path.iterdir())


def test_images_of_the_wrong_shape_are_refused(one_line_error, tmp_path):
  # Other sizes and 1 or 3 channels are resized to the network's input (data's one rule);
  # two channels are no image.
  np.savez(tmp_path / "small.npz", images=np.zeros((4, 16, 16, 2), np.uint8))
  one_line_error(invoke("13987", "--format", "tflite", "--out", tmp_path / "c.tflite", "--data",
                        tmp_path / "small.npz", *TINY),
                 "(4, 16, 16, 2), expected [N, H, W, 3]")
  assert not (tmp_path / "c.tflite").exists()


def test_a_checkpoint_of_another_cell_is_refused(one_line_error, tmp_path):
  net = model.NetworkConfig(channels=4, cells_per_stage=1)
  config = train.TrainConfig(epochs=1, batch_size=8)
  state = train.init_state(net, config, 1)
  run = tmp_path / "run"
  run.mkdir()
  train.save_checkpoint(run / train.CHECKPOINT_NAME, state, 1,
                        train.run_metadata(space.resolve("100"), net, config, "synthetic"), [])
  one_line_error(invoke("13987", "--format", "onnx-qdq", "--out", tmp_path / "c.onnx",
                        "--checkpoint", run), "holds a network of arch")
  assert not (tmp_path / "c.onnx").exists()


def test_an_output_that_is_a_folder_is_refused_before_converting(one_line_error, tmp_path):
  (tmp_path / "folder").mkdir()
  one_line_error(invoke("13987", "--format", "tflite", "--out", tmp_path / "folder", *TINY),
                 "is a directory")
  assert not list((tmp_path / "folder").iterdir())


def test_a_network_whose_output_ignores_the_image_is_refused(one_line_error, tmp_path):
  ops = np.zeros(6, int)  # every edge none: a constant
  arch = space.format_arch(ops)
  one_line_error(invoke(arch, "--format", "tflite", "--out", tmp_path / "c.tflite", *TINY),
                 "does not depend on the image")
