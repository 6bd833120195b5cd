"""The FastAPI application factory."""
from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI
from frazil.api.responses import JSONResponse

from frazil import __version__
from frazil.api import auth, cluster, docs, endpoints, functions, health, invocations, tables, users
from frazil.api.cors import PathCors
from frazil.api.errors import install_error_handlers
from frazil.api.openapi import install_openapi
from frazil.console.router import router as console_router
from frazil.settings import Role, Settings

# Every resource's router; each module owns its routes.
ROUTERS = [health.router, functions.router, invocations.router, auth.router, users.router, tables.router,
           endpoints.router, cluster.router, console_router, docs.router]
# An invoker serves only these (SPEC "Deployment shapes").
INVOKER_ROUTERS = [health.router]


def create_app(settings: Settings, platform=None) -> FastAPI:
    """The app; it starts and stops a `Platform` built from `settings` unless one is given."""
    from frazil.platform import Platform

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        plat = platform or Platform(settings)
        await plat.start()
        app.state.platform = plat
        try:
            yield
        finally:
            await plat.stop()

    app = FastAPI(
        title="frazil",
        version=__version__,
        description="Self-hosted serverless cloud functions. Routes take `Authorization: Bearer <token>`: the "
                    "admin key, or on the data tables and `user` functions an end user's token. Every refusal "
                    "is JSON with `success: false`, a `message` and an `error` object naming its `type`.",
        default_response_class=JSONResponse,
        lifespan=lifespan,
        docs_url=None, redoc_url=None,  # FastAPI's pages need a CDN: frazil.api.docs serves its own
    )
    install_error_handlers(app)
    install_openapi(app)
    for router in (INVOKER_ROUTERS if settings.role is Role.INVOKER else ROUTERS):
        app.include_router(router)
    if settings.cors_origins:
        app.add_middleware(PathCors, origins=settings.cors_origins)
    return app
