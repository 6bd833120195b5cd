"""Health and Prometheus metrics.

/metrics tells the functions' names, traffic and the platform's state, so it needs the admin
key or `FRAZIL_METRICS_TOKEN` (a token a Prometheus server can hold without the admin key's
powers)."""
import hmac

from fastapi import APIRouter, Depends, Request, Security
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from frazil import __version__
from frazil.api.deps import BEARER, bearer_token, is_admin_token, platform
from frazil.api.models import RETRY_AFTER, Health, answers, returns
from frazil.api.responses import JSONResponse
from frazil.errors import Unauthorized
from frazil.outage import RETRY_AFTER_S
from frazil.settings import Settings

ENV_METRICS_TOKEN = Settings.env_name("metrics_token")

router = APIRouter(tags=["health"])


async def health(plat) -> tuple[int, dict, dict[str, str]]:
    """(status, body, headers) of /healthz: 200 `ok`, or 503 `degraded` with the reasons (the
    database unreachable, the disk full) while an outage lasts (frazil.outage.HealthMonitor)."""
    body = {"success": True, "status": "ok", "version": __version__, "sandbox": plat.sandbox.name,
            "node": plat.node_id}
    outages = await plat.health.outages()
    if not outages:
        return 200, body, {}
    reasons = [o.reason for o in outages]
    body.update(success=False, status="degraded", reasons=reasons,
                message="the platform is degraded: " + "; ".join(reasons))
    return 503, body, {"Retry-After": str(RETRY_AFTER_S)}


# Served by frazil.api.fastpath in a running server; this route documents it.
@router.get("/healthz", summary="Health: 200 ok, or 503 degraded with the reasons", **returns(Health),
            responses={503: {"model": Health, "description": "Degraded: `reasons` says why", "headers": RETRY_AFTER}})
async def healthz(plat=Depends(platform)):
    status, body, headers = await health(plat)
    return JSONResponse(body, status_code=status, headers=headers)


async def metrics_reader(request: Request, _=Security(BEARER)) -> None:
    token = bearer_token(request)
    if token is None:
        raise Unauthorized(f"/metrics needs the admin key or {ENV_METRICS_TOKEN}: send 'Authorization: Bearer <token>'")
    expected = request.app.state.platform.settings.metrics_token
    if not (is_admin_token(request, token) or (expected and hmac.compare_digest(token.encode(), expected.encode()))):
        raise Unauthorized(f"the token is neither the admin key nor {ENV_METRICS_TOKEN}")


@router.get("/metrics", response_class=Response, dependencies=[Depends(metrics_reader)],
            summary="Prometheus metrics (the admin key or FRAZIL_METRICS_TOKEN)",
            responses={200: {"description": "The Prometheus text format",
                             "content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}},
                       **answers(401)})
async def metrics(request: Request, plat=Depends(platform)):
    plat.metrics.queue_depth.set(await plat.invocations.count_queued())
    return Response(generate_latest(plat.metrics.registry), media_type=CONTENT_TYPE_LATEST)
