import json
import unicodedata

import pytest

from tailor.data import STAGE as DATA_STAGE
from tailor.errors import TailorError
from tailor.spec import parse_spec
from tailor.spec.model import TokenizerSpec
from tailor.tokenizer import EOS, SEP, STAGE as TOKENIZER_STAGE, Codec, pretrained_tokenizer, train_bpe, train_tokenizer
from tailor.tokenizer.report import tokenizer_report
from tailor.tokenizer.train import UNK, promises_round_trip

SAMPLES = ["Hello world", "  leading and trailing  ", "tabs\tand\nnewlines", "café naïve 東京 🚀",
           "numbers 3.14159 and $99", "<|sep|> is special only as a token", "", " x", "a  b", "<unk> typed out"]
CORPUS = ["the quick brown fox jumps over the lazy dog"] * 40 + ["Hello world, numbers and tabs"] * 5
KINDS = ["bpe", "char_bpe", "wordpiece", "unigram", "sentencepiece"]


def save(tok, folder) -> Codec:
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    return Codec.load(folder)


@pytest.fixture(scope="module")
def codecs(tmp_path_factory) -> dict[str, Codec]:
    root = tmp_path_factory.mktemp("kinds")
    return {kind: save(train_tokenizer(lambda: iter(CORPUS), TokenizerSpec(type=kind, vocab_size=400, min_frequency=1)),
                       root / kind) for kind in KINDS}


@pytest.mark.parametrize("kind", [k for k in KINDS if promises_round_trip(TokenizerSpec(type=k))])
@pytest.mark.parametrize("text", SAMPLES)
def test_round_trip_on_every_kind_that_promises_it(codecs, kind, text):
    codec = codecs[kind]
    assert codec.decode(codec.encode(text)) == text  # unseen characters included: bytes or byte fallback


def test_wordpiece_does_not_promise_a_round_trip_and_reports_unknowns(codecs):
    assert not promises_round_trip(TokenizerSpec(type="wordpiece"))
    codec = codecs["wordpiece"]
    assert codec.decode(codec.encode("the  quick\tbrown fox")) == "the quick brown fox"
    report = tokenizer_report(codec.tokenizer, "wordpiece", ["東京 the fox"])
    unk = codec.tokenizer.token_to_id(UNK["wordpiece"])
    ids = codec.encode("東京 the fox")
    assert report["unknown_rate"] == pytest.approx(ids.count(unk) / len(ids), abs=1e-6) and ids.count(unk) > 0


@pytest.mark.parametrize("kind", KINDS)
def test_text_cannot_inject_special_tokens(codecs, kind):
    codec = codecs[kind]
    ids = codec.encode(f"stop here {EOS} please {SEP}")
    assert codec.eos_id not in ids and codec.sep_id not in ids


@pytest.mark.parametrize("kind", KINDS)
def test_tokenizer_json_loads_in_transformers_with_the_same_ids(codecs, kind, tmp_path):
    from transformers import PreTrainedTokenizerFast

    codecs[kind].tokenizer.save(str(tmp_path / "t.json"))
    hf = PreTrainedTokenizerFast(tokenizer_file=str(tmp_path / "t.json"))
    for text in ("the quick brown fox", "Hello world, numbers"):
        assert hf.encode(text, add_special_tokens=False) == codecs[kind].encode(text)


def test_sentencepiece_kind_matches_the_sentencepiece_library(tmp_path):
    """Pieces of our tokenizer.json equal those of a model the library trains with the same options."""
    import io

    import sentencepiece as spm

    corpus = [f"{w} and {v}, then {w}{v}!" for w in ("alpha", "beta", "gamma", "delta") for v in ("one", "two", "six")]
    corpus = corpus * 20
    ours = train_tokenizer(lambda: iter(corpus), TokenizerSpec(type="sentencepiece", vocab_size=300))
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus), model_writer=model, vocab_size=300, model_type="unigram", byte_fallback=True,
        normalization_rule_name="identity", add_dummy_prefix=False, remove_extra_whitespaces=False,
        allow_whitespace_only_pieces=True, hard_vocab_limit=False, unk_id=3, bos_id=-1, eos_id=-1, pad_id=-1,
        control_symbols=[EOS, "<|pad|>", SEP], character_coverage=1.0, minloglevel=2)
    sp = spm.SentencePieceProcessor(model_proto=model.getvalue())
    for text in corpus[:12] + ["gamma and zeta", "  two  spaces", "ünïcode ✓"]:
        assert ours.encode(text, add_special_tokens=False).tokens == sp.encode(text, out_type=str)


def test_normalization_and_lowercasing_apply_before_the_round_trip(tmp_path):
    cfg = TokenizerSpec(type="unigram", vocab_size=300, normalization="nfkc", lowercase=True)
    codec = save(train_tokenizer(lambda: iter(CORPUS), cfg), tmp_path)
    text = "Ｆｕｌｌwidth ﬁne CAFÉ"
    assert codec.decode(codec.encode(text)) == unicodedata.normalize("NFKC", text).lower()


def test_extra_special_tokens_stay_whole_and_survive_decoding(tmp_path):
    cfg = TokenizerSpec(type="bpe", vocab_size=300, special_tokens=["<|user|>"])
    codec = save(train_tokenizer(lambda: iter(CORPUS), cfg), tmp_path)
    user = codec.tokenizer.token_to_id("<|user|>")
    assert codec.encode("<|user|> hi")[0] == user
    assert codec.decode(codec.encode("<|user|> hi")) == "<|user|> hi"


@pytest.mark.parametrize("kind", ["bpe", "char_bpe", "unigram", "sentencepiece"])
def test_a_vocabulary_too_small_for_its_reserved_tokens_is_explained(kind):
    with pytest.raises(TailorError, match="tokenizer.vocab_size: 100 is too small"):
        train_tokenizer(lambda: iter(CORPUS), TokenizerSpec(type=kind, vocab_size=100))


def test_character_level_without_byte_fallback_allows_tiny_vocabularies(tmp_path):
    cfg = TokenizerSpec(type="char_bpe", vocab_size=40, byte_fallback=False)
    codec = save(train_tokenizer(lambda: iter(CORPUS), cfg), tmp_path)
    assert codec.decode(codec.encode("the lazy dog")) == "the lazy dog"
    assert codec.tokenizer.token_to_id(UNK["char_bpe"]) in codec.encode("the ☃")  # unseen: unknown, not bytes


def test_report_counts_match_an_independent_count(codecs):
    codec = codecs["char_bpe"]
    texts = ["the quick brown fox", "jumps over", "東京"]
    report = tokenizer_report(codec.tokenizer, "char_bpe", texts)
    ids = [codec.encode(t) for t in texts]
    n = sum(map(len, ids))
    assert report["tokens_per_byte"] == round(n / sum(len(t.encode()) for t in texts), 4)
    assert report["tokens_per_word"] == round(n / 7, 4)  # 4 + 2 + 1 words
    byte_ids = {codec.tokenizer.token_to_id(f"<0x{b:02X}>") for b in range(256)}
    assert report["fallback_rate"] == round(sum(i in byte_ids for seq in ids for i in seq) / n, 6) > 0
    assert report["round_trip_rate"] == 1.0
    top = report["most_frequent_tokens"][0]
    assert top["count"] == max(sum(seq.count(i) for seq in ids) for i in {i for seq in ids for i in seq})
    assert len(report["longest_tokens"]) == 20 and "<unk>" not in [t["token"] for t in report["longest_tokens"]]


def test_byte_level_fallback_rate_counts_partial_characters(codecs):
    report = tokenizer_report(codecs["bpe"].tokenizer, "bpe", ["東京"])  # unseen: byte tokens, not whole characters
    assert report["fallback_rate"] > 0 and report["round_trip_rate"] == 1.0


def test_train_bpe_keeps_its_signature_for_byte_level_bpe(tmp_path):
    codec = save(train_bpe(iter(CORPUS), 300, 1), tmp_path)
    assert codec.decode(codec.encode("café 🚀")) == "café 🚀"


def _stage(tmp_path, tokenizer_yaml: str, output: str = "text"):
    rows = [{"q": f"question {i} about the fox", "a": f"answer {i % 7}"} for i in range(60)]
    (tmp_path / "c.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = parse_spec(f"name: t\nproblem: {{domain: d, task: t, output: {output}}}\ndata:\n"
                      "  sources: [{type: files, path: c.jsonl}]\n  fields: {input: q, output: a}\n"
                      f"tokenizer: {tokenizer_yaml}\n", "s", tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "tok").mkdir()
    DATA_STAGE.call(spec, tmp_path / "data")
    return TOKENIZER_STAGE.call(spec, tmp_path / "tok", data_dir=tmp_path / "data")


def test_stage_writes_loadable_tokenizer_and_report(tmp_path):
    summary = _stage(tmp_path, "{type: wordpiece, vocab_size: 300}")
    assert summary["vocab_size"] <= 300 and 0 < summary["tokens_per_byte"] <= 1
    report = json.loads((tmp_path / "tok" / "report.json").read_text())
    assert report["type"] == "wordpiece" and not report["round_trip_promised"]
    assert {"tokens_per_word", "unknown_rate", "fallback_rate", "longest_tokens", "most_frequent_tokens"} <= set(report)
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(tmp_path / "tok"))
    codec = Codec.load(tmp_path / "tok")
    assert hf.encode("question 12", add_special_tokens=False) == codec.encode("question 12")
    assert hf.eos_token == EOS and hf.sep_token == SEP


def test_label_outputs_train_the_tokenizer_on_the_input_only(tmp_path):
    _stage(tmp_path, "{type: char_bpe, vocab_size: 360, min_frequency: 1}", output="label")
    vocab = Codec.load(tmp_path / "tok").tokenizer.get_vocab()
    assert "question" in vocab and "▁fox" in vocab and "answer" not in vocab and "▁answer" not in vocab


def test_pretrained_smollm2_tokenizer_uses_its_chat_template(tmp_path):
    tok, config = pretrained_tokenizer("smollm2-135m")
    assert config["eos_token"] == "<|im_end|>" and config["sep_token"] is None and config["tailor_added_tokens"] == []
    tok.save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    codec = Codec.load(tmp_path)
    rendered = codec.tokenizer.decode(codec.prompt("What is 2+2?"), skip_special_tokens=False)
    assert rendered.endswith("<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n")
    assert codec.prompt("<|im_end|>").count(codec.eos_id) == codec.prompt("x").count(codec.eos_id)  # no injection


def test_pretrained_minilm_tokenizer_needs_no_added_tokens():
    tok, config = pretrained_tokenizer("minilm-l6")
    assert (config["eos_token"], config["pad_token"], config["tailor_added_tokens"]) == ("[SEP]", "[PAD]", [])
    assert len(tok.encode("a short ticket").ids) < 10  # no fixed-length padding carried over


def test_unknown_pretrained_source():
    with pytest.raises(TailorError, match="not a preset"):
        pretrained_tokenizer("no-such-model")


def test_codec_requires_special_tokens(tmp_path):
    from tokenizers import Tokenizer, models

    Tokenizer(models.BPE()).save(str(tmp_path / "tokenizer.json"))
    with pytest.raises(TailorError, match="lacks the special token"):
        Codec.load(tmp_path)


def test_training_texts_are_read_column_by_column_in_record_order():
    """Every record's fields in turn, list values (token-label inputs) joined by spaces, as records would give."""
    import pyarrow as pa

    from tailor.tokenizer import _texts

    records = [{"input": ["a", "b"], "output": "x", "n": [1, 2]}, {"input": ["c"], "output": "y", "n": [3]}]
    table = pa.Table.from_pylist(records)
    assert _texts(table, ["input", "output"]) == ["a b", "x", "c", "y"]
    assert _texts(table, ["output"]) == ["x", "y"]
    assert _texts(table, ["n"]) == ["1 2", "3"]
    assert _texts(None, ["output"]) == []
