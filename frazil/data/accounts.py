"""End users of the BaaS: registration, login, tokens, logout.

Passwords are hashed with argon2id (argon2-cffi's defaults: 64 MiB, 3 passes). Hashing runs in
threads of its own, in two lanes (`HashingLane`): registrations on `REGISTER_THREADS`, logins on
`LOGIN_THREADS`, so a flood of registrations never makes a login wait, and neither blocks the
event loop nor asks for unbounded memory (each lane queues a bounded number, then answers 429).
Tokens are 32 random bytes (URL-safe base64); only their SHA-256 is stored, with an expiry
(`Settings.token_ttl_s`). Usernames are case-insensitive (stored lower-cased).

Registrations are limited per client address; failed logins per (username, address) with
growing delays and per address (`frazil.data.ratelimit`), never per username alone: a stranger
cannot lock a user out.
"""
from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import and_, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from frazil.data.acl import Principal
from frazil.data.ratelimit import LoginThrottle, RateLimiter
from frazil.data.records import iso
from frazil.data.schema import data_tokens, data_users
from frazil.errors import BadRequest, Conflict, TooManyRequests, Unauthorized
from frazil.settings import Settings
from frazil.store.ids import new_id

USERNAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{2,63}$")
MIN_PASSWORD = 8
MAX_PASSWORD = 1024
REGISTER_THREADS = 1  # hashing lanes: threads each, and how many more may wait their turn
LOGIN_THREADS = 2
LANE_QUEUE = 32


class HashingLane:
    """Password hashing for one kind of request, on threads of its own: at most `threads` hashes
    run at once (each takes argon2's 64 MiB) and `queue` more wait; one more is refused with 429
    rather than queued without end. Lanes share nothing, so one kind's flood never delays
    another's hashes (only the CPU is shared)."""

    def __init__(self, name: str, threads: int, queue: int = LANE_QUEUE):
        self.name = name
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix=f"frazil-hash-{name}")  # threads made lazily
        self._limit = threads + queue
        self._pending = 0  # running or waiting (only the event loop's thread touches it)

    def check_room(self) -> None:
        """Refuse (429) when the lane is full."""
        if self._pending >= self._limit:
            raise TooManyRequests(f"too many {self.name} are being processed; try again in 1 s", retry_after_s=1)

    async def run(self, fn, *args):
        self.check_room()
        self._pending += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        finally:
            self._pending -= 1


@dataclass(frozen=True)
class Session:
    """A fresh login: the token is shown once, here, and never stored."""

    token: str
    user_id: str
    username: str
    expires_at: float

    def view(self) -> dict:
        return {"token": self.token, "user_id": self.user_id, "username": self.username,
                "expires_at": iso(self.expires_at)}


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def normalize_username(username) -> str:
    if not isinstance(username, str):
        raise BadRequest("username must be a string")
    name = username.lower()
    if not USERNAME.match(name):
        raise BadRequest("invalid username: 3-64 characters, letters, digits, '_', '.' or '-', "
                         "starting with a letter or digit")
    return name


def check_password(password) -> str:
    if not isinstance(password, str):
        raise BadRequest("password must be a string")
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise BadRequest(f"password must be {MIN_PASSWORD} to {MAX_PASSWORD} characters long")
    return password


class Accounts:
    def __init__(self, engine: AsyncEngine, settings: Settings, *, hasher: PasswordHasher | None = None):
        self.engine = engine
        self.settings = settings
        self.hasher = hasher or PasswordHasher()
        self.throttle = LoginThrottle(settings.login_max_failures, settings.login_window_s,
                                      settings.login_delay_s, settings.login_max_delay_s)
        self.registrations = RateLimiter(settings.register_limit, settings.register_window_s)
        self._register_lane = HashingLane("registrations", REGISTER_THREADS)
        self._login_lane = HashingLane("logins", LOGIN_THREADS)
        self._dummy_hash: str | None = None  # verified against for unknown users (same timing)

    async def _verify(self, stored: str, password: str) -> bool:
        try:
            return await self._login_lane.run(self.hasher.verify, stored, password)
        except (VerificationError, InvalidHashError):
            return False

    async def register(self, username, password, client: str | None = None) -> Session:
        """Create a user (409 if the name is taken) and log them in; 429 when `client` (the
        caller's address) has registered too often."""
        name = normalize_username(username)
        check_password(password)
        self._register_lane.check_room()  # before take(): a busy server's refusal costs no token
        if client is not None:
            self.registrations.take(client, "registrations")
        stored = await self._register_lane.run(self.hasher.hash, password)
        user_id = new_id()
        try:
            async with self.engine.begin() as conn:
                await conn.execute(insert(data_users).values(id=user_id, username=name, password_hash=stored,
                                                             created_at=time.time()))
        except IntegrityError:
            raise Conflict(f"the username {name!r} is taken") from None
        return await self._new_session(user_id, name)

    async def login(self, username, password, client: str | None = None) -> Session:
        """A new token for the right password; 401 otherwise, 429 after too many failures for
        this username from `client` (the caller's address), or from `client` at all."""
        if not isinstance(username, str) or not isinstance(password, str):
            raise BadRequest("username and password must be strings")
        name = username.lower()
        self._login_lane.check_room()  # before admit(): a busy server's refusal is no failed login
        self.throttle.admit(name, client)
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(data_users.c.id, data_users.c.password_hash)
                                      .where(data_users.c.username == name))).first()
        if row is None:
            # Spend the same time as for a wrong password: answers do not reveal who exists.
            if self._dummy_hash is None:
                self._dummy_hash = await self._login_lane.run(self.hasher.hash, secrets.token_urlsafe(16))
            await self._verify(self._dummy_hash, password)
            ok = False
        else:
            ok = len(password) <= MAX_PASSWORD and await self._verify(row.password_hash, password)
        if not ok:
            raise Unauthorized("wrong username or password")  # counted as a failure by admit()
        self.throttle.succeeded(name, client)
        if self.hasher.check_needs_rehash(row.password_hash):
            rehashed = await self._login_lane.run(self.hasher.hash, password)
            async with self.engine.begin() as conn:
                await conn.execute(update(data_users).where(data_users.c.id == row.id).values(password_hash=rehashed))
        return await self._new_session(row.id, name)

    async def _new_session(self, user_id: str, username: str) -> Session:
        token = secrets.token_urlsafe(32)
        now = time.time()
        expires_at = now + self.settings.token_ttl_s
        async with self.engine.begin() as conn:
            # Sweep this user's expired tokens while we are here.
            await conn.execute(delete(data_tokens).where(and_(data_tokens.c.user_id == user_id,
                                                              data_tokens.c.expires_at <= now)))
            await conn.execute(insert(data_tokens).values(token_hash=token_hash(token), user_id=user_id,
                                                          created_at=now, expires_at=expires_at))
        return Session(token, user_id, username, expires_at)

    async def authenticate(self, token: str) -> Principal:
        """The user a token belongs to; 401 for an unknown, revoked or expired token."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(
                select(data_tokens.c.user_id, data_tokens.c.expires_at)
                .select_from(data_tokens.join(data_users, data_users.c.id == data_tokens.c.user_id))
                .where(data_tokens.c.token_hash == token_hash(token)))).first()
        if row is None:
            raise Unauthorized("the token is not valid (unknown, or logged out)")
        if row.expires_at <= time.time():
            raise Unauthorized("the token has expired: log in again")
        return Principal.user(row.user_id)

    async def logout(self, token: str) -> bool:
        """Revoke the token; answers whether it was live."""
        async with self.engine.begin() as conn:
            return (await conn.execute(delete(data_tokens).where(
                data_tokens.c.token_hash == token_hash(token)))).rowcount == 1

    async def user(self, user_id: str) -> dict | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(*_USER_VIEW).where(data_users.c.id == user_id))).first()
        return None if row is None else _user_view(row)

    async def list_users(self, *, after: str | None = None, limit: int | None = None) -> list[dict]:
        """End users by username (for the admin); with `after`, only names after it (a page)."""
        query = select(*_USER_VIEW).order_by(data_users.c.username).limit(limit)
        if after is not None:
            query = query.where(data_users.c.username > after)
        async with self.engine.connect() as conn:
            return [_user_view(row) for row in (await conn.execute(query)).all()]


# What the API shows of a user (never the password hash).
_USER_VIEW = (data_users.c.id, data_users.c.username, data_users.c.created_at)


def _user_view(row) -> dict:
    return {"user_id": row.id, "username": row.username, "created_at": iso(row.created_at)}
