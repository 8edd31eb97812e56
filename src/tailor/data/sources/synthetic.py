"""Generated records: Jinja templates over value tables, or a pretrained model that writes new examples
from seed examples (self-instruct style). Every record is tagged `synthetic: true` and then goes through
the same cleaning as read data."""

from __future__ import annotations

import hashlib
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


def _rows(source: SyntheticSource, where: str) -> list[dict]:
    """The rows table, or the natural join of several: every combination of rows that agree on shared fields."""
    if not source.rows:
        return [{}]
    paths = [source.rows] if isinstance(source.rows, str) else source.rows
    joined = _table(paths[0], f"{where}.rows")
    for i, path in enumerate(paths[1:], 1):
        table = _table(path, f"{where}.rows[{i}]")
        shared = sorted(set(joined[0] if joined else {}) & set(table[0] if table else {}))
        index: dict[tuple, list[dict]] = {}
        for row in table:
            index.setdefault(tuple(json.dumps(row.get(k), sort_keys=True) for k in shared), []).append(row)
        joined = [{**left, **right} for left in joined
                  for right in index.get(tuple(json.dumps(left.get(k), sort_keys=True) for k in shared), [])]
    if not joined:
        raise TailorError(f"{where}.rows: the tables have no rows" + (" that agree on their shared fields"
                                                                      if len(paths) > 1 else ""))
    return joined


def _random_order(total: int, rng: random.Random) -> Iterator[int]:
    """Every number below total once, in a seeded random order, without listing them all for large totals."""
    if total <= 10_000_000:
        yield from rng.sample(range(total), total)
        return
    seen: set[int] = set()
    while len(seen) < total:
        index = rng.randrange(total)
        if index not in seen:
            seen.add(index)
            yield index


def _contexts(source: SyntheticSource, where: str, keep=None) -> Iterator[dict]:
    """Rendering contexts: every combination of the rows and the values that `keep` accepts, or a seeded
    sample of `count` of them."""
    names = list(source.values)
    axes = [_rows(source, where)] + [source.values[n] for n in names]

    def context(picks: list) -> dict:
        row, *combo = picks
        return {**row, **dict(zip(names, combo))}

    if source.count is None:
        for picks in itertools.product(*axes):
            ctx = context(list(picks))
            if keep is None or keep(ctx):
                yield ctx
        return
    total, made = math.prod(map(len, axes)), 0
    for index in _random_order(total, random.Random(source.seed)):
        picks = []
        for axis in reversed(axes):  # mixed-radix decode of the combination's number
            index, k = divmod(index, len(axis))
            picks.append(axis[k])
        ctx = context(picks[::-1])
        if keep is None or keep(ctx):
            yield ctx
            made += 1
            if made == source.count:
                return


def bucket(*parts) -> int:
    """A stable number in 0..99 for a combination of values: holds a share of them out the same way every time."""
    return int(hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest(), 16) % 100


def typo(text: str, rate: float, rng: random.Random) -> str:
    """With probability `rate`, one slip in a word of plain letters (longer than 3): swap, drop or double a letter."""
    if rng.random() >= rate:
        return text
    parts = text.split(" ")
    words = [i for i, w in enumerate(parts) if len(w) > 3 and w.isalpha()]
    if not words:
        return text
    i = rng.choice(words)
    w, j = parts[i], rng.randrange(1, len(parts[i]) - 1)
    parts[i] = rng.choice([w[:j] + w[j + 1] + w[j] + w[j + 2:], w[:j] + w[j + 1:], w[:j] + w[j] + w[j:]])
    return " ".join(parts)


def render_templates(source: SyntheticSource, where: str) -> Iterator[tuple[str, dict]]:
    """(where#n, record) for each rendering of the templates.

    Templates may call `pick(list)` (a seeded choice), `bucket(a, b, ...)` (a stable 0..99) and the
    filter `typo(rate)`; the same seed renders the same records.
    """
    import jinja2
    from jinja2.sandbox import SandboxedEnvironment

    env = SandboxedEnvironment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False)
    rng = random.Random()
    env.globals.update(pick=lambda seq: rng.choice(list(seq)), bucket=bucket)
    env.filters["typo"] = lambda text, rate=0.1: typo(str(text), float(rate), rng)
    def compiled(name: str, build):
        try:
            return build()
        except jinja2.TemplateSyntaxError as e:
            raise TailorError(f"{where}.{name}: line {e.lineno}: {e.message}") from None

    templates = compiled("templates", lambda: {f: env.from_string(t) for f, t in (source.templates or {}).items()})
    when = compiled("when", lambda: env.compile_expression(source.when)) if source.when else None

    def keep(context: dict) -> bool:
        try:
            return bool(when(**context))
        except jinja2.UndefinedError as e:
            raise TailorError(f"{where}.when: {e.message} (values: {', '.join(context) or 'none'})") from None

    for n, context in enumerate(_contexts(source, where, keep if when else None), 1):
        rng.seed(f"{source.seed}:{n}")
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

    from tailor.presets import resolve_source

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


def read(source: SyntheticSource, context) -> Iterator[tuple[str, dict]]:
    """Records rendered from templates, or written by a model imitating seed examples."""
    if source.templates:
        return render_templates(source, context.where)
    return generate_with_model(source, context.fields.used, context.where)


def files(source: SyntheticSource, where: str) -> list[Path]:
    """Files a synthetic source reads (for the stage's content hash)."""
    rows = [source.rows] if isinstance(source.rows, str) else source.rows or []
    keys = {"seeds": source.seeds if isinstance(source.seeds, str) else None,
            "model": source.model if source.model and Path(source.model).is_file() else None}
    return ([p for r in rows for p in expand([r], f"{where}.rows")]
            + [p for k, v in keys.items() if v for p in expand([v], f"{where}.{k}")])
