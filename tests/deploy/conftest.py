"""Servers on 127.0.0.1 for the deployment tests: uvicorn in a thread, or the `tailor serve` command."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running(app) -> Iterator[str]:
    """Serve an app with uvicorn on a free port in a thread, as `tailor serve` runs it (timeouts, connection
    cap); yields its URL."""
    import uvicorn

    from tailor.deploy.connections import uvicorn_config

    server = uvicorn.Server(uvicorn_config(app, app.state.tailor.serve, host="127.0.0.1", port=free_port(),
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        assert thread.is_alive() and time.time() < deadline, "server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(15)


@contextlib.contextmanager
def cli_server(args: list[str], url_scheme: str = "http", verify=True, env=None) -> Iterator[tuple[str, subprocess.Popen]]:
    """`tailor serve ...` as a subprocess on a free port; yields (url, process)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tailor.cli", "serve", *args, "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    url = f"{url_scheme}://127.0.0.1:{port}"
    deadline = time.time() + 60
    try:
        while True:
            try:
                if httpx.get(f"{url}/health", verify=verify).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                raise AssertionError(proc.stdout.read().decode())
            time.sleep(0.2)
        yield url, proc
    finally:
        proc.terminate()
        proc.wait(10)


@contextlib.contextmanager
def served_apart(model: Path, serve, home: Path) -> Iterator[str]:
    """`tailor.deploy.server.serve` (the command's own entry point) in a process of its own, with `serve`'s
    settings on a free port; yields its URL. Clients in the test process then share no GIL with it."""
    cfg = serve.model_copy(update={"host": "127.0.0.1", "port": free_port()})
    code = ("import sys; from pathlib import Path; from tailor.deploy.server import serve; "
            "from tailor.spec.deploy import Monitor, Serve; "
            "serve(sys.argv[1], Serve.model_validate_json(sys.argv[2]), Monitor(), Path(sys.argv[3]))")
    proc = subprocess.Popen([sys.executable, "-c", code, str(model), cfg.model_dump_json(), str(home)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{cfg.port}"
    deadline = time.time() + 60
    try:
        while True:
            try:
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                raise AssertionError(proc.stderr.read().decode())
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="session")
def home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="session")
def keys(home) -> dict[str, str]:
    """An infer key and an admin key in the session's home."""
    from tailor.deploy.auth import KeyStore

    store = KeyStore(home / "keys.db")
    return {"infer": store.create("tests", ["infer"])[1], "admin": store.create("ops", ["admin"])[1]}




def make_model_folder(folder: Path, tokenizer_dir: Path, seed: int = 0, family: str = "transformer", **arch) -> Path:
    """An untrained model with sharp logits (scaled output layer), so greedy choices are far from ties:
    a transformer, or a recurrent network of the cell `family` (rnn, lstm, gru)."""
    import shutil

    import torch

    from tailor.manifest import write_manifest
    from tailor.models import save_model
    from tailor.models.recurrent import Recurrent, RecurrentConfig
    from tailor.models.transformer import Transformer, TransformerConfig
    from tailor.tokenizer import Codec

    codec = Codec.load(tokenizer_dir)
    torch.manual_seed(seed)
    if family == "transformer":
        cfg = {"vocab_size": codec.vocab_size, "block_size": 64, "n_layer": 2, "n_head": 4, "n_embd": 32,
               "tie_weights": False} | arch
        model = Transformer(TransformerConfig(**cfg))
    else:
        model = Recurrent(RecurrentConfig(cell=family, vocab_size=codec.vocab_size, block_size=64, n_layer=2, n_embd=32,
                                          n_hidden=48, tie_weights=False))
    with torch.no_grad():  # sharp logits, and only tokens that decode to printable ASCII can win
        model.lm_head.weight.mul_(40)
        for i in range(codec.vocab_size):
            text = codec.decode([i])
            if not text or not all(32 <= ord(ch) < 127 for ch in text):
                model.lm_head.weight[i] = 0
    save_model(model, folder, {"tailor": {"name": folder.name, "format": "pairs",
                                          "fields": {"input": "question", "output": "answer", "text": None}}})
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy2(tokenizer_dir / name, folder / name)
    write_manifest(folder)
    return folder


@pytest.fixture(scope="session")
def chatty_model(finished_run, tmp_path_factory) -> Path:
    """A GPT-2-shaped model that talks (rarely stops), with the finished run's tokenizer."""
    _, run_dir = finished_run
    return make_model_folder(tmp_path_factory.mktemp("chatty") / "chatty", run_dir / "train" / "model")


@dataclass
class Served:
    url: str
    app: object


@pytest.fixture(scope="session")
def served_chatty(chatty_model, home, keys) -> Iterator[Served]:
    """The talking model served with default settings."""
    from tailor.deploy.server import create_app

    app = create_app(chatty_model, home=home)
    with running(app) as url:
        yield Served(url, app)
