"""Task heads on the from-scratch families, and compute_loss for every head."""

import pytest
import torch
import torch.nn.functional as F

from tailor.errors import TailorError
from tailor.models import compute_loss, head_of, labels_of, load_model, save_model, with_head
from tailor.models.recurrent import Recurrent, RecurrentConfig
from tailor.models.transformer import Transformer, TransformerConfig

LABELS = ["billing", "refund", "shipping"]


def transformer() -> Transformer:
    torch.manual_seed(0)
    return Transformer(TransformerConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=16))


def lstm(bidirectional: bool = True) -> Recurrent:
    torch.manual_seed(0)
    return Recurrent(RecurrentConfig(cell="lstm", vocab_size=50, n_embd=16, n_hidden=12, n_layer=1,
                                     bidirectional=bidirectional))


BACKBONES = {"transformer": transformer, "lstm": lstm}
BATCH = {"input_ids": torch.tensor([[4, 5, 6, 0, 0], [7, 8, 9, 10, 11]]),
         "attention_mask": torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])}


@pytest.mark.parametrize("family", BACKBONES)
@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_sequence_head_ignores_padding(family, pooling):
    model = with_head(BACKBONES[family](), "classification", LABELS, pooling).eval()
    with torch.no_grad():
        batched = model(BATCH["input_ids"], BATCH["attention_mask"])
        alone = model(BATCH["input_ids"][:1, :3], torch.ones(1, 3, dtype=torch.long))
    assert batched.shape == (2, 3)
    torch.testing.assert_close(batched[:1], alone, rtol=1e-5, atol=1e-5)


def test_classification_loss_is_cross_entropy_over_labels():
    model = with_head(transformer(), "classification", LABELS).eval()
    batch = {**BATCH, "labels": torch.tensor([2, 0])}
    logits, loss, n = compute_loss(model, batch)
    torch.testing.assert_close(loss, F.cross_entropy(model(BATCH["input_ids"], BATCH["attention_mask"]), batch["labels"]))
    assert n == 2 and logits.shape == (2, 3)


def test_a_head_is_read_through_a_ddp_wrapper(tmp_path):
    """Under several processes the model is DistributedDataParallel, which passes no attributes through."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        model = with_head(transformer(), "classification", LABELS).eval()
        wrapped = torch.nn.parallel.DistributedDataParallel(model)
        assert not hasattr(wrapped, "tailor_head")
        assert head_of(wrapped) == "classification" and labels_of(wrapped) == LABELS
        batch = {**BATCH, "labels": torch.tensor([2, 0])}
        torch.testing.assert_close(compute_loss(wrapped, batch)[1], compute_loss(model, batch)[1])
    finally:
        dist.destroy_process_group()


def test_regression_loss_is_mean_squared_error():
    model = with_head(lstm(), "regression", None).eval()
    batch = {**BATCH, "labels": torch.tensor([1.5, -2.0])}
    logits, loss, n = compute_loss(model, batch)
    torch.testing.assert_close(loss, ((logits.squeeze(-1) - batch["labels"]) ** 2).mean())
    assert n == 2


def test_token_classification_scores_only_labelled_tokens():
    model = with_head(lstm(), "token_classification", LABELS).eval()
    labels = torch.tensor([[0, -100, 2, -100, -100], [1, 1, -100, 0, 2]])
    logits, loss, n = compute_loss(model, {**BATCH, "labels": labels})
    keep = labels != -100
    torch.testing.assert_close(loss, F.cross_entropy(logits[keep], labels[keep]))
    assert n == 6 and logits.shape == (2, 5, 3)


def test_causal_lm_loss_is_unchanged_for_plain_language_models():
    model = transformer().eval()
    x = torch.randint(0, 50, (2, 8))
    targets = torch.cat([x[:, 1:], torch.full((2, 1), -100)], dim=1)
    logits, loss, n = compute_loss(model, {"input_ids": x, "targets": targets})
    assert n == 14 and head_of(model) == "causal_lm"
    torch.testing.assert_close(loss, model(x, targets)[1])


@pytest.mark.parametrize("family", BACKBONES)
@pytest.mark.parametrize("head", ["classification", "token_classification", "regression"])
def test_head_models_save_and_load(tmp_path, family, head):
    model = with_head(BACKBONES[family](), head, None if head == "regression" else LABELS).eval()
    save_model(model, tmp_path / "m", {"tailor": {"note": "kept"}})
    loaded = load_model(tmp_path / "m").eval()
    assert head_of(loaded) == head and labels_of(loaded) == labels_of(model)
    with torch.no_grad():
        torch.testing.assert_close(model(BATCH["input_ids"], BATCH["attention_mask"]),
                                   loaded(BATCH["input_ids"], BATCH["attention_mask"]), rtol=0, atol=0)


def test_a_head_model_refuses_to_generate(tmp_path):
    from tailor.inference.local import answer_in_process
    from tailor.manifest import write_manifest
    from tailor.tokenizer import train_bpe

    folder = tmp_path / "head"
    save_model(with_head(transformer(), "classification", LABELS), folder)
    train_bpe(["refund my order please", "where is my parcel"], 300, 1).save(str(folder / "tokenizer.json"))
    write_manifest(folder)
    with pytest.raises(TailorError, match="predicts labels or scores for a text and does not generate"):
        answer_in_process(folder, ["refund"], 3)
