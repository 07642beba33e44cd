"""Images for the proxies: CIFAR-10 python batches or an .npz, read from a path the user gives.

Nothing is downloaded. Images come back as float32 `[N, 32, 32, 3]` (NHWC), normalized with the
CIFAR-10 channel mean and standard deviation that TE-NAS uses.
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


class DataError(ValueError):
  """A data path that is missing or does not hold images in a known layout."""


def _read_cifar_batch(path: pathlib.Path) -> np.ndarray:
  try:
    with open(path, "rb") as f:
      batch = pickle.load(f, encoding="bytes")
    pixels = np.asarray(batch[b"data"], np.uint8)
  except (OSError, pickle.UnpicklingError, KeyError, TypeError, EOFError) as error:
    raise DataError(f"{path}: not a CIFAR-10 python batch ({error})") from None
  if pixels.ndim != 2 or pixels.shape[1] != 3 * 32 * 32:
    raise DataError(f"{path}: 'data' has shape {pixels.shape}, expected [N, 3072]")
  return pixels.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


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


def load_images(path: str | os.PathLike) -> np.ndarray:
  """Normalized float32 images `[N, 32, 32, 3]` from a CIFAR-10 python directory or an .npz.

  A directory must hold the training batches `data_batch_1..5` of the CIFAR-10 python version
  (as extracted from cifar-10-python.tar.gz); an .npz holds uint8 (0-255) or float (0-1) images
  `[N, 32, 32, 3]` under the name 'images' (or its only array).
  """
  source = pathlib.Path(path)
  if not source.exists():
    raise DataError(f"{source}: no such file or directory")
  if source.is_dir():
    missing = [name for name in CIFAR10_BATCHES if not (source / name).exists()]
    if missing:
      raise DataError(f"{source}: not a CIFAR-10 python directory (missing {', '.join(missing)})")
    images = np.concatenate([_read_cifar_batch(source / name) for name in CIFAR10_BATCHES])
  elif source.suffix == ".npz":
    images = _read_npz(source)
  else:
    raise DataError(f"{source}: expected a CIFAR-10 python directory or an .npz file")
  if images.shape[0] == 0:
    raise DataError(f"{source}: holds no images")
  scaled = images.astype(np.float32) / (255.0 if images.dtype == np.uint8 else 1.0)
  return (scaled - CIFAR10_MEAN) / CIFAR10_STD


def fingerprint(images: np.ndarray) -> str:
  """Short SHA-256 of the image array, recorded in a score configuration."""
  return hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()[:16]
