"""Login throttling (django-axes) on the annotator sign-in and the admin sign-in."""

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.http import HttpRequest
from django.test import Client
from django.utils import timezone

from tests.factories import UserFactory, annotator

LOGINS = {"annotator": "/accounts/login/", "admin": "/admin/login/"}
LIMIT = settings.AXES_FAILURE_LIMIT


def sign_in(client: Client, url: str, username: str, password: str, ip: str = "10.0.0.1"):
    return client.post(url, {"username": username, "password": password}, REMOTE_ADDR=ip)


def signed_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


@pytest.fixture
def user(db):
    # Staff, so the admin form would accept the right password too.
    user = annotator("ada", is_staff=True)
    user.set_password("right-password")
    user.save(update_fields=["password"])
    return user


@pytest.mark.parametrize("login", sorted(LOGINS))
def test_failures_below_the_limit_still_let_the_right_password_in(user, login) -> None:
    client = Client()
    for _ in range(LIMIT - 1):
        assert sign_in(client, LOGINS[login], "ada", "wrong").status_code == 200
    response = sign_in(client, LOGINS[login], "ada", "right-password")
    assert response.status_code == 302
    assert signed_in(client)
    # A success clears the count: the next mistake starts again from one.
    assert not AccessAttempt.objects.filter(username="ada").exists()


@pytest.mark.parametrize("login", sorted(LOGINS))
def test_the_limit_locks_out_even_the_right_password(user, login) -> None:
    client = Client()
    responses = [sign_in(client, LOGINS[login], "ada", f"guess{i}") for i in range(LIMIT)]
    assert [r.status_code for r in responses[:-1]] == [200] * (LIMIT - 1)
    locked = responses[-1]
    assert locked.status_code == 429
    assert b"Too many failed sign-ins" in locked.content
    assert b"even with the right password" in locked.content

    response = sign_in(client, LOGINS[login], "ada", "right-password")
    assert response.status_code == 429
    assert not signed_in(client)


def test_the_lock_is_per_username_and_address(user) -> None:
    client = Client()
    for i in range(LIMIT):
        sign_in(client, LOGINS["annotator"], "ada", f"guess{i}", ip="10.0.0.1")
    # Another address with the same username, and another user from the same address, are free.
    other_ip = Client()
    assert (
        sign_in(other_ip, LOGINS["annotator"], "ada", "right-password", ip="10.0.0.2").status_code
        == 302
    )
    UserFactory(username="bob", password="bobs-password")
    other_user = Client()
    response = sign_in(other_user, LOGINS["annotator"], "bob", "bobs-password", ip="10.0.0.1")
    assert response.status_code == 302


def test_the_lock_spans_both_sign_in_forms(user) -> None:
    client = Client()
    for i in range(LIMIT):
        sign_in(client, LOGINS["annotator"], "ada", f"guess{i}")
    assert sign_in(Client(), LOGINS["admin"], "ada", "right-password").status_code == 429


def test_the_right_password_works_again_after_the_cool_off(user) -> None:
    client = Client()
    for i in range(LIMIT):
        sign_in(client, LOGINS["annotator"], "ada", f"guess{i}")
    assert sign_in(client, LOGINS["annotator"], "ada", "right-password").status_code == 429
    # Age the recorded failures past the cool-off instead of sleeping through it.
    AccessAttempt.objects.filter(username="ada").update(
        attempt_time=timezone.now() - settings.AXES_COOLOFF_TIME - timedelta(seconds=1)
    )
    assert sign_in(client, LOGINS["annotator"], "ada", "right-password").status_code == 302
    assert signed_in(client)


def test_programmatic_authentication_passes_a_request(user) -> None:
    # axes' backend needs the request (it holds the address); code that signs users in
    # outside the forms must pass one, like this.
    client = Client()
    assert client.login(request=HttpRequest(), username="ada", password="right-password")


def test_one_password_sprayed_across_many_usernames_locks_the_address(user) -> None:
    address_limit = settings.STEPWISE_LOGIN_ADDRESS_FAILURE_LIMIT
    assert address_limit > LIMIT  # a shared office address survives a few typos
    UserFactory(username="bob", password="bobs-password")
    sprayer = Client()
    # One guess per username, existing or not: no (username, address) pair reaches its limit.
    responses = [
        sign_in(sprayer, LOGINS["annotator"], f"user{i}", "Summer2026!", ip="10.0.0.9")
        for i in range(address_limit)
    ]
    assert [r.status_code for r in responses[:-1]] == [200] * (address_limit - 1)
    assert responses[-1].status_code == 429
    # From that address even a right password is refused now, on both forms...
    for login in LOGINS.values():
        assert sign_in(Client(), login, "bob", "bobs-password", ip="10.0.0.9").status_code == 429
    # ...while other addresses are untouched.
    other = Client()
    response = sign_in(other, LOGINS["admin"], "ada", "right-password", ip="10.0.0.2")
    assert response.status_code == 302
    assert signed_in(other)


def test_a_success_does_not_reset_the_address_count(user) -> None:
    # A sprayer who owns one account cannot clear the address's count by signing into it.
    address_limit = settings.STEPWISE_LOGIN_ADDRESS_FAILURE_LIMIT
    for i in range(address_limit - 1):
        sign_in(Client(), LOGINS["annotator"], f"user{i}", "guess", ip="10.0.0.9")
    own = Client()
    response = sign_in(own, LOGINS["annotator"], "ada", "right-password", ip="10.0.0.9")
    assert response.status_code == 302
    response = sign_in(Client(), LOGINS["annotator"], "victim", "guess", ip="10.0.0.9")
    assert response.status_code == 429
