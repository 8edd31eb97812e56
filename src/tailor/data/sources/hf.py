"""Hugging Face datasets, by hub name or local folder, streamed when asked."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from tailor.errors import TailorError
from tailor.spec.data import HFSource


def _open(source: HFSource, where: str):
    import datasets

    folder = Path(source.name)
    try:
        if folder.is_dir() and ((folder / "state.json").is_file() or (folder / "dataset_dict.json").is_file()):
            ds = datasets.load_from_disk(str(folder))  # a save_to_disk folder
            if isinstance(ds, datasets.DatasetDict):
                if source.hf_split not in ds:
                    raise TailorError(f"{where}.hf_split: {source.hf_split!r} is not in {folder}; it has {', '.join(ds)}")
                ds = ds[source.hf_split]
            return ds.to_iterable_dataset() if source.streaming else ds
        return datasets.load_dataset(source.name, source.config, split=source.hf_split, streaming=source.streaming)
    except TailorError:
        raise
    except Exception as e:  # datasets raises many types (FileNotFoundError, ValueError, hub errors)
        raise TailorError(f"{where}.name: cannot load dataset {source.name!r} (config {source.config}, split "
                          f"{source.hf_split!r}): {type(e).__name__}: {e}") from None


def read_hf(source: HFSource, where: str) -> Iterator[tuple[str, dict]]:
    """(name[split]:row, record) for up to max_records rows."""
    for i, row in enumerate(_open(source, where), 1):
        if source.max_records is not None and i > source.max_records:
            break
        yield f"{source.name}[{source.hf_split}]:{i}", dict(row)


def read(source: HFSource, context) -> Iterator[tuple[str, dict]]:
    return read_hf(source, context.where)


def files(source: HFSource, where: str) -> list[Path]:
    """A local dataset folder's files (a hub dataset is keyed by its name and revision)."""
    folder = Path(source.name)
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []
