"""``lictor agent``: run an agent until SIGTERM/SIGINT; SIGHUP reloads services and checks."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from lictor.agent.agent import Agent
from lictor.agent.monitor import LogBroadcaster
from lictor.agent.readiness import notify_until_stopped, serving_status
from lictor.common.config import ConfigSource, LoadResult
from lictor.common.errors import LictorError
from lictor.common.logging import configure_logging
from lictor.common.sdnotify import Notifier
from lictor.server.raft.logstore import StorageError

__all__ = ["run_agent"]

log = logging.getLogger("lictor.agent")


def run_agent(source: ConfigSource, first: LoadResult) -> int:
    """Run the agent in this process; returns the exit code."""
    try:
        import uvloop
        uvloop.install()
    except ImportError:  # pragma: no cover - not on Windows (see pyproject.toml)
        pass
    broadcaster = LogBroadcaster()
    cfg = first.config
    configure_logging(cfg.log_level, json_format=cfg.log_json, extra_handlers=[broadcaster])
    try:
        return asyncio.run(_main(source, first, broadcaster))
    except KeyboardInterrupt:
        return 1


async def _main(source: ConfigSource, first: LoadResult, broadcaster: LogBroadcaster) -> int:
    try:
        agent = Agent(first.config, source=source, broadcaster=broadcaster)
    except (OSError, LictorError, StorageError) as exc:
        # e.g. a Raft log corrupt in the middle: refuse to start, naming the file
        print(f"==> Error starting agent: {exc}", file=sys.stderr, flush=True)
        log.error("refusing to start: %s", exc)
        return 1
    # Signals are handled from before the start: the HTTP API answers while the rest is still
    # starting, and a SIGTERM then must shut down cleanly, not kill the process.
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signame: list[str] = []
    started = False
    notifier = Notifier()

    def on_stop(name: str) -> None:
        signame.append(name)
        stop.set()

    def on_hup() -> None:
        if started:  # a reload before the start has finished would race it
            loop.create_task(_reload(agent, notifier))

    loop.add_signal_handler(signal.SIGTERM, on_stop, "terminated")
    loop.add_signal_handler(signal.SIGINT, on_stop, "interrupt")
    loop.add_signal_handler(signal.SIGHUP, on_hup)
    try:
        await agent.start()
        started = True
    except (OSError, LictorError, StorageError) as exc:
        print(f"==> Error starting agent: {exc}", file=sys.stderr, flush=True)
        await agent.stop()
        return 1
    _tune_gc()
    cfg = first.config
    print("==> Lictor agent running!", file=sys.stderr)
    print(f"           Version: '{agent.version}'\n           Node name: '{cfg.node_name}'\n"
          f"        Datacenter: '{cfg.datacenter}'\n            Server: {agent.server is not None} "
          f"(Bootstrap: {cfg.bootstrap or cfg.dev})\n       Client Addr: {list(cfg.client_addr)} "
          f"(HTTP: {cfg.ports.http}, DNS: {cfg.ports.dns})\n", file=sys.stderr, flush=True)
    # systemd Type=notify (deploy/systemd/lictor.service): READY=1 once serving (agent/readiness.py)
    notify_task = loop.create_task(notify_until_stopped(agent, notifier), name="sd-notify")
    waiter = loop.create_task(agent.shutdown_requested.wait())
    stopper = loop.create_task(stop.wait())
    await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    stopper.cancel()
    log.info("caught signal: %s; shutting down", signame[0] if signame else "leave")
    notify_task.cancel()
    notifier.stopping(f"shutting down ({signame[0] if signame else 'left the cluster'})")
    # Consul's rules: SIGTERM leaves gracefully if leave_on_terminate (clients' default), SIGINT
    # unless skip_leave_on_interrupt (servers' default); otherwise we look crashed to the others.
    if signame and ((signame[0] == "terminated" and cfg.leave_on_terminate)
                    or (signame[0] == "interrupt" and not cfg.skip_leave_on_interrupt)):
        await agent.leave()
    await agent.stop()
    return 0


#: gen0 threshold while running (CPython's default is 700). A Raft write allocates a few hundred
#: short-lived objects (HTTP request, command, entry, messages, futures); with the default the
#: young generation is collected every couple of writes and each pass walks the survivors.
GC_GEN0_THRESHOLD = 50_000


def _tune_gc() -> None:
    """After start-up: move everything allocated so far (modules, config, the restored state
    store) into the permanent generation, so later collections never walk it again, and raise
    the gen0 threshold. `LICTOR_GC=default` keeps CPython's settings (for measuring)."""
    import gc
    import os

    if os.environ.get("LICTOR_GC", "") == "default":
        return
    gc.collect()
    gc.freeze()
    _, g1, g2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, g1, g2)


async def _reload(agent: Agent, notifier: Notifier) -> None:
    # around a reload only once READY=1 was sent: before that systemd is still waiting for it
    was_serving = serving_status(agent)[0]
    if was_serving:
        notifier.reloading()
    try:
        warnings = await agent.reload()
        for w in warnings:
            log.warning("config: %s", w)
        outcome = "reloaded"
    except LictorError as exc:
        log.error("reload failed, keeping the running configuration: %s", exc)
        outcome = f"reload failed, kept the running configuration: {exc}".replace("\n", " ")
    if was_serving:
        notifier.ready(f"{outcome}; {serving_status(agent)[1]}")
