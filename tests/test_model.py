import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from micronas_jax import model, space

# Tiny network: C=2, one cell per stage, 8x8 inputs -> stages at 8, 4, 2 pixels.
TINY = model.NetworkConfig(channels=2, cells_per_stage=1, resolution=8, bn_momentum=0.0)
# Jitted: run op by op, the init and the network's switch compile one program per op (an init
# took 31 s, one apply 17-21 s on the 2-core CPU); jitted, one program each (about 6 s).
init = jax.jit(model.init, static_argnums=1)
apply = jax.jit(model.apply, static_argnames=("config", "train"))


@pytest.fixture(scope="module")
def tiny_variables():
  return init(jax.random.key(0), TINY)


@pytest.fixture(scope="module")
def batch():
  return jax.random.normal(jax.random.key(1), (4, *TINY.input_shape))


def test_one_compilation_serves_twenty_cells(tiny_variables, batch):
  @jax.jit
  @chex.assert_max_traces(n=1)
  def logits(arch):
    return model.apply(tiny_variables, arch, batch, TINY)[0]

  chex.clear_trace_counter()
  # Cells of 1x1 and 3x3 convs only: every edge reaches the output, so all 20 outputs differ.
  archs = [ops for ops in space.all_archs() if np.isin(ops, [space.CONV1X1, space.CONV3X3]).all()]
  archs = archs[:20]
  outputs = [logits(jnp.asarray(ops)) for ops in archs]
  assert len({np.asarray(o).tobytes() for o in outputs}) == 20


@pytest.mark.parametrize("index", [0, 1, 1462, 6111])
@pytest.mark.parametrize("train", [True, False])
def test_int_arch_equals_one_hot_weights(tiny_variables, batch, index, train):
  # The op-index path runs lax.switch; the weights path sums all ops weighted: same network.
  ops = space.arch_at(index)
  by_index, stats_by_index = apply(tiny_variables, ops, batch, TINY, train=train)
  by_weights, stats_by_weights = apply(tiny_variables, space.one_hot(ops), batch, TINY,
                                       train=train)
  np.testing.assert_allclose(by_index, by_weights, rtol=1e-5, atol=1e-6)
  # Running statistics of the active ops agree; inactive ops keep theirs under the switch.
  for path, leaf in jax.tree_util.tree_leaves_with_path(stats_by_index):
    if "conv" not in jax.tree_util.keystr(path):
      np.testing.assert_allclose(leaf, _get(stats_by_weights, path), rtol=1e-5, atol=1e-6)


def _get(tree, path):
  for entry in path:
    tree = tree[entry.key]
  return tree


def _cell_output(ops, x, features=2):
  cell = model.Cell(features, TINY)

  @jax.jit
  def output(x, weights):
    variables = cell.init(jax.random.key(0), x, weights, True)
    return cell.apply(variables, x, weights, True, mutable=["batch_stats"])[0]

  return output(x, space.one_hot(ops))


def test_all_skip_cell_outputs_four_times_its_input():
  # node1 = x; node2 = x + node1 = 2x; node3 = x + node1 + node2 = 4x.
  x = jax.random.normal(jax.random.key(2), (2, 4, 4, 2))
  np.testing.assert_allclose(_cell_output([1] * 6, x), 4 * x, rtol=1e-6)


def test_all_none_cell_outputs_zero():
  x = jax.random.normal(jax.random.key(2), (2, 4, 4, 2))
  np.testing.assert_array_equal(_cell_output([0] * 6, x), np.zeros_like(x))


def test_avg_pool_excludes_padding_from_the_count():
  x = np.arange(2 * 3 * 3 * 1, dtype=np.float32).reshape(2, 3, 3, 1)
  expected = np.zeros_like(x)
  for i in range(3):
    for j in range(3):
      window = x[:, max(i - 1, 0):i + 2, max(j - 1, 0):j + 2, :]
      expected[:, i, j, :] = window.mean(axis=(1, 2))
  np.testing.assert_allclose(model.avg_pool_3x3(jnp.asarray(x)), expected, rtol=1e-6)


def test_supernet_edge_is_the_mean_of_its_ops():
  x = jax.random.normal(jax.random.key(3), (2, 4, 4, 2))
  edge = model.Edge(2, TINY)
  variables = edge.init(jax.random.key(0), x, jnp.ones(5), True)

  def run(weights):
    return edge.apply(variables, x, jnp.asarray(weights, jnp.float32), True,
                      mutable=["batch_stats", "intermediates"])[0]

  mean_of_ops = sum(run(np.eye(5)[op]) for op in range(1, 5)) / 4
  np.testing.assert_allclose(run([0, 0.25, 0.25, 0.25, 0.25]), mean_of_ops, rtol=1e-5, atol=1e-6)


def test_inactive_ops_get_zero_gradient(tiny_variables, batch):
  ops = np.array([1, 2, 4, 2, 0, 1])  # no 3x3 conv anywhere

  def loss(params):
    variables = {**tiny_variables, "params": params}
    return model.apply(variables, ops, batch, TINY)[0].sum()

  grads = jax.jit(jax.grad(loss))(tiny_variables["params"])
  conv3x3 = [leaf for path, leaf in jax.tree_util.tree_leaves_with_path(grads)
             if "conv3x3" in jax.tree_util.keystr(path)]
  conv1x1 = [leaf for path, leaf in jax.tree_util.tree_leaves_with_path(grads)
             if "conv1x1" in jax.tree_util.keystr(path) and "edge_2_0" in jax.tree_util.keystr(path)]
  assert conv3x3 and all(np.all(leaf == 0) for leaf in conv3x3)
  assert any(np.any(leaf != 0) for leaf in conv1x1)


def test_torch_default_init_bounds(tiny_variables):
  # PyTorch default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)); stem fan_in = 3*3*3 = 27.
  kernel = tiny_variables["params"]["stem"]["conv"]["kernel"]
  assert np.abs(kernel).max() <= 1 / np.sqrt(27)
  assert np.abs(kernel).max() > 0.8 / np.sqrt(27)


def test_kaiming_normal_init_has_he_variance():
  config = model.NetworkConfig(channels=16, cells_per_stage=1, init="kaiming-normal")
  edge = init(jax.random.key(0), config)["params"]["stage3_cell0"]["edge_1_0"]
  std = float(np.std(edge["conv3x3_kernel"]))
  assert abs(std - np.sqrt(2 / (9 * 64))) < 0.05 * np.sqrt(2 / (9 * 64))


def test_relu_patterns_zero_for_inactive_convs():
  config = model.LR_NETWORK
  variables = init(jax.random.key(0), config)
  x = jax.random.normal(jax.random.key(1), (16, *config.input_shape))
  relu_patterns = jax.jit(model.relu_patterns, static_argnums=3)  # one program for both cells
  no_convs = relu_patterns(variables, np.array([1, 4, 1, 0, 4, 1]), x, config)
  with_convs = relu_patterns(variables, np.array([3, 2, 3, 2, 3, 2]), x, config)
  # 6 edge ReLUs of 3x3x1 units + the head ReLU of 3x3x1 units.
  assert no_convs.shape == with_convs.shape == (16, 7 * 9)
  # Without convs only the head ReLU's 9 units can fire.
  assert no_convs.any(axis=0).sum() <= 9 < with_convs.any(axis=0).sum()


@pytest.mark.parametrize("kwargs, message", [
    ({"init": "xavier"}, "Unknown init"),
    ({"stem": False}, "without a stem"),
    ({"resolution": 30}, "divisible by 4"),
    ({"channels": 0}, "channels must be positive"),
])
def test_config_rejects_bad_values(kwargs, message):
  with pytest.raises(ValueError, match=message):
    model.NetworkConfig(**kwargs)


def test_init_returns_only_params_and_batch_stats():
  # The collections are the tree's top level: jax.eval_shape gives it without an init.
  variables = jax.eval_shape(lambda key: model.init(key, model.NetworkConfig(
      channels=2, cells_per_stage=1, resolution=8)), jax.random.key(0))
  assert set(variables) == {"params", "batch_stats"}
