"""MLPerf Tiny's image-classification reference, ResNet-8, in Flax, trained with our recipe.

Layers as mlcommons/tiny's `image_classification/keras_model.py` (v1.0) builds them: a 3x3
conv to 16 channels with BN and ReLU; three residual stacks of two 3x3 convs with BN (16, 32,
64 channels; the 2nd and 3rd stack start with stride 2 and add a 1x1 stride-2 conv shortcut),
each added to its shortcut and followed by ReLU; global average pooling; a dense layer. 78,186
trainable parameters (78,666 with BN's statistics, as Keras counts them) and 12.5 M
multiply-accumulates at 32x32x3 (the default table's anchor, `f746_analytic`).

Training uses the package's recipe exactly (`train.optimizer`, `train.augment`,
`data.normalize`, `train.cross_entropy`), so a comparison with a searched network differs only
in the network.
"""
from __future__ import annotations

import json
import pathlib
import time

import flax.linen as nn
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax

from micronas_jax import data, train
from micronas_jax.hardware import f746_analytic

MACS = f746_analytic.MLPERF_IC_MACS  # 12,501,632 at 32x32x3


class ResNet8(nn.Module):
  """ResNet-8: `[B, H, W, C]` normalized images -> `[B, num_classes]` logits."""
  num_classes: int = 10

  @nn.compact
  def __call__(self, x, train: bool):
    norm = lambda: nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-3)
    x = nn.relu(norm()(nn.Conv(16, (3, 3), padding="SAME")(x)))
    for channels, stride in ((16, 1), (32, 2), (64, 2)):
      y = nn.relu(norm()(nn.Conv(channels, (3, 3), stride, padding="SAME")(x)))
      y = norm()(nn.Conv(channels, (3, 3), padding="SAME")(y))
      shortcut = x if stride == 1 else nn.Conv(channels, (1, 1), stride)(x)
      x = nn.relu(y + shortcut)
    return nn.Dense(self.num_classes)(jnp.mean(x, axis=(1, 2)))


def parameter_count(num_classes: int = 10, shape=(32, 32, 3)) -> int:
  """Trainable parameters (BN's scale and bias included, its statistics not)."""
  variables = ResNet8(num_classes).init(jax.random.key(0), jnp.zeros((1, *shape)), train=False)
  return sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(variables["params"]))


def forward_function(variables, num_classes: int = 10):
  """ResNet-8's inference: normalized images `[B, H, W, C]` -> logits `[B, num_classes]`, with
  BN's running statistics (what the int8 converter traces)."""
  model = ResNet8(num_classes)
  return lambda x: model.apply(variables, x, train=False)


def train_resnet8(train_set, test_set, config: train.TrainConfig, num_classes: int = 10,
                  log=print, out: pathlib.Path | None = None) -> dict:
  """Trains ResNet-8 on raw `(images [N, H, W, C] uint8, labels [N])` with `config`'s recipe;
  {"test_accuracy", "train_accuracy", "seconds", "params", "variables"}. With `out`, the
  trained weights and result are kept there and read back instead of training again."""
  images, labels = (jnp.asarray(a) for a in train_set)
  steps = len(images) // config.batch_size
  model = ResNet8(num_classes)
  key = train.init_key(config.seed)
  variables = model.init(key, jnp.zeros((1, *images.shape[1:])), train=False)
  if out is not None and (out / "result.json").exists():
    result = json.loads((out / "result.json").read_text())
    result["variables"] = flax.serialization.from_bytes(
        variables, (out / "resnet8.msgpack").read_bytes())
    return result
  tx = train.optimizer(config, steps)
  params, stats, opt_state = variables["params"], variables["batch_stats"], None
  opt_state = tx.init(params)

  @jax.jit
  def step(params, stats, opt_state, batch, key):
    x = data.normalize(train.augment(key, images[batch], config.crop_padding))
    y = labels[batch]

    def loss_fn(params):
      logits, updated = model.apply({"params": params, "batch_stats": stats}, x, train=True,
                                    mutable=["batch_stats"])
      return train.cross_entropy(logits, y), (logits, updated["batch_stats"])

    (loss, (logits, stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), stats, opt_state,
            jnp.mean(jnp.argmax(logits, -1) == y))

  start = time.perf_counter()
  rng = np.random.default_rng(config.seed)
  for epoch in range(config.epochs):
    order = rng.permutation(len(images))
    correct = 0.0
    for i in range(steps):
      key, sub = jax.random.split(key)
      params, stats, opt_state, accuracy = step(
          params, stats, opt_state, order[i * config.batch_size:(i + 1) * config.batch_size],
          sub)
      correct += float(accuracy)
    log(f"resnet-8 epoch {epoch + 1}/{config.epochs}: train accuracy {correct / steps:.3f}")

  @jax.jit
  def predict(x):
    return jnp.argmax(model.apply({"params": params, "batch_stats": stats}, data.normalize(x),
                                  train=False), -1)

  test_images, test_labels = test_set
  hits = sum(int((np.asarray(predict(test_images[i:i + 500])) == test_labels[i:i + 500]).sum())
             for i in range(0, len(test_images), 500))
  result = {"test_accuracy": hits / len(test_images), "train_accuracy": correct / steps,
            "seconds": round(time.perf_counter() - start, 1),
            "params": parameter_count(num_classes, tuple(images.shape[1:]))}
  trained = {"params": params, "batch_stats": stats}
  if out is not None:
    out.mkdir(parents=True, exist_ok=True)
    train.write_atomic(out / "resnet8.msgpack", flax.serialization.to_bytes(trained))
    train.write_atomic(out / "result.json", json.dumps(result).encode())
  return {**result, "variables": trained}
