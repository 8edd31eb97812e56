"""Word-level rewriting for classic pipelines: stop words, stems, lemmas. Punctuation and spacing between
words are kept; only the words change."""

from __future__ import annotations

import re
from collections.abc import Callable

from tailor.data.clean.text_step import TextStep
from tailor.errors import TailorError

_WORD = re.compile(r"\w+(?:'\w+)?")
_SPACES = re.compile(r"[ \t]{2,}")


def _per_word(fn: Callable[[str], str | None]) -> Callable[[str], str]:
    def apply(text: str) -> str:
        out = _WORD.sub(lambda m: fn(m.group(0)) or "\x00", text)
        if "\x00" not in out:
            return out
        return "\n".join(_SPACES.sub(" ", line.replace("\x00", "")).strip() for line in out.split("\n"))
    return apply


class Stopwords(TextStep):
    """Remove the words of the `stop-words` list for language."""

    def __init__(self, fields: list[str], language: str):
        from stop_words import StopWordError, get_stop_words

        try:
            stop = set(get_stop_words(language))
        except StopWordError:
            raise TailorError(f"data.clean stopwords.language: no stop-word list for {language!r}") from None
        super().__init__("stopwords", fields, _per_word(lambda w: None if w.lower() in stop else w))


class Stem(TextStep):
    """Replace words by their Snowball stems."""

    def __init__(self, fields: list[str], language: str):
        super().__init__("stem", fields, _per_word(_stemmer(language).stemWord))


class Lemmatize(TextStep):
    """Replace words by their lemmas (simplemma's bundled dictionaries)."""

    def __init__(self, fields: list[str], language: str):
        import simplemma

        if language not in simplemma.strategies.dictionaries.dictionary_factory.SUPPORTED_LANGUAGES:
            raise TailorError(f"data.clean lemmatize.language: simplemma has no dictionary for {language!r}")
        super().__init__("lemmatize", fields, _per_word(lambda w: simplemma.lemmatize(w, lang=language)))


def _stemmer(language: str):
    import snowballstemmer

    names = {"en": "english", "de": "german", "fr": "french", "es": "spanish", "it": "italian", "nl": "dutch",
             "pt": "portuguese", "sv": "swedish", "no": "norwegian", "da": "danish", "fi": "finnish", "ru": "russian"}
    try:
        stemmer = snowballstemmer.stemmer(names.get(language, language))
    except KeyError:
        raise TailorError(f"data.clean stem.language: no Snowball stemmer for {language!r}") from None
    return stemmer
