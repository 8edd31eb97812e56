"""What the server serves: a model folder, or the champion of a registry name, swapped while serving.

A swap loads and verifies the new model beside the old one, points new requests at it, then lets
the old engine finish every request it had before it stops: no request is dropped.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from tailor.inference.engine import Engine
from tailor.inference.served import Loaded, load_engine
from tailor.errors import TailorError
from tailor.inference import resolve_model_dir

log = logging.getLogger("tailor.serve")
REGISTRY_PREFIX = "registry:"


class ModelHost:
    """The current engine, and the swap to the next one."""

    def __init__(self, source: str, registry_root: Path | None = None, max_batch: int = 16, max_queue: int = 64,
                 device: str = "cpu", verify: bool = True):
        self.source, self.registry_root = source, registry_root
        self.max_batch, self.max_queue, self.device, self.verify = max_batch, max_queue, device, verify
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.current = self._load(*self._resolve())
        self.on_swap = lambda loaded: None

    @property
    def registry_name(self) -> str | None:
        return self.source.removeprefix(REGISTRY_PREFIX) if self.source.startswith(REGISTRY_PREFIX) else None

    def _resolve(self) -> tuple[Path, str]:
        """(model folder, version label) that the source names now."""
        name = self.registry_name
        if name is None:
            folder = resolve_model_dir(self.source)
            return folder, folder.parent.parent.name if folder.name == "model" and folder.parent.name == "train" else folder.name
        from tailor.deploy.registry import Registry

        if self.registry_root is None:
            raise TailorError("serving a registry name needs the registry folder (--registry)")
        champion = Registry(self.registry_root).champion(name)
        if champion is None:
            raise TailorError(f"registry: {name} has no champion; `tailor registry promote {name} VERSION` first")
        return champion.path, champion.tag

    def _load(self, folder: Path, version: str) -> Loaded:
        return load_engine(folder, version, self.max_batch, self.max_queue, self.device, self.verify)

    @property
    def engine(self) -> Engine:
        return self.current.engine

    def swap_to(self, folder: Path, version: str) -> None:
        """Serve `folder` from now on; requests already taken finish on the old model."""
        loaded = self._load(folder, version)
        with self._lock:
            old, self.current = self.current, loaded
        log.info("now serving %s (was %s)", version, old.version)
        self.on_swap(loaded)
        threading.Thread(target=old.engine.drain, name="drain", daemon=True).start()

    def check_registry(self) -> bool:
        """Swap when the registry's champion changed; True when it did."""
        if self.registry_name is None:
            return False
        folder, version = self._resolve()
        if version == self.current.version:
            return False
        self.swap_to(folder, version)
        return True

    def watch(self, every: float = 2.0) -> None:
        """Check the registry every `every` seconds in a thread, until stop()."""
        def run() -> None:
            while not self._stop.wait(every):
                try:
                    self.check_registry()
                except TailorError as e:  # a bad new version is refused; the current one keeps serving
                    log.error("registry: not swapping: %s", e)

        if self.registry_name is not None:
            threading.Thread(target=run, name="registry-watch", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        self.current.engine.drain(5)
