"""The model stage: build the network the spec describes and save it as a HF-style folder."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_model as load_weights
from safetensors.torch import save_model as save_weights

from tailor.artifacts import atomic_write_json
from tailor.errors import TailorError
from tailor.models.transformer import Transformer, TransformerConfig
from tailor.spec import Spec
from tailor.train.losses import Objective

MODEL_TYPE = "tailor-transformer"


def save_model(model: Transformer, folder: Path, extra: dict | None = None) -> None:
    """config.json + model.safetensors (tied weights stored once)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_weights(model, str(folder / "model.safetensors"))
    atomic_write_json(folder / "config.json", {"model_type": MODEL_TYPE, "architectures": ["Transformer"],
                                               **model.config.to_dict(), **(extra or {})})


def load_model(folder: Path, device: str | torch.device = "cpu") -> Transformer:
    """A model saved by save_model; only safetensors weights are read."""
    folder = Path(folder)
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise TailorError(f"{folder}: no config.json; not a model folder")
    config = json.loads(config_path.read_text())
    if config.get("model_type") != MODEL_TYPE:
        raise TailorError(f"{config_path}: model_type {config.get('model_type')!r} is not {MODEL_TYPE!r}")
    fields = TransformerConfig.__dataclass_fields__
    model = Transformer(TransformerConfig(**{k: v for k, v in config.items() if k in fields}))
    weights = folder / "model.safetensors"
    if weights.is_file():
        load_weights(model, str(weights), device=str(device))
    else:  # encrypted at rest: decrypted in memory only
        from safetensors.torch import load as load_bytes

        from tailor.deploy.encryption import read_bytes

        result = model.load_state_dict(load_bytes(read_bytes(weights)), strict=False)
        tied = {"lm_head.weight", "wte.weight"} if model.config.tie_weights else set()
        if result.unexpected_keys or set(result.missing_keys) - tied:
            raise TailorError(f"{weights}: weights do not fit the config (missing {result.missing_keys[:3]}, "
                              f"unexpected {result.unexpected_keys[:3]})")
    return model.to(device)


def compute_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor],
                 objective: Objective | None = None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(logits, mean loss over scored positions, number scored) for a batch on the model's device.

    The one place where a model family meets the training loop and the evaluation; `objective`
    (label smoothing, class weights) scores the outputs, plain cross-entropy by default.
    """
    logits, _ = model(batch["input_ids"], position_ids=batch.get("position_ids"))
    loss, n = (objective or Objective()).cross_entropy(logits, batch["targets"])
    return logits, loss, n


def example_lengths(spec: Spec, records: list[dict], codec) -> list[int]:
    """Token length of each formatted training example (input + sep + output + eos)."""
    f = spec.data.fields
    if f.text is not None:
        return [len(ids) + 1 for ids in codec.encode_batch([r[f.text] for r in records])]
    inputs = codec.encode_batch([r[f.input] for r in records])
    outputs = codec.encode_batch([r[f.output] for r in records])
    return [len(a) + len(b) + 2 for a, b in zip(inputs, outputs)]


def run_model(spec: Spec, data_dir: Path, tokenizer_dir: Path, out_dir: Path) -> dict:
    """Build the initial model (seeded) into out_dir."""
    from tailor.data import load_split
    from tailor.tokenizer import Codec

    if spec.model.base != "scratch":
        raise TailorError(f"model.base {spec.model.base!r}: this version builds models from scratch only; "
                          "set model.base: scratch")
    codec = Codec.load(tokenizer_dir)
    arch = spec.model.arch
    block_size = arch.block_size
    if block_size == "auto":
        if spec.data.fields.text is None:
            longest = max(example_lengths(spec, load_split(data_dir, "train"), codec))
            block_size = min(1024, -(-longest // 8) * 8)
        else:
            block_size = 256
    n_layer, n_head, n_embd, sizing = arch.n_layer, arch.n_head, arch.n_embd, None
    if arch.size == "auto":
        from tailor.train.plan import plan_scratch_size

        (n_layer, n_head, n_embd), sizing = plan_scratch_size(spec, codec.vocab_size, block_size)
    torch.manual_seed(spec.model.seed)
    config = TransformerConfig(
        vocab_size=codec.vocab_size, block_size=block_size, n_layer=n_layer, n_head=n_head,
        n_kv_head=arch.n_kv_head if arch.size is None else None, n_embd=n_embd, dropout=arch.dropout, bias=arch.bias, norm=arch.norm,
        activation=arch.activation, positions=arch.positions, window=arch.window, tie_weights=arch.tie_weights)
    model = Transformer(config)
    save_model(model, out_dir)
    report = {"parameters": model.num_params(non_embedding=False), "block_size": block_size,
              "vocab_size": codec.vocab_size, **({"sizing": sizing} if sizing else {})}
    atomic_write_json(out_dir / "report.json", report)
    return report
