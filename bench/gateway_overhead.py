"""What the gateway costs per call, side by side in one run (bench/README.md).

    .venv/bin/python -m bench.gateway_overhead --requests 2000

Targets, one worker each, all in front of the same fake upstream (its own process):
the fake directly; stock LiteLLM proxy (bare config: the same model_list, master key, no
database); our gateway on SQLite; our gateway on PostgreSQL + Redis. Each is driven by
the same load generator (`bench.loadgen`, 16 connections) with plain and streamed chat
completions. Reported per target: requests/s, CPU seconds per answered request of the
server process (utime + stime from /proc, process tree), p50/p99 latency added over the
fake alone, and for our gateway usage records written vs requests answered. Then: time
from process start to /readyz 200, and a py-spy profile of our gateway under load
(`bench.profile_summary`). Loopback only; every phase has a time ceiling.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from bench.loadgen import LoadResult, run_load
from bench.long_streams import (
    LongStream,
    long_stream_json,
    long_stream_lines,
    long_stream_phase,
)
from bench.profile_summary import EVENT_LOOP, LAYERS, Profile, read_profile

ROOT = Path(__file__).resolve().parent.parent
MODEL = "gpt-4.1-nano"
PROMPT = [{"role": "user", "content": "Say hello in a few words."}]
PLAIN = {"model": MODEL, "messages": PROMPT, "max_tokens": 16}
STREAM = {**PLAIN, "stream": True}
MASTER_KEY = "sk-bench-master-key-0123456789abcdef"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
READY_CEILING_SECONDS = 240
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS = "redis://127.0.0.1:6379/11"

FAKE, STOCK, OURS_SQLITE, OURS_PG = (
    "fake upstream (direct)",
    "stock LiteLLM proxy",
    "our gateway, SQLite",
    "our gateway, PostgreSQL + Redis",
)


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` and its live descendants (every thread included)."""
    tree, total, todo = _children(), 0.0, [pid]
    while todo:
        current = todo.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime
        todo.extend(tree.get(current, []))
    return total


@dataclass(frozen=True)
class MachineCpu:
    """The whole machine's CPU so far (/proc/stat, every core): busy and stolen seconds."""

    busy: float  # user + nice + system + irq + softirq
    steal: float  # time the hypervisor gave this machine's vCPUs to someone else


def machine_cpu() -> MachineCpu:
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return MachineCpu((user + nice + system + irq + softirq) / CLOCK_TICKS, steal / CLOCK_TICKS)


@dataclass
class Server:
    name: str
    url: str  # chat completions URL
    tokens: list[str]
    process: subprocess.Popen[bytes]
    log: Path
    ready_seconds: float = float("nan")
    ready_cpu_seconds: float = float("nan")  # CPU the process used until it was ready
    database_url: str | None = None
    answered: int = 0  # every answered call, warm-ups and profiling included

    @property
    def pid(self) -> int:
        return self.process.pid


def spawn(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as handle:
        return subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )


def wait_ready(server: Server, probe: str, started: float) -> None:
    deadline = started + READY_CEILING_SECONDS
    with httpx.Client(timeout=2) as client:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise SystemExit(f"{server.name} exited during start; see {server.log}")
            with contextlib.suppress(httpx.HTTPError):
                if client.get(probe).status_code == 200:
                    server.ready_seconds = time.monotonic() - started
                    server.ready_cpu_seconds = cpu_seconds(server.pid)
                    return
            time.sleep(0.05)
    raise SystemExit(f"{server.name} not ready after {READY_CEILING_SECONDS} s; see {server.log}")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)  # its own session: only what we started
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


# --------------------------------------------------------------------------- set-up


def start_upstream(env: dict[str, str], work: Path) -> tuple[subprocess.Popen[bytes], dict]:
    """`python -m tests.fakes.upstream` prints the environment that points at it (JSON)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.upstream"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=open(work / "upstream.log", "wb"),  # noqa: SIM115  (closed with the process)
        start_new_session=True,
    )
    assert process.stdout is not None
    text = ""
    while not text.rstrip().endswith("}"):
        line = process.stdout.readline().decode()
        if not line:
            raise SystemExit(f"fake upstream did not start; see {work / 'upstream.log'}")
        text += line
    return process, json.loads(text)


async def prepare_database(database_url: str, users: int) -> list[str]:
    """Migrate, then `users` verified users with 1,000 credits and one token each."""
    from portal.accounts.service import create_user
    from portal.credits import ledger
    from portal.credits.models import CauseType, EntryKind
    from portal.credits.units import credits_to_units
    from portal.db import open_database
    from portal.db.migrate import upgrade_async
    from portal.tokens.service import create_token

    await upgrade_async(database_url)
    database = open_database(database_url)
    tokens = []
    try:
        async with database.transaction() as session:
            for index in range(users):
                user = await create_user(
                    session, email=f"bench-{index}@example.com", name="Bench", verified=True
                )
                token, _row = await create_token(session, user, name="bench")
                await ledger.ensure_account(session, user.id)
                await ledger.post_entry(
                    session,
                    user_id=user.id,
                    amount=credits_to_units("1000"),
                    kind=EntryKind.GRANT,
                    cause_type=CauseType.ADMIN,
                    cause_id=f"bench-{uuid.uuid4()}",
                    note="benchmark funding",
                )
                tokens.append(token)
    finally:
        await database.dispose()
    return tokens


async def usage_counts(database_url: str) -> tuple[int, int, int]:
    """(usage rows, rows with status success, units debited by usage) in the database."""
    from sqlalchemy import func, select

    from portal.db import open_database
    from portal.usage.models import CallStatus, UsageRecord

    database = open_database(database_url)
    try:
        async with database.session() as session:
            rows = await session.scalar(select(func.count()).select_from(UsageRecord))
            ok = await session.scalar(
                select(func.count()).where(UsageRecord.status == CallStatus.SUCCESS)
            )
            units = await session.scalar(select(func.coalesce(func.sum(UsageRecord.credits), 0)))
    finally:
        await database.dispose()
    return int(rows or 0), int(ok or 0), int(units or 0)


def postgres_admin(server_url: str, statement: str) -> None:
    import asyncpg

    async def run() -> None:
        connection = await asyncpg.connect(server_url, timeout=5)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(run())


def gateway_config(work: Path) -> Path:
    """config.yaml with the free plan's limits raised past what the run reaches (the
    limiter still counts every call); everything else as shipped."""
    config = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    config["workforce_gateway"]["limits"]["plans"]["free"] = {
        "rpm": 1_000_000,
        "tpm": 10_000_000_000,
        "max_parallel_requests": 32,
    }
    path = work / "gateway.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def stock_config(work: Path) -> Path:
    """Bare: config.yaml's model_list only (no router or litellm settings, no callbacks)."""
    config = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    path = work / "stock.yaml"
    path.write_text(yaml.safe_dump({"model_list": config["model_list"]}), encoding="utf-8")
    return path


def start_ours(
    name: str, env: dict[str, str], work: Path, tag: str, tokens: list[str], database_url: str
) -> Server:
    port = free_port()
    gateway_env = {
        **env,
        "GATEWAY_PORT": str(port),
        "GATEWAY_WORKERS": "1",
        "WFG_VAR_DIR": str(work / f"var-{tag}"),
        "WFG_CONFIG": str(gateway_config(work)),
    }
    log = work / f"gateway-{tag}.log"
    started = time.monotonic()
    process = spawn([sys.executable, "-m", "gateway_plugins.server"], gateway_env, log)
    server = Server(name, f"http://127.0.0.1:{port}/v1/chat/completions", tokens, process, log)
    server.database_url = database_url
    wait_ready(server, f"http://127.0.0.1:{port}/readyz", started)
    return server


def start_stock(env: dict[str, str], work: Path, litellm: str) -> Server:
    port = free_port()
    log = work / "stock.log"
    cmd = [litellm, "--config", str(stock_config(work)), "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--num_workers", "1"]
    started = time.monotonic()
    process = spawn(cmd, {**env, "LITELLM_MASTER_KEY": MASTER_KEY}, log)
    server = Server(
        STOCK, f"http://127.0.0.1:{port}/v1/chat/completions", [MASTER_KEY], process, log
    )
    wait_ready(server, f"http://127.0.0.1:{port}/health/liveliness", started)
    return server


# --------------------------------------------------------------------------- measuring


@dataclass
class Phase:
    target: str
    mode: str  # "plain" | "stream"
    round: int
    load: LoadResult
    cpu_seconds: float  # server process tree
    upstream_cpu_seconds: float
    client_cpu_seconds: float
    # The rest of the machine meanwhile: busy CPU of every other process (PostgreSQL and
    # Redis serving our gateway's calls included, and anything else running), and CPU
    # time the hypervisor took away. A phase whose figures stand out and whose rest or
    # steal is high was measured on a busy machine.
    rest_cpu_seconds: float = 0.0
    steal_seconds: float = 0.0

    @property
    def cpu_ms_per_request(self) -> float:
        return self._per_request(self.cpu_seconds)

    @property
    def rest_ms_per_request(self) -> float:
        return self._per_request(self.rest_cpu_seconds)

    @property
    def steal_ms_per_request(self) -> float:
        return self._per_request(self.steal_seconds)

    def _per_request(self, seconds: float) -> float:
        return 1000 * seconds / self.load.answered if self.load.answered else float("nan")


@dataclass
class Run:
    args: argparse.Namespace
    phases: list[Phase] = field(default_factory=list)
    long_streams: list[LongStream] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _client_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(
    server: Server,
    upstream_pid: int,
    mode: str,
    requests: int,
    args: argparse.Namespace,
    round_: int = 0,
    *,
    body: dict[str, Any] | None = None,
    connections: int | None = None,
) -> Phase:
    body = body or (STREAM if mode == "stream" else PLAIN)
    machine_before = machine_cpu()
    before = (cpu_seconds(server.pid), cpu_seconds(upstream_pid), _client_cpu())
    load = asyncio.run(
        run_load(
            server.url,
            body,
            server.tokens,
            requests=requests,
            connections=connections or args.connections,
            max_seconds=args.phase_seconds,
        )
    )
    after = (cpu_seconds(server.pid), cpu_seconds(upstream_pid), _client_cpu())
    machine_after = machine_cpu()
    server.answered += load.answered
    spent = [b - a for a, b in zip(before, after, strict=True)]
    rest = max(machine_after.busy - machine_before.busy - sum(spent), 0.0)
    steal = machine_after.steal - machine_before.steal
    return Phase(server.name, mode, round_, load, *spent, rest, steal)


def profile(
    server: Server, upstream_pid: int, mode: str, args: argparse.Namespace, work: Path
) -> tuple[Phase, Profile | None]:
    """py-spy attached to `server` while it serves `--profile-requests` calls. Only samples
    of threads holding the GIL count (`--gil`): Python work, not waiting."""
    tag = f"{server.pid}-{mode}"
    out = work / f"profile-{tag}.txt"
    command = [args.py_spy, "record", "--pid", str(server.pid), "--format", "raw", "--gil"]
    command += ["--full-filenames", "--rate", str(args.profile_rate), "--output", str(out)]
    with open(work / f"py-spy-{tag}.log", "wb") as log:
        spy = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    time.sleep(1.0)  # py-spy attaches
    phase = measure(server, upstream_pid, mode, args.profile_requests, args)
    spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
    try:
        spy.wait(timeout=60)
    except subprocess.TimeoutExpired:
        spy.kill()
    return phase, read_profile(out) if out.exists() else None


# --------------------------------------------------------------------------- report


def _fmt(value: float, spec: str = ".1f") -> str:
    return "n/a" if value != value else format(value, spec)  # NaN


def table(run: Run, round_: int) -> list[str]:
    phases = [p for p in run.phases if p.round == round_]
    lines = [
        "| target | mode | answered / failed | req/s | CPU ms / request | p50 ms | p99 ms "
        "| added p50 / p99 ms | upstream CPU ms/req | client CPU ms/req "
        "| rest of machine CPU / steal ms/req |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for mode in ("plain", "stream"):
        base = next((p for p in phases if p.mode == mode and p.target == FAKE), None)
        for p in (p for p in phases if p.mode == mode):
            load = p.load
            n = load.answered or 1
            added = "baseline"
            if base is not None and p is not base:
                added = (
                    f"{load.percentile(0.5) - base.load.percentile(0.5):+.1f} / "
                    f"{load.percentile(0.99) - base.load.percentile(0.99):+.1f}"
                )
            failed = f"{load.failed}" + (" (time ceiling)" if load.timed_out else "")
            if load.failures:
                failed += f" ({load.failure_summary()})"
            lines.append(
                f"| {p.target} | {mode} | {load.answered} / {failed} | {load.rps:.0f} "
                f"| {_fmt(p.cpu_ms_per_request, '.2f')} | {_fmt(load.percentile(0.5))} "
                f"| {_fmt(load.percentile(0.99))} | {added} "
                f"| {1000 * p.upstream_cpu_seconds / n:.2f} "
                f"| {1000 * p.client_cpu_seconds / n:.2f} "
                f"| {_fmt(p.rest_ms_per_request, '.2f')} / {_fmt(p.steal_ms_per_request, '.2f')} |"
            )
    return lines


def _without(args: argparse.Namespace) -> str:
    return f"SQLite without {args.without}"


def a_b(run: Run, round_: int) -> list[str]:
    """What the patches `--without` names save, per mode: CPU per request, A and B."""
    phases = {(p.target, p.mode): p for p in run.phases if p.round == round_}
    lines = []
    for mode in ("plain", "stream"):
        a, b = phases.get((OURS_SQLITE, mode)), phases.get((_without(run.args), mode))
        if a is None or b is None:
            continue
        saved = 100 * (b.cpu_ms_per_request - a.cpu_ms_per_request) / b.cpu_ms_per_request
        lines.append(
            f"- A/B {mode}: with {a.cpu_ms_per_request:.2f} ms, without "
            f"{b.cpu_ms_per_request:.2f} ms ({run.args.without}): saves **{saved:.1f}%**"
            f" (rest of machine {a.rest_ms_per_request:.2f} / {b.rest_ms_per_request:.2f})"
        )
    return lines


def ratios(run: Run, round_: int) -> list[str]:
    phases = {(p.target, p.mode): p for p in run.phases if p.round == round_}
    lines = []
    for ours in (OURS_SQLITE, OURS_PG):
        for mode, target in (("plain", 2.0), ("stream", 1.5)):
            stock, mine = phases.get((STOCK, mode)), phases.get((ours, mode))
            if stock is None or mine is None:
                continue
            ratio = stock.cpu_ms_per_request / mine.cpu_ms_per_request
            verdict = "meets" if ratio >= target else "MISSES"
            lines.append(
                f"- {mode}, {ours}: stock {stock.cpu_ms_per_request:.2f} ms / ours "
                f"{mine.cpu_ms_per_request:.2f} ms = **{ratio:.2f}×** "
                f"({verdict} the ≥ {target:g}× target)"
            )
    return lines


def stock_version(litellm_cli: str) -> str:
    """The LiteLLM version of the stock proxy's own environment (next to its CLI)."""
    python = Path(litellm_cli).with_name("python")
    try:
        done = subprocess.run(
            [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip() or "unknown"


def machine() -> list[str]:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    from importlib.metadata import version

    return [
        f"- {os.cpu_count()} CPUs ({model}), Linux {platform.release()}, "
        f"Python {platform.python_version()}, LiteLLM {version('litellm')}, "
        f"uvicorn {version('uvicorn')}",
    ]


# --------------------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--requests", type=int, default=1000, help="per target and mode (default 1000)")
    add("--warmup", type=int, default=50, help="per target and mode, not measured")
    add("--connections", type=int, default=16)
    add("--users", type=int, default=16, help="gateway users, one token each (one per connection)")
    add("--rounds", type=int, default=1, help="repeat the measurement (targets interleaved)")
    add("--phase-seconds", type=float, default=25, help="time ceiling of one phase")
    add("--targets", default="fake,stock,sqlite,postgres", help="comma-separated subset")
    add(
        "--without",
        default="",
        help="A/B: also run the SQLite gateway with WFG_BRIDGE_WITHOUT set to these patches",
    )
    add(
        "--stock-litellm",
        default=".venv-bench-stock/bin/litellm",
        help="stock LiteLLM's CLI, from its own environment (`make bench` builds it)",
    )
    add(
        "--fast-paths-off",
        action="append",
        metavar="NAMES",
        help="an A/B: our gateways with WFG_FAST_PATHS_OFF=NAMES (gateway_plugins/fast_paths.py; "
        "'' = none off); repeat to run variants side by side, measured alternately",
    )
    add("--postgres-url", default=os.environ.get("BENCH_POSTGRES_URL", DEFAULT_POSTGRES))
    add("--redis-url", default=os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS))
    add("--py-spy", default=shutil.which("py-spy"), help="py-spy executable (profile if set)")
    add("--profile", default="postgres,stock", help="targets to profile (sqlite, postgres, stock)")
    add("--profile-requests", type=int, default=500, help="per profiled target and mode")
    add("--profile-rate", type=int, default=250, help="py-spy samples per second")
    add(
        "--long-stream-chunks",
        type=int,
        default=1000,
        help="long-stream phase: content chunks per stream, CPU per chunk (0: skip it)",
    )
    add("--json", type=Path, help="also write the figures here")
    add("--keep", action="store_true", help="keep the work dir (logs, raw profiles)")
    return parser.parse_args()


def _startup_note(server: Server, probe: str, load: float) -> str:
    return (
        f"{server.name}: {probe} 200 after {server.ready_seconds:.1f} s wall, "
        f"{server.ready_cpu_seconds:.1f} s CPU (1-min load average at start {load:.1f})"
    )


def start_targets(
    args: argparse.Namespace, work: Path, env: dict[str, str], run: Run
) -> tuple[list[Server], list[str]]:
    """Our gateways first, each started alone (time to /readyz is a figure), then stock.
    Returns the servers and the scratch PostgreSQL databases created."""
    wanted = set(args.targets.split(","))
    servers: list[Server] = []
    scratch: list[str] = []
    for number, off in enumerate(args.fast_paths_off or [""]):
        suffix = f" [off: {off}]" if off else ""
        ours_env = {**env, "WFG_FAST_PATHS_OFF": off}
        if "sqlite" in wanted:
            tag = f"sqlite{number or ''}"
            (work / f"var-{tag}").mkdir()
            url = f"sqlite:///{work / f'var-{tag}' / 'workforce.db'}"  # the default var dir
            tokens = asyncio.run(prepare_database(url, args.users))
            load = os.getloadavg()[0]
            servers.append(start_ours(OURS_SQLITE + suffix, ours_env, work, tag, tokens, url))
            run.notes.append(_startup_note(servers[-1], "/readyz", load))
        if "postgres" in wanted:
            from sqlalchemy.engine import make_url

            name = f"wfg_bench_{uuid.uuid4().hex[:10]}"
            postgres_admin(args.postgres_url, f'CREATE DATABASE "{name}"')
            scratch.append(name)
            url = make_url(args.postgres_url).set(database=name)
            url = url.render_as_string(hide_password=False)
            tokens = asyncio.run(prepare_database(url, args.users))
            load = os.getloadavg()[0]
            pg_env = {**ours_env, "DATABASE_URL": url, "REDIS_URL": args.redis_url}
            tag = f"postgres{number or ''}"
            servers.append(start_ours(OURS_PG + suffix, pg_env, work, tag, tokens, url))
            run.notes.append(_startup_note(servers[-1], "/readyz", load))
    if args.without:  # the B of an A/B: the same gateway, the named patches left out
        (work / "var-without").mkdir()
        url = f"sqlite:///{work / 'var-without' / 'workforce.db'}"
        tokens = asyncio.run(prepare_database(url, args.users))
        b_env = {**env, "WFG_BRIDGE_WITHOUT": args.without}
        servers.append(start_ours(_without(args), b_env, work, "without", tokens, url))
    if "stock" in wanted:
        load = os.getloadavg()[0]
        servers.insert(0, start_stock(env, work, args.stock_litellm))
        run.notes.append(_startup_note(servers[0], "/health/liveliness", load))
    return servers, scratch


def report(run: Run, checks: list[str], profiles: list[Any], seconds: float, load: Any) -> str:
    args = run.args
    lines = ["## Machine", "", *machine()]
    if "stock" in args.targets.split(","):
        lines.append(f"- stock LiteLLM proxy: LiteLLM {stock_version(args.stock_litellm)}")
    lines.append(
        f"- load average (1/5/15 min) at start {'/'.join(f'{x:.1f}' for x in load)}, "
        f"at end {'/'.join(f'{x:.1f}' for x in os.getloadavg())}"
    )
    lines.append(
        f"- {args.requests} requests per target and mode after {args.warmup} warm-up, "
        f"{args.connections} connections, {args.users} gateway users; whole run {seconds:.0f} s"
    )
    for round_ in range(args.rounds):
        lines += [
            "",
            f"## Round {round_ + 1}",
            "",
            *table(run, round_),
            "",
            *ratios(run, round_),
            *a_b(run, round_),
        ]
    if run.long_streams:
        short = [p for p in run.phases if p.round == 0 and p.mode == "stream"]
        lines += ["", f"## Long streams ({args.long_stream_chunks} chunks)", ""]
        lines += long_stream_lines(run.long_streams, short, STOCK, FAKE)
    lines += ["", "## Usage records vs answered", "", *checks]
    lines += ["", "## Start-up", "", *(f"- {note}" for note in run.notes)]
    for name, mode, phase, summary in profiles:
        lines += ["", f"## Profile: {name}, {mode} ({phase.load.answered} calls under py-spy)", ""]
        lines.append(summary.table(phase.cpu_ms_per_request) if summary else "(no output)")
    return "\n".join(lines)


def as_json(run: Run, checks: list[str], profiles: list[Any]) -> str:
    phases = [
        {
            "target": p.target,
            "mode": p.mode,
            "round": p.round,
            "answered": p.load.answered,
            "failed": p.load.failed,
            "failures": p.load.failures,
            "rps": p.load.rps,
            "cpu_ms_per_request": p.cpu_ms_per_request,
            "p50_ms": p.load.percentile(0.5),
            "p99_ms": p.load.percentile(0.99),
            "rest_of_machine_cpu_seconds": p.rest_cpu_seconds,
            "steal_seconds": p.steal_seconds,
        }
        for p in run.phases
    ]
    layers = [layer for layer, _ in LAYERS] + [EVENT_LOOP]
    shares = {
        f"{name}, {mode}": {
            layer: summary.fraction(layer) * phase.cpu_ms_per_request for layer in layers
        }
        for name, mode, phase, summary in profiles
        if summary
    }
    return json.dumps(
        {
            "phases": phases,
            "long_streams": long_stream_json(run.long_streams),
            "notes": run.notes,
            "checks": checks,
            "profile_ms": shares,
        },
        indent=2,
    )


def bytecode_cache(env: dict[str, str]) -> dict[str, str]:
    """With PYTHONDONTWRITEBYTECODE set (as on some machines), every server started here
    would compile LiteLLM's ~2,900 modules at each start, which is not what a deployed
    image does (its bytecode is compiled once): the servers share a cache of the bench's
    own instead, outside the source tree (as the test suite does, tests/conftest.py)."""
    if not env.get("PYTHONDONTWRITEBYTECODE") or env.get("PYTHONPYCACHEPREFIX"):
        return {}
    cache = Path(tempfile.gettempdir()) / f"wfg-bench-bytecode-{os.getuid()}"
    return {"PYTHONDONTWRITEBYTECODE": "", "PYTHONPYCACHEPREFIX": str(cache)}


def main() -> None:
    args = parse_args()
    work = Path(tempfile.mkdtemp(prefix="wfg-bench-"))
    drop = ("DATABASE_URL", "WFG_", "REDIS_URL", "OPENAI_", "ANTHROPIC_", "GEMINI_", "OPENROUTER_")
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    base_env |= {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "PYTHONUNBUFFERED": "1"}
    base_env |= bytecode_cache(base_env)
    run = Run(args)
    began, load_at_start = time.monotonic(), os.getloadavg()
    processes: list[subprocess.Popen[bytes]] = []
    scratch: list[str] = []
    try:
        upstream, upstream_env = start_upstream(base_env, work)
        processes.append(upstream)
        servers, scratch = start_targets(args, work, {**base_env, **upstream_env}, run)
        processes += [server.process for server in servers]
        if "fake" in args.targets.split(","):
            fake_url = f"{upstream_env['OPENAI_API_BASE']}/chat/completions"
            key = upstream_env["OPENAI_API_KEY"]
            servers.insert(0, Server(FAKE, fake_url, [key], upstream, work / "upstream.log"))
        print(f"work dir {work}; started in {time.monotonic() - began:.0f} s", flush=True)

        for mode in ("plain", "stream"):  # warm-up: first-call imports, connection pools
            for server in servers:
                measure(server, upstream.pid, mode, args.warmup, args, round_=-1)
        for round_ in range(args.rounds):
            # Each round starts one target later: no target is always measured first.
            shift = round_ % len(servers)
            for mode in ("plain", "stream"):
                for server in servers[shift:] + servers[:shift]:
                    phase = measure(server, upstream.pid, mode, args.requests, args, round_)
                    run.phases.append(phase)
                    print(
                        f"round {round_ + 1} {mode:6} {server.name:32} {phase.load.rps:6.0f} req/s"
                        f" {phase.cpu_ms_per_request:7.2f} ms CPU/request"
                        f" (rest of machine {phase.rest_ms_per_request:.2f}, steal"
                        f" {phase.steal_ms_per_request:.2f}), {phase.load.failed} failed"
                        + (f" ({phase.load.failure_summary()})" if phase.load.failures else ""),
                        flush=True,
                    )

        if args.long_stream_chunks:

            def measure_long(server: Server, body: dict[str, Any], n: int, conns: int) -> Phase:
                return measure(
                    server, upstream.pid, "long-stream", n, args, body=body, connections=conns
                )

            run.long_streams = long_stream_phase(
                servers, MODEL, args.long_stream_chunks, measure_long
            )

        profiles = []
        keys = {"sqlite": OURS_SQLITE, "postgres": OURS_PG, "stock": STOCK}
        chosen = {keys[k] for k in args.profile.split(",") if k in keys}
        if not args.py_spy:
            run.notes.append("no profile: py-spy not found (pass --py-spy PATH)")
        for server in servers if args.py_spy and args.profile_requests else []:
            if server.name in chosen:
                for mode in ("plain", "stream"):
                    phase, summary = profile(server, upstream.pid, mode, args, work)
                    profiles.append((server.name, mode, phase, summary))

        checks = []
        for server in servers:
            if server.database_url is None:
                continue
            rows, ok, units = asyncio.run(usage_counts(server.database_url))
            verdict = "equal" if rows == server.answered == ok else "NOT EQUAL"
            checks.append(
                f"- {server.name}: usage records {rows} (status success: {ok}), requests "
                f"answered {server.answered} → **{verdict}**; {units} units debited"
            )
        print("\n" + report(run, checks, profiles, time.monotonic() - began, load_at_start))
        if args.json:
            args.json.write_text(as_json(run, checks, profiles), encoding="utf-8")
    finally:
        for process in reversed(processes):
            stop(process)
        for name in scratch:
            postgres_admin(args.postgres_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
