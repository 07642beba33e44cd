import numpy as np
import pytest
from hypothesis import given, strategies as st

from micronas_jax import space

ALL_CONV3X3 = ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|"
               "+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|")


def test_index_order_matches_benchmark_for_all_cells(nb201_rows):
  archs = space.all_archs()
  assert len(nb201_rows) == space.NUM_CELLS == archs.shape[0]
  for row in nb201_rows:
    index = int(row["index"])
    assert space.format_arch(archs[index]) == row["arch"], index


def test_all_archs_are_distinct_and_cover_the_space():
  codes = space.encode(space.all_archs())
  assert sorted(codes.tolist()) == list(range(5**6))


def test_all_conv3x3_cell_is_index_1462():
  assert space.format_arch(space.arch_at(1462)) == ALL_CONV3X3
  assert space.index_of(space.parse_arch(ALL_CONV3X3)) == 1462


@given(st.lists(st.integers(0, 4), min_size=6, max_size=6))
def test_parse_inverts_format(ops):
  assert space.parse_arch(space.format_arch(ops)).tolist() == ops


@given(st.integers(0, space.NUM_CELLS - 1))
def test_index_of_inverts_arch_at(index):
  assert space.index_of(space.arch_at(index)) == index


def test_index_of_is_vectorized():
  indices = np.array([[0, 5], [1462, 15624]])
  archs = space.all_archs()[indices]
  np.testing.assert_array_equal(space.index_of(archs), indices)


def test_resolve_accepts_index_and_arch_string():
  np.testing.assert_array_equal(space.resolve(" 1462 "), space.resolve(ALL_CONV3X3))


@pytest.mark.parametrize("bad, message", [
    ("nor_conv_3x3~0", "neither a benchmark index nor an arch string"),
    ("|nor_conv_3x3~0|", "1 nodes, expected 3"),
    (ALL_CONV3X3.replace("nor_conv_3x3~2", "conv_5x5~2"), "unknown op 'conv_5x5'"),
    (ALL_CONV3X3.replace("|nor_conv_3x3~2|", "|"), "node 3 has 2 input edges"),
    (ALL_CONV3X3.replace("nor_conv_3x3~1|+", "nor_conv_3x3~0|+"), "should read from node 1"),
    (ALL_CONV3X3.replace("nor_conv_3x3~1|+", "nor_conv_3x3|+"), "not of the form op~input"),
    ("15625", "out of range"),
    ("-1", "out of range"),
])
def test_resolve_rejects_bad_input_with_a_clear_message(bad, message):
  with pytest.raises(space.ArchError, match=message):
    space.resolve(bad)


@pytest.mark.parametrize("ops", [[0, 1, 2, 3, 4], [0, 1, 2, 3, 4, 5], [0.0] * 6])
def test_validate_ops_rejects_wrong_shape_range_or_dtype(ops):
  with pytest.raises(space.ArchError):
    space.validate_ops(ops)


def test_parse_index_range_slices_and_lists():
  assert space.parse_index_range("0:4").tolist() == [0, 1, 2, 3]
  assert space.parse_index_range("15620:").tolist() == [15620, 15621, 15622, 15623, 15624]
  assert space.parse_index_range("7,3").tolist() == [7, 3]
  for bad in ("a:b", "5:5", "0:20000"):
    with pytest.raises(space.ArchError):
      space.parse_index_range(bad)


def test_supernet_weights_average_active_ops():
  mask = np.ones((6, 5), bool)
  mask[:, space.NONE] = False
  mask[0] = [False, False, False, True, False]
  weights = space.supernet_weights(mask)
  np.testing.assert_allclose(weights[0], [0, 0, 0, 1, 0])
  np.testing.assert_allclose(weights[1], [0, 0.25, 0.25, 0.25, 0.25])
  with pytest.raises(space.ArchError, match="at least one active op"):
    space.supernet_weights(np.zeros((6, 5), bool))
