"""Generated records: Jinja templates over value tables, or a pretrained model that writes new examples
from seed examples (self-instruct style). Every record is tagged `synthetic: true` and then goes through
the same cleaning as read data."""

from __future__ import annotations

import itertools
import json
import math
import random
import re
from collections.abc import Iterator
from pathlib import Path

from tailor.data.sources.files import expand, read_files
from tailor.errors import TailorError
from tailor.spec.data import FilesSource, SyntheticSource


def _table(path: str, key: str) -> list[dict]:
    rows = []
    for _loc, row in read_files(FilesSource(type="files", path=path), [], None, key, key):
        if not isinstance(row, dict):
            raise TailorError(row.message())
        rows.append(row)
    return rows


def _contexts(source: SyntheticSource, where: str) -> Iterator[dict]:
    """Rendering contexts: every combination of a table's rows and the values (or a seeded sample of `count`)."""
    rows = _table(source.rows, f"{where}.rows") if source.rows else [{}]
    names = list(source.values)
    axes = [rows] + [source.values[n] for n in names]
    if source.count is None:
        for row, *combo in itertools.product(*axes):
            yield {**row, **dict(zip(names, combo))}
        return
    total = math.prod(map(len, axes))
    for index in random.Random(source.seed).sample(range(total), min(source.count, total)):
        picks = []
        for axis in reversed(axes):  # mixed-radix decode of the combination's number
            index, k = divmod(index, len(axis))
            picks.append(axis[k])
        row, *combo = reversed(picks)
        yield {**row, **dict(zip(names, combo))}


def render_templates(source: SyntheticSource, where: str) -> Iterator[tuple[str, dict]]:
    """(where#n, record) for each rendering of the templates."""
    import jinja2
    from jinja2.sandbox import SandboxedEnvironment

    env = SandboxedEnvironment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False)
    try:
        templates = {field: env.from_string(text) for field, text in (source.templates or {}).items()}
    except jinja2.TemplateSyntaxError as e:
        raise TailorError(f"{where}.templates: line {e.lineno}: {e.message}") from None
    for n, context in enumerate(_contexts(source, where), 1):
        try:
            record = {field: t.render(**context).strip() for field, t in templates.items()}
        except jinja2.UndefinedError as e:
            raise TailorError(f"{where}.templates: {e.message} (values: {', '.join(context) or 'none'})") from None
        yield f"{where}#{n}", {**record, "synthetic": True}


def _seeds(source: SyntheticSource, fields: list[str], where: str) -> list[dict]:
    seeds = source.seeds if isinstance(source.seeds, list) else _table(str(source.seeds), f"{where}.seeds")
    for i, seed in enumerate(seeds):
        absent = [f for f in fields if not str(seed.get(f) or "").strip()]
        if absent:
            raise TailorError(f"{where}.seeds[{i}]: missing field {', '.join(absent)} (named in data.fields)")
    if not seeds:
        raise TailorError(f"{where}.seeds: no seed examples")
    return seeds


def format_example(example: dict, fields: list[str]) -> str:
    """One example as 'field: value' lines, the shape the model is asked to write."""
    return "\n".join(f"{f}: {' '.join(str(example[f]).split())}" for f in fields)


def parse_example(text: str, fields: list[str]) -> dict:
    """The first value of each 'field: value' line in generated text (fields it lacks are absent)."""
    out: dict = {}
    pattern = re.compile(rf"^\s*\**({'|'.join(map(re.escape, fields))})\**\s*:\s*(.+?)\s*$", re.IGNORECASE | re.MULTILINE)
    for m in pattern.finditer(text):
        name = next(f for f in fields if f.lower() == m.group(1).lower())
        out.setdefault(name, m.group(2))
    return out


def generate_with_model(source: SyntheticSource, fields: list[str], where: str) -> Iterator[tuple[str, dict]]:
    """(where#n, record) for `count` model-written examples; unparsable ones lack fields (cleaning drops them)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tailor.models.presets import resolve_source

    seeds = _seeds(source, fields, where)
    folder, gguf = resolve_source(str(source.model))
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf).eval()
    except OSError as e:
        raise TailorError(f"{where}.model: cannot load {source.model!r}: {e}") from None
    rng = random.Random(source.seed)
    for n in range(1, source.count + 1):
        shown = rng.sample(range(len(seeds)), min(source.examples_per_prompt, len(seeds)))
        prompt = source.instruction + "\n\n" + "\n\n".join(format_example(seeds[i], fields) for i in shown)
        # the answer starts with the first field's name, so the model continues in the examples' format
        if tokenizer.chat_template:
            text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                                 tokenize=False) + f"{fields[0]}:"
        else:
            text = prompt + f"\n\n{fields[0]}:"
        enc = tokenizer(text, return_tensors="pt", add_special_tokens=not tokenizer.chat_template)
        torch.manual_seed(source.seed * 100_003 + n)
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=source.max_new_tokens, do_sample=source.temperature > 0,
                                 temperature=source.temperature or None, top_p=0.95 if source.temperature > 0 else None,
                                 pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
                                 stop_strings=["\n\n"], tokenizer=tokenizer)
        record = parse_example(f"{fields[0]}:" + tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True),
                               fields)
        yield f"{where}#{n}", {**record, "synthetic": True, "seed_examples": json.dumps(shown)}


def synthetic_files(source: SyntheticSource, where: str) -> list[Path]:
    """Files a synthetic source reads (for the stage's content hash)."""
    keys = {"rows": source.rows, "seeds": source.seeds if isinstance(source.seeds, str) else None,
            "model": source.model if source.model and Path(source.model).is_file() else None}
    return [p for k, v in keys.items() if v for p in expand([v], f"{where}.{k}")]
