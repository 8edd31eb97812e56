"""The train stage: fit the model stage's network on the train split, resumably.

Checkpoints, metrics and the plan live in a work folder (`<run>/train.work/` under `tailor run`)
that survives a crash; a later run with the same inputs continues from its newest good
checkpoint. The finished stage folder gets the trained model, the kept checkpoints, metrics.jsonl,
TensorBoard events, plan.json and summary.json.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import Progress

from tailor.artifacts import atomic_write_json, hash_json, hash_tree, link_tree
from tailor.errors import TailorError
from tailor.spec import Spec
from tailor.train.distributed import pick_device

__all__ = ["run_train", "pick_device", "model_card"]

FINAL = "model"            # the trained model folder inside the stage directory
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
WORK_FILES = ("checkpoints", "metrics.jsonl", "tensorboard", "plan.json", "fingerprint.json")
QUARANTINE = "quarantine"  # damaged checkpoints with their reasons: kept even when the inputs change


def model_card(spec: Spec) -> dict:
    """What a server or a later stage needs to use the trained model: its input format."""
    f = spec.data.fields
    return {"name": spec.name, "format": "text" if f.text is not None else "pairs", "fields": f.model_dump(),
            "output": spec.problem.output}


def _fingerprint(spec: Spec, *folders: Path) -> str:
    """What the work folder's checkpoints were made from: the train spec and the upstream artifacts."""
    from tailor.artifacts import MARKER

    parts = []
    for folder in folders:
        marker = folder / MARKER
        parts.append(json.loads(marker.read_text())["output_hash"] if marker.is_file() else hash_tree(folder))
    keep = spec.model_dump(mode="json", include={"name", "train", "data", "problem"})
    keep["problem"] = keep["problem"]["constraints"]
    return hash_json({"spec": keep, "upstream": parts})


def _prepare_work(work: Path, fingerprint: str, console: Console) -> None:
    """Start afresh when the work folder was made from other inputs."""
    path = work / "fingerprint.json"
    old = json.loads(path.read_text()).get("fingerprint") if path.is_file() else None
    if old is not None and old != fingerprint:
        console.print(f"[yellow]note:[/yellow] {work} holds checkpoints of other inputs; starting afresh")
        quarantine = work / QUARANTINE
        if quarantine.is_dir() and any(p.is_file() for p in quarantine.iterdir()):
            # kept, but no longer a reason to refuse: they were made from other inputs
            aside = quarantine / f"other-inputs-{old[:12]}"
            aside.mkdir(exist_ok=True)
            for entry in [p for p in quarantine.iterdir() if not p.name.startswith("other-inputs-")]:
                os.replace(entry, aside / entry.name)
        for name in WORK_FILES:
            target = work / name
            shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink(missing_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, {"fingerprint": fingerprint})


def run_train(spec: Spec, data_dir: Path, tokenizer_dir: Path, model_dir: Path, out_dir: Path,
              progress: Progress | None = None, work_dir: Path | None = None, require_resume: bool = False) -> dict:
    """Write model/ (trained, with its tokenizer), checkpoints/, metrics.jsonl, plan.json and summary.json."""
    from tailor.data import load_split
    from tailor.deploy.manifest import write_manifest
    from tailor.models import context_length, labels_of, load_model, save_model
    from tailor.models.adapt import prepare
    from tailor.tokenizer import Codec
    from tailor.train.batches import make_batches
    from accelerate.utils import DistributedType

    from tailor.train.checkpoint import Checkpoints, gather_state
    from tailor.train.distributed import make_accelerator, prepare_for_training
    from tailor.train.loop import Engine, LoopState, train_loop
    from tailor.train.losses import Objective, class_weight_tensor
    from tailor.train.monitor import Monitor
    from tailor.train.optim import make_optimizer

    cfg = spec.train
    out_dir, work = Path(out_dir), Path(work_dir) if work_dir is not None else Path(out_dir)
    acc = make_accelerator(cfg, spec.problem.constraints.device)
    main = acc.is_main_process
    console = progress.console if progress is not None else Console(stderr=True)

    def warn(message: str) -> None:
        if main:
            console.print(f"[yellow]warning:[/yellow] {message}")

    if main:
        _prepare_work(work, _fingerprint(spec, data_dir, tokenizer_dir, model_dir), console)
    acc.wait_for_everyone()
    torch.manual_seed(cfg.seed)
    codec = Codec.load(tokenizer_dir)
    model = load_model(model_dir).to(acc.device)
    block = context_length(model)
    labels = labels_of(model)
    train_records = load_split(data_dir, "train")
    val_records = load_split(data_dir, "validation")
    notes = []
    if not val_records:
        notes.append("the validation split is empty: validation loss is measured on the train split")
        val_records = train_records
    max_time = cfg.max_time if cfg.max_time is not None else spec.problem.constraints.time_budget

    def batches_for(records: list[dict], size: int):
        return make_batches(spec, records, codec, block, size, cfg.seed, labels)

    def new_optimizer(m: torch.nn.Module) -> torch.optim.Optimizer:
        return make_optimizer(m, cfg.optimizer)

    plan = _plan(spec, work, model, new_optimizer, lambda n: batches_for(train_records, n),
                 lambda n: batches_for(val_records, n), acc, max_time, len(train_records), console)
    max_time = plan.get("budget_seconds") or max_time
    batch_size, max_steps = plan["batch_size"], plan["max_steps"]
    train_batches, val_batches = batches_for(train_records, batch_size), batches_for(val_records, batch_size)
    # freezing, gradual unfreezing, layer-wise rates, LoRA (tailor.models.adapt)
    adapted = prepare(model, spec.model.adapt, cfg.optimizer.weight_decay,
                      {"steps": 1, "epochs": getattr(train_batches, "per_epoch", 1)})
    model = adapted.model

    def new_optimizer(m: torch.nn.Module) -> torch.optim.Optimizer:
        return make_optimizer(m, cfg.optimizer, adapted.param_groups if m is model else None)

    optimizer = new_optimizer(model)
    # a LoRA base stays frozen: checkpoints hold the adapters (and their optimizer state), not the base again
    trained = {n for n, p in model.named_parameters(remove_duplicate=False) if p.requires_grad}
    checkpoints = Checkpoints(work / "checkpoints", cfg.checkpoints.keep_last, warn,
                              trained if adapted.summary["lora"] else None, work / QUARANTINE)
    state = LoopState()
    objective = Objective(cfg.loss.label_smoothing, class_weight_tensor(cfg.loss.class_weights, labels))
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(cfg.deterministic, warn_only=True)
    try:
        wrapped, optimizer = prepare_for_training(acc, torch.compile(model) if cfg.compile else model, optimizer)
        good = checkpoints.resume_point() if main else None  # damaged ones are quarantined, never deleted
        acc.wait_for_everyone()
        if not main:
            good = checkpoints.latest_good(drop_bad=False)
        if good is not None:  # loaded into the prepared model: FSDP shards what every rank reads
            state = LoopState(**checkpoints.load(good, wrapped, optimizer)["loop"])
            if main:
                console.print(f"resuming from {good} (step {state.step} of {max_steps})")
        elif require_resume:
            raise TailorError(f"--resume: no checkpoint to resume from in {work / 'checkpoints'}")
        engine = Engine(wrapped, model, optimizer, acc, objective, adapted.on_step)
        params = {"batch_size": batch_size, "max_steps": max_steps, "optimizer": cfg.optimizer.name,
                  "lr": cfg.optimizer.lr, "precision": cfg.precision, "processes": acc.num_processes}
        monitor = Monitor(work, state.step, max_steps, cfg.tracking.tensorboard, cfg.tracking.mlflow_uri,
                          cfg.tracking.experiment or spec.name, params, progress, warn, enabled=main)
        try:
            summary = train_loop(engine, train_batches, val_batches, cfg, max_steps, checkpoints, monitor, state,
                                 max_time, {"plan": plan, "schedule": cfg.schedule.model_dump()})
        finally:
            monitor.close()
    finally:
        torch.use_deterministic_algorithms(deterministic)
    if acc.distributed_type == DistributedType.FSDP:  # the trained weights, gathered whole on rank 0
        weights = gather_state(wrapped, None)[0]
        if main:
            model = load_model(model_dir)
            model.load_state_dict(weights)
    if not main:
        return summary
    final = out_dir / FINAL
    save_model(model.cpu(), final, {"tailor": model_card(spec)})
    for name in TOKENIZER_FILES:
        shutil.copy2(tokenizer_dir / name, final / name)
    write_manifest(final)  # a server verifies the folder against it before loading
    if work != out_dir:  # the finished stage carries the kept checkpoints and the logs
        for name in (*WORK_FILES, QUARANTINE):
            src = work / name
            if src.is_dir():
                link_tree(src, out_dir / name)
            elif src.is_file():
                shutil.copy2(src, out_dir / name)
    from tailor.train.plots import curve_pngs

    rows = [json.loads(x) for x in (work / "metrics.jsonl").read_text().splitlines() if x.strip()]
    (out_dir / "plots").mkdir(exist_ok=True)
    for name, png in curve_pngs(rows).items():
        (out_dir / "plots" / f"{name}.png").write_bytes(png)
    summary.update(device=str(acc.device), processes=acc.num_processes, precision=acc.mixed_precision,
                   batch_size=batch_size, notes=notes, plan=plan.get("reason"),
                   parameters=sum(p.numel() for p in model.parameters()), adapt=adapted.summary,
                   unfrozen=getattr(adapted.on_step, "log", []))
    summary["best_validation_loss"] = summary["best_validation"]["value"] \
        if summary["best_validation"]["metric"] == "validation/loss" else None
    atomic_write_json(out_dir / "summary.json", summary)
    return summary


def _plan(spec: Spec, work: Path, model, new_optimizer, train_for, val_for, acc, max_time, n_train: int,
          console: Console) -> dict:
    """The batch size and step count: from the spec, or measured and chosen once (plan.json) and then reused."""
    from tailor.train.distributed import broadcast_text
    from tailor.train.plan import CANDIDATES, choose_plan, default_memory_limit, measure, time_eval

    cfg = spec.train
    path = work / "plan.json"
    if cfg.batch_size != "auto" and cfg.max_steps != "auto":
        return {"batch_size": cfg.batch_size, "max_steps": cfg.max_steps, "reason": "from the spec"}
    if acc.is_main_process and not path.is_file():
        import time

        start = time.perf_counter()
        if cfg.batch_size == "auto":
            sizes = [s for s in CANDIDATES if s <= max(n_train, CANDIDATES[0]) and s % cfg.grad_accum == 0]
        else:
            sizes = [cfg.batch_size]
        measured = measure(model, new_optimizer, train_for, sizes, acc.device, acc.autocast)
        probe_size = max(sizes)
        eval_seconds = time_eval(model, val_for(probe_size), cfg.eval_batches, acc.device)
        spent = time.perf_counter() - start
        budget = max_time - spent if max_time is not None else None
        memory = default_memory_limit(acc.device, spec.problem.constraints.max_memory)
        plan = choose_plan(measured, cfg, budget, memory, eval_seconds).to_dict()
        plan["planning_seconds"] = round(spent, 2)
        atomic_write_json(path, plan)
        console.print(f"[bold]plan:[/bold] {plan['reason']} (measured in {spent:.1f}s; predicted "
                      f"{plan['predicted_seconds']:.0f}s)")
    if acc.num_processes > 1:
        return json.loads(broadcast_text(path.read_text() if acc.is_main_process else None))
    return json.loads(path.read_text())
