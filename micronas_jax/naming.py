"""Where every layer's parameters sit in the Flax variables: the one definition of their paths.

The model (`model.py`) names its modules and leaves with these functions; the graph
(`graph.py`), BN folding and the ONNX export (`export.py`), NASWOT, the zero-cost sums and the
deploy path find a layer's leaves through them, and `layer_of` reads a flat path back into the
typed layer. Nothing else spells a parameter name or matches part of one.

    stem                          conv + BN
    reduction_{s}/conv_a, conv_b  conv + BN (s = 1, 2: the block before stage s + 1)
    reduction_{s}/shortcut        conv, no BN
    stage{s+1}_cell{c}/edge_{t}_{f}
                                  the edge t <- f of cell c of stage s: one conv + BN per conv op,
                                  leaves `conv1x1_kernel`, `conv1x1_bn_scale`, ... in one module
    head_bn                       BN before the pool
    classifier                    linear
"""
from __future__ import annotations

import dataclasses
import enum

from micronas_jax import space


class LayerKind(enum.Enum):
  """What a parametrized layer is."""
  STEM = "stem"
  CONV_A = "conv_a"       # reduction block: 3x3 conv, stride 2
  CONV_B = "conv_b"       # reduction block: 3x3 conv
  SHORTCUT = "shortcut"   # reduction block: 1x1 conv of the pooled input, no BN
  EDGE = "edge"           # a cell edge's conv op
  HEAD_BN = "head_bn"
  CLASSIFIER = "classifier"


class Role(enum.Enum):
  """What one leaf of a layer holds, and the collection it lives in."""
  KERNEL = "kernel"        # params: conv kernel [k, k, C_in, C_out] or linear kernel [C, K]
  BIAS = "bias"            # params: the linear's bias [K]
  BN_SCALE = "bn_scale"    # params: BN gamma [C]
  BN_BIAS = "bn_bias"      # params: BN beta [C]
  BN_MEAN = "bn_mean"      # batch_stats: running mean [C]
  BN_VAR = "bn_var"        # batch_stats: running variance [C]

  @property
  def collection(self) -> str:
    return "batch_stats" if self in (Role.BN_MEAN, Role.BN_VAR) else "params"

  @property
  def batch_norm(self) -> bool:
    """Whether the leaf belongs to a BN (its scale, shift or statistics)."""
    return self in (Role.BN_SCALE, Role.BN_BIAS, Role.BN_MEAN, Role.BN_VAR)


CONV_OPS = {space.CONV1X1: ("conv1x1", 1), space.CONV3X3: ("conv3x3", 3)}
# A conv + BN layer's two flax submodules, and the leaf names inside flax's own modules.
CONV_SUBMODULE, BN_SUBMODULE = "conv", "bn"
_FLAX_LEAVES = {Role.KERNEL: (CONV_SUBMODULE, "kernel"), Role.BN_SCALE: (BN_SUBMODULE, "scale"),
                Role.BN_BIAS: (BN_SUBMODULE, "bias"), Role.BN_MEAN: (BN_SUBMODULE, "mean"),
                Role.BN_VAR: (BN_SUBMODULE, "var")}
_BN_LEAVES = {Role.BN_SCALE: "scale", Role.BN_BIAS: "bias", Role.BN_MEAN: "mean",
              Role.BN_VAR: "var"}
CONV_BN_ROLES = (Role.KERNEL, Role.BN_SCALE, Role.BN_BIAS, Role.BN_MEAN, Role.BN_VAR)


def stem_module() -> str:
  return "stem"


def reduction_module(stage: int) -> str:
  """The reduction block before stage `stage` (0-based; 1 and 2 in NB201)."""
  return f"reduction_{stage}"


def cell_module(stage: int, cell: int) -> str:
  """Cell `cell` of stage `stage` (both 0-based; the name counts stages from 1)."""
  return f"stage{stage + 1}_cell{cell}"


def edge_module(edge: int) -> str:
  """Edge `edge` (benchmark order) of a cell: `edge_{to}_{from}`."""
  target, source = space.EDGES[edge]
  return f"edge_{target}_{source}"


def edge_leaf(op: int, role: Role) -> str:
  """The leaf name of `role` of conv op `op` inside an edge module, e.g. `conv3x3_bn_scale`."""
  return f"{CONV_OPS[op][0]}_{role.value}"


@dataclasses.dataclass(frozen=True)
class Layer:
  """One parametrized layer of the network; stage and cell are 0-based, `edge` in benchmark
  order, `op` the conv op of an EDGE layer."""
  kind: LayerKind
  stage: int = 0
  cell: int = 0
  edge: int = 0
  op: int = 0

  @property
  def module(self) -> tuple[str, ...]:
    """The module path of the layer in the variables tree."""
    if self.kind is LayerKind.STEM:
      return (stem_module(),)
    if self.kind in (LayerKind.CONV_A, LayerKind.CONV_B, LayerKind.SHORTCUT):
      return (reduction_module(self.stage), self.kind.value)
    if self.kind is LayerKind.EDGE:
      return (cell_module(self.stage, self.cell), edge_module(self.edge))
    return (self.kind.value,)

  @property
  def roles(self) -> tuple[Role, ...]:
    """The leaves this layer has."""
    if self.kind is LayerKind.SHORTCUT:
      return (Role.KERNEL,)
    if self.kind is LayerKind.HEAD_BN:
      return CONV_BN_ROLES[1:]
    if self.kind is LayerKind.CLASSIFIER:
      return (Role.KERNEL, Role.BIAS)
    return CONV_BN_ROLES

  @property
  def has_batch_norm(self) -> bool:
    return Role.BN_SCALE in self.roles

  def leaf(self, role: Role) -> tuple[str, ...]:
    """The flat path of leaf `role` inside its collection (`role.collection`)."""
    if role not in self.roles:
      raise KeyError(f"{self} has no {role.value}")
    if self.kind is LayerKind.EDGE:
      return (*self.module, edge_leaf(self.op, role))
    if self.kind is LayerKind.SHORTCUT or self.kind is LayerKind.CLASSIFIER:
      return (*self.module, role.value)
    if self.kind is LayerKind.HEAD_BN:
      return (*self.module, _BN_LEAVES[role])
    return (*self.module, *_FLAX_LEAVES[role])

  def get(self, variables, role: Role):
    """The array of leaf `role` in `variables` ({"params", "batch_stats"})."""
    node = variables[role.collection]
    for name in self.leaf(role):
      node = node[name]
    return node


def _index(text: str, prefix: str) -> int | None:
  digits = text[len(prefix):]
  return int(digits) if text.startswith(prefix) and digits.isdigit() else None


def _cell_location(name: str) -> tuple[int, int] | None:
  if not name.startswith("stage") or "_cell" not in name:
    return None
  stage_text, cell_text = name[len("stage"):].split("_cell", 1)
  if not (stage_text.isdigit() and cell_text.isdigit()):
    return None
  return int(stage_text) - 1, int(cell_text)


_EDGE_MODULES = {edge_module(edge): edge for edge in range(space.NUM_EDGES)}
_EDGE_LEAVES = {edge_leaf(op, role): (op, role) for op in CONV_OPS for role in CONV_BN_ROLES}


def role_of(path: tuple[str, ...]) -> Role | None:
  """The role of the leaf at a flat path (`layer_of`), or None for a path of no leaf."""
  found = layer_of(path)
  return found[1] if found else None


def layer_of(path: tuple[str, ...]) -> tuple[Layer, Role] | None:
  """The layer and role of a flat leaf path (as `flax.traverse_util.flatten_dict` gives it, in
  either collection), or None for a path that names no leaf of the network."""
  path = tuple(getattr(entry, "key", entry) for entry in path)
  if not path:
    return None
  location = _cell_location(path[0])
  if location is not None:
    if len(path) == 3 and path[1] in _EDGE_MODULES and path[2] in _EDGE_LEAVES:
      op, role = _EDGE_LEAVES[path[2]]
      return Layer(LayerKind.EDGE, *location, _EDGE_MODULES[path[1]], op), role
    return None
  candidates = []
  if path[0] == stem_module():
    candidates.append(Layer(LayerKind.STEM))
  elif path[0] in (LayerKind.HEAD_BN.value, LayerKind.CLASSIFIER.value):
    candidates.append(Layer(LayerKind(path[0])))
  elif (stage := _index(path[0], "reduction_")) is not None and len(path) > 1:
    if path[1] in (LayerKind.CONV_A.value, LayerKind.CONV_B.value, LayerKind.SHORTCUT.value):
      candidates.append(Layer(LayerKind(path[1]), stage))
  for layer in candidates:
    for role in layer.roles:
      if layer.leaf(role) == path:
        return layer, role
  return None


def edge_of_intermediate(path: tuple[str, ...]) -> int | None:
  """The cell edge (benchmark order) whose module sowed the intermediate at `path`, or None for
  one outside the cells' edges."""
  path = tuple(getattr(entry, "key", entry) for entry in path)
  if len(path) >= 2 and _cell_location(path[0]) is not None and path[1] in _EDGE_MODULES:
    return _EDGE_MODULES[path[1]]
  return None
