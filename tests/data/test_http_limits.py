"""Rate limits and fair queues against a real `frazil server`: registration floods, login floods,
a stranger trying to lock a user out, public async floods, the async event cap and /metrics.

Client addresses: everything in 127.0.0.0/8 is loopback on Linux, so a client socket bound to
127.0.0.2 reaches the server on 127.0.0.1 and the server sees it come from 127.0.0.2. Floods
are bounded in count, and every wait has a deadline."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from frazil.testing.server import HTTP_TIMEOUT_S
from frazil.testing.waiting import wait_until

PASSWORD = "password1"


def client_from(srv, address: str, token: str | None = None) -> httpx.Client:
    """A client whose requests come from `address` (a loopback address)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=srv.url, headers=headers, timeout=60,
                        transport=httpx.HTTPTransport(local_address=address))


def post(srv, address: str, path: str, body: dict | None = None, content: bytes | None = None,
         token: str | None = None) -> httpx.Response:
    with client_from(srv, address, token) as c:
        return c.post(path, json=body) if content is None else c.post(path, content=content)


def register(srv, address: str, username: str) -> httpx.Response:
    return post(srv, address, "/v1/auth/register", {"username": username, "password": PASSWORD})


def login(srv, address: str, username: str, password: str = PASSWORD) -> httpx.Response:
    return post(srv, address, "/v1/auth/login", {"username": username, "password": password})


def check_429(r: httpx.Response, text: str) -> int:
    """A 429 with a JSON error saying `text` and a Retry-After header; answers its seconds."""
    assert r.status_code == 429, r.text
    body = r.json()
    assert body["success"] is False and body["error"]["type"] == "TooManyRequests" and text in body["message"], body
    retry = int(r.headers["Retry-After"])
    assert retry >= 1 and retry == body["error"]["retry_after_s"]
    return retry


class TestRegistration:
    def test_flood_from_one_address_is_429_with_retry_after(self, server_factory):
        """An address registers `FRAZIL_REGISTER_LIMIT` times; more are refused at once with 429
        and Retry-After; another address still registers."""
        srv = server_factory(FRAZIL_REGISTER_LIMIT=3, FRAZIL_REGISTER_WINDOW_S=600)
        started = time.monotonic()
        answers = [register(srv, "127.0.0.1", f"flood{i}") for i in range(8)]
        assert [r.status_code for r in answers[:3]] == [200] * 3
        waited = time.monotonic() - started  # three password hashes: seconds on a loaded machine
        for r in answers[3:]:  # a slot frees 600 s / 3 after its registration
            assert 200 - waited - 1 <= check_429(r, "too many registrations from this address") <= 200
        assert register(srv, "127.0.0.2", "elsewhere").status_code == 200

    def test_login_does_not_wait_behind_a_registration_flood(self, server_factory):
        """12 registrations from 12 addresses at once keep password hashing busy for seconds;
        a login sent once the flood is under way answers while most of them still wait: logins
        hash on threads of their own."""
        srv = server_factory()
        assert register(srv, "127.0.0.1", "alice").status_code == 200
        flood = 12
        done = []
        lock = threading.Lock()

        def one(i: int) -> int:
            status = register(srv, f"127.0.1.{i + 1}", f"flooder{i}").status_code
            with lock:
                done.append(status)
            return status

        with ThreadPoolExecutor(flood) as pool:
            futures = [pool.submit(one, i) for i in range(flood)]
            wait_until(lambda: len(done) >= 1, 60, what="the first registration of the flood")
            started = time.monotonic()
            r = login(srv, "127.0.0.1", "alice")
            took = time.monotonic() - started
            with lock:
                answered_before_login = len(done)
            statuses = [f.result(timeout=120) for f in futures]
        assert r.status_code == 200, r.text
        assert statuses == [200] * flood
        assert answered_before_login <= flood // 2, (
            f"the login took {took:.1f} s and answered after {answered_before_login} of {flood} registrations")


class TestLogin:
    def test_login_flood_is_bounded(self, server_factory):
        """20 wrong logins at once from one address: 5 are checked (401), 15 are refused at once
        (429 with Retry-After); the user still logs in from their own address."""
        srv = server_factory()
        assert register(srv, "127.0.0.1", "bob").status_code == 200
        with ThreadPoolExecutor(20) as pool:
            answers = list(pool.map(lambda _: login(srv, "127.0.0.3", "bob", "wrong-password"), range(20)))
        statuses = sorted(r.status_code for r in answers)
        assert statuses == [401] * 5 + [429] * 15, statuses
        for r in answers:
            if r.status_code == 429:
                check_429(r, "too many failed logins")
        assert login(srv, "127.0.0.1", "bob").status_code == 200

    def test_a_stranger_cannot_lock_a_user_out(self, server_factory):
        """A stranger at 127.0.0.2 guessing carol's password is slowed down (429 with growing
        waits), and carol at 127.0.0.1 logs in all along."""
        srv = server_factory()
        assert register(srv, "127.0.0.1", "carol").status_code == 200
        answers = [login(srv, "127.0.0.2", "carol", f"guess-{i}") for i in range(8)]
        assert [r.status_code for r in answers[:5]] == [401] * 5
        for r in answers[5:]:
            check_429(r, "too many failed logins")
        assert check_429(login(srv, "127.0.0.2", "carol"), "too many failed logins") > 0  # even the right one
        assert login(srv, "127.0.0.1", "carol").status_code == 200
        assert login(srv, "127.0.0.1", "carol").status_code == 200

    def test_wait_is_per_username_and_address(self, server_factory):
        """Past the limit, that username from that address waits FRAZIL_LOGIN_DELAY_S (doubled
        with each further failure: tests/data/test_accounts.py); another address counts apart."""
        srv = server_factory(FRAZIL_LOGIN_MAX_FAILURES=2, FRAZIL_LOGIN_DELAY_S=100, FRAZIL_LOGIN_WINDOW_S=600)
        assert register(srv, "127.0.0.1", "dora").status_code == 200
        assert login(srv, "127.0.0.4", "dora", "wrong-1").status_code == 401
        before_second_failure = time.monotonic()
        assert login(srv, "127.0.0.4", "dora", "wrong-2").status_code == 401
        first = check_429(login(srv, "127.0.0.4", "dora"), "for this username from this address")
        # The wait runs from the second failure (each login hashes: seconds on a loaded machine).
        assert 100 - (time.monotonic() - before_second_failure) - 1 <= first <= 100
        assert login(srv, "127.0.0.5", "dora", "wrong-3").status_code == 401  # another address: its own count
        assert login(srv, "127.0.0.1", "dora").status_code == 200


HELLO = {"index.py": "def main(event, context):\n    return len(event.get('pad', ''))\n"}


class TestInvocations:
    def test_public_async_flood_is_limited_per_address(self, server_factory, unique_name):
        """Async calls of a public function without a key: FRAZIL_PUBLIC_ASYNC_LIMIT per address,
        then 429 with Retry-After; other addresses, the admin key and sync calls are not held back."""
        srv = server_factory(FRAZIL_PUBLIC_ASYNC_LIMIT=5, FRAZIL_PUBLIC_ASYNC_WINDOW_S=600)
        srv.deploy(unique_name, HELLO, public=True)
        path = f"/v1/functions/{unique_name}/invoke?mode=async"
        started = time.monotonic()
        answers = [post(srv, "127.0.0.1", path, content=b"{}") for _ in range(12)]
        assert [r.status_code for r in answers[:5]] == [202] * 5
        waited = time.monotonic() - started
        for r in answers[5:]:  # a slot frees 600 s / 5 after its call
            assert 120 - waited - 1 <= check_429(r, "too many async invocations from this address") <= 120
        assert post(srv, "127.0.0.2", path, content=b"{}").status_code == 202
        assert post(srv, "127.0.0.1", path, content=b"{}", token=srv.admin_key).status_code == 202
        r = post(srv, "127.0.0.1", f"/v1/functions/{unique_name}/invoke", content=b"{}")
        assert r.status_code == 200 and r.json()["success"] is True
        for r in answers[:5]:
            assert srv.wait_invocation(r.json()["invocation_id"])["status"] == "succeeded"

    def test_async_events_are_capped_at_256_kb_sync_at_6_mb(self, server, unique_name):
        """A 257 KB async event is 413; a 1 MB sync event runs; a 256 KB async event is accepted."""
        server.deploy(unique_name, HELLO)
        big = {"pad": "x" * (257 * 1024)}
        r = server.client().post(f"/v1/functions/{unique_name}/invoke", params={"mode": "async"}, json=big)
        assert r.status_code == 413, r.text
        assert r.json()["error"]["type"] == "PayloadTooLarge" and "async invocation" in r.json()["message"]
        assert "262144" in r.json()["message"]
        assert server.invoke(unique_name, {"pad": "x" * (1024 * 1024)})["result"] == 1024 * 1024
        fits = {"pad": "x" * (256 * 1024 - 20)}
        r = server.client().post(f"/v1/functions/{unique_name}/invoke", params={"mode": "async"}, json=fits)
        assert r.status_code == 202, r.text
        assert server.wait_invocation(r.json()["invocation_id"])["result"] == 256 * 1024 - 20

    def test_async_event_cap_is_configurable(self, server_factory, unique_name):
        srv = server_factory(FRAZIL_MAX_ASYNC_EVENT_BYTES=1000)
        srv.deploy(unique_name, HELLO)
        r = srv.client().post(f"/v1/functions/{unique_name}/invoke", params={"mode": "async"}, content=b" " * 1001)
        assert r.status_code == 413 and "1000" in r.json()["message"], r.text


class TestMetrics:
    @pytest.mark.parametrize("token_env", [None, "metrics-secret"])
    def test_metrics_need_a_token(self, server_factory, token_env):
        """/metrics: 401 without a token or with a wrong one; 200 with the admin key or with
        FRAZIL_METRICS_TOKEN (when set)."""
        srv = server_factory(**({"FRAZIL_METRICS_TOKEN": token_env} if token_env else {}))
        url = f"{srv.url}/metrics"
        r = httpx.get(url, timeout=HTTP_TIMEOUT_S)
        assert r.status_code == 401 and r.json()["success"] is False and "FRAZIL_METRICS_TOKEN" in r.json()["message"]
        assert httpx.get(url, headers={"Authorization": "Bearer wrong"}, timeout=HTTP_TIMEOUT_S).status_code == 401
        r = httpx.get(url, headers={"Authorization": f"Bearer {srv.admin_key}"}, timeout=HTTP_TIMEOUT_S)
        assert r.status_code == 200 and "frazil_" in r.text
        if token_env:
            r = httpx.get(url, headers={"Authorization": f"Bearer {token_env}"}, timeout=HTTP_TIMEOUT_S)
            assert r.status_code == 200 and "frazil_" in r.text
