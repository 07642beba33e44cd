"""ONNX export of a found cell: BN folding, the static-cell network, ONNX Runtime vs JAX, the CLI.

Tiny network (C=2, N=1, 8x8 inputs) with random BN affine parameters and calibrated running
statistics, so that the folding is exercised (fresh statistics, mean 0 and var 1, would hide a
wrong fold) and the logits vary with the input.
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from click.testing import CliRunner

from micronas_jax import cli, export, model, space, train

NET = model.NetworkConfig(channels=2, cells_per_stage=1, resolution=8)
CELLS = {
    "all_conv3x3": space.arch_at(1462),
    "pool_conv1x1_skip": space.arch_at(0),
    # Node 2 reads only `none` edges, so node 3's conv1x1 from it is its bias alone.
    "zero_node": space.parse_arch("|avg_pool_3x3~0|+|none~0|none~1|"
                                  "+|nor_conv_1x1~0|none~1|nor_conv_1x1~2|"),
}


def calibrated(variables, seed: int = 0):
  """Variables with BN scales ~U(0.5, 1.5), shifts ~N(0, 0.1), and running statistics set to the
  batch statistics of random inputs (one training-mode pass with momentum 0), so that the
  inference network is normalized and its logits depend on the input."""
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    name = jax.tree_util.keystr(path)
    if "scale" in name:
      return rng.uniform(0.5, 1.5, leaf.shape).astype(np.float32)
    if "bn_bias" in name or "['bn']['bias']" in name or "head_bn']['bias" in name:
      return rng.normal(0, 0.1, leaf.shape).astype(np.float32)
    return np.asarray(leaf)

  params = jax.tree_util.tree_map_with_path(draw, variables["params"])
  x = jax.random.normal(jax.random.PRNGKey(seed + 100), (64, *NET.input_shape))
  calibration = dataclasses.replace(NET, bn_momentum=0.0)
  _, stats = jax.jit(model.apply, static_argnums=3)(  # jitted: op by op, every op compiles
      {"params": params, "batch_stats": variables["batch_stats"]},
      jnp.asarray(CELLS["all_conv3x3"]), x, calibration)
  return {"params": params, "batch_stats": jax.device_get(stats)}


@pytest.fixture(scope="module")
def variables():
  return calibrated(jax.jit(model.init, static_argnums=1)(jax.random.PRNGKey(0), NET))


def test_fold_bn_equals_conv_then_inference_bn():
  rng = np.random.default_rng(0)
  kernel = rng.normal(size=(3, 3, 2, 4)).astype(np.float32)
  scale, bias, mean = (rng.normal(size=4).astype(np.float32) for _ in range(3))
  var = rng.uniform(0.5, 2, 4).astype(np.float32)
  x = rng.normal(size=(1, 5, 5, 2)).astype(np.float32)
  conv = np.asarray(model.conv(x, kernel))
  expected = (conv - mean) / np.sqrt(var + 1e-5) * scale + bias
  folded_kernel, folded_bias = export.fold_bn(kernel, scale, bias, mean, var)
  assert folded_kernel.shape == (4, 2, 3, 3)  # OIHW
  got = np.asarray(model.conv(x, folded_kernel.transpose(2, 3, 1, 0))) + folded_bias
  np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("name", sorted(CELLS))
def test_static_cell_network_equals_model(variables, name):
  ops = CELLS[name]
  x = np.asarray(jax.random.normal(jax.random.PRNGKey(1), (4, *NET.input_shape)))
  expected, _ = model.apply(variables, jnp.asarray(ops), x, NET, train=False)
  forward = export.inference_function(export.folded_weights(variables, ops, NET), ops, NET)
  got = forward(x.transpose(0, 3, 1, 2))
  np.testing.assert_allclose(got, expected, atol=1e-5)
  assert float(np.std(np.asarray(expected), axis=0).max()) > 1e-3  # logits depend on the input


@pytest.mark.parametrize("name", sorted(CELLS))
def test_onnx_output_equals_jax_output(variables, tmp_path, name):
  pytest.importorskip("onnxruntime")
  pytest.importorskip("jax2onnx")
  ops, path = CELLS[name], tmp_path / "cell.onnx"
  proto = export.to_onnx(variables, ops, NET, path, batch_size=2)
  assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [export.OPSET]
  dims = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
  assert proto.graph.input[0].name == "image" and dims == [2, 3, 8, 8]  # NCHW
  assert not {"BatchNormalization", "Transpose", "If"} & {n.op_type for n in proto.graph.node}
  assert export.max_abs_difference(path, variables, ops, NET, jax.random.PRNGKey(2), 6) < 1e-4


def invoke(*args):
  return CliRunner().invoke(cli.cli, list(args))


def _checkpoint(directory, ops):
  """A checkpoint of `ops` on NET holding the perturbed variables (no training needed)."""
  config = train.TrainConfig(epochs=2, batch_size=8)
  state = train.init_state(NET, config, 1)
  weights = calibrated({"params": state.params, "batch_stats": state.batch_stats})
  state = state._replace(params=weights["params"], batch_stats=weights["batch_stats"])
  meta = train.run_metadata(ops, NET, config, "synthetic")
  directory.mkdir()
  train.save_checkpoint(directory / train.CHECKPOINT_NAME, state, 1, meta, [])
  return directory


def test_cli_export_from_checkpoint_reports_difference(tmp_path):
  pytest.importorskip("onnxruntime")
  pytest.importorskip("jax2onnx")
  run = _checkpoint(tmp_path / "run", space.arch_at(1462))
  result = invoke("export", "1462", "--checkpoint", str(run), "--onnx", str(tmp_path / "c.onnx"))
  assert result.exit_code == 0, result.output
  assert "opset 18, NCHW input 'image' [1, 3, 8, 8]" in result.output
  assert "after epoch 1 of 2" in result.output and "max abs difference" in result.output
  assert (tmp_path / "c.onnx").stat().st_size > 0


def test_cli_export_without_checkpoint_says_untrained(tmp_path):
  pytest.importorskip("onnxruntime")
  pytest.importorskip("jax2onnx")
  result = invoke("export", "0", "--onnx", str(tmp_path / "c.onnx"), "--channels", "2", "--cells",
                  "1")
  assert result.exit_code == 0, result.output
  assert "NOT trained" in result.output


@pytest.mark.parametrize("args, message", [
    (("export", "0", "--checkpoint", "RUN"), "holds a network of arch |nor_conv_3x3~0|"),
    (("export", "1462", "--checkpoint", "MISSING"), "no such checkpoint"),
    (("export", "1462", "--checkpoint", "GARBAGE"), "not a micronas-jax checkpoint"),
    (("export", "1462", "--checkpoint", "RUN", "--channels", "4"), "come from the checkpoint"),
])
def test_cli_export_bad_checkpoint_is_one_line_and_exit_2(tmp_path, args, message):
  run = _checkpoint(tmp_path / "run", space.arch_at(1462))
  (tmp_path / "garbage.msgpack").write_bytes(b"\x00garbage")
  paths = {"RUN": str(run), "MISSING": str(tmp_path / "nothing"),
           "GARBAGE": str(tmp_path / "garbage.msgpack")}
  result = invoke(*[paths.get(a, a) for a in args], "--onnx", str(tmp_path / "c.onnx"))
  assert result.exit_code == 2, result.output
  assert result.output.startswith("Error:") and message in result.output
  assert result.output.strip().count("\n") == 0


def test_cli_export_that_fails_its_check_writes_nothing(tmp_path, monkeypatch):
  pytest.importorskip("onnxruntime")
  pytest.importorskip("jax2onnx")
  from micronas_jax import export
  (tmp_path / "c.onnx").write_bytes(b"the previous, good export")
  monkeypatch.setattr(export, "max_abs_difference", lambda *args, **kwargs: float("nan"))
  result = invoke("export", "0", "--onnx", str(tmp_path / "c.onnx"), "--channels", "2",
                  "--cells", "1")
  assert result.exit_code == 1 and "exceeds --tolerance" in result.output
  assert "not written" in result.output and result.output.strip().count("\n") == 0
  assert (tmp_path / "c.onnx").read_bytes() == b"the previous, good export"
  assert sorted(p.name for p in tmp_path.iterdir()) == ["c.onnx"]
  missing = invoke("export", "0", "--onnx", str(tmp_path / "c.onnx" / "x.onnx"))
  assert missing.exit_code == 2 and "is not a directory" in missing.output
