import math

import pytest
import torch

from tailor.models import load_model, save_model
from tailor.models.transformer import Transformer, TransformerConfig

VARIANTS = {
    "gpt2": {},
    "modern": {"positions": "rope", "norm": "rmsnorm", "activation": "swiglu", "n_kv_head": 1, "bias": False},
    "window": {"window": 4, "positions": "rope"},
    "untied": {"tie_weights": False, "activation": "gelu"},
}


def tiny(**overrides) -> Transformer:
    torch.manual_seed(0)
    return Transformer(TransformerConfig(vocab_size=50, block_size=32, n_layer=2, n_head=2, n_embd=16, **overrides))


def test_loss_decreases_on_a_tiny_corpus():
    torch.manual_seed(0)
    text = "the cat sat on the mat. " * 40
    vocab = sorted(set(text))
    ids = torch.tensor([vocab.index(c) for c in text])
    model = Transformer(TransformerConfig(vocab_size=len(vocab), block_size=16, n_layer=2, n_head=2, n_embd=32))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
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


@pytest.mark.parametrize("variant", VARIANTS)
def test_cached_generation_equals_full_recompute(variant):
    model = tiny(**VARIANTS[variant]).eval()
    prompt = torch.tensor([[3, 1, 4, 1, 5, 9, 2]])
    fast = model.generate(prompt, 12)
    seq = prompt
    with torch.no_grad():
        for _ in range(12):
            logits, _ = model(seq)
            seq = torch.cat([seq, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(fast, seq)


@pytest.mark.parametrize("variant", VARIANTS)
def test_save_and_load_round_trip(tmp_path, variant):
    model = tiny(**VARIANTS[variant]).eval()
    save_model(model, tmp_path / variant)
    loaded = load_model(tmp_path / variant).eval()
    x = torch.randint(0, 50, (2, 10))
    torch.testing.assert_close(model(x)[0], loaded(x)[0], rtol=0, atol=0)
    assert loaded.config == model.config


def test_window_limits_attention():
    model = tiny(window=2).eval()
    a = torch.tensor([[1, 2, 3, 4, 5, 6]])
    b = torch.tensor([[9, 9, 3, 4, 5, 6]])  # differs only outside the last position's window
    with torch.no_grad():
        assert torch.allclose(model(a)[0][0, -1], model(b)[0][0, -1], atol=1e-5)
        assert not torch.allclose(model(a)[0][0, 2], model(b)[0][0, 2], atol=1e-5)


def test_logits_equal_hf_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    hf = GPT2LMHeadModel(GPT2Config(vocab_size=101, n_positions=64, n_embd=48, n_layer=3, n_head=4,
                                    resid_pdrop=0, embd_pdrop=0, attn_pdrop=0)).eval()
    ours = Transformer.from_gpt2(hf).eval()
    x = torch.randint(0, 101, (3, 40))
    with torch.no_grad():
        torch.testing.assert_close(ours(x)[0], hf(x).logits, rtol=1e-4, atol=1e-4)
        labels = x.clone()
        _, our_loss = ours(x[:, :-1], labels[:, 1:])
        torch.testing.assert_close(our_loss, hf(x, labels=labels).loss, rtol=1e-4, atol=1e-4)


def test_sequence_longer_than_block_is_refused():
    with pytest.raises(ValueError, match="exceeds block_size"):
        tiny()(torch.zeros(1, 33, dtype=torch.long))


def test_bad_config_is_explained():
    with pytest.raises(ValueError, match="divisible by n_head"):
        TransformerConfig(n_embd=10, n_head=3)
    with pytest.raises(ValueError, match="norm must be one of"):
        TransformerConfig(norm="batchnorm")
