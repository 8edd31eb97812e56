import json

import pytest

from tailor.data import run_data
from tailor.errors import TailorError
from tailor.spec import parse_spec
from tailor.tokenizer import EOS, SEP, Codec, pretrained_tokenizer, run_tokenizer, train_bpe

SAMPLES = ["Hello world", "  leading and trailing  ", "tabs\tand\nnewlines", "café naïve 東京 🚀",
           "numbers 3.14159 and $99", "<|sep|> is special only as a token", ""]


@pytest.fixture(scope="module")
def codec(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tok")
    tok = train_bpe(iter(["the quick brown fox jumps over the lazy dog"] * 50 + SAMPLES), 400, 1)
    tok.save(str(folder / "tokenizer.json"))
    return Codec.load(folder)


@pytest.mark.parametrize("text", SAMPLES)
def test_byte_level_bpe_round_trips_any_text(codec, text):
    assert codec.decode(codec.encode(text)) == text


def test_text_cannot_inject_special_tokens(codec):
    assert codec.eos_id not in codec.encode(f"stop here {EOS} please")
    assert codec.sep_id not in codec.encode(SEP)


def test_specials_are_single_tokens(codec):
    assert codec.tokenizer.token_to_id(EOS) == codec.eos_id
    assert codec.prompt("hi")[-1] == codec.sep_id
    assert codec.encode("the quick")  # learned merges make common words short
    assert len(codec.encode("the quick brown fox")) < len("the quick brown fox")


def test_stage_writes_loadable_tokenizer_and_report(tmp_path):
    (tmp_path / "c.jsonl").write_text("".join(json.dumps({"q": f"question {i}", "a": f"answer {i % 7}"}) + "\n"
                                              for i in range(60)))
    spec = parse_spec("name: t\nproblem: {domain: d, task: t}\ndata:\n  sources: [{type: files, path: c.jsonl}]\n"
                      "  fields: {input: q, output: a}\ntokenizer: {vocab_size: 300}\n", "s", tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "tok").mkdir()
    run_data(spec, tmp_path / "data")
    report = run_tokenizer(spec, tmp_path / "data", tmp_path / "tok")
    assert report["vocab_size"] <= 300 and 0 < report["tokens_per_byte"] <= 1
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(tmp_path / "tok"))
    codec = Codec.load(tmp_path / "tok")
    assert hf.encode("question 12", add_special_tokens=False) == codec.encode("question 12")
    assert hf.eos_token == EOS and hf.sep_token == SEP


def test_pretrained_tokenizer_from_the_smollm2_preset():
    tok, special = pretrained_tokenizer("smollm2-135m")
    assert special["eos_token"] == "<|im_end|>"
    assert tok.token_to_id(SEP) is not None
    assert tok.decode(tok.encode("Hello world, café!", add_special_tokens=False).ids) == "Hello world, café!"


def test_unknown_pretrained_source():
    with pytest.raises(TailorError, match="not a preset"):
        pretrained_tokenizer("no-such-model")


def test_codec_requires_special_tokens(tmp_path):
    from tokenizers import Tokenizer, models

    Tokenizer(models.BPE()).save(str(tmp_path / "tokenizer.json"))
    with pytest.raises(TailorError, match="lacks the special token"):
        Codec.load(tmp_path)
