import os
import signal
import subprocess
import sys
import time

import pytest

from tailor.artifacts import atomic_dir, atomic_write_bytes, atomic_write_json, hash_tree, recover_dir

SLOW_WRITER = """
import sys, time
from pathlib import Path
from tailor.artifacts import atomic_dir, atomic_write_bytes
target = Path(sys.argv[1])
if sys.argv[2] == "file":
    import os
    real_write = os.fsync
    def slow_fsync(fd):
        print("writing", flush=True); time.sleep(30); real_write(fd)
    os.fsync = slow_fsync
    atomic_write_bytes(target, b"new" * 1000)
else:
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("new a")
        print("writing", flush=True)
        time.sleep(30)
        (tmp / "b.txt").write_text("new b")
"""


def kill_while_writing(target, mode):
    proc = subprocess.Popen([sys.executable, "-c", SLOW_WRITER, str(target), mode], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def test_file_killed_mid_write_keeps_old_content(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text("old")
    kill_while_writing(target, "file")
    assert target.read_text() == "old"


def test_directory_killed_mid_write_keeps_old_folder(tmp_path):
    target = tmp_path / "stage"
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("old a")
    before = hash_tree(target)
    kill_while_writing(target, "dir")
    assert hash_tree(target) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".stage.tmp")]
    recover_dir(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stage"]


def test_error_inside_atomic_dir_changes_nothing(tmp_path):
    target = tmp_path / "stage"
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "a.txt").write_text("new")
            raise RuntimeError("boom")
    assert (target / "a.txt").read_text() == "old" and len(list(tmp_path.iterdir())) == 1


def test_recover_restores_a_folder_moved_aside(tmp_path):
    target = tmp_path / "stage"
    aside = tmp_path / ".stage.old-999"
    aside.mkdir()
    (aside / "a.txt").write_text("kept")
    recover_dir(target)  # crashed between the two renames: only the .old copy exists
    assert (target / "a.txt").read_text() == "kept" and not aside.exists()


def test_failed_file_write_leaves_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "x.json"
    atomic_write_json(target, {"a": 1})
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        atomic_write_bytes(target, b"new")
    assert target.read_text().strip().startswith("{") and sorted(p.name for p in tmp_path.iterdir()) == ["x.json"]


def test_hash_tree_sees_content_and_names(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f").write_text("1")
    h = hash_tree(tmp_path / "a")
    (tmp_path / "a" / "f").write_text("2")
    assert hash_tree(tmp_path / "a") != h
    (tmp_path / "a" / "f").write_text("1")
    assert hash_tree(tmp_path / "a") == h
    (tmp_path / "a" / "f").rename(tmp_path / "a" / "g")
    assert hash_tree(tmp_path / "a") != h
