"""DPO and ORPO as tailor.models.preference computes them equal TRL's own trainers on the same models and tokens.

TRL's losses are methods of its trainers; each is called here on the smallest trainer-like object that
has the attributes those methods read (no model is trained, no dataset built), with the same tiny random
Llama and the same token ids as our batch carries.
"""

from __future__ import annotations

import types
from collections import defaultdict

import pytest
import torch

from tailor.models.preference import Preference, adapters_off, frozen_copy, preference_loss
from tailor.train.preference_batches import collate_preferences

pytest.importorskip("trl")
PAD = 0


def tiny_llama(seed: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64,
                                        initializer_range=0.3)).eval()


def triples(seed: int = 0, n: int = 8) -> list[tuple[list[int], list[int], list[int]]]:
    """(prompt, preferred answer + eos, rejected answer + eos) token ids of different lengths."""
    g = torch.Generator().manual_seed(seed)
    ids = lambda k: torch.randint(1, 50, (k,), generator=g).tolist()  # noqa: E731
    return [(ids(3 + i % 3), ids(2 + i % 4), ids(4 - i % 3)) for i in range(n)]


def our_batch(data, loss_on: str = "output") -> dict[str, torch.Tensor]:
    """Our preference batch of the triples: labels hide the prompt; ORPO's NLL labels follow loss_on."""
    examples = []
    for prompt, chosen, rejected in data:
        c, r = prompt + chosen, prompt + rejected
        c_labels = [-100] * len(prompt) + chosen
        examples.append(((c, c_labels), (r, [-100] * len(prompt) + rejected), c if loss_on == "all" else c_labels))
    return collate_preferences(examples, PAD, nll=loss_on == "all")


def trl_rows(data) -> dict[str, torch.Tensor]:
    """DPOTrainer's layout: [preferred rows; rejected rows], right-padded, with completion and attention masks."""
    rows = [(p + c, len(p)) for p, c, _ in data] + [(p + r, len(p)) for p, _, r in data]
    T = max(len(ids) for ids, _ in rows)
    out = {k: torch.zeros(len(rows), T, dtype=torch.long) for k in ("input_ids", "attention_mask", "completion_mask")}
    for i, (ids, n_prompt) in enumerate(rows):
        out["input_ids"][i, :len(ids)] = torch.tensor(ids)
        out["attention_mask"][i, :len(ids)] = 1
        out["completion_mask"][i, n_prompt:len(ids)] = 1
    return out


class _Accelerator:
    device = torch.device("cpu")

    @staticmethod
    def gather(t):
        return t

    gather_for_metrics = gather

    @staticmethod
    def unwrap_model(model):
        return model


def trl_dpo(model, ref_model, inputs, beta: float) -> tuple[float, dict[str, float]]:
    """TRL's DPOTrainer._compute_loss (loss_type sigmoid, reverse KL) and the rewards it logs."""
    from trl import DPOTrainer

    me = types.SimpleNamespace(
        model=model, ref_model=ref_model, accelerator=_Accelerator(), aux_loss_enabled=False, ld_alpha=None,
        precompute_ref_logps=False, args=types.SimpleNamespace(gradient_checkpointing_kwargs=None),
        f_divergence_type="reverse_kl", use_weighting=False, loss_types=["sigmoid"], loss_weights=[1.0], beta=beta, label_smoothing=0.0,
        _metrics=defaultdict(lambda: defaultdict(list)), _total_train_tokens=0, _tp_size=1)
    loss = DPOTrainer._compute_loss(me, model, inputs, return_outputs=False)
    logged = me._metrics["train" if model.training else "eval"]
    return loss.item(), {k: logged[f"rewards/{v}"][-1] for k, v in (
        ("reward_chosen", "chosen"), ("reward_rejected", "rejected"), ("reward_accuracy", "accuracies"),
        ("reward_margin", "margins"))}


def fused(model):
    """TRL's fused LM head, which its DPOTrainer adds to the policy and the reference before it trains."""
    from trl.trainer.utils import add_fused_lm_head

    add_fused_lm_head(model, outputs=("log_probs", "entropy", "mean_logits", "is_top1"))
    return model


def ours(model, batch, objective) -> tuple[float, dict[str, float]]:
    loss, pairs, sums = preference_loss(model, batch, objective)
    return loss.item(), {k: v.item() / pairs for k, v in sums.items()}


@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_dpo_with_a_frozen_reference_equals_trl(beta):
    data = triples()
    policy, reference = tiny_llama(0), tiny_llama(1)
    with torch.no_grad():
        mine = ours(policy, our_batch(data), Preference("dpo", beta, frozen_copy(reference)))
    theirs = trl_dpo(fused(policy), fused(reference), trl_rows(data), beta)
    assert mine[0] == pytest.approx(theirs[0], rel=1e-5, abs=1e-6)
    assert mine[1] == pytest.approx(theirs[1], rel=1e-5, abs=1e-6)
    assert 0 < mine[1]["reward_accuracy"] < 1  # the pairs disagree, so accuracy and margins are really compared


def test_dpo_with_lora_uses_the_base_with_adapters_off_as_trl_does():
    from peft import LoraConfig, get_peft_model

    data = triples(seed=3)
    # random adapters (B is not zero), so that the policy differs from its base from the start
    policy = get_peft_model(fused(tiny_llama(2)), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                             init_lora_weights=False)).eval()
    with torch.no_grad():
        mine = ours(policy, our_batch(data), Preference("dpo", 0.1, adapters_off(policy)))
    theirs = trl_dpo(policy, None, trl_rows(data), 0.1)
    assert mine[0] == pytest.approx(theirs[0], rel=1e-5, abs=1e-6)
    assert mine[1] == pytest.approx(theirs[1], rel=1e-5, abs=1e-6)
    assert abs(mine[1]["reward_margin"]) > 1e-4  # the adapters really moved the policy away from the reference


def trl_orpo_trainer(beta: float):
    """The part of TRL's ORPOTrainer that get_batch_loss_metrics runs: its own methods, our attributes."""
    from trl.experimental.orpo import ORPOTrainer

    class Me:
        concatenated_forward = ORPOTrainer.concatenated_forward
        concatenated_inputs = staticmethod(ORPOTrainer.concatenated_inputs)
        odds_ratio_loss = ORPOTrainer.odds_ratio_loss
        get_batch_logps = staticmethod(ORPOTrainer.get_batch_logps)
        get_batch_loss_metrics = ORPOTrainer.get_batch_loss_metrics

    me = Me()
    me.beta, me.is_encoder_decoder, me.padding_value, me.aux_loss_enabled = beta, False, PAD, False
    me.accelerator = _Accelerator()
    return me


def trl_orpo_batch(data) -> dict[str, torch.Tensor]:
    """ORPOTrainer's batch: chosen_* and rejected_* input ids, attention masks and labels (prompt -100)."""
    out = {}
    for key, k in (("chosen", 1), ("rejected", 2)):
        rows = [(t[0] + t[k], len(t[0])) for t in data]
        T = max(len(ids) for ids, _ in rows)
        ids = torch.full((len(rows), T), PAD, dtype=torch.long)
        mask = torch.zeros(len(rows), T, dtype=torch.long)
        labels = torch.full((len(rows), T), -100, dtype=torch.long)
        for i, (seq, n_prompt) in enumerate(rows):
            ids[i, :len(seq)] = torch.tensor(seq)
            mask[i, :len(seq)] = 1
            labels[i, n_prompt:len(seq)] = torch.tensor(seq[n_prompt:])
        out.update({f"{key}_input_ids": ids, f"{key}_attention_mask": mask, f"{key}_labels": labels})
    return out


@pytest.mark.parametrize("beta", [0.1, 1.0])
def test_orpo_with_the_prompt_in_its_likelihood_term_equals_trl(beta):
    """train.loss_on all: the likelihood term scores prompt and answer, as TRL's ORPOTrainer does."""
    data = triples(seed=5)
    model = tiny_llama(4)
    with torch.no_grad():
        mine = ours(model, our_batch(data, "all"), Preference("orpo", beta))
        loss, metrics = trl_orpo_trainer(beta).get_batch_loss_metrics(model, trl_orpo_batch(data))
    assert mine[0] == pytest.approx(loss.item(), rel=1e-5)
    assert mine[1] == pytest.approx({"reward_chosen": metrics["rewards/chosen"],
                                     "reward_rejected": metrics["rewards/rejected"],
                                     "reward_accuracy": metrics["rewards/accuracies"],
                                     "reward_margin": metrics["rewards/margins"]}, rel=1e-5, abs=1e-6)


def test_orpo_on_the_answers_is_their_likelihood_minus_trls_odds_ratio_term():
    """train.loss_on output (the default): the likelihood term scores the preferred answers only."""
    import torch.nn.functional as F

    data = triples(seed=6)
    model = tiny_llama(5)
    me = trl_orpo_trainer(0.1)
    batch = trl_orpo_batch(data)
    with torch.no_grad():
        mine, _ = ours(model, our_batch(data), Preference("orpo", 0.1))
        logits = model(batch["chosen_input_ids"]).logits
        rejected_logits = model(batch["rejected_input_ids"]).logits
        chosen = me.get_batch_logps(logits, batch["chosen_labels"], average_log_prob=True)
        rejected = me.get_batch_logps(rejected_logits, batch["rejected_labels"], average_log_prob=True)
        ratio = me.odds_ratio_loss(chosen, rejected)[0]
        nll = F.cross_entropy(logits[:, :-1].flatten(0, 1), batch["chosen_labels"][:, 1:].flatten())
    assert mine == pytest.approx((nll - ratio.mean()).item(), rel=1e-5)
