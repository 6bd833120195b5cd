"""`GET /v1/cluster` (admin): the live nodes, as the node registry knows them.

Embedded, the one node; in a cluster, every node whose heartbeat is younger than the
registry's TTL (frazil.cluster.registry). Served by gateways and `all` nodes. `mode` says which
(the console shows its cluster view in cluster mode only)."""
from fastapi import APIRouter, Depends

from frazil.api.deps import platform, require_admin
from frazil.api.models import ADMIN_ANSWERS, Nodes, answers, returns

router = APIRouter(prefix="/v1/cluster", tags=["cluster"], dependencies=[Depends(require_admin)])


@router.get("", summary="The cluster's live nodes, their roles, instances and running invocations",
            **returns(Nodes), responses=answers(*ADMIN_ANSWERS))
async def cluster(plat=Depends(platform)):
    return {"success": True, "mode": "cluster" if plat.settings.clustered else "embedded",
            "nodes": [node.public_json() for node in await plat.registry.nodes()]}
