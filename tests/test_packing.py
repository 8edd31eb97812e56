"""Sequence packing: several examples per row, each scored exactly as if it were alone."""

import random

import pytest
import torch

from tailor.models import compute_loss
from tailor.models.transformer import Transformer, TransformerConfig
from tailor.train.batches import IGNORE, PackedBatches, PairBatches


def examples(n: int = 12, seed: int = 0) -> list[tuple[list[int], list[int]]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        prompt = [rng.randrange(3, 30) for _ in range(rng.randrange(2, 6))]
        answer = [rng.randrange(3, 30) for _ in range(rng.randrange(1, 4))] + [2]
        ids = prompt + [1] + answer
        out.append((ids, [IGNORE] * (len(prompt) + 1) + answer))
    return out


@pytest.mark.parametrize("positions", ["learned", "rope"])
def test_packed_rows_give_each_example_its_own_logits(positions):
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(vocab_size=30, block_size=24, n_layer=2, n_head=2, n_embd=16,
                                          positions=positions)).eval()
    data = examples()
    packed = PackedBatches(data, block_size=24, rows=2, pad_id=0, seed=0)
    batch = packed(0)
    assert (batch["input_ids"] != 0).float().mean() > 0.8           # rows are nearly full
    logits, _ = model(batch["input_ids"], position_ids=batch["position_ids"])
    for r, row in enumerate(packed._epoch(0)[:2]):
        at = 0
        for j in row:
            ids = torch.tensor(data[j][0][:-1])[None]
            alone, _ = model(ids)
            torch.testing.assert_close(logits[r, at:at + ids.shape[1]], alone[0], rtol=1e-5, atol=1e-5)
            at += ids.shape[1]


@pytest.mark.parametrize("lora", [False, True])
def test_packed_rows_of_a_hf_causal_lm_attend_only_within_their_example(lora):
    """transformers builds the block-diagonal mask from restarting position_ids (no cache in training)."""
    model = tiny_llama(lora).eval()
    data = examples()
    packed = PackedBatches(data, block_size=24, rows=2, pad_id=0, seed=0)
    batch = packed(0)
    with torch.no_grad():
        logits, loss, n = compute_loss(model, batch)
        total = 0.0
        for r, row in enumerate(packed._epoch(0)[:2]):
            at = 0
            for j in row:
                alone = PairBatches([data[j]], 1, 0, seed=0)(0)
                alone_logits, alone_loss, alone_n = compute_loss(model, alone)
                width = alone["input_ids"].shape[1]
                torch.testing.assert_close(logits[r, at:at + width], alone_logits[0], rtol=1e-5, atol=1e-5)
                total += alone_loss.item() * alone_n
                at += width
    torch.testing.assert_close(loss.item(), total / n, rtol=1e-5, atol=1e-6)   # the same mean over scored tokens


def test_packing_scores_the_same_tokens_with_fewer_rows():
    data = examples(40)
    packed, plain = PackedBatches(data, 24, 4, 0, seed=1), PairBatches(data, 4, 0, seed=1)
    per_epoch = len(packed._epoch(0))
    assert per_epoch < len(data) / 2                                  # several examples per row
    scored = sum(int((packed(s)["targets"] != IGNORE).sum()) for s in range(per_epoch // 4))
    rows = [j for row in packed._epoch(0)[: (per_epoch // 4) * 4] for j in row]
    assert scored == sum(sum(t != IGNORE for t in data[j][1][1:]) for j in rows)
    assert list(packed.eval_batches(None))[0]["input_ids"].tolist() == list(plain.eval_batches(None))[0]["input_ids"].tolist()
    model = Transformer(TransformerConfig(vocab_size=30, block_size=24, n_layer=1, n_head=1, n_embd=8))
    _, loss, n = compute_loss(model, packed(0))
    assert torch.isfinite(loss) and n == int((packed(0)["targets"] != IGNORE).sum())


def tiny_llama(lora: bool):
    from transformers import LlamaConfig, LlamaForCausalLM

    from tailor.models.adapt import prepare
    from tailor.models.pretrained import mark
    from tailor.spec.model import Adapt

    torch.manual_seed(0)
    model = mark(LlamaForCausalLM(LlamaConfig(vocab_size=30, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                              num_attention_heads=2, num_key_value_heads=1,
                                              max_position_embeddings=64)),
                 "causal_lm", None)
    if lora:
        model = prepare(model, Adapt(lora={"r": 2, "dropout": 0.0}), 0.0, {"steps": 1, "epochs": 1}).model
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.normal_()  # adapters that change the output, as after training
    return model


def own_model(family: str):
    from tailor.models.recurrent import Recurrent, RecurrentConfig

    torch.manual_seed(0)
    if family == "recurrent":
        return Recurrent(RecurrentConfig(cell="lstm", vocab_size=30, n_embd=16, n_hidden=12, n_layer=1))
    return Transformer(TransformerConfig(vocab_size=30, block_size=24, n_layer=2, n_head=2, n_embd=16))


@pytest.mark.parametrize("family", ["transformer", "recurrent", "hf", "hf-lora"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_the_output_layer_at_scored_positions_only_gives_the_same_loss_and_gradients(family, smoothing):
    """Prompts are not scored: computing logits only at the answers changes nothing but the work."""
    from tailor.models import scored_positions
    from tailor.models.losses import Objective

    model = tiny_llama(family == "hf-lora") if family.startswith("hf") else own_model(family)
    batch = PairBatches(examples(), 4, 0, seed=0)(0)
    at = scored_positions(batch["targets"])
    assert at is not None and len(at) < batch["targets"].numel()
    objective = Objective(label_smoothing=smoothing)
    results = []
    for where in (None, at):
        model.zero_grad()
        logits, loss, n = compute_loss(model, batch, objective, None, where)
        loss.backward()
        results.append((logits, loss, n, [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    (full, loss, n, grads), (part, loss_at, n_at, grads_at) = results
    assert part.shape == (len(at), 30)
    torch.testing.assert_close(part, full.reshape(-1, 30)[at], rtol=1e-5, atol=1e-5)
    assert n == n_at == len(at)
    torch.testing.assert_close(loss_at, loss, rtol=1e-5, atol=1e-6)
    assert len(grads) == len(grads_at) > 0
    for g, g_at in zip(grads, grads_at):
        torch.testing.assert_close(g_at, g, rtol=1e-4, atol=1e-6)
    assert not hooks_left(model)                                    # the hook is gone after the forward


def hooks_left(model) -> list:
    """Forward pre-hooks left on any module of the model."""
    return [h for m in model.modules() for h in m._forward_pre_hooks.values()]


def test_all_scored_targets_need_no_positions():
    from tailor.models import scored_positions

    assert scored_positions(torch.tensor([[1, 2], [3, 4]])) is None
    assert scored_positions(torch.tensor([[IGNORE, 2], [3, IGNORE]])).tolist() == [1, 2]
