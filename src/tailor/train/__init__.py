"""The train stage: fit the model stage's network on the train split."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from rich.progress import Progress

from tailor.artifacts import atomic_write_json
from tailor.spec import Spec

FINAL = "model"            # the trained model folder inside the stage directory
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def pick_device(choice: str) -> torch.device:
    """auto: CUDA, then Apple MPS, then CPU."""
    if choice == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(choice)


def model_card(spec: Spec) -> dict:
    """What a server or a later stage needs to use the trained model: its input format."""
    f = spec.data.fields
    return {"name": spec.name, "format": "text" if f.text is not None else "pairs", "fields": f.model_dump()}


def run_train(spec: Spec, data_dir: Path, tokenizer_dir: Path, model_dir: Path, out_dir: Path,
              progress: Progress | None = None) -> dict:
    """Write model/ (trained, with its tokenizer), checkpoints/, metrics.jsonl and summary.json."""
    from tailor.data import load_split
    from tailor.deploy.manifest import write_manifest
    from tailor.models import load_model, save_model
    from tailor.tokenizer import Codec
    from tailor.train.batches import make_batches
    from tailor.train.checkpoint import save_checkpoint
    from tailor.train.loop import make_optimizer, train_loop

    cfg = spec.train
    torch.manual_seed(cfg.seed)
    device = pick_device(spec.problem.constraints.device)
    codec = Codec.load(tokenizer_dir)
    model = load_model(model_dir)
    block = model.config.block_size
    train_records = load_split(data_dir, "train")
    val_records = load_split(data_dir, "validation")
    notes = []
    if not val_records:
        notes.append("the validation split is empty: validation loss is measured on the train split")
        val_records = train_records
    train_batches = make_batches(spec, train_records, codec, block, cfg.batch_size, cfg.seed)
    val_batches = make_batches(spec, val_records, codec, block, cfg.batch_size, cfg.seed)
    optimizer = make_optimizer(model, cfg)
    max_time = cfg.max_time if cfg.max_time is not None else spec.problem.constraints.time_budget
    summary = train_loop(model, optimizer, train_batches, val_batches, cfg, device, out_dir / "metrics.jsonl",
                         max_time, progress)
    model.cpu()
    save_checkpoint(out_dir / "checkpoints" / f"step-{summary['steps']:07d}", model, optimizer, summary["steps"])
    final = out_dir / FINAL
    save_model(model, final, {"tailor": model_card(spec)})
    for name in TOKENIZER_FILES:
        shutil.copy2(tokenizer_dir / name, final / name)
    write_manifest(final)  # a server verifies the folder against it before loading
    summary.update(device=str(device), notes=notes, parameters=sum(p.numel() for p in model.parameters()))
    atomic_write_json(out_dir / "summary.json", summary)
    return summary
