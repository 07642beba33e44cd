"""Output paths: checked before work, written through a temporary file."""
import os

import pytest

from micronas_jax import paths


def test_check_writable_accepts_a_new_or_existing_file_and_names_what_is_wrong(tmp_path):
  assert paths.check_writable(tmp_path / "new.txt") == tmp_path / "new.txt"
  (tmp_path / "old.txt").write_text("x")
  assert paths.check_writable(tmp_path / "old.txt") == tmp_path / "old.txt"
  for path, message in ((tmp_path, "is a directory"), (tmp_path / "no" / "f", "no such directory"),
                        ("  ", "empty report path")):
    with pytest.raises(paths.PathError, match=message):
      paths.check_writable(path, "report")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere: no unwritable folder")
def test_check_writable_refuses_a_read_only_folder(tmp_path):
  folder = tmp_path / "ro"
  folder.mkdir()
  folder.chmod(0o500)
  with pytest.raises(paths.PathError, match="not writable"):
    paths.check_writable(folder / "f.txt")


def test_write_atomically_replaces_only_on_success(tmp_path):
  target = tmp_path / "out.txt"
  target.write_text("old")
  paths.write_atomically(target, lambda tmp: tmp.write_text("new"))
  assert target.read_text() == "new"

  def fail_halfway(tmp):
    tmp.write_text("half")
    raise OSError(28, "No space left on device")

  with pytest.raises(paths.PathError, match="cannot write: no space left on the device"):
    paths.write_atomically(target, fail_halfway)
  assert target.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]

  def interrupted(tmp):
    tmp.write_text("half")
    raise KeyboardInterrupt

  with pytest.raises(KeyboardInterrupt):
    paths.write_atomically(target, interrupted)
  assert target.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]
