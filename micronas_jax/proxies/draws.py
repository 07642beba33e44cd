"""What one draw of the proxies reads: the scoring configuration, the proxy networks it defines
and the inputs of a draw.

The scorer (`micronas_jax.scoring`) and the searches (`micronas_jax.search`) both build on this
module, so neither imports the other for a network or a batch.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json

import jax
import jax.numpy as jnp

from micronas_jax import complexity, model, proxies, topology
from micronas_jax.errors import Param, ParamError

# Batches per zero-cost draw: ZiCo needs at least two; the other zc proxies read the first.
ZC_BATCHES = 2

ANALYTIC = {
    "flops": lambda archs: complexity.flops(archs) / 1e6,   # M, full CIFAR-10 network (C=16, N=5)
    "params": lambda archs: complexity.params(archs) / 1e6,  # M
    "skip_span": topology.skip_span,  # nodes bypassed per identity edge (FreeREA)
}
# The analytic columns as indicators of accuracy: FLOPs and params measure capacity (AZ-NAS's
# "complexity", MicroNAS's FLOPs term), so more is better; a longer skip span is better
# (FreeREA). As hardware costs, FLOPs order the other way: `search.objective.HIGHER_IS_BETTER`.
ANALYTIC_HIGHER_IS_BETTER = {"flops": True, "params": True, "skip_span": True}


@dataclasses.dataclass(frozen=True)
class ScoreConfig:
  """Everything that determines a score except the cell and the seed.

  Attributes:
    proxies: names from `proxies.names()` and/or analytic columns ("flops", "params").
    repeats: draws of (weights, inputs) averaged per proxy (TE-NAS: 3).
    init: weight initialization (`model.INITS`).
    ntk_channels, ntk_cells, ntk_resolution, ntk_batch: the NTK network (C, N, input size) and
      its batch (TE-NAS: C=3, N=1, 32, batch 72; MicroNAS: batch 32).
    lr_channels, lr_batches, lr_batch, lr_size: the linear-region network's C and its inputs,
      `lr_batches` batches of `lr_batch` samples of size lr_size x lr_size x 1 (TE-NAS: 3 x 1000
      of 3x3).
    zc_channels, zc_cells, zc_resolution, zc_batch: the zero-cost network (C, N, input size) and
      its batch, for synflow, naswot, grad_norm, snip, zico and meco (the full NB201 network at
      32x32, batch 64, as zero-cost-nas runs them). A draw holds `ZC_BATCHES` batches with random
      labels; zico uses all of them, meco the first image, the others the first batch.
    data: fingerprint of the real images used, or None for standard-normal inputs.
    in_channels: input channels of the NTK and zero-cost networks: the images' (1 for a gray
      task), 3 for standard-normal inputs.
  """
  proxies: tuple[str, ...] = ("ntk", "lr", "flops", "params")
  repeats: int = 3
  init: str = "torch-default"
  ntk_channels: int = 3
  ntk_cells: int = 1
  ntk_resolution: int = 32
  ntk_batch: int = 32
  lr_channels: int = 1
  lr_batches: int = 3
  lr_batch: int = 1000
  lr_size: int = 3
  zc_channels: int = 16
  zc_cells: int = 5
  zc_resolution: int = 32
  zc_batch: int = 64
  data: str | None = None
  in_channels: int = 3

  def __post_init__(self):
    known = set(proxies.names()) | set(ANALYTIC)
    unknown = [name for name in self.proxies if name not in known]
    if unknown or not self.proxies:
      raise ValueError(f"Unknown proxy {', '.join(unknown) or '(none given)'}; "
                       f"known: {', '.join(sorted(known))}")
    if len(set(self.proxies)) != len(self.proxies):
      raise ValueError(f"proxy listed twice in {','.join(self.proxies)}")
    for name in ("repeats", "ntk_batch", "lr_batches", "lr_batch", "zc_batch"):
      if getattr(self, name) < 1:
        raise ParamError(Param(name), f" must be positive, got {getattr(self, name)}")
    if self.ntk_batch < 2:
      raise ParamError(Param("ntk_batch"), " must be at least 2 for a condition number")
    self.networks()  # validates the network shapes

  def networks(self) -> dict[str, model.NetworkConfig]:
    """The proxy network of each family."""
    return {
        "ntk": model.NetworkConfig(channels=self.ntk_channels, cells_per_stage=self.ntk_cells,
                                   resolution=self.ntk_resolution, init=self.init,
                                   in_channels=self.in_channels, bn_momentum=0.0),
        "lr": model.NetworkConfig(channels=self.lr_channels, cells_per_stage=1, num_stages=1,
                                  resolution=self.lr_size, in_channels=self.lr_channels,
                                  stem=False, init=self.init, bn_momentum=0.0),
        "zc": model.NetworkConfig(channels=self.zc_channels, cells_per_stage=self.zc_cells,
                                  resolution=self.zc_resolution, init=self.init,
                                  in_channels=self.in_channels, bn_momentum=0.0),
    }

  @property
  def network_proxies(self) -> tuple[str, ...]:
    return tuple(name for name in self.proxies if name not in ANALYTIC)

  def to_dict(self) -> dict:
    """The configuration as JSON-ready data; the zc_* fields only when a zc proxy is used, and
    in_channels only when it is not 3, so that the hash of a configuration is what it was before
    they existed."""
    data = dataclasses.asdict(self) | {"proxies": list(self.proxies)}
    if self.in_channels == 3:
      del data["in_channels"]
    if not any(proxies.get(name).family == "zc" for name in self.network_proxies):
      data = {key: value for key, value in data.items() if not key.startswith("zc_")}
    return data

  def hash(self) -> str:
    """Short SHA-256 of the configuration (JSON, sorted keys)."""
    text = json.dumps(self.to_dict(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]

  @classmethod
  def from_dict(cls, data: dict) -> ScoreConfig:
    return cls(**{**data, "proxies": tuple(data["proxies"])})


def image_channels(images) -> int:
  """The indicator networks' input channels for `images` `[N, H, W, C]` (None: 3)."""
  return 3 if images is None else int(images.shape[-1])


def _sample_images(key, images, count: int, shape: tuple[int, ...]):
  """`count` random images (distinct when there are enough), resized to `shape`
  ([count, H, W, C]) when it differs."""
  chosen = jax.random.choice(key, images.shape[0], (count,), replace=count > images.shape[0])
  batch = images[chosen]
  if batch.shape[1:] != shape[1:]:
    batch = jax.image.resize(batch, shape, "linear")
  return batch


def _zc_inputs(key, config: ScoreConfig, network: model.NetworkConfig, images) -> dict:
  """{"images": [ZC_BATCHES, zc_batch, H, W, 3], "labels": [ZC_BATCHES, zc_batch] int32}.

  Labels are uniform random classes also with real images (the data module yields images only):
  the loss-based proxies then measure gradients of fitting random labels.
  """
  image_key, label_key = jax.random.split(key)
  count = ZC_BATCHES * config.zc_batch
  shape = (count, *network.input_shape)
  batch = (jax.random.normal(image_key, shape) if images is None
           else _sample_images(image_key, images, count, shape))
  labels = jax.random.randint(label_key, (ZC_BATCHES, config.zc_batch), 0, network.num_classes)
  return {"images": batch.reshape(ZC_BATCHES, config.zc_batch, *network.input_shape),
          "labels": labels}


def _family_inputs(family: str, key, config: ScoreConfig, network: model.NetworkConfig, images):
  """A draw of inputs: `[ntk_batch, H, W, 3]` for "ntk", `[lr_batches, lr_batch, s, s, C]` for "lr",
  a dict of batches and labels for "zc" (`_zc_inputs`).

  Standard normal without images; with images (`[N, 32, 32, 3]`, normalized), a random sample
  of them for the NTK and random lr_size x lr_size crops of one random channel for LR (TE-NAS).
  """
  if family == "zc":
    return _zc_inputs(key, config, network, images)
  if family == "ntk":
    shape = (config.ntk_batch, *network.input_shape)
    if images is None:
      return jax.random.normal(key, shape)
    return _sample_images(key, images, config.ntk_batch, shape)
  shape = (config.lr_batches, config.lr_batch, *network.input_shape)
  if images is None:
    return jax.random.normal(key, shape)
  count = config.lr_batches * config.lr_batch
  image_key, channel_key, row_key, col_key = jax.random.split(key, 4)
  size = config.lr_size
  which = jax.random.randint(image_key, (count,), 0, images.shape[0])
  channel = jax.random.randint(channel_key, (count,), 0, images.shape[3])
  rows = jax.random.randint(row_key, (count,), 0, images.shape[1] - size + 1)
  cols = jax.random.randint(col_key, (count,), 0, images.shape[2] - size + 1)

  def crop(i, c, r, q):
    return jax.lax.dynamic_slice(images, (i, r, q, c), (1, size, size, 1))[0]

  crops = jax.vmap(crop)(which, channel, rows, cols)  # [count, s, s, 1]
  return jnp.tile(crops, (1, 1, 1, config.lr_channels)).reshape(shape)


def family_draw(key, family: str, config: ScoreConfig, images=None):
  """One draw of a proxy family: fresh network variables and inputs -> (variables, inputs).

  The key is folded with the family's position in `proxies.FAMILIES`, so the families of one
  draw are independent and each family's draw does not depend on which others are used.
  """
  network = config.networks()[family]
  init_key, input_key = jax.random.split(jax.random.fold_in(key, proxies.FAMILIES.index(family)))
  return model.init(init_key, network), _family_inputs(family, input_key, config, network, images)
