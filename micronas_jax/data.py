"""Images for the proxies and for training: CIFAR-10 python batches, an .npz, or an image folder.

Nothing is downloaded. `load_images` returns float32 `[N, 32, 32, 3]` (NHWC), normalized with the
CIFAR-10 channel mean and standard deviation that TE-NAS and NAS-Bench-201 use. `load_split`
returns a split's raw images and labels for training, which normalizes after augmentation.

An image folder (a directory, or a .zip of one) holds `<split>/<class>/<image>` files, split
`train` or `test`, as torchvision's `ImageFolder` reads them: class folders sorted by name give
labels 0..K-1, and images come class by class, in file-name order within a class. Images of any
size and mode are converted to RGB (`Image.convert("RGB")`, as `ImageFolder` does: alpha is
dropped; 16-bit gray is scaled to 8 bits first) and resized to 32x32 with Pillow's bilinear
filter (`Image.resize`, antialiased when it shrinks; the aspect ratio is not kept, nothing is
cropped). Large JPEGs are first decoded at a reduced scale (Pillow's `draft`, never below 32x32),
which is much faster and close to a full decode. Reading CIFAR-10's 50,000 training JPEGs from a
zip takes about 12 s on a 2-core CPU; `max_images` decodes only a class-balanced subset.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import io
import os
import pathlib
import pickle
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator

import numpy as np
from PIL import Image

from micronas_jax.network import NB201_CIFAR10, NetworkConfig

CIFAR10_MEAN = np.array([0.4914, 0.4822, 0.4465], np.float32)
CIFAR10_STD = np.array([0.2470, 0.2435, 0.2616], np.float32)
CIFAR10_BATCHES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5")
CIFAR10_TEST_BATCH = "test_batch"
SPLITS = ("train", "test")
# Array names of each split in an .npz, first choice first.
NPZ_NAMES = {"train": (("images", "labels"), ("x_train", "y_train")),
             "test": (("test_images", "test_labels"), ("x_test", "y_test"))}
# Files an image folder reads (lower-case suffixes, torchvision's list plus .gif); other files
# (README.txt, Thumbs.db, ...) are skipped, and so are names starting with "." (.DS_Store,
# ._x.jpg) and macOS's __MACOSX folder in zips.
IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".pgm", ".png", ".ppm", ".tif", ".tiff",
                    ".webp")
# The Pillow plugins for those suffixes (JPEG also opens camera MPO files); no other decoder is
# tried (EPS, say, would run Ghostscript).
IMAGE_FORMATS = ("BMP", "GIF", "JPEG", "PNG", "PPM", "TIFF", "WEBP")
IMAGE_SIZE = (32, 32)
# NB201's input: what every reader gives when no task says otherwise (height, width, channels).
DEFAULT_SHAPE = (*IMAGE_SIZE, 3)
# Pillow modes of one channel (with or without alpha): a task is grayscale when all its images
# have one of them. Palette images ("P") count as colour.
GRAY_MODES = ("1", "L", "LA", "La", "I", "F", "I;16", "I;16B", "I;16L", "I;16N")
# ITU-R 601-2 luma, the weights of Pillow's convert("L"): RGB arrays become gray with them, and
# the gray normalization is CIFAR-10's mean and standard deviation through them.
LUMA = np.array([0.299, 0.587, 0.114], np.float32)
CIFAR10_GRAY_MEAN = np.array([float(LUMA @ CIFAR10_MEAN)], np.float32)
CIFAR10_GRAY_STD = np.array([float(LUMA @ CIFAR10_STD)], np.float32)
# A classifier needs two classes; a network of 3 stages halves its input twice.
MIN_CLASSES = 2
RESOLUTION_MULTIPLE = 4
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                   "truck")
# What Pillow (and zipfile) raise on a corrupt file; Pillow has no common base class for them.
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, IndexError, struct.error,
                  zlib.error, zipfile.BadZipFile, NotImplementedError, RuntimeError,
                  Image.DecompressionBombError)


# Images the training-free indicators draw their batches from (a class-balanced subset of the
# training split): a draw needs at most a few thousand (LR: 3 x 1000 crops; NTK: one batch;
# zero-cost: 2 x 64), and decoding all 50,000 JPEGs of CIFAR-10 takes about 12 s on 2 cores.
INDICATOR_IMAGES = 10_000


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
  """The path as given, if it exists and is a directory, an .npz or a .zip file."""
  source = pathlib.Path(path)
  if not source.exists():
    raise DataError(f"{source}: no such file or directory")
  if not source.is_dir() and source.suffix != ".npz" and source.suffix.lower() != ".zip":
    raise DataError(f"{source}: expected a CIFAR-10 python directory, an .npz file, or an image "
                    "folder (a directory or .zip of <split>/<class>/<image>)")
  return source


def _is_cifar_directory(source: pathlib.Path) -> bool:
  """Whether a directory holds CIFAR-10 python batches (any of them: a missing one is then
  reported by name) rather than an image folder."""
  return any((source / name).exists() for name in (*CIFAR10_BATCHES, CIFAR10_TEST_BATCH))


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


def _open_npz(path: pathlib.Path):
  """The arrays of an .npz; never unpickles (numpy's own message would suggest allow_pickle)."""
  try:
    arrays = np.load(path, allow_pickle=False)
  except OSError as error:
    raise DataError(f"{path}: not a readable .npz ({error.strerror or error})") from None
  except ValueError:
    raise DataError(f"{path}: not a readable .npz (not a zip archive of .npy arrays)") from None
  if not hasattr(arrays, "files"):
    raise DataError(f"{path}: a single .npy array, not an .npz archive of named arrays")
  return arrays


def _checked_pixels(path, name: str, images: np.ndarray) -> np.ndarray:
  """uint8 images as they are; float images as float32 in 0-1: those in 0-255 (a maximum above
  1) are scaled by 1/255; NaN or infinite values, or values outside 0-255, are refused."""
  if images.dtype == np.uint8:
    return images
  if not (np.issubdtype(images.dtype, np.floating) or np.issubdtype(images.dtype, np.integer)):
    raise DataError(f"{path}: '{name}' has dtype {images.dtype}, expected uint8 or float pixels")
  images = images.astype(np.float32)
  if not np.isfinite(images).all():
    raise DataError(f"{path}: '{name}' holds NaN or infinite pixel values")
  low, high = float(images.min(initial=0.0)), float(images.max(initial=0.0))
  if low < 0 or high > 255:
    raise DataError(f"{path}: '{name}' has pixel values in [{low:g}, {high:g}]; expected 0-1 "
                    "or 0-255")
  return images / 255.0 if high > 1.0 else images


def _npz_image_name(path: pathlib.Path, arrays) -> str:
  """The name of an .npz's training images, as every command finds them: the train split's
  image names of NPZ_NAMES ('images', 'x_train'), then 'x', then its only array."""
  known = [x for x, _ in NPZ_NAMES["train"]] + ["x"]
  names = [name for name in known if name in arrays.files] or list(arrays.files)
  if len(names) != 1 and not set(known) & set(arrays.files):
    raise DataError(f"{path}: holds arrays {arrays.files}; name the images "
                    f"{' or '.join(repr(name) for name in known)}")
  return names[0]


def _read_npz(path: pathlib.Path) -> np.ndarray:
  """The training images `[N, H, W, C]` of an .npz (`_npz_image_name`), checked."""
  arrays = _open_npz(path)
  name = _npz_image_name(path, arrays)
  return _check_images(path, name, arrays[name])


def _with_channels(path, name: str, images: np.ndarray) -> np.ndarray:
  """`[N, H, W, C]` of images given as `[N, H, W]` (gray) or `[N, H, W, C]`, C 1 or 3."""
  if images.ndim == 3:
    images = images[..., None]
  if images.ndim != 4 or images.shape[3] not in (1, 3) or 0 in images.shape[1:3]:
    raise DataError(f"{path}: '{name}' has shape {images.shape}, expected [N, H, W, 3] (colour), "
                    "[N, H, W, 1] or [N, H, W] (gray)")
  return images


def _check_images(path, name: str, images: np.ndarray) -> np.ndarray:
  images = _with_channels(path, name, images)
  if images.shape[0] == 0:
    raise DataError(f"{path}: '{name}' holds no images")
  return _checked_pixels(path, name, images)


def _in_shape(images: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
  """Images `[N, H, W, C]` (uint8, or float32 0-1) as `[N, *shape]` of the same dtype, by the
  image folder's rule: colour to gray by LUMA, gray to colour by repeating the channel, then
  Pillow's bilinear resize of each channel to the height and width (aspect ratio not kept)."""
  height, width, channels = shape
  if images.shape[3] != channels:
    if channels == 1:
      gray = images.astype(np.float32) @ LUMA
      images = (gray.round().astype(np.uint8) if images.dtype == np.uint8 else gray)[..., None]
    else:
      images = np.repeat(images, channels, axis=3)
  if images.shape[1:3] == (height, width):
    return images
  resized = np.empty((len(images), height, width, channels), np.float32)
  for index, image in enumerate(images.astype(np.float32)):
    for channel in range(channels):
      plane = Image.fromarray(image[..., channel], mode="F")
      resized[index, ..., channel] = np.asarray(
          plane.resize((width, height), Image.Resampling.BILINEAR))
  if images.dtype == np.uint8:
    return np.clip(resized.round(), 0, 255).astype(np.uint8)
  return np.clip(resized, 0.0, 1.0)


def _check_labels(path, name: str, labels: np.ndarray, count: int) -> np.ndarray:
  if labels.shape != (count,) or not np.issubdtype(labels.dtype, np.integer):
    raise DataError(f"{path}: '{name}' must be {count} integer labels, got {labels.dtype} "
                    f"{labels.shape}")
  if labels.min() < 0:
    raise DataError(f"{path}: '{name}' holds negative labels")
  return labels.astype(np.int32)


def balanced_subset(labels: np.ndarray, max_images: int | None) -> np.ndarray:
  """Sorted indices `[min(max_images, N)]` of a deterministic, class-balanced subset of `labels:
  [N]` (all N indices when `max_images` is None or at least N).

  Each class (by increasing label) gives `max_images // K` images, the remainder going one each to
  the first classes; a class with fewer gives all it has and the others share its shortfall.
  Within a class the picks are evenly spread over its images in their order (positions
  `i * n // q` for `i < q` of `n`), not its first ones.
  """
  labels = np.asarray(labels)
  if max_images is None or max_images >= len(labels):
    return np.arange(len(labels))
  if max_images < 1:
    raise ValueError(f"max_images must be at least 1, got {max_images}")
  classes, sizes = np.unique(labels, return_counts=True)
  quotas = np.zeros(len(classes), np.int64)
  while quotas.sum() < max_images:  # each round fills the quota or closes a class
    open_ = np.flatnonzero(quotas < sizes)
    share, extra = divmod(max_images - int(quotas.sum()), len(open_))
    wanted = quotas[open_] + share + (np.arange(len(open_)) < extra)
    quotas[open_] = np.minimum(sizes[open_], wanted)
  chosen = [np.flatnonzero(labels == label)[(np.arange(quota) * size) // quota]
            for label, size, quota in zip(classes, sizes, quotas)]
  return np.sort(np.concatenate(chosen))


def _one_line(error: BaseException) -> str:
  text = str(error).strip()
  return text.splitlines()[0] if text else type(error).__name__


def _skipped(part: str) -> bool:
  return part.startswith(".") or part == "__MACOSX"


@dataclasses.dataclass
class _Tree:
  """The folders and files of a directory or a zip, by relative path (a tuple of names).

  `folders[parent]`: names of the folders in `parent`; `files[parent]`: names of its files.
  Hidden names and __MACOSX are left out; `read(parts)` gives a file's bytes.
  """
  folders: dict[tuple[str, ...], set[str]]
  files: dict[tuple[str, ...], list[str]]
  read: Callable[[tuple[str, ...]], bytes]

  @classmethod
  def of_paths(cls, paths, read) -> _Tree:
    """From `(parts, is_folder)` pairs; every parent of a path is a folder."""
    folders, files = {}, {}
    for parts, is_folder in paths:
      if not parts or any(_skipped(part) for part in parts):
        continue
      for depth in range(len(parts) if is_folder else len(parts) - 1):
        folders.setdefault(parts[:depth], set()).add(parts[depth])
      if not is_folder:
        files.setdefault(parts[:-1], []).append(parts[-1])
    return cls(folders, files, read)


@contextlib.contextmanager
def _open_tree(source: pathlib.Path) -> Iterator[_Tree]:
  """The tree of an image-folder directory (four levels deep at most: enough for an optional
  wrapping folder, split, class and image) or of a zip, open while the context lasts."""
  if source.is_dir():
    paths = []
    for folder, subfolders, names in os.walk(source, followlinks=True):
      parts = pathlib.Path(folder).relative_to(source).parts
      subfolders[:] = [] if len(parts) >= 4 else [name for name in subfolders if not _skipped(name)]
      paths += [(parts + (name,), True) for name in subfolders]
      paths += [(parts + (name,), False) for name in names]
    yield _Tree.of_paths(paths, lambda parts: source.joinpath(*parts).read_bytes())
    return
  try:
    archive = zipfile.ZipFile(source)
  except (zipfile.BadZipFile, OSError) as error:
    raise DataError(f"{source}: not a zip file ({_one_line(error)})") from None
  with archive:
    entries = {tuple(part for part in info.filename.split("/") if part not in ("", ".")): info
               for info in archive.infolist()}
    paths = [(parts, info.is_dir()) for parts, info in entries.items()]
    yield _Tree.of_paths(paths, lambda parts: archive.read(entries[parts]))


def _split_folders(source: pathlib.Path, tree: _Tree) -> dict[str, tuple[str, ...]]:
  """{split: path of its folder} of an image folder.

  With `train/` or `test/` at the top, those are the splits (other top-level folders are not
  read). Without, the top-level folders are the classes of a lone train split. A top level whose
  only folder holds `train/` or `test/` (what `zip -r data.zip data/` makes) is looked through.
  """
  top = tree.folders.get((), set())
  if not top & set(SPLITS) and len(top) == 1:
    (only,) = top
    if tree.folders.get((only,), set()) & set(SPLITS):
      return {split: (only, split) for split in SPLITS if split in tree.folders[(only,)]}
  if top & set(SPLITS):
    return {split: (split,) for split in SPLITS if split in top}
  if top:
    return {"train": ()}
  if source.is_dir():
    missing = ", ".join(CIFAR10_BATCHES)
    raise DataError(f"{source}: not a CIFAR-10 python directory (missing {missing}) nor an "
                    "image folder (no <split>/<class>/<image> folders)")
  raise DataError(f"{source}: no class folders (expected <split>/<class>/<image>)")


def _where(folder: tuple[str, ...]) -> str:
  return "/".join(folder) + "/" if folder else "the top level"


def _class_files(source: pathlib.Path, tree: _Tree,
                 folder: tuple[str, ...]) -> tuple[list[str], list[list[str]]]:
  """Sorted class names under `folder` and, for each, its image names in sorted order."""
  classes = sorted(tree.folders.get(folder, ()))
  if not classes:
    raise DataError(f"{source}: {_where(folder)} holds no class folders")
  images = []
  for name in classes:
    path = folder + (name,)
    if tree.folders.get(path):
      inner = sorted(tree.folders[path])[0]
      raise DataError(f"{source}: class folder {_where(path)} holds a folder ({inner}/); "
                      "expected <split>/<class>/<image>")
    names = sorted(file for file in tree.files.get(path, ())
                   if os.path.splitext(file)[1].lower() in IMAGE_EXTENSIONS)
    if not names:
      raise DataError(f"{source}: class folder {_where(path)} holds no images "
                      f"({', '.join(IMAGE_EXTENSIONS)})")
    images.append(names)
  return classes, images


@functools.cache
def _image_formats() -> tuple[str, ...]:
  """IMAGE_FORMATS that this Pillow has (WEBP needs libwebp); Pillow refuses unknown ones."""
  Image.init()
  return tuple(name for name in IMAGE_FORMATS if name in Image.OPEN)


def _decode(source: pathlib.Path, name: str, data: bytes,
            shape: tuple[int, int, int] = DEFAULT_SHAPE) -> np.ndarray:
  """Pixels `shape` (height, width, 1 or 3 channels) uint8 of one encoded image: in RGB or gray
  (Pillow's convert), resized when its size differs."""
  height, width, channels = shape
  mode = "L" if channels == 1 else "RGB"
  try:
    with Image.open(io.BytesIO(data), formats=_image_formats()) as image:
      if min(image.size) >= 2 * max(height, width):
        image.draft(mode, (width, height))  # JPEG only: decode at a reduced scale >= the size
      if image.mode.startswith("I;16"):  # 16-bit gray: convert() would clip at 255, not scale
        image = Image.fromarray((np.asarray(image, np.float32) / 257).round().astype(np.uint8))
      if image.mode != mode:
        image = image.convert(mode)
      if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.BILINEAR)
      return np.asarray(image, np.uint8).reshape(shape)
  except _DECODE_ERRORS as error:
    raise DataError(f"{source}: {name}: not a readable image ({_one_line(error)})") from None


def _read_image_folder(source: pathlib.Path, split: str, max_images: int | None,
                       shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray] | None:
  """Images `[N, *shape]` uint8 and labels `[N]` of a split of an image folder (class by class,
  `balanced_subset` of them under `max_images`); None when it has no such split."""
  with _open_tree(source) as tree:
    splits = _split_folders(source, tree)
    if split not in splits:
      return None
    classes, names = _class_files(source, tree, splits[split])
    for other, folder in splits.items():
      other_classes = sorted(tree.folders.get(folder, ()))
      if other != split and other_classes and other_classes != classes:
        only = sorted(set(classes) ^ set(other_classes))
        raise DataError(f"{source}: {_where(splits[split])} and {_where(folder)} have different "
                        f"class folders (not in both: {', '.join(only[:5])})")
    labels = np.concatenate([np.full(len(files), label, np.int32)
                             for label, files in enumerate(names)])
    paths = [splits[split] + (name, file) for name, files in zip(classes, names) for file in files]
    chosen = balanced_subset(labels, max_images)
    images = np.empty((len(chosen), *shape), np.uint8)
    for row, index in enumerate(chosen):
      name = "/".join(paths[index])
      try:
        data = tree.read(paths[index])
      except _DECODE_ERRORS as error:
        raise DataError(f"{source}: {name}: cannot be read ({_one_line(error)})") from None
      images[row] = _decode(source, name, data, shape)
    return images, labels[chosen]


def load_split(path: str | os.PathLike, split: str = "train", required: bool = True,
               max_images: int | None = None, shape: tuple[int, int, int] = DEFAULT_SHAPE
               ) -> tuple[np.ndarray, np.ndarray] | None:
  """Raw images `[N, *shape]` (uint8 0-255, or float32 0-1) and int32 labels `[N]` of a split;
  `shape` (height, width, 1 or 3 channels) is a network's input (`Task.input_shape`; default
  NB201's 32x32 RGB).

  A CIFAR-10 python directory (one holding any of `data_batch_1..5`, `test_batch`) gives
  `data_batch_1..5` (train) or `test_batch` (test). An .npz gives `images` + `labels` or
  `x_train` + `y_train` (train), and `test_images` + `test_labels` or `x_test` + `y_test` (test),
  images `[N, H, W, 3]`, `[N, H, W, 1]` or `[N, H, W]`. Any other directory, or a .zip, is an
  image folder (see the module docstring): `<split>/` of `train/` and `test/`, or, when the top
  level holds class folders directly, those as the train split (it then has no test split).
  Where the split is absent and `required` is False, returns None. `max_images` keeps a
  `balanced_subset` (an image folder then decodes only those). Images of another size or
  channel count are converted by the image folder's rule. Images are not normalized (see
  `normalize`): augmentation pads with black first.
  """
  if split not in SPLITS:
    raise ValueError(f"Unknown split {split!r}; known: {', '.join(SPLITS)}")
  source = _data_source(path)
  if source.is_dir() and _is_cifar_directory(source):
    images, labels = _read_cifar_directory(
        source, CIFAR10_BATCHES if split == "train" else (CIFAR10_TEST_BATCH,))
    images = _check_images(source, "data", images)
    labels = _check_labels(source, "labels", labels, len(images))
  elif source.is_dir() or source.suffix.lower() == ".zip":
    found = _read_image_folder(source, split, max_images, shape)
    if found is None:
      if not required:
        return None
      raise DataError(f"{source}: no {split} split (no {split}/ folder of class folders)")
    return found
  else:
    arrays = _open_npz(source)
    present = set(arrays.files)
    pair = next(((x, y) for x, y in NPZ_NAMES[split] if {x, y} <= present), None)
    if pair is None:
      if not required:
        return None
      wanted = " or ".join(f"{x} + {y}" for x, y in NPZ_NAMES[split])
      raise DataError(f"{source}: no {split} split (needs arrays {wanted}; holds "
                      f"{sorted(present)})")
    images = _check_images(source, pair[0], arrays[pair[0]])
    labels = _check_labels(source, pair[1], arrays[pair[1]], len(images))
  chosen = balanced_subset(labels, max_images)
  if len(chosen) != len(labels):
    images, labels = images[chosen], labels[chosen]
  return _in_shape(images, shape), labels


def normalize(images):
  """Float32 images normalized by the CIFAR-10 mean/std, from uint8 (0-255) or float (0-1; the
  readers scale float images given in 0-255); gray images (one channel) by CIFAR-10's statistics
  through LUMA.

  Works on NumPy and JAX arrays `[..., 3]` or `[..., 1]` alike.
  """
  scale = 255.0 if images.dtype == np.uint8 else 1.0
  gray = images.shape[-1] == 1
  mean, std = (CIFAR10_GRAY_MEAN, CIFAR10_GRAY_STD) if gray else (CIFAR10_MEAN, CIFAR10_STD)
  return (images.astype(np.float32) / scale - mean) / std


def load_images(path: str | os.PathLike, max_images: int | None = None,
                shape: tuple[int, int, int] = DEFAULT_SHAPE) -> np.ndarray:
  """Normalized float32 images `[N, *shape]` (a network's input, default NB201's 32x32 RGB)
  from a CIFAR-10 python directory, an .npz, or an image folder.

  A CIFAR-10 python directory must hold the training batches `data_batch_1..5` (as extracted
  from cifar-10-python.tar.gz); an .npz holds uint8 (0-255) or float (0-1) images
  `[N, H, W, 3]`, `[N, H, W, 1]` or `[N, H, W]` under the name 'images' (or its only array); an
  image folder (a directory or .zip, see the module docstring) gives its train split, `train/`
  or, without split folders, its top-level class folders; one with only `test/` is refused (no
  train split), not read instead. `max_images` (default: all) keeps `min(max_images, N)`
  images: a `balanced_subset` by label for an image folder and a CIFAR-10 directory, evenly
  spread positions for an .npz. No labels are read from an .npz: the indicators need none.
  """
  source = _data_source(path)
  if source.is_dir() and _is_cifar_directory(source):
    images, labels = _read_cifar_directory(source, CIFAR10_BATCHES)
  elif source.is_dir() or source.suffix.lower() == ".zip":
    images, labels = load_split(source, "train", max_images=max_images, shape=shape)
  else:
    images = _read_npz(source)
    labels = np.zeros(len(images), np.int32)  # no labels read: one class, evenly spread picks
  if max_images is not None and len(images) > max_images:
    images = images[balanced_subset(labels, max_images)]
  if images.shape[0] == 0:
    raise DataError(f"{source}: holds no images")
  return normalize(_in_shape(images, shape))


def fingerprint(*arrays: np.ndarray) -> str:
  """Short SHA-256 of the arrays' bytes in order (images; or images and labels), recorded in a
  score configuration or a training run."""
  digest = hashlib.sha256()
  for array in arrays:
    digest.update(np.ascontiguousarray(array).tobytes())
  return digest.hexdigest()[:16]

# The largest input a default task takes: MCUNet's largest (224, ImageNet on a 2 MB-SRAM MCU).
# Bigger images are resized down to it unless a resolution is asked for.
MAX_DEFAULT_RESOLUTION = 224


@dataclasses.dataclass(frozen=True)
class Task:
  """A classification task as its data defines it: classes, input channels and resolution.

  Attributes:
    classes: class names in label order (an image folder's sorted class folders; "0".."K-1"
      from an .npz's labels; empty for an .npz without labels, whose classes are unknown).
    in_channels: 1 when every image is gray (Pillow modes GRAY_MODES), else 3.
    resolution: the network's square input side; every image is resized to it (`_in_shape`).
    train_images, test_images: images in each split (0 for a split that is absent).
    sizes: the (width, height) of the smallest and of the largest image, by area.
    source: the data path.
  """
  classes: tuple[str, ...]
  in_channels: int
  resolution: int
  train_images: int
  test_images: int = 0
  sizes: tuple[tuple[int, int], tuple[int, int]] = ((32, 32), (32, 32))
  source: str = ""

  @property
  def num_classes(self) -> int | None:
    return len(self.classes) or None

  @property
  def input_shape(self) -> tuple[int, int, int]:
    return (self.resolution, self.resolution, self.in_channels)

  @property
  def resized(self) -> bool:
    """Whether any image is not stored at the network's input size."""
    return any(size != (self.resolution, self.resolution) for size in self.sizes)

  def network(self, skeleton: NetworkConfig = NB201_CIFAR10) -> NetworkConfig:
    """`skeleton` (its width, depth, stages) with this task's input and classes; the skeleton's
    classes are kept when the task's are unknown."""
    return dataclasses.replace(skeleton, resolution=self.resolution, in_channels=self.in_channels,
                               num_classes=self.num_classes or skeleton.num_classes)

  def to_dict(self) -> dict:
    """JSON-ready fields (`from_dict` reads them back)."""
    fields = dataclasses.asdict(self)
    fields["classes"], fields["sizes"] = list(self.classes), [list(s) for s in self.sizes]
    return fields

  @classmethod
  def from_dict(cls, fields: dict) -> Task:
    """The task of `to_dict`'s fields."""
    return cls(**{**fields, "classes": tuple(fields["classes"]),
                  "sizes": tuple(tuple(size) for size in fields["sizes"])})

  def describe(self) -> str:
    """One line a person reads: classes, images, channels and input size."""
    shown = ", ".join(self.classes[:4]) + (", ..." if len(self.classes) > 4 else "")
    classes = f"{len(self.classes)} classes ({shown})" if self.classes else "classes unknown"
    (small_w, small_h), (large_w, large_h) = self.sizes
    stored = (f"{small_w}x{small_h}" if self.sizes[0] == self.sizes[1]
              else f"{small_w}x{small_h} to {large_w}x{large_h}")
    how = "resized from " + stored if self.resized else "as stored"
    return (f"{classes}; {self.train_images:,} train + {self.test_images:,} test images; "
            f"{'gray' if self.in_channels == 1 else 'RGB'} {self.resolution}x{self.resolution} "
            f"({how})")


def default_resolution(shorter_sides: np.ndarray) -> int:
  """The input side of a task whose images have these shorter sides `[N]`: their (lower)
  median, rounded down to a multiple of RESOLUTION_MULTIPLE and at most MAX_DEFAULT_RESOLUTION."""
  median = int(np.sort(np.asarray(shorter_sides))[(len(shorter_sides) - 1) // 2])
  return min(median - median % RESOLUTION_MULTIPLE, MAX_DEFAULT_RESOLUTION)


def _checked_resolution(source, resolution: int | None, shorter_sides: np.ndarray) -> int:
  if resolution is None:
    resolution = default_resolution(shorter_sides)
    if resolution < RESOLUTION_MULTIPLE:
      raise DataError(f"{source}: images of {int(np.median(shorter_sides))} px are too small "
                      f"(a network of 3 stages needs at least {RESOLUTION_MULTIPLE} px)")
    return resolution
  if resolution < RESOLUTION_MULTIPLE or resolution % RESOLUTION_MULTIPLE:
    raise DataError(f"resolution must be a positive multiple of {RESOLUTION_MULTIPLE} (a network "
                    f"of 3 stages halves its input twice), got {resolution}")
  return resolution


def _checked_classes(source, classes) -> tuple[str, ...]:
  if len(classes) < MIN_CLASSES:
    shown = f" ({classes[0]})" if classes else ""
    raise DataError(f"{source}: {len(classes)} class{shown}; a classifier needs at least "
                    f"{MIN_CLASSES}")
  return tuple(classes)


def _header(source: pathlib.Path, name: str, data: bytes) -> tuple[str, tuple[int, int]]:
  """(Pillow mode, (width, height)) of one encoded image, read from its header only."""
  try:
    with Image.open(io.BytesIO(data), formats=_image_formats()) as image:
      return image.mode, image.size
  except _DECODE_ERRORS as error:
    raise DataError(f"{source}: {name}: not a readable image ({_one_line(error)})") from None


def _folder_task(source: pathlib.Path) -> tuple[tuple[str, ...], dict[str, int], list, list]:
  """(classes, {split: images}, modes, sizes) of every image of an image folder."""
  with _open_tree(source) as tree:
    splits = _split_folders(source, tree)
    if "train" not in splits:
      raise DataError(f"{source}: no train split (no train/ folder of class folders)")
    classes, counts, modes, sizes = None, {}, [], []
    for split, folder in splits.items():
      names, files = _class_files(source, tree, folder)
      if classes is not None and names != classes:
        only = sorted(set(classes) ^ set(names))
        raise DataError(f"{source}: the splits have different class folders (not in both: "
                        f"{', '.join(only[:5])})")
      classes, counts[split] = names, sum(map(len, files))
      for name, images in zip(names, files):
        for file in images:
          path = folder + (name, file)
          shown = "/".join(path)
          try:
            encoded = tree.read(path)
          except _DECODE_ERRORS as error:
            raise DataError(f"{source}: {shown}: cannot be read ({_one_line(error)})") from None
          mode, size = _header(source, shown, encoded)
          modes.append(mode)
          sizes.append(size)
  return tuple(classes), counts, modes, sizes


def _array_task(source: pathlib.Path) -> tuple[tuple[str, ...], dict[str, int], list, list]:
  """(classes, {split: images}, modes, sizes) of a CIFAR-10 directory or an .npz."""
  if source.is_dir():
    meta = source / "batches.meta"
    classes = CIFAR10_CLASSES
    if meta.exists():
      with (contextlib.suppress(OSError, pickle.UnpicklingError, KeyError, EOFError,
                                UnicodeDecodeError, AttributeError),
            open(meta, "rb") as f):
        classes = tuple(name.decode() for name in pickle.load(f, encoding="bytes")
                        [b"label_names"])
    counts = {"train": 0, "test": 0}
    for split, names in (("train", CIFAR10_BATCHES), ("test", (CIFAR10_TEST_BATCH,))):
      if all((source / name).exists() for name in names):
        counts[split] = len(_read_cifar_directory(source, names)[1])
    if not counts["train"]:
      _read_cifar_directory(source, CIFAR10_BATCHES)  # names the missing batches
    return classes, counts, ["RGB"], [(32, 32)]
  arrays = _open_npz(source)
  name = _npz_image_name(source, arrays)
  images = _with_channels(source, name, arrays[name])
  counts, labels = {"train": len(images), "test": 0}, None
  pair = next(((x, y) for x, y in NPZ_NAMES["train"] if {x, y} <= set(arrays.files)), None)
  if pair is not None and pair[0] == name:
    labels = _check_labels(source, pair[1], arrays[pair[1]], len(images))
  test = next(((x, y) for x, y in NPZ_NAMES["test"] if {x, y} <= set(arrays.files)), None)
  if test is not None:
    counts["test"] = len(arrays[test[0]])
  if labels is None:
    classes = ()
  else:
    if len(np.unique(labels)) < MIN_CLASSES:
      _checked_classes(source, [str(int(labels[0]))] if len(labels) else [])
    classes = tuple(str(label) for label in range(int(labels.max()) + 1))
  mode = "L" if images.shape[3] == 1 else "RGB"
  return classes, counts, [mode], [(images.shape[2], images.shape[1])]


def infer_task(path: str | os.PathLike, resolution: int | None = None,
               in_channels: int | None = None) -> Task:
  """The task of a data set (see `load_split` for the layouts): its classes, input channels and
  resolution.

  The rule, the same for every layout: the classes are an image folder's class folders (at
  least MIN_CLASSES), or an .npz's labels 0..max; the task is gray (1 channel) when every image
  is (`GRAY_MODES`), else RGB; the resolution is `resolution` when given (a multiple of
  RESOLUTION_MULTIPLE), else `default_resolution` of the images' shorter sides. Every image is
  then resized to that square (bilinear, aspect ratio not kept, nothing cropped). An image
  folder's headers are read for every image (about 3 s for CIFAR-10's 60,000 JPEGs in a zip on
  a 2-core CPU), so an unreadable file is named before any work starts. `in_channels` (1 or 3)
  overrides the channels.
  """
  if in_channels not in (None, 1, 3):
    raise DataError(f"in_channels must be 1 (gray) or 3 (RGB), got {in_channels}")
  source = _data_source(path)
  folder = not (source.is_dir() and _is_cifar_directory(source)) and source.suffix != ".npz"
  classes, counts, modes, sizes = (_folder_task if folder else _array_task)(source)
  if classes or folder:
    classes = _checked_classes(source, classes)
  areas = [width * height for width, height in sizes]
  gray = all(mode in GRAY_MODES for mode in modes)
  return Task(classes=classes, in_channels=in_channels or (1 if gray else 3),
              resolution=_checked_resolution(source, resolution,
                                             np.array([min(size) for size in sizes])),
              train_images=counts.get("train", 0), test_images=counts.get("test", 0),
              sizes=(sizes[int(np.argmin(areas))], sizes[int(np.argmax(areas))]),
              source=str(path))
