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
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import Progress

from tailor.artifacts import atomic_write_json, link_tree
from tailor.spec.data import Fields
from tailor.spec.model import Adapt
from tailor.spec.problem import Constraints
from tailor.spec.train import PREFERENCE_OBJECTIVES, Train
from tailor.stage import Stage

__all__ = ["run_train", "model_card", "STAGE"]

FINAL = "model"            # the trained model folder inside the stage directory
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
WORK_FILES = ("checkpoints", "metrics.jsonl", "tensorboard", "plan.json", "fingerprint.json")
QUARANTINE = "quarantine"  # damaged checkpoints with their reasons: kept even when the inputs change


def model_card(name: str, fields: Fields, output: str) -> dict:
    """What a server or a later stage needs to use the trained model: its input format."""
    fmt = "text" if fields.text is not None else "chat" if fields.messages is not None else "pairs"
    return {"name": name, "format": fmt, "fields": fields.model_dump(),
            "output": output}


def _prepare_work(work: Path, fingerprint: str, console: Console) -> None:
    """Start afresh when the work folder was made from other inputs (the stage's input hash differs)."""
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


@dataclass
class _Setup:
    """What a training run is made of, before the loop: device, data, batches, model and its adaptation."""

    acc: object
    console: Console
    codec: object
    model: torch.nn.Module
    labels: list[str] | None
    plan: dict
    max_time: float | None
    train_batches: object
    val_batches: object
    adapted: object
    notes: list[str]


def _setup(cfg: Train, adapt: Adapt, fields: Fields, output: str, constraints: Constraints, data_dir: Path,
           tokenizer_dir: Path, model_dir: Path, work: Path, key: str, progress) -> _Setup:
    from tailor.splits import load_split
    from tailor.models import context_length, is_seq2seq, labels_of, load_model
    from tailor.models.adapt import apply_lora, check_quantized, prepare
    from tailor.models.pretrained import load_quantized
    from tailor.tokenizer import Codec
    from tailor.train.batches import make_batches
    from tailor.train.distributed import make_accelerator
    from tailor.train.optim import make_optimizer

    acc = make_accelerator(cfg, constraints.device)
    check_quantized(adapt.lora, acc.device)  # before anything is loaded or measured: QLoRA needs CUDA and bitsandbytes
    console = progress.console if progress is not None else Console(stderr=True)
    if acc.is_main_process:
        _prepare_work(work, key, console)
    acc.wait_for_everyone()
    torch.manual_seed(cfg.seed)
    codec = Codec.load(tokenizer_dir)
    quantized = adapt.lora is not None and adapt.lora.quantize != "none"
    model = load_quantized(model_dir, acc.device) if quantized else load_model(model_dir).to(acc.device)
    if adapt.lora is not None:  # before planning, so that the plan measures the steps the run takes
        model = apply_lora(model, adapt.lora)
    block, labels = context_length(model), labels_of(model)
    train_records, val_records = load_split(data_dir, "train"), load_split(data_dir, "validation")
    notes = []
    if not val_records:
        notes.append("the validation split is empty: validation loss is measured on the train split")
        val_records = train_records
    max_time = cfg.max_time if cfg.max_time is not None else constraints.time_budget

    def batches_for(records: list[dict], size: int):
        if cfg.objective in PREFERENCE_OBJECTIVES:
            from tailor.train.preference_batches import preference_batches

            return preference_batches(records, fields, codec, block, size, cfg.seed, cfg.loss_on, cfg.group_by_length)
        return make_batches(records, codec, block, size, cfg.seed, fields=fields, output=output, labels=labels,
                            loss_on=cfg.loss_on, packing=cfg.packing, group_by_length=cfg.group_by_length,
                            seq2seq=is_seq2seq(model))

    plan = _plan(cfg, constraints, work, model, lambda m: make_optimizer(m, cfg.optimizer),
                 lambda n: batches_for(train_records, n), lambda n: batches_for(val_records, n), acc, max_time,
                 len(train_records), console, _planning_preference(cfg, model))
    train_batches = batches_for(train_records, plan["batch_size"])
    # freezing, gradual unfreezing, layer-wise rates, LoRA (tailor.models.adapt)
    adapted = prepare(model, adapt, cfg.optimizer.weight_decay,
                      {"steps": 1, "epochs": getattr(train_batches, "per_epoch", 1)})
    return _Setup(acc, console, codec, adapted.model, labels, plan, plan.get("budget_seconds") or max_time,
                  train_batches, batches_for(val_records, plan["batch_size"]), adapted, notes)


def _planning_preference(cfg: Train, model: torch.nn.Module):
    """The preference objective the plan times: the run's, with the untrained model standing in as reference."""
    if cfg.objective not in PREFERENCE_OBJECTIVES:
        return None
    from tailor.models.preference import Preference, answer_logps

    return Preference(cfg.objective, cfg.preference.beta, lambda ids, t: answer_logps(model, ids, t)[0])


def _preference(cfg: Train, wrapped: torch.nn.Module, lora: bool, model_dir: Path, device):
    """The run's preference objective (None for likelihood); a DPO reference that costs no copy under LoRA."""
    if cfg.objective not in PREFERENCE_OBJECTIVES:
        return None
    from tailor.models import load_model
    from tailor.models.preference import Preference, adapters_off, frozen_copy

    beta = cfg.preference.beta
    if cfg.objective == "orpo":
        return Preference("orpo", beta, None, "none: ORPO needs no reference model")
    if lora:
        return Preference("dpo", beta, adapters_off(wrapped), "the base model with its LoRA adapters switched off")
    # the model stage's weights: the same initial model at every (re)start, so a resumed run scores alike
    return Preference("dpo", beta, frozen_copy(load_model(model_dir).to(device)),
                      "a frozen copy of the initial weights (the model stage's), held beside the trained model")


def run_train(out: Path, *, train: Train, adapt: Adapt, fields: Fields, output: str, constraints: Constraints,
              name: str, data_dir: Path, tokenizer_dir: Path, model_dir: Path, work: Path, key: str,
              progress: Progress | None = None) -> dict:
    """Write model/ (trained, with its tokenizer), checkpoints/, metrics.jsonl, plan.json and summary.json.

    train: the spec's section; adapt: model.adapt (what trains); fields, output: what the model reads and
    answers; constraints: device and budget; name: the spec's name (model card, tracking). `work` keeps the
    checkpoints across crashes; `key` (the stage's input hash) says which inputs they were made from.
    """
    from accelerate.utils import DistributedType

    from tailor.models import load_model
    from tailor.train.checkpoint import Checkpoints, gather_state
    from tailor.train.distributed import prepare_for_training
    from tailor.train.loop import Engine, LoopState, train_loop
    from tailor.models.losses import Objective, class_weight_tensor
    from tailor.train.monitor import Monitor
    from tailor.train.optim import make_optimizer

    cfg, out_dir, work = train, Path(out), Path(work)
    s = _setup(cfg, adapt, fields, output, constraints, data_dir, tokenizer_dir, model_dir, work, key, progress)
    acc, model, plan, main = s.acc, s.model, s.plan, s.acc.is_main_process
    # eval_every auto: from the planned step count (a plan.json of an older run may not say)
    cfg = cfg.model_copy(update={"eval_every": plan.get("eval_every") or cfg.eval_interval(plan["max_steps"])})
    warn = (lambda message: s.console.print(f"[yellow]warning:[/yellow] {message}")) if main else (lambda m: None)
    optimizer = make_optimizer(model, cfg.optimizer, s.adapted.param_groups)
    # a LoRA base stays frozen: checkpoints hold the adapters (and their optimizer state), not the base again
    trained = {n for n, p in model.named_parameters(remove_duplicate=False) if p.requires_grad}
    checkpoints = Checkpoints(work / "checkpoints", cfg.checkpoints.keep_last, warn,
                              trained if s.adapted.summary["lora"] else None, work / QUARANTINE)
    state = LoopState()
    objective = Objective(cfg.loss.label_smoothing, class_weight_tensor(cfg.loss.class_weights, s.labels))
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
                s.console.print(f"resuming from {good} (step {state.step} of {plan['max_steps']})")
        preference = _preference(cfg, wrapped, s.adapted.summary["lora"], model_dir, acc.device)
        engine = Engine(wrapped, model, optimizer, acc, objective, s.adapted.on_step, preference)
        params = {"batch_size": plan["batch_size"], "max_steps": plan["max_steps"], "optimizer": cfg.optimizer.name,
                  "lr": cfg.optimizer.lr, "precision": cfg.precision, "processes": acc.num_processes}
        monitor = Monitor(work, state.step, plan["max_steps"], cfg.tracking.tensorboard, cfg.tracking.mlflow_uri,
                          cfg.tracking.experiment or name, params, progress, warn, enabled=main)
        try:
            summary = train_loop(engine, s.train_batches, s.val_batches, cfg, plan["max_steps"], checkpoints, monitor,
                                 state, s.max_time, {"plan": plan, "schedule": cfg.schedule.model_dump()})
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
    if preference is not None:
        summary["preference"] = {"objective": preference.kind, "beta": preference.beta,
                                 "reference": preference.reference_kind}
    if s.adapted.summary["quantized"] != "none":
        from tailor.models.adapt import dequantized

        model = dequantized(model, model_dir, adapt.lora)
    _finish(model, s, summary, out_dir, work, tokenizer_dir, model_card(name, fields, output))
    return summary


def _finish(model, s: _Setup, summary: dict, out_dir: Path, work: Path, tokenizer_dir: Path, card: dict) -> None:
    """Save the trained model with its tokenizer and manifest; carry the work folder's logs; write summary.json."""
    from tailor.manifest import write_manifest
    from tailor.models import save_model
    from tailor.train.plots import curve_pngs

    final = out_dir / FINAL
    save_model(model.cpu(), final, {"tailor": card})
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
    rows = [json.loads(x) for x in (work / "metrics.jsonl").read_text().splitlines() if x.strip()]
    if "preference" in summary:  # the rewards at the first and last validation passes, for the report
        passes = [r for r in rows if r["split"] == "validation"]
        keep = ("step", "loss", "reward_accuracy", "reward_margin", "reward_chosen", "reward_rejected", "pairs")
        summary["preference"]["validation"] = [{k: r.get(k) for k in keep} for r in passes[:1] + passes[1:][-1:]]
    (out_dir / "plots").mkdir(exist_ok=True)
    for name, png in curve_pngs(rows).items():
        (out_dir / "plots" / f"{name}.png").write_bytes(png)
    summary.update(device=str(s.acc.device), processes=s.acc.num_processes, precision=s.acc.mixed_precision,
                   batch_size=s.plan["batch_size"], notes=s.notes, plan=s.plan.get("reason"),
                   parameters=sum(p.numel() for p in model.parameters()), adapt=s.adapted.summary,
                   unfrozen=getattr(s.adapted.on_step, "log", []))
    summary["best_validation_loss"] = summary["best_validation"]["value"] \
        if summary["best_validation"]["metric"] == "validation/loss" else None
    atomic_write_json(out_dir / "summary.json", summary)


def _plan(cfg: Train, constraints: Constraints, work: Path, model, new_optimizer, train_for, val_for, acc, max_time,
          n_train: int, console: Console, preference=None) -> dict:
    """The batch size and step count: from the spec, or measured and chosen once (plan.json) and then reused."""
    from tailor.train.distributed import broadcast_text
    from tailor.train.plan import CANDIDATES, choose_plan, default_memory_limit, measure, time_eval

    path = work / "plan.json"
    if cfg.batch_size != "auto" and cfg.max_steps != "auto":
        return {"batch_size": cfg.batch_size, "max_steps": cfg.max_steps, "eval_every": cfg.eval_interval(cfg.max_steps),
                "reason": "from the spec"}
    if acc.is_main_process and not path.is_file():
        import time

        start = time.perf_counter()
        if cfg.batch_size == "auto":
            sizes = [s for s in CANDIDATES if s <= max(n_train, CANDIDATES[0]) and s % cfg.grad_accum == 0]
        else:
            sizes = [cfg.batch_size]
        measured = measure(model, new_optimizer, train_for, sizes, acc.device, acc.autocast, preference=preference,
                           budget=max_time)
        probe_size = max(sizes)
        eval_seconds = time_eval(model, val_for(probe_size), cfg.eval_batches, acc.device, preference)
        spent = time.perf_counter() - start
        budget = max_time - spent if max_time is not None else None
        memory = default_memory_limit(acc.device, constraints.max_memory)
        plan = choose_plan(measured, cfg, budget, memory, eval_seconds).to_dict()
        plan["planning_seconds"] = round(spent, 2)
        atomic_write_json(path, plan)
        console.print(f"[bold]plan:[/bold] {plan['reason']} (measured in {spent:.1f}s; predicted "
                      f"{plan['predicted_seconds']:.0f}s)")
    if acc.num_processes > 1:
        return json.loads(broadcast_text(path.read_text() if acc.is_main_process else None))
    return json.loads(path.read_text())


STAGE = Stage("train", run=run_train, upstream=("data", "tokenizer", "model"), resumable=True,
              reads={"train": "train", "adapt": "model.adapt", "fields": "data.fields", "output": "problem.output",
                     "constraints": "problem.constraints", "name": "name"})
