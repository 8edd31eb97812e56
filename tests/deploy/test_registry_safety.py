"""The registry keeps to its folder and registers only what its manifest vouches for."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from tailor.cli import app as cli
from tailor.deploy.registry import Registry
from tailor.errors import TailorError

from .conftest import make_model_folder


@pytest.fixture(scope="module")
def model(finished_run, tmp_path_factory):
    _, run_dir = finished_run
    return make_model_folder(tmp_path_factory.mktemp("reg") / "m", run_dir / "train" / "model")


@pytest.mark.parametrize("name", ["../../../x", "../x", "a/b", "ABSOLUTE", ".hidden", "", "x\n"])
def test_a_name_that_would_leave_the_registry_folder_is_refused(model, tmp_path, name):
    home = tmp_path / "home" / "deep" / "er"
    name = str(tmp_path / "escaped") if name == "ABSOLUTE" else name
    res = CliRunner().invoke(cli, ["registry", "add", str(model), "--name", name, "--home", str(home)])
    assert isinstance(res.exception, TailorError) and "registry name" in str(res.exception)
    assert [p for p in tmp_path.rglob("*") if not p.is_relative_to(home / "registry")] == \
        [tmp_path / "home", tmp_path / "home" / "deep", home]
    assert not (home / "registry" / "models").exists()


def test_the_command_line_says_why_a_name_is_refused(model, tmp_path):
    res = subprocess.run([sys.executable, "-m", "tailor.cli", "registry", "add", str(model), "--name", "../../../x",
                          "--home", str(tmp_path / "a" / "b" / "c")], capture_output=True, text=True)
    assert res.returncode == 2, res.stderr
    assert "registry name '../../../x'" in res.stderr and "letters, digits" in res.stderr
    assert not (tmp_path / "x").exists() and not list((tmp_path / "a").rglob("*.safetensors"))


def test_a_folder_without_a_manifest_is_not_registered(model, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(model, folder)
    (folder / "manifest.json").unlink()
    res = CliRunner().invoke(cli, ["registry", "add", str(folder), "--name", "qa", "--home", str(tmp_path / "h")])
    assert isinstance(res.exception, TailorError)
    assert "not registering" in str(res.exception) and "no manifest.json" in str(res.exception)
    assert Registry(tmp_path / "h" / "registry").list() == []
    assert not (folder / "manifest.json").exists()  # nothing vouches for it afterwards either
    assert not (tmp_path / "h" / "registry" / "models" / "qa").exists()


def test_damaged_weights_are_not_registered(model, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(model, folder)
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit in the tensor data
    weights.write_bytes(bytes(data))
    registry = Registry(tmp_path / "registry")
    with pytest.raises(TailorError, match=r"model.safetensors: checksum differs"):
        registry.add(folder, "qa")
    assert registry.list() == [] and not (tmp_path / "registry" / "models" / "qa" / "v1").exists()


def test_a_verified_folder_is_registered_with_a_manifest_that_verifies(model, tmp_path):
    from tailor.manifest import verify_manifest

    v = Registry(tmp_path / "registry").add(model, "qa", reference=["what colour is item 1"])
    verify_manifest(v.path)
    assert v.path.parent.parent == tmp_path / "registry" / "models"
