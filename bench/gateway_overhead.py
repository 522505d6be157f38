"""Measure what the gateway adds: fake upstream vs stock LiteLLM proxy vs our gateway.

See bench/README.md. Loopback only; bounded request count; stops by itself."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fixtures.gateway import free_port  # noqa: E402

MODEL = "gpt-4.1-nano"
BODY = {"model": MODEL, "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 16}


@dataclass
class Result:
    name: str
    answered: int
    failed: int
    seconds: float
    latencies_ms: list[float]

    @property
    def rps(self) -> float:
        return self.answered / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def load(
    name: str, url: str, headers: dict[str, str], requests: int, concurrency: int
) -> Result:
    latencies: list[float] = []
    failed = 0
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i)

    async with httpx.AsyncClient(
        timeout=60, limits=httpx.Limits(max_connections=concurrency)
    ) as client:
        # warm-up (connection set-up, first-call imports inside the server)
        for _ in range(3):
            await client.post(url, json=BODY, headers=headers)

        async def worker() -> None:
            nonlocal failed
            while not queue.empty():
                queue.get_nowait()
                started = time.perf_counter()
                response = await client.post(url, json=BODY, headers=headers)
                if response.status_code == 200:
                    latencies.append((time.perf_counter() - started) * 1000)
                else:
                    failed += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    return Result(name, len(latencies), failed, seconds, latencies)


def report(
    args: argparse.Namespace, database_url: str, results: list[Result], records: int, answered: int
) -> None:
    print(
        f"\n{args.requests} requests, concurrency {args.concurrency}, "
        f"{args.workers} worker(s), database {database_url.split(':')[0]}\n"
    )
    print(f"{'target':16} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'failed':>7}")
    for r in results:
        print(f"{r.name:16} {r.rps:8.1f} {r.pct(0.5):8.1f} {r.pct(0.99):8.1f} {r.failed:7d}")
    stock, ours = results[1], results[2]
    added_mean = statistics.mean(ours.latencies_ms) - statistics.mean(stock.latencies_ms)
    print(
        "\nadded by our plugins over stock LiteLLM: "
        f"p50 {ours.pct(0.5) - stock.pct(0.5):+.1f} ms, "
        f"p99 {ours.pct(0.99) - stock.pct(0.99):+.1f} ms, mean {added_mean:+.1f} ms"
    )
    verdict = "EQUAL" if records == answered else "MISMATCH"
    print(f"usage records written: {records}; requests answered: {answered} -> {verdict}")


def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{url} exited during start; see {log}")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{url} did not start; see {log}")


def start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as handle:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--database-url", help="PostgreSQL server URL (default: SQLite file)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="wfg-bench-"))
    base_env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    base_env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    processes: list[subprocess.Popen[bytes]] = []
    pg_admin, pg_name = None, None
    try:
        upstream = subprocess.Popen(
            [sys.executable, "-m", "tests.fakes.upstream"], cwd=ROOT, env=base_env,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        processes.append(upstream)
        assert upstream.stdout is not None
        text = ""
        while not text.rstrip().endswith("}"):
            text += upstream.stdout.readline().decode()
        upstream_env = json.loads(text)
        env = {**base_env, **upstream_env}

        # 2. stock LiteLLM proxy: the same model entry, no plugins.
        config = yaml.safe_load((ROOT / "config.yaml").read_text())
        stock = {
            "model_list": [m for m in config["model_list"] if m["model_name"] == MODEL],
            "litellm_settings": {"turn_off_message_logging": True},
        }
        stock_config = work / "stock.yaml"
        stock_config.write_text(yaml.safe_dump(stock))
        stock_port = free_port()
        litellm_bin = str(Path(sys.executable).parent / "litellm")
        processes.append(
            start(
                [litellm_bin, "--config", str(stock_config), "--port", str(stock_port),
                 "--num_workers", str(args.workers)],
                {**env, "LITELLM_MASTER_KEY": "sk-bench-master-key-0123456789abcdef"},
                work / "stock.log",
            )
        )  # fmt: skip

        # 3. our gateway with a funded user.
        if args.database_url:
            import asyncio as _asyncio

            import asyncpg
            from sqlalchemy.engine import make_url

            pg_name = f"wfg_bench_{uuid.uuid4().hex[:8]}"
            pg_admin = args.database_url

            async def ddl(sql: str) -> None:
                conn = await asyncpg.connect(pg_admin)
                await conn.execute(sql)
                await conn.close()

            _asyncio.run(ddl(f'CREATE DATABASE "{pg_name}"'))
            database_url = (
                make_url(args.database_url)
                .set(database=pg_name)
                .render_as_string(hide_password=False)
            )
        else:
            database_url = f"sqlite:///{work / 'bench.db'}"
        # The shipped limits (free plan: 600 requests/minute) would refuse a long run with
        # 429s; keep the limiter on, with limits the benchmark never reaches.
        config["workforce_gateway"]["limits"]["plans"]["free"] = {"rpm": 10**6, "tpm": 10**9}
        gateway_config = work / "gateway.yaml"
        gateway_config.write_text(yaml.safe_dump(config))
        gw_env = {
            **env,
            "DATABASE_URL": database_url,
            "WFG_VAR_DIR": str(work / "var"),
            "WFG_CONFIG": str(gateway_config),
        }
        admin = str(Path(sys.executable).parent / "gateway-admin")
        run = lambda *a, **kw: subprocess.run([admin, *a], env=gw_env, check=True, **kw)  # noqa: E731
        run("db", "upgrade", capture_output=True)
        run("users", "create", "--email", "bench@example.com", "--name", "Bench", "--verified",
            capture_output=True)  # fmt: skip
        run("credits", "grant", "--email", "bench@example.com", "--amount", "1000",
            "--reason", "benchmark", capture_output=True)  # fmt: skip
        token = run("tokens", "create", "--email", "bench@example.com", "--name", "bench",
                    capture_output=True, text=True).stdout.strip()  # fmt: skip
        gw_port = free_port()
        processes.append(
            start(
                [sys.executable, "-m", "gateway_plugins.server"],
                {**gw_env, "GATEWAY_PORT": str(gw_port), "GATEWAY_WORKERS": str(args.workers)},
                work / "gateway.log",
            )
        )
        wait_ready(
            f"http://127.0.0.1:{stock_port}/health/liveliness", processes[1], work / "stock.log"
        )
        wait_ready(f"http://127.0.0.1:{gw_port}/healthz", processes[2], work / "gateway.log")

        targets = [
            ("fake upstream", f"{upstream_env['OPENAI_API_BASE']}/chat/completions",
             {"Authorization": f"Bearer {upstream_env['OPENAI_API_KEY']}"}),
            ("stock LiteLLM", f"http://127.0.0.1:{stock_port}/v1/chat/completions",
             {"Authorization": "Bearer sk-bench-master-key-0123456789abcdef"}),
            ("our gateway", f"http://127.0.0.1:{gw_port}/v1/chat/completions",
             {"Authorization": f"Bearer {token}"}),
        ]  # fmt: skip
        results = [
            asyncio.run(load(name, url, headers, args.requests, args.concurrency))
            for name, url, headers in targets
        ]
        time.sleep(2)  # settlement runs just after each response
        listing = run(
            "usage", "list", "--email", "bench@example.com", "--json",
            capture_output=True, text=True,
        )  # fmt: skip
        usage = json.loads(listing.stdout)
        gateway_answered = results[2].answered + 3  # + warm-up calls
        report(args, database_url, results, len(usage), gateway_answered)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        if pg_name and pg_admin:
            import asyncpg

            async def drop() -> None:
                conn = await asyncpg.connect(pg_admin)
                await conn.execute(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')
                await conn.close()

            asyncio.run(drop())


if __name__ == "__main__":
    main()
