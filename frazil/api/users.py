"""`GET /v1/users` (admin): the end users, by username, for the console's data view."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Query

from frazil.api import paging
from frazil.api.deps import platform, require_admin
from frazil.api.models import ADMIN_ANSWERS, UserList, answers, returns
from frazil.data.service import MAX_LIMIT

router = APIRouter(prefix="/v1/users", tags=["auth"], dependencies=[Depends(require_admin)])


@router.get("", summary="List end users, by username (admin)", **returns(UserList),
            responses=answers(*ADMIN_ANSWERS, 400, 422))
async def list_users(limit: int | None = Query(None, ge=1, le=MAX_LIMIT, description="default: all"),
                     cursor: str | None = Query(None, description="the `next_cursor` of the previous page"),
                     plat=Depends(platform)):
    after = paging.decode(cursor, "users", str)
    found = await plat.data.accounts.list_users(after=after, limit=None if limit is None else limit + 1)
    page, more = paging.split(found, limit)
    return {"success": True, "users": page,
            "next_cursor": paging.encode("users", page[-1]["username"]) if more else None}
