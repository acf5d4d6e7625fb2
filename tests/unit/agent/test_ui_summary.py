"""The UI's service summaries (lictor.agent.ui.api.summarize) and the packaged assets."""

from __future__ import annotations

import re
from pathlib import Path

from lictor.agent.ui.api import summarize
from lictor.agent.ui.static import ASSETS


def row(node: str, sid: str, name: str, checks: list[tuple[str, str]], **svc: object) -> dict:
    return {"Node": {"Node": node, "Datacenter": "dc1"}, "Service": {"ID": sid, "Service": name, **svc},
            "Checks": [{"Node": node, "CheckID": cid, "Status": st} for cid, st in checks]}


def test_counts_each_check_once_and_proxy_checks_count_for_their_service() -> None:
    serf = ("serfHealth", "passing")
    rows = [row("n1", "web-1", "web", [serf, ("web-1-chk", "warning")], Tags=["b", "a"]),
            row("n1", "web-2", "web", [serf, ("web-2-chk", "passing")], Tags=["a"]),
            row("n2", "web-3", "web", [("serfHealth", "critical")], Meta={"external-source": "k8s"}),
            row("n1", "web-1-proxy", "web-sidecar-proxy", [serf, ("proxy-chk", "critical")], Kind="connect-proxy",
                Proxy={"DestinationServiceName": "web", "Mode": "transparent"})]
    s, has_proxy = summarize(rows)
    web = s["web"]
    assert has_proxy == {"web"}
    assert web["InstanceCount"] == 3 and web["Nodes"] == ["n1", "n2"] and web["Tags"] == ["a", "b"]
    # n1's serfHealth counted once though three rows carry it; the proxy's critical check counts for web
    assert (web["ChecksPassing"], web["ChecksWarning"], web["ChecksCritical"]) == (2, 1, 2)
    assert web["ExternalSources"] == ["k8s"] and web["TransparentProxy"] is True
    assert s["web-sidecar-proxy"]["Kind"] == "connect-proxy"


def test_assets_are_local_and_match_the_wheel_globs() -> None:
    files = sorted(p.name for p in ASSETS.iterdir())
    assert "index.html" in files and "app.js" in files
    setup = (Path(__file__).resolve().parents[3] / "setup.py").read_text()
    globs = re.findall(r'"assets/\*(\.\w+)"', setup)
    for name in files:  # every asset is shipped in the wheel by setup.py's package_data
        assert Path(name).suffix in globs, name
    for p in ASSETS.iterdir():  # no CDN, no network at runtime: nothing loads from another origin
        text = p.read_text()
        assert not re.search(r"""(src|href)=["'](https?:)?//""", text), p.name
        assert not re.search(r"""(import|from)\s*\(?\s*["'](https?:)?//""", text), p.name
        assert "fetch('http" not in text and 'fetch("http' not in text, p.name
