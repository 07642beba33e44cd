"""data.infer_task: the classes, channels and resolution of a user's data, the one rule for sizes,
the images read in the task's shape, and degenerate folders refused in one line."""
import numpy as np
import pytest

from micronas_jax import data
from tests.test_data import write_image, zip_folder


def gray_folder(root, size=(28, 28), classes=("zero", "one", "two"), per_class=2):
  for name in classes:
    for i in range(per_class):
      write_image(root / "train" / name / str(i), (40 * i, 40 * i, 40 * i), size, mode="L")
  return root


def test_a_gray_folder_gives_its_classes_one_channel_and_its_own_size(tmp_path):
  root = gray_folder(tmp_path / "digits")
  task = data.infer_task(root)
  assert task.classes == ("one", "two", "zero")  # sorted folder names are labels 0..K-1
  assert (task.in_channels, task.resolution, task.num_classes) == (1, 28, 3)
  assert (task.train_images, task.test_images, task.resized) == (6, 0, False)
  images, labels = data.load_split(root, shape=task.input_shape)
  assert images.shape == (6, 28, 28, 1) and labels.tolist() == [0, 0, 1, 1, 2, 2]
  assert data.load_images(root, shape=task.input_shape).shape == (6, 28, 28, 1)
  assert data.infer_task(zip_folder(root, tmp_path / "digits.zip")).input_shape == (28, 28, 1)
  assert "3 classes (one, two, zero); 6 train + 0 test images; gray 28x28 (as stored)" \
      == task.describe()


def test_mixed_sizes_take_the_median_shorter_side_and_one_colour_image_makes_rgb(tmp_path):
  root = tmp_path / "photos"
  write_image(root / "cat" / "a", size=(40, 30), mode="L")
  write_image(root / "cat" / "b", size=(50, 61), mode="L")
  write_image(root / "dog" / "c", size=(70, 64), mode="RGB")
  task = data.infer_task(root)
  # Shorter sides 30, 50, 64: median 50, down to a multiple of 4.
  assert (task.resolution, task.in_channels, task.resized) == (48, 3, True)
  assert task.sizes == ((40, 30), (70, 64))
  images, _ = data.load_split(root, shape=task.input_shape)
  assert images.shape == (3, 48, 48, 3)
  assert "resized from 40x30 to 70x64" in task.describe()


def test_the_resolution_and_channels_can_be_asked_for_and_large_images_are_capped(tmp_path):
  root = tmp_path / "big"
  for name in ("a", "b"):
    write_image(root / "train" / name / "0", (200, 20, 20), size=(300, 300))
  assert data.infer_task(root).resolution == data.MAX_DEFAULT_RESOLUTION
  task = data.infer_task(root, resolution=16, in_channels=1)
  assert task.input_shape == (16, 16, 1)
  images, _ = data.load_split(root, shape=task.input_shape)
  # Pillow's luma of (200, 20, 20): the gray task converts as convert("L") does.
  assert images.shape == (2, 16, 16, 1) and abs(int(images[0, 8, 8, 0]) - 73) <= 1
  with pytest.raises(data.DataError, match=r"a positive multiple of 4 \(.*\), got 30"):
    data.infer_task(root, resolution=30)


def test_npz_arrays_give_a_task_from_their_shape_and_labels(tmp_path):
  path = tmp_path / "gray.npz"
  rng = np.random.default_rng(0)
  np.savez(path, x_train=rng.integers(0, 256, (8, 20, 20), dtype=np.uint8),
           y_train=np.arange(8) % 4, x_test=np.zeros((3, 20, 20), np.uint8),
           y_test=np.zeros(3, np.int64))
  task = data.infer_task(path)
  assert (task.classes, task.input_shape) == (("0", "1", "2", "3"), (20, 20, 1))
  assert (task.train_images, task.test_images) == (8, 3)
  eight = data.infer_task(path, resolution=8).input_shape
  images, labels = data.load_split(path, "test", shape=eight)
  assert images.shape == (3, 8, 8, 1) and labels.tolist() == [0, 0, 0]
  unlabelled = tmp_path / "images.npz"
  np.savez(unlabelled, images=np.zeros((4, 32, 32, 3), np.uint8))
  assert data.infer_task(unlabelled).num_classes is None  # the indicators need no labels


def test_an_rgb_npz_read_as_gray_uses_luma(tmp_path):
  path = tmp_path / "rgb.npz"
  np.savez(path, images=np.full((2, 8, 8, 3), (255, 0, 0), np.uint8), labels=np.array([0, 1]))
  images, _ = data.load_split(path, shape=data.infer_task(path, in_channels=1).input_shape)
  assert images.shape == (2, 8, 8, 1) and int(images[0, 0, 0, 0]) == 76  # 0.299 * 255


@pytest.mark.parametrize("build, message", [
    (lambda root: write_image(root / "train" / "only" / "0"),
     r"1 class \(only\); a classifier needs at least 2"),
    (lambda root: (write_image(root / "a" / "0"), (root / "b").mkdir(),
                   (root / "b" / "notes.txt").write_text("x")),
     "class folder b/ holds no images"),
    (lambda root: (write_image(root / "a" / "0"), (root / "b").mkdir(),
                   (root / "b" / "broken.png").write_bytes(b"not a png")),
     "b/broken.png: not a readable image"),
    (lambda root: write_image(root / "test" / "a" / "0"), "no train split"),
])
def test_degenerate_folders_fail_in_one_line_naming_the_problem(tmp_path, build, message):
  root = tmp_path / "data"
  root.mkdir()
  build(root)
  with pytest.raises(data.DataError, match=message) as error:
    data.infer_task(root)
  assert "\n" not in str(error.value)


def test_an_npz_of_one_class_or_tiny_images_is_refused(tmp_path):
  path = tmp_path / "one.npz"
  np.savez(path, images=np.zeros((3, 8, 8), np.uint8), labels=np.zeros(3, np.int64))
  with pytest.raises(data.DataError, match=r"1 class \(0\); a classifier needs at least 2"):
    data.infer_task(path)
  np.savez(path, images=np.zeros((3, 3, 3), np.uint8), labels=np.arange(3))
  with pytest.raises(data.DataError, match="images of 3 px are too small"):
    data.infer_task(path)


def test_a_task_round_trips_through_its_json_fields(tmp_path):
  task = data.infer_task(gray_folder(tmp_path / "digits"), resolution=16)
  assert data.Task.from_dict(task.to_dict()) == task


def test_the_task_command_prints_the_task_and_writes_its_json(tmp_path):
  import json

  from click.testing import CliRunner

  from micronas_jax.cli import cli

  root = gray_folder(tmp_path / "digits")
  out = tmp_path / "task.json"
  result = CliRunner().invoke(cli, ["task", str(root), "--resolution", "16", "--out", str(out)])
  assert result.exit_code == 0, result.output
  assert "3 classes (one, two, zero); 6 train + 0 test images; gray 16x16 (resized from 28x28)" \
      in result.output
  assert data.Task.from_dict(json.loads(out.read_text())).input_shape == (16, 16, 1)
  write_image(tmp_path / "single" / "only" / "0")
  bad = CliRunner().invoke(cli, ["task", str(tmp_path / "single")])
  assert bad.exit_code == 2
  assert bad.output.endswith("1 class (only); a classifier needs at least 2\n")
  assert len(bad.output.splitlines()) == 1


def test_train_builds_the_network_of_the_datas_task(tmp_path):
  import json

  from click.testing import CliRunner

  from micronas_jax.cli import cli

  root = gray_folder(tmp_path / "digits", size=(12, 12), per_class=4)
  result = CliRunner().invoke(cli, [
      "train", "1462", "--data", str(root), "--out", str(tmp_path / "run"), "--channels", "2",
      "--cells", "1", "--epochs", "1", "--batch-size", "4", "--resolution", "8", "--no-progress"])
  assert result.exit_code == 0, result.output
  assert "task: 3 classes (one, two, zero); 12 train + 0 test images; gray 8x8" in result.output
  from micronas_jax import train
  meta = train.read_checkpoint(tmp_path / "run" / train.CHECKPOINT_NAME)["meta"]
  assert json.dumps(meta).count('"resolution": 8') == 1
  assert '"in_channels": 1' in json.dumps(meta) and '"num_classes": 3' in json.dumps(meta)


def test_a_cifar10_directory_gives_its_label_names_and_split_sizes(tmp_path):
  import pickle

  rng = np.random.default_rng(0)
  for name in (*data.CIFAR10_BATCHES, data.CIFAR10_TEST_BATCH):
    batch = {b"data": rng.integers(0, 256, (2, 3072), dtype=np.uint8), b"labels": [3, 7]}
    (tmp_path / name).write_bytes(pickle.dumps(batch))
  task = data.infer_task(tmp_path)
  assert task.classes == data.CIFAR10_CLASSES and task.input_shape == (32, 32, 3)
  assert (task.train_images, task.test_images) == (10, 2)
  names = [f"class{i}".encode() for i in range(10)]
  (tmp_path / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}))
  assert data.infer_task(tmp_path).classes[3] == "class3"
  assert data.load_split(tmp_path, "test", shape=(16, 16, 1))[0].shape == (2, 16, 16, 1)
