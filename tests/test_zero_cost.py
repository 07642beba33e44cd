import jax
import jax.numpy as jnp
import numpy as np
import pytest
from click.testing import CliRunner

from micronas_jax import cli, model, proxies, scoring, space, store
from micronas_jax.proxies import meco, naswot, zero_cost, zico

# Tiny zero-cost network: C=2, one cell per stage, 8x8 inputs, 2 batches of 6 with labels.
TINY = model.NetworkConfig(channels=2, cells_per_stage=1, resolution=8, bn_momentum=0.0)
BATCH = 6
ZC_NAMES = ("synflow", "naswot", "grad_norm", "snip", "zico", "meco")
# 1462: all nor_conv_3x3. WITH_NONE: 'none' edges beside a conv, skip and pool.
WITH_NONE = space.parse_arch("|nor_conv_3x3~0|+|none~0|nor_conv_1x1~1|"
                             "+|skip_connect~0|none~1|avg_pool_3x3~2|")
# Two cells keep the suite short on a 2-core CI: all five ops, and one with `none` edges.
CELLS = {"1462": space.arch_at(1462), "with_none": WITH_NONE}


@pytest.fixture(scope="module")
def setup():
  variables = jax.jit(model.init, static_argnums=1)(jax.random.key(0), TINY)  # one program
  image_key, label_key = jax.random.split(jax.random.key(1))
  inputs = {"images": jax.random.normal(image_key, (2, BATCH, *TINY.input_shape)),
            "labels": jax.random.randint(label_key, (2, BATCH), 0, TINY.num_classes)}
  return variables, inputs


def _jitted(name):
  return jax.jit(proxies.get(name).fn, static_argnums=3)


def _kernel_leaves(tree) -> dict[str, np.ndarray]:
  """{path string: float64 array} of the conv/linear weights, found by name in a params tree."""
  return {jax.tree_util.keystr(path): np.asarray(leaf, np.float64)
          for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
          if jax.tree_util.keystr(path).rstrip("']").endswith("kernel")}


@jax.jit  # one program for every cell and batch
@jax.grad
def _loss(params, batch_stats, ops, images, labels):
  logits, _ = model.apply({"params": params, "batch_stats": batch_stats}, ops, images, TINY,
                          train=True)
  picked = logits[jnp.arange(logits.shape[0]), labels]
  return jnp.mean(jnp.log(jnp.sum(jnp.exp(logits), axis=1)) - picked)


def _loss_grads_slow(variables, ops, images, labels) -> dict[str, np.ndarray]:
  """jax.grad of the loss over the whole params tree; cross-entropy written out by hand."""
  return _kernel_leaves(_loss(variables["params"], variables["batch_stats"], ops, images, labels))


@pytest.mark.parametrize("cell", CELLS)
def test_grad_norm_and_snip_match_full_tree_gradient(setup, cell):
  variables, inputs = setup
  ops = CELLS[cell]
  grads = _loss_grads_slow(variables, ops, inputs["images"][0], inputs["labels"][0])
  weights = _kernel_leaves(variables["params"])
  expected_norm = sum(np.linalg.norm(g.ravel()) for g in grads.values())
  expected_snip = sum(np.abs(weights[path] * g).sum() for path, g in grads.items())
  value, valid = _jitted("grad_norm")(variables, ops, inputs, TINY)
  assert bool(valid) and float(value) == pytest.approx(expected_norm, rel=1e-4)
  value, valid = _jitted("snip")(variables, ops, inputs, TINY)
  assert bool(valid) and float(value) == pytest.approx(expected_snip, rel=1e-4)


def _synflow_slow(variables, ops) -> float:
  """Forward-mode, one kernel at a time: sum |W * dR/dW| = d/dt R(W + t W) at t = 0, since all
  weights are positive (Euler). BN made the identity by name, in float64."""
  with jax.enable_x64(True):
    def positive(path, leaf):
      name = jax.tree_util.keystr(path)
      leaf = jnp.asarray(leaf, jnp.float64)
      if "bn" in name:
        return jnp.ones_like(leaf) if name.endswith("scale']") else jnp.zeros_like(leaf)
      return jnp.abs(leaf)

    def neutral_stats(path, leaf):
      is_var = jax.tree_util.keystr(path).endswith("var']")
      return jnp.full(leaf.shape, 1 - 1e-5 if is_var else 0.0, jnp.float64)

    params = jax.tree_util.tree_map_with_path(positive, variables["params"])
    stats = jax.tree_util.tree_map_with_path(neutral_stats, variables["batch_stats"])
    ones = jnp.ones((1, *TINY.input_shape), jnp.float64)

    @jax.jit
    def flow_along(direction):
      def output_sum(t):
        shifted = jax.tree.map(lambda p, d: p + t * d, params, direction)
        return model.apply({"params": shifted, "batch_stats": stats}, ops, ones, TINY,
                           train=False)[0].sum()
      return jax.jvp(output_sum, (0.0,), (1.0,))[1]

    total = 0.0
    for path, _ in jax.tree_util.tree_leaves_with_path(params):
      if not jax.tree_util.keystr(path).rstrip("']").endswith("kernel"):
        continue
      direction = jax.tree_util.tree_map_with_path(
          lambda p, leaf, target=path: leaf if p == target else jnp.zeros_like(leaf), params)
      total += float(flow_along(direction))
    return total


@pytest.mark.parametrize("cell", CELLS)
def test_synflow_matches_forward_mode_per_kernel(setup, cell):
  variables, inputs = setup
  value, valid = _jitted("synflow")(variables, CELLS[cell], inputs, TINY)
  assert bool(valid) and value.dtype == np.float64
  assert float(value) == pytest.approx(_synflow_slow(variables, CELLS[cell]), rel=1e-9)


def test_synflow_of_a_cell_without_input_paths_is_zero(setup):
  # All 'none': no path from the input to the logits, so dR/dW = 0 for every kernel.
  variables, inputs = setup
  value, valid = _jitted("synflow")(variables, np.zeros(6, np.int32), inputs, TINY)
  assert bool(valid) and float(value) == 0.0


def test_synflow_does_not_overflow_where_float32_would(setup):
  # Kernels scaled by 1e6 over 8 conv layers on a path: R ~ 1e48 or more, past float32's 3e38.
  variables, inputs = setup
  big = {**variables, "params": jax.tree_util.tree_map_with_path(
      lambda path, leaf: leaf * 1e6 if jax.tree_util.keystr(path).endswith("kernel']") else leaf,
      variables["params"])}
  value, valid = _jitted("synflow")(big, space.arch_at(1462), inputs, TINY)
  assert bool(valid) and np.isfinite(float(value)) and float(value) > 3e38


def test_hamming_kernel_of_hand_made_codes():
  codes = jnp.array([[1, 0, 1], [1, 1, 0], [0, 0, 0]], bool)
  # Every pair differs in 2 of 3 units: K = 3 - 2 off the diagonal; det = 3*8 - 2 - 2 = 20.
  with jax.enable_x64(True):
    kernel = naswot.hamming_kernel(codes)
    np.testing.assert_array_equal(kernel, [[3, 1, 1], [1, 3, 1], [1, 1, 3]])
    assert float(jnp.linalg.slogdet(kernel)[1]) == pytest.approx(np.log(20.0))
    # Weight 0 on the last unit drops it: N_A = 2; rows 0, 1 differ in 1, rows 1, 2 in 2.
    masked = naswot.hamming_kernel(codes, jnp.array([1.0, 1.0, 0.0]))
    np.testing.assert_array_equal(masked, [[2, 1, 1], [1, 2, 0], [1, 0, 2]])


def _naswot_slow(variables, ops, x) -> tuple[np.ndarray, float]:
  """Codes from the sown ReLU outputs, activity by op name, K by counting agreements in loops."""
  _, state = jax.jit(lambda variables, x, ops: model.network(TINY).apply(
      variables, x, ops, train=True, mutable=["batch_stats", "intermediates"]))(variables, x, ops)
  columns = []
  for path, leaf in jax.tree_util.tree_leaves_with_path(state["intermediates"]):
    name = jax.tree_util.keystr(path)
    if "edge_" in name:
      target, source = (int(c) for c in name.split("edge_")[1][:3].split("_"))
      if space.OPS[ops[space.EDGES.index((target, source))]] not in ("nor_conv_1x1",
                                                                      "nor_conv_3x3"):
        continue
    columns.append(np.asarray(leaf).reshape(leaf.shape[0], -1) > 0)
  codes = np.concatenate(columns, axis=1)
  kernel = np.zeros((len(x), len(x)))
  for i in range(len(x)):
    for j in range(len(x)):
      kernel[i, j] = np.sum(codes[i] == codes[j])
  return kernel, np.linalg.slogdet(kernel)[1]


@pytest.mark.parametrize("cell", CELLS)
def test_naswot_matches_agreement_count_loops(setup, cell):
  variables, inputs = setup
  ops = CELLS[cell]
  expected_kernel, expected = _naswot_slow(variables, ops, inputs["images"][0])
  kernel = jax.jit(naswot.relu_kernel, static_argnums=3)(variables, ops, inputs["images"][0], TINY)
  np.testing.assert_array_equal(kernel, expected_kernel)
  value, valid = _jitted("naswot")(variables, ops, inputs, TINY)
  assert bool(valid) and float(value) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("conv_edges, ops", [(6, space.arch_at(1462)), (2, WITH_NONE)])
def test_naswot_counts_only_the_cells_relus(setup, conv_edges, ops):
  # N_A (K's diagonal): per conv edge 2*8*8 + 4*4*4 + 8*2*2 = 224 units over the three stages;
  # the reductions 2*8*8 + 4*4*4 and 4*4*4 + 8*2*2, the head 8*2*2: 320.
  variables, inputs = setup
  kernel = jax.jit(naswot.relu_kernel, static_argnums=3)(variables, ops, inputs["images"][0], TINY)
  np.testing.assert_array_equal(np.diag(kernel), 224 * conv_edges + 320)


def _zico_slow(variables, ops, inputs) -> float:
  """Per-batch gradients, then the statistics in numpy float64 with explicit index selection."""
  per_batch = [_loss_grads_slow(variables, ops, inputs["images"][b], inputs["labels"][b])
               for b in range(inputs["images"].shape[0])]
  total = 0.0
  for path in per_batch[0]:
    grads = np.stack([batch[path].ravel() for batch in per_batch])
    std = grads.std(axis=0)
    keep = np.nonzero(std)[0]
    layer_sum = np.sum(np.abs(grads).mean(axis=0)[keep] / std[keep])
    if layer_sum != 0:
      total += np.log(layer_sum)
  return total


@pytest.mark.parametrize("cell", CELLS)
def test_zico_matches_numpy_statistics(setup, cell):
  variables, inputs = setup
  value, valid = _jitted("zico")(variables, CELLS[cell], inputs, TINY)
  # mean|g| / std(g) with std = |g1 - g2| / 2 amplifies float32 rounding where g1 ~ g2.
  assert bool(valid)
  assert float(value) == pytest.approx(_zico_slow(variables, CELLS[cell], inputs), rel=1e-3)


def test_zico_inverse_cv_of_hand_made_gradients():
  # Parameter 0: g = (1, 3): mean|g| 2, std 1 -> 2. Parameter 1: g = (-2, 2): 2 / 2 = 1.
  # Parameter 2: constant, std 0, skipped. log(2 + 1).
  grads = jnp.array([[1.0, -2.0, 5.0], [3.0, 2.0, 5.0]])
  assert float(zico.inverse_cv_log_sum(grads)) == pytest.approx(np.log(3.0))
  assert float(zico.inverse_cv_log_sum(jnp.zeros((2, 4)))) == 0.0


def _min_eig_correlation_slow(feature_map: np.ndarray) -> float:
  """numpy: channel correlation of `[H, W, C]`, NaN entries 0, smallest eigenvalue (general
  eigensolver, as the reference calls torch.linalg.eig)."""
  rows = np.asarray(feature_map, np.float64).reshape(-1, feature_map.shape[-1]).T
  with np.errstate(invalid="ignore", divide="ignore"):
    corr = np.corrcoef(rows)
  corr[~np.isfinite(corr)] = 0.0
  return float(np.min(np.linalg.eigvals(corr).real))


def test_min_eig_correlation_of_hand_made_maps():
  rng = np.random.default_rng(0)
  independent = rng.normal(size=(4, 4, 3))
  assert float(meco.min_eig_correlation(jnp.asarray(independent))) == pytest.approx(
      _min_eig_correlation_slow(independent), abs=1e-5)
  # Channel 1 = 2 * channel 0: correlation 1, so P is singular and lambda_min is 0.
  dependent = independent.copy()
  dependent[..., 1] = 2 * dependent[..., 0]
  assert float(meco.min_eig_correlation(jnp.asarray(dependent))) == pytest.approx(0.0, abs=1e-5)
  # A constant channel gives NaN correlations, set to 0: its row and column are 0.
  constant = independent.copy()
  constant[..., 2] = 1.0
  assert float(meco.min_eig_correlation(jnp.asarray(constant))) == pytest.approx(0.0, abs=1e-6)
  assert float(meco.min_eig_correlation(jnp.zeros((4, 4, 3)))) == 0.0


# Layers whose outputs MeCo reads, found independently of the `features` sows: flax's
# capture_intermediates records every module's output; these are the module names.
_MECO_MODULES = ("stem", "conv_a", "conv_b", "shortcut", "head_bn")
_MECO_PREFIXES = ("edge_", "stage", "reduction_")


def _meco_slow(variables, ops, image) -> float:
  _, state = model.network(TINY).apply(variables, image, ops, train=True,
                                       capture_intermediates=True,
                                       mutable=["batch_stats", "intermediates"])
  total = 0.0
  for path, maps in jax.tree_util.tree_leaves_with_path(
      state["intermediates"], is_leaf=lambda leaf: isinstance(leaf, tuple)):
    names = [getattr(key, "key", None) for key in path]
    module = names[-2] if len(names) > 1 else None
    wanted = names[-1] == "relu" or (names[-1] == "__call__" and module is not None and (
        module in _MECO_MODULES or module.startswith(_MECO_PREFIXES)))
    if wanted:
      total += sum(_min_eig_correlation_slow(np.asarray(m[0])) for m in maps)
  return total


@pytest.mark.parametrize("cell", CELLS)
def test_meco_matches_module_outputs_and_numpy_eigenvalues(setup, cell):
  variables, inputs = setup
  value, valid = _jitted("meco")(variables, CELLS[cell], inputs, TINY)
  assert bool(valid)
  expected = _meco_slow(variables, CELLS[cell], inputs["images"][0, :1])
  assert float(value) == pytest.approx(expected, rel=1e-4, abs=1e-4)


def test_meco_reads_only_the_first_image(setup):
  variables, inputs = setup
  changed = {**inputs, "images": inputs["images"].at[0, 1:].set(0.0).at[1].set(0.0)}
  first, _ = _jitted("meco")(variables, space.arch_at(1462), inputs, TINY)
  second, _ = _jitted("meco")(variables, space.arch_at(1462), changed, TINY)
  assert float(first) == pytest.approx(float(second), rel=1e-6)


# grad_norm and snip share zico's gradient path; synflow runs the same network forward.
@pytest.mark.parametrize("name", ("naswot", "zico", "meco"))
def test_proxy_vmapped_over_cells_equals_one_cell(setup, name):
  variables, inputs = setup
  archs = jnp.asarray(np.stack(list(CELLS.values())))
  values, valid = jax.jit(jax.vmap(lambda ops: proxies.get(name).fn(variables, ops, inputs,
                                                                    TINY)))(archs)
  for position, ops in enumerate(CELLS.values()):
    value, _ = _jitted(name)(variables, ops, inputs, TINY)
    assert bool(valid[position])
    assert float(values[position]) == pytest.approx(float(value), rel=1e-2 if name == "zico"
                                                    else 1e-4)


@pytest.mark.parametrize("name", ZC_NAMES)
def test_nan_gives_invalid_sentinel_not_a_crash(setup, name):
  variables, inputs = setup
  # NaN weights reach synflow (its input is all ones); NaN images reach the others.
  broken_vars = {**variables, "params": jax.tree.map(lambda leaf: leaf * jnp.nan,
                                                     variables["params"])}
  broken_inputs = {**inputs, "images": inputs["images"] * jnp.nan}
  value, valid = _jitted(name)(broken_vars if name == "synflow" else variables,
                               space.arch_at(1462), broken_inputs, TINY)
  assert not bool(valid) and float(value) == pytest.approx(zero_cost.INVALID_SENTINEL, rel=1e-7)


def test_zero_cost_proxies_are_registered_higher_is_better():
  for name in ZC_NAMES:
    proxy = proxies.get(name)
    assert proxy.family == "zc" and proxy.higher_is_better


# Scoring: the zc network shrunk to C=2, N=1, 8x8, batch 4.
TINY_ZC = scoring.ScoreConfig(proxies=(*ZC_NAMES, "flops"), repeats=1, zc_channels=2, zc_cells=1,
                              zc_resolution=8, zc_batch=4)


def test_score_writes_rows_of_every_zero_cost_proxy():
  rows = []
  scoring.score_indices(np.asarray([0, 1462, 6111]), scoring.Scorer(TINY_ZC), 0, rows.extend)
  assert [row["index"] for row in rows] == [0, 1462, 6111]
  for row in rows:
    for name in ZC_NAMES:
      assert np.isfinite(row[name]) and row[f"{name}_valid"], (row["index"], name)


def test_config_hash_without_zero_cost_proxies_omits_their_fields():
  config = scoring.ScoreConfig(proxies=("ntk", "lr"))
  assert not any(key.startswith("zc_") for key in config.to_dict())
  assert scoring.ScoreConfig.from_dict(config.to_dict()) == config
  # The hash this default configuration had before the zc fields existed.
  assert scoring.ScoreConfig().hash() == "a619738fa4f13f41"
  assert TINY_ZC.to_dict()["zc_batch"] == 4
  assert scoring.ScoreConfig.from_dict(TINY_ZC.to_dict()) == TINY_ZC


def test_score_command_takes_zero_cost_options(tmp_path):
  out = tmp_path / "zc.sqlite"
  result = CliRunner().invoke(cli.cli, [
      "score", "--indices", "1462,5", "--proxies", "synflow,naswot",
      "--zc-channels", "2", "--zc-cells", "1", "--zc-resolution", "8", "--zc-batch", "4",
      "--repeats", "1", "--no-progress", "--out", str(out)])
  assert result.exit_code == 0, result.output
  table, config = store.read_table(out)
  assert config["zc_channels"] == 2 and config["zc_batch"] == 4
  assert all(table[f"{name}_valid"][0] == 1 for name in ("synflow", "naswot"))
