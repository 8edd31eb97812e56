"""Cleaning steps. Each is a small callable with one job: record -> record, or a drop reason.

A step says whether it may run on a shard of the data alone (`parallel`) or needs every earlier
record (dedup); steps that count more than in/kept/dropped keep a `counts` Counter.
"""

from __future__ import annotations

from typing import Protocol

from tailor.errors import TailorError
from tailor.spec.data import Data


class Step(Protocol):
    name: str
    parallel: bool

    def __call__(self, record: dict) -> dict | str:
        """The kept (possibly changed) record, or a short reason for dropping it."""


def _label_field(data: Data, options: dict, step: str) -> str:
    field = options.get("field") or data.fields.output
    if field is None:
        raise TailorError(f"data.clean {step}: set `field` (which record field gets the label) or data.fields.output")
    return field


def build_step(name: str, o: dict, data: Data) -> Step:
    """One step object from its spec name and options."""
    from tailor.data.annotate.join import LabelJoin
    from tailor.data.annotate.rules import LabelRules
    from tailor.data.clean import (dedup, fix_text, language, lowercase, missing, near_dedup, normalize, pii, quality,
                                   spelling, words)

    fields = o.get("fields") or data.fields.used
    if name == "dedup":
        return dedup.ExactDedup(fields)
    if name == "near_dedup":
        return near_dedup.NearDedup(fields, o["threshold"], o["num_perm"], o["ngram"], o["bands"], o["verify"], o["seed"])
    if name == "missing":
        return missing.Missing(o["drop"] if o["drop"] is not None else data.fields.used, o["fill"])
    if name == "fix_text":
        return fix_text.fix_text_step(fields)
    if name == "spelling":
        return spelling.Spelling(fields, o["max_edit_distance"], o["min_length"])
    if name == "normalize":
        return normalize.Normalize(fields, o["unicode"], o["whitespace"], o["drop_empty"], o["numbers"], o["dates"], o["units"])
    if name == "lowercase":
        return lowercase.lowercase_step(fields)
    if name in ("stopwords", "stem", "lemmatize"):
        return {"stopwords": words.stopwords_step, "stem": words.stem_step,
                "lemmatize": words.lemmatize_step}[name](fields, o["language"])
    if name == "quality":
        return quality.Quality(fields, **{k: v for k, v in o.items() if k != "fields"})
    if name == "pii":
        return pii.Pii(fields, o["kinds"], o["drop"])
    if name == "language":
        return language.Language(fields, o["keep"], o["min_chars"])
    if name == "label_join":
        return LabelJoin(o["path"], o["id"], o["label"], _label_field(data, o, name), o["overwrite"])
    if name == "label_rules":
        text_fields = o.get("fields") or [f for f in (data.fields.input, data.fields.text) if f]
        return LabelRules(o["rules"], text_fields, _label_field(data, o, name), o["overwrite"], o["drop_unlabelled"])
    if name == "label_model":
        from tailor.data.annotate.model import LabelModel

        text_fields = o.get("fields") or [f for f in (data.fields.input, data.fields.text) if f]
        return LabelModel(o["model"], o["labels"], text_fields, o["field"], o["prompt"])
    raise AssertionError(name)  # the spec admits only the names above


def build_steps(data: Data) -> list[Step]:
    """The spec's `data.clean` list as step objects, in order."""
    return [build_step(name, options, data) for step in data.clean for name, options in step.items()]
