"""Options of the `data.clean` steps, one model per step; the step name is the key in the spec."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import Field, model_validator

from tailor.errors import TailorError
from tailor.spec.base import Strict

Fields = list[str] | None
FIELDS = Field(None, description="text fields the step reads; default: the model's fields (data.fields)")


class StepOptions(Strict):
    """Options of one cleaning step: the keyword arguments of its class, with defaults taken from data.fields."""

    def arguments(self, fields) -> dict:
        """The step's constructor arguments; `fields` (data.fields) fills what the options leave to the model."""
        out = self.model_dump()
        if "fields" in out and out["fields"] is None:
            out["fields"] = fields.used
        return out

    def files(self) -> list[str]:
        """Local files the step reads (they enter the data stage's cache key)."""
        return []


def _text_fields(fields) -> list[str]:
    return [f for f in (fields.input, fields.text) if f]


def _label_field(given: str | None, fields, step: str) -> str:
    field = given or fields.output
    if field is None:
        raise TailorError(f"data.clean {step}: set `field` (which record field gets the label) or data.fields.output")
    return field


class DedupOptions(StepOptions):
    """Exact duplicates: drop a record whose compared fields equal an earlier record's."""

    fields: Fields = Field(None, description="fields compared; default: the model's fields")


class NearDedupOptions(StepOptions):
    """Near duplicates by MinHash LSH over word n-grams; the first record of a cluster is kept.

    The defaults (word pairs, 0.7) catch a one-word edit of a record of 20 words or more: an edit changes
    at most n of its n-grams, so Jaccard is (m - n) / (m + n) for m n-grams, 0.81 at 20 words with pairs
    (0.52 with 5-grams); a third of the words changed leaves about 0.3, half the text shared about 0.33.
    """

    fields: Fields = FIELDS
    threshold: float = Field(0.7, gt=0, lt=1, description="estimated Jaccard similarity at which two records are duplicates")
    num_perm: int = Field(112, ge=16, le=1024, description="MinHash permutations (signature length)")
    ngram: int = Field(2, ge=1, le=20, description="words per shingle (2: one edit in a 20-word record keeps "
                                                   "Jaccard 0.81; 5 suits long documents, not short records)")
    bands: int | None = Field(None, ge=1, description="LSH bands; default: chosen from threshold and num_perm")
    verify: bool = Field(True, description="drop LSH candidates whose estimated Jaccard is clearly (2 standard "
                                           "errors) below the threshold: fewer false positives")
    seed: int = 1

    @model_validator(mode="after")
    def _bands_divide(self) -> NearDedupOptions:
        if self.bands is not None and self.num_perm % self.bands:
            raise ValueError(f"bands ({self.bands}) must divide num_perm ({self.num_perm})")
        return self


class MissingOptions(StepOptions):
    """Records with empty or absent fields: drop them, or fill the field with a value."""

    drop: Fields = Field(None, description="drop a record missing any of these; default: the model's fields")
    fill: dict[str, str] = Field(default_factory=dict, description="field -> value to put where it is missing")

    def arguments(self, fields) -> dict:
        return {"drop": self.drop if self.drop is not None else fields.used, "fill": self.fill}


class FixTextOptions(StepOptions):
    """Repair mojibake and broken Unicode with ftfy."""

    fields: Fields = FIELDS


class SpellingOptions(StepOptions):
    """Correct misspelled words with symspellpy's bundled English dictionary; code is never touched."""

    fields: Fields = FIELDS
    max_edit_distance: int = Field(2, ge=1, le=3)
    min_length: int = Field(4, ge=2, description="shorter words are left alone")


class NormalizeOptions(StepOptions):
    """Unicode normal form and whitespace; optionally numbers, dates and units in one format."""

    fields: Fields = FIELDS
    unicode: Literal["NFC", "NFKC", "none"] = "NFKC"
    whitespace: bool = Field(True, description="collapse runs of spaces, trim lines, at most one blank line")
    drop_empty: bool = True
    numbers: bool = Field(False, description="1,234.5 -> 1234.5 (thousands separators removed)")
    dates: Literal["none", "mdy", "dmy"] = Field(
        "none", description="rewrite dates as ISO 2024-03-05; mdy or dmy says how to read 03/05/2024")
    units: bool = Field(False, description="'5kg', '5 kilograms', '5 Kg.' -> '5 kg'")


class LowercaseOptions(StepOptions):
    """Lowercase the text (classic pipelines; the report warns for generative models)."""

    fields: Fields = FIELDS


class LanguageWords(StepOptions):
    fields: Fields = FIELDS
    language: str = Field("en", description="ISO 639-1 code")


class StopwordsOptions(LanguageWords):
    """Remove stop words (the `stop-words` lists)."""


class StemOptions(LanguageWords):
    """Replace words by their Snowball stems."""


class LemmatizeOptions(LanguageWords):
    """Replace words by their lemmas (simplemma)."""


class QualityOptions(StepOptions):
    """Heuristic quality filters; each rule that fails names itself as the drop reason."""

    fields: Fields = FIELDS
    min_chars: int = 1
    max_chars: int | None = None
    min_words: int = 0
    max_words: int | None = None
    max_symbol_ratio: float | None = Field(0.3, description="share of characters that are neither letters, digits nor spaces")
    max_digit_ratio: float | None = Field(0.5, description="share of characters that are digits")
    max_duplicate_line_ratio: float | None = Field(0.3, description="share of lines that repeat an earlier line")
    max_top_ngram_ratio: float | None = Field(
        0.2, description="share of characters in the most frequent word 2-gram (Gopher repetition rule)")
    gopher: bool = Field(False, description="Gopher rules: mean word length 3-10, >=80% words with a letter, "
                                            "<=90% bullet lines, <=30% lines ending in an ellipsis, >=2 stop words")


class PiiOptions(StepOptions):
    """Replace emails, phone numbers, IP addresses and card numbers (Luhn-checked) by placeholders."""

    fields: Fields = FIELDS
    kinds: list[Literal["email", "phone", "ip", "card"]] = Field(default_factory=lambda: ["email", "phone", "ip", "card"])
    drop: bool = Field(False, description="drop the record instead of redacting it")


class LanguageOptions(StepOptions):
    """Keep records in the given languages (py3langid, an offline detector with a bundled model)."""

    fields: Fields = FIELDS
    keep: list[str] = Field(min_length=1, description="ISO 639-1 codes, e.g. [en]")
    min_chars: int = Field(20, description="shorter texts are kept undetected (too short to tell)")


class LabelJoinOptions(StepOptions):
    """Attach labels from a CSV or JSONL file by a shared id field."""

    path: str
    id: str = Field(description="id field, the same name in the records and in the file")
    label: str = Field("label", description="column of the file that holds the label")
    field: str | None = Field(None, description="record field to write; default: data.fields.output")
    overwrite: bool = False

    def arguments(self, fields) -> dict:
        return {**self.model_dump(), "field": _label_field(self.field, fields, "label_join")}

    def files(self) -> list[str]:
        return [self.path]


class LabelRule(Strict):
    """A labeling function: records matching the regex (or containing a keyword) vote for the label."""

    label: str
    pattern: str | None = None
    keywords: list[str] = Field(default_factory=list)
    name: str | None = None

    @model_validator(mode="after")
    def _something(self) -> LabelRule:
        if not self.pattern and not self.keywords:
            raise ValueError("a rule needs a pattern or keywords")
        return self


class LabelRulesOptions(StepOptions):
    """Rule-based labeling: majority vote of the rules; coverage, overlap and conflict are reported."""

    rules: list[LabelRule] = Field(min_length=1)
    fields: Fields = Field(None, description="text fields the rules read; default: data.fields.input or text")
    field: str | None = Field(None, description="record field to write; default: data.fields.output")
    overwrite: bool = Field(False, description="also relabel records that already have a label")
    drop_unlabelled: bool = Field(False, description="drop records no rule labels (or ties)")

    def arguments(self, fields) -> dict:
        return {**self.model_dump(), "fields": self.fields or _text_fields(fields),
                "field": _label_field(self.field, fields, "label_rules")}


class LabelModelOptions(StepOptions):
    """Pre-label records with a pretrained model for review: the most likely of `labels` and its probability."""

    model: str = Field("smollm2-135m", description="a preset, a model folder or a .gguf file")
    labels: list[str] = Field(min_length=2)
    fields: Fields = Field(None, description="text fields shown to the model; default: data.fields.input or text")
    field: str = Field("suggested_label", description="record field for the suggestion (plus <field>_score)")
    prompt: str = Field("Text: {text}\nPossible labels: {labels}\nThe label of this text is:",
                        description="{text} and {labels} are filled in; each label is scored as its continuation")

    def arguments(self, fields) -> dict:
        return {**self.model_dump(), "fields": self.fields or _text_fields(fields)}


@dataclass(frozen=True)
class StepKind:
    """A registered cleaning step: its options, and the class (module:name) whose keyword arguments they are."""

    options: type[StepOptions]
    implementation: str


# The registry: a new step is its file under tailor/data/clean (or annotate) plus one line here.
CLEAN_STEPS: dict[str, StepKind] = {
    "dedup": StepKind(DedupOptions, "tailor.data.clean.dedup:ExactDedup"),
    "near_dedup": StepKind(NearDedupOptions, "tailor.data.clean.near_dedup:NearDedup"),
    "missing": StepKind(MissingOptions, "tailor.data.clean.missing:Missing"),
    "fix_text": StepKind(FixTextOptions, "tailor.data.clean.fix_text:FixText"),
    "spelling": StepKind(SpellingOptions, "tailor.data.clean.spelling:Spelling"),
    "normalize": StepKind(NormalizeOptions, "tailor.data.clean.normalize:Normalize"),
    "lowercase": StepKind(LowercaseOptions, "tailor.data.clean.lowercase:Lowercase"),
    "stopwords": StepKind(StopwordsOptions, "tailor.data.clean.words:Stopwords"),
    "stem": StepKind(StemOptions, "tailor.data.clean.words:Stem"),
    "lemmatize": StepKind(LemmatizeOptions, "tailor.data.clean.words:Lemmatize"),
    "quality": StepKind(QualityOptions, "tailor.data.clean.quality:Quality"),
    "pii": StepKind(PiiOptions, "tailor.data.clean.pii:Pii"),
    "language": StepKind(LanguageOptions, "tailor.data.clean.language:Language"),
    "label_join": StepKind(LabelJoinOptions, "tailor.data.annotate.join:LabelJoin"),
    "label_rules": StepKind(LabelRulesOptions, "tailor.data.annotate.rules:LabelRules"),
    "label_model": StepKind(LabelModelOptions, "tailor.data.annotate.model:LabelModel"),
}
CLASSIC_STEPS = ("lowercase", "stopwords", "stem", "lemmatize")  # the report warns when a generative model gets these
