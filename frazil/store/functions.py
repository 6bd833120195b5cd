"""Functions and their versions."""
from __future__ import annotations

import time

import orjson
from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from frazil.store.models import FunctionVersion, VersionStatus
from frazil.store.schema import functions, versions
from frazil.store.sql import insert_ignore


def _version(row) -> FunctionVersion:
    return FunctionVersion(
        function=row.function,
        number=row.number,
        status=VersionStatus(row.status),
        runtime=row.runtime,
        handler=row.handler,
        memory_mb=row.memory_mb,
        timeout_s=row.timeout_s,
        env=orjson.loads(row.env),
        resident=row.resident,
        public=row.public,
        bundle_hash=row.bundle_hash,
        bundle_bytes=row.bundle_bytes,
        layer_key=row.layer_key,
        created_at=row.created_at,
        finished_at=row.finished_at,
        error=row.error,
    )


class FunctionStore:
    def __init__(self, engine: AsyncEngine):
        self.engine = engine

    async def begin_version(self, name: str, *, runtime: str, handler: str, memory_mb: int, timeout_s: float,
                            env: dict[str, str], resident: int, public: bool, bundle_hash: str,
                            bundle_bytes: int) -> int:
        """Allocate the next version number of `name` (creating the function) and record the
        build as started. The counter row serialises concurrent deploys of one function."""
        now = time.time()
        async with self.engine.begin() as conn:
            await insert_ignore(conn, functions, dict(name=name, active_version=None, last_version=0,
                                                      created_at=now, updated_at=now))
            number = (await conn.execute(
                update(functions).where(functions.c.name == name)
                .values(last_version=functions.c.last_version + 1, updated_at=now)
                .returning(functions.c.last_version)
            )).scalar_one()
            await conn.execute(versions.insert().values(
                function=name, number=number, status=VersionStatus.BUILDING.value, runtime=runtime,
                handler=handler, memory_mb=memory_mb, timeout_s=timeout_s, env=orjson.dumps(env).decode(),
                resident=resident, public=public, bundle_hash=bundle_hash, bundle_bytes=bundle_bytes,
                layer_key=None, build_log="", error=None, created_at=now,
            ))
        return number

    async def finish_version(self, name: str, number: int, *, ok: bool, build_log: str,
                             layer_key: str | None = None, error: str | None = None) -> None:
        """Record the build's outcome; a successful one becomes active unless a newer
        version already is (the latest deploy wins, a failed one never replaces anything)."""
        now = time.time()
        status = VersionStatus.READY if ok else VersionStatus.FAILED
        async with self.engine.begin() as conn:
            await conn.execute(
                update(versions).where(and_(versions.c.function == name, versions.c.number == number))
                .values(status=status.value, build_log=build_log, layer_key=layer_key, error=error, finished_at=now)
            )
            if ok:
                await conn.execute(
                    update(functions)
                    .where(and_(functions.c.name == name,
                                or_(functions.c.active_version.is_(None), functions.c.active_version < number)))
                    .values(active_version=number, updated_at=now)
                )

    async def active(self, name: str) -> FunctionVersion | None:
        query = (select(versions).select_from(functions.join(
            versions, and_(versions.c.function == functions.c.name, versions.c.number == functions.c.active_version)))
            .where(functions.c.name == name))
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return _version(row) if row else None

    async def exists(self, name: str) -> bool:
        async with self.engine.connect() as conn:
            return (await conn.execute(select(functions.c.name).where(functions.c.name == name))).first() is not None

    async def list_active(self) -> list[FunctionVersion]:
        query = (select(versions).select_from(functions.join(
            versions, and_(versions.c.function == functions.c.name, versions.c.number == functions.c.active_version)))
            .order_by(functions.c.name))
        async with self.engine.connect() as conn:
            return [_version(row) for row in await conn.execute(query)]

    async def version(self, name: str, number: int) -> FunctionVersion | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(versions).where(
                and_(versions.c.function == name, versions.c.number == number)))).first()
        return _version(row) if row else None

    async def versions_of(self, name: str) -> list[FunctionVersion]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(versions).where(versions.c.function == name)
                                      .order_by(versions.c.number.desc()))
            return [_version(row) for row in rows]

    async def build_log(self, name: str, number: int) -> str | None:
        async with self.engine.connect() as conn:
            return (await conn.execute(select(versions.c.build_log).where(
                and_(versions.c.function == name, versions.c.number == number)))).scalar_one_or_none()

    async def delete(self, name: str) -> bool:
        async with self.engine.begin() as conn:
            await conn.execute(delete(versions).where(versions.c.function == name))
            result = await conn.execute(delete(functions).where(functions.c.name == name))
        return result.rowcount > 0
