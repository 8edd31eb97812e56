"""What the serving benchmarks share: a model folder to serve, and `tailor serve` as a subprocess."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import torch

WORDS = ("what colour is the drill how heavy is battery voltage warranty item price delivery cable saw grinder "
         "lamp please tell me about the store open hours return policy size weight of").split()


def build_model(folder: Path, n_layer: int = 4, n_embd: int = 256, n_head: int = 4, block_size: int = 256) -> Path:
    """A GPT-2-shaped model (random weights) with a byte-level BPE, saved as a servable folder."""
    import random

    from tailor.manifest import write_manifest
    from tailor.models import save_model
    from tailor.models.transformer import Transformer, TransformerConfig
    from tailor.tokenizer import EOS, PAD, SEP, Codec, train_bpe

    rng = random.Random(0)
    texts = [" ".join(rng.choice(WORDS) for _ in range(12)) for _ in range(2000)]
    folder.mkdir(parents=True, exist_ok=True)
    train_bpe(iter(texts), 1024, 2).save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(
        f'{{"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "{EOS}", "pad_token": "{PAD}", '
        f'"sep_token": "{SEP}"}}')
    codec = Codec.load(folder)
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(vocab_size=codec.vocab_size, block_size=block_size, n_layer=n_layer,
                                          n_head=n_head, n_embd=n_embd))
    with torch.no_grad():
        model.lm_head.weight[codec.eos_id] = -1.0  # answers run to max_tokens, so both sides make the same tokens
    save_model(model, folder, {"tailor": {"name": "bench", "format": "text"}})
    write_manifest(folder)
    return folder


def prompts(n: int, seed: int = 1) -> list[str]:
    import random

    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 40))) for _ in range(n)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def server(model: Path, home: Path, spec: Path | None = None, threads: int = 1) -> Iterator[tuple[str, dict, int]]:
    """`tailor serve` on 127.0.0.1 with `threads` torch threads; yields (url, auth headers, server pid)."""
    from tailor.deploy.auth import KeyStore

    key = KeyStore(home / "keys.db").create("bench", ["infer"])[1]
    port = free_port()
    args = [sys.executable, "-m", "tailor.cli", "serve", str(model), "--port", str(port), "--home", str(home)]
    proc = subprocess.Popen(args + (["--spec", str(spec)] if spec else []), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": str(threads)})
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        try:
            if httpx.get(f"{url}/ready").status_code == 200:
                break
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            raise SystemExit("the server did not start")
        time.sleep(0.2)
    try:
        yield url, {"Authorization": f"Bearer {key}"}, proc.pid
    finally:
        proc.terminate()
        proc.wait(20)


def rss_mb(pid: int) -> float:
    """Resident memory of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")
