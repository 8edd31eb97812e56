"""The model stage's choices: which network, which head, how long its context, sized from the data."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import torch
import torch.nn as nn

from tailor.artifacts import SOURCE_COLUMN
from tailor.errors import TailorError
from tailor.models import LABEL_HEADS, with_head
from tailor.models.recurrent import Recurrent, RecurrentConfig
from tailor.models.transformer import Transformer, TransformerConfig
from tailor.labels import as_list, parse_score
from tailor.spec.base import SPLITS
from tailor.spec.data import Fields
from tailor.spec.model import ModelSpec, head_for
from tailor.spec.problem import Constraints

MAX_AUTO_BLOCK = 1024


def label_set(field: str, data_dir: Path, head: str) -> list[str]:
    """The distinct labels in `field` (data.fields.output) over every split, sorted; an error if fewer than two."""
    from tailor.splits import load_split

    counts: Counter[str] = Counter()
    for split in SPLITS:
        for r in load_split(data_dir, split):
            values = r.get(field)
            values = (as_list(values) or []) if head == "token_classification" else [values]
            if any(v is None or str(v).strip() == "" for v in values) or not values:
                raise TailorError(f"{r.get(SOURCE_COLUMN, split)}: the label field {field!r} (data.fields.output) is "
                                  "empty; every record needs a label")
            counts.update(str(v) for v in values)
    if len(counts) < 2:
        found = ", ".join(repr(k) for k in counts) or "none"
        raise TailorError(f"data.fields.output {field!r}: a {head} head needs at least 2 distinct labels; "
                          f"the data has {len(counts)} ({found})")
    return sorted(counts)


def mean_score(field: str, records: list[dict]) -> float:
    """Mean of the train split's scores in `field` (the regression head starts there)."""
    values = [parse_score(r.get(field), r, field) for r in records]
    return sum(values) / max(len(values), 1)


def auto_block_size(chosen: int | str, f: Fields, output: str, records: list[dict], codec, limit: int) -> int:
    """`chosen` (model.arch.block_size), or the longest training example (a whole conversation for chat data)
    rounded up to 8 (256 for a corpus), capped."""
    from tailor.tokenizer.inputs import input_ids

    if chosen != "auto":
        return min(chosen, limit)
    if f.text is not None:
        return min(256, limit)
    if output != "text":
        longest = max(len(ids) for ids in input_ids(f, output, records, codec, None)[0])
    elif f.messages is not None:
        from tailor.tokenizer.chat import encode_chats

        longest = max(len(ids) for ids, _ in encode_chats([r[f.messages] for r in records], codec, 1_000_000))
    else:
        inputs = codec.encode_batch([r[f.input] for r in records])
        outputs = codec.encode_batch([r[f.output] for r in records])
        longest = max(len(a) + len(b) + codec.prompt_overhead + 1 for a, b in zip(inputs, outputs))
    return min(limit, MAX_AUTO_BLOCK, -(-longest // 8) * 8)


def scratch_backbone(arch, vocab_size: int, block_size: int, report: dict, budget: float | None,
                     constraints: Constraints) -> nn.Module:
    """A from-scratch network of model.arch; `size: auto` is sized for `budget` seconds on this machine."""
    if arch.family == "transformer":
        n_layer, n_head, n_embd, n_kv_head = arch.n_layer, arch.n_head, arch.n_embd, arch.n_kv_head
        if arch.size == "auto":  # the shape whose compute-optimal run fits the time budget
            from tailor.models.size import plan_scratch_size

            (n_layer, n_head, n_embd), report["sizing"] = plan_scratch_size(vocab_size, block_size, budget,
                                                                            constraints)
            n_kv_head = None
        return Transformer(TransformerConfig(
            vocab_size=vocab_size, block_size=block_size, n_layer=n_layer, n_head=n_head,
            n_kv_head=n_kv_head, n_embd=n_embd, dropout=arch.dropout, bias=arch.bias, norm=arch.norm,
            activation=arch.activation, positions=arch.positions, window=arch.window, tie_weights=arch.tie_weights))
    return Recurrent(RecurrentConfig(
        cell=arch.family, vocab_size=vocab_size, n_embd=arch.n_embd, n_hidden=arch.n_hidden, n_layer=arch.n_layer,
        dropout=arch.dropout, bidirectional=arch.bidirectional, tie_weights=arch.tie_weights, block_size=block_size))


def fit_vocabulary(model: nn.Module, codec, tokenizer_dir: Path, base: str) -> int:
    """Check the tokenizer belongs to the model; add embedding rows for tokens the tokenizer stage added."""
    config_path = Path(tokenizer_dir) / "tokenizer_config.json"
    added = json.loads(config_path.read_text()).get("tailor_added_tokens", []) if config_path.is_file() else []
    rows = model.get_input_embeddings().num_embeddings
    if codec.vocab_size - len(added) > rows:
        raise TailorError(f"the tokenizer has {codec.vocab_size} tokens but model.base {base!r} has {rows} embedding "
                          "rows: the vocabulary does not match the model; use tokenizer.type: pretrained with "
                          "this model's own tokenizer (tokenizer.source unset or the same model)")
    if codec.vocab_size > rows:
        model.resize_token_embeddings(codec.vocab_size)
    return len(added)


def build_model(model: ModelSpec, fields: Fields, output: str, constraints: Constraints, max_time: float | None,
                data_dir: Path, tokenizer_dir: Path) -> tuple[nn.Module, dict]:
    """The initial network (seeded), and a report of what was chosen.

    model: the spec's section; fields, output: what it reads and answers; constraints and max_time
    (train.max_time) give the budget that `arch.size: auto` is sized for.
    """
    from tailor.splits import load_split
    from tailor.models.pretrained import load_pretrained
    from tailor.tokenizer import Codec

    codec = Codec.load(tokenizer_dir)
    head = head_for(output, model.head)
    train = load_split(data_dir, "train")
    labels = label_set(fields.output, data_dir, head) if head in LABEL_HEADS else None
    torch.manual_seed(model.seed)
    report: dict = {"base": model.base, "head": head}
    block = getattr(model.arch, "block_size", "auto")
    if model.base == "scratch":
        block_size = auto_block_size(block, fields, output, train, codec, 1_000_000)
        budget = max_time if max_time is not None else constraints.time_budget
        net = with_head(scratch_backbone(model.arch, codec.vocab_size, block_size, report, budget, constraints),
                        head, labels, model.pooling)
        score = net.score if head != "causal_lm" else None
    else:
        net = load_pretrained(model.base, head, labels)
        if net.tailor_head == "seq2seq_lm":  # refused here, before the tokenizer's rows are fitted and saved
            from tailor.models.pretrained import require_pairs

            require_pairs(fields)
        report["added_embedding_rows"] = fit_vocabulary(net, codec, tokenizer_dir, model.base)
        if net.config.pad_token_id is None:  # sequence heads find each sequence's last token by its padding
            net.config.pad_token_id = codec.pad_id
        block_size = auto_block_size(block, fields, output, train, codec,
                                     getattr(net.config, "max_position_embeddings", 512))
        net.config.tailor_block_size = block_size
        score = getattr(net, "classifier", None) or getattr(net, "score", None)
    if head == "regression" and isinstance(score, nn.Linear) and score.bias is not None:
        with torch.no_grad():  # start at the mean score: the loss then measures what the text explains
            score.bias.fill_(mean_score(fields.output, train))
    report.update(parameters=sum(p.numel() for p in net.parameters()), block_size=block_size,
                  vocab_size=codec.vocab_size)
    if labels is not None:
        report["labels"] = labels
    return net, report
