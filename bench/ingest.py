"""Webhook ingest benchmark: `merge-bot serve` against a minimal aiohttp + asyncpg baseline, in one run.

What it measures
    Signed Gitea ``pull_request`` deliveries (the real body of
    ``tests/contract/gitea/payloads/gitea-pull_request-opened.json``, read at run time) are
    posted to ``/webhook`` by N concurrent keep-alive connections (a closed loop: each connection sends its
    next delivery when the previous one is answered) for a fixed time after a short warm-up. Every request
    carries the headers Gitea sends, a valid signature and its own delivery UUID. Per server it reports:
    - deliveries/s: 202 answers to requests started in the measured window, per second of that window;
    - p50 / p99 latency of those 202s, as the load generator saw them;
    - non-202: every other status or client error, warm-up included;
    - durability: while the server still runs, right after the load, its table must hold exactly one row
      per 202 received (warm-up included) and every UUID answered 202 must be among them;
    - memory: VmRSS of the server process once it is ready and idle, and its peak (VmHWM) after the load,
      from ``/proc/<pid>/status``;
    - CPU: the server's and (for the embedded database) PostgreSQL's CPU milliseconds per delivery, and
      "others' CPU": what the rest of the machine used meanwhile. The machine has few cores and may be
      shared; a run with a large others' figure was disturbed and its throughput is not comparable.

The two servers (each a separate process bound to 127.0.0.1 on a free port, each on its own fresh database)
    ``project``   the real thing: the ``merge-bot serve`` console script, configured through MERGE_BOT_*
                  variables (verify, parse, typed event, group-commit writer, 202 after the commit). It gets
                  no forge token, so its queue service stays off: this measures webhook ingest alone.
    ``baseline``  the smallest honest ingest server, defined in this file: aiohttp + asyncpg, verify the
                  signature, parse the JSON, one ``INSERT .. ON CONFLICT DO NOTHING`` (its own autocommit
                  transaction) per request, 202 once it returns. DESIGN.md measured it at about 1.5k/s.
    Throughput is reported as the ratio project / baseline (of the medians with ``--rounds`` > 1); the
    target is >= 1.0x with every 202 durable. The load generator is a process of its own, so it shares no
    event loop with a server; both servers get the same generator, connections, warm-up and duration,
    each run starts on an emptied table after a CHECKPOINT, and rounds alternate the order.

Bounded and local
    Each phase has a deadline; servers get SIGTERM then SIGKILL at the end, on error and on Ctrl-C or
    SIGTERM; children are also bound to the bench by PR_SET_PDEATHSIG, so even a SIGKILLed bench leaves no
    server behind (only the embedded PostgreSQL, which pgserver keeps running; a later start re-attaches).
    The embedded PostgreSQL is stopped and the temporary directory removed. Only 127.0.0.1 is targeted.

Run it
    . /work/venv/bin/activate
    python bench/ingest.py                                   # 10 s per server, 32 connections
    python bench/ingest.py --seconds 10 --connections 64 --rounds 3
    python bench/ingest.py --database-url postgresql://user@host/postgres   # an existing server: two
                                                             # databases are created there and dropped
    python bench/ingest.py --json                            # machine-readable results on stdout
    The exit status is 0 only when every 202 of every run was durable.

Internal modes (started by the orchestrator, not meant to be typed): ``--baseline-server`` and
``--load-generator``. Secrets and database URLs reach the child processes through their environment,
never their argv.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `python bench/ingest.py` puts bench/ first on sys.path, where a sibling script (bench/queue.py) shadows the
# standard library module of that name (asyncio needs `queue`). Before any other import, that entry moves to
# the end of the path, where the shared `harness` module is still found (bench/harness.py says more).
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    sys.path.append(sys.path.pop(0))

import argparse
import asyncio
import contextlib
import ctypes
import json
import math
import os
import resource
import secrets
import shutil
import signal
import socket
import statistics
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import asyncpg
from aiohttp import web
from harness import asyncpg_dsn, percentile, with_database
from harness import progress as log

from bot.db.migrate import upgrade_async
from bot.embedded_pg import EmbeddedPostgres
from bot.forge.signature import sign, verify

SCRIPT = Path(__file__).resolve()
ROOT = SCRIPT.parents[1]
DEFAULT_PAYLOAD = ROOT / "tests" / "contract" / "gitea" / "payloads" / "gitea-pull_request-opened.json"
HOST = "127.0.0.1"
SECRET_ENV = "MERGE_BOT_WEBHOOK_SECRET"
DATABASE_ENV = "MERGE_BOT_DATABASE_URL"
BASELINE_TABLE = "baseline_deliveries"
PROJECT_TABLE = "webhook_deliveries"
MAX_BODY = 1_048_576
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
REQUEST_TIMEOUT = 30.0


# --- the baseline server -----------------------------------------------------------------------------

POOL: web.AppKey[asyncpg.Pool] = web.AppKey("pool", asyncpg.Pool)
SECRET: web.AppKey[bytes] = web.AppKey("secret", bytes)

BASELINE_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {BASELINE_TABLE} (
    id bigserial PRIMARY KEY,
    delivery_uuid varchar(64) NOT NULL UNIQUE,
    event varchar(64) NOT NULL,
    payload jsonb NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
)
"""
BASELINE_INSERT = (
    f"INSERT INTO {BASELINE_TABLE} (delivery_uuid, event, payload) VALUES ($1, $2, $3::jsonb) "
    "ON CONFLICT (delivery_uuid) DO NOTHING"
)


async def baseline_webhook(request: web.Request) -> web.Response:
    """Verify, parse, insert one row (its own autocommit transaction), answer after the commit."""
    body = await request.read()
    if not verify(request.app[SECRET], body, request.headers):
        return web.json_response({"status": "rejected"}, status=401)
    try:
        text = body.decode()
        payload = json.loads(text)
    except ValueError:  # UnicodeDecodeError included
        return web.json_response({"status": "rejected"}, status=400)
    delivery = request.headers.get("X-Gitea-Delivery", "")
    if not isinstance(payload, dict) or not delivery:
        return web.json_response({"status": "rejected"}, status=400)
    event = request.headers.get("X-Gitea-Event-Type") or request.headers.get("X-Gitea-Event", "")
    # asyncpg sends jsonb as text: the body goes to the database as it came, no re-serialisation.
    status: str = await request.app[POOL].execute(BASELINE_INSERT, delivery, event, text)
    if status.endswith(" 1"):
        return web.json_response({"status": "accepted", "delivery": delivery}, status=202)
    return web.json_response({"status": "duplicate", "delivery": delivery}, status=200)


async def baseline_healthz(request: web.Request) -> web.Response:
    await request.app[POOL].fetchval("SELECT 1")
    return web.json_response({"status": "ok"})


def baseline_app(dsn: str, secret: bytes, pool_size: int) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY + 1)
    app[SECRET] = secret

    async def database(app: web.Application) -> AsyncIterator[None]:
        pool = await asyncpg.create_pool(dsn, min_size=pool_size, max_size=pool_size)
        app[POOL] = pool
        yield
        await pool.close()

    app.cleanup_ctx.append(database)
    app.router.add_post("/webhook", baseline_webhook)
    app.router.add_get("/healthz", baseline_healthz)
    return app


def run_baseline_server(port: int, pool_size: int) -> int:
    dsn = os.environ[DATABASE_ENV]
    secret = os.environ[SECRET_ENV].encode()
    web.run_app(baseline_app(dsn, secret, pool_size), host=HOST, port=port, access_log=None, print=None)
    return 0


# --- the load generator (its own process) ------------------------------------------------------------


@dataclass
class LoadResult:
    connections: int
    seconds: float
    window: float = 0.0
    accepted: int = 0
    warmup_accepted: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    p50_ms: float = math.nan
    p90_ms: float = math.nan
    p99_ms: float = math.nan
    max_ms: float = math.nan
    generator_cpu_s: float = 0.0
    generator_process_cpu_s: float = 0.0
    accepted_uuids: list[str] = field(default_factory=list)


def delivery_headers(delivery: str, signature: str, event: str) -> dict[str, str]:
    """The headers a Gitea webhook carries (tests/test_webhook.py, tests/contract/gitea/payloads)."""
    return {
        "Content-Type": "application/json",
        "X-Gitea-Delivery": delivery,
        "X-Gitea-Event": event,
        "X-Gitea-Event-Type": event,
        "X-Gitea-Signature": signature,
        "X-Gogs-Delivery": delivery,
        "X-Gogs-Event": event,
        "X-Gogs-Signature": signature,
        "X-GitHub-Delivery": delivery,
        "X-GitHub-Event": event,
        "X-Hub-Signature-256": "sha256=" + signature,
    }


async def generate_load(
    url: str, body: bytes, secret: bytes, connections: int, warmup: float, seconds: float
) -> LoadResult:
    """Closed loop: each of ``connections`` workers posts a delivery, waits for the answer, repeats.
    Requests started during the warm-up count toward the status tally and the durability check, not toward
    throughput or latency; throughput counts the 202s of requests started in the measured window."""
    # Gitea signs the body alone, so one body has one signature; each request still has its own UUID.
    signature = sign(secret, body)
    result = LoadResult(connections=connections, seconds=seconds)
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    accepted_uuids: list[str] = []
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    measure_from = start + warmup
    end = measure_from + seconds
    last_done = measure_from

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal last_done
        while (sent := time.perf_counter()) < end:
            measured = sent >= measure_from
            delivery = str(uuid.uuid4())
            try:
                async with session.post(
                    url, data=body, headers=delivery_headers(delivery, signature, "pull_request")
                ) as response:
                    await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                errors[type(exc).__name__] += 1
                await asyncio.sleep(0.01)  # a dead server must not turn this into a busy loop
                continue
            done = time.perf_counter()
            statuses[str(status)] += 1  # warm-up included: any non-202 is worth reporting
            if status != 202:
                continue
            accepted_uuids.append(delivery)
            if not measured:
                result.warmup_accepted += 1
                continue
            result.accepted += 1
            latencies.append(done - sent)
            last_done = max(last_done, done)

    connector = aiohttp.TCPConnector(limit=connections)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        async with asyncio.timeout(warmup + seconds + REQUEST_TIMEOUT + 10):
            await asyncio.gather(*(worker(session) for _ in range(connections)))
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    latencies.sort()
    result.window = max(seconds, last_done - measure_from)
    result.statuses = dict(statuses)
    result.errors = dict(errors)
    result.p50_ms = percentile(latencies, 50) * 1000
    result.p90_ms = percentile(latencies, 90) * 1000
    result.p99_ms = percentile(latencies, 99) * 1000
    result.max_ms = latencies[-1] * 1000 if latencies else math.nan
    result.generator_cpu_s = (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime)
    result.generator_process_cpu_s = cpu_after.ru_utime + cpu_after.ru_stime  # imports included
    result.accepted_uuids = accepted_uuids
    return result


def run_load_generator(url: str, payload: Path, out: Path, connections: int, warmup: float, seconds: float) -> int:
    if urlsplit(url).hostname != HOST:
        raise SystemExit(f"refusing to load anything but {HOST}: {url}")
    secret = os.environ[SECRET_ENV].encode()
    result = asyncio.run(generate_load(url, payload.read_bytes(), secret, connections, warmup, seconds))
    out.write_text(json.dumps(asdict(result)))
    return 0


# --- the orchestrator ----------------------------------------------------------------------------------


@dataclass
class ServerRun:
    server: str
    round: int
    deliveries_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    accepted: int
    total_accepted: int
    non_202: dict[str, int]
    rows: int
    rows_match: bool
    all_202_stored: bool
    idle_rss_mb: float
    peak_rss_mb: float
    server_cpu_s: float
    generator_cpu_s: float
    postgres_cpu_s: float | None
    other_cpu_s: float | None
    machine_busy: float
    window_s: float

    @property
    def durable(self) -> bool:
        return self.rows_match and self.all_202_stored


@dataclass(frozen=True)
class Target:
    """One server under test: how to start it, where its deliveries land."""

    name: str
    dsn: str
    table: str


@dataclass(frozen=True)
class Plan:
    seconds: float
    warmup: float
    connections: int
    payload: Path
    secret: str
    repo: str
    work: Path
    baseline_pool: int
    project_log_level: str
    postmaster: int | None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def proc_status_kb(pid: int, key: str) -> int:
    """A ``kB`` field of /proc/<pid>/status (VmRSS, VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(f"{key} not in /proc/{pid}/status")


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far (/proc/<pid>/stat fields 14 and 15)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs together, from /proc/stat."""
    values = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # guest time is already counted in user
    return total - idle, total


def postgres_cpu_seconds(postmaster: int | None) -> dict[int, float]:
    """CPU seconds of a PostgreSQL server's processes, by pid: the postmaster (with the backends that already
    exited and were reaped by it, its cutime + cstime) and each of its live children."""
    if postmaster is None:
        return {}
    found: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        pid, ppid = int(entry.name), int(fields[1])
        if pid == postmaster:
            found[pid] = sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")
        elif ppid == postmaster:
            found[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return found


def postmaster_pid(embedded: EmbeddedPostgres | None) -> int | None:
    """The embedded server's postmaster (an external server's processes are not ours to see)."""
    if embedded is None:
        return None
    try:
        return int((embedded.directory / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None
PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Runs in each child between fork and exec: the kernel SIGTERMs it when the bench dies, even by SIGKILL,
    so that no server outlives the bench."""
    if _LIBC is not None:
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def child_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("MERGE_BOT_")}
    env.update(extra)
    return env


def server_command(target: Target, port: int, plan: Plan) -> tuple[list[str], dict[str, str]]:
    if target.name == "project":
        executable = shutil.which("merge-bot", path=str(Path(sys.executable).parent))
        command = [executable, "serve"] if executable else [sys.executable, "-m", "bot", "serve"]
        return command, child_env(
            MERGE_BOT_DATABASE_URL=target.dsn,
            MERGE_BOT_WEBHOOK_SECRET=plan.secret,
            MERGE_BOT_LISTEN=f"{HOST}:{port}",
            MERGE_BOT_REPOS=plan.repo,
            # No forge token: the queue service stays off and only ingest runs; the forge URL stays local anyway.
            MERGE_BOT_GITEA_URL=f"http://{HOST}:9",
            MERGE_BOT_DATA_DIR=str(plan.work / "data"),
            MERGE_BOT_LOG_LEVEL=plan.project_log_level,
        )
    command = [sys.executable, str(SCRIPT), "--baseline-server", "--port", str(port)]
    command += ["--pool-size", str(plan.baseline_pool)]
    return command, child_env(**{DATABASE_ENV: target.dsn, SECRET_ENV: plan.secret})


async def wait_ready(port: int, process: asyncio.subprocess.Process, name: str, log_path: Path) -> None:
    """Poll ``/healthz`` until it answers 200; fail fast if the process exits."""
    deadline = time.monotonic() + READY_TIMEOUT
    url = f"http://{HOST}:{port}/healthz"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while time.monotonic() < deadline:
            if process.returncode is not None:
                raise RuntimeError(f"{name} exited ({process.returncode}) before it was ready:\n{tail(log_path)}")
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.05)
    raise RuntimeError(f"{name} was not ready within {READY_TIMEOUT:.0f} s:\n{tail(log_path)}")


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


async def stop(process: asyncio.subprocess.Process) -> None:
    """SIGTERM, and SIGKILL if it has not exited within STOP_TIMEOUT."""
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


async def reset_table(target: Target) -> None:
    """An empty table and a fresh checkpoint, so that no run pays for the previous one's WAL."""
    connection = await asyncpg.connect(target.dsn)
    try:
        await connection.execute(f"TRUNCATE {target.table}")
        with contextlib.suppress(asyncpg.PostgresError):  # CHECKPOINT needs pg_checkpoint or superuser
            await connection.execute("CHECKPOINT")
    finally:
        await connection.close()


async def count_rows(target: Target, uuids: list[str]) -> tuple[int, int]:
    """(rows in the target's table, how many of ``uuids`` are among them)."""
    connection = await asyncpg.connect(target.dsn)
    try:
        rows = int(await connection.fetchval(f"SELECT count(*) FROM {target.table}"))
        found = await connection.fetchval(
            f"SELECT count(*) FROM {target.table} WHERE delivery_uuid = ANY($1::text[])", uuids
        )
    finally:
        await connection.close()
    return rows, int(found)


async def run_load(port: int, out: Path, plan: Plan) -> dict[str, Any]:
    """The load generator as a process of its own; its results come back through ``out``."""
    generator = await asyncio.create_subprocess_exec(
        *[sys.executable, str(SCRIPT), "--load-generator", "--target", f"http://{HOST}:{port}/webhook"],
        *["--payload", str(plan.payload), "--out", str(out), "--connections", str(plan.connections)],
        *["--warmup", str(plan.warmup), "--seconds", str(plan.seconds)],
        env=child_env(**{SECRET_ENV: plan.secret}),
        stdin=asyncio.subprocess.DEVNULL,
        preexec_fn=die_with_parent,
    )
    try:
        code = await asyncio.wait_for(generator.wait(), plan.warmup + plan.seconds + 2 * REQUEST_TIMEOUT)
    finally:
        await stop(generator)
    if code != 0:
        raise RuntimeError(f"the load generator failed (exit {code})")
    result: dict[str, Any] = json.loads(await asyncio.to_thread(out.read_text))
    return result


async def bench_server(target: Target, round_: int, plan: Plan) -> ServerRun:
    """Start one server, load it, check that every 202 is in its table, stop it."""
    await reset_table(target)
    port = free_port()
    command, env = server_command(target, port, plan)
    log_path = plan.work / f"{target.name}-{round_}.log"
    with log_path.open("ab") as log_file:
        process = await asyncio.create_subprocess_exec(
            *command,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            preexec_fn=die_with_parent,
        )
    try:
        await wait_ready(port, process, target.name, log_path)
        idle_rss = proc_status_kb(process.pid, "VmRSS")
        cpu_before = proc_cpu_seconds(process.pid)
        busy_before, total_before = machine_ticks()
        pg_before = postgres_cpu_seconds(plan.postmaster)
        log(
            f"{target.name}: pid {process.pid} ready on {HOST}:{port}, idle RSS {idle_rss / 1024:.1f} MB; "
            f"{plan.warmup:g} s warm-up + {plan.seconds:g} s at {plan.connections} connections"
        )
        load = await run_load(port, plan.work / f"{target.name}-{round_}-load.json", plan)
        busy_after, total_after = machine_ticks()
        pg_after = postgres_cpu_seconds(plan.postmaster)
        if process.returncode is not None:
            raise RuntimeError(f"{target.name} died under load ({process.returncode}):\n{tail(log_path)}")
        server_cpu = proc_cpu_seconds(process.pid) - cpu_before
        peak_rss = proc_status_kb(process.pid, "VmHWM")
        # Every 202 must already be committed: count while the server still runs, before it could flush.
        rows, found = await count_rows(target, list(load["accepted_uuids"]))
    finally:
        await stop(process)
    total_accepted = int(load["accepted"]) + int(load["warmup_accepted"])
    non_202 = {status: n for status, n in load["statuses"].items() if status != "202"}
    non_202.update({f"error:{kind}": n for kind, n in load["errors"].items()})
    window = float(load["window"])
    # Everything the machine did meanwhile, less what this bench's own processes did: other people's work.
    machine_cpu = (busy_after - busy_before) / os.sysconf("SC_CLK_TCK")
    postgres_cpu = sum(cpu - pg_before.get(pid, 0.0) for pid, cpu in pg_after.items()) if pg_after else None
    other_cpu = None
    if postgres_cpu is not None:
        other_cpu = max(0.0, machine_cpu - server_cpu - float(load["generator_process_cpu_s"]) - postgres_cpu)
    run = ServerRun(
        server=target.name,
        round=round_,
        deliveries_per_s=int(load["accepted"]) / window if window > 0 else 0.0,
        p50_ms=float(load["p50_ms"]),
        p90_ms=float(load["p90_ms"]),
        p99_ms=float(load["p99_ms"]),
        max_ms=float(load["max_ms"]),
        accepted=int(load["accepted"]),
        total_accepted=total_accepted,
        non_202=non_202,
        rows=rows,
        rows_match=rows == total_accepted,
        all_202_stored=found == len(load["accepted_uuids"]) == total_accepted,
        idle_rss_mb=idle_rss / 1024,
        peak_rss_mb=peak_rss / 1024,
        server_cpu_s=server_cpu,
        generator_cpu_s=float(load["generator_cpu_s"]),
        postgres_cpu_s=postgres_cpu,
        other_cpu_s=other_cpu,
        machine_busy=(busy_after - busy_before) / max(1, total_after - total_before),
        window_s=window,
    )
    log(
        f"{target.name}: {run.deliveries_per_s:.0f} deliveries/s, p50 {run.p50_ms:.1f} ms, "
        f"p99 {run.p99_ms:.1f} ms, rows {rows} / 202s {total_accepted}, server CPU {server_cpu:.1f} s, "
        f"generator CPU {run.generator_cpu_s:.1f} s, PostgreSQL CPU {cpu_text(postgres_cpu)}, "
        f"others' CPU {cpu_text(other_cpu)}, machine busy {run.machine_busy:.0%}"
    )
    return run


def per_delivery(seconds: float | None, deliveries: int) -> str:
    """CPU milliseconds per accepted delivery (warm-up included, as the CPU figures are)."""
    return "n/a" if seconds is None or not deliveries else f"{seconds * 1000 / deliveries:.2f}"


def cpu_text(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds:.1f} s"


async def database_settings(dsn: str) -> dict[str, str]:
    connection = await asyncpg.connect(dsn)
    try:
        return {
            name: str(await connection.fetchval(f"SHOW {name}"))
            for name in ("server_version", "fsync", "synchronous_commit", "wal_sync_method", "commit_delay")
        }
    finally:
        await connection.close()


async def prepare_databases(admin_url: str, names: dict[str, str], created: list[str]) -> dict[str, Target]:
    """Two fresh databases: the project's migrated by Alembic, the baseline's with its one table."""
    admin = await asyncpg.connect(asyncpg_dsn(admin_url))
    try:
        for name in names.values():
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.execute(f'CREATE DATABASE "{name}"')
            created.append(name)
    finally:
        await admin.close()
    urls = {server: asyncpg_dsn(with_database(admin_url, name)) for server, name in names.items()}
    await upgrade_async(urls["project"])
    connection = await asyncpg.connect(urls["baseline"])
    try:
        await connection.execute(BASELINE_SCHEMA)
    finally:
        await connection.close()
    return {
        "project": Target("project", urls["project"], PROJECT_TABLE),
        "baseline": Target("baseline", urls["baseline"], BASELINE_TABLE),
    }


async def drop_databases(admin_url: str, names: list[str]) -> None:
    admin = await asyncpg.connect(asyncpg_dsn(admin_url))
    try:
        for name in names:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def summarise(runs: list[ServerRun]) -> dict[str, dict[str, float]]:
    """Per server, the median of each figure over its rounds (the figure itself after one round)."""
    summary: dict[str, dict[str, float]] = {}
    for server in dict.fromkeys(run.server for run in runs):
        mine = [run for run in runs if run.server == server]
        summary[server] = {
            key: statistics.median(getattr(run, key) for run in mine)
            for key in ("deliveries_per_s", "p50_ms", "p99_ms", "idle_rss_mb", "peak_rss_mb", "server_cpu_s")
        }
        summary[server]["peak_rss_mb"] = max(run.peak_rss_mb for run in mine)
        summary[server]["non_202"] = sum(sum(run.non_202.values()) for run in mine)
        summary[server]["durable"] = float(all(run.durable for run in mine))
    return summary


async def orchestrate(args: argparse.Namespace, repo: str, payload_bytes: int) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="merge-bot-bench-"))
    embedded: EmbeddedPostgres | None = None
    admin_url: str = args.database_url or ""
    names = {server: f"merge_bot_bench_{server}_{os.getpid()}" for server in ("project", "baseline")}
    created: list[str] = []
    runs: list[ServerRun] = []
    try:
        if not admin_url:
            embedded = EmbeddedPostgres(work / "pg", database="postgres")
            log(f"starting an embedded PostgreSQL in {embedded.directory}")
            admin_url = await embedded.astart()
        targets = await prepare_databases(admin_url, names, created)
        db_settings = await database_settings(targets["project"].dsn)
        log("database: " + ", ".join(f"{key}={value}" for key, value in db_settings.items()))
        plan = Plan(
            seconds=args.seconds,
            warmup=args.warmup,
            connections=args.connections,
            payload=args.payload,
            secret="bench-" + secrets.token_hex(16),
            repo=repo,
            work=work,
            baseline_pool=args.baseline_pool,
            project_log_level=args.project_log_level,
            postmaster=postmaster_pid(embedded),
        )
        for round_ in range(1, args.rounds + 1):
            # Alternate the order between rounds so neither server always runs on a warmer machine.
            order = args.order if round_ % 2 else list(reversed(args.order))
            for server in order:
                runs.append(await bench_server(targets[server], round_, plan))
    finally:
        if created and admin_url:
            try:
                await drop_databases(admin_url, created)
            except Exception as exc:
                log(f"could not drop the bench databases {created}: {exc}")
        try:
            if embedded is not None:
                await embedded.astop()
        finally:
            if args.keep_logs:
                log(f"logs kept in {work}")
            else:
                shutil.rmtree(work, ignore_errors=True)

    summary = summarise(runs)
    ratio = math.nan
    if "project" in summary and "baseline" in summary and summary["baseline"]["deliveries_per_s"] > 0:
        ratio = summary["project"]["deliveries_per_s"] / summary["baseline"]["deliveries_per_s"]
    return {
        "command": " ".join(["python", "bench/ingest.py", *sys.argv[1:]]),
        "seconds": args.seconds,
        "warmup": args.warmup,
        "connections": args.connections,
        "rounds": args.rounds,
        "cpus": os.cpu_count(),
        "database": db_settings,
        "payload_bytes": payload_bytes,
        "runs": [asdict(run) for run in runs],
        "summary": summary,
        "throughput_ratio_project_over_baseline": ratio,
    }


def strict_json(value: Any) -> Any:
    """``value`` with NaN (no 202 to take a percentile of, no baseline to divide by) as null: strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: strict_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [strict_json(item) for item in value]
    return value


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)) + " |"

    return [line(header), "|" + "|".join("-" * (width + 2) for width in widths) + "|", *map(line, rows)]


def render(report: dict[str, Any]) -> str:
    header = (
        "server",
        "round",
        "deliveries/s",
        "p50 ms",
        "p99 ms",
        "non-202",
        "rows == 202s",
        "idle RSS MB",
        "peak RSS MB",
        "server CPU ms/delivery",
        "PG CPU ms/delivery",
        "others' CPU s",
        "machine busy",
    )
    rows = []
    for run in report["runs"]:
        non_202 = sum(run["non_202"].values())
        durable = "yes" if run["rows_match"] and run["all_202_stored"] else "NO"
        rows.append(
            (
                run["server"],
                str(run["round"]),
                f"{run['deliveries_per_s']:.0f}",
                f"{run['p50_ms']:.1f}",
                f"{run['p99_ms']:.1f}",
                f"{non_202} {run['non_202']}" if non_202 else "0",
                f"{durable} ({run['rows']}/{run['total_accepted']})",
                f"{run['idle_rss_mb']:.1f}",
                f"{run['peak_rss_mb']:.1f}",
                per_delivery(run["server_cpu_s"], run["total_accepted"]),
                per_delivery(run["postgres_cpu_s"], run["total_accepted"]),
                cpu_text(run["other_cpu_s"]).removesuffix(" s"),
                f"{run['machine_busy']:.0%}",
            )
        )
    database = report["database"]
    lines = [
        f"{report['command']}",
        f"({report['connections']} connections, {report['warmup']:g} s warm-up + {report['seconds']:g} s per run, "
        f"{report['rounds']} round(s), {report['cpus']} CPUs, {report['payload_bytes']} byte payload, "
        f"PostgreSQL {database['server_version']} fsync={database['fsync']} "
        f"synchronous_commit={database['synchronous_commit']})",
        *markdown_table(header, rows),
    ]
    if report["rounds"] > 1:
        summary_header = (
            "server",
            "median deliveries/s",
            "median p50 ms",
            "median p99 ms",
            "non-202",
            "all durable",
            "median idle RSS MB",
            "max peak RSS MB",
        )
        summary_rows = [
            (
                server,
                f"{figures['deliveries_per_s']:.0f}",
                f"{figures['p50_ms']:.1f}",
                f"{figures['p99_ms']:.1f}",
                f"{figures['non_202']:.0f}",
                "yes" if figures["durable"] else "NO",
                f"{figures['idle_rss_mb']:.1f}",
                f"{figures['peak_rss_mb']:.1f}",
            )
            for server, figures in report["summary"].items()
        ]
        lines += ["", *markdown_table(summary_header, summary_rows)]
    ratio = report["throughput_ratio_project_over_baseline"]
    if not math.isnan(ratio):
        median = " (medians)" if report["rounds"] > 1 else ""
        lines.append(f"throughput ratio project / baseline{median}: {ratio:.2f}x")
    return "\n".join(lines)


def positive(kind: type[float] | type[int], high: float) -> Any:
    def parse(text: str) -> float | int:
        value = kind(text)
        if not 0 < value <= high:
            raise argparse.ArgumentTypeError(f"must be in (0, {high:g}]")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Webhook ingest benchmark: merge-bot serve vs. a minimal aiohttp + asyncpg baseline."
    )
    parser.add_argument("--seconds", type=positive(float, 600), default=10.0, help="measured load per server")
    parser.add_argument("--warmup", type=positive(float, 60), default=2.0, help="warm-up before measuring")
    parser.add_argument("--connections", type=positive(int, 1024), default=32, help="concurrent connections")
    parser.add_argument(
        "--database-url", default=None, help="a PostgreSQL server's maintenance database (default: an embedded one)"
    )
    parser.add_argument("--payload", type=Path, default=DEFAULT_PAYLOAD, help="the delivery body")
    parser.add_argument(
        "--order",
        type=lambda text: text.split(","),
        default=["baseline", "project"],
        help="servers to run, in order (default: baseline,project)",
    )
    parser.add_argument(
        "--baseline-pool",
        type=positive(int, 100),
        default=20,
        help="asyncpg pool size of the baseline (default 20: the project's 10 + 10 overflow)",
    )
    parser.add_argument(
        "--rounds", type=positive(int, 10), default=1, help="run each server this many times (order alternates)"
    )
    parser.add_argument("--project-log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    parser.add_argument("--keep-logs", action="store_true", help="keep the servers' logs in the temp dir")
    internal = parser.add_argument_group("internal modes")
    internal.add_argument("--baseline-server", action="store_true", help=argparse.SUPPRESS)
    internal.add_argument("--load-generator", action="store_true", help=argparse.SUPPRESS)
    internal.add_argument("--port", type=int, help=argparse.SUPPRESS)
    internal.add_argument("--pool-size", type=int, default=20, help=argparse.SUPPRESS)
    internal.add_argument("--target", help=argparse.SUPPRESS)
    internal.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.baseline_server:
        return run_baseline_server(args.port, args.pool_size)
    if args.load_generator:
        return run_load_generator(args.target, args.payload, args.out, args.connections, args.warmup, args.seconds)
    unknown = set(args.order) - {"project", "baseline"}
    if unknown or not args.order:
        raise SystemExit(f"--order takes project and/or baseline, not {sorted(unknown)}")

    try:
        body = args.payload.read_bytes()
        repo = str(json.loads(body)["repository"]["full_name"])  # the repository the server must manage
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SystemExit(f"bench: {args.payload} is not a readable Gitea pull_request payload: {exc}") from None

    async def guarded() -> dict[str, Any]:
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        return await orchestrate(args, repo, len(body))

    try:
        report = asyncio.run(guarded())
    except (asyncio.CancelledError, KeyboardInterrupt):
        log("interrupted: servers, load generator and database stopped")
        return 130
    except RuntimeError as exc:  # a server that did not start or died, a failed load generator
        log(f"failed: {exc}")
        return 1
    print(json.dumps(strict_json(report), indent=2, allow_nan=False) if args.json else render(report))
    durable = all(figures["durable"] for figures in report["summary"].values())
    return 0 if durable else 1


if __name__ == "__main__":
    raise SystemExit(main())
