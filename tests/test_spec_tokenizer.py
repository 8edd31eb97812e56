"""With a pretrained model.base the tokenizer follows the model unless the spec says otherwise."""

import os
import subprocess
import sys

import pytest
import yaml

from tailor.errors import TailorError
from tailor.spec import dump_spec, parse_spec

from test_spec import MINIMAL


def test_a_pretrained_base_brings_its_own_tokenizer(tmp_path):
    spec = parse_spec(MINIMAL + "model: {base: smollm2-135m}\n", "s.yaml")
    assert spec.tokenizer.type == "pretrained" and spec.tokenizer.source is None
    assert yaml.safe_load(dump_spec(spec))["tokenizer"]["type"] == "pretrained"
    again = parse_spec(dump_spec(spec), "resolved.yaml")  # the resolved spec says so and reads back the same
    assert again.model_dump() == spec.model_dump()
    other = parse_spec(MINIMAL + "model: {base: smollm2-135m}\ntokenizer: {lowercase: false}\n", "s.yaml")
    assert other.tokenizer.type == "pretrained"


def test_a_scratch_model_keeps_the_trained_tokenizer_default():
    assert parse_spec(MINIMAL, "s.yaml").tokenizer.type == "bpe"


@pytest.mark.parametrize("kind", ["bpe", "wordpiece"])
def test_an_explicit_non_pretrained_type_with_a_pretrained_base_is_still_refused(kind):
    with pytest.raises(TailorError) as e:
        parse_spec(MINIMAL + f"model: {{base: smollm2-135m}}\ntokenizer: {{type: {kind}}}\n", "s.yaml")
    assert f"tokenizer.type: '{kind}' with the pretrained model.base 'smollm2-135m'" in str(e.value)


def test_spec_show_prints_the_tokenizer_the_model_brings(tmp_path):
    (tmp_path / "s.yaml").write_text(MINIMAL + "model: {base: smollm2-135m}\n")
    res = subprocess.run([sys.executable, "-m", "tailor.cli", "spec", "show", str(tmp_path / "s.yaml")],
                         capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"}, timeout=120)
    assert res.returncode == 0, res.stderr
    assert yaml.safe_load(res.stdout)["tokenizer"]["type"] == "pretrained"
