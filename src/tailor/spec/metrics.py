"""Every metric, defined once: what it applies to, what it aggregates, its scale and which way is better.

Spec validation, the evaluate stage, the report's target verdicts, `compare`, `tune`, early
stopping, ablations, retrain promotion and alert rules all read this table; nothing else says
which way a metric is better. It imports without torch. The formulas that turn per-example
columns into a number live in `tailor.evaluate` under the aggregate's name.
"""

from __future__ import annotations

from dataclasses import dataclass

OUTPUTS = ("text", "label", "token-labels", "score")
SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Metric:
    name: str
    outputs: tuple[str, ...]       # problem.output kinds it is measured for ("serving": measured by the server,
                                   # "preference": by the training loop of a dpo/orpo objective only)
    columns: tuple[str, ...]       # per-example columns of predictions.parquet it aggregates
    aggregate: str                 # the formula's name in tailor.evaluate.metrics.AGGREGATES
    higher_is_better: bool
    scale: str                     # what one unit means, for reports
    generated: bool = False        # needs generated answers (and so input/output data)
    in_loop: bool = False          # measured at every validation pass of training (early stopping, pruning)

    @property
    def direction(self) -> str:
        """optuna's word for it: maximize or minimize."""
        return "maximize" if self.higher_is_better else "minimize"


_LM = ("text",)
_TASKS = ("label", "token-labels")
_ROUGE = ("rouge1", "rouge2", "rougeL", "rougeLsum")
_AVERAGES = ("macro", "micro", "weighted")
_PREFERENCE = ("preference",)

TABLE: dict[str, Metric] = {m.name: m for m in [
    Metric("loss", OUTPUTS, ("nll", "tokens"), "ratio", False, "nats per scored token (squared error for scores)",
           in_loop=True),
    Metric("perplexity", _LM, ("nll", "tokens"), "exp_ratio", False, "exp(nats per token)", in_loop=True),
    Metric("word_perplexity", _LM, ("nll", "words"), "exp_ratio", False, "exp(nats per word)"),
    Metric("byte_perplexity", _LM, ("nll", "bytes"), "exp_ratio", False, "exp(nats per UTF-8 byte)"),
    Metric("bits_per_byte", _LM, ("nll", "bytes"), "bits_ratio", False, "bits per UTF-8 byte"),
    Metric("exact_match", _LM, ("exact",), "mean", True, "share 0-1", generated=True),
    Metric("normalized_exact_match", _LM, ("normalized_exact",), "mean", True, "share 0-1", generated=True),
    Metric("token_f1", _LM, ("f1",), "mean", True, "mean F1 0-1", generated=True),
    Metric("bleu", _LM, ("bleu_stats",), "sacrebleu", True, "sacrebleu 0-100", generated=True),
    Metric("chrf", _LM, ("chrf_stats",), "sacrebleu", True, "sacrebleu 0-100", generated=True),
    *[Metric(t, _LM, (t,), "mean", True, "mean F-measure 0-1", generated=True) for t in _ROUGE],
    Metric("p50_latency_ms", _LM, ("latency_ms",), "percentile", False, "milliseconds", generated=True),
    Metric("p95_latency_ms", _LM, ("latency_ms",), "percentile", False, "milliseconds", generated=True),
    Metric("accuracy", _TASKS, ("label_true", "label_pred"), "classification", True, "share 0-1", in_loop=True),
    *[Metric(f"{m}_{a}", _TASKS, ("label_true", "label_pred"), "classification", True, "share 0-1")
      for a in _AVERAGES for m in ("precision", "recall", "f1")],
    Metric("mse", ("score",), ("score_true", "score_pred"), "score_error", False, "squared units of the score"),
    Metric("mae", ("score",), ("score_true", "score_pred"), "score_error", False, "units of the score"),
    Metric("r2", ("score",), ("score_true", "score_pred"), "r2", True, "coefficient of determination, at most 1"),
    Metric("pearson", ("score",), ("score_true", "score_pred"), "pearson", True, "correlation -1..1"),
    # measured at each validation pass of a preference objective (train.objective dpo/orpo), as TRL logs them
    # (rewards/accuracies, rewards/margins, rewards/chosen, rewards/rejected); a reward is beta x the answer's
    # log-probability ratio to the reference model (dpo) or beta x its mean log-probability (orpo)
    Metric("reward_accuracy", _PREFERENCE, (), "preference", True, "share of pairs whose preferred answer has the "
           "higher reward 0-1", in_loop=True),
    Metric("reward_margin", _PREFERENCE, (), "preference", True, "mean preferred minus rejected reward (nats x beta)",
           in_loop=True),
    Metric("reward_chosen", _PREFERENCE, (), "preference", True, "mean reward of the preferred answers", in_loop=True),
    Metric("reward_rejected", _PREFERENCE, (), "preference", False, "mean reward of the rejected answers",
           in_loop=True),
    # measured by a running server (tailor serve), for alert rules
    Metric("error_rate", ("serving",), (), "server", False, "share of requests answered 5xx"),
    Metric("drift_psi", ("serving",), (), "server", False, "population stability index of inputs"),
    Metric("online_accuracy", ("serving",), (), "server", True, "share of answers marked correct in feedback"),
    Metric("queue_depth", ("serving",), (), "server", False, "requests waiting for the engine"),
]}
# the server's latency percentiles over a window have the names of the evaluated ones


def metric(key: str) -> Metric:
    """The metric of a name or a flat key ('test/f1_macro'); an error listing the known ones."""
    name = key.split("/")[-1]
    if name not in TABLE:
        raise KeyError(f"unknown metric {name!r}; known: {', '.join(TABLE)}")
    return TABLE[name]


def higher_is_better(key: str) -> bool:
    """Whether a larger value of the metric (a name or a flat key like 'validation/loss') is better."""
    return metric(key).higher_is_better


def better(key: str, a: float, b: float, min_delta: float = 0.0) -> bool:
    """Whether value `a` improves on `b` by more than min_delta for this metric."""
    return a > b + min_delta if higher_is_better(key) else a < b - min_delta


def improves(key: str, delta: float) -> bool:
    """Whether a change of `delta` (new minus old) in the metric is an improvement."""
    return delta > 0 if higher_is_better(key) else delta < 0


def for_output(output: str) -> tuple[str, ...]:
    """Names of the metrics the evaluate stage measures for a problem.output, in table order."""
    return tuple(name for name, m in TABLE.items() if output in m.outputs)


def generated() -> frozenset[str]:
    """Metrics that need generated answers (and input/output data)."""
    return frozenset(name for name, m in TABLE.items() if m.generated)


def loop_keys() -> tuple[str, ...]:
    """Flat keys measured at every validation pass of training: what early stopping and pruning can watch."""
    return tuple(f"validation/{name}" for name, m in TABLE.items() if m.in_loop)


def preference_metrics() -> tuple[str, ...]:
    """Names of the metrics only a preference objective's validation pass measures (besides its loss)."""
    return tuple(name for name, m in TABLE.items() if m.outputs == _PREFERENCE)


def chosen_metrics(evaluate_metrics: list[str] | None, output: str, pairs: bool, targets: list) -> list[str]:
    """Metrics to compute: the chosen (or default) ones plus every target's; generated ones only for pairs."""
    names = list(evaluate_metrics or for_output(output))
    if not pairs:
        names = [n for n in names if not TABLE[n].generated]
    names += [t.metric for t in targets if t.metric not in names]
    return names


def check_bound(key: str, upper: bool, where: str) -> None:
    """A bound must point the metric's way: a ceiling on a lower-is-better metric, a floor on the others.

    upper: the bound is a ceiling (at_most, above). A floor on a loss or a ceiling on an accuracy is
    almost always a reversed condition, so it is refused with the right word.
    """
    m = metric(key)
    if upper == m.higher_is_better:
        right = ("at_least", "below") if m.higher_is_better else ("at_most", "above")
        raise ValueError(f"{where}: {m.name} is {'higher' if m.higher_is_better else 'lower'}-is-better, so its bound "
                         f"is {right[0]} (a target) or {right[1]} (an alert)")
