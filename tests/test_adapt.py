"""Layer groups, freezing, gradual unfreezing, discriminative learning rates and LoRA."""

import json

import pytest
import torch

from tailor.errors import TailorError
from tailor.models import compute_loss, load_model, save_model, with_head
from tailor.models.adapt import Unfreezer, layer_groups, merged, prepare
from tailor.models.pretrained import load_pretrained
from tailor.models.recurrent import Recurrent, RecurrentConfig
from tailor.models.transformer import Transformer, TransformerConfig
from tailor.spec.model import Adapt
from tailor.spec.train import Optimizer
from tailor.train.optim import make_optimizer, set_lr

LABELS = ["a", "b", "c"]


def classifier(n_layer: int = 3):
    torch.manual_seed(0)
    backbone = Transformer(TransformerConfig(vocab_size=40, block_size=16, n_layer=n_layer, n_head=2, n_embd=16))
    return with_head(backbone, "classification", LABELS)


class Batches:
    """A fixed, learnable classification task: the label is the first token mod 3."""

    per_epoch = 4

    def __call__(self, step: int) -> dict:
        g = torch.Generator().manual_seed(step)
        x = torch.randint(0, 40, (8, 6), generator=g)
        return {"input_ids": x, "attention_mask": torch.ones_like(x), "labels": x[:, 0] % 3}

    def eval_batches(self, limit):
        yield self(10_000)


def run(model, adapt: Adapt, steps: int, tmp_path, lr: float = 1e-2):
    """The training engine's optimizer over the adaptation's groups, stepped as its loop does."""
    plan = prepare(model, adapt, 0.0, {"steps": 1, "epochs": Batches.per_epoch})
    optimizer = make_optimizer(plan.model, Optimizer(lr=lr, weight_decay=0.0), plan.param_groups)
    batches = Batches()
    for step in range(steps):
        set_lr(optimizer, lr)
        if plan.on_step is not None:
            plan.on_step(step)
        _, loss, _ = compute_loss(plan.model, batches(step))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return plan, optimizer


def snapshot(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def changed(before: dict, model, prefix: str) -> bool:
    return any(not torch.equal(before[n], p) for n, p in model.named_parameters() if n.startswith(prefix))


def test_layer_groups_of_every_family(tiny_bert_dir, tiny_llama_dir):
    ours = layer_groups(classifier(3))
    assert len(ours.blocks) == 3 and [n for n, _ in ours.embeddings] == ["backbone.wte.weight", "backbone.wpe.weight"]
    assert {n for n, _ in ours.top} == {"backbone.ln_f.weight", "backbone.ln_f.bias", "score.weight", "score.bias"}
    rnn = layer_groups(Recurrent(RecurrentConfig(cell="gru", vocab_size=30, n_layer=2, bidirectional=True)))
    assert len(rnn.blocks) == 2 and all("_l1" in n for n, _ in rnn.blocks[1])
    bert = layer_groups(load_pretrained(str(tiny_bert_dir), "classification", LABELS))
    assert len(bert.blocks) == 2 and all(n.startswith("bert.embeddings.") for n, _ in bert.embeddings)
    assert {n for n, _ in bert.top} >= {"classifier.weight", "bert.pooler.dense.weight"}
    llama = layer_groups(load_pretrained(str(tiny_llama_dir), "causal_lm"))
    assert len(llama.blocks) == 2 and [n for n, _ in llama.embeddings] == ["model.embed_tokens.weight"]


def test_head_only_training_leaves_the_body_unchanged(tmp_path):
    model = classifier()
    before = snapshot(model)
    plan, _ = run(model, Adapt(freeze={"embeddings": True, "bottom_layers": "all"}), 4, tmp_path)
    assert plan.summary["frozen"] == ["embeddings", "layer 2", "layer 1", "layer 0"]
    assert not changed(before, model, "backbone.wte") and not changed(before, model, "backbone.h.")
    assert changed(before, model, "score.")


def test_bottom_layers_freeze_only_the_lowest_blocks(tmp_path):
    model = classifier()
    before = snapshot(model)
    run(model, Adapt(freeze={"bottom_layers": 2}), 3, tmp_path)
    assert not changed(before, model, "backbone.h.0.") and not changed(before, model, "backbone.h.1.")
    assert changed(before, model, "backbone.h.2.") and changed(before, model, "backbone.wte")


def test_gradual_unfreezing_thaws_one_layer_at_a_time_from_the_top(tmp_path):
    model = classifier()
    before = snapshot(model)
    plan, _ = run(model, Adapt(freeze={"bottom_layers": "all", "unfreeze_every": 2, "unit": "steps"}), 4, tmp_path)
    assert plan.on_step.log == [{"step": 2, "unfrozen": "layer 2"}]
    assert changed(before, model, "backbone.h.2.")  # thawed at step 2, trained on steps 2 and 3
    assert not changed(before, model, "backbone.h.1.") and not changed(before, model, "backbone.h.0.")


def test_unfreezing_counts_epochs_in_steps():
    thawed = []
    frozen = [(f"layer {i}", [(f"p{i}", torch.nn.Parameter(torch.zeros(1), requires_grad=False))]) for i in (2, 1, 0)]
    hook = Unfreezer(frozen, every=4)
    for step in range(12):
        hook(step)
        thawed.append(sum(p.requires_grad for _, ps in frozen for _, p in ps))
    assert thawed == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]


def test_discriminative_learning_rates_decay_down_the_stack(tmp_path):
    model = classifier(2)
    plan, optimizer = run(model, Adapt(lr_decay=0.5), 1, tmp_path, lr=0.1)
    scales = sorted({g["lr_scale"] for g in plan.param_groups}, reverse=True)
    assert scales == [1.0, 0.5, 0.25, 0.125]  # top, layer 1, layer 0, embeddings
    by_id = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    assert by_id[id(model.score.weight)]["lr"] == pytest.approx(0.1)
    assert by_id[id(model.backbone.h[0].attn.c_attn.weight)]["lr"] == pytest.approx(0.025)
    assert by_id[id(model.backbone.wte.weight)]["lr"] == pytest.approx(0.0125)


def test_lora_trains_adapters_and_the_head_and_merges_for_export(tmp_path):
    model = classifier()
    plan, _ = run(model, Adapt(lora={"r": 4, "alpha": 8, "dropout": 0.0}), 3, tmp_path)
    trainable = {n for n, p in plan.model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or ".score." in n for n in trainable)
    batch = Batches()(0)
    plan.model.eval()
    with torch.no_grad():
        expected = compute_loss(plan.model, batch)[0]
        torch.testing.assert_close(compute_loss(merged(plan.model), batch)[0], expected, rtol=1e-5, atol=1e-5)
    save_model(plan.model, tmp_path / "merged")
    assert "lora" not in json.dumps(list(load_model(tmp_path / "merged").state_dict()))
    with torch.no_grad():
        torch.testing.assert_close(compute_loss(load_model(tmp_path / "merged").eval(), batch)[0], expected,
                                   rtol=1e-5, atol=1e-5)


def test_lora_on_a_hf_causal_lm_exports_a_folder_transformers_loads(tiny_llama_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    model = load_pretrained(str(tiny_llama_dir), "causal_lm").eval()
    x = torch.randint(0, 50, (1, 7))
    with torch.no_grad():
        original = model(input_ids=x).logits
    plan = prepare(model, Adapt(lora={"r": 2}), 0.0, {"steps": 1, "epochs": 1})
    assert any("lora_A" in n for n, p in plan.model.named_parameters() if p.requires_grad)
    with torch.no_grad():
        for n, p in plan.model.named_parameters():
            if "lora_B" in n:
                p.normal_()  # as after training: the adapters change the output
    save_model(plan.model, tmp_path / "hf")
    plain = AutoModelForCausalLM.from_pretrained(str(tmp_path / "hf")).eval()
    plan.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(plain(input_ids=x).logits, plan.model(input_ids=x).logits, rtol=1e-4, atol=1e-4)
        assert not torch.allclose(plain(input_ids=x).logits, original, atol=1e-3)


def test_a_lora_target_that_does_not_exist_names_the_linear_layers():
    with pytest.raises(TailorError, match=r"target_modules: q_proj name no linear layer of this model; "
                                          r"its linear layers: c_attn, c_fc, c_proj, lm_head, score"):
        prepare(classifier(), Adapt(lora={"target_modules": ["q_proj"]}), 0.0, {"steps": 1, "epochs": 1})


def test_lora_on_a_recurrent_model_is_explained():
    model = with_head(Recurrent(RecurrentConfig(cell="lstm", vocab_size=30)), "classification", LABELS)
    with pytest.raises(TailorError, match="recurrent model has none"):
        prepare(model, Adapt(lora={}), 0.0, {"steps": 1, "epochs": 1})


def test_freeze_and_lora_together_is_a_spec_error():
    with pytest.raises(ValueError, match="LoRA already keeps every base weight fixed"):
        Adapt(freeze={"bottom_layers": 2}, lora={})
