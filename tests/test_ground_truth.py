"""Ground-truth readers of micronas_jax.ground_truth: CSV tables and the official APIs."""
import gzip
import math
import sys

import numpy as np
import pytest

from micronas_jax import ground_truth, space

ARCH_1462 = space.format_arch(space.arch_at(1462))  # a 3x3 conv on every edge


def write(tmp_path, text, name="t.csv"):
  path = tmp_path / name
  path.write_text(text)
  return path


# --- CSV tables ------------------------------------------------------------------------------


def test_read_csv_places_values_in_index_order_and_nan_elsewhere(tmp_path):
  path = write(tmp_path, "index,test_acc\n5,91.5\n0,80\n15624,10\n")
  acc = ground_truth.read_accuracy(path)
  assert acc.shape == (15625,)
  assert acc[[0, 5, 15624]].tolist() == [80.0, 91.5, 10.0]
  assert np.isnan(acc).sum() == 15625 - 3


def test_read_csv_by_arch_string_only(tmp_path):
  path = write(tmp_path, f"arch,test_acc\n{ARCH_1462},93.76\n")
  assert ground_truth.read_accuracy(path)[1462] == 93.76


def test_read_csv_several_columns_and_gzip(tmp_path):
  path = tmp_path / "t.csv.gz"
  with gzip.open(path, "wt") as f:
    f.write("index,test_acc,valid_acc\n7,90,\n8,nan,88\n")
  values = ground_truth.read_csv(path, ("test_acc", "valid_acc"))
  assert values["test_acc"][7] == 90 and math.isnan(values["test_acc"][8])
  assert values["valid_acc"][8] == 88 and math.isnan(values["valid_acc"][7])  # empty: missing


@pytest.mark.parametrize("text, message", [
    ("index,acc\n1,2\n", "line 1: no column test_acc; found index, acc"),
    ("name,test_acc\nx,2\n", "line 1: needs a column `index` or `arch`"),
    ("index,test_acc\n1,90\n15625,90\n", "line 3: index 15625 out of range"),
    ("index,test_acc\n-1,90\n", "line 2: index -1 out of range"),
    ("index,test_acc\n1.5,90\n", "line 2: index '1.5' is not an integer"),
    ("index,test_acc\n1,ninety\n", "line 2: test_acc 'ninety' is not a number"),
    ("index,test_acc\n1,inf\n", "line 2: test_acc is 'inf', not a finite number"),
    ("index,test_acc\n1,90\n1,91\n", "line 3: cell 1 already given on line 2"),
    ("index,test_acc\n1,90,3\n", "line 2: 3 fields, header has 2"),
    ("arch,test_acc\n|conv_5x5~0|+|none~0|none~1|+|none~0|none~1|none~2|,90\n",
     "line 2: unknown op 'conv_5x5'"),
    (f"index,arch,test_acc\n0,{ARCH_1462},90\n", "line 2: index 0 but arch"),
    ("", "empty file"),
])
def test_read_csv_rejects_malformed_rows_naming_file_and_line(tmp_path, text, message):
  path = write(tmp_path, text)
  with pytest.raises(ground_truth.BenchmarkError) as error:
    ground_truth.read_accuracy(path)
  assert str(path) in str(error.value) and message in str(error.value)


def test_read_csv_missing_file_is_a_benchmark_error(tmp_path):
  with pytest.raises(ground_truth.BenchmarkError, match="no such benchmark table"):
    ground_truth.read_accuracy(tmp_path / "absent.csv")


def test_read_csv_real_cifar10_table(nb201_csv):
  acc = ground_truth.read_accuracy(nb201_csv)
  # Checks from the data README: best 94.3733 at 6111; the all-conv3x3 cell 1462 has 93.76.
  assert not np.isnan(acc).any()
  assert int(np.argmax(acc)) == 6111 and acc[6111] == 94.3733
  assert acc[1462] == 93.76


# --- official APIs (optional extra) ----------------------------------------------------------


@pytest.mark.parametrize("name, module", [("NAS-Bench-201-v1_1-096897.pth", "nas_201_api"),
                                          ("NATS-tss-v1_0-3ffb9-simple", "nats_bench")])
def test_official_file_without_extra_says_how_to_install(tmp_path, monkeypatch, name, module):
  path = tmp_path / name
  path.write_bytes(b"")
  monkeypatch.setitem(sys.modules, module, None)  # None in sys.modules: import raises
  with pytest.raises(ground_truth.BenchmarkError, match=rf"needs the `{module}` package \(pip "
                     r"install -e '\.\[bench\]'\); or pass a CSV table"):
    ground_truth.read_accuracy(path)


@pytest.mark.parametrize("name, message", [
    ("NAS-Bench-201-v1_0-e61699.pth", "no such NAS-Bench-201"),
    ("NATS-tss-v1_0-3ffb9-simple", "no such NATS-Bench")])
def test_official_file_missing_is_named_before_any_import(tmp_path, monkeypatch, name, message):
  monkeypatch.setitem(sys.modules, "nas_201_api", None)
  monkeypatch.setitem(sys.modules, "nats_bench", None)
  with pytest.raises(ground_truth.BenchmarkError, match=message):
    ground_truth.read_accuracy(tmp_path / name)


class FakeAPI:
  """The part of the NB201/NATS API the reader uses: arch(i) and get_more_info(i, ...)."""

  def __init__(self, swap=None):
    self.swap = swap

  def arch(self, index):
    index = self.swap.get(index, index) if self.swap else index
    return space.format_arch(space.arch_at(index))

  def get_more_info(self, index, dataset, hp, is_random):
    assert (dataset, hp, is_random) == ("cifar10", "200", False)
    return {"test-accuracy": index / 1000}


def test_official_values_reads_final_accuracy_in_index_order(tmp_path):
  values = ground_truth._official_values(FakeAPI(), tmp_path, "cifar10", "test_acc")
  np.testing.assert_allclose(values, np.arange(15625) / 1000)


def test_official_values_refuses_another_index_order(tmp_path):
  with pytest.raises(ground_truth.BenchmarkError, match="cell 3 is"):
    ground_truth._official_values(FakeAPI(swap={3: 4}), tmp_path, "cifar10", "test_acc")
