"""Training the found cell: learning, exact resumption, atomic checkpoints, bad input.

One tiny setting throughout (C=2, N=1, 32 images of two separable classes, batch 8: 4 steps per
epoch), the same one the CLI tests use, so the jitted step compiles once per session.
"""
import pickle

import jax
import numpy as np
import pytest

from micronas_jax import data, model, space, train

CELL = space.arch_at(1462)  # all nor_conv_3x3
NET = model.NetworkConfig(channels=2, cells_per_stage=1)
CONFIG = train.TrainConfig(epochs=3, batch_size=8, learning_rate=0.05)


def separable(count: int = 32, seed: int = 0):
  """Dark images are class 0, bright ones class 1 (plus noise): uint8 [count,32,32,3], [count]."""
  rng = np.random.default_rng(seed)
  labels = np.arange(count, dtype=np.int32) % 2
  base = np.where(labels == 1, 180, 50).astype(np.int32)[:, None, None, None]
  images = base + rng.integers(-40, 40, (count, 32, 32, 3))
  return images.clip(0, 255).astype(np.uint8), labels


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
  out = tmp_path_factory.mktemp("full")
  return out, train.train(CELL, separable(), separable(16, seed=1), out, NET, CONFIG)


def test_training_lowers_loss_and_raises_accuracy(full_run):
  _, result = full_run
  first, last = result.history[0], result.history[-1]
  assert last["train_loss"] < first["train_loss"]
  assert last["train_accuracy"] > first["train_accuracy"]
  assert result.test_accuracy is not None and 0.0 <= result.test_accuracy <= 1.0


def test_resume_equals_uninterrupted_run(full_run, tmp_path):
  _, uninterrupted = full_run
  part = train.train(CELL, separable(), None, tmp_path, NET, CONFIG, stop_after=1)
  assert part.epochs_done == 1 and part.test_accuracy is None
  resumed = train.train(CELL, separable(), separable(16, seed=1), tmp_path, NET, CONFIG)
  assert resumed.resumed_from == 1 and resumed.epochs_done == 3
  jax.tree_util.tree_map(np.testing.assert_array_equal, resumed.state.params,
                         uninterrupted.state.params)
  jax.tree_util.tree_map(np.testing.assert_array_equal, resumed.state.batch_stats,
                         uninterrupted.state.batch_stats)
  assert resumed.test_accuracy == uninterrupted.test_accuracy


def test_checkpoint_records_arch_and_configs(full_run):
  out, _ = full_run
  checkpoint = train.read_checkpoint(out)
  assert checkpoint["epoch"] == 3 and len(checkpoint["history"]) == 3
  meta = checkpoint["meta"]
  assert meta["arch"] == space.format_arch(CELL) and meta["index"] == 1462
  assert meta["network"]["channels"] == 2 and meta["training"]["learning_rate"] == 0.05


@pytest.mark.parametrize("ops, net, config, field", [
    (space.arch_at(0), NET, CONFIG, "arch"),
    (CELL, model.NetworkConfig(channels=4, cells_per_stage=1), CONFIG, "network.channels"),
    (CELL, NET, train.TrainConfig(epochs=3, batch_size=8, learning_rate=0.1),
     "training.learning_rate"),
])
def test_checkpoint_of_another_run_is_refused(full_run, ops, net, config, field):
  out, _ = full_run
  with pytest.raises(train.TrainError, match=f"another run.*{field}: checkpoint"):
    train.train(ops, separable(), None, out, net, config)


def test_failed_save_keeps_last_good_checkpoint(full_run, tmp_path, monkeypatch):
  out, result = full_run
  path = tmp_path / train.CHECKPOINT_NAME
  path.write_bytes((out / train.CHECKPOINT_NAME).read_bytes())

  def crash(*args):
    raise OSError("killed during save")

  monkeypatch.setattr(train.os, "replace", crash)
  with pytest.raises(OSError):
    train.save_checkpoint(path, result.state, 99, {"format": "x"}, [])
  assert train.read_checkpoint(path)["epoch"] == 3


def test_augment_crops_padded_image_and_flips():
  image = np.arange(4 * 4 * 3, dtype=np.float32).reshape(1, 4, 4, 3)
  # Without padding a crop is the image itself, so each result is the image or its mirror.
  out = np.asarray(train.augment(jax.random.PRNGKey(0), np.repeat(image, 16, 0), 0))
  flipped = np.array([np.array_equal(o, image[0, :, ::-1]) for o in out])
  same = np.array([np.array_equal(o, image[0]) for o in out])
  assert (flipped | same).all() and flipped.any() and same.any()
  # With padding 1 a crop is a shifted window: every pixel is an image pixel or black.
  padded = np.asarray(train.augment(jax.random.PRNGKey(1), np.repeat(image, 16, 0), 1))
  assert padded.shape == (16, 4, 4, 3)
  assert set(np.unique(padded)) <= set(np.unique(image)) | {0.0}


def test_epoch_batches_depend_only_on_seed_and_epoch():
  a = train.epoch_batches(0, 5, 100, 32)
  assert a.shape == (3, 32) and len(np.unique(a)) == 96  # 100 // 32 = 3 steps, no repeats
  np.testing.assert_array_equal(a, train.epoch_batches(0, 5, 100, 32))
  assert not np.array_equal(a, train.epoch_batches(0, 6, 100, 32))


def test_labels_beyond_the_classes_are_refused(tmp_path):
  images, labels = separable(8)
  with pytest.raises(train.TrainError, match="labels reach 12"):
    train.train(CELL, (images, labels + 11), None, tmp_path, NET, CONFIG)


def test_load_split_reads_cifar_python_batches(tmp_path):
  rng = np.random.default_rng(0)
  for name in (*data.CIFAR10_BATCHES, data.CIFAR10_TEST_BATCH):
    batch = {b"data": rng.integers(0, 256, (2, 3072), dtype=np.uint8), b"labels": [3, 7]}
    (tmp_path / name).write_bytes(pickle.dumps(batch))
  images, labels = data.load_split(tmp_path, "train")
  assert images.shape == (10, 32, 32, 3) and images.dtype == np.uint8
  assert labels.tolist() == [3, 7] * 5
  test_images, _ = data.load_split(tmp_path, "test")
  # CIFAR rows are channel-major: pixel (0, 1) of the red plane is byte 1.
  raw = pickle.loads((tmp_path / data.CIFAR10_TEST_BATCH).read_bytes())[b"data"]
  assert test_images[0, 0, 1, 0] == raw[0, 1] and test_images[0, 0, 0, 2] == raw[0, 2048]


def test_load_split_of_npz_without_test_split(tmp_path):
  images, labels = separable(4)
  np.savez(tmp_path / "d.npz", images=images, labels=labels)
  assert data.load_split(tmp_path / "d.npz", "test", required=False) is None
  with pytest.raises(data.DataError, match="no test split"):
    data.load_split(tmp_path / "d.npz", "test")


def test_normalize_maps_uint8_and_unit_floats_alike():
  pixels = np.array([[[[0, 128, 255]]]], np.uint8)
  np.testing.assert_allclose(data.normalize(pixels), data.normalize(pixels / 255.0), atol=1e-6)
  np.testing.assert_allclose(data.normalize(pixels)[0, 0, 0, 0], -0.4914 / 0.2470, rtol=1e-6)
