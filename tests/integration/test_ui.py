"""The web UI end to end: a real ``lictor agent -dev`` and Debian's headless Chromium driven by
Selenium. Each scenario does what a person would (search, click, type, save) and checks the result
through the HTTP API, so a page that only looks right does not pass.

Screenshots of the main pages are written to ``tests/artifacts/ui/`` (git-ignored) for people to
look at.
"""

from __future__ import annotations

import base64
import http.client
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.browser import chromium, require_chromium
from tests.integration.conftest import AgentProcess

pytestmark = pytest.mark.integration

SHOTS = Path(__file__).resolve().parents[1] / "artifacts" / "ui"
WAIT = 10.0

MGMT = "7d1f8b3c-2222-4333-8444-a55556666777"
ACL_CONFIG = f'''
acl {{
  enabled = true
  default_policy = "deny"
  tokens {{ initial_management = "{MGMT}" }}
}}
'''


# ----- fixtures and helpers ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    a = AgentProcess(tmp_path_factory.mktemp("ui")).start()
    yield a
    a.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    require_chromium()
    with chromium(tmp_path_factory.mktemp("chromium")) as d:
        yield d


def shot(driver: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SHOTS / f"{name}.png"))


def until(driver: Any, cond: Any, what: str = "", timeout: float = WAIT) -> Any:
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException, TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:  # live views redraw: an element found a moment ago may be replaced, so conditions look again
        return WebDriverWait(driver, timeout, poll_frequency=0.05,
                             ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)).until(cond)
    except TimeoutException:
        notice = driver.execute_script("return document.getElementById('notice').textContent")
        raise AssertionError(f"timed out waiting for {what}; notice: {notice!r}; url: {driver.current_url}") from None


def css(driver: Any, selector: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, selector)


def all_css(driver: Any, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def attr(driver: Any, selector: str, name: str) -> Any:
    """An attribute (or "text") of the element matching ``selector`` right now (None if absent)."""
    return driver.execute_script(
        "const e = document.querySelector(arguments[0]); if (!e) return null;"
        "return arguments[1] === 'text' ? e.textContent : e.getAttribute(arguments[1]);", selector, name)


def visible(selector: str) -> Any:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    return ec.visibility_of_element_located((By.CSS_SELECTOR, selector))


def open_ui(driver: Any, a: AgentProcess, fragment: str) -> None:
    driver.get(f"{a.url}/ui/#{fragment}")
    driver.execute_script("window.__sameDocument = true")  # gone if the page reloads


def same_document(driver: Any) -> bool:
    return bool(driver.execute_script("return window.__sameDocument === true"))


def raw_get(a: AgentProcess, path: str) -> tuple[int, dict[str, str], bytes]:
    """One GET that does not follow redirects and sends the path exactly as given."""
    conn = http.client.HTTPConnection("127.0.0.1", a.http_port, timeout=5)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def kv_value(a: AgentProcess, key: str, token: str | None = None) -> str:
    rows = a.json("GET", f"/v1/kv/{key}", headers={"X-Consul-Token": token} if token else None)
    return base64.b64decode(rows[0]["Value"] or "").decode()


def register(a: AgentProcess, body: dict[str, Any], token: str | None = None) -> None:
    a.json("PUT", "/v1/agent/service/register", body, headers={"X-Consul-Token": token} if token else None)


def wait_catalog(a: AgentProcess, service: str, token: str | None = None) -> None:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:  # anti-entropy moves agent registrations into the catalog
        if a.json("GET", f"/v1/catalog/service/{service}", headers={"X-Consul-Token": token} if token else None):
            return
        time.sleep(0.05)
    raise AssertionError(f"{service} never reached the catalog")


# ----- serving ---------------------------------------------------------------------------------------------

def test_root_redirects_to_the_ui_and_assets_come_from_the_package(agent: AgentProcess) -> None:
    status, headers, _ = raw_get(agent, "/")
    assert (status, headers["location"]) == (301, "/ui/")
    status, headers, body = raw_get(agent, "/ui/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b'<base href="/ui/">' in body and b'src="app.js"' in body
    status, headers, body = raw_get(agent, "/ui/app.js")
    assert status == 200 and headers["content-type"].startswith("text/javascript") and b"import" in body
    status, _, body = raw_get(agent, "/ui/services/web")  # a deep link gets the page, its router the rest
    assert status == 200 and b"<base href" in body
    for escape in ("/ui/../setup.py", "/ui/%2e%2e/%2e%2e/setup.py", "/ui/..%2fapi.py", "/ui/..%2f..%2f..%2fsetup.py",
                   "/ui/assets/../api.py", "/ui/%2e%2e%2fapi.py", "/ui/../../../../etc/passwd", "/ui//etc/passwd"):
        status, _, body = raw_get(agent, escape)
        assert status == 404 or (status == 200 and b"<base href" in body), (escape, status, body[:80])
        assert b"setup(" not in body and b"root:" not in body and b"def summarize" not in body


def test_ui_config_content_path_dir_and_disabled(tmp_path: Path) -> None:
    started: list[AgentProcess] = []
    try:
        (tmp_path / "custom").mkdir()
        (tmp_path / "custom" / "index.html").write_text("<html><base href='{{CONTENT_PATH}}'>custom ui</html>")
        a = AgentProcess(tmp_path, "-hcl", 'ui_config { content_path = "dash" }')
        started.append(a.start())
        assert raw_get(a, "/")[1]["location"] == "/dash/"
        status, _, body = raw_get(a, "/dash/")
        assert status == 200 and b'<base href="/dash/">' in body
        assert raw_get(a, "/ui/")[0] == 404
        (tmp_path / "b").mkdir()
        b = AgentProcess(tmp_path / "b", "-hcl", f'ui_config {{ dir = "{tmp_path / "custom"}" }}')
        started.append(b.start())
        status, _, body = raw_get(b, "/ui/")
        assert status == 200 and body == b"<html><base href='/ui/'>custom ui</html>"
        assert raw_get(b, "/ui/app.js")[0] == 404  # the packaged files are not mixed in
        (tmp_path / "c").mkdir()
        c = AgentProcess(tmp_path / "c", "-hcl", "ui_config { enabled = false }")
        started.append(c.start())
        status, _, body = raw_get(c, "/")
        assert status == 200 and b"UI disabled" in body
        assert raw_get(c, "/ui/")[0] == 404
    finally:
        for p in started:
            p.stop()


# ----- the scenarios -----------------------------------------------------------------------------------------

def test_find_a_service_open_it_and_read_its_failing_check_live(agent: AgentProcess, browser: Any) -> None:
    register(agent, {"Name": "billing", "ID": "billing-1", "Port": 7001, "Tags": ["payments", "v2"],
                     "Check": {"CheckID": "billing-ttl", "Name": "billing heartbeat", "TTL": "60s",
                               "Status": "passing"}})
    for i in range(3):
        register(agent, {"Name": f"other-{i}", "Port": 7100 + i})
    agent.json("PUT", "/v1/agent/check/fail/billing-ttl?note=" + "disk%20full%20on%20%2Fvar%2Flib%2Fbilling")
    wait_catalog(agent, "billing")
    deadline = time.monotonic() + WAIT  # a status change reaches the catalog at once (output alone waits)
    while agent.json("GET", "/v1/health/checks/billing")[0]["Status"] != "critical":
        assert time.monotonic() < deadline
        time.sleep(0.05)

    open_ui(browser, agent, "/services")
    until(browser, visible('tr[data-service="billing"]'), "billing in the services list")
    assert attr(browser, 'tr[data-service="billing"]', "data-status") == "critical"
    shot(browser, "services")
    search = css(browser, "#svc-filter")
    search.send_keys("paym")  # by tag
    until(browser, lambda d: d.execute_script(
        "return [...document.querySelectorAll('tr[data-service]')].filter(r => !r.hidden).map(r => r.dataset.service)"
    ) == ["billing"], "the search to leave only billing")
    until(browser, visible('tr[data-service="billing"] a')).click()

    until(browser, visible('tr[data-instance="billing-1"] [data-check="billing-ttl"]'), "the instance's check")
    assert attr(browser, '[data-check="billing-ttl"]', "data-status") == "critical"
    assert "disk full on /var/lib/billing" in attr(browser, '[data-check="billing-ttl"] pre.output', "text")
    shot(browser, "service-instances")

    # live: the check passes through the API and the open page follows, without a reload
    agent.json("PUT", "/v1/agent/check/pass/billing-ttl?note=recovered")
    until(browser, lambda d: attr(d, '[data-check="billing-ttl"]', "data-status") == "passing",
          "the check to turn passing on the open page")
    assert "recovered" in attr(browser, '[data-check="billing-ttl"] pre.output', "text")
    assert same_document(browser), "the page reloaded"


def test_edit_a_kv_key_and_see_it_through_the_api_and_cas_stops_a_clobber(agent: AgentProcess, browser: Any) -> None:
    agent.json("PUT", "/v1/kv/uitest/app/config", b'{"debug": false}')
    open_ui(browser, agent, "/kv/uitest/")
    until(browser, visible('tr[data-key="uitest/app/"] a'), "the folder uitest/app/").click()
    until(browser, visible('tr[data-key="uitest/app/config"] a'), "the key in its folder").click()
    box = until(browser, visible("#kv-value"), "the editor")
    assert box.get_attribute("value") == '{"debug": false}'
    box.clear()
    box.send_keys('{"debug": true, "name": "héllo"}')
    css(browser, "#kv-save").click()
    until(browser, lambda d: "Saved" in css(d, "#notice").text, "the save to be confirmed")
    assert kv_value(agent, "uitest/app/config") == '{"debug": true, "name": "héllo"}'
    shot(browser, "kv-editor")

    # a second editor changes the key behind this one's back: this editor's save must not clobber it
    agent.json("PUT", "/v1/kv/uitest/app/config", b"changed elsewhere")
    box = css(browser, "#kv-value")
    box.clear()
    box.send_keys("stale edit")
    css(browser, "#kv-save").click()
    until(browser, lambda d: "Not saved" in css(d, "#notice").text, "the CAS failure message")
    assert "changed by someone else" in css(browser, "#notice").text
    assert kv_value(agent, "uitest/app/config") == "changed elsewhere"
    assert css(browser, "#kv-value").get_attribute("value") == "stale edit"  # the user's text is kept
    shot(browser, "kv-cas-conflict")

    # create a key through the form, then delete it from the folder view
    open_ui(browser, agent, "/kv/uitest/")
    until(browser, visible("#kv-new"), "the create button").click()
    css(browser, "#kv-name").send_keys("fresh")
    css(browser, "#kv-value").send_keys("new value")
    css(browser, "#kv-save").click()
    until(browser, lambda d: d.current_url.endswith("#/kv/uitest/fresh"), "the new key's page")
    assert kv_value(agent, "uitest/fresh") == "new value"
    # a folder: a key ending in "/", created through the same form, then opened
    open_ui(browser, agent, "/kv/uitest/")
    until(browser, visible("#kv-new"), "the create button").click()
    css(browser, "#kv-name").send_keys("drafts/")
    css(browser, "#kv-save").click()
    until(browser, lambda d: d.current_url.endswith("#/kv/uitest/drafts/"), "the new folder's page")
    assert agent.request("GET", "/v1/kv/uitest/drafts/")[0] == 200
    until(browser, lambda d: "No keys under uitest/drafts/" in (attr(d, "#kv-list", "text") or ""), "the empty folder")

    # a delete is a CAS too: a change between asking and confirming stops it
    open_ui(browser, agent, "/kv/uitest/")
    btn = until(browser, visible('button[data-delete="uitest/fresh"]'), "the delete button")
    btn.click()
    until(browser, lambda d: attr(d, 'button[data-delete="uitest/fresh"]', "text") == "Confirm delete", "armed")
    agent.json("PUT", "/v1/kv/uitest/fresh", b"edited meanwhile")
    time.sleep(0.3)  # the list's blocking query has seen the write
    btn.click()
    until(browser, lambda d: "Not deleted" in css(d, "#notice").text, "the refused delete")
    assert kv_value(agent, "uitest/fresh") == "edited meanwhile"
    open_ui(browser, agent, "/kv/uitest/")
    btn = until(browser, visible('button[data-delete="uitest/fresh"]'), "the delete button")
    btn.click()
    until(browser, lambda d: attr(d, 'button[data-delete="uitest/fresh"]', "text") == "Confirm delete", "armed")
    btn.click()  # confirm
    until(browser, lambda d: not all_css(d, 'tr[data-key="uitest/fresh"]'), "the key to leave the list")
    assert agent.request("GET", "/v1/kv/uitest/fresh")[0] == 404


def test_a_deny_intention_turns_the_topology_edge_red(agent: AgentProcess, browser: Any) -> None:
    register(agent, {"Name": "shop", "Port": 8100, "Connect": {"SidecarService": {"Proxy": {
        "Upstreams": [{"DestinationName": "ledger", "LocalBindPort": 9101}]}}}})
    register(agent, {"Name": "ledger", "Port": 8200, "Connect": {"SidecarService": {}}})
    register(agent, {"Name": "storefront", "Port": 8300, "Connect": {"SidecarService": {"Proxy": {
        "Upstreams": [{"DestinationName": "shop", "LocalBindPort": 9102}]}}}})
    for s in ("shop", "ledger", "storefront"):
        wait_catalog(agent, s)

    open_ui(browser, agent, "/services/shop/topology")
    edge = '#topology .edge[data-from="shop"][data-to="ledger"]'
    until(browser, visible(edge + " path"), "the shop -> ledger edge")
    assert attr(browser, edge, "data-decision") == "allow"  # dev agent: default allow
    assert attr(browser, '#topology .edge[data-from="storefront"][data-to="shop"]', "data-decision") == "allow"

    # create the deny intention through the form
    open_ui(browser, agent, "/intentions/new")
    until(browser, visible("#ix-source"), "the intention form").send_keys("shop")
    css(browser, "#ix-destination").send_keys("ledger")
    from selenium.webdriver.support.ui import Select
    Select(css(browser, "#ix-action")).select_by_value("deny")
    css(browser, "#ix-description").send_keys("ledger is read by billing only")
    css(browser, "#ix-save").click()
    until(browser, visible('#intentions tr[data-source="shop"][data-destination="ledger"]'), "the new intention")
    ix = agent.json("GET", "/v1/connect/intentions/exact?source=shop&destination=ledger")
    assert ix["Action"] == "deny" and ix["Description"] == "ledger is read by billing only"

    open_ui(browser, agent, "/services/shop/topology")
    until(browser, lambda d: attr(d, edge, "data-decision") == "deny", "the edge to turn deny")
    stroke = browser.execute_script(
        "return getComputedStyle(document.querySelector(arguments[0])).stroke", edge + " path")
    assert stroke == "rgb(211, 47, 47)", stroke  # drawn red
    shot(browser, "topology-deny")

    # live: allowing it again through the API turns the open graph green without a reload
    agent.json("PUT", "/v1/connect/intentions/exact?source=shop&destination=ledger", {"Action": "allow"})
    until(browser, lambda d: attr(d, edge, "data-decision") == "allow", "the edge to turn allow")
    assert browser.execute_script("return getComputedStyle(document.querySelector(arguments[0])).stroke",
                                  edge + " path") == "rgb(46, 155, 79)"
    assert same_document(browser)


def test_intentions_are_listed_in_precedence_order_and_edited_and_deleted(agent: AgentProcess, browser: Any) -> None:
    agent.json("PUT", "/v1/connect/intentions/exact?source=*&destination=vault", {"Action": "deny"})
    agent.json("PUT", "/v1/connect/intentions/exact?source=auditor&destination=vault", {"Action": "allow"})
    agent.json("PUT", "/v1/connect/intentions/exact?source=*&destination=*", {"Action": "allow"})
    open_ui(browser, agent, "/intentions")
    until(browser, visible('#intentions tr[data-source="auditor"]'), "the intentions list")
    rows = [tuple(r) for r in browser.execute_script(
        "return [...document.querySelectorAll('#intentions tbody tr')].map(r => [r.dataset.source, r.dataset.destination])")]
    order = [p for p in rows if p in {("auditor", "vault"), ("*", "vault"), ("*", "*")}]
    assert order == [("auditor", "vault"), ("*", "vault"), ("*", "*")]  # exact, then wildcard source, then both
    shot(browser, "intentions")

    until(browser, visible('#intentions tr[data-source="auditor"] a')).click()
    until(browser, lambda d: css(d, "#ix-source").get_attribute("value") == "auditor", "the edit form")
    from selenium.webdriver.support.ui import Select
    Select(css(browser, "#ix-action")).select_by_value("deny")
    css(browser, "#ix-save").click()
    until(browser, visible('#intentions tr[data-source="auditor"]'), "back to the list")
    assert agent.json("GET", "/v1/connect/intentions/exact?source=auditor&destination=vault")["Action"] == "deny"

    until(browser, visible('#intentions tr[data-source="auditor"] a')).click()
    btn = until(browser, visible("#ix-delete"), "the delete button")
    btn.click()
    btn.click()
    until(browser, lambda d: not all_css(d, '#intentions tr[data-source="auditor"]'), "the intention to go")
    assert agent.request("GET", "/v1/connect/intentions/exact?source=auditor&destination=vault")[0] == 404
    agent.request("DELETE", "/v1/connect/intentions/exact?source=*&destination=*")


def test_nodes_and_config_entries_pages(agent: AgentProcess, browser: Any) -> None:
    agent.json("PUT", "/v1/config", {"Kind": "service-defaults", "Name": "billing", "Protocol": "http"})
    open_ui(browser, agent, "/nodes")
    until(browser, lambda d: "billing" in (attr(d, 'tr[data-node="lictor-test"]', "text") or ""), "the agent's node")
    shot(browser, "nodes")
    open_ui(browser, agent, "/config")
    until(browser, visible('[data-entry="service-defaults/billing"]'), "the service-defaults entry").click()
    assert '"Protocol": "http"' in css(browser, '[data-entry="service-defaults/billing"] pre').text
    shot(browser, "config-entries")


def test_login_with_a_token_under_default_deny_shows_only_what_it_may_read(tmp_path: Path, browser: Any) -> None:
    (tmp_path / "acl.hcl").write_text(ACL_CONFIG)
    a = AgentProcess(tmp_path, "-config-file", str(tmp_path / "acl.hcl")).start()
    try:
        mg = {"X-Consul-Token": MGMT}
        deadline = time.monotonic() + WAIT
        while a.request("GET", "/v1/acl/token/self", headers=mg)[0] != 200:
            assert time.monotonic() < deadline, "the management token never appeared"
            time.sleep(0.05)
        agent_pol = a.json("PUT", "/v1/acl/policy", {"Name": "agent", "Rules": 'node_prefix "" { policy = "write" }'
                                                     ' service_prefix "" { policy = "write" }'}, headers=mg)
        agent_tok = a.json("PUT", "/v1/acl/token", {"Policies": [{"ID": agent_pol["ID"]}]}, headers=mg)
        a.json("PUT", "/v1/agent/token/agent", {"Token": agent_tok["SecretID"]}, headers=mg)
        register(a, {"Name": "public-api", "Port": 9001}, token=MGMT)
        register(a, {"Name": "secret-vault", "Port": 9002}, token=MGMT)
        a.json("PUT", "/v1/kv/team/readme", b"team notes", headers=mg)
        a.json("PUT", "/v1/kv/root-only", b"nope", headers=mg)
        for s in ("public-api", "secret-vault"):
            wait_catalog(a, s, token=MGMT)
        pol = a.json("PUT", "/v1/acl/policy", {"Name": "ui-reader", "Rules":
                     'service "public-api" { policy = "read" }\nnode_prefix "" { policy = "read" }\n'
                     'key_prefix "team/" { policy = "write" }'}, headers=mg)
        tok = a.json("PUT", "/v1/acl/token", {"Description": "ui reader", "Policies": [{"ID": pol["ID"]}]}, headers=mg)

        open_ui(browser, a, "/services")
        browser.execute_script("localStorage.clear()")
        browser.refresh()
        until(browser, lambda d: d.execute_script("return document.body.dataset.rendered") == "services",
              "the anonymous services page")
        assert not all_css(browser, "tr[data-service]")  # anonymous: default deny shows nothing
        until(browser, visible("#svc-filtered"), "the hint that ACLs hid services")

        open_ui(browser, a, "/acl")
        until(browser, visible("#acl-secret"), "the login form").send_keys("not-a-token")
        css(browser, "#acl-login").click()
        until(browser, lambda d: "Log in failed" in css(d, "#notice").text, "a refused login")
        assert browser.execute_script("return localStorage.getItem('lictor.token')") is None
        css(browser, "#acl-secret").clear()
        css(browser, "#acl-secret").send_keys(tok["SecretID"])
        css(browser, "#acl-login").click()
        until(browser, lambda d: "ui reader" in css(d, "#acl-current").text, "the logged-in token")
        assert browser.execute_script("return localStorage.getItem('lictor.token')") == tok["SecretID"]
        shot(browser, "acl-login")

        open_ui(browser, a, "/services")
        until(browser, visible('tr[data-service="public-api"]'), "the readable service")
        assert not all_css(browser, 'tr[data-service="secret-vault"]')
        assert css(browser, "#svc-filtered").is_displayed()
        shot(browser, "services-as-limited-token")
        open_ui(browser, a, "/kv/")
        until(browser, visible('tr[data-key="team/"]'), "the readable folder")
        assert not all_css(browser, 'tr[data-key="root-only"]')
        open_ui(browser, a, "/services/secret-vault")
        until(browser, lambda d: "Permission denied" in css(d, "#notice").text, "a denial on the hidden service")
        browser.execute_script("localStorage.clear()")
    finally:
        a.stop()


def test_a_client_agent_serves_the_ui_from_the_servers_data(tmp_path: Path, browser: Any) -> None:
    """On a client agent (no server inside) the UI's views travel as Internal.* RPCs to a server."""
    from tests.integration.meshproc import Mesh

    m = Mesh(tmp_path, servers=1, clients=1, distinct_hosts=False, extra=("-ui",))
    try:
        m.start(timeout=60)
        c = m.clients[0]
        c.json("PUT", "/v1/agent/service/register", {"Name": "front", "Port": 8080, "Connect": {"SidecarService": {
            "Proxy": {"Upstreams": [{"DestinationName": "back", "LocalBindPort": 9000}]}}}})
        c.json("PUT", "/v1/agent/service/register", {"Name": "back", "Port": 8081})
        m.wait(lambda: {"front", "back"} <= {s["Name"] for s in c.json("GET", "/v1/internal/ui/services")}, 20,
               "the client's services in the UI summary")
        topo = c.json("GET", "/v1/internal/ui/service-topology/front?kind=")
        assert [u["Name"] for u in topo["Upstreams"]] == ["back"] and topo["Upstreams"][0]["Intention"]["Allowed"]
        assert {n["Node"] for n in c.json("GET", "/v1/internal/ui/nodes")} == {"s1", "c1"}
        browser.get(f"{c.url}/ui/#/services/front/topology")
        until(browser, visible('#topology .edge[data-from="front"][data-to="back"]'), "the topology on the client")
    finally:
        m.stop()
