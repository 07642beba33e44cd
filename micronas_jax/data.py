"""Images for the proxies and for training: CIFAR-10 python batches or an .npz the user gives.

Nothing is downloaded. `load_images` returns float32 `[N, 32, 32, 3]` (NHWC), normalized with the
CIFAR-10 channel mean and standard deviation that TE-NAS and NAS-Bench-201 use. `load_split`
returns a split's raw images and labels for training, which normalizes after augmentation.
"""
from __future__ import annotations

import hashlib
import os
import pathlib
import pickle

import numpy as np

CIFAR10_MEAN = np.array([0.4914, 0.4822, 0.4465], np.float32)
CIFAR10_STD = np.array([0.2470, 0.2435, 0.2616], np.float32)
CIFAR10_BATCHES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5")
CIFAR10_TEST_BATCH = "test_batch"
SPLITS = ("train", "test")
# Array names of each split in an .npz, first choice first.
NPZ_NAMES = {"train": (("images", "labels"), ("x_train", "y_train")),
             "test": (("test_images", "test_labels"), ("x_test", "y_test"))}


class DataError(ValueError):
  """A data path that is missing or does not hold images in a known layout."""


def _read_cifar_batch(path: pathlib.Path) -> tuple[np.ndarray, np.ndarray]:
  try:
    with open(path, "rb") as f:
      batch = pickle.load(f, encoding="bytes")
    pixels = np.asarray(batch[b"data"], np.uint8)
    labels = np.asarray(batch[b"labels"], np.int64)
  except (OSError, pickle.UnpicklingError, KeyError, TypeError, ValueError, EOFError) as error:
    raise DataError(f"{path}: not a CIFAR-10 python batch ({error})") from None
  if pixels.ndim != 2 or pixels.shape[1] != 3 * 32 * 32:
    raise DataError(f"{path}: 'data' has shape {pixels.shape}, expected [N, 3072]")
  if labels.shape != (pixels.shape[0],):
    raise DataError(f"{path}: 'labels' has shape {labels.shape}, expected [{pixels.shape[0]}]")
  return pixels.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def _data_source(path: str | os.PathLike) -> pathlib.Path:
  """The path as given, if it exists and is a directory or an .npz file."""
  source = pathlib.Path(path)
  if not source.exists():
    raise DataError(f"{source}: no such file or directory")
  if not source.is_dir() and source.suffix != ".npz":
    raise DataError(f"{source}: expected a CIFAR-10 python directory or an .npz file")
  return source


def _read_cifar_directory(source: pathlib.Path,
                          names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
  """Images `[N, 32, 32, 3]` uint8 and labels `[N]` of the named batches of a CIFAR-10 python
  directory, concatenated in the order given."""
  missing = [name for name in names if not (source / name).exists()]
  if missing:
    raise DataError(f"{source}: not a CIFAR-10 python directory (missing {', '.join(missing)})")
  parts = [_read_cifar_batch(source / name) for name in names]
  return (np.concatenate([images for images, _ in parts]),
          np.concatenate([labels for _, labels in parts]))


def _read_npz(path: pathlib.Path) -> np.ndarray:
  try:
    arrays = np.load(path)
  except (OSError, ValueError) as error:
    raise DataError(f"{path}: not a readable .npz ({error})") from None
  names = [name for name in ("images", "x") if name in arrays] or list(arrays.files)
  if len(names) != 1 and not {"images", "x"} & set(arrays.files):
    raise DataError(f"{path}: holds arrays {arrays.files}; name the images 'images'")
  images = arrays[names[0]]
  if images.ndim != 4 or images.shape[1:] != (32, 32, 3):
    raise DataError(f"{path}: '{names[0]}' has shape {images.shape}, expected [N, 32, 32, 3]")
  return images


def _check_images(path, name: str, images: np.ndarray) -> np.ndarray:
  if images.ndim != 4 or images.shape[1:] != (32, 32, 3):
    raise DataError(f"{path}: '{name}' has shape {images.shape}, expected [N, 32, 32, 3]")
  if images.shape[0] == 0:
    raise DataError(f"{path}: '{name}' holds no images")
  return images if images.dtype == np.uint8 else images.astype(np.float32)


def _check_labels(path, name: str, labels: np.ndarray, count: int) -> np.ndarray:
  if labels.shape != (count,) or not np.issubdtype(labels.dtype, np.integer):
    raise DataError(f"{path}: '{name}' must be {count} integer labels, got {labels.dtype} "
                    f"{labels.shape}")
  if labels.min() < 0:
    raise DataError(f"{path}: '{name}' holds negative labels")
  return labels.astype(np.int32)


def load_split(path: str | os.PathLike, split: str = "train",
               required: bool = True) -> tuple[np.ndarray, np.ndarray] | None:
  """Raw images `[N, 32, 32, 3]` (uint8 0-255, or float32 0-1) and int32 labels `[N]` of a split.

  A CIFAR-10 python directory gives `data_batch_1..5` (train) or `test_batch` (test). An .npz
  gives `images` + `labels` or `x_train` + `y_train` (train), and `test_images` + `test_labels`
  or `x_test` + `y_test` (test). Where an .npz lacks the split and `required` is False, returns
  None. Images are not normalized (see `normalize`): augmentation pads with black first.
  """
  if split not in SPLITS:
    raise ValueError(f"Unknown split {split!r}; known: {', '.join(SPLITS)}")
  source = _data_source(path)
  if source.is_dir():
    images, labels = _read_cifar_directory(
        source, CIFAR10_BATCHES if split == "train" else (CIFAR10_TEST_BATCH,))
    return _check_images(source, "data", images), _check_labels(source, "labels", labels,
                                                                 len(images))
  try:
    arrays = np.load(source)
    present = set(arrays.files)
  except (OSError, ValueError) as error:
    raise DataError(f"{source}: not a readable .npz ({error})") from None
  pair = next(((x, y) for x, y in NPZ_NAMES[split] if {x, y} <= present), None)
  if pair is None:
    if not required:
      return None
    wanted = " or ".join(f"{x} + {y}" for x, y in NPZ_NAMES[split])
    raise DataError(f"{source}: no {split} split (needs arrays {wanted}; holds {sorted(present)})")
  images = _check_images(source, pair[0], arrays[pair[0]])
  return images, _check_labels(source, pair[1], arrays[pair[1]], len(images))


def normalize(images):
  """Float32 images normalized by the CIFAR-10 mean/std, from uint8 (0-255) or float (0-1).

  Works on NumPy and JAX arrays `[..., 3]` alike.
  """
  scale = 255.0 if images.dtype == np.uint8 else 1.0
  return (images.astype(np.float32) / scale - CIFAR10_MEAN) / CIFAR10_STD


def load_images(path: str | os.PathLike) -> np.ndarray:
  """Normalized float32 images `[N, 32, 32, 3]` from a CIFAR-10 python directory or an .npz.

  A directory must hold the training batches `data_batch_1..5` of the CIFAR-10 python version
  (as extracted from cifar-10-python.tar.gz); an .npz holds uint8 (0-255) or float (0-1) images
  `[N, 32, 32, 3]` under the name 'images' (or its only array).
  """
  source = _data_source(path)
  if source.is_dir():
    images, _ = _read_cifar_directory(source, CIFAR10_BATCHES)
  else:
    images = _read_npz(source)
  if images.shape[0] == 0:
    raise DataError(f"{source}: holds no images")
  return normalize(images)


def fingerprint(images: np.ndarray) -> str:
  """Short SHA-256 of the image array, recorded in a score configuration."""
  return hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()[:16]
