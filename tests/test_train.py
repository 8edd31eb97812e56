import math

import pytest
import torch

from tailor.models.transformer import Transformer, TransformerConfig
from tailor.spec.train import Schedule, Train
from tailor.train.batches import IGNORE, PairBatches, StreamBatches, collate
from tailor.train.checkpoint import gather_state, load_checkpoint, save_checkpoint
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
    save_checkpoint(tmp_path / "ck", *gather_state(model, opt), step=3)
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


def test_label_smoothing_and_class_weights_match_their_definitions():
    from tailor.models.losses import Objective, class_weight_tensor

    torch.manual_seed(0)
    logits = torch.randn(6, 4)
    labels = torch.tensor([0, 3, IGNORE, 1, 2, 3])
    keep = labels != IGNORE
    logp = logits[keep].log_softmax(-1)
    y = labels[keep]
    eps = 0.2
    smoothed = ((1 - eps) * -logp.gather(1, y[:, None])[:, 0] - eps * logp.mean(-1)).mean()
    loss, n = Objective(label_smoothing=eps).cross_entropy(logits, labels)
    assert n == 5 and loss.item() == pytest.approx(smoothed.item(), rel=1e-6)
    w = class_weight_tensor({"spam": 3.0, "ham": 0.5}, ["ham", "spam", "eggs", "toast"])
    assert w.tolist() == [0.5, 3.0, 1.0, 1.0]
    nll = -logp.gather(1, y[:, None])[:, 0]
    weighted = (w[y] * nll).sum() / w[y].sum()
    assert Objective(class_weight=w).cross_entropy(logits, labels)[0].item() == pytest.approx(weighted.item(), rel=1e-6)
    mse, count = Objective.mse(torch.tensor([[1.0], [3.0]]), torch.tensor([2.0, 1.0]))
    assert (mse.item(), count) == (2.5, 2)


def test_class_weights_need_known_labels():
    from tailor.errors import TailorError
    from tailor.models.losses import class_weight_tensor

    with pytest.raises(TailorError, match="unknown label\\(s\\) 'spma'; the labels are 'ham', 'spam'"):
        class_weight_tensor({"spma": 2.0}, ["ham", "spam"])
    with pytest.raises(TailorError, match="no class labels"):
        class_weight_tensor({"spam": 2.0}, None)


@pytest.mark.parametrize("optimizer", [{"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True},
                                       {"name": "adafactor", "lr": 0.05}, {"name": "adamw", "lr": 0.01}])
def test_each_optimizer_fits_a_batch(optimizer):
    torch.manual_seed(0)
    cfg = Train.model_validate({"optimizer": optimizer})
    model = Transformer(TransformerConfig(vocab_size=20, block_size=8, n_layer=1, n_head=2, n_embd=16))
    opt = make_optimizer(model, cfg.optimizer)
    assert type(opt).__name__.lower() == optimizer["name"]
    if optimizer["name"] == "sgd":
        assert opt.defaults["nesterov"] and opt.defaults["momentum"] == 0.9
    x = torch.randint(0, 20, (4, 8))
    losses = []
    for _ in range(30):
        _, loss = model(x, x)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0]


def test_overfitting_warning_when_validation_rises_while_training_falls(tmp_path):
    from tailor.train.monitor import Monitor

    seen = []
    m = Monitor(tmp_path, 0, 100, False, None, "", {}, None, seen.append)
    for step, train_loss, val in ((10, 2.0, 1.9), (20, 1.5, 1.95), (30, 1.0, 2.1)):
        m.write({"step": step, "split": "train", "loss": train_loss})
        m.write({"step": step, "split": "validation", "loss": val})
    m.close()
    assert len(seen) == 1 and "overfitting" in seen[0] and "step 10" in seen[0] and "early_stopping" in seen[0]
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 6
    seen.clear()  # a run that already stops early is not told to
    (tmp_path / "on").mkdir()
    m = Monitor(tmp_path / "on", 0, 100, False, None, "", {}, None, seen.append, stops_early=True)
    for step, train_loss, val in ((10, 2.0, 1.9), (20, 1.5, 1.95), (30, 1.0, 2.1)):
        m.write({"step": step, "split": "train", "loss": train_loss})
        m.write({"step": step, "split": "validation", "loss": val})
    m.close()
    assert len(seen) == 1 and "overfitting" in seen[0] and "early_stopping" not in seen[0]
