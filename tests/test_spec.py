from pathlib import Path

import pytest

from tailor.errors import TailorError
from tailor.spec import dump_spec, load_spec, parse_spec
from tailor.spec.base import parse_duration, parse_size

ROOT = Path(__file__).resolve().parents[1]

MINIMAL = """name: m
problem: {domain: d, task: t}
data:
  sources: [{type: files, path: corpus.txt}]
"""


def errors_of(text: str) -> str:
    with pytest.raises(TailorError) as e:
        parse_spec(text, "s.yaml")
    return str(e.value)


def test_minimal_spec_gets_defaults():
    spec = parse_spec(MINIMAL)
    assert spec.data.fields.text == "text"
    assert spec.tokenizer.type == "bpe" and spec.model.base == "scratch"
    assert [list(s) for s in spec.data.clean] == [["normalize"], ["dedup"]]
    assert spec.train.optimizer.name == "adamw"
    shown = dump_spec(spec)
    assert "max_steps: 1000" in shown and "warmup_steps: 100" in shown


def test_every_example_spec_parses():
    specs = sorted(ROOT.glob("examples/*/spec*.yaml"))
    assert specs, "no example specs found"
    for path in specs:
        spec = load_spec(path)
        for source in spec.data.sources:
            tables = [source.rows] if isinstance(getattr(source, "rows", None), str) else getattr(source, "rows", None)
            for p in getattr(source, "paths", None) or tables or []:
                assert Path(p).is_absolute() and Path(p).exists(), (path, p)


def test_unknown_key_names_line_path_and_suggestion():
    msg = errors_of(MINIMAL.replace("problem: {domain: d, task: t}", "problem:\n  domain: d\n  task: t\n  targts: []"))
    assert "s.yaml:5: problem.targts: unknown key (did you mean 'targets'?)" in msg
    assert "allowed: constraints, domain, output, targets, task" in msg


def test_wrong_type_and_literal_errors_name_allowed_values():
    msg = errors_of(MINIMAL + "model: {arch: {n_layer: two}}\ntokenizer: {type: wordpice}\n")
    assert "model.arch.n_layer" in msg and "valid integer" in msg
    assert "tokenizer.type" in msg and "'wordpiece', 'unigram', 'sentencepiece' or 'pretrained'" in msg


def test_nested_list_error_has_index():
    msg = errors_of(MINIMAL.replace("path: corpus.txt", "pth: corpus.txt"))
    assert "data.sources[0].pth: unknown key (did you mean 'path'?)" in msg
    assert "data.sources[0].path: required key is missing" in msg


def test_clean_step_errors():
    assert "unknown step 'dedupe'; allowed: dedup, near_dedup, missing" in errors_of(MINIMAL + "  clean: [{dedupe: {}}]\n")
    assert "item 0 (normalize): unicode" in errors_of(MINIMAL + "  clean: [{normalize: {unicode: NFX}}]\n")


def test_target_needs_exactly_one_bound():
    msg = errors_of(MINIMAL.replace("task: t}", "task: t, targets: [{metric: loss}]}"))
    assert "exactly one of at_least or at_most" in msg


def test_target_metric_must_be_measured():
    msg = errors_of(MINIMAL.replace("task: t}", "task: t, targets: [{metric: accuracy, at_least: 1}]}"))
    assert "'accuracy' is not measured for output 'text'" in msg
    msg = errors_of(MINIMAL.replace("task: t}", "task: t, targets: [{metric: exact_match, at_least: 1}]}"))
    assert "needs input/output data" in msg


def test_split_ratios_must_sum_to_one():
    assert "must add up to 1" in errors_of(MINIMAL + "  split: {train: 0.5, validation: 0.1, test: 0.1}\n")


def test_yaml_syntax_error_names_line():
    assert errors_of("name: x\nproblem: [\n").startswith("s.yaml:")


def test_missing_file(tmp_path):
    with pytest.raises(TailorError, match="spec file not found"):
        load_spec(tmp_path / "nope.yaml")


def test_relative_paths_resolve_against_the_spec_file(tmp_path):
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "spec.yaml"
    path.write_text(MINIMAL)
    assert load_spec(path).data.sources[0].path == str(tmp_path / "sub" / "corpus.txt")


@pytest.mark.parametrize("text,seconds", [("15m", 900), ("1h30m", 5400), ("90s", 90), (45, 45), ("250ms", 0.25)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


def test_bad_duration_and_size():
    with pytest.raises(ValueError, match="duration"):
        parse_duration("fifteen minutes")
    assert parse_size("8GB") == 8 * 10**9 and parse_size("512MiB") == 512 * 2**20
    with pytest.raises(ValueError, match="size"):
        parse_size("lots")


def test_constraints_parse_in_spec():
    spec = parse_spec(MINIMAL.replace("task: t}", "task: t, constraints: {time_budget: 2m, max_memory: 1GB}}"))
    assert spec.problem.constraints.time_budget == 120 and spec.problem.constraints.max_memory == 10**9
