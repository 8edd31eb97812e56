"""The evaluate stage: per-example predictions, metrics recomputed by the reference libraries,
intervals, the error analysis, and the report sections built from them."""

import json

import pyarrow.parquet as pq
import pytest
import sacrebleu
import torch

from tailor.errors import TailorError
from tailor.evaluate.errors import analyse, cluster_errors, length_buckets, slice_fields
from tailor.evaluate.metrics import rouge
from tailor.evaluate.predictions import by_split, read_predictions
from tailor.evaluate.scoring import Reading, example_nll
from tailor.spec import load_spec
from tailor.spec.evaluate import ErrorAnalysis


def test_predictions_parquet_has_one_row_per_example(finished_run):
    spec_path, run_dir = finished_run
    table = pq.read_table(run_dir / "evaluate" / "predictions.parquet")
    rows = table.to_pylist()
    data = {s: pq.read_table(run_dir / "data" / f"{s}.parquet").num_rows for s in ("validation", "test")}
    assert {s: len(r) for s, r in by_split(rows).items()} == data
    for col in ("split", "index", "input", "expected", "predicted", "correct", "nll", "tokens", "loss", "bytes",
                "words", "input_tokens", "latency_ms", "f1", "rougeL", "bleu_stats", "meta.item"):
        assert col in table.column_names, col
    answered = [r for r in rows if r["predicted"] is not None]
    assert len(answered) == sum(min(8, n) for n in data.values())  # evaluate.max_examples per split


def test_loss_from_examples_equals_the_training_loop_evaluation(finished_run):
    from tailor.splits import load_split
    from tailor.inference import Generator
    from tailor.train.batches import make_batches
    from tailor.train.loop import evaluate_loss

    spec_path, run_dir = finished_run
    spec = load_spec(spec_path)
    gen = Generator(run_dir)
    records = load_split(run_dir / "data", "test")
    batches = make_batches(records, gen.codec, gen.model.config.block_size, spec.train.batch_size, 0,
                           fields=spec.data.fields, output=spec.problem.output)
    loss, tokens = evaluate_loss(gen.model, batches, None, torch.device("cpu"))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test/loss"] == pytest.approx(loss, rel=1e-6) and metrics["test/tokens"] == tokens


def test_corpus_nll_is_split_over_documents_without_loss(finished_run):
    """A text corpus is scored as one stream; every scored position is credited to exactly one document."""
    from tailor.inference import Generator
    from tailor.train.batches import make_batches
    from tailor.train.loop import evaluate_loss

    spec_path, run_dir = finished_run
    spec = load_spec(spec_path)
    spec.data.fields = spec.data.fields.model_validate({"text": "body"})
    gen = Generator(run_dir)
    records = [{"body": "what colour is item %d and why " % i * (1 + i % 3)} for i in range(9)]
    nll, counts = example_nll(gen, Reading.of(spec), records)
    batches = make_batches(records, gen.codec, gen.model.config.block_size, spec.train.batch_size, 0,
                           fields=spec.data.fields, output=spec.problem.output)
    loss, tokens = evaluate_loss(gen.model, batches, None, torch.device("cpu"))
    lengths = [len(ids) + 1 for ids in gen.codec.encode_batch([r["body"] for r in records])]
    assert counts == [lengths[0] - 1] + lengths[1:]  # the stream's first token has no context
    assert sum(counts) == tokens and sum(nll) / sum(counts) == pytest.approx(loss, rel=1e-6)


def test_generation_metrics_agree_with_the_reference_libraries(finished_run):
    _, run_dir = finished_run
    rows = [r for r in read_predictions(run_dir) if r["split"] == "test" and r["predicted"] is not None]
    metrics = json.loads((run_dir / "evaluate" / "metrics.json").read_text())
    hyps, refs = [r["predicted"] for r in rows], [r["expected"] for r in rows]
    assert metrics["test/bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score)
    assert metrics["test/chrf"] == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score)
    assert metrics["test/rougeL"] == pytest.approx(rouge(hyps, refs)["rougeL"])
    assert metrics["test/exact_match"] == sum(h.strip() == r.strip() for h, r in zip(hyps, refs)) / len(rows)


def test_results_carry_intervals_and_generation_settings(finished_run):
    _, run_dir = finished_run
    results = json.loads((run_dir / "evaluate" / "results.json").read_text())
    for key in ("test/loss", "test/perplexity", "validation/bits_per_byte", "test/word_perplexity"):
        low, high = results["intervals"][key]
        assert low <= results["metrics"][key] <= high, key
    assert results["generation"] == {"max_new_tokens": 4, "temperature": 0.0, "top_p": 1.0, "seed": 0}
    assert results["bootstrap"]["samples"] == 1000 and results["max_examples"] == 8


def test_error_analysis_and_report_sections(finished_run):
    _, run_dir = finished_run
    errors = json.loads((run_dir / "evaluate" / "errors.json").read_text())
    assert errors["split"] == "test"
    losses = [w["loss"] for w in errors["worst"]]
    assert losses == sorted(losses, reverse=True) and len(losses) == min(10, errors["examples"])
    assert sum(b["examples"] for b in errors["length_buckets"]) == errors["examples"]
    assert "source" not in errors["slices"]  # a row id, not a grouping
    page = (run_dir / "report.html").read_text()
    for heading in ("Metrics", "Error analysis: test", "Worst examples by loss", "Most confused pairs",
                    "By input length", "Clusters of errors", "interval"):
        assert heading in page, heading


def _rows(n: int = 40) -> list[dict]:
    """Synthetic prediction rows: voltage questions fail, weight questions succeed."""
    rows = []
    for i in range(n):
        volt = i % 2 == 0
        rows.append({"split": "test", "index": i, "input": f"what is the voltage of drill {i}" if volt else
                     f"how heavy is saw {i} in kilograms please", "expected": "18 V" if volt else "2 kg",
                     "predicted": "12 V" if volt else "2 kg", "correct": not volt, "nll": 2.0 if volt else 0.5,
                     "tokens": 2, "loss": 1.0 if volt else 0.25, "bytes": 4, "words": 2,
                     "input_tokens": 6 if volt else 9, "exact": 0.0 if volt else 1.0, "f1": 0.5 if volt else 1.0,
                     "meta.category": "drill" if volt else "saw", "meta.id": str(i)})
    return rows


def test_error_analysis_on_known_rows():
    result = analyse(_rows(), ErrorAnalysis(clusters=2))
    assert result["errors"] == 20 and result["confused"][0] == {"expected": "18 V", "predicted": "12 V", "count": 20}
    by_cat = {s["value"]: s for s in result["slices"]["category"]}
    assert by_cat["drill"]["exact_match"] == 0.0 and by_cat["saw"]["exact_match"] == 1.0
    assert result["slices"]["category"][0]["value"] == "drill"  # worst first
    assert "id" not in result["slices"]
    buckets = length_buckets(_rows(), 2)
    assert [b["exact_match"] for b in buckets] == [0.0, 1.0]
    assert buckets[0]["bucket"].endswith("tokens")


def test_errors_cluster_by_topic():
    errors = [{"input": f"voltage of drill model {i}", "expected": "18 V", "predicted": "12 V", "loss": 1.0}
              for i in range(6)] + [{"input": f"weight of saw number {i}", "expected": "2 kg", "predicted": "3 kg",
                                     "loss": 1.0} for i in range(4)]
    result = cluster_errors(errors, 2, 2)
    sizes = sorted(c["size"] for c in result["clusters"])
    assert sizes == [4, 6]
    big = result["clusters"][0]
    assert big["size"] == 6 and {"voltage", "drill"} <= set(big["terms"]) and len(big["examples"]) == 2
    assert "skipped" in cluster_errors(errors[:3], 4, 2)


def test_unknown_slice_field_is_a_clear_error():
    with pytest.raises(TailorError, match=r"evaluate.error_analysis.slices: 'colour' is not a field.*category"):
        slice_fields(_rows(), ["colour"])


def test_spec_rejects_a_metric_the_output_kind_does_not_measure(make_spec):
    with pytest.raises(TailorError, match=r"evaluate.metrics: 'accuracy' is not measured for output 'text'"):
        load_spec(make_spec({"evaluate": {"metrics": ["accuracy"]}}))
