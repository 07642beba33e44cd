"""data: image folders (a directory or a .zip of <split>/<class>/<image>) beside the CIFAR-10 python
and .npz paths, the class-balanced subset, and the errors, each one line naming the file."""
import pathlib
import pickle
import zipfile

import numpy as np
import pytest
from PIL import Image

from micronas_jax import data

CIFAR10_JPEG = pathlib.Path(__file__).resolve().parents[2] / "shared/data/cifar10/cifar10-jpeg.zip"
# One solid colour per class, so that a pixel tells which class folder an image came from.
COLOURS = {"airplane": (250, 10, 10), "cat": (10, 250, 10), "truck": (10, 10, 250)}


def write_image(path: pathlib.Path, colour=(128, 64, 32), size=(32, 32), mode="RGB",
                suffix=".png") -> pathlib.Path:
  path = path.with_suffix(suffix)
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.new("RGB", size, colour).convert(mode).save(path)
  return path


def make_folder(root: pathlib.Path, splits=("train", "test"), per_class=(3, 2)) -> pathlib.Path:
  """<split>/<class>/<i>.png, classes written in an unsorted order; image i of a class gets its
  class colour plus i on the blue channel (so that images within a class differ)."""
  for split, count in zip(splits, per_class):
    for name in ("truck", "airplane", "cat"):
      for i in range(count):
        red, green, blue = COLOURS[name]
        write_image(root / split / name / str(i), (red, green, blue + i))
  return root


def zip_folder(root: pathlib.Path, out: pathlib.Path,
               extra: dict[str, bytes] | None = None) -> pathlib.Path:
  """`root`'s files in a zip, with folder entries (as `zip -r` writes them) and `extra` files."""
  with zipfile.ZipFile(out, "w") as archive:
    for path in sorted(root.rglob("*")):
      archive.write(path, path.relative_to(root).as_posix() + ("/" if path.is_dir() else ""))
    for name, content in (extra or {}).items():
      archive.writestr(name, content)
  return out


def test_directory_and_zip_read_to_the_same_arrays_with_labels_by_sorted_class(tmp_path):
  root = make_folder(tmp_path / "folder")
  archive = zip_folder(root, tmp_path / "folder.zip")
  for split, count in (("train", 3), ("test", 2)):
    images, labels = data.load_split(root, split)
    zipped, zipped_labels = data.load_split(archive, split)
    np.testing.assert_array_equal(images, zipped)
    np.testing.assert_array_equal(labels, zipped_labels)
    # Sorted classes airplane, cat, truck -> 0, 1, 2; `count` images each, class by class.
    assert images.shape == (3 * count, 32, 32, 3) and images.dtype == np.uint8
    assert labels.dtype == np.int32 and labels.tolist() == sorted([0, 1, 2] * count)
    for image, label in zip(images, labels):
      red, green, _ = COLOURS[sorted(COLOURS)[label]]
      assert (image[..., 0] == red).all() and (image[..., 1] == green).all()
    # Within a class, file-name order: 0.png, 1.png, ... (blue = class blue + i).
    assert images[:count, 0, 0, 2].tolist() == [10 + i for i in range(count)]


def test_load_images_normalizes_the_train_split(tmp_path):
  root = make_folder(tmp_path)
  images, _ = data.load_split(root, "train")
  np.testing.assert_allclose(data.load_images(root), data.normalize(images))


def test_mixed_sizes_and_modes_become_32x32_rgb(tmp_path):
  folder = tmp_path / "train" / "things"
  write_image(folder / "gray", (90, 90, 90), (7, 5), "L")
  write_image(folder / "rgba", (200, 100, 50), (64, 48), "RGBA")
  write_image(folder / "palette", (0, 255, 0), (100, 100), "P", ".gif")
  write_image(folder / "tiny", (30, 60, 90), (1, 1), "RGB", ".bmp")
  write_image(folder / "wide", (40, 80, 160), (300, 120), "RGB", ".jpg")  # decoded in draft
  write_image(folder / "cmyk", (40, 80, 160), (40, 40), "CMYK", ".jpg")
  Image.fromarray(np.full((9, 9), 40000, np.uint16)).save(folder / "deep.png")  # mode I;16
  images, labels = data.load_split(tmp_path, "train")
  assert images.shape == (7, 32, 32, 3) and labels.tolist() == [0] * 7
  # Sorted names: cmyk, deep, gray, palette, rgba, tiny, wide. A solid image stays solid when
  # resized; JPEG moves a solid colour by a few levels; 16-bit 40000 / 257 -> 156.
  expected = [(40, 80, 160), (156, 156, 156), (90, 90, 90), (0, 255, 0), (200, 100, 50),
              (30, 60, 90), (40, 80, 160)]
  for image, colour, tolerance in zip(images, expected, (4, 0, 0, 0, 0, 0, 4)):
    assert np.abs(image.astype(int) - colour).max() <= tolerance


def test_non_image_files_and_hidden_names_are_skipped(tmp_path):
  root = make_folder(tmp_path / "folder", splits=("train",), per_class=(2,))
  (root / "README.txt").write_text("about")
  (root / "train" / "cat" / "notes.txt").write_text("not an image")
  (root / "train" / "cat" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
  (root / "train" / "cat" / "._0.png").write_bytes(b"AppleDouble")  # macOS resource fork
  expected = data.load_split(tmp_path / "folder", "train")
  assert expected[0].shape[0] == 6
  archive = zip_folder(root, tmp_path / "folder.zip",
                       {"__MACOSX/train/cat/._0.png": b"AppleDouble"})
  for got, want in zip(data.load_split(archive, "train"), expected):
    np.testing.assert_array_equal(got, want)


def test_class_folders_without_split_folders_are_the_train_split(tmp_path):
  for name in ("b", "a"):
    write_image(tmp_path / name / "0")
  images, labels = data.load_split(tmp_path, "train")
  assert images.shape == (2, 32, 32, 3) and labels.tolist() == [0, 1]
  assert data.load_split(tmp_path, "test", required=False) is None
  with pytest.raises(data.DataError, match="no test split"):
    data.load_split(tmp_path, "test")


def test_a_lone_wrapping_folder_is_looked_through(tmp_path):
  make_folder(tmp_path / "cifar" / "data")  # as `zip -r data.zip data/` stores it
  archive = zip_folder(tmp_path / "cifar", tmp_path / "data.zip")
  images, labels = data.load_split(archive, "test")
  assert images.shape == (6, 32, 32, 3) and labels.tolist() == [0, 0, 1, 1, 2, 2]


@pytest.mark.parametrize("as_zip", [False, True])
def test_corrupt_image_is_refused_naming_the_file(tmp_path, as_zip):
  root = make_folder(tmp_path / "folder")
  (root / "train" / "cat" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
  source = zip_folder(root, tmp_path / "folder.zip") if as_zip else root
  with pytest.raises(data.DataError, match="train/cat/broken.jpg: not a readable image") as error:
    data.load_split(source, "train")
  assert str(source) in str(error.value) and "\n" not in str(error.value)


def test_truncated_jpeg_is_refused_naming_the_file(tmp_path):
  path = write_image(tmp_path / "train" / "cat" / "0", size=(64, 64), suffix=".jpg")
  path.write_bytes(path.read_bytes()[:200])
  with pytest.raises(data.DataError, match="train/cat/0.jpg: not a readable image"):
    data.load_split(tmp_path, "train")


@pytest.mark.parametrize("as_zip", [False, True])
def test_empty_class_folder_is_refused_naming_it(tmp_path, as_zip):
  root = make_folder(tmp_path / "folder")
  (root / "train" / "dog").mkdir()
  (root / "train" / "deer").mkdir()
  (root / "train" / "deer" / "README.txt").write_text("images went missing")
  source = zip_folder(root, tmp_path / "folder.zip") if as_zip else root
  with pytest.raises(data.DataError, match="class folder train/deer/ holds no images"):
    data.load_split(source, "train")


def test_missing_split_is_refused_or_none(tmp_path):
  root = make_folder(tmp_path / "folder", splits=("train",), per_class=(1,))
  archive = zip_folder(root, tmp_path / "folder.zip")
  for source in (root, archive):
    assert data.load_split(source, "test", required=False) is None
    with pytest.raises(data.DataError, match="no test split"):
      data.load_split(source, "test")
  only_test = make_folder(tmp_path / "only_test", splits=("test",), per_class=(1,))
  with pytest.raises(data.DataError, match="no train split"):
    data.load_images(only_test)  # load_images reads the train split, and does not fall back


def test_zip_that_is_not_a_zip_is_refused(tmp_path):
  (tmp_path / "images.zip").write_bytes(b"PK but not really")
  with pytest.raises(data.DataError, match="images.zip: not a zip file"):
    data.load_images(tmp_path / "images.zip")


def test_folders_without_classes_are_refused(tmp_path):
  (tmp_path / "train").mkdir()
  with pytest.raises(data.DataError, match="train/ holds no class folders"):
    data.load_split(tmp_path, "train")
  with zipfile.ZipFile(tmp_path / "empty.zip", "w") as archive:
    archive.writestr("README.txt", "nothing here")
  with pytest.raises(data.DataError, match="empty.zip: no class folders"):
    data.load_images(tmp_path / "empty.zip")
  with pytest.raises(data.DataError, match="not a CIFAR-10 python directory .* nor an image"):
    data.load_images(tmp_path / "train")  # an empty directory


def test_split_class_mismatch_and_nested_folders_are_refused(tmp_path):
  root = make_folder(tmp_path / "a")
  write_image(root / "test" / "dog" / "0")
  with pytest.raises(data.DataError, match="different class folders .*dog"):
    data.load_split(root, "train")
  root = make_folder(tmp_path / "b")
  write_image(root / "train" / "cat" / "inner" / "0")
  with pytest.raises(data.DataError, match="class folder train/cat/ holds a folder"):
    data.load_split(root, "train")


def test_balanced_subset_by_hand():
  # Classes 0, 1, 2 of sizes 2, 5, 5; 9 images: 9 // 3 = 3 each, but class 0 has only 2, so
  # classes 1 and 2 share the other 7: 4 and 3 (the remainder goes to the first class).
  labels = np.array([1, 0, 1, 2, 1, 2, 2, 1, 2, 0, 1, 2])
  chosen = data.balanced_subset(labels, 9)
  assert np.bincount(labels[chosen]).tolist() == [2, 4, 3]
  # Within class 1 (positions 0, 2, 4, 7, 10), picks i * 5 // 4 = 0, 1, 2, 3 of them; class 2
  # (positions 3, 5, 6, 8, 11), i * 5 // 3 = 0, 1, 3.
  assert chosen.tolist() == sorted([1, 9] + [0, 2, 4, 7] + [3, 5, 8])
  np.testing.assert_array_equal(data.balanced_subset(labels, None), np.arange(12))
  np.testing.assert_array_equal(data.balanced_subset(labels, 50), np.arange(12))
  with pytest.raises(ValueError, match="at least 1"):
    data.balanced_subset(labels, 0)


def test_max_images_decodes_the_balanced_subset(tmp_path):
  root = make_folder(tmp_path / "folder", splits=("train",), per_class=(4,))
  images, labels = data.load_split(root, "train")
  few, few_labels = data.load_split(root, "train", max_images=5)
  chosen = data.balanced_subset(labels, 5)  # 2 airplanes, 2 cats, 1 truck
  assert few_labels.tolist() == [0, 0, 1, 1, 2]
  np.testing.assert_array_equal(few, images[chosen])
  np.testing.assert_allclose(data.load_images(root, max_images=5), data.normalize(few))


def test_cifar_directory_wins_over_folders_and_npz_is_unchanged(tmp_path):
  rng = np.random.default_rng(0)
  for name in (*data.CIFAR10_BATCHES, data.CIFAR10_TEST_BATCH):
    batch = {b"data": rng.integers(0, 256, (2, 3072), dtype=np.uint8), b"labels": [3, 7]}
    (tmp_path / name).write_bytes(pickle.dumps(batch))
  write_image(tmp_path / "train" / "cat" / "0")  # a stray folder does not make an image folder
  images, labels = data.load_split(tmp_path, "train")
  assert images.shape == (10, 32, 32, 3) and labels.tolist() == [3, 7] * 5
  assert data.load_images(tmp_path).shape == (10, 32, 32, 3)
  # 4 of 10 with labels 3 and 7 alternating: two of each class, evenly spread.
  assert data.load_split(tmp_path, "train", max_images=4)[1].tolist() == [3, 7, 3, 7]
  pixels = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
  np.savez(tmp_path / "d.npz", images=pixels)
  np.testing.assert_allclose(data.load_images(tmp_path / "d.npz"), data.normalize(pixels))
  # No labels in an .npz read by load_images: one class, positions i * 6 // 3 = 0, 2, 4.
  np.testing.assert_allclose(data.load_images(tmp_path / "d.npz", max_images=3),
                             data.normalize(pixels[[0, 2, 4]]))


@pytest.mark.skipif(not CIFAR10_JPEG.exists(), reason=f"CIFAR-10 JPEG zip not at {CIFAR10_JPEG}")
def test_cifar10_jpeg_zip_train_mean_matches_its_readme():
  # ~11 s on the 2-core CPU: all 50,000 training images are decoded.
  images, labels = data.load_split(CIFAR10_JPEG, "train")
  assert images.shape == (50000, 32, 32, 3) and np.bincount(labels).tolist() == [5000] * 10
  mean = images.reshape(-1, 3).mean(0) / 255.0
  np.testing.assert_allclose(mean, [0.4913, 0.4821, 0.4465], atol=1e-3)  # the README's mean


def test_float_images_in_0_255_are_scaled_and_nan_or_out_of_range_refused(tmp_path):
  rng = np.random.default_rng(0)
  pixels = rng.integers(0, 256, (4, 32, 32, 3)).astype(np.uint8)
  np.savez(tmp_path / "u8.npz", images=pixels)
  np.savez(tmp_path / "f255.npz", images=pixels.astype(np.float32))
  np.savez(tmp_path / "f01.npz", images=pixels.astype(np.float32) / 255)
  reference = data.load_images(tmp_path / "u8.npz")
  for name in ("f255.npz", "f01.npz"):
    np.testing.assert_allclose(data.load_images(tmp_path / name), reference, atol=1e-5)
  with_nan = pixels.astype(np.float32)
  with_nan[0, 0, 0, 0] = np.nan
  np.savez(tmp_path / "nan.npz", images=with_nan)
  np.savez(tmp_path / "big.npz", images=pixels.astype(np.float32) * 4)
  np.savez(tmp_path / "split.npz", images=with_nan, labels=np.zeros(4, np.int64))
  for name, message in (("nan.npz", "holds NaN or infinite pixel values"),
                        ("big.npz", "expected 0-1 or 0-255"),
                        ("split.npz", "holds NaN or infinite pixel values")):
    with pytest.raises(data.DataError, match=message):
      data.load_images(tmp_path / name) if name != "split.npz" else data.load_split(
          tmp_path / name, "train")


def test_a_file_that_is_not_an_npz_never_suggests_pickles(tmp_path):
  (tmp_path / "text.npz").write_text("these are not arrays\n")
  np.save(tmp_path / "single.npy", np.zeros((2, 32, 32, 3), np.uint8))
  (tmp_path / "single.npy").rename(tmp_path / "single.npz")
  for name, message in (("text.npz", "not a zip archive of .npy arrays"),
                        ("single.npz", "a single .npy array")):
    for read in (data.load_images, lambda path: data.load_split(path, "train")):
      with pytest.raises(data.DataError, match=message) as raised:
        read(tmp_path / name)
      assert "pickle" not in str(raised.value)
