"""Keys on every route, hashed storage, TLS, CORS, checksums and pickle refusal."""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import sqlite3

import httpx
import pytest
from typer.testing import CliRunner

from tailor.cli import app as cli
from tailor.deploy.auth import KeyStore
from tailor.deploy.server import OPEN_ROUTES, create_app
from tailor.errors import TailorError

from .conftest import cli_server, running

BODIES = {"/v1/completions": {"prompt": "x", "max_tokens": 1}, "/v1/feedback": {"request_id": "r", "rating": 1},
          "/v1/chat/completions": {"messages": [{"role": "user", "content": "x"}], "max_tokens": 1},
          "/v1/classify": {"input": "x"}}
SERVED = {"/v1/classify": 400,  # a language model is served here: the label route explains it does not apply
          "/v1/feedback": 404}  # "r" is no answer this server gave


def test_every_route_but_health_and_ready_needs_a_key(served_chatty, keys):
    routes = sorted((path, m.upper()) for path, ops in served_chatty.app.openapi()["paths"].items() for m in ops)
    assert {("/metrics", "GET"), ("/v1/completions", "POST"), ("/v1/models", "GET")} <= set(routes)
    infer = {"Authorization": f"Bearer {keys['infer']}"}
    for path, method in routes:
        url, body = f"{served_chatty.url}{path}", BODIES.get(path)
        if path in OPEN_ROUTES:
            assert httpx.request(method, url).status_code == 200
            continue
        assert httpx.request(method, url, json=body).status_code == 401, path
        for bad in ("Bearer tlr_abc_wrong", keys["infer"], "Bearer " + keys["infer"][:-2]):
            assert httpx.request(method, url, json=body, headers={"Authorization": bad}).status_code == 401, path
        code = httpx.request(method, url, json=body, headers=infer).status_code
        assert code == (403 if path == "/metrics" else SERVED.get(path, 200)), (path, code)
        admin = httpx.request(method, url, json=body, headers={"Authorization": f"Bearer {keys['admin']}"})
        assert admin.status_code == SERVED.get(path, 200), path


def test_keys_are_stored_hashed_and_revocation_is_immediate(served_chatty, home):
    runner = CliRunner()
    res = runner.invoke(cli, ["keys", "create", "temp", "--scope", "infer", "--home", str(home)])
    assert res.exit_code == 0, res.output
    key = res.stdout.strip().splitlines()[-1]
    assert key.startswith("tlr_")
    dump = "\n".join(sqlite3.connect(home / "keys.db").iterdump())
    assert key not in dump and key.split("_", 2)[2] not in dump  # only the hash is kept
    listed = runner.invoke(cli, ["keys", "list", "--home", str(home)])
    assert "temp" in listed.stdout and key not in listed.stdout
    url = f"{served_chatty.url}/v1/models"
    assert httpx.get(url, headers={"Authorization": f"Bearer {key}"}).status_code == 200
    assert runner.invoke(cli, ["keys", "revoke", "temp", "--home", str(home)]).exit_code == 0
    assert httpx.get(url, headers={"Authorization": f"Bearer {key}"}).status_code == 401
    bad = runner.invoke(cli, ["keys", "create", "x", "--scope", "root", "--home", str(home)])
    assert bad.exit_code != 0 and "infer, admin" in str(bad.exception)


def _certificate(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_tls_serves_https_only_and_logs_neither_prompts_nor_keys(chatty_model, home, keys, tmp_path):
    import ssl

    cert, key = _certificate(tmp_path)
    context = ssl.create_default_context(cafile=str(cert))
    secret_prompt = "my account number is 99887766"
    with cli_server([str(chatty_model), "--tls-cert", str(cert), "--tls-key", str(key), "--home", str(home)],
                    "https", context) as (url, proc):
        res = httpx.post(f"{url}/v1/completions", verify=context, headers={"Authorization": f"Bearer {keys['infer']}"},
                         json={"prompt": secret_prompt, "max_tokens": 2})
        assert res.status_code == 200 and res.json()["object"] == "text_completion"
        with pytest.raises(httpx.TransportError):
            httpx.get(url.replace("https", "http") + "/health")
        with pytest.raises(httpx.ConnectError):  # a client that does not trust the certificate
            httpx.get(f"{url}/health")
        proc.terminate()
        log = proc.communicate(timeout=10)[0].decode()
    assert "POST /v1/completions" in log  # the access log is on
    assert secret_prompt not in log and keys["infer"] not in log


def test_cors_is_off_unless_configured(chatty_model, tmp_path, served_chatty):
    from tailor.spec.deploy import Serve

    origin = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    assert "access-control-allow-origin" not in httpx.options(f"{served_chatty.url}/v1/completions", headers=origin).headers
    with running(create_app(chatty_model, Serve(cors_origins=["https://app.example"]), home=tmp_path)) as url:
        res = httpx.options(f"{url}/v1/completions", headers=origin)
        assert res.headers["access-control-allow-origin"] == "https://app.example"


def test_a_tampered_model_folder_is_refused(chatty_model, tmp_path):
    from tailor.deploy.host import ModelHost

    for change in ("weights", "tokenizer", "extra", "manifest-gone"):
        folder = tmp_path / change
        shutil.copytree(chatty_model, folder)
        if change == "weights":
            data = bytearray((folder / "model.safetensors").read_bytes())
            data[-1] ^= 1
            (folder / "model.safetensors").write_bytes(bytes(data))
        elif change == "tokenizer":
            (folder / "tokenizer.json").write_text((folder / "tokenizer.json").read_text().replace("item", "itex", 1))
        elif change == "extra":
            (folder / "model-00002.safetensors").write_bytes(b"x")
        else:
            (folder / "manifest.json").unlink()
        with pytest.raises(TailorError, match="manifest|not in the manifest|checksum differs"):
            ModelHost(str(folder))
    ModelHost(str(chatty_model)).stop()  # the untouched folder loads


def test_pickled_weights_are_refused_never_loaded(chatty_model, tmp_path):
    import pickle

    from tailor.inference.backends import load_backend

    folder = tmp_path / "pickled"
    shutil.copytree(chatty_model, folder)
    (folder / "model.safetensors").unlink()

    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('unpickled!')",))

    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(Boom()))
    with pytest.raises(TailorError, match="pickle"):
        load_backend(folder)


def test_keystore_rejects_malformed_keys(tmp_path):
    store = KeyStore(tmp_path / "k.db")
    info, key = store.create("a", ["infer"])
    assert store.check(key).id == info.id
    for bad in ("", "tlr_", "tlr__", key + "x", key.replace("tlr_", "tlx_"), "tlr_" + info.id + "_"):
        assert store.check(bad) is None


def test_encrypted_model_and_data_are_served_and_read_from_memory_only(finished_run, tmp_path, monkeypatch):
    from tailor.splits import load_split
    from tailor.deploy.host import ModelHost
    from tailor.inference import Generator

    _, run_dir = finished_run
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    expected = Generator(run).complete("what colour is item 5", 4)
    train = load_split(run / "data", "train")
    runner = CliRunner()
    key = runner.invoke(cli, ["encrypt", "--new-key"]).stdout.strip()
    monkeypatch.setenv("TAILOR_DATA_KEY", key)
    assert runner.invoke(cli, ["encrypt", str(run / "train" / "model"), str(run / "data")]).exit_code == 0
    model_dir = run / "train" / "model"
    assert not (model_dir / "model.safetensors").exists() and (model_dir / "model.safetensors.enc").is_file()
    assert b"colour" not in (model_dir / "tokenizer.json.enc").read_bytes()
    assert not (run / "data" / "train.parquet").exists() and load_split(run / "data", "train") == train
    host = ModelHost(str(run))  # the manifest now lists the encrypted files; it still verifies
    assert host.engine.backend.format.decode(host.engine.backend.format.encode_prompt("x")) == "x"
    host.stop()
    assert Generator(run).complete("what colour is item 5", 4).text == expected.text
    monkeypatch.setenv("TAILOR_DATA_KEY", runner.invoke(cli, ["encrypt", "--new-key"]).stdout.strip())
    with pytest.raises(TailorError, match="wrong TAILOR_DATA_KEY"):
        Generator(run)
    monkeypatch.delenv("TAILOR_DATA_KEY")
    with pytest.raises(TailorError, match="TAILOR_DATA_KEY is not set"):
        load_split(run / "data", "train")
