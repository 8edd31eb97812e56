import pytest
import torch
import torch.nn as nn

from tailor.models.recurrent import Recurrent, RecurrentConfig

pytestmark = pytest.mark.usefixtures("one_thread")

def tiny(cell: str, **overrides) -> Recurrent:
    torch.manual_seed(0)
    return Recurrent(RecurrentConfig(**{"cell": cell, "vocab_size": 40, "n_embd": 16, "n_hidden": 24, "n_layer": 2,
                                        **overrides}))


def test_lstm_equals_a_step_by_step_reference():
    """Our LSTM language model's logits equal embedding -> LSTMCell steps -> projection -> tied head."""
    model = tiny("lstm", n_layer=1).eval()
    cell = nn.LSTMCell(16, 24)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(cell, name).copy_(getattr(model.rnn, f"{name}_l0"))
        x = torch.randint(0, 40, (2, 9))
        h = c = torch.zeros(2, 24)
        expected = []
        for t in range(9):
            h, c = cell(model.wte(x[:, t]), (h, c))
            expected.append(model.proj(h) @ model.wte.weight.T)
        torch.testing.assert_close(model(x)[0], torch.stack(expected, dim=1), rtol=1e-5, atol=1e-5)


def test_bidirectional_encoder_ignores_padding():
    model = tiny("gru", bidirectional=True).eval()
    x = torch.tensor([[5, 6, 7, 0, 0], [5, 6, 7, 8, 9]])
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    with torch.no_grad():
        padded, _ = model.features(x, mask)
        alone, _ = model.features(x[:1, :3])
    torch.testing.assert_close(padded[0, :3], alone[0], rtol=1e-5, atol=1e-5)
    assert model.hidden_size == 48


def test_bidirectional_model_refuses_to_predict_the_next_token():
    with pytest.raises(ValueError, match="bidirectional"):
        tiny("lstm", bidirectional=True)(torch.zeros(1, 3, dtype=torch.long))


def test_bad_cell_is_explained():
    with pytest.raises(ValueError, match="cell must be one of rnn, lstm, gru"):
        RecurrentConfig(cell="transformer")


def test_packed_rows_are_refused_with_the_setting_to_change():
    from tailor.errors import TailorError

    x = torch.tensor([[1, 2, 3, 4]])
    with pytest.raises(TailorError, match="set train.packing: false"):
        tiny("lstm")(x, position_ids=torch.tensor([[0, 1, 0, 1]]))
