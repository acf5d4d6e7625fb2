"""Reading the shipped deployment files (deploy/) the way their tools would, for the tests that
validate them and the tests that run them: systemd units, the example configs' <PLACEHOLDER>s,
the kustomization's resource list, and Kubernetes container args with the downward API filled in.

Nothing here changes what the files say: a test substitutes paths and per-host values only, the
same edits the README tells an operator to make.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
#: where the unit and the Nomad jobs expect the install (README: "Install Lictor into /opt/lictor/venv")
INSTALLED_LICTOR = "/opt/lictor/venv/bin/lictor"
PLACEHOLDER_RE = re.compile(r"<([A-Z][A-Z0-9_]*)>")

__all__ = ["DEPLOY", "INSTALLED_LICTOR", "container_args", "exec_start_argv", "fill_placeholders",
           "kustomize_documents", "read_unit"]


def read_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """systemd's unit syntax as far as our units use it: sections, ``Key=value`` lines (a key may
    repeat; an empty value resets the list, as systemd does), comments, no line continuations."""
    out: dict[str, dict[str, list[str]]] = {}
    section: dict[str, list[str]] | None = None
    for n, line in enumerate(path.read_text().splitlines(), 1):
        s = line.strip()
        if not s or s[0] in "#;":
            continue
        if s.startswith("[") and s.endswith("]"):
            section = out.setdefault(s[1:-1], {})
            continue
        assert section is not None and "=" in s, f"{path}:{n}: not a Key=value line: {s!r}"
        assert not s.endswith("\\"), f"{path}:{n}: line continuations are not used in our units"
        key, value = (x.strip() for x in s.split("=", 1))
        section[key] = [] if value == "" else [*section.get(key, []), value]
    return out


def exec_start_argv(unit: Path, lictor: Path | str, *, config_dir: Path | None = None) -> list[str]:
    """The unit's ExecStart as an argv, with the install path (and the config dir) substituted."""
    [line] = read_unit(unit)["Service"]["ExecStart"]
    argv = shlex.split(line)
    assert argv[0] == INSTALLED_LICTOR, argv
    argv[0] = str(lictor)
    if config_dir is not None:
        argv = [a.replace("/etc/lictor.d", str(config_dir)) for a in argv]
    return argv


def fill_placeholders(text: str, values: dict[str, str]) -> str:
    """Replace each ``<NAME>`` by ``values[NAME]``; every placeholder in ``text`` must be given."""
    missing = sorted(set(PLACEHOLDER_RE.findall(text)) - set(values))
    assert not missing, f"no test value for placeholders {missing}"
    return PLACEHOLDER_RE.sub(lambda m: values[m.group(1)], text)


def kustomize_documents(directory: Path | None = None) -> list[dict[str, Any]]:
    """What ``kubectl kustomize`` renders for a kustomization that only lists ``resources`` (and
    optionally sets ``namespace``): every document of every listed file, in order."""
    directory = directory or DEPLOY / "k8s"
    kz = yaml.safe_load((directory / "kustomization.yaml").read_text())
    assert kz["apiVersion"] == "kustomize.config.k8s.io/v1beta1" and kz["kind"] == "Kustomization"
    unsupported = set(kz) - {"apiVersion", "kind", "resources", "namespace", "labels"}
    assert not unsupported, f"the test's renderer does not implement {unsupported}"
    docs: list[dict[str, Any]] = []
    for res in kz["resources"]:
        for doc in yaml.safe_load_all((directory / res).read_text()):
            if doc is None:
                continue
            if "namespace" in kz and doc["kind"] not in ("Namespace", "ClusterRole", "ClusterRoleBinding",
                                                         "MutatingWebhookConfiguration"):
                doc.setdefault("metadata", {})["namespace"] = kz["namespace"]
            docs.append(doc)
    return docs


def container_args(container: dict[str, Any], values: dict[str, str]) -> list[str]:
    """A container's args with ``$(VAR)`` expanded as the kubelet does, from the container's env:
    a ``value`` directly, a downward-API ``fieldRef`` from ``values[fieldPath]``. A reference to
    an undefined variable stays as written (kubelet's rule) and fails the assertion below."""
    env: dict[str, str] = {}
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = e["value"]
        elif "fieldRef" in e.get("valueFrom", {}):
            env[e["name"]] = values[e["valueFrom"]["fieldRef"]["fieldPath"]]
        elif "secretKeyRef" in e.get("valueFrom", {}):
            ref = e["valueFrom"]["secretKeyRef"]
            env[e["name"]] = values[f"secret:{ref['name']}/{ref['key']}"]

    def expand(arg: str) -> str:
        out = re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), arg)
        assert "$(" not in out, f"unresolved variable in {arg!r}"
        return out

    return [expand(a) for a in container.get("args", [])]
