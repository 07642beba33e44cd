"""The NB201 network's configuration: plain data (channels, cells, stages, input), no Flax.

The Flax model (`model.py`), the FLOPs and parameter counts (`complexity.py`) and the hardware models
(`hardware/`) all read it; only the model needs JAX and Flax to build the network.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from micronas_jax.errors import Param, ParamError

INITS = ("torch-default", "kaiming-normal")


@dataclasses.dataclass(frozen=True)
class NetworkConfig:
  """Shape of an NB201 network.

  Attributes:
    channels: C, the channels of stage 1 (stage s has C * 2**s).
    cells_per_stage: N, cells in each stage.
    num_stages: stages; a stride-2 ResNet block sits between consecutive stages.
    num_classes: outputs of the linear head.
    resolution: input height and width.
    in_channels: input channels (3 for images).
    stem: whether a 3x3 conv + BN maps the input to C channels; without it in_channels must be C.
    init: weight initialization, one of INITS. "torch-default" is PyTorch's default
      (kaiming-uniform with a=sqrt(5): U(+-1/sqrt(fan_in)) for weights and linear biases), which is
      what the TE-NAS reference code actually ran; "kaiming-normal" is N(0, 2/fan_in) with zero
      biases, what that code meant to ask for.
    bn_momentum: flax convention, running = m * running + (1 - m) * batch (PyTorch's 0.1 is 0.9).
      Proxies use 0: one training-mode pass then stores the batch's own statistics.
  """
  channels: int = 16
  cells_per_stage: int = 5
  num_stages: int = 3
  num_classes: int = 10
  resolution: int = 32
  in_channels: int = 3
  stem: bool = True
  init: str = "torch-default"
  bn_momentum: float = 0.9

  def __post_init__(self):
    if self.init not in INITS:
      raise ValueError(f"Unknown init {self.init!r}; known: {', '.join(INITS)}")
    if not self.stem and self.in_channels != self.channels:
      raise ParamError(f"without a stem in_channels ({self.in_channels}) must equal ",
                       Param("channels"), f" ({self.channels})")
    for name in ("channels", "cells_per_stage", "num_stages", "num_classes", "resolution",
                 "in_channels"):
      if getattr(self, name) < 1:
        raise ParamError(Param(name), f" must be positive, got {getattr(self, name)}")
    if self.resolution % 2**(self.num_stages - 1):
      # The reduction block's conv and shortcut only agree in size on even inputs.
      raise ValueError(f"resolution {self.resolution} must be divisible by "
                       f"{2**(self.num_stages - 1)} for {self.num_stages} stages")

  @property
  def stage_channels(self) -> tuple[int, ...]:
    return tuple(self.channels * 2**s for s in range(self.num_stages))

  @property
  def stage_resolutions(self) -> tuple[int, ...]:
    return tuple(self.resolution // 2**s for s in range(self.num_stages))

  @property
  def input_shape(self) -> tuple[int, int, int]:
    return (self.resolution, self.resolution, self.in_channels)


# The full network of the benchmark (CIFAR-10), and the two proxy networks of TE-NAS.
NB201_CIFAR10 = NetworkConfig()
NTK_NETWORK = NetworkConfig(channels=3, cells_per_stage=1, bn_momentum=0.0)
LR_NETWORK = NetworkConfig(channels=1, cells_per_stage=1, num_stages=1, resolution=3,
                           in_channels=1, stem=False, bn_momentum=0.0)


def pool_3x3_counts(height: int, width: int) -> np.ndarray:
  """Pixels `[height, width]` in each 3x3 window of NB201's avg_pool_3x3 (`model.avg_pool_3x3`,
  padding not counted): 9 inside, 6 on an edge, 4 in a corner. Exporters that write the pool as
  a sum use it."""
  # A window spans 3 rows inside and 2 on the first or last row; likewise for columns.
  rows = np.minimum(np.arange(height) + 1, height - 1) - np.maximum(np.arange(height) - 1, 0) + 1
  cols = np.minimum(np.arange(width) + 1, width - 1) - np.maximum(np.arange(width) - 1, 0) + 1
  return np.outer(rows, cols)
