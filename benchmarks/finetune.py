"""LoRA fine-tuning throughput: our engine vs Hugging Face `Trainer` + peft, on SmolLM2-135M, in one run.

Both sides start from the same base (the `smollm2-135m` preset, dequantized once) with the same
LoRA adapters (r 8, alpha 16, no dropout, peft's default targets; the same seeded init), the same
AdamW (constant rate, no weight decay, clipping at 1.0) and train the same examples in the same
order: step s takes examples s*B..(s+1)*B-1 of product-qa's training questions (made by its data stage), written into
SmolLM2's chat template with the loss on the answers only. The Trainer gets them as a dataset
(sequential sampler) and pads each batch (`DataCollatorForSeq2Seq`), as an SFT script does.

The matched line gives our engine the same padded batches (each step's examples padded to the
longest, as the collator does). Our engine runs the output layer (49k-word vocabulary) only where
the answers are scored: that is how it computes the same loss, not a different setting. A second,
labelled line gives ours with `train.packing` (our own option): the same examples packed into rows of
`--row` tokens (attention stays within each example, no compute on padding); that gain is packing's.
tokens/s counts the examples' tokens for every side.

Each round builds every model afresh and times a whole training call (`trainer.train()`, our
`train_loop`); rounds alternate which side goes first, after one untimed step of each. The line gives the median tokens/s of
each, the median ratio, the training loss of the last step, and the held-out loss of the
trained models on the same validation questions (scored by the same code). The check (exit 1 when
it fails): the matched runs end within 0.05 of each other in held-out loss.

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
    from tailor.spec import load_spec
    from tailor.splits import load_split

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


def ours_round(base, examples, args, steps: int, pad_id: int, work: Path,
               packing: bool = False) -> tuple[float, float, torch.nn.Module]:
    """(seconds, last step's loss, trained model) of our engine over the first `steps` batches, padded or packed."""
    from tailor.models.adapt import prepare
    from tailor.spec.model import Adapt
    from tailor.spec.train import Train
    from tailor.train.batches import PackedBatches, collate
    from tailor.train.checkpoint import Checkpoints
    from tailor.train.distributed import make_accelerator, prepare_for_training
    from tailor.train.loop import Engine, LoopState, train_loop
    from tailor.train.monitor import Monitor
    from tailor.train.optim import make_optimizer

    cfg = Train.model_validate({
        "max_steps": steps, "batch_size": args.batch, "eval_every": 10**9, "eval_batches": 1, "packing": packing,
        "optimizer": {"lr": LR, "weight_decay": 0.0, "betas": [0.9, 0.999]}, "grad_clip": 1.0,
        "schedule": {"name": "constant", "warmup_steps": 0}, "tracking": {"tensorboard": False},
        "precision": args.precision})
    torch.manual_seed(0)
    plan = prepare(copy.deepcopy(base), Adapt(lora={"r": 8, "alpha": 16, "dropout": 0.0}), 0.0, {"steps": 1, "epochs": 1})
    acc = make_accelerator(cfg, "cpu")
    model, optimizer = prepare_for_training(acc, plan.model, make_optimizer(plan.model, cfg.optimizer, plan.param_groups))
    engine = Engine(model, plan.model, optimizer, acc)
    # step s holds exactly the examples the Trainer's batch s holds, padded to the longest or packed
    chunks = [examples[s * args.batch:(s + 1) * args.batch] for s in range(steps)]
    packed = [PackedBatches(c, args.row, args.batch, pad_id, 0)(0) if packing else collate(c, pad_id) for c in chunks]

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

    speeds: dict[str, list[float]] = {"ours": [], "hf": [], "packed": []}
    ratios: dict[str, list[float]] = {"ours": [], "packed": []}
    last = {}
    with tempfile.TemporaryDirectory(prefix="finetune-") as tmp:
        # one untimed step per side first: the process's first passes through a model are slower
        ours_round(base, examples, args, 1, codec.pad_id, Path(tmp) / "warm-ours")
        hf_round(base, examples, args, 1, hf_tokenizer, Path(tmp) / "warm-hf")
        for r in range(args.rounds):
            for side in ("ours", "hf", "packed") if r % 2 == 0 else ("packed", "hf", "ours"):
                work = Path(tmp) / f"{side}-{r}"
                if side == "hf":
                    seconds, loss, model = hf_round(base, examples, args, args.steps, hf_tokenizer, work)
                else:
                    seconds, loss, model = ours_round(base, examples, args, args.steps, codec.pad_id, work,
                                                      packing=side == "packed")
                speeds[side].append(tokens / seconds)
                if r == args.rounds - 1:
                    last[side] = (loss, held_out_loss(model, validation, codec.pad_id))
                del model
            for side in ratios:
                ratios[side].append(speeds[side][-1] / speeds["hf"][-1])
            print(f"round {r + 1}: ours padded {speeds['ours'][-1]:.0f} tok/s, Trainer+peft {speeds['hf'][-1]:.0f} "
                  f"tok/s, ours packed {speeds['packed'][-1]:.0f} tok/s", file=sys.stderr)
    med = {k: statistics.median(v) for k, v in speeds.items()}
    ok = abs(last["ours"][1] - last["hf"][1]) <= 0.05
    print(f"finetune, ours with train.packing (our own option; rows of {args.row} tokens, no compute on padding): "
          f"{med['packed']:.0f} tok/s, ratio {statistics.median(ratios['packed']):.2f} over the same Trainer+peft runs; "
          f"last-step loss {last['packed'][0]:.4f}, held-out loss {last['packed'][1]:.4f}; the gain over the matched "
          f"line is packing's", file=sys.stderr)
    print(f"finetune: SmolLM2-135M + LoRA r8, same padded batches: ours {med['ours']:.0f} tok/s vs HF Trainer+peft "
          f"{med['hf']:.0f} tok/s: ratio {statistics.median(ratios['ours']):.2f} (goal >= 1.5); packed (own option) "
          f"{statistics.median(ratios['packed']):.2f}; medians of {args.rounds} rounds x {args.steps} steps x "
          f"{args.batch} examples ({tokens} tokens), {torch.get_num_threads()} thread(s), {args.precision}; "
          f"last-step loss ours {last['ours'][0]:.4f} HF {last['hf'][0]:.4f}; held-out loss {before:.4f} before, "
          f"after ours {last['ours'][1]:.4f} HF {last['hf'][1]:.4f} (check |diff| <= 0.05: {'PASS' if ok else 'FAIL'})")
    sys.exit(0 if ok else 1)

if __name__ == "__main__":
    main()
