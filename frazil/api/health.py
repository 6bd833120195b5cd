"""Liveness and Prometheus metrics."""
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from frazil import __version__
from frazil.api.deps import platform

router = APIRouter(tags=["health"])


def health(plat) -> dict:
    return {"success": True, "status": "ok", "version": __version__, "sandbox": plat.sandbox.name,
            "node": plat.node_id}


@router.get("/healthz", summary="Liveness (served by frazil.api.fastpath in a running server)")
async def healthz(plat=Depends(platform)):
    return health(plat)


@router.get("/metrics", response_class=Response)
async def metrics(request: Request, plat=Depends(platform)):
    plat.metrics.queue_depth.set(await plat.invocations.count_queued())
    return Response(generate_latest(plat.metrics.registry), media_type=CONTENT_TYPE_LATEST)
