"""What every from-scratch language model must do: learn, generate incrementally, save and load."""

import math

import pytest
import torch

from tailor.models import load_model, save_model
from tailor.models.recurrent import Recurrent, RecurrentConfig
from tailor.models.transformer import Transformer, TransformerConfig

TRANSFORMERS = {
    "gpt2": {},
    "modern": {"positions": "rope", "norm": "rmsnorm", "activation": "swiglu", "n_kv_head": 1, "bias": False},
    "window": {"window": 4, "positions": "rope"},
    "untied": {"tie_weights": False, "activation": "gelu"},
}
MODELS = {
    **{f"transformer-{name}": lambda v, o=o: Transformer(TransformerConfig(vocab_size=v, block_size=32, n_layer=2,
                                                                            n_head=2, n_embd=32, **o))
       for name, o in TRANSFORMERS.items()},
    **{cell: lambda v, cell=cell: Recurrent(RecurrentConfig(cell=cell, vocab_size=v, n_embd=32, n_hidden=48, n_layer=2,
                                                            tie_weights=cell != "gru"))
       for cell in ("rnn", "lstm", "gru")},
}


pytestmark = pytest.mark.usefixtures("one_thread")

def build(name: str, vocab: int = 50):
    torch.manual_seed(0)
    return MODELS[name](vocab)


@pytest.mark.parametrize("name", ["transformer-gpt2", "transformer-modern", "rnn", "lstm", "gru"])
def test_loss_decreases_on_a_tiny_corpus(name):
    text = "the cat sat on the mat. " * 40
    vocab = sorted(set(text))
    ids = torch.tensor([vocab.index(c) for c in text])
    model = build(name, len(vocab))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3 if name.startswith("transformer") else 1e-2)
    starts = torch.arange(0, len(ids) - 17, 7)
    x = torch.stack([ids[s:s + 16] for s in starts])
    y = torch.stack([ids[s + 1:s + 17] for s in starts])
    _, first = model(x, y)
    for _ in range(60):
        _, loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert abs(first.item() - math.log(len(vocab))) < 0.3  # uniform guessing at the start
    assert loss.item() < 0.5 * first.item()


@pytest.mark.parametrize("name", MODELS)
def test_incremental_generation_equals_full_recompute(name):
    """Key/value cache or carried recurrent state: the same tokens as recomputing from scratch."""
    model = build(name).eval()
    prompt = torch.tensor([[3, 1, 4, 1, 5, 9, 2]])
    fast = model.generate(prompt, 12)
    seq = prompt
    with torch.no_grad():
        for _ in range(12):
            logits, _ = model(seq)
            seq = torch.cat([seq, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(fast, seq)


@pytest.mark.parametrize("name", MODELS)
def test_save_and_load_round_trip(tmp_path, name):
    model = build(name).eval()
    save_model(model, tmp_path / name)
    loaded = load_model(tmp_path / name).eval()
    x = torch.randint(0, 50, (2, 10))
    torch.testing.assert_close(model(x)[0], loaded(x)[0], rtol=0, atol=0)
    assert loaded.config == model.config
