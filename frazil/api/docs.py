"""`/docs` (Swagger UI) and `/redoc` (ReDoc) from files installed with frazil, never a CDN.

FastAPI's own pages load Swagger UI and ReDoc from jsdelivr and start them with an inline
script: they are blank on a machine without internet, and an inline script is what a strict
Content-Security-Policy refuses. Here the bundles come from the `fastapi-offline` package
(it ships them as package data; we use its files, not its FastAPI subclass), our pages start
them from a same-origin file, and each response carries the console's strict CSP with the
few additions the bundles need (`SWAGGER_CSP`, `REDOC_CSP`).
"""
from __future__ import annotations

import html
from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from frazil.console.router import CSP, SECURITY_HEADERS
from frazil.errors import NotFound

router = APIRouter(include_in_schema=False)

ASSET_PREFIX = "/docs/assets/"
OUR_ASSETS = Path(__file__).resolve().parent / "docs_static"

CONTENT_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
                 ".png": "image/png"}


def _assets() -> dict[str, Path]:
    """The servable files, by name: the bundles fastapi-offline installs, and our starter."""
    bundled = Path(str(files("fastapi_offline") / "static"))
    names = {"swagger-ui-bundle.js": bundled, "swagger-ui.css": bundled, "redoc.standalone.js": bundled,
             "favicon.png": bundled, "swagger-init.js": OUR_ASSETS}
    return {name: folder / name for name, folder in names.items()}


ASSETS = _assets()

# The console's policy, with what the bundles need. None of the additions lets markup
# injected into a page run code (scripts stay same-origin files only):
# - img-src data: both draw icons (Swagger UI's select arrows, ReDoc's search glass) as data: SVGs;
# - ReDoc, style-src 'unsafe-inline': it styles the page with <style> elements it writes at run
#   time (styled-components; the bundle takes no nonce from the page);
# - ReDoc, worker-src blob: its search index runs in a worker it builds from a blob.
SWAGGER_CSP = CSP.replace("img-src 'self'", "img-src 'self' data:")
REDOC_CSP = SWAGGER_CSP.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'") + "; worker-src blob:"
OTHER_HEADERS = {k: v for k, v in SECURITY_HEADERS.items() if k != "Content-Security-Policy"}

SWAGGER_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title} - API docs</title>
<link rel="icon" type="image/png" href="{assets}favicon.png">
<link rel="stylesheet" href="{assets}swagger-ui.css">
</head>
<body data-openapi-url="{openapi}">
<div id="swagger-ui"></div>
<script src="{assets}swagger-ui-bundle.js"></script>
<script src="{assets}swagger-init.js"></script>
</body>
</html>
"""

# ReDoc starts by itself on a <redoc spec-url> element: no script of ours is needed.
REDOC_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title} - API reference</title>
<link rel="icon" type="image/png" href="{assets}favicon.png">
</head>
<body>
<redoc spec-url="{openapi}"></redoc>
<script src="{assets}redoc.standalone.js"></script>
</body>
</html>
"""


def _page(template: str, csp: str, request: Request) -> HTMLResponse:
    app = request.app
    text = template.format(title=html.escape(app.title), assets=ASSET_PREFIX, openapi=html.escape(app.openapi_url))
    return HTMLResponse(text, headers={**OTHER_HEADERS, "Content-Security-Policy": csp})


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    return _page(SWAGGER_PAGE, SWAGGER_CSP, request)


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    return _page(REDOC_PAGE, REDOC_CSP, request)


@router.get(ASSET_PREFIX + "{name}")
async def asset(name: str) -> Response:
    path = ASSETS.get(name)  # only the listed names: no path from the URL reaches the disk
    if path is None:
        raise NotFound(f"no docs asset {name!r}")
    # The bundles change only with an upgrade of the package: let browsers keep them a day.
    headers = {**SECURITY_HEADERS, "Cache-Control": "public, max-age=86400"}
    return Response(path.read_bytes(), media_type=CONTENT_TYPES[path.suffix], headers=headers)
