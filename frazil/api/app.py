"""The FastAPI application factory."""
from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI
from frazil.api.responses import JSONResponse

from frazil import __version__
from frazil.api import auth, functions, health, invocations, tables
from frazil.api.errors import install_error_handlers
from frazil.console.router import router as console_router
from frazil.settings import Settings

# Every resource's router; each module owns its routes.
ROUTERS = [health.router, functions.router, invocations.router, auth.router, tables.router, console_router]


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
        description="Self-hosted serverless cloud functions. Admin routes take `Authorization: Bearer <admin key>`.",
        default_response_class=JSONResponse,
        lifespan=lifespan,
    )
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    return app
