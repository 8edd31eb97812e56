"""The datatrove pipeline step that cleans shards of records: what runs in each worker, locally through
LocalPipelineExecutor or on a cluster through datatrove's Slurm and Ray executors."""

from __future__ import annotations

import json
from pathlib import Path

from datatrove.pipeline.base import PipelineStep

from tailor.data.clean import build_step
from tailor.data.engine import ChunkWriter, StepStats, fields_changed, process, read_chunks
from tailor.spec.data import Data


class CleanShards(PipelineStep):
    """A datatrove pipeline step: rank r of W cleans shards r, r+W, r+2W, ... with the chosen steps."""

    name = "tailor clean"
    type = "🧹 - CLEAN"

    def __init__(self, data: dict, step_indexes: list[int], chunks: list[str], out: str):
        super().__init__()
        self.data, self.step_indexes, self.chunks, self.out = data, step_indexes, chunks, out

    def run(self, _docs=None, rank: int = 0, world_size: int = 1):
        from loguru import logger

        logger.disable("datatrove")  # in the worker process too
        data = Data.model_validate(self.data)
        specs = [next(iter(step.items())) for step in data.clean]
        steps = [build_step(*specs[i], data) for i in self.step_indexes]
        for c in range(rank, len(self.chunks), world_size):
            stats = [StepStats(s.name) for s in steps]
            out = Path(self.out)
            writer = ChunkWriter(out / f"tmp-{c:05d}", 1 << 62)
            with open(out / f"dropped-{c:05d}.jsonl", "w", encoding="utf-8") as dropped:
                process(read_chunks([Path(self.chunks[c])]), steps, stats, fields_changed(data, steps), writer, dropped)
            for path in writer.close():
                path.replace(out / f"part-{c:05d}.jsonl")
            (out / f"tmp-{c:05d}").rmdir()
            if not writer.count:  # an all-dropped shard still needs its (empty) file
                (out / f"part-{c:05d}.jsonl").touch()
            (out / f"stats-{c:05d}.json").write_text(json.dumps([s.to_dict() for s in stats]))
        yield from ()
