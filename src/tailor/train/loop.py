"""The training loop, written out: accumulation, mixed precision, clipping, validation, early stopping,
checkpoints and exact resume, on one process or many (accelerate: DDP or FSDP).

Batch `step` is a pure function of (seed, step) and so is the dropout seed, so a run resumed from
a checkpoint repeats the uninterrupted run exactly (on CPU in deterministic mode). With several
processes every rank builds the same global batch and trains on its share of the rows; the loss
of each share is weighted by its share of the scored tokens, so the gradient equals that of one
process on the whole batch.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch

from tailor.models import compute_loss, scored_positions
from tailor.spec.metrics import better
from tailor.spec.train import Train
from tailor.train.checkpoint import Checkpoints
from tailor.models.losses import IGNORE, Objective
from tailor.models.preference import STATS, Preference, preference_loss, preference_metrics
from tailor.train.monitor import Monitor
from tailor.train.optim import set_lr
from tailor.train.schedule import lr_at

Batch = dict[str, torch.Tensor]
FIT_AFTER = 5      # steps before the pace is trusted to shorten the schedule (the first pays for warm-up)
FIT_SHARE = 0.95   # of max_time the fitted schedule may fill: the last validation pass and checkpoint need the rest

# called after every validation pass with (step, metrics); the tuner reports to optuna and may prune
VALIDATION_HOOK: contextvars.ContextVar[Callable[[int, dict], None] | None] = contextvars.ContextVar(
    "validation_hook", default=None)


@dataclass
class LoopState:
    """Counters a checkpoint carries so that a resumed run continues the same curve."""

    step: int = 0
    tokens: int = 0               # real tokens trained on (padding excluded)
    positions: int = 0            # positions computed, padding included: 1 - tokens / positions is the padding
    horizon: int | None = None    # where the schedule ends when the time budget ends the run before max_steps
    seconds: float = 0.0          # training time spent before this process started
    best: float | None = None     # best validation metric so far
    best_step: int | None = None
    stale: int = 0                # validation passes since the best
    window_loss: float = 0.0      # sums over the steps since the last logged row
    window_steps: int = 0
    window_tokens: int = 0
    window_stats: dict[str, float] = field(default_factory=dict)  # preference objectives: sums of STATS and pairs


@dataclass
class Engine:
    """What the loop trains with; `model` may be wrapped (DDP, FSDP, compiled), `raw_model` is not."""

    model: torch.nn.Module
    raw_model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    accelerator: object           # accelerate.Accelerator
    objective: Objective = field(default_factory=Objective)
    on_step: Callable[[int], None] | None = None  # a head's per-step hook (e.g. gradual unfreezing)
    preference: Preference | None = None          # train.objective dpo/orpo: pairs instead of the head's loss

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    @property
    def rank(self) -> int:
        return self.accelerator.process_index

    @property
    def world(self) -> int:
        return self.accelerator.num_processes


def targets_of(batch: Batch) -> torch.Tensor:
    """The tensor a batch is scored against: next-token `targets` or head `labels`."""
    return batch["targets"] if "targets" in batch else batch["labels"]


def scored(batch: Batch) -> int:
    """How many positions (or examples, or preference pairs) of a batch carry a loss."""
    t = targets_of(batch)
    if t.dim() == 3:  # preference pairs (B, 2, T): each pair is one term of the loss
        return t.shape[0]
    return int((t != IGNORE).sum()) if not t.is_floating_point() else t.shape[0]


def take_rows(batch: Batch, rows: torch.Tensor) -> Batch:
    """The given rows of every tensor in the batch."""
    return {k: v[rows] for k, v in batch.items()}


def trim(batch: Batch) -> Batch:
    """Drop trailing columns that score nothing: under causal attention they cannot change the rest."""
    if "targets" not in batch:
        return batch
    t = batch["targets"]
    if t.dim() == 3:  # preference pairs: input_ids, targets (B, 2, T) and nll_targets (B, T)
        scoring = torch.cat([t.reshape(-1, t.shape[-1]), batch.get("nll_targets", t[:0, 0])])
        used = (scoring != IGNORE).any(dim=0).nonzero()
        width = int(used.max()) + 1 if len(used) else 1
        return {k: v[..., :width] for k, v in batch.items()}
    used = (t != IGNORE).any(dim=0).nonzero()
    width = int(used.max()) + 1 if len(used) else 1
    if width == t.shape[1]:
        return batch
    return {k: v[:, :width] if v.dim() >= 2 and v.shape[:2] == t.shape else v for k, v in batch.items()}


def real_tokens(batch: Batch) -> int:
    """Tokens of a batch that are not padding: the attention mask's ones, the rows' `lengths`, or every position."""
    if "attention_mask" in batch:
        return int(batch["attention_mask"].sum())
    if "lengths" in batch:
        return int(batch["lengths"].sum())
    return batch["input_ids"].numel()


def to_device(batch: Batch, device: torch.device) -> Batch:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


@torch.no_grad()
def evaluate(model: torch.nn.Module, batches, limit: int | None, device: torch.device,
             preference: Preference | None = None) -> dict[str, float]:
    """Mean loss per scored position over the first `limit` evaluation batches (None: all), perplexity,
    and accuracy (argmax equals the target) for token and label heads; for a preference objective the
    mean loss per pair and the reward statistics (tailor.models.preference.STATS)."""
    was_training = model.training
    model.eval()
    if preference is not None:
        values = preference_metrics(model, (trim(b) for b in batches.eval_batches(limit)), preference, device=device)
        model.train(was_training)
        return values
    total, count, hits = 0.0, 0, 0
    for batch in batches.eval_batches(limit):
        batch = to_device(batch, device)
        logits, loss, n = compute_loss(model, batch)
        total += loss.item() * n
        count += n
        t = targets_of(batch)
        if not t.is_floating_point() and logits.shape[:-1] == t.shape:
            hits += int(((logits.argmax(-1) == t) & (t != IGNORE)).sum())
    model.train(was_training)
    loss = total / count if count else float("nan")
    return {"loss": loss, "perplexity": math.exp(min(loss, 700)), "accuracy": hits / count if count else 0.0,
            "tokens": count}


def evaluate_loss(model: torch.nn.Module, batches, limit: int | None, device: torch.device) -> tuple[float, int]:
    """(mean loss per scored token, token count) over the evaluation batches."""
    values = evaluate(model, batches, limit, device)
    return values["loss"], int(values["tokens"])


def _train_step(engine: Engine, batch: Batch, cfg: Train) -> tuple[torch.Tensor, int, int, torch.Tensor]:
    """Forward and backward over this rank's micro-batches: (mean loss of the global batch, real tokens,
    positions, STATS sums).

    The STATS sums (a preference objective's rewards, over the global batch's pairs) are zeros otherwise.

    The loss stays on the device (reading it waits for the backward pass), and scored positions are
    counted on the host, so that nothing in the step waits for the accelerator.
    """
    acc, model = engine.accelerator, engine.model
    n_global = max(1, scored(batch))
    mine = torch.tensor_split(torch.arange(len(targets_of(batch))), engine.world)[engine.rank]
    micro = [m for m in torch.tensor_split(mine, cfg.grad_accum) if len(m)]
    loss_sum = torch.zeros((), device=engine.device, dtype=torch.float64)
    stats = torch.zeros(len(STATS), device=engine.device, dtype=torch.float64)
    tokens = positions = 0
    for i, rows in enumerate(micro):
        mb = trim(take_rows(batch, rows))
        tokens, positions = tokens + real_tokens(mb), positions + mb["input_ids"].numel()  # counted before the copy
        # where next-token targets score only some positions (answers after prompts), the output layer
        # runs only there; found on the host, like n, so that the step never waits for the device
        at = scored_positions(mb["targets"]) if "targets" in mb and engine.preference is None else None
        n = scored(mb) if at is None else len(at)
        mb = to_device(mb, engine.device)
        at = at.to(engine.device, non_blocking=True) if at is not None else None
        sync = contextlib.nullcontext() if i == len(micro) - 1 else acc.no_sync(model)
        with sync, acc.autocast():
            if engine.preference is not None:
                loss, n, sums = preference_loss(model, mb, engine.preference)
                stats += torch.stack([sums[k] for k in STATS]).double()
            else:
                _, loss, n = compute_loss(model, mb, engine.objective, n, at)
            # weight by this micro-batch's share of the scored positions (or pairs); DDP averages over ranks
            acc.backward(loss * (n * engine.world / n_global))
        loss_sum += loss.detach().double() * n
    if engine.world > 1:
        counts = torch.tensor([float(tokens), float(positions)], device=engine.device, dtype=torch.float64)
        both = acc.reduce(torch.cat([loss_sum[None], stats, counts]), reduction="sum")
        loss_sum, stats, tokens, positions = both[0], both[1:-2], int(both[-2].item()), int(both[-1].item())
    return loss_sum / n_global, tokens, positions, stats


def improved(value: float, best: float | None, cfg: Train) -> bool:
    """Whether a validation value beats the best so far, in the watched metric's direction (the metric table's)."""
    if best is None:
        return math.isfinite(value)
    es = cfg.early_stopping
    if es is None:
        return value < best  # the watched metric is validation/loss
    if es.mode != "auto":
        return value > best + es.min_delta if es.mode == "max" else value < best - es.min_delta
    return better(es.metric, value, best, es.min_delta)


def train_loop(engine: Engine, train_batches: Callable[[int], Batch], val_batches, cfg: Train, max_steps: int,
               checkpoints: Checkpoints, monitor: Monitor, state: LoopState, max_time: float | None = None,
               extra_state: dict | None = None) -> dict:
    """Run optimizer steps state.step..max_steps (or until time, early stopping or a NaN); return a summary."""
    run = _Run(engine, cfg, max_steps, checkpoints, monitor, state, extra_state, max_time)
    engine.model.train()
    if state.step == 0 and engine.preference is not None:
        run.before_training(val_batches)
    stopped = None
    while state.step < run.end and stopped is None:
        stopped = run.step(train_batches, val_batches)
    if stopped is None:
        stopped = "max_steps" if run.end == max_steps else \
            f"time budget: the schedule was fitted to the {run.end} steps it allowed (of {max_steps} planned)"
    state.seconds += time.perf_counter() - run.start
    engine.accelerator.wait_for_everyone()
    final = _final_weights(engine, checkpoints, cfg, state, stopped)
    return {"steps": state.step, "tokens": state.tokens, "seconds": round(state.seconds, 2), "stopped_by": stopped,
            "tokens_per_s": round(state.tokens / max(state.seconds, 1e-9), 1),
            "padding_fraction": round(1 - state.tokens / state.positions, 4) if state.positions else 0.0,
            "planned_steps": max_steps, "schedule_steps": run.end,
            "best_validation": {"metric": f"validation/{run.metric}", "value": state.best, "step": state.best_step},
            "final_weights": final, "warnings": monitor.warnings}


class _Run:
    """One call of train_loop: its steps, logs, validation passes and checkpoints; `step` says why it stops."""

    def __init__(self, engine: Engine, cfg: Train, max_steps: int, checkpoints: Checkpoints, monitor: Monitor,
                 state: LoopState, extra_state: dict | None, max_time: float | None = None):
        self.engine, self.cfg, self.max_steps, self.checkpoints = engine, cfg, max_steps, checkpoints
        self.monitor, self.state, self.extra_state, self.max_time = monitor, state, extra_state or {}, max_time
        self.log_every = max(1, max_steps // 200)
        self.every = cfg.checkpoints.every or cfg.eval_every
        self.metric = (cfg.early_stopping.metric if cfg.early_stopping else "validation/loss").split("/", 1)[1]
        self.start = self.window_start = time.perf_counter()
        self.last_saved = state.step if state.step else None

    def elapsed(self, now: float) -> float:
        return self.state.seconds + now - self.start

    @property
    def end(self) -> int:
        """The step the schedule ends at: max_steps, or earlier where the time budget will stop the run."""
        return min(self.state.horizon or self.max_steps, self.max_steps)

    def fit_horizon(self, done: int, now: float) -> None:
        """Where the pace so far (validation passes included) will not reach `end` within max_time, end the
        schedule at the last step it will reach, so that the learning rate decays to its floor there and not
        past a step the budget cuts off. Only ever earlier; a checkpoint carries it, so a resume keeps it."""
        elapsed = self.elapsed(now)
        if self.max_time is None or done < FIT_AFTER or elapsed <= 0:
            return
        reachable = done + int((FIT_SHARE * self.max_time - elapsed) / (elapsed / done))
        if self.engine.world > 1:  # every rank must follow the same schedule: rank 0's estimate
            from accelerate.utils import broadcast

            value = torch.tensor([reachable], device=self.engine.device)
            reachable = int(broadcast(value, from_process=0).item())
        if reachable < self.end:
            self.state.horizon = max(done + 1, reachable)

    def save(self, step: int) -> bool:
        """Checkpoint the state after `step`; False (and nothing written) when the weights are no longer finite."""
        engine, acc, state = self.engine, self.engine.accelerator, self.state
        bad = sum(int(not torch.isfinite(p).all()) for p in engine.model.parameters())  # this rank's (shard of the) weights
        if engine.world > 1:
            bad = int(acc.reduce(torch.tensor([float(bad)], device=engine.device), reduction="sum").item())
        if bad:
            return False
        state.seconds += time.perf_counter() - self.start
        self.start = time.perf_counter()
        self.checkpoints.save(engine.model, engine.optimizer, step, {"loop": asdict(state), **self.extra_state},
                              state.best_step if self.cfg.checkpoints.keep_best else None, write=acc.is_main_process)
        self.last_saved = step
        return True

    def diverged(self, what: str, step: int) -> str:
        self.monitor.note(f"the {what} became non-finite at step {step}: training stopped; the last good "
                          "checkpoint is kept (lower train.optimizer.lr or set train.grad_clip)")
        return f"non-finite {what} at step {step}"

    def log(self, done: int, lr: float, now: float) -> None:
        state = self.state
        speed = state.window_tokens / max(now - self.window_start, 1e-9)
        mean = state.window_loss / state.window_steps
        pairs = state.window_stats.pop("pairs", 0)
        rewards = {k: v / pairs for k, v in state.window_stats.items()} if pairs else {}
        self.monitor.write({"step": done, "split": "train", "loss": mean, **rewards, "lr": lr, "tokens": state.tokens,
                            "tokens_per_s": round(speed, 1), "elapsed_s": round(self.elapsed(now), 3)})
        state.window_stats = {}
        best = f" · best {self.metric} {state.best:.4f}" if state.best is not None else ""
        self.monitor.show(done, f"loss {mean:.4f} · lr {lr:.2e} · {speed:,.0f} tok/s{best}")
        state.window_loss, state.window_steps, state.window_tokens, self.window_start = 0.0, 0, 0, now

    def before_training(self, val_batches) -> None:
        """Log the rewards of the untrained policy at step 0: the point a preference run's curves start from.

        Neither the best value nor a checkpoint comes of it, so a resumed run (which skips it) is unchanged.
        """
        with self.engine.accelerator.autocast():
            values = evaluate(self.engine.model, val_batches, self.cfg.eval_batches, self.engine.device,
                              self.engine.preference)
        self.monitor.write({"step": 0, "split": "validation", **values, "elapsed_s": 0.0})

    def validate(self, done: int, val_batches) -> tuple[str | None, bool]:
        """One validation pass: (a stop reason if the weights diverged, whether early stopping is due)."""
        engine, cfg, state = self.engine, self.cfg, self.state
        with engine.accelerator.autocast():
            values = evaluate(engine.model, val_batches, cfg.eval_batches, engine.device, engine.preference)
        self.monitor.write({"step": done, "split": "validation", **values,
                            "elapsed_s": round(self.elapsed(time.perf_counter()), 3)})
        if (hook := VALIDATION_HOOK.get()) is not None:
            hook(done, values)
        if improved(values[self.metric], state.best, cfg):
            state.best, state.best_step, state.stale = values[self.metric], done, 0
            if (cfg.checkpoints.keep_best or cfg.early_stopping) and not self.save(done):
                return self.diverged("weights", done), False
            return None, False
        state.stale += 1
        return None, cfg.early_stopping is not None and state.stale >= cfg.early_stopping.patience

    def step(self, train_batches: Callable[[int], Batch], val_batches) -> str | None:
        """One optimizer step with its logging, validation and checkpoint; the reason to stop, if any."""
        engine, cfg, state, acc, max_time = self.engine, self.cfg, self.state, self.engine.accelerator, self.max_time
        step = state.step
        lr = lr_at(step, cfg.optimizer.lr, self.end, cfg.schedule)
        set_lr(engine.optimizer, lr)
        if engine.on_step is not None:
            engine.on_step(step)
        torch.manual_seed(cfg.seed * 1_000_003 + step * 1_009 + engine.rank)  # dropout: a function of the step
        batch = train_batches(step)
        loss_on_device, n_tokens, n_positions, stats = _train_step(engine, batch, cfg)
        if cfg.grad_clip:
            acc.clip_grad_norm_(engine.model.parameters(), cfg.grad_clip)
        engine.optimizer.step()
        engine.optimizer.zero_grad(set_to_none=True)
        # read only now, so that the optimizer step is queued behind the backward pass; a non-finite
        # loss has spoilt these weights, and the run falls back to its last good checkpoint
        step_loss = loss_on_device.item()
        if not math.isfinite(step_loss):
            return self.diverged("loss", step + 1)
        state.step = done = step + 1
        state.tokens += n_tokens
        state.positions += n_positions
        state.window_loss += step_loss
        state.window_steps += 1
        state.window_tokens += n_tokens
        if engine.preference is not None:  # read after the loss, which already waited for the step
            for key, value in zip((*STATS, "pairs"), (*stats.tolist(), scored(batch))):
                state.window_stats[key] = state.window_stats.get(key, 0.0) + value
        now = time.perf_counter()
        if done % self.log_every == 0 or done == self.end:
            self.log(done, lr, now)
            self.fit_horizon(done, now)
        out_of_time = max_time is not None and self.elapsed(now) > max_time
        if engine.world > 1:  # every rank must stop at the same step
            flag = acc.reduce(torch.tensor([float(out_of_time)], device=engine.device), reduction="sum")
            out_of_time = bool(flag.item())
        stop_early = False
        if done % cfg.eval_every == 0 or done == self.end or out_of_time:
            diverged, stop_early = self.validate(done, val_batches)
            if diverged:
                return diverged
        due = done % self.every == 0 or done == self.end or out_of_time or stop_early
        if self.last_saved != done and due and not self.save(done):
            return self.diverged("weights", done)
        if stop_early:
            return (f"early stopping: validation/{self.metric} did not improve for {state.stale} passes "
                    f"(best {state.best:.4g} at step {state.best_step})")
        return "time budget" if out_of_time else None


def _final_weights(engine: Engine, checkpoints: Checkpoints, cfg: Train, state: LoopState, stopped: str) -> str:
    """Load the weights the trained model keeps: the best checkpoint (keep_best), or the last good one after a NaN.

    Every rank loads them (the files are on a shared filesystem), so that FSDP shards stay whole.
    """
    nan = stopped.startswith("non-finite")
    if cfg.checkpoints.keep_best and state.best_step is not None and (state.best_step != state.step or nan):
        problem = checkpoints.load_weights(state.best_step, engine.model)  # verified before it is loaded
        if problem is None:
            return f"best validation checkpoint (step {state.best_step})"
        checkpoints.warn(f"the best checkpoint ({checkpoints.path(state.best_step).name}) cannot be used: {problem}; "
                         f"it is in {checkpoints.quarantine}, and the model keeps "
                         + ("the last good checkpoint's weights" if nan else f"the weights of the last step ({state.step})"))
        if not nan:
            return f"last step ({state.step}); the best checkpoint (step {state.best_step}) was damaged: {problem}"
    if nan:
        good = checkpoints.latest_good(drop_bad=False)
        if good is None:
            from tailor.errors import TailorError

            raise TailorError(f"train: {stopped} before any checkpoint was written; lower train.optimizer.lr")
        checkpoints.load(good, engine.model)
        return f"last good checkpoint ({good.name})"
    return f"last step ({state.step})"
