"""End users: registration, login, tokens, expiry, logout and the failed-login limit."""
import asyncio
import time

import pytest
from sqlalchemy import select, update

from frazil.data.accounts import token_hash
from frazil.data.acl import PrincipalKind
from frazil.data.ratelimit import FailureLimiter
from frazil.data.schema import data_tokens, data_users
from frazil.errors import BadRequest, Conflict, TooManyRequests, Unauthorized


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def accounts(data):
    return data.accounts


class TestRegisterAndLogin:
    async def test_register_logs_in(self, accounts):
        """register answers a working token, the user id and the expiry."""
        session = await accounts.register("Alice", "correct horse")
        assert session.username == "alice" and len(session.token) >= 40
        who = await accounts.authenticate(session.token)
        assert who.kind is PrincipalKind.USER and who.user_id == session.user_id
        view = session.view()
        assert set(view) == {"token", "user_id", "username", "expires_at"} and view["expires_at"].endswith("Z")
        assert session.expires_at == pytest.approx(time.time() + accounts.settings.token_ttl_s, abs=5)

    async def test_login_gives_a_new_token(self, accounts):
        """Each login is its own token; both work; usernames are case-insensitive."""
        first = await accounts.register("bob", "password1")
        second = await accounts.login("BOB", "password1", "10.0.0.1")
        assert second.token != first.token and second.user_id == first.user_id
        assert (await accounts.authenticate(first.token)).user_id == first.user_id

    async def test_duplicate_username_is_409(self, accounts):
        """A taken username (in any case) is a conflict."""
        await accounts.register("carol", "password1")
        with pytest.raises(Conflict, match="taken"):
            await accounts.register("Carol", "password2")

    async def test_concurrent_registrations_of_one_name(self, accounts):
        """Of several simultaneous registrations of one name, exactly one wins."""
        results = await asyncio.gather(*[accounts.register("dave", "password1") for _ in range(4)],
                                       return_exceptions=True)
        assert sum(not isinstance(r, Exception) for r in results) == 1
        assert all(isinstance(r, Conflict) for r in results if isinstance(r, Exception))

    @pytest.mark.parametrize("username, password, message", [
        ("ab", "password1", "invalid username"),
        ("-abc", "password1", "invalid username"),
        ("a b c", "password1", "invalid username"),
        ("x" * 65, "password1", "invalid username"),
        (5, "password1", "username must be a string"),
        ("erin", "short", "8 to 1024"),
        ("erin", "p" * 1025, "8 to 1024"),
        ("erin", None, "password must be a string"),
    ])
    async def test_bad_registrations(self, accounts, username, password, message):
        """Bad usernames and passwords are 400s that say why."""
        with pytest.raises(BadRequest, match=message):
            await accounts.register(username, password)

    async def test_password_is_hashed_with_argon2(self, accounts, data):
        """Only an argon2id hash is stored; only the token's SHA-256 is stored."""
        session = await accounts.register("frank", "password1")
        async with data.engine.connect() as conn:
            stored = (await conn.execute(select(data_users.c.password_hash))).scalar_one()
            hashes = (await conn.execute(select(data_tokens.c.token_hash))).scalars().all()
        assert stored.startswith("$argon2id$") and "password1" not in stored
        assert hashes == [token_hash(session.token)]

    @pytest.mark.parametrize("username, password", [("grace", "wrong-password"), ("nobody", "password1"),
                                                    (None, "password1")])
    async def test_wrong_credentials(self, accounts, username, password):
        """A wrong password and an unknown user get the same 401."""
        await accounts.register("grace", "password1")
        error = BadRequest if username is None else Unauthorized
        with pytest.raises(error):
            await accounts.login(username, password, "10.0.0.1")


class TestTokens:
    @pytest.mark.parametrize("token", ["", "nope", "x" * 43])
    async def test_unknown_tokens(self, accounts, token):
        """An unknown token is a 401."""
        with pytest.raises(Unauthorized, match="not valid"):
            await accounts.authenticate(token)

    async def test_expired_token(self, accounts, data):
        """A token past its expiry is a 401 that says so; other tokens still work."""
        old = await accounts.register("heidi", "password1")
        fresh = await accounts.login("heidi", "password1")
        async with data.engine.begin() as conn:
            await conn.execute(update(data_tokens).where(data_tokens.c.token_hash == token_hash(old.token))
                               .values(expires_at=time.time() - 1))
        with pytest.raises(Unauthorized, match="expired"):
            await accounts.authenticate(old.token)
        assert (await accounts.authenticate(fresh.token)).user_id == old.user_id

    async def test_ttl_setting(self, service_factory):
        """Settings.token_ttl_s sets the lifetime (0: dead on arrival)."""
        data = await service_factory(token_ttl_s=0)
        session = await data.accounts.register("ivan", "password1")
        with pytest.raises(Unauthorized, match="expired"):
            await data.accounts.authenticate(session.token)

    async def test_logout_revokes_only_that_token(self, accounts):
        """logout revokes the token it is given, once."""
        a = await accounts.register("judy", "password1")
        b = await accounts.login("judy", "password1")
        assert await accounts.logout(a.token) is True
        assert await accounts.logout(a.token) is False
        with pytest.raises(Unauthorized):
            await accounts.authenticate(a.token)
        assert (await accounts.authenticate(b.token)).user_id == a.user_id

    async def test_login_sweeps_expired_tokens(self, accounts, data):
        """Logging in deletes the user's expired tokens."""
        old = await accounts.register("ken", "password1")
        async with data.engine.begin() as conn:
            await conn.execute(update(data_tokens).values(expires_at=time.time() - 1))
        await accounts.login("ken", "password1")
        async with data.engine.connect() as conn:
            hashes = (await conn.execute(select(data_tokens.c.token_hash))).scalars().all()
        assert token_hash(old.token) not in hashes and len(hashes) == 1


class TestFailedLoginLimit:
    @pytest.fixture
    def clock(self, accounts):
        clock = FakeClock()
        accounts.limiter.clock = clock
        return clock

    async def test_per_username(self, accounts, clock):
        """5 failures for one username → 429, even with the right password, from any address;
        other usernames are unaffected; the window passing lifts it."""
        await accounts.register("mallory", "password1")
        await accounts.register("oscar", "password1")
        for i in range(5):
            with pytest.raises(Unauthorized):
                await accounts.login("mallory", "wrong-pass", f"10.0.0.{i}")
        with pytest.raises(TooManyRequests, match="too many failed logins") as caught:
            await accounts.login("mallory", "password1", "10.0.0.99")
        assert 1 <= caught.value.details["retry_after_s"] <= 60
        await accounts.login("oscar", "password1", "10.0.0.1")
        clock.now += 61
        await accounts.login("mallory", "password1", "10.0.0.1")

    async def test_per_address(self, accounts, clock):
        """5 failures from one address, over any usernames → 429 for that address only."""
        await accounts.register("peggy", "password1")
        for i in range(5):
            with pytest.raises(Unauthorized):
                await accounts.login(f"user{i}", "wrong-pass", "192.0.2.7")
        with pytest.raises(TooManyRequests):
            await accounts.login("peggy", "password1", "192.0.2.7")
        await accounts.login("peggy", "password1", "192.0.2.8")

    async def test_success_resets_the_username_count(self, accounts, clock):
        """A successful login clears the username's failures."""
        await accounts.register("trent", "password1")
        for _ in range(4):
            with pytest.raises(Unauthorized):
                await accounts.login("trent", "wrong-pass", None)
        await accounts.login("trent", "password1", None)
        for _ in range(4):
            with pytest.raises(Unauthorized):
                await accounts.login("trent", "wrong-pass", None)
        await accounts.login("trent", "password1", None)


class TestFailureLimiter:
    def test_window_slides(self):
        """Failures leave the window one by one."""
        clock = FakeClock()
        limiter = FailureLimiter(2, 10, clock)
        limiter.fail(["k"])
        clock.now += 5
        limiter.fail(["k"])
        with pytest.raises(TooManyRequests):
            limiter.check(["k"], "tries")
        clock.now += 5.5
        limiter.check(["k"], "tries")
        limiter.fail(["k"])
        with pytest.raises(TooManyRequests):
            limiter.check(["k"], "tries")

    def test_memory_is_bounded(self):
        """Stale keys are swept once many keys accumulate."""
        clock = FakeClock()
        limiter = FailureLimiter(5, 10, clock)
        limiter.SWEEP_AT = 100
        for i in range(100):
            limiter.fail([f"k{i}"])
        clock.now += 11
        limiter.fail(["new"])
        assert list(limiter._failures) == ["new"]
