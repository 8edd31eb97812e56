"""ONNX export of our Transformer (logits for a padded batch), and its int8 dynamic quantization with
the accuracy change measured on held-out text."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from tailor.artifacts import atomic_write_json
from tailor.errors import TailorError


class LogitsOnly(torch.nn.Module):
    """input_ids (B, T) and attention_mask (B, T; 0 = padding) -> logits (B, T, vocab), for any language model.

    A transformer takes left padding (positions count real tokens only); a recurrent network reads
    left to right, so its padding goes on the right, where it cannot reach a real token's logits.
    """

    def __init__(self, model: torch.nn.Module):
        from tailor.models import backbone_of, is_hf
        from tailor.models.family import StatefulDecoder

        super().__init__()
        self.model = model
        self.kind = "hf" if is_hf(model) else "recurrent" if isinstance(backbone_of(model), StatefulDecoder) else "tailor"

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        if self.kind == "recurrent":
            return self.model(input_ids)[0]
        if self.kind == "hf":
            return self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions).logits
        return self.model(input_ids, positions=positions, attention_mask=attention_mask.bool())[0]


def export_onnx(model: torch.nn.Module, path: Path) -> None:
    """Write model.onnx with dynamic batch and sequence axes."""
    from tailor.models import context_length

    model = LogitsOnly(model.eval()).eval()
    ids = torch.zeros((2, 8), dtype=torch.long)
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence", max=context_length(model.model))
    program = torch.onnx.export(model, (ids, torch.ones_like(ids)), input_names=["input_ids", "attention_mask"],
                                output_names=["logits"], dynamo=True, verbose=False,
                                dynamic_shapes={"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}})
    program.save(str(path))


def quantize_int8(src: Path, dst: Path) -> None:
    """Dynamic int8 quantization of the weights (activations stay float), by onnxruntime."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)


def onnx_logits(path: Path, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"input_ids": ids.astype(np.int64), "attention_mask": mask.astype(np.int64)})[0]


def _loss(logits: np.ndarray, targets: np.ndarray) -> float:
    """Mean cross-entropy over the scored positions (targets != -100)."""
    keep = targets != -100
    shifted = logits - logits.max(axis=-1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    picked = np.take_along_axis(logp, np.where(keep, targets, 0)[..., None], axis=-1)[..., 0]
    return float(-(picked * keep).sum() / max(keep.sum(), 1))


def accuracy_report(model: torch.nn.Module, fp32: Path, int8: Path, batches: list[dict]) -> dict:
    """Loss, next-token agreement and largest logit change of the int8 model against the float one."""
    rows = {"float32": {"loss": [], "agree": []}, "int8": {"loss": [], "agree": []}}
    max_diff = {"float32": 0.0, "int8": 0.0}
    for batch in batches:
        ids, targets = batch["input_ids"].numpy(), batch["targets"].numpy()
        mask = np.ones_like(ids)
        with torch.no_grad():
            reference = LogitsOnly(model)(batch["input_ids"], torch.ones_like(batch["input_ids"])).numpy()
        for name, path in (("float32", fp32), ("int8", int8)):
            logits = onnx_logits(path, ids, mask)
            max_diff[name] = max(max_diff[name], float(np.abs(logits - reference).max()))
            rows[name]["loss"].append(_loss(logits, targets))
            scored = targets != -100
            rows[name]["agree"].append(float((logits.argmax(-1) == reference.argmax(-1))[scored].mean()))
    summary = {name: {"loss": float(np.mean(r["loss"])), "top1_agreement_with_pytorch": float(np.mean(r["agree"])),
                      "max_abs_logit_diff": max_diff[name]} for name, r in rows.items()}
    summary["int8_loss_change"] = summary["int8"]["loss"] - summary["float32"]["loss"]
    return summary


def export_onnx_folder(model_dir: Path, out: Path, int8: bool, held_out: list[dict] | None) -> dict:
    """model.onnx (+ model.int8.onnx) with the tokenizer; report.json says how int8 changed accuracy."""
    import shutil

    from tailor.manifest import write_manifest
    from tailor.models import context_length, head_of, load_model

    model = load_model(model_dir).eval()
    if head_of(model) != "causal_lm":
        raise TailorError(f"{model_dir}: ONNX export writes language models; this one has a {head_of(model)} head")
    out.mkdir(parents=True, exist_ok=True)
    export_onnx(model, out / "model.onnx")
    for name in ("tokenizer.json", "tokenizer_config.json", "config.json"):
        shutil.copy2(model_dir / name, out / name)
    report: dict = {"format": "onnx", "path": str(out / "model.onnx")}
    if int8:
        quantize_int8(out / "model.onnx", out / "model.int8.onnx")
        if not held_out:  # a bare model folder: compare on random token sequences
            g = torch.Generator().manual_seed(0)
            ids = torch.randint(0, model.config.vocab_size, (4, min(32, context_length(model))), generator=g)
            held_out = [{"input_ids": ids, "targets": torch.roll(ids, -1, dims=1)}]
            report["held_out"] = "random token sequences (no data beside the model)"
        report["int8"] = accuracy_report(model, out / "model.onnx", out / "model.int8.onnx", held_out)
    atomic_write_json(out / "report.json", report)
    write_manifest(out)
    return json.loads((out / "report.json").read_text())
