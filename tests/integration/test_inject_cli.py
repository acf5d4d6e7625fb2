"""``lictor connect inject`` as users run it: offline on a manifest file (``-f``, ``-f -``), and
as the HTTPS admission webhook answering real AdmissionReview requests over TLS."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import jsonpatch
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kubernetes_validate import validate

from tests.integration.conftest import free_port
from tests.unit.agent.test_inject import TESTDATA, WORKLOADS

pytestmark = pytest.mark.integration

LICTOR = [sys.executable, "-m", "lictor.cli.main"]


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LICTOR, *args], input=stdin, capture_output=True, text=True, timeout=60)


def test_offline_file_and_stdin(tmp_path: Path) -> None:
    f = tmp_path / "app.yaml"
    f.write_text(WORKLOADS)
    res = run("connect", "inject", "-f", str(f), "-sidecar-image=registry.example/lictor:1")
    assert res.returncode == 0, res.stderr
    docs = list(yaml.safe_load_all(res.stdout))
    assert len(docs) == 7
    for d in docs:
        validate(d, "1.37", strict=True)
    dep = docs[0]["spec"]["template"]["spec"]
    assert dep["containers"][1]["image"] == "registry.example/lictor:1"
    assert "document 1 (Deployment web): injected sidecar for service 'web'" in res.stderr
    assert "document 7 (Service web): not a workload, unchanged" in res.stderr
    piped = run("connect", "inject", "-f", "-", "-sidecar-image=registry.example/lictor:1", stdin=WORKLOADS)
    assert piped.returncode == 0 and piped.stdout == res.stdout
    # the output fed back in is unchanged: idempotent
    again = run("connect", "inject", "-f", "-", "-sidecar-image=registry.example/lictor:1", stdin=res.stdout)
    assert list(yaml.safe_load_all(again.stdout)) == docs


@pytest.mark.parametrize("text, says", [
    (WORKLOADS.replace("ports: [{containerPort: 7000}]", "ports: []"),
     "document 5 (Pod debug): the pod has no container port"),
    ("a: [unclosed", "is not valid YAML"),
    ("- just\n- a list\n", "document 1: expected a Kubernetes object"),
])
def test_offline_bad_input_prints_nothing_and_names_the_problem(tmp_path: Path, text: str, says: str) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    res = run("connect", "inject", "-f", str(f))
    assert res.returncode == 1 and res.stdout == ""
    assert says in res.stderr, res.stderr


def test_missing_file_and_missing_tls_flags(tmp_path: Path) -> None:
    res = run("connect", "inject", "-f", str(tmp_path / "nope.yaml"))
    assert res.returncode == 1 and "Cannot read" in res.stderr and "No such file" in res.stderr
    res = run("connect", "inject")
    assert res.returncode == 1 and "-tls-cert-file and -tls-key-file" in res.stderr
    res = run("connect", "inject", "-proxy-port=0", "-f", "-", stdin="")
    assert res.returncode == 1 and "-proxy-port: 0 is not a port" in res.stderr


# ---------------------------------------------------------------------------------------------
# the webhook over HTTPS


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lictor-injector.lictor.svc")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("lictor-injector.lictor.svc"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    c, k = tmp / "cert.pem", tmp / "key.pem"
    c.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    k.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    return c, k


def _post(url: str, body: bytes, ctx: ssl.SSLContext) -> tuple[int, Any]:
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=20, context=ctx) as r:
        return r.status, json.loads(r.read())


def test_webhook_over_https(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    port = free_port()
    log = open(tmp_path / "injector.log", "wb")
    proc = subprocess.Popen([*LICTOR, "connect", "inject", f"-listen=127.0.0.1:{port}", f"-tls-cert-file={cert}",
                             f"-tls-key-file={key}"], stdout=log, stderr=subprocess.STDOUT)
    ctx = ssl.create_default_context(cafile=str(cert))
    base = f"https://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(base + "/healthz", timeout=2, context=ctx) as r:
                    assert r.read() == b"ok\n"
                break
            except (OSError, urllib.error.URLError):
                assert proc.poll() is None, (tmp_path / "injector.log").read_text()
                assert time.monotonic() < deadline, "injector did not come up"
                time.sleep(0.1)
        doc = json.loads((TESTDATA / "admissionreview-pod.json").read_text())
        status, out = _post(base + "/mutate", json.dumps(doc).encode(), ctx)
        assert status == 200 and out["response"]["uid"] == doc["request"]["uid"]
        pod = jsonpatch.apply_patch(doc["request"]["object"], json.loads(base64.b64decode(out["response"]["patch"])))
        assert [c["name"] for c in pod["spec"]["containers"]] == ["web", "lictor-sidecar-proxy"]
        # unannotated: only the namespace-enabled path injects
        del doc["request"]["object"]["metadata"]["annotations"]["lictor.io/connect-inject"]
        _, out = _post(base + "/mutate", json.dumps(doc).encode(), ctx)
        assert "patch" not in out["response"] and out["response"]["allowed"]
        _, out = _post(base + "/mutate/namespace-enabled", json.dumps(doc).encode(), ctx)
        assert out["response"]["patchType"] == "JSONPatch"
        # garbage and an oversized body: answered, allowed, explained; the server stays up
        status, out = _post(base + "/mutate", b"\x00garbage", ctx)
        assert status == 200 and out["response"]["allowed"] and "not JSON" in out["response"]["status"]["message"]
        status, out = _post(base + "/mutate", b"{" + b" " * (9 * 1024 * 1024) + b"}", ctx)
        assert status == 200 and "exceeds" in out["response"]["status"]["message"]
        with urllib.request.urlopen(base + "/healthz", timeout=2, context=ctx) as r:
            assert r.status == 200
        # plain HTTP is not served
        with pytest.raises((OSError, urllib.error.URLError)):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            assert proc.wait(15) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
