"""Settings: which variable sets which field, how values are read and refused, and the README's
configuration table kept equal to the fields."""
from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path

import pytest
from pydantic import Field

from frazil import settings as settings_module
from frazil.settings import ENV_PREFIX, MB, BadSetting, Settings, env_table
from scripts.settings_table import README, splice

REPO = Path(__file__).resolve().parent.parent

# The variables frazil read before settings moved to pydantic-settings: operators' deployments
# set these, so none may disappear or change its name (new ones may be added).
NAMES_BEFORE = {
    "FRAZIL_ADMIN_KEY", "FRAZIL_DATABASE_URL", "FRAZIL_SANDBOX", "FRAZIL_SANDBOX_ZYGOTE", "FRAZIL_SANDBOX_PREBUILT",
    "FRAZIL_SANDBOX_PREBUILT_NODE", "FRAZIL_KEEP_ALIVE_S", "FRAZIL_MAX_IDLE_INSTANCES", "FRAZIL_TIER_LIMIT_128",
    "FRAZIL_TIER_LIMIT_256", "FRAZIL_SYNC_RETRY_S", "FRAZIL_ASYNC_RETRY_S", "FRAZIL_ASYNC_MAX_RETRIES",
    "FRAZIL_ASYNC_RETRY_BACKOFF_S", "FRAZIL_MAX_PAYLOAD_BYTES", "FRAZIL_LOG_CAP_BYTES", "FRAZIL_BUILD_TIMEOUT_S",
    "FRAZIL_MAX_BUNDLE_BYTES", "FRAZIL_MAX_UNPACKED_BYTES", "FRAZIL_MAX_BUNDLE_FILES", "FRAZIL_HTTP_ALLOW",
    "FRAZIL_TOKEN_TTL_S", "FRAZIL_LOGIN_MAX_FAILURES", "FRAZIL_LOGIN_WINDOW_S", "FRAZIL_MAX_RECORD_BYTES",
    "FRAZIL_HTTP_MAX_IN_FLIGHT", "FRAZIL_HTTP_MAX_RESPONSE_BYTES",
}


def _other_value(default):
    """A valid value, as environment text, that differs from `default`; and the value it reads as."""
    if isinstance(default, bool):
        return ("0", False) if default else ("1", True)
    if isinstance(default, int):
        return str(default + 3), default + 3
    if isinstance(default, float):
        return str(default + 0.5), default + 0.5
    if isinstance(default, tuple):
        return "example.test:443", ("example.test:443",)
    return "from-the-env", "from-the-env"  # str, or str | None


@pytest.fixture
def clean_env(monkeypatch):
    """No FRAZIL_* variable from the machine running the tests leaks into these tests."""
    for name in list(os.environ):
        if name.upper().startswith(ENV_PREFIX):
            monkeypatch.delenv(name)
    return monkeypatch


class TestFromEnv:
    def test_every_variable_sets_its_field(self, clean_env):
        """Each variable the table lists really reaches its field through pydantic-settings."""
        expected = {}
        for name, field in Settings.env_fields().items():
            text, value = _other_value(field.default)
            if name == "trusted_proxies":  # a list of networks, not of host names
                text, value = "10.0.0.0/8", (ipaddress.ip_network("10.0.0.0/8"),)
            clean_env.setenv(Settings.env_name(name), text)
            expected[name] = value
        got = Settings.from_env()
        assert {name: getattr(got, name) for name in expected} == expected

    def test_names_of_before_are_all_still_read(self):
        """No variable an operator may have set was renamed or dropped."""
        names = {Settings.env_name(name) for name in Settings.env_fields()}
        assert NAMES_BEFORE <= names

    def test_fixed_fields_ignore_the_environment(self, clean_env):
        """A `fixed` field has no variable: FRAZIL_PORT, FRAZIL_TMP_MB and the like are not read."""
        fixed = [name for name in Settings.model_fields if name not in Settings.env_fields()]
        assert {"data_dir", "host", "port", "tmp_mb", "pids_max"} <= set(fixed)
        for name in fixed:
            clean_env.setenv(ENV_PREFIX + name.upper(), "7")
            with pytest.raises(KeyError):
                Settings.env_name(name)
        assert Settings.from_env() == Settings()

    def test_constructing_settings_never_reads_the_environment(self, clean_env):
        """`Settings(...)` is what the caller passed plus defaults; only `from_env` reads variables."""
        clean_env.setenv("FRAZIL_KEEP_ALIVE_S", "1")
        assert Settings().keep_alive_s == 600.0
        assert Settings.from_env().keep_alive_s == 1.0

    def test_an_empty_variable_means_the_default(self, clean_env):
        clean_env.setenv("FRAZIL_ADMIN_KEY", "")
        clean_env.setenv("FRAZIL_KEEP_ALIVE_S", "")
        clean_env.setenv("FRAZIL_SANDBOX_ZYGOTE", "")
        assert Settings.from_env() == Settings()

    def test_tier_limits_set_only_the_concurrency(self, clean_env):
        clean_env.setenv("FRAZIL_TIER_LIMIT_128", "3")
        tiers = Settings.from_env().tiers
        assert (tiers[128].memory_mb, tiers[128].cpu, tiers[128].concurrency) == (128, 0.5, 3)
        assert (tiers[256].memory_mb, tiers[256].cpu, tiers[256].concurrency) == (256, 0.75, 10)

    def test_http_allow_is_a_comma_separated_list(self, clean_env):
        """Spaces around entries and empty entries are dropped; the text is not read as JSON."""
        clean_env.setenv("FRAZIL_HTTP_ALLOW", " 127.0.0.1:8080 ,, 10.0.0.0/8,")
        assert Settings.from_env().http_allow == ("127.0.0.1:8080", "10.0.0.0/8")

    @pytest.mark.parametrize("text, value", [("0", False), ("false", False), ("off", False), ("no", False),
                                             ("1", True), ("true", True), ("on", True)])
    def test_zygote_switch_words(self, clean_env, text, value):
        clean_env.setenv("FRAZIL_SANDBOX_ZYGOTE", text)
        assert Settings.from_env().sandbox_zygote is value

    def test_flags_win_and_none_means_not_given(self, clean_env):
        """The server's flags arrive as overrides; a flag left out (None) leaves the value alone."""
        clean_env.setenv("FRAZIL_SANDBOX", "plain")
        got = Settings.from_env(sandbox="isolated", port=9000, host=None, data_dir="elsewhere")
        assert (got.sandbox, got.port, got.host, got.data_dir) == ("isolated", 9000, "127.0.0.1", Path("elsewhere"))


class TestBadValues:
    def test_a_bad_variable_is_named_with_its_value_and_reason(self, clean_env):
        clean_env.setenv("FRAZIL_KEEP_ALIVE_S", "ten minutes")
        with pytest.raises(BadSetting) as caught:
            Settings.from_env()
        assert caught.value.problems == [("FRAZIL_KEEP_ALIVE_S", "ten minutes",
                                          "Input should be a valid number, unable to parse string as a number")]
        assert str(caught.value).startswith("FRAZIL_KEEP_ALIVE_S='ten minutes': ")
        assert "\n" not in str(caught.value)

    def test_every_bad_variable_in_one_line(self, clean_env):
        clean_env.setenv("FRAZIL_SANDBOX_PREBUILT", "-1")
        clean_env.setenv("FRAZIL_SANDBOX_ZYGOTE", "maybe")
        with pytest.raises(BadSetting) as caught:
            Settings.from_env()
        assert [name for name, _, _ in caught.value.problems] == ["FRAZIL_SANDBOX_ZYGOTE", "FRAZIL_SANDBOX_PREBUILT"]
        assert "greater than or equal to 0" in str(caught.value) and "\n" not in str(caught.value)

    def test_a_bad_flag_is_named_by_its_field(self, clean_env):
        """A value that came from code or a flag has no variable to blame."""
        with pytest.raises(BadSetting) as caught:
            Settings.from_env(port="eighty")
        assert caught.value.problems[0][0] == "port"

    def test_settings_are_frozen_and_know_their_fields(self):
        settings = Settings()
        with pytest.raises(ValueError):
            settings.keep_alive_s = 1.0
        with pytest.raises(ValueError):
            Settings(keep_alive=1.0)  # a misspelt field is refused, not ignored


class TestReadmeTable:
    def test_readme_holds_exactly_the_rendered_table(self):
        """Run `.venv/bin/python scripts/settings_table.py` when this fails."""
        text = README.read_text()
        assert splice(text) == text

    def test_one_row_per_variable_with_its_description(self):
        rows = env_table().splitlines()[2:]
        assert len(rows) == len(Settings.env_fields())
        for row, (name, field) in zip(rows, Settings.env_fields().items()):
            assert field.description, f"{name} has no description"
            assert row.startswith(f"| `{Settings.env_name(name)}` |") and row.endswith(f"| {field.description} |")

    def test_defaults_are_shown_as_they_would_be_written(self):
        table = env_table()
        assert f"| `FRAZIL_MAX_PAYLOAD_BYTES` | `{6 * MB}` (6 MiB) |" in table
        assert "| `FRAZIL_KEEP_ALIVE_S` | `600` |" in table
        assert "| `FRAZIL_SANDBOX_ZYGOTE` | `1` |" in table
        assert "| `FRAZIL_ADMIN_KEY` | unset |" in table

    def test_a_new_setting_without_its_row_is_caught(self):
        """The check above fails for a field added to Settings while the README stays as it is."""
        class WithMore(Settings):
            metrics_token: str | None = Field(None, description="bearer token `GET /metrics` demands")

        text = README.read_text()
        assert "`FRAZIL_METRICS_TOKEN`" in env_table(WithMore)
        assert splice(text, env_table(WithMore)) != text


def test_every_frazil_variable_mentioned_is_declared_in_settings():
    """STYLE habit 4: a FRAZIL_* name in the code, tests, benchmarks or README is a Settings
    variable or a constant of frazil.settings — which also catches a misspelt name in a test's
    `server_factory(FRAZIL_...=)`, which the server would silently ignore."""
    known = {Settings.env_name(name) for name in Settings.env_fields()}
    known |= {v for k, v in vars(settings_module).items() if k.startswith("ENV_") and isinstance(v, str)}
    declaring = {Path(settings_module.__file__).resolve(), Path(__file__).resolve()}  # they name examples
    files = [REPO / "README.md", *[p for folder in ("frazil", "tests", "bench", "examples")
                                   for p in (REPO / folder).rglob("*") if p.suffix in (".py", ".js", ".md")]]
    mentioned = {}
    for path in files:
        if path.resolve() in declaring:
            continue
        for name in re.findall(r"\bFRAZIL_[A-Z0-9_]+\b", path.read_text(errors="replace")):
            mentioned.setdefault(name, path.relative_to(REPO))
    assert {name: where for name, where in mentioned.items() if name not in known} == {}
