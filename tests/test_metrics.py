"""Metric formulas against the reference implementations' own published test vectors, and
the language-modelling formulas against values computed by hand."""

import math
from pathlib import Path

import numpy as np
import pytest

from tailor.evaluate import metrics as M
from tailor.evaluate.bootstrap import difference, interval

ROUGE_DATA = Path(__file__).parent / "data" / "rouge"

# sacrebleu test/test_bleu.py: the README example, three hypotheses against two reference streams
REFS = [["The dog bit the man.", "It was not unexpected.", "The man bit him first."],
        ["The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."]]
HYPS = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."]
PER_EXAMPLE = list(zip(*REFS))  # our API takes each example's references together


@pytest.mark.parametrize("hyps, options, expected", [
    (HYPS, {}, 48.530827), (["", "", ""], {}, 0.0), (HYPS, {"tokenize": "none"}, 49.1919566),
    (HYPS, {"tokenize": "13a"}, 48.530827), (HYPS, {"tokenize": "intl"}, 43.91623493),
    (HYPS, {"smooth_method": "none"}, 48.530827)])
def test_corpus_bleu_matches_sacrebleu_test_vectors(hyps, options, expected):
    assert abs(M.bleu(hyps, PER_EXAMPLE, **options) - expected) < 1e-6  # sacrebleu asserts 1e-8 on unrounded values


@pytest.mark.parametrize("hyps, refs, expected", [
    (["this is a test"], ["this is a test"], 1.0), (["this is a fest"], ["this is a test"], 0.223606797749979),
    (["test"], ["a test"], 0.3678794411714425), (["a test"], ["a test"], 1.0),
    (["a little test"], ["a test"], 0.03218297948685433)])
def test_raw_bleu_cases(hyps, refs, expected):
    # sacrebleu's raw_corpus_bleu: floor smoothing 0.01, no tokenisation, effective order. (Its first raw case,
    # 'ref1'/'ref2', is scored 0.0 by the installed sacrebleu itself, so it is not repeated here.)
    opts = {"smooth_method": "floor", "smooth_value": 0.01, "force": True, "tokenize": "none", "effective_order": True}
    assert abs(M.bleu(hyps, refs, **opts) / 100 - expected) < 1e-8


@pytest.mark.parametrize("hyps, refs, expected", [
    (["abcdefg"], ["hijklmnop"], 0.0), (["a"], ["b"], 0.0), ([""], ["b"], 0.0), ([""], ["reference"], 0.0),
    (["aa"], ["ab"], 8.3333), (["a", "b"], ["a", "c"], 8.3333), (["a"], ["a"], 16.6667), (["a b c"], ["a b c"], 50.0),
    (["a b c"], ["abc"], 50.0),
    ([" risk assessment must be made of those who are qualified and expertise in the sector - these are the scientists ."],
     ["risk assessment has to be undertaken by those who are qualified and expert in that area - that is the scientists ."],
     63.361730),
    ([" Die    Beziehung zwischen  Obama und Netanjahu ist nicht gerade  freundlich. "],
     ["Das Verhältnis zwischen Obama und Netanyahu ist nicht gerade freundschaftlich."], 64.1302698),
    (["Niemand hat die Absicht, eine Mauer zu errichten"], ["Niemand hat die Absicht, eine Mauer zu errichten"], 100.0)])
def test_chrf_matches_sacrebleu_test_vectors(hyps, refs, expected):
    score = M.chrf(hyps, refs, char_order=6, word_order=0, beta=3, eps_smoothing=True)
    assert abs(score - expected) < 1e-4  # sacrebleu's EPSILON for chrF


@pytest.mark.parametrize("hyps, refs, expected", [
    (["a"], ["a"], 100.0), ([""], ["reference"], 0.0), (["a b c"], ["abc"], 100.0), (["a", "b"], ["a", "c"], 50.0),
    (["aa"], ["ab"], 25.0)])
def test_chrf_effective_order_vectors(hyps, refs, expected):
    assert abs(M.chrf(hyps, refs, char_order=6, word_order=0, beta=3, eps_smoothing=False) - expected) < 1e-4


def test_sentence_chrf_vector():
    hyp = "Lapali po dechu, jejich životy skončily dřív, než skutečně začaly."
    ref = "Lapali po dechu a pak jejich život skončil - dřív, než skutečně mohl začít, připomněli."
    assert abs(M.chrf([hyp], [ref], eps_smoothing=True) - 57.15704367) < 1e-4


def test_rouge_simple_cases_from_rouge_score_tests():
    r = M.rouge_scores("testing", "testing one two")  # prediction, target
    assert (r["rouge1"].precision, r["rouge1"].recall, r["rouge1"].fmeasure) == pytest.approx((1, 1 / 3, 1 / 2))
    r = M.rouge_scores("testing one", "testing one two")
    assert r["rouge2"].fmeasure == pytest.approx(2 / 3) and r["rougeL"].fmeasure == pytest.approx(4 / 5)
    assert M.rouge_scores("testing two", "testing one two")["rougeL"].fmeasure == pytest.approx(4 / 5)
    r = M.rouge_scores("w1 w2 w6 w7 w8\nw1 w3 w8 w9 w5", "w1 w2 w3 w4 w5")
    assert (r["rougeLsum"].recall, r["rougeLsum"].precision) == pytest.approx((0.8, 0.4))
    assert r["rougeLsum"].fmeasure == pytest.approx(0.5333, abs=1e-3)
    assert M.rouge_scores("", "testing one two")["rouge1"].fmeasure == 0


def test_rouge_agrees_with_rouge155_outputs():
    targets = (ROUGE_DATA / "target.txt").read_text().splitlines(keepends=True)
    preds = (ROUGE_DATA / "prediction.txt").read_text().splitlines(keepends=True)
    expected = {"rouge1": [(0.40741, 0.68750, 0.51163), (0.40476, 0.65385, 0.50000)],
                "rouge2": [(0.30769, 0.53333, 0.39024), (0.29268, 0.48000, 0.36364)],
                "rougeL": [(0.40741, 0.68750, 0.51163), (0.40476, 0.65385, 0.50000)]}
    for i in range(2):
        got = M.rouge_scores(preds[i], targets[i])
        for kind, rows in expected.items():
            assert (got[kind].recall, got[kind].precision, got[kind].fmeasure) == pytest.approx(rows[i], abs=5e-6)
    stemmed = M.rouge_scores(preds[1], targets[1], use_stemmer=True)["rouge1"]
    assert (stemmed.recall, stemmed.precision, stemmed.fmeasure) == pytest.approx((0.42857, 0.69231, 0.52941), abs=5e-6)
    lsum = M.rouge_scores((ROUGE_DATA / "prediction_multi.0.txt").read_text(),
                          (ROUGE_DATA / "target_multi.0.txt").read_text(), use_stemmer=True)["rougeLsum"]
    assert (lsum.recall, lsum.precision, lsum.fmeasure) == pytest.approx((0.36538, 0.66667, 0.47205), abs=5e-6)


def test_corpus_rouge_is_the_mean_f_measure():
    got = M.rouge(["testing", "testing one"], ["testing one two", "testing one two"])
    assert got["rouge1"] == pytest.approx((1 / 2 + 4 / 5) / 2)


def test_squad_normalisation_exact_match_and_f1():
    assert M.squad_normalize("The  Cat, sat!") == "cat sat"
    assert M.squad_normalize("an apple a day") == "apple day"
    assert M.normalized_exact_match("The answer.", "answer") == 1.0
    assert M.normalized_exact_match("answers", ["answer", "Answers!"]) == 1.0
    # 'cat sat' vs 'cat sat on mat': 2 common of 2 predicted and 4 reference tokens: P=1, R=1/2, F1=2/3
    assert M.token_f1("the cat sat", "A cat sat on the mat") == pytest.approx(2 / 3)
    assert M.token_f1("dog", "cat") == 0.0
    assert M.token_f1("cat", ["dog", "the cat"]) == 1.0  # best reference
    assert M.exact_match([" 18 V", "12 V"], ["18 V", "18 V"]) == 0.5


def test_lm_formulas_by_hand():
    # 3 tokens with probabilities 1/2, 1/4, 1/8: NLL = (1 + 2 + 3) ln 2 = 6 ln 2
    nll = 6 * math.log(2)
    assert M.perplexity(nll, 3) == pytest.approx(4.0)          # exp(2 ln 2)
    text = "héllo wörld"                                         # 2 words, 13 UTF-8 bytes
    assert M.count_words(text) == 2 and len(text.encode()) == 13
    assert M.word_perplexity(nll, 2) == pytest.approx(8.0)     # exp(3 ln 2)
    assert M.bits_per_byte(nll, 13) == pytest.approx(6 / 13)   # 6 bits over 13 bytes
    assert M.byte_perplexity(nll, 13) == pytest.approx(2 ** (6 / 13))
    assert M.count_words(" a  b\n") == 4                       # as lm-eval: re.split(r"\s+", ...) keeps edge pieces


def test_registry_aggregates_per_example_columns():
    rows = [{"nll": 2.0, "tokens": 2, "bytes": 4, "words": 1}, {"nll": 4.0, "tokens": 3, "bytes": 8, "words": 2}]
    cols = M.metric_columns(rows, M.REGISTRY["loss"])
    assert M.REGISTRY["loss"].aggregate(cols) == pytest.approx(6 / 5)
    bpb = M.REGISTRY["bits_per_byte"]
    assert bpb.aggregate(M.metric_columns(rows, bpb)) == pytest.approx(6 / math.log(2) / 12)
    gen = M.generation_columns(HYPS, [r[0] for r in PER_EXAMPLE])
    bleu = M.REGISTRY["bleu"]
    stats = {"bleu_stats": np.asarray(gen["bleu_stats"])}
    assert bleu.aggregate(stats) == pytest.approx(M.bleu(HYPS, [r[0] for r in PER_EXAMPLE]))


def test_bootstrap_interval_of_a_mean():
    rng = np.random.default_rng(0)
    x = rng.normal(0.0, 1.0, 400)
    cols = {"exact": x}
    low, high = interval(M.REGISTRY["exact_match"], cols, samples=2000, seed=1)
    se = x.std(ddof=1) / math.sqrt(len(x))
    assert low < x.mean() < high
    assert (high - low) == pytest.approx(2 * 1.96 * se, rel=0.1)  # close to the normal interval
    assert interval(M.REGISTRY["exact_match"], cols, samples=200, seed=1) == \
        interval(M.REGISTRY["exact_match"], cols, samples=200, seed=1)
    assert all(math.isnan(v) for v in interval(M.REGISTRY["exact_match"], {"exact": np.ones(1)}))


def test_paired_difference_detects_a_real_gap_and_not_a_null_one():
    rng = np.random.default_rng(0)
    base = rng.random(300) < 0.5
    better = base | (rng.random(300) < 0.3)
    em = M.REGISTRY["exact_match"]
    d = difference(em, [{"exact": base.astype(float)}], [{"exact": better.astype(float)}], paired=True, samples=500)
    assert d["delta"] > 0 and d["low"] > 0 and d["p_value"] < 0.01
    same = difference(em, [{"exact": base.astype(float)}], [{"exact": base.astype(float)}], paired=True, samples=200)
    assert same["delta"] == 0 and same["low"] == same["high"] == 0
    shuffled = difference(em, [{"exact": base.astype(float)}], [{"exact": rng.permutation(base).astype(float)}],
                          paired=False, samples=500)
    assert shuffled["low"] < 0 < shuffled["high"] and shuffled["p_value"] > 0.05
