"""Stage ordering, caching by content hash, and the run directory.

A run lives in `<runs-dir>/<spec name>/<run id>/`. Each stage writes one folder there, atomically,
ending with a marker that records the hash of its inputs (its spec sections and its upstream
stages' outputs) and of its outputs. A finished run is never changed: running the same spec again
either finds every stage up to date (and does nothing), or starts a new run that reuses, by hard
link, every earlier stage whose inputs are unchanged. An unfinished run (crashed, failed, or
stopped with --until) of the same spec is continued in place.

A stage that can resume keeps its state in `<run>/<stage>.work/` (the train stage's checkpoints):
unlike the stage's temp folder it survives a crash, and it is removed once the stage is committed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import shutil
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from rich.console import Console

from tailor import __version__
from tailor.artifacts import MARKER, atomic_dir, atomic_write_json, atomic_write_text, hash_tree, link_tree, recover_dir
from tailor.data import STAGE as DATA
from tailor.errors import TailorError
from tailor.evaluate import STAGE as EVALUATE
from tailor.models import STAGE as MODEL
from tailor.report import STAGE as REPORT
from tailor.spec import Spec, dump_spec, spec_hash
from tailor.stage import Stage
from tailor.tokenizer import STAGE as TOKENIZER
from tailor.train import STAGE as TRAIN


STAGES: tuple[Stage, ...] = (DATA, TOKENIZER, MODEL, TRAIN, EVALUATE, REPORT)
STAGE_NAMES = tuple(s.name for s in STAGES)


def work_dir(run_dir: Path, stage: str) -> Path:
    """Where a stage keeps what lets it resume after a crash (kept until the stage is committed)."""
    return run_dir / f"{stage}.work"


def read_marker(folder: Path) -> dict | None:
    path = folder / MARKER
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


def read_run(run_dir: Path) -> dict:
    path = run_dir / "run.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _runs_of(project: Path) -> list[Path]:
    """Run folders of one spec name, oldest first."""
    return sorted(p for p in project.iterdir() if p.is_dir() and (p / "run.json").is_file()) if project.is_dir() else []


@contextlib.contextmanager
def _locked(run_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on the run; a second `tailor run` on it stops with a clear message."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise TailorError(f"{run_dir}: another tailor process is working on this run") from None
        yield


class Pipeline:
    """Plans and runs the stages of one spec."""

    def __init__(self, spec: Spec, runs_dir: Path, console: Console | None = None, project: Path | None = None,
                 cache_from: tuple[Path, ...] = ()):
        """project: the folder of this spec's runs (default runs_dir/name); cache_from: other such folders
        whose finished stages may be reused."""
        self.spec, self.console = spec, console or Console(stderr=True)
        self.project = Path(project) if project is not None else Path(runs_dir) / spec.name
        self.cache_from = tuple(Path(p) for p in cache_from if Path(p) != self.project)
        self.spec_hash = spec_hash(spec)
        self._inputs_cache: dict[tuple, str] = {}

    def input_hash(self, stage: Stage, outputs: dict[str, str]) -> str:
        """The stage's cache key: exactly the spec values it is handed, the files they name, its upstream outputs."""
        key = (stage.name, tuple(outputs.get(u) for u in stage.upstream))
        if key not in self._inputs_cache:
            self._inputs_cache[key] = stage.key(self.spec, self.project, outputs, __version__)
        return self._inputs_cache[key]

    def call(self, stage: Stage, run_dir: Path, out: Path, progress=None, key: str | None = None) -> dict:
        """Run one stage's function with exactly its declared inputs and its upstream folders."""
        kwargs = {f"{u}_dir": run_dir / u for u in stage.upstream}
        if stage.resumable:
            kwargs |= {"work": work_dir(run_dir, stage.name), "key": key}
        if stage.project:
            kwargs["project"] = self.project
        return stage.run(out, progress=progress, **stage.inputs(self.spec), **kwargs)

    def stage_key(self, run_dir: Path, name: str) -> str:
        """The input hash of stage `name` in run_dir, its upstream stages being finished there."""
        outputs: dict[str, str] = {}
        for stage in STAGES:
            if stage.name == name:
                return self.input_hash(stage, outputs)
            marker = read_marker(run_dir / stage.name)
            if marker is None:
                raise TailorError(f"{run_dir}: stage {stage.name} has not run yet")
            outputs[stage.name] = marker["output_hash"]
        raise TailorError(f"unknown stage {name!r}")

    def up_to_date(self, run_dir: Path, stages: tuple[Stage, ...]) -> bool:
        """Whether every stage in `stages` is finished in run_dir with today's inputs."""
        outputs: dict[str, str] = {}
        for stage in stages:
            marker = read_marker(run_dir / stage.name)
            if not marker or marker["input_hash"] != self.input_hash(stage, outputs):
                return False
            outputs[stage.name] = marker["output_hash"]
        return True

    def choose_run_dir(self, stages: tuple[Stage, ...], force: bool) -> Path:
        """The latest run when it is unfinished or already up to date for this spec; else a new one."""
        runs = _runs_of(self.project)
        if runs:
            latest = runs[-1]
            info = read_run(latest)
            if info.get("spec_hash") == self.spec_hash and (info.get("status") != "complete" or
                                                           (not force and self.up_to_date(latest, stages))):
                return latest
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        run_dir = self.project / f"{stamp}-{self.spec_hash[:6]}"
        n = 1
        while run_dir.exists():
            n += 1
            run_dir = self.project / f"{stamp}-{self.spec_hash[:6]}-{n}"
        return run_dir

    def find_cached(self, stage: Stage, input_hash: str, exclude: Path) -> Path | None:
        """A finished folder of this stage, in any run of this project (or of cache_from), made from the same inputs."""
        for run in [r for p in (self.project, *self.cache_from) for r in reversed(_runs_of(p))]:
            marker = read_marker(run / stage.name)
            if run != exclude and marker and marker["input_hash"] == input_hash:
                return run / stage.name
        return None

    def will_run(self, run_dir: Path, name: str) -> bool:
        """Whether stage `name` would be computed (not skipped or reused) in run_dir, its upstream being done."""
        outputs: dict[str, str] = {}
        for stage in STAGES:
            marker = read_marker(run_dir / stage.name)
            input_hash = self.input_hash(stage, outputs)
            if stage.name == name:
                fresh = marker is not None and marker["input_hash"] == input_hash
                return not fresh and self.find_cached(stage, input_hash, run_dir) is None
            if marker is None:
                raise TailorError(f"{run_dir}: stage {stage.name} has not run yet")
            outputs[stage.name] = marker["output_hash"]
        raise TailorError(f"unknown stage {name!r}")

    def run(self, until: str | None = None, start_from: str | None = None, progress=None,
            run_dir: Path | None = None) -> Path:
        """Run the stages in order (in run_dir, or the run chosen for this spec); return the run directory."""
        last = STAGE_NAMES.index(until) if until else len(STAGES) - 1
        first_forced = STAGE_NAMES.index(start_from) if start_from else None
        if first_forced is not None and first_forced > last:
            raise TailorError(f"--from {start_from} comes after --until {until}")
        stages = STAGES[: last + 1]
        run_dir = run_dir or self.choose_run_dir(stages, force=first_forced is not None)
        with _locked(run_dir):
            info = read_run(run_dir) or {"name": self.spec.name, "run_id": run_dir.name, "spec_hash": self.spec_hash,
                                         "created": datetime.now().isoformat(timespec="seconds"), "stages": {}}
            info["status"] = "running"
            atomic_write_text(run_dir / "spec.resolved.yaml", dump_spec(self.spec))
            atomic_write_json(run_dir / "run.json", info)
            outputs: dict[str, str] = {}
            try:
                for i, stage in enumerate(stages):
                    forced = first_forced is not None and i >= first_forced
                    outputs[stage.name] = self._run_stage(stage, run_dir, outputs, forced, info, progress)
                    atomic_write_json(run_dir / "run.json", info)
            except BaseException as e:
                info["status"] = "failed"
                info["error"] = str(e) or type(e).__name__
                atomic_write_json(run_dir / "run.json", info)
                raise
            info["status"] = "complete" if self.up_to_date(run_dir, STAGES) else "partial"
            info.pop("error", None)
            if (run_dir / "report" / "targets.json").is_file():
                targets = json.loads((run_dir / "report" / "targets.json").read_text())
                info["targets"] = {"met": sum(t["met"] for t in targets), "total": len(targets),
                                   "keys": [t["metric"] for t in targets]}
            info["updated"] = datetime.now().isoformat(timespec="seconds")
            atomic_write_json(run_dir / "run.json", info)
        return run_dir

    def _run_stage(self, stage: Stage, run_dir: Path, outputs: dict, forced: bool, info: dict, progress) -> str:
        folder = run_dir / stage.name
        recover_dir(folder)
        input_hash = self.input_hash(stage, outputs)
        marker = read_marker(folder)
        if not forced and marker and marker["input_hash"] == input_hash:
            self.console.print(f"[dim]• {stage.name:<9} skipped: inputs unchanged[/dim]")
            info["stages"][stage.name] = {**info["stages"].get(stage.name, {}), "status": "skipped"}
            return marker["output_hash"]
        cached = None if forced else self.find_cached(stage, input_hash, run_dir)
        if cached is not None:
            if folder.exists():
                with atomic_dir(folder) as tmp:
                    tmp.rmdir()
                    link_tree(cached, tmp)
            else:
                link_tree(cached, folder)
            _publish(stage, run_dir)
            self.console.print(f"[dim]• {stage.name:<9} reused from run {cached.parent.name}[/dim]")
            info["stages"][stage.name] = {"status": "reused", "from": cached.parent.name}
            return read_marker(folder)["output_hash"]
        self.console.print(f"[bold]▶ {stage.name}[/bold]")
        start = time.perf_counter()
        with atomic_dir(folder) as tmp:
            summary = self.call(stage, run_dir, tmp, progress, input_hash)
            output_hash = hash_tree(tmp)
            atomic_write_json(tmp / MARKER, {"stage": stage.name, "input_hash": input_hash, "output_hash": output_hash,
                                             "seconds": round(time.perf_counter() - start, 2),
                                             "finished": datetime.now().isoformat(timespec="seconds"),
                                             "summary": summary})
        shutil.rmtree(work_dir(run_dir, stage.name), ignore_errors=True)
        _publish(stage, run_dir)
        seconds = time.perf_counter() - start
        self.console.print(f"[green]✓ {stage.name:<9} done in {seconds:.1f}s[/green]")
        info["stages"][stage.name] = {"status": "done", "seconds": round(seconds, 2)}
        return output_hash


def _publish(stage: Stage, run_dir: Path) -> None:
    """Copy the files a stage publishes (report.html, metrics.json) from its folder to the run's root."""
    for name in stage.publish:
        tmp = run_dir / f".{name}.tmp"
        shutil.copy2(run_dir / stage.name / name, tmp)
        tmp.replace(run_dir / name)


def train_on_ranks(spec: Spec, runs_dir: Path, console: Console, progress=None) -> Path:
    """`tailor train` inside a torchrun/accelerate launch: rank 0 runs the stages, every rank trains.

    Rank 0 prepares data, tokenizer and model and tells the others which run folder to use; then
    every rank runs the training loop, and rank 0 commits the train stage.
    """
    from accelerate import PartialState

    from tailor.device import pick_device
    from tailor.train.distributed import broadcast_text

    state = PartialState(cpu=pick_device(spec.problem.constraints.device).type == "cpu")  # joins the launcher's group
    pipeline = Pipeline(spec, runs_dir, console)
    text = None
    if state.is_main_process:
        run_dir = pipeline.run(until="model")
        text = json.dumps({"run_dir": str(run_dir), "train": pipeline.will_run(run_dir, "train")})
    info = json.loads(broadcast_text(text))
    run_dir = Path(info["run_dir"])
    if state.is_main_process:
        pipeline.run(until="train", progress=progress, run_dir=run_dir)
    elif info["train"]:
        work = work_dir(run_dir, "train")
        pipeline.call(TRAIN, run_dir, work, key=pipeline.stage_key(run_dir, "train"))
    state.wait_for_everyone()
    return run_dir


def list_runs(runs_dir: Path) -> list[dict]:
    """Every run under runs_dir with its status, targets and metrics, newest first."""
    rows = []
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return rows
    for project in sorted(p for p in runs_dir.iterdir() if p.is_dir()):
        for run in _runs_of(project):
            info = read_run(run)
            metrics_path = run / "metrics.json"
            rows.append({**info, "path": str(run),
                         "metrics": json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}})
    return sorted(rows, key=lambda r: r.get("created", ""), reverse=True)
