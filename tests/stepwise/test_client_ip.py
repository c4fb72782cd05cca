"""The client address behind reverse proxies (STEPWISE_TRUSTED_PROXIES), and the lockout on it."""

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from axes.models import AccessAttempt
from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.test import Client, RequestFactory

from stepwise.client_ip import client_ip
from stepwise.settings import env_count
from tests.factories import annotator

ROOT = Path(__file__).resolve().parent.parent.parent
PROXY = "172.18.0.5"  # every request reaches gunicorn from here
LOGIN = "/accounts/login/"
LIMIT = django_settings.AXES_FAILURE_LIMIT


def ip(settings: Any, proxies: int, forwarded: str | None, remote: str | None = PROXY) -> Any:
    settings.STEPWISE_TRUSTED_PROXIES = proxies
    request = RequestFactory().get("/")
    if remote is None:
        del request.META["REMOTE_ADDR"]
    else:
        request.META["REMOTE_ADDR"] = remote
    if forwarded is not None:
        request.META["HTTP_X_FORWARDED_FOR"] = forwarded
    return client_ip(request)


def test_axes_asks_client_ip() -> None:
    assert django_settings.AXES_CLIENT_IP_CALLABLE == "stepwise.client_ip.client_ip"
    # DRF has no throttles yet; one added later reads the client the same way.
    assert django_settings.REST_FRAMEWORK["NUM_PROXIES"] == django_settings.STEPWISE_TRUSTED_PROXIES


# --- No proxy: the connection's address, whatever the headers say -----------------------------


def test_no_proxy_ignores_x_forwarded_for(settings) -> None:
    assert ip(settings, 0, "6.6.6.6", remote="203.0.113.7") == "203.0.113.7"
    assert ip(settings, 0, None, remote="203.0.113.7") == "203.0.113.7"
    assert ip(settings, 0, None, remote=None) is None


# --- One proxy: the entry it appended -------------------------------------------------------


def test_one_proxy_takes_the_entry_it_appended(settings) -> None:
    assert ip(settings, 1, "203.0.113.7") == "203.0.113.7"


def test_one_proxy_ignores_what_the_client_wrote_before_it(settings) -> None:
    # The client sent "X-Forwarded-For: 6.6.6.6, 10.0.0.1"; nginx appended its peer.
    assert ip(settings, 1, "6.6.6.6, 10.0.0.1, 203.0.113.7") == "203.0.113.7"
    # Garbage the client sent is ignored too, as long as the proxy's entry is sound.
    assert ip(settings, 1, "<script>, unknown,,203.0.113.7") == "203.0.113.7"


def test_repeated_headers_joined_by_the_server_count_like_one_list(settings) -> None:
    assert ip(settings, 1, "6.6.6.6,203.0.113.7") == "203.0.113.7"


# --- Two proxies (a CDN, then nginx): the entry the outer one appended ------------------------


def test_two_proxies_take_the_entry_the_outer_one_appended(settings) -> None:
    # client → CDN (appends the client) → nginx (appends the CDN's edge) → gunicorn
    assert ip(settings, 2, "203.0.113.7, 198.51.100.20") == "203.0.113.7"


def test_two_proxies_ignore_spoofed_entries(settings) -> None:
    forwarded = "6.6.6.6, 7.7.7.7, 203.0.113.7, 198.51.100.20"
    assert ip(settings, 2, forwarded) == "203.0.113.7"


# --- Too few entries, or not an address: the connection's address, never a client's ----------


@pytest.mark.parametrize(
    ("proxies", "forwarded"),
    [
        (1, None),  # a request that reached the app without the proxy
        (1, ""),
        (1, "   "),
        (2, "203.0.113.7"),  # fewer proxies than configured
        (3, "203.0.113.7, 198.51.100.20"),
    ],
)
def test_a_short_header_falls_back_to_remote_addr(settings, proxies, forwarded) -> None:
    assert ip(settings, proxies, forwarded) == PROXY


@pytest.mark.parametrize(
    "entry",
    [
        "unknown",
        "example.org",
        "example.org:443",
        "1.2.3",
        "256.1.1.1",
        "1.2.3.4:",
        "1.2.3.4:port",
        "1.2.3.4 5.6.7.8",
        "[::1",
        "[::1]junk",
        "1.2.3.4/24",
        "_hidden",  # RFC 7239-style obfuscated identifier
    ],
)
def test_an_entry_that_is_no_address_falls_back_to_remote_addr(settings, entry) -> None:
    assert ip(settings, 1, f"203.0.113.7, {entry}") == PROXY
    assert ip(settings, 1, f"203.0.113.7, {entry}", remote=None) is None


@pytest.mark.parametrize(
    ("entry", "address"),
    [
        (" 203.0.113.7 ", "203.0.113.7"),
        ("203.0.113.7:5678", "203.0.113.7"),
        ("2001:DB8::7", "2001:db8::7"),  # normalised, so one client is one key
        ("[2001:db8::7]", "2001:db8::7"),
        ("[2001:db8::7]:443", "2001:db8::7"),
        ("::1", "::1"),
        ("[::1]:80", "::1"),
        ("::ffff:203.0.113.7", "203.0.113.7"),  # a dual-stack proxy's IPv4 client
        ("fe80::7%eth0", "fe80::7"),  # the proxy's interface is not part of the address
    ],
)
def test_ports_brackets_and_ipv6(settings, entry, address) -> None:
    assert ip(settings, 1, f"6.6.6.6, {entry}") == address


# --- The setting itself -----------------------------------------------------------------------


@pytest.mark.parametrize(("value", "count"), [(None, 0), ("", 0), ("0", 0), (" 2 ", 2)])
def test_env_count_reads_whole_numbers(monkeypatch, value, count) -> None:
    if value is None:
        monkeypatch.delenv("STEPWISE_TRUSTED_PROXIES", raising=False)
    else:
        monkeypatch.setenv("STEPWISE_TRUSTED_PROXIES", value)
    assert env_count("STEPWISE_TRUSTED_PROXIES", 0) == count


@pytest.mark.parametrize("value", ["-1", "one", "1.5", "+1", "1_0", "٣", "true"])
def test_env_count_refuses_anything_else(monkeypatch, value) -> None:
    monkeypatch.setenv("STEPWISE_TRUSTED_PROXIES", value)
    with pytest.raises(ImproperlyConfigured, match="STEPWISE_TRUSTED_PROXIES must be a whole"):
        env_count("STEPWISE_TRUSTED_PROXIES", 0)


def test_a_bad_value_refuses_to_start(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "STEPWISE_TEST_DB"}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={**env, "STEPWISE_VAR_DIR": str(tmp_path), "STEPWISE_TRUSTED_PROXIES": "-1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "ImproperlyConfigured: STEPWISE_TRUSTED_PROXIES must be a whole number" in (
        result.stderr
    )


# --- End to end: the real sign-in behind one proxy ------------------------------------------


def sign_in(client: Client, password: str, forwarded: str) -> int:
    data = {"username": "ada", "password": password}
    response = client.post(LOGIN, data, REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=forwarded)
    return response.status_code


@pytest.fixture
def ada(db):
    user = annotator("ada")
    user.set_password("right-password")
    user.save(update_fields=["password"])
    return user


def test_behind_one_proxy_a_lockout_stays_with_the_attackers_address(ada, settings) -> None:
    settings.STEPWISE_TRUSTED_PROXIES = 1
    attacker = Client()
    # The attacker varies the header it sends; nginx's appended entry stays the same.
    statuses = [sign_in(attacker, f"guess{i}", f"10.9.9.{i}, 198.51.100.66") for i in range(LIMIT)]
    assert statuses[-1] == 429
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"198.51.100.66"}
    assert sign_in(Client(), "right-password", "198.51.100.66") == 429
    # Ada, from her own address through the same proxy, signs in.
    ada_client = Client()
    assert sign_in(ada_client, "right-password", "203.0.113.7") == 302
    assert "_auth_user_id" in ada_client.session


def test_behind_one_proxy_forging_ada_s_address_does_not_lock_her_out(ada, settings) -> None:
    settings.STEPWISE_TRUSTED_PROXIES = 1
    attacker = Client()
    for i in range(LIMIT):
        # The attacker claims to be Ada; nginx appends the attacker's real address.
        sign_in(attacker, f"guess{i}", "203.0.113.7, 198.51.100.66")
    assert sign_in(Client(), "right-password", "203.0.113.7") == 302


def test_without_the_setting_behind_a_proxy_one_attacker_locks_everyone_out(ada, settings) -> None:
    # The old behaviour, kept for direct deployments: every request comes from the proxy.
    settings.STEPWISE_TRUSTED_PROXIES = 0
    attacker = Client()
    for i in range(LIMIT):
        sign_in(attacker, f"guess{i}", "198.51.100.66")
    assert sign_in(Client(), "right-password", "203.0.113.7") == 429
