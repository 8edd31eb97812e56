import pytest
import torch

from tailor.models.transformer import Transformer, TransformerConfig

def tiny(**overrides) -> Transformer:
    torch.manual_seed(0)
    return Transformer(TransformerConfig(vocab_size=50, block_size=32, n_layer=2, n_head=2, n_embd=16, **overrides))


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
