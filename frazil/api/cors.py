"""CORS for the routes a browser page on another origin may call: functions' HTTP endpoints,
the end users' auth routes and the data tables. Nothing else (the admin API, the console)
answers a cross-origin browser: those take the admin key and have no business on other sites.

Starlette's CORSMiddleware does the work (preflight and the headers on actual requests); this
wrapper only decides which paths it sees. Credentials are bearer tokens sent by script, never
cookies, so `Access-Control-Allow-Credentials` stays off (and `*` is a valid origin list).
"""
from __future__ import annotations

from starlette.middleware.cors import CORSMiddleware

CORS_PREFIXES = ("/fn/", "/v1/auth/", "/v1/tables")
# How long a browser may reuse a preflight's answer.
PREFLIGHT_MAX_AGE_S = 600


class PathCors:
    def __init__(self, app, origins: tuple[str, ...], prefixes: tuple[str, ...] = CORS_PREFIXES):
        self.app = app
        self.prefixes = prefixes
        self.cors = CORSMiddleware(app, allow_origins=list(origins), allow_methods=["*"], allow_headers=["*"],
                                   expose_headers=["*"], allow_credentials=False, max_age=PREFLIGHT_MAX_AGE_S)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"].startswith(self.prefixes):
            return await self.cors(scope, receive, send)
        return await self.app(scope, receive, send)
