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
