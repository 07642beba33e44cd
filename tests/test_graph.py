"""The network graph: its builder, reachability and liveness, and every pass held equal to the
vectorized whole-space tables and to the Flax model."""
import jax
import numpy as np
import pytest

from micronas_jax import complexity, export, graph, model, naming, space
from micronas_jax.graph import Block, Kind, Node
from micronas_jax.hardware import latency, memory
from micronas_jax.network import NetworkConfig

N, S, C1, C3, P = space.NONE, space.SKIP, space.CONV1X1, space.CONV3X3, space.POOL
SMALL = NetworkConfig(channels=4, cells_per_stage=1, num_classes=7, resolution=16)


def _node(output, inputs, size):
  return Node(Kind.CONV, output, inputs, (size,), Block.CELL)


def test_liveness_of_a_chain_by_hand():
  # a (4 bytes) -> b (2) -> c (1); input x (8) is read by a and c.
  nodes = [_node("a", ("x",), 4), _node("b", ("a",), 2), _node("c", ("b", "x"), 1)]
  sizes = {"x": 8, "a": 4, "b": 2, "c": 1}
  # node a: x + a = 12; node b: x + a + b = 14; node c: x + b + c = 11
  assert graph.peak_live_bytes(nodes, sizes, ("x",), ("c",)) == 14
  assert graph.lifetimes(nodes, ("x",)) == {"x": (-1, 2), "a": (0, 1), "b": (1, 2), "c": (2, 2)}


def test_the_graph_of_a_cell_in_execution_order():
  # 1<-0 conv1x1, 2<-0 skip, 3<-1 pool, 3<-2 conv3x3: the node names and kinds, by hand.
  network = graph.build([C1, S, N, N, P, C3], NetworkConfig(channels=2, cells_per_stage=1,
                                                            resolution=8))
  cell = [(n.kind, n.output.split("/")[1], n.inputs) for n in network.nodes
          if n.block is Block.CELL and n.stage == 0]
  assert cell == [(Kind.CONV, "conv0", ("stem",)),
                  (Kind.POOL3, "pool4", ("stage1_cell0/conv0",)),
                  (Kind.CONV, "conv5", ("stem",)),
                  (Kind.ADD, "sum5", ("stage1_cell0/pool4", "stage1_cell0/conv5"))]
  conv = network.nodes[1]
  assert conv.relu_in and conv.kernel == 1 and conv.edge == 0 and conv.shape == (8, 8, 2)
  assert conv.layers == (naming.Layer(naming.LayerKind.EDGE, 0, 0, 0, C1),)
  reduction = [n for n in network.nodes if n.block is Block.REDUCTION and n.stage == 1]
  assert [(n.output, n.stride, n.relu_in, n.relu_fused) for n in reduction] == [
      ("reduction_1/conv_a", 2, True, False), ("reduction_1/conv_b", 1, True, True),
      ("reduction_1/pool", 2, False, False), ("reduction_1/shortcut", 1, False, False),
      ("reduction_1/add", 1, False, False)]
  assert network.nodes[-1].kind is Kind.HEAD and network.shapes[graph.LOGITS] == (10,)


def test_reachability_drops_ops_that_do_not_feed_the_output():
  # node 1 = conv(x) feeds only node 2, which reaches node 3 through 'none' only: both dead.
  reach = graph.reachability(np.array([C3, N, C3, S, N, N]))
  assert reach.edges.tolist() == [False, False, False, True, False, False] and reach.output
  assert graph.reachability(space.arch_at(1462)).edges.all()


def test_ops_fed_by_a_zero_node_still_reach_the_output():
  # node 1 has no input (zero) but its conv feeds the output: HW-NAS-Bench timings charge it.
  reach = graph.reachability(np.array([N, N, N, S, C3, N]))
  assert reach.edges.tolist() == [False, False, False, True, True, False] and reach.output


def test_constant_cells_are_the_data_readmes_count():
  ops = np.array([C3, C3, C3, N, N, N])  # node 3 has no input
  assert not graph.reachability(ops).output
  assert graph.build(ops, SMALL, dead_code=True).constant
  assert not graph.build(ops, SMALL).constant
  assert (~graph.reachability(space.all_archs()).output).sum() == 341


def test_flops_and_params_tables_equal_the_graph_pass_on_every_cell():
  archs = space.all_archs()
  flops, params = complexity.flops(archs, SMALL), complexity.params(archs, SMALL)
  for index, ops in enumerate(archs):
    network = graph.build(ops, SMALL)
    assert (complexity.flops_of(network), complexity.params_of(network)) == (
        flops[index], params[index]), index


@pytest.mark.parametrize("plan", memory.PLANS)
def test_flash_table_equals_the_graph_pass_on_every_cell(plan):
  archs = space.all_archs()
  flash = memory.flash(archs, SMALL, plan=plan)
  for index, ops in enumerate(archs):
    assert memory.flash_of(graph.build(ops, SMALL), plan) == flash[index], index


@pytest.mark.parametrize("dead_code", [False, True])
@pytest.mark.parametrize("board", latency.boards())
def test_latency_estimate_equals_the_graph_pass(board, dead_code):
  lut = latency.board(board)
  archs = space.all_archs()[::31]
  estimate = latency.estimate(archs, lut, dead_code)
  for ops, expected in zip(archs, estimate):
    network = graph.build(ops, lut.config, dead_code)
    assert latency.graph_latency(network, lut) == pytest.approx(expected, rel=1e-12)


def test_every_leaf_of_the_model_is_named_by_one_layer():
  shapes = jax.eval_shape(lambda key: model.init(key, SMALL), jax.random.PRNGKey(0))
  read = set()
  for collection in ("params", "batch_stats"):
    for path, leaf in jax.tree_util.tree_leaves_with_path(shapes[collection]):
      names = tuple(entry.key for entry in path)
      layer, role = naming.layer_of(names)
      assert role.collection == collection and layer.leaf(role) == names
      read.add((layer, role))
  assert naming.layer_of(("stage1_cell0", "edge_9_9", "conv3x3_kernel")) is None
  assert naming.layer_of(("bn",)) is None
  # Every layer a graph reads exists in the model, with every leaf of its roles.
  network = graph.build(np.full(6, C3), SMALL)
  for node in network.nodes:
    for layer in node.layers:
      assert all((layer, role) in read for role in layer.roles), layer


@pytest.mark.parametrize("index", [1462, 777, 0])
def test_the_flax_model_equals_the_graph_pass(index):
  # The model's lax.switch cell against the inference network the graph describes (BN folded).
  ops = space.arch_at(index)
  apply = jax.jit(model.apply, static_argnums=(3, 4))
  variables = jax.jit(model.init, static_argnums=1)(jax.random.PRNGKey(index), SMALL)
  # Non-trivial running statistics, so that folding is exercised.
  x = jax.random.normal(jax.random.PRNGKey(1), (8, *SMALL.input_shape))
  _, stats = apply(variables, ops, x, SMALL, True)
  variables = {"params": variables["params"], "batch_stats": stats}
  expected, _ = apply(variables, ops, x, SMALL, False)
  forward = export.inference_function(export.folded_weights(variables, ops, SMALL), ops, SMALL)
  got = forward(np.asarray(x).transpose(0, 3, 1, 2))
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
