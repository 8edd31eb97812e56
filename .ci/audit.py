"""Security checks for CI: pip-audit on the locked dependencies, bandit on the package.

Fails on any known vulnerability in requirements.lock (PyPI's advisories carry no severity, so
every one counts) and on any high-severity bandit finding. When the vulnerability service cannot
be reached, every package comes back "not audited": that is printed as such, never as a pass,
and fails too when TAILOR_AUDIT_REQUIRE_SERVICE=1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def pip_audit() -> tuple[int, list[str]]:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "audit.json"
        subprocess.run([str(BIN / "pip-audit"), "-r", str(ROOT / "requirements.lock"), "--no-deps", "--disable-pip",
                        "--progress-spinner", "off", "-f", "json", "-o", str(report)], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deps = json.loads(report.read_text())["dependencies"] if report.is_file() else []
    if not deps:
        return 1, ["pip-audit: produced no report"]
    found = [f"{d['name']}=={d['version']}: {v['id']} (fixed in {', '.join(v.get('fix_versions') or ['-'])})"
             for d in deps for v in d.get("vulns", [])]
    skipped = [d for d in deps if "skip_reason" in d]
    lines = [f"pip-audit: {len(deps)} locked packages, {len(deps) - len(skipped)} audited, {len(found)} known "
             "vulnerabilities"] + [f"  {f}" for f in found]
    failed = bool(found)
    if skipped:
        lines.append(f"pip-audit: NOT AUDITED {len(skipped)} of {len(deps)} packages; first reason: "
                     f"{skipped[0]['skip_reason']} (the vulnerability service is unreachable from this machine)")
        failed |= os.environ.get("TAILOR_AUDIT_REQUIRE_SERVICE") == "1"
    return int(failed), lines


def lock_drift() -> list[str]:
    """Installed distributions whose version differs from the lock (the lock is refreshed by `make lock`)."""
    from importlib.metadata import distributions

    locked = dict(line.split("==", 1) for line in (ROOT / "requirements.lock").read_text().split()
                  if "==" in line)
    norm = {k.lower().replace("_", "-"): v for k, v in locked.items()}
    return [f"{d.metadata['Name']} {d.version} (lock: {norm.get(d.metadata['Name'].lower().replace('_', '-'), 'absent')})"
            for d in distributions() if d.metadata["Name"] not in (None, "tailor-lm", "pip", "setuptools", "wheel")
            and norm.get(d.metadata["Name"].lower().replace("_", "-")) != d.version]


def bandit() -> tuple[int, list[str]]:
    res = subprocess.run([str(BIN / "bandit"), "-q", "-r", str(ROOT / "src" / "tailor"), "--severity-level", "high",
                          "-f", "json"], capture_output=True, text=True, check=False)
    results = json.loads(res.stdout or "{}").get("results", [])
    lines = [f"bandit: {len(results)} high-severity findings in src/tailor"]
    lines += [f"  {r['filename']}:{r['line_number']}: {r['test_id']} {r['issue_text']}" for r in results]
    return int(bool(results) or res.returncode not in (0, 1)), lines


def main() -> int:
    status = 0
    for check in (pip_audit, bandit):
        failed, lines = check()
        print("\n".join(lines))
        status |= failed
    drift = lock_drift()
    if drift:
        print(f"requirements.lock differs from the installed environment for {len(drift)} package(s) "
              f"(run `make lock`): {', '.join(drift[:8])}")
    return status


if __name__ == "__main__":
    sys.exit(main())
