"""Every spec field reaches exactly the stages that read it: a change reruns those (and what follows), no other.

The cache key of a stage is the hash of the values the runner hands it; these tests vary every leaf of
the spec schema and check which stages' keys move, so a field a stage reads can never be left out of
its key, and a field no stage reads is named here rather than silently ignored.
"""

from __future__ import annotations

import copy
import json
import re

import pytest
import yaml
from pydantic import ValidationError

from conftest import BASE_SPEC, merge
from tailor.errors import TailorError
from tailor.run import STAGES, Pipeline, read_run
from tailor.spec import Spec, load_spec

# A spec with every optional section present, so that their leaves are walked too.
RICH = merge(BASE_SPEC, {
    "data": {"clean": [{"fix_text": {}}, {"normalize": {"unicode": "NFKC"}}, {"missing": {"drop": ["question"]}},
                       {"quality": {"min_words": 1}}, {"pii": {}}, {"dedup": {}}, {"near_dedup": {}}]},
    "model": {"adapt": {"freeze": {"embeddings": True, "bottom_layers": 1}}},
    "train": {"early_stopping": {"patience": 2}},
    "tune": {"trials": 2, "space": {"train.optimizer.lr": [1e-4, 1e-2, "log"]}},
    "deploy": {"monitor": {"alerts": [{"metric": "p95_latency_ms", "above": 300}]}},
})

# Read by commands that run beside the pipeline, not by a stage: tune by `tailor tune`, evaluate.ablation
# by `tailor ablate`, deploy by `tailor serve`/`retrain`/`export` (its two engine sizes are read by evaluate).
OUTSIDE_THE_PIPELINE = ("tune", "evaluate.ablation", "deploy")
WHOLE_SPEC = ""  # the report prints the resolved spec, so it reads all of it
# Read only to be shown: the report's heading. Every other field must change what some stage computes.
DISPLAY_ONLY = ("problem.domain", "problem.task")


# Values for leaves whose other valid values the generic candidates do not find.
VALUES = {
    "problem.targets.0.metric": "token_f1", "problem.targets.1.metric": "perplexity",
    "data.sources.0.path": "data/items.jsonl", "data.sources.0.map": {"question": "question"},
    "data.clean.1.normalize.unicode": "NFC", "data.clean.1.normalize.dates": "mdy",
    "data.clean.2.missing.fill": {"answer": "none"}, "model.arch.block_size": 64,
"train.optimizer.betas": [0.9, 0.99], "train.loss.class_weights": {"red": 2.0},
    "train.early_stopping.metric": "validation/perplexity", "tune.metric": "validation/perplexity",
    "evaluate.metrics": ["loss", "exact_match"], "evaluate.ablation.variants": [{"model.arch.n_layer": 2}],
    "deploy.retrain.metric": "loss", "deploy.export": ["onnx"],
}
# Leaves that cannot change alone: each needs another field changed with it.
UNVARIABLE = {
    "problem.output": "the head, targets and metrics follow it",
    "problem.targets.0.at_most": "exactly one of at_least and at_most", "problem.targets.1.at_least": "likewise",
    "data.fields.text": "text replaces input and output", "data.split.train": "the three shares sum to 1",
    "data.fields.messages": "conversations replace input and output, and need a pretrained chat model",
    "data.fields.chat_format": "it says how data.fields.messages is written",
    "data.split.validation": "likewise", "data.split.test": "likewise",
    "model.base": "a pretrained base reads its own tokenizer", "model.arch.family": "each family has its own fields",
    "deploy.serve.tls_cert": "certificate and key come together", "deploy.serve.tls_key": "likewise",
    "deploy.monitor.alerts.0.below": "exactly one of above and below",
    "train.objective": "a preference objective (dpo, orpo) needs data.fields.rejected with it",
    "data.sources.0.type": "each source type has its own fields",
    "model.adapt.lora": "LoRA and freeze exclude each other (the rich spec freezes)",
    "train.schedule.warmup_ratio": "warmup_steps and warmup_ratio exclude each other (the base spec gives steps)",
}


def leaves(tree, path=()):
    """(path, value) of every leaf of a dumped spec; lists of mappings are walked item by item."""
    if isinstance(tree, dict) and tree:
        for key, value in tree.items():
            yield from leaves(value, path + (key,))
    elif isinstance(tree, list) and tree and all(isinstance(v, dict) for v in tree):
        for i, value in enumerate(tree):
            yield from leaves(value, path + (i,))
    else:
        yield path, tree


def set_leaf(tree: dict, path: tuple, value) -> dict:
    out = copy.deepcopy(tree)
    node = out
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return out


def _allowed_words(tree: dict, path: tuple) -> list:
    """The values a literal field allows, read from the validation error of a value it does not."""
    try:
        Spec.model_validate(set_leaf(tree, path, "\u2063not-a-choice"))
    except ValidationError as e:
        for err in e.errors():
            expected = (err.get("ctx") or {}).get("expected")
            if expected:
                return re.findall(r"'([^']*)'", expected)
    return []


def candidates(tree: dict, path: tuple, value) -> list:
    """Other values to try for a leaf, most specific first."""
    if isinstance(value, bool):
        return [not value]
    if isinstance(value, int):
        return [value + 1, value * 2, max(value - 1, 0)]
    if isinstance(value, float):
        return [value * 0.5, value + 0.1, 0.5]
    if isinstance(value, str):
        return [w for w in _allowed_words(tree, path) if w != value] + [value + "x", "5m", "1GB"]
    if isinstance(value, list):
        return [value[:-1]] if value else [["validation"], ["x"], [1]]
    if value is None:
        return [2, 0.5, "10m", "2GB", True, "x", "validation", ["x"]]
    return []


def vary(tree: dict, path: tuple, value, project) -> tuple[Spec, dict] | None:
    """The spec with this leaf changed to another valid value whose dump differs, with every stage's key
    material; None if no such value was found."""
    dotted = ".".join(map(str, path))
    given = [VALUES[dotted]] if dotted in VALUES else []
    for candidate in given + candidates(tree, path, value) + _allowed_words(tree, path):
        changed = set_leaf(tree, path, candidate)
        try:
            spec = Spec.model_validate(changed)
            if spec.model_dump(mode="json") == tree:
                continue
            return spec, {s.name: s.key_material(spec, project) for s in STAGES}
        except (ValidationError, TailorError):  # refused by the spec, or a path that names no file
            continue
    return None


def readers(dotted: str, whole: bool = True) -> set[str]:
    """The stages whose declared reads cover a leaf."""
    out = set()
    for stage in STAGES:
        for read in stage.reads.values():
            if (read == WHOLE_SPEC and whole) or (read and (dotted == read or dotted.startswith(read + "."))):
                out.add(stage.name)
    return out


@pytest.fixture
def rich_spec(tmp_path, monkeypatch):
    from conftest import write_pairs

    monkeypatch.chdir(tmp_path)
    write_pairs(tmp_path / "data" / "items.jsonl")
    return Spec.model_validate(RICH)


def test_every_leaf_reaches_exactly_the_stages_that_read_it(rich_spec, tmp_path):
    tree = rich_spec.model_dump(mode="json")
    project = tmp_path / "runs" / "tiny"
    base = {s.name: s.key_material(rich_spec, project) for s in STAGES}
    unread, unvaried, wrong = [], [], []
    for path, value in leaves(tree):
        dotted = ".".join(map(str, path))
        found = vary(tree, path, value, project)
        if found is None:
            unvaried.append(dotted)
            continue
        moved = {name for name, material in found[1].items() if material != base[name]}
        expected = readers(dotted)
        if moved != expected:
            wrong.append(f"{dotted}: keys of {sorted(moved)} changed, the stages reading it are {sorted(expected)}")
        if not readers(dotted, whole=False) and not dotted.startswith(OUTSIDE_THE_PIPELINE + DISPLAY_ONLY):
            unread.append(dotted)
    assert not wrong, "\n".join(wrong)
    assert not unread, f"fields no stage reads (and no command outside the pipeline): {unread}"
    assert set(unvaried) == set(UNVARIABLE), f"could not vary {sorted(set(unvaried) - set(UNVARIABLE))}; " \
                                             f"varied after all: {sorted(set(UNVARIABLE) - set(unvaried))}"


def test_a_stage_cannot_read_an_undeclared_field():
    """Stage functions receive their declared values as keyword arguments, never the spec: each parameter
    of a stage's function is a declared read, an upstream folder, or one of the runner's own arguments."""
    import inspect

    runner_args = {"out", "progress", "work", "key", "project"}
    for stage in STAGES:
        params = set(inspect.signature(stage.run).parameters)
        declared = set(stage.reads) | {f"{u}_dir" for u in stage.upstream}
        assert not {"spec"} & params or stage.reads.get("spec") == WHOLE_SPEC, stage.name
        assert params - runner_args == declared, (stage.name, params - runner_args ^ declared)


@pytest.mark.parametrize("change, first_rerun", [
    ({"data": {"split": {"seed": 3}}}, "data"),
    ({"tokenizer": {"vocab_size": 300}}, "tokenizer"),
    ({"model": {"arch": {"n_embd": 16}}}, "model"),
    ({"train": {"optimizer": {"lr": 2e-3}}}, "train"),
    ({"evaluate": {"generation": {"max_new_tokens": 3}}}, "evaluate"),
])
def test_a_change_reruns_its_stage_and_what_follows(make_spec, tmp_path, change, first_rerun):
    names = [s.name for s in STAGES]
    first = Pipeline(load_spec(make_spec()), tmp_path / "runs").run()
    second = Pipeline(load_spec(make_spec(change, name="changed.yaml")), tmp_path / "runs").run()
    assert second != first
    status = {k: v["status"] for k, v in read_run(second)["stages"].items()}
    cut = names.index(first_rerun)
    assert all(status[n] == "reused" for n in names[:cut]), status
    assert status[first_rerun] == "done", status
    assert all(status[n] in ("done", "reused") for n in names[cut + 1:]), status
    assert status["report"] == "done"


def test_a_changed_model_adapt_retrains(make_spec, tmp_path):
    """model.adapt is read by the train stage: changing it trains again, and the summary says what froze."""
    runs = tmp_path / "runs"
    Pipeline(load_spec(make_spec()), runs).run(until="train")
    spec = load_spec(make_spec({"model": {"adapt": {"freeze": {"embeddings": True, "bottom_layers": 1}}}},
                               name="frozen.yaml"))
    run_dir = Pipeline(spec, runs).run(until="train")
    assert read_run(run_dir)["stages"]["train"]["status"] == "done"
    summary = json.loads((run_dir / "train" / "summary.json").read_text())
    assert "embeddings" in summary["adapt"]["frozen"]
    assert read_run(run_dir)["stages"]["model"]["status"] == "reused"


def test_spec_yaml_fixture_is_rich_enough():
    """The walk above covers the optional sections: each is present in the rich spec."""
    tree = Spec.model_validate(RICH).model_dump(mode="json")
    dotted = {".".join(map(str, p)) for p, _ in leaves(tree)}
    for key in ("tune.trials", "train.early_stopping.patience", "model.adapt.freeze.bottom_layers",
                "deploy.monitor.alerts.0.metric", "data.clean.6.near_dedup.threshold"):
        assert key in dotted, key
    yaml.safe_dump(RICH)  # plain values only
