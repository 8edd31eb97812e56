"""`tailor export RUN --format ...`: the trained model in the formats other runtimes read."""

from __future__ import annotations

from pathlib import Path

from tailor.errors import TailorError
from tailor.inference import resolve_model_dir

FORMATS = ("hf", "onnx", "onnx-int8", "gguf")


def held_out_batches(run_dir: Path, model_dir: Path, limit: int = 8) -> list[dict] | None:
    """Batches of the run's test (else validation) split, formatted as in training; None without a run."""
    from tailor.splits import load_split
    from tailor.models import context_length, load_model
    from tailor.spec import parse_spec
    from tailor.tokenizer import Codec
    from tailor.train.batches import make_batches

    spec_path = run_dir / "spec.resolved.yaml"
    if not spec_path.is_file() or not (run_dir / "data").is_dir():
        return None
    spec = parse_spec(spec_path.read_text(), str(spec_path))
    records = load_split(run_dir / "data", "test") or load_split(run_dir / "data", "validation")
    if not records:
        return None
    block = context_length(load_model(model_dir))
    return list(make_batches(records, Codec.load(model_dir), block, spec.train.eval_batch_size, 0,
                             fields=spec.data.fields, output=spec.problem.output,
                             loss_on=spec.train.loss_on).eval_batches(limit))


def run_export(source: Path, fmt: str, out: Path | None = None) -> dict:
    """Export the model of a run or model folder; returns what was written."""
    from tailor.manifest import verify_manifest

    if fmt not in FORMATS:
        raise TailorError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    model_dir = resolve_model_dir(source)
    verify_manifest(model_dir)
    out = Path(out) if out else Path(source) / "export" / fmt
    from tailor.deploy.seq2seq_export import export_seq2seq_hf, refuse_seq2seq, seq2seq_architecture

    arch = seq2seq_architecture(model_dir)
    if arch is not None:
        return export_seq2seq_hf(model_dir, out) if fmt == "hf" else refuse_seq2seq(fmt, arch)
    if fmt == "hf":
        from tailor.deploy.hf_export import export_hf

        return export_hf(model_dir, out)
    if fmt in ("onnx", "onnx-int8"):
        from tailor.deploy.onnx_export import export_onnx_folder

        run_dir = model_dir.parent.parent
        batches = held_out_batches(run_dir, model_dir) if fmt == "onnx-int8" else None
        return export_onnx_folder(model_dir, out, fmt == "onnx-int8", batches)
    from tailor.deploy.gguf_export import export_gguf

    return export_gguf(model_dir, out)
