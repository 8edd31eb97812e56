"""Damaged, truncated, mislabelled and empty input files stop with the file and what is wrong, never a bare abort."""

import gzip
import json
import os
import subprocess
import sys

import pytest
import yaml
import zstandard

from test_data import run, spec_for

from tailor.errors import TailorError

LINES = b"".join(json.dumps({"text": f"record number {i} with some words"}).encode() + b"\n" for i in range(400))


def _spec(tmp_path, name):
    return spec_for(tmp_path, f"[{{type: files, path: in/{name}}}]")


def _write(tmp_path, name, data: bytes):
    (tmp_path / "in").mkdir(exist_ok=True)
    (tmp_path / "in" / name).write_bytes(data)
    return tmp_path / "in" / name


@pytest.mark.parametrize("suffix,compress", [(".gz", gzip.compress), (".zst", zstandard.ZstdCompressor().compress)])
def test_a_truncated_compressed_file_names_the_file_and_the_byte_offset(tmp_path, suffix, compress):
    whole = compress(LINES)
    path = _write(tmp_path, f"a.jsonl{suffix}", whole[:len(whole) // 2])
    with pytest.raises(TailorError) as e:
        run(tmp_path, _spec(tmp_path, path.name))
    message = str(e.value)
    assert message.startswith(f"{path}: the {'gzip' if suffix == '.gz' else 'zstd'} data ends at byte "
                              f"{len(whole) // 2} ")
    assert "truncated" in message


@pytest.mark.parametrize("suffix,kind", [(".gz", "gzip"), (".zst", "zstd")])
def test_a_plain_file_named_as_compressed_says_so(tmp_path, suffix, kind):
    path = _write(tmp_path, f"a.jsonl{suffix}", LINES)
    with pytest.raises(TailorError) as e:
        run(tmp_path, _spec(tmp_path, path.name))
    assert str(e.value).startswith(f"{path}: not {kind} data at byte 0 (it starts with b'{{\"text\"")
    assert f"rename it without {suffix}" in str(e.value)


def test_damaged_bytes_inside_a_gzip_file_name_the_offset(tmp_path):
    whole = bytearray(gzip.compress(LINES))
    whole[len(whole) // 2] ^= 0xFF
    path = _write(tmp_path, "a.jsonl.gz", bytes(whole))
    with pytest.raises(TailorError) as e:
        run(tmp_path, _spec(tmp_path, path.name))
    assert str(e.value).startswith(f"{path}: ") and "byte" in str(e.value) and "gzip" in str(e.value)


@pytest.mark.parametrize("name", ["empty.jsonl", "empty.jsonl.gz"])
def test_an_empty_file_is_named(tmp_path, name):
    path = _write(tmp_path, name, b"")
    with pytest.raises(TailorError) as e:
        run(tmp_path, _spec(tmp_path, name))
    assert str(path) in str(e.value) and "empty" in str(e.value)


def test_the_command_line_shows_the_error_not_aborted(tmp_path):
    """Without --debug, the message (not click's bare "Aborted.") and exit status 2."""
    whole = gzip.compress(LINES)
    path = _write(tmp_path, "a.jsonl.gz", whole[:len(whole) // 2])
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump({
        "name": "d", "problem": {"domain": "d", "task": "t"},
        "data": {"sources": [{"type": "files", "path": "in/*.jsonl.gz"}], "fields": {"text": "text"}}}))
    res = subprocess.run([sys.executable, "-m", "tailor.cli", "data", "spec.yaml", "--runs-dir", "runs"], cwd=tmp_path,
                         capture_output=True, text=True, env={**os.environ, "COLUMNS": "400"}, timeout=300)
    assert res.returncode == 2, res.stderr
    assert "Aborted" not in res.stderr and f"error: {path}: the gzip data ends at byte {len(whole) // 2}" in res.stderr
