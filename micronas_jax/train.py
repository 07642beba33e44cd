"""Training a found cell: the full NB201 network with NAS-Bench-201's recipe, resumable.

The recipe (NB201's `200E.config`): SGD with Nesterov momentum 0.9, learning rate 0.1 decayed to 0
by a per-step cosine, weight decay 5e-4 on every parameter (coupled, as PyTorch's SGD adds it to
the gradient), batch 256, 200 epochs, random 32x32 crops of the 4-pixel zero-padded image and
random horizontal flips, cross-entropy loss. Every number is a field of `TrainConfig`.

Randomness is a function of (seed, epoch, step) only: the weights come from `init_key(seed)`, each
epoch's shuffle from `epoch_key(seed, epoch)`, each step's augmentation from that key folded with
the step. A run resumed from the checkpoint of epoch k therefore replays exactly the batches and
crops an uninterrupted run would see, and ends with the same parameters (same seed, platform).

Checkpoints: one msgpack file, `checkpoint.msgpack` in the run directory, rewritten after every
epoch by writing a temporary file in the same directory, fsync-ing it, `os.replace`-ing it over
the old one and fsync-ing the directory. A kill at any moment leaves either the old or the new
complete file, never a torn one. We chose this over orbax because the state is a few MB, one file
is easy to check and copy, and orbax's asynchronous directory protocol would add a dependency and
more moving parts than the guarantee needs.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import os
import pathlib
import time
from typing import Any, Callable, NamedTuple

import chex
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax

from micronas_jax import __version__, data, model, paths, space
from micronas_jax.errors import Param, ParamError

CHECKPOINT_NAME = "checkpoint.msgpack"
RESULT_NAME = "result.json"
# What a run folder holds: what train writes there and what export and deploy read.
RUN_FILES = (CHECKPOINT_NAME, RESULT_NAME)
FORMAT = "micronas-jax-checkpoint/1"
# Fields of the checkpoint metadata that must match for a run to resume from it.
RESUME_KEYS = ("arch", "network", "training", "data")


class TrainError(ParamError):
  """Bad training input: a checkpoint of another run, labels out of range, too little data."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """How to train (defaults: NAS-Bench-201's 200-epoch CIFAR-10 recipe).

  Attributes:
    epochs: passes over the training set; the cosine schedule spans all of them.
    batch_size: images per step. The last incomplete batch of an epoch is dropped (one compiled
      step shape); with 50,000 images and 256 that is 195 steps instead of NB201's 196.
    learning_rate: peak learning rate, decayed by a cosine to 0 over epochs * steps_per_epoch.
    momentum: SGD momentum.
    nesterov: Nesterov momentum (PyTorch's formulation, as optax's).
    weight_decay: L2 coefficient added to every parameter's gradient (BN scales included).
    augment: random crop of the zero-padded image and horizontal flip.
    crop_padding: pixels of zero padding on each side before the random crop.
    seed: seed of the initial weights, the shuffles and the augmentation.
  """
  epochs: int = 200
  batch_size: int = 256
  learning_rate: float = 0.1
  momentum: float = 0.9
  nesterov: bool = True
  weight_decay: float = 5e-4
  augment: bool = True
  crop_padding: int = 4
  seed: int = 0

  def __post_init__(self):
    for name in ("epochs", "batch_size"):
      if getattr(self, name) < 1:
        raise ParamError(Param(name), f" must be positive, got {getattr(self, name)}")
    for name in ("learning_rate", "momentum", "weight_decay", "crop_padding"):
      value = getattr(self, name)
      if not math.isfinite(value) or value < 0:  # NaN passes `< 0`: it would train to NaN
        raise ParamError(Param(name), f" must be a non-negative number, got {value}")
    if not self.momentum < 1:  # momentum >= 1 grows the velocity without bound
      raise ParamError(Param("momentum"), f" must lie in [0, 1), got {self.momentum}")
    if not 0 <= self.seed < 2**32:
      raise ParamError(Param("seed"), f" must lie in [0, 2**32), got {self.seed}")


class TrainState(NamedTuple):
  """Everything a step changes: `params`, `batch_stats` (BN running statistics), `opt_state`."""
  params: Any
  batch_stats: Any
  opt_state: Any


# --- randomness: a pure function of (seed, epoch, step) ----------------------------------------


def init_key(seed: int) -> jax.Array:
  """Key of the initial weights."""
  return jax.random.fold_in(jax.random.PRNGKey(seed), 0)


def epoch_key(seed: int, epoch: int) -> jax.Array:
  """Key of epoch `epoch`'s shuffle and augmentation (independent of every other epoch)."""
  return jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), 1), epoch)


def epoch_batches(seed: int, epoch: int, num_examples: int, batch_size: int) -> np.ndarray:
  """Example indices of each step of an epoch, `[steps, batch_size]` (incomplete batch dropped)."""
  steps = num_examples // batch_size
  order = jax.random.permutation(jax.random.fold_in(epoch_key(seed, epoch), 0), num_examples)
  return np.asarray(order[:steps * batch_size]).reshape(steps, batch_size)


# --- the pure pieces of a step -----------------------------------------------------------------


def augment(key: jax.Array, images: jax.Array, padding: int) -> jax.Array:
  """Random crop of the zero-padded image and random horizontal flip, per image.

  `images: [B, H, W, C]` (raw pixels, so the padding is black as in torchvision) -> same shape.
  """
  batch, height, width, _ = images.shape
  crop_key, flip_key = jax.random.split(key)
  padded = jnp.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
  offsets = jax.random.randint(crop_key, (batch, 2), 0, 2 * padding + 1)
  crop = lambda image, offset: jax.lax.dynamic_slice(
      image, (offset[0], offset[1], 0), (height, width, image.shape[-1]))
  cropped = jax.vmap(crop)(padded, offsets)
  flip = jax.random.bernoulli(flip_key, 0.5, (batch,))
  return jnp.where(flip[:, None, None, None], cropped[:, :, ::-1], cropped)


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Mean softmax cross-entropy of `logits: [B, K]` against integer `labels: [B]`."""
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def optimizer(config: TrainConfig, steps_per_epoch: int) -> optax.GradientTransformation:
  """SGD(lr_t, momentum, nesterov) on g + weight_decay * w, lr_t = cosine(lr, epochs * steps)."""
  schedule = optax.cosine_decay_schedule(config.learning_rate, config.epochs * steps_per_epoch)
  return optax.chain(optax.add_decayed_weights(config.weight_decay),
                     optax.sgd(schedule, momentum=config.momentum or None,
                               nesterov=config.nesterov and config.momentum > 0))


def init_state(net_config: model.NetworkConfig, config: TrainConfig,
               steps_per_epoch: int) -> TrainState:
  """Fresh weights from `init_key(config.seed)` and a fresh optimizer state."""
  # Jitted: eager flax init runs op by op and takes seconds even for a tiny network.
  variables = jax.jit(model.init, static_argnums=1)(init_key(config.seed), net_config)
  params = variables["params"]
  return TrainState(params, variables["batch_stats"],
                    optimizer(config, steps_per_epoch).init(params))


@functools.lru_cache(maxsize=8)
def make_train_step(net_config: model.NetworkConfig, config: TrainConfig, steps_per_epoch: int,
                    ops: tuple[int, ...]):
  """The jitted step of cell `ops` (6 ints): `(state, images [N,H,W,3], labels [N], batch [B],
  key)` -> `(state, loss, accuracy)`; images stay on the device, the batch is gathered inside.

  The cell is a compile-time constant here, unlike in scoring: XLA then drops the other ops'
  branches, and on a CPU a C=8, N=2, batch-64 step ran 9x faster (0.38 s vs 3.5 s) and compiled
  twice as fast as with the cell as data. Cached, so a resumed run in one process reuses it.
  """
  tx = optimizer(config, steps_per_epoch)
  arch = np.asarray(ops, np.int32)

  def step(state: TrainState, images, labels, batch, key):
    x, y = images[batch], labels[batch]
    if config.augment:
      x = augment(key, x, config.crop_padding)
    x = data.normalize(x)

    def loss_fn(params):
      variables = {"params": params, "batch_stats": state.batch_stats}
      logits, batch_stats = model.apply(variables, arch, x, net_config, train=True)
      return cross_entropy(logits, y), (logits, batch_stats)

    (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    accuracy = jnp.mean(jnp.argmax(logits, -1) == y)
    return TrainState(params, batch_stats, opt_state), loss, accuracy

  return jax.jit(step, donate_argnums=0)


def evaluate(variables: model.Variables, arch, images: np.ndarray, labels: np.ndarray,
             net_config: model.NetworkConfig, batch_size: int = 500) -> tuple[float, float]:
  """Mean loss and accuracy (fraction) over raw `images: [N, H, W, 3]`, `labels: [N]`, with BN
  in inference mode. The last batch is padded and masked, so one compilation serves all."""
  batch_size = min(batch_size, len(images))
  sums = _eval_sums(net_config, tuple(int(op) for op in space.validate_ops(arch)))
  total_loss = total_correct = 0.0
  for start in range(0, len(images), batch_size):
    x, y = images[start:start + batch_size], labels[start:start + batch_size]
    count = len(x)
    pad = batch_size - count
    mask = np.concatenate([np.ones(count, np.float32), np.zeros(pad, np.float32)])
    if pad:
      x = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)])
      y = np.concatenate([y, np.zeros(pad, y.dtype)])
    loss, correct = sums(variables, x, y, mask)
    total_loss += float(loss)
    total_correct += float(correct)
  return total_loss / len(images), total_correct / len(images)


@functools.lru_cache(maxsize=8)
def _eval_sums(net_config: model.NetworkConfig, ops: tuple[int, ...]):
  arch = np.asarray(ops, np.int32)  # a constant, as in make_train_step

  @jax.jit
  def sums(variables, x, y, mask):
    logits, _ = model.apply(variables, arch, data.normalize(x), net_config, train=False)
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, y)
    return jnp.sum(losses * mask), jnp.sum((jnp.argmax(logits, -1) == y) * mask)
  return sums


# --- checkpoints -------------------------------------------------------------------------------


def write_atomic(path: str | os.PathLike, payload: bytes) -> None:
  """Writes `payload` to `path` so that a crash leaves the old file or the new one, never half."""
  paths.replace_atomically(path, lambda tmp: tmp.write_bytes(payload))


def checkpoint_path(path: str | os.PathLike) -> pathlib.Path:
  """The checkpoint file of a run directory (or the file itself when given one)."""
  path = pathlib.Path(path)
  return path / CHECKPOINT_NAME if path.is_dir() or not path.suffix else path


def run_metadata(ops, net_config: model.NetworkConfig, config: TrainConfig,
                 data_fingerprint: str) -> dict:
  """What a checkpoint records about its run; RESUME_KEYS must match to resume."""
  return {"format": FORMAT, "arch": space.format_arch(ops), "index": space.index_of(ops),
          "network": dataclasses.asdict(net_config), "training": dataclasses.asdict(config),
          "data": data_fingerprint, "micronas_jax_version": __version__}


def save_checkpoint(path: str | os.PathLike, state: TrainState, epoch: int, meta: dict,
                    history: list[dict]) -> None:
  """Atomically writes the state after `epoch` completed epochs, the metadata and history."""
  payload = {"meta": json.dumps(meta, sort_keys=True), "epoch": epoch,
             "history": json.dumps(history), "state": flax.serialization.to_state_dict(
                 jax.device_get(state._asdict()))}
  write_atomic(path, flax.serialization.msgpack_serialize(payload))


def read_checkpoint(path: str | os.PathLike) -> dict:
  """The raw checkpoint: {"meta": dict, "epoch": int, "history": list, "state": nested dict}."""
  path = checkpoint_path(path)
  try:
    raw = flax.serialization.msgpack_restore(path.read_bytes())
    checkpoint = {"meta": json.loads(raw["meta"]), "epoch": int(raw["epoch"]),
                  "history": json.loads(raw["history"]), "state": raw["state"]}
  except FileNotFoundError:
    raise TrainError(f"{path}: no such checkpoint") from None
  except (OSError, ValueError, KeyError, TypeError) as error:
    raise TrainError(f"{path}: not a micronas-jax checkpoint ({type(error).__name__})") from None
  if not isinstance(checkpoint["meta"], dict) or checkpoint["meta"].get("format") != FORMAT:
    raise TrainError(f"{path}: not a micronas-jax checkpoint")
  broken = non_finite_leaves(checkpoint["state"])
  if broken:
    raise TrainError(f"{path}: holds NaN or infinite values in {len(broken)} arrays "
                     f"({', '.join(broken[:3])}{', ...' if len(broken) > 3 else ''}); the run "
                     "diverged or the file is damaged: train again from an earlier checkpoint "
                     "or with a lower --lr")
  return checkpoint


def non_finite_leaves(tree) -> list[str]:
  """The '/'-joined paths of the float arrays of a nested dict that hold a NaN or an inf."""
  broken = []
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    array = np.asarray(leaf)
    if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
      broken.append("/".join(str(getattr(key, "key", key)) for key in path))
  return broken


def check_same_run(path, stored: dict, wanted: dict, keys=RESUME_KEYS) -> None:
  """Raises TrainError naming every field where a checkpoint's run differs from the one asked."""
  differing = []
  for key in keys:
    old, new = stored.get(key), wanted.get(key)
    if isinstance(old, dict) and isinstance(new, dict):
      differing += [f"{key}.{k}: checkpoint {old.get(k)!r} vs now {new.get(k)!r}"
                    for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    elif old != new:
      differing.append(f"{key}: checkpoint {old!r} vs now {new!r}")
  if differing:
    raise TrainError(f"{path} is from another run ({'; '.join(differing)}); use another run "
                     "directory or the same settings")


def open_run(out_dir: str | os.PathLike, meta: dict) -> dict | None:
  """The checkpoint in a run directory (None if there is none yet); TrainError if it belongs to
  a run other than `meta` (see `run_metadata`)."""
  folder = pathlib.Path(out_dir)
  if not str(out_dir).strip():
    raise TrainError("empty run directory path")
  if folder.exists() and not folder.is_dir():
    raise TrainError(f"{folder}: is a file, not a run directory")
  nearest = next(p for p in (folder, *folder.resolve().parents) if p.exists())
  if not os.access(nearest, os.W_OK):
    raise TrainError(f"{folder}: not writable ({nearest})")
  path = folder / CHECKPOINT_NAME
  if not path.exists():
    return None
  checkpoint = read_checkpoint(path)
  check_same_run(path, checkpoint["meta"], meta)
  return checkpoint


def restore_state(checkpoint: dict, target: TrainState) -> TrainState:
  """The checkpoint's state in the structure (and dtypes) of `target`."""
  restored = flax.serialization.from_state_dict(target._asdict(), checkpoint["state"])
  return TrainState(**jax.tree_util.tree_map(jnp.asarray, restored))


fingerprint = data.fingerprint  # of (images, labels): one hash function for the package


# --- the driver --------------------------------------------------------------------------------


@dataclasses.dataclass
class TrainResult:
  """What `train` returns: final state, per-epoch history, test metrics (None without a test set).

  `resumed_from` is the number of epochs the checkpoint held when this call started.
  """
  state: TrainState
  history: list[dict]
  test_loss: float | None
  test_accuracy: float | None
  resumed_from: int
  epochs_done: int
  test_images: int | None = None


def train(ops, train_set: tuple[np.ndarray, np.ndarray],
          test_set: tuple[np.ndarray, np.ndarray] | None, out_dir: str | os.PathLike,
          net_config: model.NetworkConfig = model.NB201_CIFAR10,
          config: TrainConfig = TrainConfig(), stop_after: int | None = None,
          progress: bool = False, log: Callable[[str], None] = lambda message: None
          ) -> TrainResult:
  """Trains the network of cell `ops: [6]` on raw `train_set = (images [N,H,W,3], labels [N])`.

  Resumes from `out_dir/checkpoint.msgpack` when it exists (refusing one of another run) and
  checkpoints after every epoch. `stop_after` ends this call after that many epochs in total
  (the schedule still spans `config.epochs`); the test set is evaluated once all are done.
  """
  ops = space.validate_ops(ops)
  images, labels = train_set
  chex.assert_shape(images, (None, *net_config.input_shape))
  if labels.max() >= net_config.num_classes:
    raise TrainError(f"labels reach {int(labels.max())}, but the network has "
                     f"{net_config.num_classes} classes")
  steps = steps_per_epoch(len(images), config)
  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  with run_lock(out_dir):
    return _train_locked(ops, train_set, test_set, out_dir, net_config, config, stop_after,
                         progress, log, steps)


def steps_per_epoch(num_images: int, config: TrainConfig) -> int:
  """Whole batches in an epoch; TrainError when the batch exceeds the training set."""
  if num_images < config.batch_size:
    raise TrainError(Param("batch_size"), f" {config.batch_size} exceeds the {num_images} training "
                     "images")
  return num_images // config.batch_size


@contextlib.contextmanager
def run_lock(out_dir: pathlib.Path):
  """Holds the run folder for one training process: a second one gets one line, not two
  writers of one checkpoint."""
  try:
    with paths.exclusive(out_dir):
      yield
  except paths.Busy:
    raise TrainError(f"{out_dir}: another process is training into this run directory; wait "
                     "for it or use another --out") from None


def _train_locked(ops, train_set, test_set, out_dir: pathlib.Path, net_config, config,
                  stop_after, progress, log, steps: int) -> TrainResult:
  images, labels = train_set
  ckpt = out_dir / CHECKPOINT_NAME
  meta = run_metadata(ops, net_config, config, fingerprint(*train_set))

  state = init_state(net_config, config, steps)
  start, history = 0, []
  checkpoint = open_run(out_dir, meta)
  if checkpoint is not None:
    state = restore_state(checkpoint, state)
    start, history = checkpoint["epoch"], checkpoint["history"]
    log(f"{ckpt} holds all {start} epochs; evaluating it" if start >= config.epochs else
        f"resuming from {ckpt} after epoch {start} of {config.epochs}")
  last = config.epochs if stop_after is None else min(stop_after, config.epochs)

  device_images, device_labels = jnp.asarray(images), jnp.asarray(labels)
  step_fn = make_train_step(net_config, config, steps, tuple(int(op) for op in ops))
  for epoch in range(start, last):
    began = time.perf_counter()
    batches = epoch_batches(config.seed, epoch, len(images), config.batch_size)
    key = epoch_key(config.seed, epoch)
    loss_sum = correct_sum = 0.0
    bar = _progress(steps, f"epoch {epoch + 1}/{config.epochs}", progress)
    for step, batch in enumerate(batches):
      state, loss, accuracy = step_fn(state, device_images, device_labels, batch,
                                      jax.random.fold_in(key, step + 1))
      loss_sum += float(loss)
      correct_sum += float(accuracy)
      if bar is not None:
        bar.update(1)
        bar.set_postfix(loss=f"{loss_sum / (step + 1):.4f}",
                        acc=f"{100 * correct_sum / (step + 1):.2f}%")
    if bar is not None:
      bar.close()
    if not (math.isfinite(loss_sum) and all(jnp.isfinite(leaf).all()
                                            for leaf in jax.tree_util.tree_leaves(state.params))):
      # A diverged epoch is not saved: the checkpoint on disk stays the last good one.
      raise TrainError(f"training diverged in epoch {epoch + 1} (loss {loss_sum / steps:g}, "
                       f"non-finite weights or loss); {ckpt} keeps epoch {epoch}: lower ",
                       Param("learning_rate"))
    history.append({"epoch": epoch + 1, "train_loss": loss_sum / steps,
                    "train_accuracy": correct_sum / steps,
                    "seconds": round(time.perf_counter() - began, 3)})
    save_checkpoint(ckpt, state, epoch + 1, meta, history)

  test_loss = test_accuracy = None
  if last == config.epochs and test_set is not None:
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    test_loss, test_accuracy = evaluate(variables, ops, *test_set, net_config)
    result = {**meta, "epochs_done": last, "test_loss": test_loss,
              "test_accuracy": test_accuracy, "history": history}
    write_atomic(out_dir / RESULT_NAME, (json.dumps(result, indent=2) + "\n").encode())
  return TrainResult(state, history, test_loss, test_accuracy, start, max(start, last),
                     None if test_set is None else len(test_set[0]))


def train_from_path(ops, data_path: str, out_dir: str | os.PathLike,
                    net_config: model.NetworkConfig = model.NB201_CIFAR10,
                    config: TrainConfig = TrainConfig(), stop_after: int | None = None,
                    progress: bool = False, log: Callable[[str], None] = lambda message: None,
                    task: data.Task | None = None) -> TrainResult:
  """`train` on the train and (optional) test split of the images at `data_path` (any format
  `data.load_split` reads), in the network of the data's task (`data.infer_task`, or `task`):
  `net_config`'s skeleton with the task's input and classes (`data.Task.network`). A bad data set or
  a run directory of another run raises TrainError before anything is written."""
  try:
    task = task or data.infer_task(data_path)
    net_config = task.network(net_config)
    train_set = data.load_split(data_path, "train", shape=task.input_shape)
    test_set = data.load_split(data_path, "test", required=False, shape=task.input_shape)
  except data.DataError as error:
    raise TrainError(error) from None
  open_run(out_dir, run_metadata(ops, net_config, config, fingerprint(*train_set)))
  steps_per_epoch(len(train_set[0]), config)
  log(f"task: {task.describe()}")
  log(f"training {space.format_arch(ops)} (C={net_config.channels}, "
      f"N={net_config.cells_per_stage}) on {len(train_set[0])} images, {config.epochs} epochs of "
      f"{len(train_set[0]) // config.batch_size} steps, on {jax.default_backend()}; compiling "
      "the step first")
  if test_set is None:
    log(f"{data_path}: no test split; test accuracy will not be measured")
  return train(ops, train_set, test_set, out_dir, net_config, config, stop_after, progress, log)


def _progress(total: int, description: str, enabled: bool):
  if not enabled:
    return None
  from tqdm import tqdm
  return tqdm(total=total, desc=description, unit="step", dynamic_ncols=True, leave=True)
