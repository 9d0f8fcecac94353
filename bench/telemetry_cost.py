"""Telemetry cost: approval latency with tracing, worker metrics and access logs on, against the same service
with them off, in one run on one dev server and PostgreSQL, requests interleaved so both see the same noise.

Two deployments of the service (API and worker processes each), side by side:
- `off`: the defaults: no OTEL_EXPORTER_OTLP_ENDPOINT (no tracing), no WORKER_METRICS_ADDRESS, no access log;
- `on`: OTEL_EXPORTER_OTLP_ENDPOINT set (FastAPI, asyncpg and Temporal spans, batched and exported over
  OTLP/HTTP to a local sink that answers 200, standing in for a collector), the worker's Prometheus endpoint
  on, and uvicorn's access log (JSON lines) on.
Both serve `/metrics` (it cannot be turned off) and log JSON. The decisions are the approval-latency ones:
submit the improvement plan (trust), return it with a reason (improvement director), over and over.

    python -m bench.telemetry_cost            # 8 regimes per deployment x 40 rounds
    python -m bench.telemetry_cost --quick    # CI
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

from bench.approval_latency import Sequence, place, wait_tasks
from bench.common import (
    dev_server,
    free_port,
    parser,
    postgres,
    project,
    ratio,
    scratch,
    summary_ms,
    write_results,
)

NAME = "telemetry_cost"


class Sink(BaseHTTPRequestHandler):
    """An OTLP/HTTP endpoint that takes every export and keeps only its count (outside the system)."""
    exports = 0

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        Sink.exports += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def otlp_sink():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


async def run(args) -> None:
    started = time.monotonic()
    n_wf, rounds, warm = (2, 6, 1) if args.quick else (8, 40, 2)
    with scratch("sm-bench-tel-") as tmp, contextlib.ExitStack() as es:
        address = args.temporal_address or es.enter_context(dev_server(tmp)).address
        url = args.database_url or es.enter_context(postgres(tmp)).get_uri()
        sink = es.enter_context(otlp_sink())
        telemetry = {"api_log_args": ("--log-level", "info"), "extra_env": {
            "OTEL_EXPORTER_OTLP_ENDPOINT": sink, "OTEL_BSP_SCHEDULE_DELAY": "500",
            "WORKER_METRICS_ADDRESS": f"127.0.0.1:{free_port()}"}}
        async with project(address, url, tmp) as off, project(address, url, tmp, **telemetry) as on, \
                httpx.AsyncClient(timeout=60) as http:
            tag = uuid.uuid4().hex[:3].upper()
            seqs: dict[str, list[Sequence]] = {}
            tokens: dict[tuple[str, str], dict] = {}
            for name, p in (("off", off), ("on", on)):
                http.base_url = p.base_url
                seqs[name] = []
                for i in range(n_wf):
                    ods = f"{name[1].upper()}{tag}{i:02d}"
                    seqs[name].append(Sequence(await place(http, p, ods), ods))
                    tokens[(ods, "trust")] = p.auth(f"trust-{ods}", "trust", trusts=[ods])
                    tokens[(ods, "improvement_director")] = p.auth(f"id-{ods}", "improvement_director",
                                                                  trusts=[ods])
                await wait_tasks(http, p, [s.regime_id for s in seqs[name]])
            bases = {"off": off.base_url, "on": on.base_url}
            series: dict[str, list[float]] = {"off": [], "on": []}

            async def call(name: str, s: Sequence) -> float:
                step, role, body = s.next()
                t = time.perf_counter()
                r = await http.post(f"{bases[name]}/regimes/{s.regime_id}/steps/{step}/decisions", json=body,
                                    headers=tokens[(s.ods, role)])
                dt = time.perf_counter() - t
                assert r.status_code == 200, (step, r.status_code, r.text)
                return dt

            for rnd in range(warm + rounds):
                for i in range(n_wf):
                    order = ("off", "on") if (rnd + i) % 2 == 0 else ("on", "off")
                    for name in order:
                        dt = await call(name, seqs[name][i])
                        if rnd >= warm:
                            series[name].append(dt)
            await asyncio.sleep(1.5)  # the batch processor's last export
            exports = Sink.exports
        stats = {k: summary_ms(v) for k, v in series.items()}
        ratios = {"on_vs_off": {q: ratio(stats["on"][q], stats["off"][q]) for q in ("p50_ms", "p95_ms", "p99_ms")}}
        for k, v in stats.items():
            print(f"telemetry {k:4s} p50 {v['p50_ms']:7.1f}  p95 {v['p95_ms']:7.1f}  p99 {v['p99_ms']:7.1f} ms"
                  f"  (n={v['n']})")
        print(f"on / off: {ratios['on_vs_off']}; OTLP exports received: {exports}")
        assert exports > 0, "tracing was on but nothing reached the OTLP sink"
        write_results(NAME, args, {"regimes_per_deployment": n_wf, "rounds": rounds, "warmup_rounds": warm,
                                   "concurrency": 1, "temporal": "dev server, SQLite file"},
                      {"latency": stats, "otlp_exports": exports}, ratios, started=started,
                      notes=["on: tracing exported over OTLP/HTTP to a local sink, worker metrics endpoint, "
                             "access log; off: none of these. Both serve /metrics and log JSON."])


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
