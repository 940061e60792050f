"""A local stand-in for Statsig's event API: a real HTTP server for tests, the demo and benchmarks.

It implements `POST /v1/log_event` as Statsig documents it — server-secret check, gzip bodies,
the 10 MB request limit (413), payloads validated against Statsig's published OpenAPI spec,
`202 {"success": true}` — plus `mark_data_ready_dwh` and the start-up calls of Statsig's Python
SDK (whose own `statsig::` diagnostics events are accepted beside the schema, as Statsig does, and
counted apart). It stores what it accepts and shows it under `/_emulator/*`, and injects faults on request:
429 with Retry-After, 5xx, connection resets, slow answers, and accept-then-time-out.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
import json
import random
import socket
import struct
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

MAX_REQUEST_BYTES = 10 * 1024 * 1024  # Statsig drops requests over 10 MB
MARK_DATA_READY_INTERVAL = dt.timedelta(hours=2)
FAULT_KINDS = ("429", "500", "502", "503", "reset", "slow", "accept_then_timeout")


def load_log_event_schema() -> dict[str, Any]:
    """The LogEventRequest schema from Statsig's published HTTP API spec, refs resolved in place."""
    spec = json.loads(resources.files(__package__).joinpath("statsig_http_api.json").read_text())

    def clean(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: clean(v) for k, v in node.items() if k not in ("example", "examples")}
        if isinstance(node, list):
            return [clean(v) for v in node]
        return node

    return {"$ref": "#/components/schemas/LogEventRequest", "components": clean(spec["components"])}


def _validator() -> Any:
    import jsonschema_rs

    return jsonschema_rs.validator_for(load_log_event_schema(), validate_formats=False)


@dataclass
class FaultPlan:
    queue: list[dict[str, Any]] = field(default_factory=list)
    rate: float = 0.0
    kinds: tuple[str, ...] = ("429", "503", "reset")
    retry_after: float = 1.0
    delay: float = 5.0
    rng: random.Random = field(default_factory=random.Random)

    def next(self) -> dict[str, Any] | None:
        if self.queue:
            return self.queue.pop(0)
        if self.rate and self.rng.random() < self.rate:
            kind = self.rng.choice(self.kinds)
            return {"kind": kind, "retry_after": self.retry_after, "delay": self.delay}
        return None


@dataclass
class Store:
    """What the emulator accepted: raw request bodies plus counters."""

    bodies: list[bytes] = field(default_factory=list)
    events: int = 0
    requests: int = 0
    by_event_name: Counter = field(default_factory=Counter)
    refused: Counter = field(default_factory=Counter)
    faults: Counter = field(default_factory=Counter)
    data_ready: list[dict[str, Any]] = field(default_factory=list)
    client_time_headers: int = 0
    gzip_requests: int = 0
    bytes_received: int = 0
    refusals: list[str] = field(default_factory=list)  # the last few refusal messages
    internal_events: int = 0  # the SDKs' own `statsig::` events (diagnostics), not counted as events


class Emulator:
    def __init__(self, keys: list[str] | None = None, *, data_dir: Path | None = None) -> None:
        self.keys = set(keys or [])
        self.store = Store()
        self.faults = FaultPlan()
        self.validate = _validator()
        self.data_dir = data_dir
        if data_dir:
            data_dir.mkdir(parents=True, exist_ok=True)
            self._load_persisted()

    # ------------------------------------------------------------------ app
    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_REQUEST_BYTES + 1)
        app.router.add_route("POST", "/v1/log_event", self.log_event, expect_handler=self.expect)
        app.router.add_route("POST", "/v1/mark_data_ready_dwh", self.mark_data_ready)
        app.router.add_route("GET", "/v1/download_config_specs/{key}", self.download_config_specs)
        app.router.add_route("GET", "/v2/download_config_specs/{key}", self.download_config_specs)
        app.router.add_route("POST", "/v1/download_config_specs", self.download_config_specs)
        app.router.add_route("POST", "/v1/get_id_lists", self.get_id_lists)
        app.router.add_route("POST", "/v1/sdk_exception", self.sdk_exception)
        app.router.add_get("/_emulator/health", self.health)
        app.router.add_get("/_emulator/stats", self.stats)
        app.router.add_get("/_emulator/events", self.events)
        app.router.add_post("/_emulator/faults", self.set_faults)
        app.router.add_delete("/_emulator/faults", self.clear_faults)
        app.router.add_post("/_emulator/reset", self.reset)
        return app

    # ------------------------------------------------------------------ checks
    def _key_ok(self, request: web.Request) -> bool:
        key = request.headers.get("STATSIG-API-KEY", "")
        if self.keys:
            return key in self.keys
        return key.startswith("secret-")

    def _refuse(self, status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
        self.store.refused[str(status)] += 1
        self.store.refusals = [*self.store.refusals[-9:], f"{status}: {message}"]
        return web.json_response({"success": False, "message": message}, status=status, headers=headers)

    def _decide(self, request: web.Request) -> dict[str, Any] | None:
        if "fault" not in request:
            request["fault"] = self.faults.next()
            if request["fault"]:
                self.store.faults[request["fault"]["kind"]] += 1
        return request["fault"]

    async def _pre_body(self, request: web.Request) -> web.StreamResponse | None:
        """Checks and faults that happen before the body is read."""
        if not self._key_ok(request):
            return self._refuse(401, "invalid or missing STATSIG-API-KEY (a server secret is required)")
        length = request.content_length
        if length is not None and length > MAX_REQUEST_BYTES:
            return self._refuse(413, "request is larger than 10 MB")
        fault = self._decide(request)
        if fault is None:
            return None
        kind = fault["kind"]
        if kind == "reset":
            _reset(request)
            return web.Response(status=500)
        if kind == "429":
            return self._refuse(429, "rate limited", {"Retry-After": str(int(fault.get("retry_after", 1)))})
        if kind in ("500", "502", "503"):
            return self._refuse(int(kind), "temporarily unavailable")
        return None

    async def expect(self, request: web.Request) -> web.StreamResponse | None:
        early = await self._pre_body(request)
        if early is not None:
            return early
        if request.headers.get("Expect", "").lower() == "100-continue":
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0
        return None

    # ------------------------------------------------------------------ log_event
    async def log_event(self, request: web.Request) -> web.StreamResponse:
        if "fault" not in request:  # no Expect header: the checks run now (the body may already be here)
            early = await self._pre_body(request)
            if early is not None:
                return early
        fault = request.get("fault") or {}
        if fault.get("kind") == "slow":
            await asyncio.sleep(float(fault.get("delay", 5.0)))
        raw = await request.read()
        self.store.bytes_received += len(raw)
        if request.headers.get("Content-Encoding", "").lower() == "gzip":
            self.store.gzip_requests += 1
            try:
                raw = _gunzip(raw, MAX_REQUEST_BYTES)
            except _TooLarge:
                return self._refuse(413, "request is larger than 10 MB once decompressed")
            except (OSError, zlib.error, EOFError):
                return self._refuse(400, "body is not valid gzip")
        elif len(raw) > MAX_REQUEST_BYTES:
            return self._refuse(413, "request is larger than 10 MB")
        try:
            payload = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            return self._refuse(400, f"body is not JSON: {exc}")
        errors = [] if self.validate.is_valid(payload) else [
            e for e in self.validate.iter_errors(payload) if not _internal_event_error(payload, e.instance_path)]
        if errors:
            first = errors[0]
            path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first.instance_path).lstrip(".")
            return self._refuse(400, f"{path or 'body'}: {first.message} ({len(errors)} schema error(s))")
        events = payload["events"]
        self._accept(raw, events, request)
        if fault.get("kind") == "accept_then_timeout":
            await asyncio.sleep(float(fault.get("delay", 30.0)))
            _reset(request)
        return web.json_response({"success": True}, status=202)

    def _accept(self, raw: bytes, events: list[dict[str, Any]], request: web.Request) -> None:
        s = self.store
        s.bodies.append(bytes(raw))
        s.requests += 1
        names = Counter(e["eventName"] for e in events)
        for name in [n for n in names if n.startswith("statsig::")]:
            s.internal_events += names.pop(name)
        s.events += sum(names.values())
        s.by_event_name.update(names)
        if request.headers.get("STATSIG-CLIENT-TIME", "").isdigit():
            s.client_time_headers += 1
        if self.data_dir:
            with (self.data_dir / "requests.jsonl").open("ab") as f:
                f.write(orjson.dumps({"events": events}) + b"\n")

    def _load_persisted(self) -> None:
        path = self.data_dir / "requests.jsonl" if self.data_dir else None
        if path and path.exists():
            for line in path.read_bytes().splitlines():
                events = [e for e in orjson.loads(line)["events"] if not _is_internal(e)]
                self.store.bodies.append(line)
                self.store.requests += 1
                self.store.events += len(events)
                self.store.by_event_name.update(e["eventName"] for e in events)

    # ------------------------------------------------------------------ mark_data_ready_dwh
    async def mark_data_ready(self, request: web.Request) -> web.StreamResponse:
        if not self._key_ok(request):
            return self._refuse(401, "invalid or missing statsig-api-key")
        try:
            body = await request.json()
        except ValueError:
            return self._refuse(400, "body is not JSON")
        kind = body.get("type")
        if kind not in ("events", "metrics") or not body.get("datestamps"):
            return self._refuse(400, "datestamps and type ('events' or 'metrics') are required")
        sources = tuple(sorted(body.get("sources") or []))
        now = dt.datetime.now(dt.timezone.utc)
        for earlier in reversed(self.store.data_ready):
            if earlier["type"] == kind and tuple(earlier["sources"]) == sources:
                if now - dt.datetime.fromisoformat(earlier["at"]) < MARK_DATA_READY_INTERVAL:
                    return self._refuse(429, "mark_data_ready_dwh is limited to once every two hours")
                break
        self.store.data_ready.append({"type": kind, "sources": list(sources), "datestamps": body["datestamps"],
                                      "at": now.isoformat()})
        return web.json_response({"success": True})

    # ------------------------------------------------------------------ SDK start-up
    async def download_config_specs(self, request: web.Request) -> web.StreamResponse:
        key = request.match_info.get("key", "").removesuffix(".json") or request.headers.get("STATSIG-API-KEY", "")
        if not (key in self.keys if self.keys else key.startswith(("secret-", "client-"))):
            return self._refuse(401, "invalid sdk key")
        return web.json_response({"has_updates": True, "time": int(time.time() * 1000), "feature_gates": [],
                                  "dynamic_configs": [], "layer_configs": [], "layers": {}})

    async def get_id_lists(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({})

    async def sdk_exception(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        return web.json_response({"success": True}, status=202)

    # ------------------------------------------------------------------ inspection and control
    async def health(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"ok": True})

    async def stats(self, request: web.Request) -> web.StreamResponse:
        s = self.store
        return web.json_response({
            "requests": s.requests, "events": s.events, "internal_events": s.internal_events,
            "by_event_name": dict(s.by_event_name), "refused": dict(s.refused), "last_refusals": s.refusals,
            "faults": dict(s.faults), "gzip_requests": s.gzip_requests, "client_time_headers": s.client_time_headers,
            "bytes_received": s.bytes_received, "mark_data_ready": s.data_ready,
        })

    async def events(self, request: web.Request) -> web.StreamResponse:
        """Every stored event as newline-delimited JSON, in arrival order."""
        name = request.query.get("event_name")
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        for body in list(self.store.bodies):
            lines = [orjson.dumps(e) for e in orjson.loads(body)["events"]
                     if not _is_internal(e) and (name is None or e["eventName"] == name)]
            if lines:
                await response.write(b"\n".join(lines) + b"\n")
        await response.write_eof()
        return response

    async def set_faults(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        plan = FaultPlan()
        for item in body.get("plan", []):
            if item.get("kind") not in FAULT_KINDS:
                return web.json_response({"error": f"unknown fault kind {item.get('kind')!r}"}, status=400)
            plan.queue.append(item)
        if "rate" in body:
            plan.rate = float(body["rate"])
            plan.kinds = tuple(body.get("kinds", plan.kinds))
            plan.retry_after = float(body.get("retry_after", plan.retry_after))
            plan.delay = float(body.get("delay", plan.delay))
            plan.rng = random.Random(body.get("seed"))
            if any(k not in FAULT_KINDS for k in plan.kinds):
                return web.json_response({"error": f"fault kinds must be among {FAULT_KINDS}"}, status=400)
        self.faults = plan
        return web.json_response({"ok": True})

    async def clear_faults(self, request: web.Request) -> web.StreamResponse:
        self.faults = FaultPlan()
        return web.json_response({"ok": True})

    async def reset(self, request: web.Request) -> web.StreamResponse:
        self.store = Store()
        self.faults = FaultPlan()
        if self.data_dir and (self.data_dir / "requests.jsonl").exists():
            (self.data_dir / "requests.jsonl").unlink()
        return web.json_response({"ok": True})


def _is_internal(event: Any) -> bool:
    """Statsig SDKs' own events (`statsig::diagnostics`, exposures) carry structured metadata that
    the published schema does not describe; Statsig accepts them, so the emulator does too."""
    return isinstance(event, dict) and str(event.get("eventName", "")).startswith("statsig::")


def _internal_event_error(payload: Any, path: list[Any]) -> bool:
    if len(path) >= 2 and path[0] == "events" and isinstance(path[1], int):
        events = payload.get("events") if isinstance(payload, dict) else None
        return isinstance(events, list) and path[1] < len(events) and _is_internal(events[path[1]])
    return False


class _TooLarge(Exception):
    pass


def _gunzip(data: bytes, limit: int) -> bytes:
    d = zlib.decompressobj(wbits=47)  # gzip or zlib framing
    out = d.decompress(data, limit + 1)
    if len(out) > limit or d.unconsumed_tail:
        raise _TooLarge
    if not d.eof:
        raise EOFError("truncated gzip stream")
    return out


def _reset(request: web.Request) -> None:
    """Drop the connection with a TCP reset (SO_LINGER 0), as a crashing proxy would."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def serve(host: str = "127.0.0.1", port: int = 8787, keys: list[str] | None = None,
          data_dir: Path | None = None, ready_file: Path | None = None) -> None:
    """Run the emulator until interrupted; write the bound URL to `ready_file` once listening."""
    gc.set_threshold(200_000, 50, 100)  # parsing many small JSON objects: keep the collector out of the way
    emulator = Emulator(keys, data_dir=data_dir)

    async def main() -> None:
        runner = web.AppRunner(emulator.app(), access_log=None, auto_decompress=False)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0][1]
        url = f"http://{host}:{bound}"
        print(f"Statsig emulator listening on {url}", flush=True)
        if ready_file is not None:
            ready_file.write_text(url)
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())


class EmulatorThread:
    """The emulator on a background thread of this process (port 0 = any free port)."""

    def __init__(self, keys: list[str] | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        import threading

        self.emulator = Emulator(keys)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._host, self._port = host, port
        self.url = ""
        self._thread = threading.Thread(target=self._run, name="statsig-emulator", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        runner = web.AppRunner(self.emulator.app(), access_log=None, auto_decompress=False)
        self._loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, self._host, self._port)
        self._loop.run_until_complete(site.start())
        self.url = f"http://{self._host}:{runner.addresses[0][1]}"
        self._runner = runner
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())

    def start(self) -> EmulatorThread:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the Statsig emulator did not start")
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
