"""The web console: static assets under /console (no build step, no third-party code),
`GET /v1/stats`, a JSON snapshot of the numbers the console charts, and `GET /v1/stats/history`,
the last hour of them (frazil.console.stats).

The console pages hold no data and no key: the browser asks for the admin key, keeps it in
localStorage and calls the ordinary HTTP API with it. Every console response carries a strict
Content-Security-Policy (same-origin scripts, styles, images and connections; no inline code).
"""
from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import RedirectResponse, Response

from frazil.api.deps import platform, require_admin
from frazil.api.models import ADMIN_ANSWERS, Stats, StatsHistory, answers, returns
from frazil.errors import NotFound
from frazil.console.stats import full_snapshot
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

@router.get("/v1/stats", tags=["health"], dependencies=[Depends(require_admin)],
            summary="A JSON snapshot of the live numbers (counters, latency histogram, tiers, instances, queue)",
            **returns(Stats), responses=answers(*ADMIN_ANSWERS))
async def stats(request: Request, plat=Depends(platform)):
    return {"success": True, **await full_snapshot(plat)}


@router.get("/v1/stats/history", tags=["health"], dependencies=[Depends(require_admin)],
            summary="The last hour of the live numbers, one sample per interval (counters as differences)",
            **returns(StatsHistory), responses=answers(*ADMIN_ANSWERS))
async def stats_history(function: str | None = Query(None, description="only this function's counters"),
                        plat=Depends(platform)):
    ring = plat.stats_ring
    return {"success": True, "interval_s": ring.interval_s, "latency_buckets_s": [float(b) for b in LATENCY_BUCKETS],
            "samples": ring.samples(function or None)}
