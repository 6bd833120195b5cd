"""End users: registration, login, tokens, expiry, logout and the failed-login limit."""
import asyncio
import time

import pytest
from sqlalchemy import select, update

from frazil.data.accounts import token_hash
from frazil.data.acl import PrincipalKind
from frazil.data.ratelimit import FailureLimiter, RateLimiter
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
        accounts.throttle.clock = accounts.throttle.addresses.clock = clock
        return clock

    async def test_per_username_and_address(self, accounts, clock):
        """5 failures for one username from one address → 429 there, even with the right
        password; the same user from another address, and other users, are unaffected."""
        await accounts.register("mallory", "password1")
        await accounts.register("oscar", "password1")
        for _ in range(5):
            with pytest.raises(Unauthorized):
                await accounts.login("mallory", "wrong-pass", "10.0.0.1")
        with pytest.raises(TooManyRequests, match="too many failed logins for this username") as caught:
            await accounts.login("mallory", "password1", "10.0.0.1")
        assert caught.value.details["retry_after_s"] == 30
        await accounts.login("mallory", "password1", "10.0.0.99")
        await accounts.login("oscar", "password1", "10.0.0.2")

    async def test_strangers_never_lock_a_user_out(self, accounts, clock):
        """Failures for one username spread over many addresses lock none of them out for
        the real user's own address."""
        await accounts.register("victor", "password1")
        for i in range(20):
            with pytest.raises(Unauthorized):
                await accounts.login("victor", "wrong-pass", f"198.51.100.{i}")
        await accounts.login("victor", "password1", "192.0.2.1")

    async def test_delays_grow(self, accounts, clock):
        """Past the limit, each failure doubles the wait: 30 s, 60 s, 120 s, ... up to 900 s;
        a success clears it."""
        await accounts.register("walter", "password1")
        for _ in range(4):
            with pytest.raises(Unauthorized):
                await accounts.login("walter", "wrong-pass", None)
        waits = []
        for _ in range(7):
            with pytest.raises(Unauthorized):
                await accounts.login("walter", "wrong-pass", None)
            with pytest.raises(TooManyRequests) as caught:
                await accounts.login("walter", "password1", None)
            waits.append(caught.value.details["retry_after_s"])
            clock.now += waits[-1]
        assert waits == [30, 60, 120, 240, 480, 900, 900]
        await accounts.login("walter", "password1", None)
        with pytest.raises(Unauthorized):
            await accounts.login("walter", "wrong-pass", None)  # counting starts again

    async def test_failures_are_forgotten(self, accounts, clock):
        """A window without failures after the last wait forgets them."""
        await accounts.register("xena", "password1")
        for _ in range(5):
            with pytest.raises(Unauthorized):
                await accounts.login("xena", "wrong-pass", None)
        clock.now += 30 + 60
        with pytest.raises(Unauthorized):
            await accounts.login("xena", "wrong-pass", None)
        await accounts.login("xena", "password1", None)

    async def test_per_address(self, accounts, clock):
        """5 failures from one address, over any usernames → 429 for that address only."""
        await accounts.register("peggy", "password1")
        for i in range(5):
            with pytest.raises(Unauthorized):
                await accounts.login(f"user{i}", "wrong-pass", "192.0.2.7")
        with pytest.raises(TooManyRequests, match="from this address"):
            await accounts.login("peggy", "password1", "192.0.2.7")
        await accounts.login("peggy", "password1", "192.0.2.8")

    async def test_success_resets_the_count(self, accounts, clock):
        """A successful login clears the failures of its username and address."""
        await accounts.register("trent", "password1")
        for _ in range(4):
            with pytest.raises(Unauthorized):
                await accounts.login("trent", "wrong-pass", None)
        await accounts.login("trent", "password1", None)
        for _ in range(4):
            with pytest.raises(Unauthorized):
                await accounts.login("trent", "wrong-pass", None)
        await accounts.login("trent", "password1", None)

    async def test_simultaneous_attempts_count_before_they_finish(self, accounts, clock):
        """Of many attempts sent at once from one address, only the limit's worth are checked."""
        await accounts.register("yuri", "password1")
        results = await asyncio.gather(*[accounts.login("yuri", "wrong-pass", "192.0.2.9") for _ in range(12)],
                                       return_exceptions=True)
        assert sum(isinstance(r, Unauthorized) for r in results) == 5
        assert sum(isinstance(r, TooManyRequests) for r in results) == 7


class TestRegistrationLimit:
    async def test_per_address(self, accounts):
        """An address may register `register_limit` times at once; then 429 saying when."""
        limit = accounts.settings.register_limit
        for i in range(limit):
            await accounts.register(f"reg{i}", "password1", "203.0.113.1")
        with pytest.raises(TooManyRequests, match="too many registrations") as caught:
            await accounts.register("one-more", "password1", "203.0.113.1")
        assert caught.value.details["retry_after_s"] >= 1
        await accounts.register("one-more", "password1", "203.0.113.2")


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


class TestRateLimiter:
    def test_burst_then_refill(self):
        """`burst` at once, then one more every window/burst seconds."""
        clock = FakeClock()
        limiter = RateLimiter(3, 30, clock)
        for _ in range(3):
            limiter.take("a", "calls")
        with pytest.raises(TooManyRequests, match="try again in 10 s") as caught:
            limiter.take("a", "calls")
        assert caught.value.details["retry_after_s"] == 10
        limiter.take("b", "calls")
        clock.now += 10
        limiter.take("a", "calls")
        with pytest.raises(TooManyRequests):
            limiter.take("a", "calls")

    def test_memory_is_bounded(self):
        """Keys whose bucket has filled up again are swept once many keys accumulate."""
        clock = FakeClock()
        limiter = RateLimiter(2, 10, clock)
        limiter.SWEEP_AT = 100
        for i in range(100):
            limiter.take(f"k{i}", "calls")
        clock.now += 10
        limiter.take("new", "calls")
        assert list(limiter._buckets) == ["new"]
