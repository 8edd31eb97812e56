"""The shipped examples: their data is what their generators or templates write, and they run end to end."""

import json
import subprocess
import sys
from pathlib import Path

from tailor.run import Pipeline, read_run
from tailor.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
PRODUCT_QA = ROOT / "examples" / "product-qa"


def test_product_qa_questions_are_rendered_from_the_tables_with_unseen_validation_and_test_wordings(tmp_path):
    import pandas as pd

    run_dir = Pipeline(load_spec(PRODUCT_QA / "spec.yaml"), tmp_path / "runs").run(until="data")
    splits = {s: pd.read_parquet(run_dir / "data" / f"{s}.parquet") for s in ("train", "validation", "test")}
    assert {s: len(d) for s, d in splits.items()} == {"train": 6900, "validation": 460, "test": 460}
    seen = set(splits["train"].question) | set(splits["validation"].question)
    assert not [q for q in splits["test"].question if q in seen]
    # whole wording frames are held out, one per attribute for validation and another for test: a
    # validation or test question's frame is in no other split, so validation measures what test does
    uses = {}
    for line in (PRODUCT_QA / "wordings.jsonl").read_text().splitlines():
        row = json.loads(line)
        uses.setdefault(row["use"], set()).add(row["frame"])
    assert set(uses) == {"train", "validation", "test"}
    for held in ("validation", "test"):
        assert set(splits[held].frame) == uses[held]
        assert len(set(splits[held].attribute)) == len(uses[held]) == 21  # every attribute, one frame each
        others = set().union(*(set(d.frame) for s, d in splits.items() if s != held))
        assert not uses[held] & others
    facts = {json.loads(line)["product"] + "|" + json.loads(line)["attribute"]: json.loads(line)["answer"]
             for line in (PRODUCT_QA / "facts.jsonl").read_text().splitlines()}
    for d in splits.values():  # every answer is its fact's, and the product is named in the question
        assert all(facts[f"{p}|{a}"] == ans for p, a, ans in zip(d["product"], d["attribute"], d["answer"]))
        assert all(q[0] == q[0].upper() and "{p}" not in q for q in d.question)
    assert set(zip(splits["test"]["product"], splits["test"]["attribute"])) <= set(
        zip(splits["train"]["product"], splits["train"]["attribute"]))
    again = Pipeline(load_spec(PRODUCT_QA / "spec.yaml"), tmp_path / "again").run(until="data")
    assert pd.read_parquet(again / "data" / "test.parquet").question.tolist() == splits["test"].question.tolist()


def test_product_qa_spec_runs_end_to_end_on_a_small_budget(tmp_path):
    spec = load_spec(PRODUCT_QA / "spec.yaml")
    spec.train.max_steps = 15
    spec.train.eval_every = 15
    spec.evaluate.max_examples = 20
    run_dir = Pipeline(spec, tmp_path / "runs").run()
    info = read_run(run_dir)
    assert info["status"] == "complete" and info["targets"]["total"] == 2
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert 0.0 <= metrics["test/exact_match"] <= 1.0 and metrics["test/examples"] == 20


TICKETS = ROOT / "examples" / "ticket-intents"
TINY_LM = ROOT / "examples" / "tiny-lm"


def test_ticket_intents_data_is_reproducible():
    res = subprocess.run([sys.executable, str(TICKETS / "generate.py"), "--check"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_ticket_intents_test_tickets_word_requests_unseen_in_training():
    import importlib.util

    spec = importlib.util.spec_from_file_location("ticket_generate", TICKETS / "generate.py")
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    train = [json.loads(line) for line in (TICKETS / "data" / "train.jsonl").read_text().splitlines()]
    test = [json.loads(line) for line in (TICKETS / "data" / "test.jsonl").read_text().splitlines()]
    intents = set(generate.REQUESTS)
    assert {r["intent"] for r in train} == {r["intent"] for r in test} == intents and len(intents) == 12
    for intent, requests in generate.REQUESTS.items():
        held = [r for r in requests if generate.held_out(intent, r)]
        assert held and len(held) < len(requests)  # every intent has wordings on both sides
    assert not {r["text"] for r in test} & {r["text"] for r in train}


def _tiny_budget(path: Path, steps: int):
    spec = load_spec(path)
    spec.train.max_steps = steps
    spec.train.eval_every = steps
    spec.train.eval_batches = 1
    spec.evaluate.splits = ["test"]
    return spec


def test_ticket_intents_specs_run_end_to_end_on_a_small_budget(tmp_path):
    gradual = _tiny_budget(TICKETS / "spec.yaml", 4)
    gradual.train.batch_size = 8
    gradual.model.adapt.freeze.unfreeze_every = 1
    run_dir = Pipeline(gradual, tmp_path / "runs").run()
    summary = json.loads((run_dir / "train" / "summary.json").read_text())
    assert [u["unfrozen"] for u in summary["unfrozen"]] == ["layer 5", "layer 4", "layer 3"]
    head_only = _tiny_budget(TICKETS / "spec-head-only.yaml", 2)
    head_only.train.batch_size = 8
    baseline = Pipeline(head_only, tmp_path / "runs").run()
    assert json.loads((baseline / "train" / "summary.json").read_text())["unfrozen"] == []
    for run in (run_dir, baseline):
        metrics = json.loads((run / "metrics.json").read_text())
        assert read_run(run)["status"] == "complete" and metrics["test/examples"] == 300
        assert 0.0 <= metrics["test/f1_macro"] <= 1.0


def test_tiny_lm_specs_train_an_lstm_and_a_transformer_on_the_same_text(tmp_path):
    from tailor.inference import Generator

    runs = {}
    for family in ("lstm", "transformer"):
        spec = _tiny_budget(TINY_LM / f"spec-{family}.yaml", 3)
        runs[family] = Pipeline(spec, tmp_path / "runs").run()
        metrics = json.loads((runs[family] / "metrics.json").read_text())
        assert metrics["test/bits_per_byte"] > 0 and read_run(runs[family])["status"] == "complete"
    data = [(runs[f] / "data" / "train.parquet").read_bytes() for f in runs]
    tokenizers = [(runs[f] / "tokenizer" / "tokenizer.json").read_text() for f in runs]
    assert data[0] == data[1] and tokenizers[0] == tokenizers[1]
    config = json.loads((runs["lstm"] / "train" / "model" / "config.json").read_text())
    assert config["model_type"] == "tailor-recurrent" and config["cell"] == "lstm"
    completion = Generator(runs["lstm"]).complete("ROMEO:", max_new_tokens=8, temperature=0.8, seed=1)
    assert 1 <= completion.completion_tokens <= 8


CHAT = ROOT / "examples" / "chat-smollm2"


def test_chat_smollm2_data_is_reproducible_and_reads_as_conversations(tmp_path):
    """The committed chats are what generate.py writes; every one passes the data stage's checks as a
    conversation that ends with an assistant turn, and the tokenizer renders it in SmolLM2's template."""
    import pandas as pd

    from tailor.tokenizer import Codec
    from tailor.tokenizer.chat import encode_chats

    res = subprocess.run([sys.executable, str(CHAT / "generate.py"), "--check"], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    run_dir = Pipeline(load_spec(CHAT / "spec.yaml"), tmp_path / "runs").run(until="tokenizer")
    report = json.loads((run_dir / "data" / "report.json").read_text())
    assert report["rejected"] == 0 and report["kept"] + report["dropped"] == 160
    train = pd.read_parquet(run_dir / "data" / "train.parquet")
    codec = Codec.load(run_dir / "tokenizer")
    examples = encode_chats(list(train.conversations), codec, 1024)
    assert all(json.loads(c)[0]["role"] == "system" for c in train.conversations)
    assert max(len(ids) for ids, _ in examples) < 320  # short enough for a few-minute CPU run


POLITE = ROOT / "examples" / "preference-polite"


def test_preference_polite_data_is_what_its_generator_writes_and_its_specs_parse():
    import importlib.util

    spec = importlib.util.spec_from_file_location("polite_generate", POLITE / "generate.py")
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    shipped = [json.loads(line) for line in (POLITE / "data" / "pairs.jsonl").read_text().splitlines()]
    assert shipped == generate.pairs()
    for name in ("spec.yaml", "spec-orpo.yaml"):
        loaded = load_spec(POLITE / name)
        assert loaded.train.objective == ("orpo" if "orpo" in name else "dpo")
        assert loaded.data.fields.rejected == "rejected" and loaded.data.split.group == "task"
