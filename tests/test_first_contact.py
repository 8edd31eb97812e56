"""A fresh machine: `make test` installs Debian's browser and database where it can, and otherwise says what to
run and reports the tests that need them as skipped, never as passed (.ci/system-deps and the fixtures)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import need_system

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / ".ci" / "system-deps"


def _stub(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text("#!/bin/bash\n" + body + "\n")
    path.chmod(0o755)


def _machine(tmp_path, uid: int, sudo: str | None, installed: bool = False) -> tuple[Path, dict]:
    """A PATH with only stubs: `id`, `apt-get` and `sudo` record what they were asked; chromium is hidden."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    log = tmp_path / "calls.log"
    for tool in ("env", "true", "cat"):
        (bin_ / tool).symlink_to(f"/usr/bin/{tool}")
    _stub(bin_, "id", f'[ "$1" = -u ] && echo {uid}')
    _stub(bin_, "apt-get", f'echo "apt-get $*" >> {log}')
    if sudo == "passwordless":
        _stub(bin_, "sudo", f'echo "sudo $*" >> {log}; [ "$1" = -n ] && shift; exec "$@"')
    elif sudo == "asks":
        _stub(bin_, "sudo", f'echo "sudo $*" >> {log}; exit 1')
    if installed:
        _stub(bin_, "chromium", "")
        _stub(bin_, "chromedriver", "")
    return log, {"PATH": str(bin_), "HOME": str(tmp_path)}


def _run(env) -> subprocess.CompletedProcess:
    return subprocess.run(["/bin/bash", str(SCRIPT)], capture_output=True, text=True, env=env, timeout=60)


def _calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


@pytest.mark.parametrize("sudo", [None, "asks"])
def test_without_root_it_says_exactly_what_to_run_and_carries_on(tmp_path, sudo):
    log, env = _machine(tmp_path, 1000, sudo)
    res = _run(env)
    assert res.returncode == 0  # every other test still runs
    assert "sudo apt-get update && sudo apt-get install -y chromium chromium-driver" in res.stderr
    assert "reported as skipped" in res.stderr
    assert [c for c in _calls(log) if c.startswith("apt-get")] == []


def test_with_passwordless_sudo_it_installs_them(tmp_path):
    log, env = _machine(tmp_path, 1000, "passwordless")
    res = _run(env)
    assert res.returncode == 0 and "installing Debian's chromium chromium-driver" in res.stderr
    calls = _calls(log)
    assert "apt-get update -qq" in calls
    assert any(c.startswith("apt-get install -y -qq chromium chromium-driver") for c in calls)
    assert all(c.startswith("sudo -n") for c in calls if c.startswith("sudo"))


def test_as_root_it_installs_them_without_sudo(tmp_path):
    log, env = _machine(tmp_path, 0, "asks")
    res = _run(env)
    assert res.returncode == 0
    calls = _calls(log)
    assert not [c for c in calls if c.startswith("sudo")]
    assert any(c.startswith("apt-get install -y -qq chromium chromium-driver") for c in calls)


def test_nothing_is_done_when_everything_is_there(tmp_path):
    need_system(bool(list(Path("/usr/lib/postgresql").glob("*/bin/initdb"))), "PostgreSQL", "postgresql")
    log, env = _machine(tmp_path, 1000, "asks", installed=True)
    res = _run(env)
    assert res.returncode == 0 and res.stderr == "" and _calls(log) == []


def test_the_makefile_and_ci_use_it():
    makefile = (ROOT / "Makefile").read_text()
    assert "test: $(VENV)/.dev system-deps" in makefile and "@.ci/system-deps" in makefile
    ci = (ROOT / ".ci" / "run").read_text()
    assert ".ci/system-deps" in ci and "TAILOR_REQUIRE_SYSTEM_DEPS=1" in ci


def _hidden_chromium_path(tmp_path) -> str:
    """PATH holding every program of /usr/bin but chromium and chromedriver."""
    shown = tmp_path / "usr-bin"
    shown.mkdir()
    for tool in Path("/usr/bin").iterdir():
        if tool.name not in ("chromium", "chromedriver"):
            (shown / tool.name).symlink_to(tool)
    return f"{Path(sys.executable).parent}:{shown}"


@pytest.mark.parametrize("required", [False, True])
def test_the_browser_test_is_skipped_with_the_reason_not_passed(tmp_path, required):
    env = {**os.environ, "PATH": _hidden_chromium_path(tmp_path)}
    env.pop("TAILOR_REQUIRE_SYSTEM_DEPS", None)
    if required:
        env["TAILOR_REQUIRE_SYSTEM_DEPS"] = "1"
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                          "tests/test_human.py", "-k", "headless_chromium"],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    if required:  # CI: missing packages are a failure, not a skip
        assert res.returncode == 1 and "1 error" in res.stdout and "skipped" not in res.stdout, res.stdout[-2000:]
    else:
        assert res.returncode == 0 and "1 skipped" in res.stdout and "passed" not in res.stdout, res.stdout[-2000:]
    assert "Debian's chromium and chromium-driver not installed: sudo apt-get install -y chromium chromium-driver" \
        in " ".join(res.stdout.split())
