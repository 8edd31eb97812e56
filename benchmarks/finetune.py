"""LoRA fine-tuning throughput: our engine vs Hugging Face `Trainer` + peft, on SmolLM2-135M, in one run.

Both sides start from the same base (the `smollm2-135m` preset, dequantized once) with the same
LoRA adapters (r 8, alpha 16, no dropout, peft's default targets; the same seeded init), the same
AdamW (constant rate, no weight decay, clipping at 1.0) and train the same examples in the same
order: step s takes examples s*B..(s+1)*B-1 of product-qa's training questions (made by its data stage), written into
SmolLM2's chat template with the loss on the answers only. The Trainer gets them as a dataset
(sequential sampler) and pads each batch (`DataCollatorForSeq2Seq`), as an SFT script does; our
engine packs the same examples into rows of `--row` tokens (`train.packing`: attention stays
within each example, no compute on padding) and runs the output layer (49k-word vocabulary) only
where the answers are scored. So both run the same optimizer steps over the same tokens;
tokens/s counts the examples' tokens for both sides.

Each round builds both models afresh and times a whole training call (`trainer.train()`, our
`train_loop`); rounds alternate which side goes first, after one untimed step of each. The line gives the median tokens/s of
each, the median ratio, the training loss of the last step, and the held-out loss of both
trained models on the same validation questions (scored by the same code).

    python benchmarks/finetune.py [--steps 6] [--batch 8] [--rounds 3] [--threads 1] [--precision fp32]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "product-qa"
LR = 1e-3


def pairs(records: list[dict], n: int, codec, seed: int = 0) -> list[tuple[list[int], list[int]]]:
    """n (ids, labels) examples from product-qa records, in a seeded random order."""
    import random

    from tailor.train.batches import encode_pairs

    rows = records[:]
    random.Random(seed).shuffle(rows)
    rows = rows[:n]
    return encode_pairs([r["question"] for r in rows], [r["answer"] for r in rows], codec, 256)


def product_qa(folder: Path) -> tuple[list[dict], list[dict]]:
    """product-qa's train and test records, written by its spec's data stage into folder."""
    from tailor.data import STAGE as DATA_STAGE
from tailor.splits import load_split
    from tailor.spec import load_spec

    DATA_STAGE.call(load_spec(EXAMPLE / "spec.yaml"), folder)
    return load_split(folder, "train"), load_split(folder, "test")


def hf_round(base, examples, args, steps: int, tokenizer, work: Path) -> tuple[float, float, torch.nn.Module]:
    """(seconds, last step's loss, trained model) of Trainer + peft over the first `steps` batches."""
    from peft import LoraConfig, get_peft_model
    from transformers import DataCollatorForSeq2Seq, PrinterCallback, Trainer, TrainingArguments

    torch.manual_seed(0)
    model = get_peft_model(copy.deepcopy(base), LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, task_type="CAUSAL_LM"))
    dataset = [{"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels} for ids, labels in examples]
    targs = TrainingArguments(
        output_dir=str(work), per_device_train_batch_size=args.batch, max_steps=steps, learning_rate=LR,
        lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0, optim="adamw_torch_fused",
        train_sampling_strategy="sequential", logging_steps=1, save_strategy="no", report_to="none",
        disable_tqdm=True, use_cpu=True, dataloader_pin_memory=False, bf16=args.precision == "bf16", seed=0)
    trainer = Trainer(model=model, args=targs, train_dataset=dataset,
                      data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100))
    trainer.remove_callback(PrinterCallback)  # its per-step prints would mix with the summary line
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    last = [row["loss"] for row in trainer.state.log_history if "loss" in row][-1]
    return seconds, last, model


def ours_round(base, examples, args, steps: int, pad_id: int, work: Path) -> tuple[float, float, torch.nn.Module]:
    """(seconds, last step's loss, trained model) of our engine (packing on) over the first `steps` batches."""
    from tailor.models.adapt import prepare
    from tailor.spec.model import Adapt
    from tailor.spec.train import Train
    from tailor.train.batches import PackedBatches
    from tailor.train.checkpoint import Checkpoints
    from tailor.train.distributed import make_accelerator, prepare_for_training
    from tailor.train.loop import Engine, LoopState, train_loop
    from tailor.train.monitor import Monitor
    from tailor.train.optim import make_optimizer

    cfg = Train.model_validate({
        "max_steps": steps, "batch_size": args.batch, "eval_every": 10**9, "eval_batches": 1, "packing": True,
        "optimizer": {"lr": LR, "weight_decay": 0.0, "betas": [0.9, 0.999]}, "grad_clip": 1.0,
        "schedule": {"name": "constant", "warmup_steps": 0}, "tracking": {"tensorboard": False},
        "precision": args.precision})
    torch.manual_seed(0)
    plan = prepare(copy.deepcopy(base), Adapt(lora={"r": 8, "alpha": 16, "dropout": 0.0}), 0.0, {"steps": 1, "epochs": 1})
    acc = make_accelerator(cfg, "cpu")
    model, optimizer = prepare_for_training(acc, plan.model, make_optimizer(plan.model, cfg.optimizer, plan.param_groups))
    engine = Engine(model, plan.model, optimizer, acc)
    # step s packs exactly the examples the Trainer's batch s holds
    packed = [PackedBatches(examples[s * args.batch:(s + 1) * args.batch], args.row, args.batch, pad_id, 0)(0)
              for s in range(steps)]

    class Batches:
        def __call__(self, step: int) -> dict:
            return packed[step]

        @staticmethod
        def eval_batches(limit):  # the loop validates once at the end; a one-token pass keeps that out of the timing
            yield {"input_ids": torch.tensor([[pad_id]]), "targets": torch.tensor([[pad_id]])}

    trained = {n for n, p in plan.model.named_parameters(remove_duplicate=False) if p.requires_grad}
    work.mkdir(parents=True)
    monitor = Monitor(work, 0, steps, False, None, "", {}, None, print)
    start = time.perf_counter()
    train_loop(engine, Batches(), Batches(), cfg, steps, Checkpoints(work / "checkpoints", trained=trained),
               monitor, LoopState())
    seconds = time.perf_counter() - start
    monitor.close()
    rows = [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines()]
    return seconds, [r["loss"] for r in rows if r["split"] == "train"][-1], plan.model


def held_out_loss(model, examples, pad_id: int) -> float:
    """Mean loss per answer token over the validation examples, unpacked, by our scoring code."""
    from tailor.train.batches import PairBatches
    from tailor.train.loop import evaluate

    return evaluate(model, PairBatches(examples, 8, pad_id, 0), None, torch.device("cpu"))["loss"]


def main() -> None:
    from transformers import PreTrainedTokenizerFast

    from tailor.models.pretrained import load_pretrained
    from tailor.tokenizer import Codec, pretrained_tokenizer

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=6, help="optimizer steps per side and round")
    ap.add_argument("--batch", type=int, default=8, help="examples per step")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--row", type=int, default=128, help="our packed row length in tokens")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for both sides")
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help="both sides")
    ap.add_argument("--validation", type=int, default=32, help="held-out examples scored after training")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    tok, config = pretrained_tokenizer("smollm2-135m")
    codec = Codec(tok, config["eos_token"], config["pad_token"], config["sep_token"], config.get("chat_template"))
    hf_tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=config["eos_token"],
                                           pad_token=config["pad_token"])
    with tempfile.TemporaryDirectory(prefix="finetune-data-") as folder:
        train, test = product_qa(Path(folder))
    examples = pairs(train, args.steps * args.batch, codec)
    validation = pairs(test, args.validation, codec)
    tokens = sum(len(ids) for ids, _ in examples)
    base = load_pretrained("smollm2-135m", "causal_lm")
    before = held_out_loss(base, validation, codec.pad_id)

    speeds: dict[str, list[float]] = {"ours": [], "hf": []}
    ratios, last = [], {}
    with tempfile.TemporaryDirectory(prefix="finetune-") as tmp:
        # one untimed step per side first: the process's first passes through a model are slower
        ours_round(base, examples, args, 1, codec.pad_id, Path(tmp) / "warm-ours")
        hf_round(base, examples, args, 1, hf_tokenizer, Path(tmp) / "warm-hf")
        for r in range(args.rounds):
            for side in ("ours", "hf") if r % 2 == 0 else ("hf", "ours"):
                work = Path(tmp) / f"{side}-{r}"
                if side == "ours":
                    seconds, loss, model = ours_round(base, examples, args, args.steps, codec.pad_id, work)
                else:
                    seconds, loss, model = hf_round(base, examples, args, args.steps, hf_tokenizer, work)
                speeds[side].append(tokens / seconds)
                if r == args.rounds - 1:
                    last[side] = (loss, held_out_loss(model, validation, codec.pad_id))
                del model
            ratios.append(speeds["ours"][-1] / speeds["hf"][-1])
            print(f"round {r + 1}: ours {speeds['ours'][-1]:.0f} tok/s, Trainer+peft {speeds['hf'][-1]:.0f} tok/s, "
                  f"ratio {ratios[-1]:.2f}", file=sys.stderr)
    ours, hf = statistics.median(speeds["ours"]), statistics.median(speeds["hf"])
    print(f"finetune: SmolLM2-135M + LoRA r8, ours (packed rows of {args.row}) {ours:.0f} tok/s vs HF Trainer+peft "
          f"(padded batches) {hf:.0f} tok/s: ratio {statistics.median(ratios):.2f} (goal >= 1.3); medians of "
          f"{args.rounds} rounds x {args.steps} steps x {args.batch} examples ({tokens} tokens), "
          f"{torch.get_num_threads()} thread(s), {args.precision}; last-step loss ours {last['ours'][0]:.4f} "
          f"HF {last['hf'][0]:.4f}; held-out loss {before:.4f} before, after ours {last['ours'][1]:.4f} "
          f"HF {last['hf'][1]:.4f}")


if __name__ == "__main__":
    main()
