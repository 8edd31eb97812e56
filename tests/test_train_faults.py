"""Damaged checkpoints: quarantined with their reason, never deleted; a run never silently restarts from step 0."""

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from tailor.errors import TailorError
from tailor.run import Pipeline, work_dir
from tailor.spec import load_spec
from tailor.train.checkpoint import Checkpoints

from test_train_engine import RESUMABLE, crashed_run, rows


def flip_bit(path: Path) -> bytes:
    """Flip one bit in the middle of the file (its size stays the same); return the damaged bytes."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))
    return bytes(data)


def test_a_flipped_bit_in_every_optimizer_file_is_refused_not_restarted(make_spec, tmp_path, monkeypatch, capsys):
    spec = make_spec(RESUMABLE)
    run_dir = crashed_run(spec, tmp_path / "runs", monkeypatch, 10)
    work = work_dir(run_dir, "train")
    saved = {p.name: flip_bit(p / "optimizer.safetensors") for p in sorted((work / "checkpoints").iterdir())}
    assert list(saved) == ["step-0000006", "step-0000008"]
    curve = (work / "metrics.jsonl").read_bytes()
    capsys.readouterr()
    monkeypatch.setenv("COLUMNS", "500")
    with pytest.raises(TailorError) as refused:
        Pipeline(load_spec(spec), tmp_path / "runs").run(until="train")
    message = str(refused.value)
    assert "no good checkpoint" in message and "not starting again from step 0" in message
    assert "optimizer.safetensors does not match its checksum" in message and str(work / "quarantine") in message
    err = capsys.readouterr().err
    assert "using the previous one" not in err and err.count("no earlier checkpoint is good") == 2
    for name, damaged in saved.items():  # moved whole, with a note of what was wrong; nothing deleted
        kept = work / "quarantine" / name
        assert (kept / "optimizer.safetensors").read_bytes() == damaged and (kept / "model.safetensors").is_file()
        note = json.loads((work / "quarantine" / f"{name}.json").read_text())
        assert note["problem"] == "optimizer.safetensors does not match its checksum"
        assert note["from"] == str(work / "checkpoints" / name)
    assert (work / "metrics.jsonl").read_bytes() == curve  # no second curve from step 0 began
    with pytest.raises(TailorError, match="not starting again from step 0"):  # and not on the next try either
        Pipeline(load_spec(spec), tmp_path / "runs").run(until="train")

    shutil.move(work / "quarantine", tmp_path / "set-aside")  # the user's own decision to start over
    done = Pipeline(load_spec(spec), tmp_path / "runs").run(until="train")
    assert rows(done)[0][0] == 1 and (tmp_path / "set-aside" / "step-0000008" / "optimizer.safetensors").is_file()


def test_a_damaged_newest_checkpoint_is_quarantined_and_training_resumes_from_the_previous(
        make_spec, tmp_path, monkeypatch, capsys):
    spec = make_spec(RESUMABLE)
    run_dir = crashed_run(spec, tmp_path / "runs", monkeypatch, 13)
    work = work_dir(run_dir, "train")
    flip_bit(work / "checkpoints" / "step-0000012" / "optimizer.safetensors")
    monkeypatch.setenv("COLUMNS", "500")
    capsys.readouterr()
    done = Pipeline(load_spec(spec), tmp_path / "runs").run(until="train")
    err = capsys.readouterr().err
    assert "step-0000012 is damaged (optimizer.safetensors does not match its checksum); moved to" in err
    assert "the newest good one is step-0000008" in err and "resuming from" in err
    assert rows(done)[-1][0] == 18
    # the finished stage keeps the quarantined checkpoint and its note
    assert (done / "train" / "quarantine" / "step-0000012" / "optimizer.safetensors").is_file()
    assert json.loads((done / "train" / "quarantine" / "step-0000012.json").read_text())["problem"].startswith(
        "optimizer.safetensors")


def test_damaged_checkpoints_of_other_inputs_are_kept_but_do_not_block_a_changed_spec(make_spec, tmp_path,
                                                                                       monkeypatch):
    run_dir = crashed_run(make_spec(RESUMABLE), tmp_path / "runs", monkeypatch, 10)
    work = work_dir(run_dir, "train")
    for folder in (work / "checkpoints").iterdir():
        flip_bit(folder / "optimizer.safetensors")
    with pytest.raises(TailorError, match="not starting again from step 0"):
        Pipeline(load_spec(make_spec(RESUMABLE)), tmp_path / "runs").run(until="train")
    with open(tmp_path / "data" / "items.jsonl", "a") as f:  # other inputs: those checkpoints would not apply
        f.write('{"question": "what colour is item 77", "answer": "teal", "item": 77}\n')
    done = Pipeline(load_spec(make_spec(RESUMABLE)), tmp_path / "runs").run(until="train")
    assert done == run_dir and rows(done)[0][0] == 1 and rows(done)[-1][0] == 18
    kept = list((done / "train" / "quarantine").glob("other-inputs-*/step-0000008/optimizer.safetensors"))
    assert len(kept) == 1 and (kept[0].parent.parent / "step-0000008.json").is_file()


def _tiny_checkpoints(tmp_path):
    from tailor.models.transformer import Transformer, TransformerConfig

    torch.manual_seed(0)
    model = Transformer(TransformerConfig(vocab_size=40, block_size=8, n_layer=1, n_head=2, n_embd=16))
    checkpoints = Checkpoints(tmp_path / "checkpoints", keep_last=5, warn=lambda m: warnings.append(m))
    checkpoints.save(model, torch.optim.AdamW(model.parameters()), 4, {}, None)
    best = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    return model, checkpoints, best


warnings: list[str] = []


@pytest.mark.parametrize("damaged", ["model.safetensors", "optimizer.safetensors"])
def test_the_best_checkpoint_is_verified_before_it_is_loaded(tmp_path, damaged):
    from tailor.spec.train import Train
    from tailor.train.loop import LoopState, _final_weights

    model, checkpoints, best = _tiny_checkpoints(tmp_path)
    last = {k: v.clone() for k, v in model.state_dict().items()}
    flip_bit(checkpoints.path(4) / damaged)
    warnings.clear()
    kept = _final_weights(SimpleNamespace(model=model), checkpoints, Train(), LoopState(step=8, best_step=4), "max_steps")
    now = model.state_dict()
    if damaged == "optimizer.safetensors":  # the weights are intact: the best ones are used
        assert kept == "best validation checkpoint (step 4)"
        assert all(torch.equal(now[k], best[k]) for k in best)
        assert checkpoints.path(4).is_dir() and not warnings
    else:  # damaged weights are never loaded; the checkpoint is set aside with its reason
        assert kept.startswith("last step (8); the best checkpoint (step 4) was damaged: model.safetensors")
        assert all(torch.equal(now[k], last[k]) for k in last)
        assert not checkpoints.path(4).exists() and (checkpoints.quarantine / "step-0000004" / damaged).is_file()
        assert json.loads((checkpoints.quarantine / "step-0000004.json").read_text())["problem"] == \
            "model.safetensors does not match its checksum"
        assert warnings and "cannot be used" in warnings[0]
