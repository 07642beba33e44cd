"""Training-free proxies: a small explicit registry.

Every proxy is a pure function `(variables, arch, inputs, network_config) -> (value, valid)` with
scalar outputs, evaluated at initialization. `family` names the proxy network and inputs it reads
(see `micronas_jax.proxies.draws.ScoreConfig`): proxies of one family share weights and batches, so
their values are comparable draw by draw.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

from micronas_jax.proxies import linear_regions
from micronas_jax.proxies import meco
from micronas_jax.proxies import naswot
from micronas_jax.proxies import ntk
from micronas_jax.proxies import zero_cost
from micronas_jax.proxies import zico

# "zc": zero-cost proxies on the full-size network with labelled batches (ScoreConfig.zc_*).
FAMILIES = ("ntk", "lr", "zc")


@dataclasses.dataclass(frozen=True)
class Proxy:
  """One registered proxy; `higher_is_better` states its direction."""
  name: str
  fn: Callable
  family: str
  higher_is_better: bool
  reference: str


_REGISTRY: dict[str, Proxy] = {}


def register(proxy: Proxy) -> Proxy:
  """Adds `proxy` to the registry; a name can be registered once."""
  if proxy.name in _REGISTRY:
    raise ValueError(f"proxy {proxy.name!r} is already registered")
  if proxy.family not in FAMILIES:
    raise ValueError(f"Unknown proxy family {proxy.family!r}; known: {', '.join(FAMILIES)}")
  _REGISTRY[proxy.name] = proxy
  return proxy


def get(name: str) -> Proxy:
  """The registered proxy called `name`."""
  if name not in _REGISTRY:
    raise ValueError(f"Unknown proxy {name!r}; known: {', '.join(names())}")
  return _REGISTRY[name]


def names() -> tuple[str, ...]:
  """Names of all registered proxies, in registration order."""
  return tuple(_REGISTRY)


register(Proxy("ntk", ntk.ntk_condition_exact, "ntk", higher_is_better=False,
               reference="TE-NAS (arXiv 2102.11535): NTK condition number, BN in training mode"))
register(Proxy("ntk_fast", ntk.ntk_condition_fast, "ntk", higher_is_better=False,
               reference="NTK condition number with frozen batch statistics (micronas-jax)"))
register(Proxy("lr", linear_regions.linear_regions, "lr", higher_is_better=True,
               reference="TE-NAS (arXiv 2102.11535): distinct ReLU activation patterns"))
register(Proxy("synflow", zero_cost.synflow, "zc", higher_is_better=True,
               reference="Tanaka et al. 2020 (arXiv 2006.05467), as in Abdelfattah et al. 2021 "
                         "(arXiv 2101.08134): sum |W * dR/dW|, |params|, no BN, ones input"))
register(Proxy("naswot", naswot.naswot, "zc", higher_is_better=True,
               reference="Mellor et al. 2021 (arXiv 2006.04647): log|det K| of ReLU-code "
                         "agreement K = N_A - Hamming"))
register(Proxy("grad_norm", zero_cost.grad_norm, "zc", higher_is_better=True,
               reference="Abdelfattah et al. 2021 (arXiv 2101.08134): sum of layer gradient "
                         "L2 norms of the cross-entropy"))
register(Proxy("snip", zero_cost.snip, "zc", higher_is_better=True,
               reference="Lee et al. 2019 (arXiv 1810.02340), as in Abdelfattah et al. 2021: "
                         "sum |W * dL/dW|"))
register(Proxy("zico", zico.zico, "zc", higher_is_better=True,
               reference="Li et al. 2023 (arXiv 2301.11300): sum over layers of "
                         "log sum mean|g| / std(g) over batches"))
register(Proxy("meco", meco.meco, "zc", higher_is_better=True,
               reference="Jiang et al. 2023 (NeurIPS; code HamsterMiZhang/MeCo): sum over "
                         "layers of the minimum eigenvalue of one image's channel correlation"))
