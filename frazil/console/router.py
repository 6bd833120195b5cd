"""The web console: static assets under /console (no build step, no third-party code) and
`GET /v1/stats`, a JSON snapshot of the numbers the console charts.

The console pages hold no data and no key: the browser asks for the admin key, keeps it in
localStorage and calls the ordinary HTTP API with it. Every console response carries a strict
Content-Security-Policy (same-origin scripts, styles, images and connections; no inline code).
"""
from __future__ import annotations

import time
from pathlib import Path

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from frazil.api.deps import platform, require_admin
from frazil.errors import NotFound
from frazil.metrics import LATENCY_BUCKETS

router = APIRouter()

STATIC_DIR = Path(__file__).resolve().parent / "static"

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json",
}

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")

SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}

# The icon lives here rather than as a file: package data ships *.js/*.css/*.html only.
FAVICON_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32">'
    '<rect width="32" height="32" rx="7" fill="#0f2a44"/>'
    '<path d="M16 5v22M6.5 10.5l19 11M25.5 10.5l-19 11" stroke="#7dd3fc" stroke-width="2.6" '
    'stroke-linecap="round"/><circle cx="16" cy="16" r="3.2" fill="#e0f2fe"/></svg>'
)


def _assets() -> dict[str, Path]:
    """The servable files, by name: only what is in static/ (no path ever reaches the disk)."""
    return {p.relative_to(STATIC_DIR).as_posix(): p for p in sorted(STATIC_DIR.rglob("*"))
            if p.is_file() and p.suffix in CONTENT_TYPES}


ASSETS = _assets()


def _asset_response(name: str) -> Response:
    path = ASSETS.get(name)
    if path is None:
        raise NotFound(f"no console asset {name!r}")
    headers = dict(SECURITY_HEADERS)
    # Assets are small and change with frazil itself: revalidate every time (cheap, never stale).
    headers["Cache-Control"] = "no-cache"
    return Response(path.read_bytes(), media_type=CONTENT_TYPES[path.suffix], headers=headers)


@router.api_route("/console", methods=["GET", "HEAD"], include_in_schema=False)
async def console_page():
    return _asset_response("index.html")


@router.get("/console/", include_in_schema=False)
async def console_slash():
    return RedirectResponse("/console", status_code=308)


@router.get("/console/favicon.svg", include_in_schema=False)
async def favicon():
    return Response(FAVICON_SVG, media_type=CONTENT_TYPES[".svg"],
                    headers={**SECURITY_HEADERS, "Cache-Control": "max-age=86400"})


@router.api_route("/console/{name:path}", methods=["GET", "HEAD"], include_in_schema=False)
async def console_asset(name: str):
    return _asset_response(name)


# --- stats ---------------------------------------------------------------------------------

def _samples(collector):
    for metric in collector.collect():
        yield from metric.samples


def _function_entry(table: dict, name: str, n_buckets: int) -> dict:
    entry = table.get(name)
    if entry is None:
        entry = table[name] = {"invocations": {}, "cold_starts": 0, "throttled_sync": 0,
                               "duration": {"count": 0, "sum": 0.0, "buckets": [0] * n_buckets}}
    return entry


def stats_snapshot(plat) -> dict:
    """The counters, the latency histogram (cumulative buckets, per function and in all), the
    tiers' running invocations against their limits, and the instances, read from the platform."""
    metrics = plat.metrics
    bounds = [float(b) for b in LATENCY_BUCKETS]
    n_buckets = len(bounds) + 1  # the last one is +Inf
    index = {b: i for i, b in enumerate(bounds)}
    per_function: dict[str, dict] = {}
    for sample in _samples(metrics.invocations):
        if sample.name.endswith("_total"):
            entry = _function_entry(per_function, sample.labels["function"], n_buckets)
            entry["invocations"][sample.labels["status"]] = int(sample.value)
    for sample in _samples(metrics.cold_starts):
        if sample.name.endswith("_total"):
            _function_entry(per_function, sample.labels["function"], n_buckets)["cold_starts"] = int(sample.value)
    for sample in _samples(metrics.throttled_sync):
        if sample.name.endswith("_total"):
            _function_entry(per_function, sample.labels["function"], n_buckets)["throttled_sync"] = int(sample.value)
    for sample in _samples(metrics.duration):
        duration = _function_entry(per_function, sample.labels["function"], n_buckets)["duration"]
        if sample.name.endswith("_bucket"):
            le = float(sample.labels["le"])
            duration["buckets"][index.get(le, n_buckets - 1)] = int(sample.value)
        elif sample.name.endswith("_count"):
            duration["count"] = int(sample.value)
        elif sample.name.endswith("_sum"):
            duration["sum"] = sample.value

    totals = {"invocations": {}, "cold_starts": 0, "throttled_sync": 0,
              "duration": {"count": 0, "sum": 0.0, "buckets": [0] * n_buckets}}
    for entry in per_function.values():
        for status, n in entry["invocations"].items():
            totals["invocations"][status] = totals["invocations"].get(status, 0) + n
        totals["cold_starts"] += entry["cold_starts"]
        totals["throttled_sync"] += entry["throttled_sync"]
        totals["duration"]["count"] += entry["duration"]["count"]
        totals["duration"]["sum"] += entry["duration"]["sum"]
        totals["duration"]["buckets"] = [a + b for a, b in zip(totals["duration"]["buckets"],
                                                                entry["duration"]["buckets"])]
    return {
        "time": time.time(),
        "tiers": {str(mb): {"running": slots.running, "limit": slots.limit, "waiting": slots.waiting}
                  for mb, slots in sorted(plat.admission.tiers.items())},
        "instances": plat.pool.counts(),
        "latency_buckets_s": bounds,  # upper bounds; every "buckets" list has one more entry, +Inf
        "totals": totals,
        "functions": per_function,
    }


@router.get("/v1/stats", tags=["health"], dependencies=[Depends(require_admin)],
            summary="A JSON snapshot of the live numbers (counters, latency histogram, tiers, instances, queue)")
async def stats(request: Request, plat=Depends(platform)):
    snapshot = stats_snapshot(plat)
    snapshot["queue_depth"] = await plat.invocations.count_queued()
    return {"success": True, **snapshot}
