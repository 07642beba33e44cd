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


def _read_npz(path: pathlib.Path) -> np.ndarray:
  """The training images of an .npz, found by the names every command uses: the train split's
  image names of NPZ_NAMES ('images', 'x_train'), then 'x', then its only array."""
  arrays = _open_npz(path)
  known = [x for x, _ in NPZ_NAMES["train"]] + ["x"]
  names = [name for name in known if name in arrays.files] or list(arrays.files)
  if len(names) != 1 and not set(known) & set(arrays.files):
    raise DataError(f"{path}: holds arrays {arrays.files}; name the images "
                    f"{' or '.join(repr(name) for name in known)}")
  images = arrays[names[0]]
  if images.ndim != 4 or images.shape[1:] != (32, 32, 3):
    raise DataError(f"{path}: '{names[0]}' has shape {images.shape}, expected [N, 32, 32, 3]")
  return _checked_pixels(path, names[0], images)


def _check_images(path, name: str, images: np.ndarray) -> np.ndarray:
  if images.ndim != 4 or images.shape[1:] != (32, 32, 3):
    raise DataError(f"{path}: '{name}' has shape {images.shape}, expected [N, 32, 32, 3]")
  if images.shape[0] == 0:
    raise DataError(f"{path}: '{name}' holds no images")
  return _checked_pixels(path, name, images)


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
  def of_paths(cls, paths, read) -> "_Tree":
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


def _decode(source: pathlib.Path, name: str, data: bytes) -> np.ndarray:
  """Pixels `[32, 32, 3]` uint8 of one encoded image, in RGB, resized when it is not 32x32."""
  try:
    with Image.open(io.BytesIO(data), formats=_image_formats()) as image:
      if min(image.size) >= 2 * IMAGE_SIZE[0]:
        image.draft("RGB", IMAGE_SIZE)  # JPEG only: decode at a reduced scale >= 32x32
      if image.mode.startswith("I;16"):  # 16-bit gray: convert() would clip at 255, not scale
        image = Image.fromarray((np.asarray(image, np.float32) / 257).round().astype(np.uint8))
      if image.mode != "RGB":
        image = image.convert("RGB")
      if image.size != IMAGE_SIZE:
        image = image.resize(IMAGE_SIZE, Image.Resampling.BILINEAR)
      return np.asarray(image, np.uint8)
  except _DECODE_ERRORS as error:
    raise DataError(f"{source}: {name}: not a readable image ({_one_line(error)})") from None


def _read_image_folder(source: pathlib.Path, split: str,
                       max_images: int | None) -> tuple[np.ndarray, np.ndarray] | None:
  """Images `[N, 32, 32, 3]` uint8 and labels `[N]` of a split of an image folder (class by
  class, `balanced_subset` of them under `max_images`); None when it has no such split."""
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
    images = np.empty((len(chosen), *IMAGE_SIZE, 3), np.uint8)
    for row, index in enumerate(chosen):
      name = "/".join(paths[index])
      try:
        data = tree.read(paths[index])
      except _DECODE_ERRORS as error:
        raise DataError(f"{source}: {name}: cannot be read ({_one_line(error)})") from None
      images[row] = _decode(source, name, data)
    return images, labels[chosen]


def load_split(path: str | os.PathLike, split: str = "train", required: bool = True,
               max_images: int | None = None) -> tuple[np.ndarray, np.ndarray] | None:
  """Raw images `[N, 32, 32, 3]` (uint8 0-255, or float32 0-1) and int32 labels `[N]` of a split.

  A CIFAR-10 python directory (one holding any of `data_batch_1..5`, `test_batch`) gives
  `data_batch_1..5` (train) or `test_batch` (test). An .npz gives `images` + `labels` or
  `x_train` + `y_train` (train), and `test_images` + `test_labels` or `x_test` + `y_test` (test).
  Any other directory, or a .zip, is an image folder (see the module docstring): `<split>/` of
  `train/` and `test/`, or, when the top level holds class folders directly, those as the train
  split (it then has no test split). Where the split is absent and `required` is False, returns
  None. `max_images` keeps a `balanced_subset` (an image folder then decodes only those). Images
  are not normalized (see `normalize`): augmentation pads with black first.
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
    found = _read_image_folder(source, split, max_images)
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
  return (images, labels) if len(chosen) == len(labels) else (images[chosen], labels[chosen])


def normalize(images):
  """Float32 images normalized by the CIFAR-10 mean/std, from uint8 (0-255) or float (0-1; the
  readers scale float images given in 0-255).

  Works on NumPy and JAX arrays `[..., 3]` alike.
  """
  scale = 255.0 if images.dtype == np.uint8 else 1.0
  return (images.astype(np.float32) / scale - CIFAR10_MEAN) / CIFAR10_STD


def load_images(path: str | os.PathLike, max_images: int | None = None) -> np.ndarray:
  """Normalized float32 images `[N, 32, 32, 3]` from a CIFAR-10 python directory, an .npz, or
  an image folder.

  A CIFAR-10 python directory must hold the training batches `data_batch_1..5` (as extracted
  from cifar-10-python.tar.gz); an .npz holds uint8 (0-255) or float (0-1) images
  `[N, 32, 32, 3]` under the name 'images' (or its only array); an image folder (a directory or
  .zip, see the module docstring) gives its train split, `train/` or, without split folders, its
  top-level class folders; one with only `test/` is refused (no train split), not read instead.
  `max_images` (default: all) keeps `min(max_images, N)` images: a `balanced_subset` by label for
  an image folder and a CIFAR-10 directory, evenly spread positions for an .npz.
  """
  source = _data_source(path)
  if source.is_dir() and _is_cifar_directory(source):
    images, labels = _read_cifar_directory(source, CIFAR10_BATCHES)
  elif source.is_dir() or source.suffix.lower() == ".zip":
    images, labels = load_split(source, "train", max_images=max_images)
  else:
    images = _read_npz(source)
    labels = np.zeros(len(images), np.int32)  # no labels read: one class, evenly spread picks
  if max_images is not None and len(images) > max_images:
    images = images[balanced_subset(labels, max_images)]
  if images.shape[0] == 0:
    raise DataError(f"{source}: holds no images")
  return normalize(images)


def fingerprint(*arrays: np.ndarray) -> str:
  """Short SHA-256 of the arrays' bytes in order (images; or images and labels), recorded in a
  score configuration or a training run."""
  digest = hashlib.sha256()
  for array in arrays:
    digest.update(np.ascontiguousarray(array).tobytes())
  return digest.hexdigest()[:16]