"""One cold start, in a fresh process started by bench/cold_start.py (run as a script, not as bench.*).

It loads a function target the way ``functions-framework --target=NAME`` does (``functions_framework.create_app``
on functions/main.py), answers one request in-process through ``httpx.ASGITransport``, and prints one JSON line of
CLOCK_MONOTONIC timestamps (the same clock in every process on Linux), so the parent can split the time into
interpreter start-up, the harness's own import of httpx, loading the target, and the first request, and the CPU
seconds the process used up to its answer.

The harness imports httpx the way the product's entry points leave it: without httpx's command-line client
(``httpx._main``, which loads click, rich and pygments; see farmsync.startup), so the "harness" phase is not
inflated by ~50 ms a deployed function no longer pays, and functions/main.py finds httpx as it would anyway.

Usage: python bench/cold_child.py '<json spec>'   (mode "pass" only reports when the interpreter got here;
mode "floor" only imports the modules the spec lists, then reports)
"""

import time

T_MAIN = time.monotonic()

import json  # noqa: E402 - the timestamp above must come first
import sys  # noqa: E402


def main() -> None:
    spec = json.loads(sys.argv[1])
    if spec.get("mode") != "pass":
        from farmsync.startup import skip_httpx_cli

        skip_httpx_cli()  # what functions/main.py does first; before the harness's own import of httpx
    if spec.get("mode") == "floor":
        import importlib

        for name in spec["imports"]:
            importlib.import_module(name)
    if spec.get("mode") in ("pass", "floor"):
        now = time.monotonic()
        cpu = time.process_time()
        print(
            json.dumps(
                {"main": T_MAIN, "harness": now, "loaded": now, "response": now, "status": 0, "cpu": cpu}
            ),
            flush=True,
        )
        return
    import asyncio

    import httpx  # the harness's client (without its CLI, as above); the targets import it anyway

    t_harness = time.monotonic()
    import functions_framework

    app = functions_framework.create_app(spec["target"], spec["source"])
    t_loaded = time.monotonic()

    async def ask() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://function.local", timeout=60
        ) as client:
            body = spec.get("json")
            return await client.request(
                spec["method"],
                spec["path"],
                headers=spec.get("headers") or {},
                content=json.dumps(body).encode() if body is not None else b"",
            )

    response = asyncio.run(ask())
    t_response = time.monotonic()
    cpu = time.process_time()  # user + system seconds of every thread since the process started
    heavy = sorted(m for m in sys.modules if m.startswith(("grpc", "google.cloud.firestore")))
    print(
        json.dumps(
            {
                "main": T_MAIN,
                "harness": t_harness,
                "loaded": t_loaded,
                "response": t_response,
                "cpu": cpu,
                "status": response.status_code,
                "body": response.text[:400],
                "modules": len(sys.modules),
                "grpc_or_firestore_modules": len(heavy),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
