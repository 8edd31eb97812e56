"""Deployment commands: serve, keys, registry, retrain, export, encrypt (registered on the `tailor` app)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from tailor.errors import TailorError

HOME = typer.Option(Path(".tailor"), "--home", envvar="TAILOR_HOME",
                    help="Folder with the deployment's state: keys.db, feedback.db, registry/.")
out, err = Console(), Console(stderr=True)
RUNS_DIR = typer.Option(Path("runs"), "--runs-dir", help="Folder that holds runs/<spec name>/<run id>/.")
_COMMANDS = []


def _command(fn):
    """Collect a top-level command for register()."""
    _COMMANDS.append(fn)
    return fn


def _deploy_spec(model: str, spec: Path | None):
    """The deploy section: from --spec, else the run's spec.resolved.yaml, else the defaults."""
    from tailor.spec import load_spec
    from tailor.spec.deploy import Deploy

    if spec is not None:
        return load_spec(spec).deploy
    resolved = Path(model) / "spec.resolved.yaml"
    if resolved.is_file():
        return load_spec(resolved).deploy
    return Deploy()


@_command
def serve(
    model: str = typer.Argument(..., help="A run directory, a model folder, or registry:NAME (its champion, swapped "
                                          "live on promotion)."),
    spec: Path = typer.Option(None, "--spec", help="Take deploy: settings from this spec (default: the run's)."),
    host: str = typer.Option(None, help="Address to listen on (default: deploy.serve.host, 127.0.0.1)."),
    port: int = typer.Option(None, help="Port (default: deploy.serve.port, 8000; the platform's port with --platform)."),
    platform: str = typer.Option(None, help="Cloud container contract: sagemaker, vertex or azure."),
    allow_outside_platform: bool = typer.Option(False, "--allow-outside-platform",
                                                help="Serve --platform's keyless routes where the platform's "
                                                     "environment is missing (rate-limited per address)."),
    tls_cert: Path = typer.Option(None, help="PEM certificate: serve HTTPS only."),
    tls_key: Path = typer.Option(None, help="PEM private key of the certificate."),
    device: str = typer.Option("auto", help="auto (CUDA, then Apple MPS, then CPU), cpu, cuda or mps."),
    home: Path = HOME,
) -> None:
    """Serve a model over HTTP: OpenAI-compatible routes, API keys, limits, metrics, alerts."""
    from tailor.deploy.cloud import platform_port
    from tailor.deploy.server import serve as serve_model

    deploy = _deploy_spec(model, spec)
    flags = {"platform": platform, "tls_cert": str(tls_cert) if tls_cert else None,
             "tls_key": str(tls_key) if tls_key else None, "allow_outside_platform": allow_outside_platform}
    try:
        cfg = type(deploy.serve).model_validate(deploy.serve.model_dump() | {k: v for k, v in flags.items() if v})
    except ValidationError as e:
        raise TailorError("; ".join(f"--{'-'.join(map(str, x['loc'])).replace('_', '-') or 'options'}: "
                                    f"{x['msg'].removeprefix('Value error, ')}" for x in e.errors())) from None
    if cfg.platform != "none":
        cfg.host, cfg.port = host or "0.0.0.0", port or platform_port(cfg.platform)  # nosec B104: container port
    else:
        cfg.host, cfg.port = host or cfg.host, port or cfg.port
    from tailor.device import pick_device

    if device not in ("auto", "cpu", "cuda", "mps"):
        raise TailorError(f"--device {device!r}: expected auto, cpu, cuda or mps")
    serve_model(model, cfg, deploy.monitor, home, str(pick_device(device)))


keys_app = typer.Typer(help="API keys of a deployment (stored hashed in HOME/keys.db).", no_args_is_help=True)


@keys_app.command("create")
def keys_create(name: str = typer.Argument(..., help="Who or what the key is for."),
                scope: list[str] = typer.Option(["infer"], "--scope", help="infer or admin (repeatable)."),
                home: Path = HOME) -> None:
    """Create a key; it is printed once and stored only as a hash."""
    from tailor.deploy.auth import KeyStore

    info, key = KeyStore(home / "keys.db").create(name, scope)
    err.print(f"key {info.id} ({info.name}, scopes {','.join(info.scopes)}); it is shown only now:")
    out.print(key, markup=False, highlight=False)


@keys_app.command("list")
def keys_list(home: Path = HOME) -> None:
    """List keys (ids, names, scopes; never the keys)."""
    from datetime import datetime

    from tailor.deploy.auth import KeyStore

    table = Table("id", "name", "scopes", "created", "revoked")
    for k in KeyStore(home / "keys.db").list():
        table.add_row(k.id, k.name, ",".join(k.scopes), datetime.fromtimestamp(k.created).isoformat(timespec="seconds"),
                      datetime.fromtimestamp(k.revoked).isoformat(timespec="seconds") if k.revoked else "-")
    out.print(table)


@keys_app.command("revoke")
def keys_revoke(key: str = typer.Argument(..., help="Key id, or name (revokes every key of that name)."),
                home: Path = HOME) -> None:
    """Revoke a key; a running server refuses it from the next request on."""
    from tailor.deploy.auth import KeyStore

    n = KeyStore(home / "keys.db").revoke(key)
    out.print(f"revoked {n} key(s)")


registry_app = typer.Typer(help="The model registry (HOME/registry): versions, champion, rollback.",
                           no_args_is_help=True)


@registry_app.command("add")
def registry_add(model: Path = typer.Argument(..., help="A run directory or a model folder."),
                 name: str = typer.Option(None, help="Registry name (default: the run's spec name)."),
                 promote: bool = typer.Option(False, "--promote", help="Make it the champion at once."),
                 home: Path = HOME) -> None:
    """Register a trained model as a new version, with its metrics and lineage."""
    from tailor.deploy.drift import reference_texts
    from tailor.deploy.registry import Registry
    from tailor.inference import resolve_model_dir

    folder = resolve_model_dir(model)
    run_dir = folder.parent.parent
    info = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").is_file() else {}
    metrics = json.loads((run_dir / "metrics.json").read_text()) if (run_dir / "metrics.json").is_file() else {}
    if name is None:
        name = info.get("name") or folder.name
    registry = Registry(home / "registry")
    v = registry.add(folder, name, metrics, {"run": str(run_dir) if info else None, "source": str(folder)},
                     reference_texts(model))
    if promote:
        registry.promote(name, v.version, "registered with --promote")
    out.print(f"registered {v.tag}" + (" (champion)" if promote else ""))


@registry_app.command("list")
def registry_list(name: str = typer.Argument(None, help="Only this name."), home: Path = HOME) -> None:
    """Versions with their metrics, lineage and which one is champion."""
    from tailor.deploy.registry import Registry

    table = Table("version", "champion", "key metrics", "lineage")
    for v in Registry(home / "registry").list(name):
        metrics = ", ".join(f"{k}={val:.4g}" for k, val in list(v.metrics.items())[:3] if isinstance(val, (int, float)))
        table.add_row(v.tag, "yes" if v.champion else "", metrics or "-",
                      ", ".join(f"{k}={val}" for k, val in v.lineage.items() if val is not None))
    out.print(table)


@registry_app.command("promote")
def registry_promote(name: str, version: int, home: Path = HOME) -> None:
    """Make a version the champion; servers of registry:NAME swap to it."""
    from tailor.deploy.registry import Registry

    out.print(f"champion: {Registry(home / 'registry').promote(name, version).tag}")


@registry_app.command("rollback")
def registry_rollback(name: str, home: Path = HOME) -> None:
    """Make the previous champion the champion again."""
    from tailor.deploy.registry import Registry

    out.print(f"champion: {Registry(home / 'registry').rollback(name).tag}")


@_command
def retrain(
    spec: Path = typer.Argument(..., help="Spec file (YAML)."),
    every: str = typer.Option(None, "--every", help="Run again after this long, e.g. 1d, 12h (default: once)."),
    rounds: int = typer.Option(None, "--rounds", help="With --every: stop after this many rounds."),
    runs_dir: Path = RUNS_DIR,
    home: Path = HOME,
) -> None:
    """Train a challenger on new data and feedback; promote it only if it beats the champion by the margin."""
    from tailor.deploy.retrain import retrain as retrain_once
    from tailor.deploy.retrain import retrain_every
    from tailor.spec.base import parse_duration

    if every is None:
        decision = retrain_once(spec, runs_dir, home, err)
    else:
        try:
            seconds = parse_duration(every)
        except ValueError as e:
            raise TailorError(f"--every: {e}") from None
        decision = retrain_every(spec, runs_dir, home, seconds, rounds, err)[-1]
    out.print_json(json.dumps(decision))


@_command
def export(
    model: Path = typer.Argument(..., help="A run directory or a model folder."),
    fmt: str = typer.Option(..., "--format", "-f", help="hf, onnx, onnx-int8 or gguf."),
    out_dir: Path = typer.Option(None, "--out", help="Folder to write (default: RUN/export/FORMAT)."),
) -> None:
    """Export the model for other runtimes: HF folder (vLLM/TGI), ONNX (+int8), GGUF (llama.cpp)."""
    from tailor.deploy.export import run_export

    out.print_json(json.dumps(run_export(model, fmt, out_dir)))


@_command
def encrypt(
    paths: list[Path] = typer.Argument(None, help="Files or folders (a run, a model folder, a data folder)."),
    new_key: bool = typer.Option(False, "--new-key", help="Print a fresh key for TAILOR_DATA_KEY and stop."),
) -> None:
    """Encrypt weights, tokenizers and data at rest with TAILOR_DATA_KEY; they are decrypted only in memory."""
    from tailor.encryption import encrypt_tree
    from tailor.encryption import new_key as make_key

    if new_key:
        out.print(make_key(), markup=False, highlight=False)
        return
    if not paths:
        raise TailorError("give the files or folders to encrypt (or --new-key)")
    done = [p for path in paths for p in encrypt_tree(path)]
    out.print(f"encrypted {len(done)} file(s)")


def register(app: typer.Typer) -> None:
    """Add the deployment commands to the `tailor` app."""
    for fn in _COMMANDS:
        app.command()(fn)
    app.add_typer(keys_app, name="keys")
    app.add_typer(registry_app, name="registry")
