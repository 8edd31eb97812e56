import math

import pytest
import torch

from tailor.models.transformer import Transformer, TransformerConfig
from tailor.spec.train import Schedule, Train
from tailor.train.batches import IGNORE, PairBatches, StreamBatches, collate
from tailor.train.checkpoint import load_checkpoint, save_checkpoint
from tailor.train.optim import make_optimizer
from tailor.train.schedule import lr_at


def test_warmup_then_cosine_to_floor():
    s = Schedule(name="cosine", warmup_steps=10, min_lr_ratio=0.1)
    assert lr_at(0, 1.0, 110, s) == pytest.approx(0.1)
    assert lr_at(9, 1.0, 110, s) == pytest.approx(1.0)
    assert lr_at(60, 1.0, 110, s) == pytest.approx(0.55)
    assert lr_at(110, 1.0, 110, s) == pytest.approx(0.1)
    assert lr_at(50, 1.0, 110, Schedule(name="constant", warmup_steps=10)) == 1.0
    assert lr_at(60, 1.0, 110, Schedule(name="linear", warmup_steps=10, min_lr_ratio=0.0)) == pytest.approx(0.5)


def test_collate_masks_padding_and_prompt():
    batch = collate([([5, 6, 7, 8], [IGNORE, IGNORE, 7, 8]), ([5, 9], [IGNORE, 9])], pad_id=0)
    x, y = batch["input_ids"], batch["targets"]
    assert x.tolist() == [[5, 6, 7], [5, 0, 0]]
    assert y.tolist() == [[IGNORE, 7, 8], [9, IGNORE, IGNORE]]


def test_pair_batches_cover_each_example_once_per_epoch():
    examples = [([i, i + 1], [IGNORE, i + 1]) for i in range(10)]
    batches = PairBatches(examples, batch_size=5, pad_id=0, seed=1)
    seen = sorted(batches(0)["input_ids"][:, 0].tolist() + batches(1)["input_ids"][:, 0].tolist())
    assert seen == list(range(10))
    assert torch.equal(batches(3)["input_ids"], PairBatches(examples, 5, 0, 1)(3)["input_ids"])  # a function of the step


def test_stream_eval_scores_every_token_but_the_first_once():
    tokens = torch.arange(23)
    batches = StreamBatches(tokens, block_size=5, batch_size=2, seed=0)
    targets = torch.cat([b["targets"].flatten() for b in batches.eval_batches(None)])
    assert targets.tolist() == list(range(1, 23))


def test_weight_decay_skips_vectors():
    model = Transformer(TransformerConfig(vocab_size=20, block_size=8, n_layer=1, n_head=1, n_embd=8))
    decay, no_decay = make_optimizer(model, Train().optimizer).param_groups
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() < 2 for p in no_decay["params"])
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0


def test_checkpoint_restores_model_optimizer_and_rng(tmp_path):
    torch.manual_seed(0)
    cfg = Train()
    model = Transformer(TransformerConfig(vocab_size=20, block_size=8, n_layer=1, n_head=2, n_embd=8))
    opt = make_optimizer(model, cfg.optimizer)
    x = torch.randint(0, 20, (4, 8))
    for _ in range(3):
        _, loss = model(x, x)
        opt.zero_grad()
        loss.backward()
        opt.step()
    save_checkpoint(tmp_path / "ck", model, opt, step=3)
    expected_rng = torch.rand(3)
    model2 = Transformer(TransformerConfig(vocab_size=20, block_size=8, n_layer=1, n_head=2, n_embd=8))
    opt2 = make_optimizer(model2, cfg.optimizer)
    state = load_checkpoint(tmp_path / "ck", model2, opt2)
    assert state["step"] == 3
    torch.testing.assert_close(torch.rand(3), expected_rng)
    before, after = opt.state_dict()["state"], opt2.state_dict()["state"]
    assert sorted(before) == sorted(after)
    for idx in before:
        for k in before[idx]:
            torch.testing.assert_close(before[idx][k], after[idx][k])
    for model_, opt_ in ((model, opt), (model2, opt2)):  # one more step gives the same weights
        _, loss = model_(x, x)
        opt_.zero_grad()
        loss.backward()
        opt_.step()
    for p, q in zip(model.parameters(), model2.parameters()):
        torch.testing.assert_close(p, q)
    assert not math.isnan(loss.item())
