"""Functions and their versions."""
from __future__ import annotations

import time

import orjson
from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from frazil.store.models import Access, FunctionVersion, VersionStatus
from frazil.store.schema import functions, versions
from frazil.store.sql import insert_ignore


def _active_versions():
    """A query of every function's active version (rows of `versions`), to narrow and order."""
    return select(versions).select_from(functions.join(
        versions, and_(versions.c.function == functions.c.name, versions.c.number == functions.c.active_version)))


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
        access=Access(row.access),
        http=row.http,
        bundle_hash=row.bundle_hash,
        bundle_bytes=row.bundle_bytes,
        layer_key=row.layer_key,
        created_at=row.created_at,
        finished_at=row.finished_at,
        error=row.error,
        triggers=tuple(orjson.loads(row.triggers)) if row.triggers else (),
    )


def _triggers_json(triggers) -> str | None:
    return orjson.dumps(list(triggers)).decode() if triggers else None


class FunctionStore:
    def __init__(self, engine: AsyncEngine):
        self.engine = engine

    async def begin_version(self, name: str, *, runtime: str, handler: str, memory_mb: int, timeout_s: float,
                            env: dict[str, str], resident: int, access: Access, http: bool, bundle_hash: str,
                            bundle_bytes: int, triggers: list[dict] = ()) -> int:
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
                resident=resident, access=access.value, http=http, bundle_hash=bundle_hash, bundle_bytes=bundle_bytes,
                layer_key=None, build_log="", error=None, created_at=now, triggers=_triggers_json(triggers),
            ))
        return number

    async def finish_version(self, name: str, number: int, *, ok: bool, build_log: str,
                             layer_key: str | None = None, error: str | None = None,
                             handler: str | None = None) -> None:
        """Record the build's outcome; a successful one becomes active unless a newer
        version already is (the latest deploy wins, a failed one never replaces anything).
        `handler`: the one the build chose (frazil.build.handlers), when it differs from
        what begin_version recorded."""
        now = time.time()
        status = VersionStatus.READY if ok else VersionStatus.FAILED
        values = dict(status=status.value, build_log=build_log, layer_key=layer_key, error=error, finished_at=now)
        if handler is not None:
            values["handler"] = handler
        async with self.engine.begin() as conn:
            await conn.execute(
                update(versions).where(and_(versions.c.function == name, versions.c.number == number))
                .values(**values)
            )
            if ok:
                await conn.execute(
                    update(functions)
                    .where(and_(functions.c.name == name,
                                or_(functions.c.active_version.is_(None), functions.c.active_version < number)))
                    .values(active_version=number, updated_at=now)
                )

    async def derive_version(self, base: FunctionVersion, *, memory_mb: int, timeout_s: float, env: dict[str, str],
                             resident: int, access: Access, http: bool, triggers: list[dict]) -> int:
        """A new version of `base.function` with `base`'s code and dependency layer and these
        settings, ready and active at once (nothing to build: the code is unchanged). One
        transaction, so it is all there or none of it."""
        now = time.time()
        name = base.function
        async with self.engine.begin() as conn:
            number = (await conn.execute(
                update(functions).where(functions.c.name == name)
                .values(last_version=functions.c.last_version + 1, updated_at=now)
                .returning(functions.c.last_version)
            )).scalar_one_or_none()
            if number is None:
                raise LookupError(name)  # deleted meanwhile
            await conn.execute(versions.insert().values(
                function=name, number=number, status=VersionStatus.READY.value, runtime=base.runtime,
                handler=base.handler, memory_mb=memory_mb, timeout_s=timeout_s, env=orjson.dumps(env).decode(),
                resident=resident, access=access.value, http=http, bundle_hash=base.bundle_hash,
                bundle_bytes=base.bundle_bytes, layer_key=base.layer_key, error=None, created_at=now, finished_at=now,
                triggers=_triggers_json(triggers),
                build_log=f"settings changed from version {base.number}: its code and dependency layer are reused\n",
            ))
            await conn.execute(update(functions).where(functions.c.name == name)
                               .values(active_version=number, updated_at=now))
        return number

    async def activate(self, name: str, number: int) -> bool:
        """Make version `number` active again, if it is ready; answers whether it now is."""
        ready = (select(versions.c.number).where(and_(
            versions.c.function == name, versions.c.number == number,
            versions.c.status == VersionStatus.READY.value)).exists())
        async with self.engine.begin() as conn:
            result = await conn.execute(update(functions).where(and_(functions.c.name == name, ready))
                                        .values(active_version=number, updated_at=time.time()))
        return result.rowcount == 1

    async def previous_ready(self, name: str, before: int) -> int | None:
        """The newest ready version of `name` older than `before`."""
        query = (select(versions.c.number).where(and_(
            versions.c.function == name, versions.c.number < before, versions.c.status == VersionStatus.READY.value))
            .order_by(versions.c.number.desc()).limit(1))
        async with self.engine.connect() as conn:
            return (await conn.execute(query)).scalar_one_or_none()

    async def active(self, name: str) -> FunctionVersion | None:
        query = _active_versions().where(functions.c.name == name)
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return _version(row) if row else None

    async def exists(self, name: str) -> bool:
        async with self.engine.connect() as conn:
            return (await conn.execute(select(functions.c.name).where(functions.c.name == name))).first() is not None

    async def list_active(self, *, after: str | None = None, limit: int | None = None) -> list[FunctionVersion]:
        """Active versions by function name; with `after`, only names after it (a page)."""
        query = _active_versions().order_by(functions.c.name).limit(limit)
        if after is not None:
            query = query.where(functions.c.name > after)
        async with self.engine.connect() as conn:
            return [_version(row) for row in await conn.execute(query)]

    async def scheduled(self) -> list[FunctionVersion]:
        """The active versions that have triggers (frazil.scheduler.schedules, .table_events)."""
        query = _active_versions().where(versions.c.triggers.is_not(None)).order_by(functions.c.name)
        async with self.engine.connect() as conn:
            return [_version(row) for row in await conn.execute(query)]

    async def with_residents(self) -> list[FunctionVersion]:
        """The active versions that keep resident instances (frazil.cluster.residents)."""
        query = _active_versions().where(versions.c.resident > 0).order_by(functions.c.name)
        async with self.engine.connect() as conn:
            return [_version(row) for row in await conn.execute(query)]

    async def version(self, name: str, number: int) -> FunctionVersion | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(versions).where(
                and_(versions.c.function == name, versions.c.number == number)))).first()
        return _version(row) if row else None

    async def versions_of(self, name: str, *, before: int | None = None,
                          limit: int | None = None) -> list[FunctionVersion]:
        """Versions newest first; with `before`, only older numbers (a page)."""
        query = select(versions).where(versions.c.function == name).order_by(versions.c.number.desc()).limit(limit)
        if before is not None:
            query = query.where(versions.c.number < before)
        async with self.engine.connect() as conn:
            rows = await conn.execute(query)
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
