"""Each cleaning and labeling step on its own, compared with the library or rule it stands for."""

import random

import pytest

from tailor.data.annotate.join import LabelJoin
from tailor.data.annotate.rules import LabelRules, rule_summary
from tailor.data.clean.dedup import ExactDedup
from tailor.data.clean.fix_text import FixText
from tailor.data.clean.language import Language
from tailor.data.clean.lowercase import Lowercase
from tailor.data.clean.minhash import MinHasher, optimal_bands
from tailor.data.clean.missing import Missing
from tailor.data.clean.near_dedup import NearDedup
from tailor.data.clean.normalize import Normalize
from tailor.data.clean.pii import Pii, luhn
from tailor.data.clean.quality import Quality
from tailor.data.clean.spelling import Spelling
from tailor.data.clean.words import Lemmatize, Stem, Stopwords
from tailor.errors import TailorError


def words(rng, n, vocab=5000):
    """Random words of letters (MinHash folds digits, as datatrove's does)."""
    return ["".join(chr(97 + int(c)) for c in str(rng.randrange(vocab) + 10_000)) for _ in range(n)]


def test_exact_dedup_on_chosen_fields():
    step = ExactDedup(["q", "a"])
    assert step({"q": "x", "a": "1"}) != "exact duplicate"
    assert step({"q": "x", "a": "2"}) != "exact duplicate"
    assert step({"q": "x", "a": "1", "other": 5}) == "exact duplicate"


def test_minhash_estimates_jaccard():
    """The share of equal signature values estimates the exact Jaccard of the shingle sets."""
    rng = random.Random(0)
    hasher = MinHasher(num_perm=256, ngram=3)
    for keep in (0.95, 0.8, 0.5):
        base = words(rng, 400)
        other = [w if rng.random() < keep else f"x{words(rng, 1)[0]}" for w in base]
        a, b = set(hasher.shingles(" ".join(base)).tolist()), set(hasher.shingles(" ".join(other)).tolist())
        exact = len(a & b) / len(a | b)
        estimate = (hasher.signature(" ".join(base)) == hasher.signature(" ".join(other))).mean()
        assert abs(estimate - exact) < 0.08, (keep, exact, estimate)


def test_optimal_bands_matches_the_s_curve():
    assert optimal_bands(0.8, 112) == 8          # 8 bands x 14 rows: (1/8)^(1/14) ~ 0.86
    assert optimal_bands(0.5, 128) > optimal_bands(0.9, 128)


def test_near_dedup_finds_edited_copies_not_strangers():
    rng = random.Random(1)
    step = NearDedup(["text"], threshold=0.7)
    docs = [" ".join(words(rng, 200)) for _ in range(200)]
    for d in docs:
        assert step({"text": d}) != "near duplicate"
    edited = []
    for d in docs[:50]:
        w = d.split()
        i = rng.randrange(len(w))
        w[i] = "changed"
        edited.append(" ".join(w))
    assert sum(step({"text": e}) == "near duplicate" for e in edited) >= 48
    assert sum(step({"text": " ".join(words(rng, 200))}) == "near duplicate" for _ in range(50)) == 0


def test_missing_drop_and_fill():
    step = Missing(["q", "a"], {"category": "other", "a": "n/a"})
    assert step({"q": "x", "a": None}) == {"q": "x", "a": "n/a", "category": "other"}
    assert step({"q": "  ", "a": "y"}) == "missing q"
    assert step({"a": "y"}) == "missing q"


def test_fix_text_is_ftfy():
    import ftfy

    bad = "The Mona Lisa doesnÃ¢â‚¬â„¢t have eyebrows. Ã¢Å“â€\x9d"
    assert FixText(["t"])({"t": bad})["t"] == ftfy.fix_text(bad) == "The Mona Lisa doesn't have eyebrows. ✔"


def test_spelling_fixes_prose_never_code():
    step = Spelling(["t"])
    text = "The drill is verry powerfull.\n```\ndef recieve(x): return x\n```\nCall `recieve()` and recieve data\n    recieve = 1"
    fixed = step({"t": text})["t"]
    assert fixed.startswith("The drill is very powerful.")
    assert "def recieve(x): return x" in fixed and "`recieve()`" in fixed and "and receive data" in fixed
    assert fixed.endswith("    recieve = 1")


def test_normalize_numbers_dates_units():
    n = Normalize(["t"], numbers=True, dates="dmy", units=True)
    assert n.text("Ships 05/03/2024 or March 7th, 2024; weighs 1,250.5 Kilograms, 5kg, 3 Watts. 31/02/2024") == \
        "Ships 2024-03-05 or 2024-03-07; weighs 1250.5 kg, 5 kg, 3 W. 31/02/2024"
    assert Normalize(["t"], dates="mdy").text("05/03/2024") == "2024-05-03"
    assert Normalize(["t"]).text("ﬁne\u00a0 text \t here\r\n\n\n\nnext ") == "fine text here\n\nnext"


def test_classic_steps_match_their_libraries():
    import simplemma
    import snowballstemmer
    from stop_words import get_stop_words

    text = "The children were running to the houses"
    assert Lowercase(["t"])({"t": "MiXed"})["t"] == "mixed"
    stop = set(get_stop_words("en"))
    assert Stopwords(["t"], "en")({"t": text})["t"].split() == [w for w in text.split() if w.lower() not in stop]
    stemmer = snowballstemmer.stemmer("english")
    assert Stem(["t"], "en")({"t": text})["t"].split() == stemmer.stemWords(text.split())
    assert Lemmatize(["t"], "en")({"t": text})["t"].split() == [simplemma.lemmatize(w, lang="en") for w in text.split()]
    with pytest.raises(TailorError, match="no stop-word list for 'xx'"):
        Stopwords(["t"], "xx")


def test_quality_rules_name_themselves():
    q = Quality(["t"], min_words=3, gopher=True)
    assert q({"t": "The drill has a motor and the battery lasts long."}) != "" and isinstance(q({"t": "The drill has a motor and the battery lasts long."}), dict)
    assert q({"t": "too short"}) == "too few words"
    assert q({"t": "$$$ ### @@@ !!! %%% ^^^ &&& and the drill"}) == "symbol ratio"
    assert q({"t": "1234 5678 9012 3456 7890 1234 and the of"}) == "digit ratio"
    assert q({"t": "same line and the\nsame line and the\nsame line and the\nother one of the"}) == "repeated lines"
    assert q({"t": " ".join(["buy now"] * 12) + " the and"}) == "repeated n-grams"
    assert q({"t": "lorem ipsum dolor sit amet consectetur adipiscing elit sed"}) == "gopher: fewer than 2 stop words"
    assert q({"t": "- cordless drills and the batteries\n- saws of the workshop and garden\n- sanders to the shop"}) == "gopher: bullet lines"
    assert Quality(["t"], max_chars=5)({"t": "abcdefgh"}) == "too long (chars)"


def test_pii_redacts_with_luhn_check():
    assert luhn("4111111111111111") and not luhn("4111111111111112")
    step = Pii(["t"], ["email", "phone", "ip", "card"])
    out = step({"t": "Write to ann.lee+shop@mail.example.org or call +44 20 7946 0958; host 10.0.0.7 / 2001:db8::1; "
                     "card 4111-1111-1111-1111 but not 4111 1111 1111 1112; version 1.2.3, ISO 2024-03-05, order 12345"})["t"]
    assert out == ("Write to <EMAIL> or call <PHONE>; host <IP> / <IP>; card <CARD> but not 4111 1111 1111 1112; "
                   "version 1.2.3, ISO 2024-03-05, order 12345")
    assert step.counts == {"email": 1, "phone": 1, "ip": 2, "card": 1}
    assert Pii(["t"], ["email"], drop=True)({"t": "a@b.co"}) == "contains personal data"


def test_language_filter_offline():
    step = Language(["t"], ["en"])
    assert isinstance(step({"t": "The battery of this drill lasts for two hours of work."}), dict)
    assert step({"t": "Die Batterie dieser Bohrmaschine hält zwei Stunden lang."}) == "language de"
    assert isinstance(step({"t": "ok"}), dict) and step.counts["too short to detect"] == 1


def test_label_join_from_csv(tmp_path):
    (tmp_path / "labels.csv").write_text("id,intent\n1,refund\n2,shipping\n")
    step = LabelJoin(str(tmp_path / "labels.csv"), "id", "intent", "label")
    assert step({"id": 1, "text": "a"})["label"] == "refund"
    assert step({"id": "3", "text": "b"}).get("label") is None
    assert step.counts == {"labelled": 1, "no label in the file": 1}
    (tmp_path / "twice.jsonl").write_text('{"id": 1, "label": "a"}\n{"id": 1, "label": "b"}\n')
    with pytest.raises(TailorError, match=r"twice\.jsonl:2: id '1' has two labels"):
        LabelJoin(str(tmp_path / "twice.jsonl"), "id", "label", "label")


def test_label_rules_vote_and_report_coverage_overlap_conflict():
    rules = [{"label": "refund", "pattern": r"refund|money back"}, {"label": "refund", "keywords": ["return"]},
             {"label": "shipping", "keywords": ["parcel", "delivery"]}]
    step = LabelRules(rules, ["text"], "label")
    texts = ["I want a refund", "refund or return this", "where is my parcel", "refund the parcel", "hello there"]
    got = [step({"text": t}) for t in texts]
    assert [g.get("label") for g in got] == ["refund", "refund", "shipping", None, None]  # a 1-1 tie abstains
    assert rule_summary(step.counts) == {"covered": 0.8, "overlap": 0.4, "conflict": 0.2}
    assert step.counts["fired: rule0:refund"] == 3 and step.counts["abstained"] == 2
    assert LabelRules(rules, ["text"], "label", drop_unlabelled=True)({"text": "nothing"}) == "no rule label"


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    """A random 1-layer Llama with a word-level tokenizer, saved as a model folder."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = ["<pad>", "<unk>", "<s>", "Text", ":", "Possible", "labels", ",", "The", "label", "of", "this", "text",
             "is", "refund", "shipping", "other", "where", "my", "parcel", "money", "back", "please", "\n"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(r"\w+|[^\w\s]|\n", behavior="isolated")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", bos_token="<s>")
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(words), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2))
    folder = tmp_path_factory.mktemp("tiny-lm")
    model.save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


def test_label_model_scores_match_a_plain_forward_pass(tiny_lm):
    """Suggestions are the softmax over candidates of each label's log-likelihood after the prompt."""
    import torch

    from tailor.data.annotate.model import PROMPT, LabelModel

    labels = ["refund", "shipping", "other"]
    step = LabelModel(str(tiny_lm), labels, ["text"], "suggested")
    text = "where is my parcel please"
    prompt_ids = step.tokenizer(PROMPT.format(text=text, labels=", ".join(labels)))["input_ids"]
    totals = []
    for label in labels:
        ids = step.tokenizer(" " + label, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logp = step.model(torch.tensor([prompt_ids + ids])).logits[0].log_softmax(-1)
        totals.append(sum(logp[len(prompt_ids) - 1 + k, t] for k, t in enumerate(ids)))
    reference = torch.stack(totals).softmax(0).tolist()
    assert step.probabilities(text) == pytest.approx(reference, abs=1e-5)
    record = step({"text": text})
    best = max(range(3), key=reference.__getitem__)
    assert record["suggested"] == labels[best] and record["suggested_score"] == pytest.approx(reference[best], abs=1e-4)
    assert step.counts == {f"suggested {labels[best]}": 1}


def test_label_model_prelabels_for_review_in_label_studio_tasks(tiny_lm, tmp_path):
    import json

    from tailor.data import STAGE as DATA_STAGE
    from tailor.spec import parse_spec

    (tmp_path / "t.jsonl").write_text('{"text": "money back please", "label": null}\n{"text": "where my parcel", "label": "shipping"}\n')
    spec = parse_spec(f"""name: d
problem: {{domain: d, task: t}}
data:
  sources: [{{type: files, path: t.jsonl}}]
  fields: {{input: text, output: label}}
  clean: [{{missing: {{drop: [text]}}}}, {{label_model: {{model: {tiny_lm}, labels: [refund, shipping, other]}}}}]
  split: {{train: 1, validation: 0, test: 0}}
  label_studio: true
""", "s.yaml", tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    report = DATA_STAGE.call(spec, out)
    assert {s["step"]: s["counts"] for s in report["steps"]}["label_model"].keys() <= {f"suggested {x}" for x in ("refund", "shipping", "other")}
    tasks = json.loads((out / "label_studio.json").read_text())
    first, second = tasks
    assert "score" in first["predictions"][0] and 0 < first["predictions"][0]["score"] <= 1
    assert second["predictions"][0]["result"][0]["value"]["choices"] == ["shipping"]   # a real label wins
    assert "suggested_label" not in first["data"] and first["data"]["text"] == "money back please"
