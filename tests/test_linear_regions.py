import jax
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from micronas_jax import model, space
from micronas_jax.proxies import linear_regions

LR = model.LR_NETWORK


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 60), st.integers(1, 70), st.integers(0, 2**31 - 1))
def test_count_distinct_rows_matches_python_set(rows, columns, seed):
  rng = np.random.default_rng(seed)
  # Few distinct rows repeated, so duplicates are common.
  base = rng.random((max(rows // 3, 1), columns)) < 0.5
  patterns = base[rng.integers(0, base.shape[0], rows)]
  expected = len({tuple(row) for row in patterns})
  assert int(linear_regions.count_distinct_rows(patterns)) == expected


@pytest.mark.parametrize("index", [1462, 0, 6111, 1])
def test_linear_regions_match_brute_force_pattern_set(index):
  variables = model.init(jax.random.key(0), LR)
  x = jax.random.normal(jax.random.key(1), (2, 200, *LR.input_shape))
  ops = space.arch_at(index)
  count, valid = jax.jit(linear_regions.linear_regions, static_argnums=3)(variables, ops, x, LR)
  seen = set()
  for batch in x:  # each batch through the network on its own, BN on its statistics
    patterns = np.asarray(model.relu_patterns(variables, ops, batch, LR))
    seen.update(tuple(row) for row in patterns)
  assert bool(valid) and int(count) == len(seen)


def test_cell_without_path_to_output_has_one_region():
  # All-none cell: the cell outputs zeros, so every input gives the same (all-off) pattern.
  variables = model.init(jax.random.key(0), LR)
  x = jax.random.normal(jax.random.key(1), (1, 100, *LR.input_shape))
  count, _ = linear_regions.linear_regions(variables, np.zeros(6, np.int32), x, LR)
  assert int(count) == 1


def test_inputs_with_nan_make_the_count_invalid():
  variables = model.init(jax.random.key(0), LR)
  x = jax.random.normal(jax.random.key(1), (1, 100, *LR.input_shape))
  count, valid = linear_regions.linear_regions(variables, space.arch_at(1462), x, LR)
  assert bool(valid) and int(count) > 1
  _, valid = linear_regions.linear_regions(variables, space.arch_at(1462),
                                           x.at[0, 5, 0, 0, 0].set(np.nan), LR)
  assert not bool(valid)
