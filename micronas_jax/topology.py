"""Indicators of a cell's graph alone (no network, no weights): how its skip connections span it.

A cell is a DAG whose nodes are numbered in topological order (NB201: node 0 is the cell input,
node 3 its output; edge (i, j) carries node j's features to node i). The indicator is a function
of that graph and of which edges are identities, so it applies to any cell space of this form.

Skip span (FreeREA, Cavagnero et al., WACV 2023, arXiv 2207.05135; its code,
NiccoloCavagnero/FreeREA, computes it from the arch string): the mean, over the cell's identity
edges, of the number of nodes each one bypasses (i - j - 1 for an identity edge from node j to node
i); 0 for a cell without identity edges. Higher is better. Rationale: an identity that bypasses
more of the cell's computation is a longer shortcut, so the stacked network holds shorter paths
from its input to its loss, which is what makes residual networks trainable (He et al., CVPR
2016; Veit et al., NeurIPS 2016: residual networks behave like ensembles of shallow paths). An
identity between consecutive nodes bypasses nothing and scores 0, like no identity at all.
It says nothing about capacity (a cell of identities alone scores high), so it is only ever used
beside indicators that do (MeCo, linear regions, FLOPs).
"""
from __future__ import annotations

import numpy as np

from micronas_jax import space

# Nodes each edge bypasses: i - j - 1 for the edge from node j to node i.
_EDGE_SPANS = np.asarray([to - source - 1 for to, source in space.EDGES], np.float64)


def skip_span(archs) -> np.ndarray:
  """Mean number of nodes bypassed by the identity (skip_connect) edges of `archs: [..., 6]` op
  indices -> `[...]` float64; 0 where a cell has no identity edge.

  Example: skips on 0->3 (bypasses nodes 1, 2) and 1->2 (none) -> (2 + 0) / 2 = 1.
  """
  archs = np.asarray(archs)
  if archs.shape[-1] != space.NUM_EDGES:
    raise ValueError(f"expected archs [..., {space.NUM_EDGES}], got {archs.shape}")
  identity = archs == space.SKIP
  count = identity.sum(-1)
  total = (identity * _EDGE_SPANS).sum(-1)
  return np.where(count > 0, total / np.maximum(count, 1), 0.0)
