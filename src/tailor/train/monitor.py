"""What a training run reports as it goes: metrics.jsonl, TensorBoard, MLflow, the live display, warnings."""

from __future__ import annotations

import json
import math
from pathlib import Path

from rich.progress import Progress

from tailor.errors import TailorError


def truncate_jsonl(path: Path, step: int) -> None:
    """Drop logged rows past `step`: a resumed run logs them again, exactly once."""
    if not path.is_file():
        return
    rows = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    kept = []
    for line in rows:
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line)
        except (json.JSONDecodeError, KeyError):
            continue  # a line cut short by a kill
    path.write_text("".join(x + "\n" for x in kept), encoding="utf-8")


class Monitor:
    """Writes every logged row to metrics.jsonl, TensorBoard and (when configured) MLflow; shows progress."""

    def __init__(self, folder: Path, start_step: int, total: int, tensorboard: bool, mlflow_uri: str | None,
                 experiment: str, params: dict, progress: Progress | None, warn, enabled: bool = True,
                 stops_early: bool = False):
        self.enabled, self.warn, self.progress = enabled, warn, progress
        self.stops_early = stops_early  # train.early_stopping is on: the advice is what else to try
        self.path = folder / "metrics.jsonl"
        self.warnings: list[str] = []
        self._overfit_warned = False
        self._val: list[tuple[int, float]] = []
        self._train: list[tuple[int, float]] = []
        self.tb = self.mlflow = None
        self.task = None
        if not enabled:
            return
        truncate_jsonl(self.path, start_step)
        self.log = open(self.path, "a", encoding="utf-8")
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step hides events a killed run wrote past the checkpoint it resumes from
            self.tb = SummaryWriter(str(folder / "tensorboard"), purge_step=start_step or None)
        if mlflow_uri:
            self._start_mlflow(mlflow_uri, experiment, params)
        if progress is not None:
            self.task = progress.add_task("train", total=total, completed=start_step)

    def _start_mlflow(self, uri: str, experiment: str, params: dict) -> None:
        try:
            import mlflow
        except ImportError:
            raise TailorError("train.tracking.mlflow_uri is set but MLflow is not installed: "
                              "pip install mlflow-skinny") from None
        mlflow.set_tracking_uri(uri)
        mlflow.set_experiment(experiment)
        self.mlflow = mlflow
        mlflow.start_run()
        mlflow.log_params(params)

    def write(self, row: dict) -> None:
        """Log one row: {'step', 'split', metric: value, ...}."""
        if not self.enabled:
            return
        self.log.write(json.dumps(row) + "\n")
        self.log.flush()
        numbers = {k: v for k, v in row.items() if k not in ("step", "split") and isinstance(v, (int, float))
                   and math.isfinite(v)}
        if self.tb is not None:
            for key, value in numbers.items():
                self.tb.add_scalar(f"{row['split']}/{key}", value, row["step"])
        if self.mlflow is not None:
            self.mlflow.log_metrics({f"{row['split']}/{k}": v for k, v in numbers.items()}, step=row["step"])
        if "loss" in row:
            (self._val if row["split"] == "validation" else self._train).append((row["step"], row["loss"]))
            if row["split"] == "validation":
                self._check_overfitting()

    def _check_overfitting(self) -> None:
        """Warn once when validation loss rose over the last two passes while training loss fell."""
        if self._overfit_warned or len(self._val) < 3:
            return
        (s0, v0), (_, v1), (s2, v2) = self._val[-3:]
        train_then = [loss for step, loss in self._train if step <= s0][-1:]
        train_now = [loss for step, loss in self._train if step <= s2][-1:]
        if v2 > v1 > v0 and train_then and train_now and train_now[0] < train_then[0]:
            self._overfit_warned = True
            advice = "more data, dropout or weight decay" if self.stops_early else "early_stopping, more data or dropout"
            self.note(f"validation loss rose from {v0:.4f} (step {s0}) to {v2:.4f} (step {s2}) while training "
                      f"loss fell: the model is overfitting (consider {advice})")

    def note(self, message: str) -> None:
        """A warning the user sees now and the summary keeps."""
        self.warnings.append(message)
        if self.enabled:
            self.warn(message)

    def show(self, step: int, info: str) -> None:
        if self.progress is not None and self.task is not None:
            self.progress.update(self.task, completed=step, info=info)

    def close(self) -> None:
        if not self.enabled:
            return
        self.log.close()
        if self.tb is not None:
            self.tb.close()
        if self.mlflow is not None:
            self.mlflow.end_run()
