"""Issue 12, low findings on accounts: look-alike names, opaque ids, token lifetime/revocation, superusers."""

from __future__ import annotations

import importlib
import io
import uuid
from datetime import timedelta

import pytest
from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from governance.consent import PROCESSING, consent_set
from governance.models import AuditEvent, DataKey
from webplatform.accounts.confusables import skeleton
from webplatform.accounts.models import Account
from webplatform.accounts.services import username_key

from .images import image_bytes
from .support import assert_error, named

PASSWORD = "correct-Horse-battery-staple-9"
backfill = importlib.import_module("webplatform.accounts.migrations.0002_account").backfill
rekey = importlib.import_module("webplatform.accounts.migrations.0004_security_skeleton_uts39").rekey


def register(username: str):
    return APIClient().post("/api/v1/auth/register", {"username": username, "password": PASSWORD})


# --- look-alike usernames -------------------------------------------------------------------------------


@pytest.mark.parametrize("look_alike", [
    "ADMİN",       # Latin capital I with dot above
    "ａｄｍｉｎ",  # fullwidth, folded by NFKC
    "adm1n", "admln", "ADMIN",  # digit one, l for i, case
    "ɑdmin",       # Latin alpha (issue 19.10)
    "ᴀᴅᴍɪɴ",       # Latin small capitals
    "ꓮꓓꓟꓲꓠ",       # Lisu, all of it one script
    "𝐚𝐝𝐦𝐢𝐧",       # mathematical bold
])
def test_a_look_alike_of_a_taken_username_is_409(purposes, look_alike):
    assert register("admin").status_code == 201
    error = assert_error(register(look_alike), 409, "conflict")
    assert error["details"] == {"username": ["taken"]}
    assert get_user_model().objects.count() == 1


@pytest.mark.parametrize("mixed", [
    "аdmin",  # Cyrillic а
    "αdmin",  # Greek alpha
    "аdmіn",  # two Cyrillic letters
    "օwner",  # Armenian o (issue 19.10)
    "ⲁdmin",  # Coptic alpha
    "Ꭺdmin",  # Cherokee A
])
def test_a_name_mixing_scripts_is_refused_whatever_is_taken(purposes, mixed):
    error = assert_error(register(mixed), 400, "invalid")
    assert "one script" in error["details"]["username"][0]
    assert not get_user_model().objects.exists()


def test_names_of_one_script_and_scripts_written_together_are_fine(purposes):
    for name in ("Ζωή", "Мария", "José.García", "山田たろう", "김민수", "user_01"):
        assert register(name).status_code == 201, name


@pytest.mark.parametrize("distinct", ["admiral", "admins", "badmin", "adm-in"])
def test_names_that_only_share_letters_are_free(purposes, distinct):
    assert register("admin").status_code == 201
    assert register(distinct).status_code == 201


def test_skeletons_fold_width_case_script_and_marks():
    assert skeleton("ＡＤＭＩＮ") == skeleton("admin") == skeleton("аdmіn") == skeleton("ádmin")
    assert skeleton("rnary") == skeleton("mary")
    assert skeleton("bob") != skeleton("bab")
    # Unicode's full confusables data: Armenian, Cherokee and Lisu look-alikes of Latin letters
    assert skeleton("օwner") == skeleton("owner")
    assert skeleton("ꭺdmin") == skeleton("Ꭺdmin") == skeleton("admin")


def test_the_name_key_in_the_database_is_not_the_name(purposes):
    assert register("Zelda.Fitzgerald").status_code == 201
    account = Account.objects.get(user__username="Zelda.Fitzgerald")
    assert "zelda" not in account.name_key and len(account.name_key) == 64


# --- opaque public ids ----------------------------------------------------------------------------------


def test_register_returns_an_opaque_id_not_the_row_number(purposes):
    first, second = register("first-user").json(), register("second-user").json()
    users = get_user_model().objects.in_bulk(field_name="username")
    for body in (first, second):
        assert uuid.UUID(body["id"]).version == 4
        assert body["id"] != str(users[body["username"]].pk)
    assert first["id"] != second["id"]


def test_existing_users_get_accounts_from_the_migration_and_old_look_alikes_keep_working(db):
    # Given users from before the accounts table, two of them look-alikes (allowed back then)
    User = get_user_model()
    User.objects.bulk_create([User(username=name) for name in ("admin", "аdmin", "carol")])  # no signals
    assert not Account.objects.exists()
    # When the backfill runs
    backfill(apps, None)
    # Then every user has a public id; only the older look-alike holds the name key
    accounts = {a.user.username: a for a in Account.objects.select_related("user")}
    assert set(accounts) == {"admin", "аdmin", "carol"}
    assert accounts["admin"].name_key and accounts["аdmin"].name_key is None and accounts["carol"].name_key


def test_the_skeleton_migration_rekeys_every_account_and_keeps_old_look_alikes_working(purposes):
    # Given accounts keyed by the old hand-table skeleton, two of them distinct then and alike now (Latin
    # alpha was not in the old table): the keys stored are whatever the old skeleton gave
    for name in ("alice", "bob", "ɑlice-tmp"):
        register(name)
    get_user_model().objects.filter(username="ɑlice-tmp").update(username="ɑlice")
    for n, account in enumerate(Account.objects.order_by("pk")):
        Account.objects.filter(pk=account.pk).update(name_key=f"{n:064x}")
    # When the data migration runs
    rekey(apps, None)
    # Then each account holds its name's new key, and of the new look-alikes only the older one does
    keys = {a.user.username: a.name_key for a in Account.objects.select_related("user")}
    assert keys == {"alice": username_key("alice"), "bob": username_key("bob"), "ɑlice": None}
    assert username_key("ɑlice") == username_key("alice")
    # And neither name can be registered again, while the newer account still signs in
    assert_error(register("ALICE"), 409, "conflict")
    signed_in = APIClient().post("/api/v1/auth/token", {"username": "ɑlice", "password": PASSWORD})
    assert signed_in.status_code == 200


# --- every user gets a data key, createsuperuser included -----------------------------------------------


def test_a_superuser_from_createsuperuser_has_a_data_key_and_can_upload(purposes, monkeypatch):
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", PASSWORD)
    call_command("createsuperuser", "--noinput", "--username", "root", "--email", "root@example.com",
                 stdout=io.StringIO(), stderr=io.StringIO())
    root = get_user_model().objects.get(username="root")
    assert DataKey.objects.filter(user=root).exists() and Account.objects.filter(user=root).exists()
    consent_set(user_id=root.pk, purpose_slug=PROCESSING, granted=True, policy_version=1)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token " + APIClient().post(
        "/api/v1/auth/token", {"username": "root", "password": PASSWORD}).json()["token"])
    response = client.post("/api/v1/photos", {"file": named(image_bytes(), "a.jpg")}, format="multipart")
    assert response.status_code == 201, response.content


# --- token lifetime and revocation ----------------------------------------------------------------------


def test_a_token_past_its_lifetime_is_401_and_a_new_one_is_issued(owner):
    assert owner.client.get("/api/v1/me/consents").status_code == 200
    Token.objects.filter(key=owner.token).update(created=timezone.now() - settings.API_TOKEN_LIFETIME
                                                 - timedelta(seconds=1))
    error = assert_error(owner.client.get("/api/v1/me/consents"), 401, "not_authenticated")
    assert "expired" in error["message"]
    fresh = APIClient().post("/api/v1/auth/token", {"username": "owner", "password": "a-Long-passphrase-42"})
    assert fresh.status_code == 200 and fresh.json()["token"] != owner.token
    client = APIClient(HTTP_AUTHORIZATION=f"Token {fresh.json()['token']}")
    assert client.get("/api/v1/me/consents").status_code == 200


def test_a_token_inside_its_lifetime_is_reissued_unchanged(owner):
    Token.objects.filter(key=owner.token).update(created=timezone.now() - settings.API_TOKEN_LIFETIME
                                                 + timedelta(minutes=5))
    again = APIClient().post("/api/v1/auth/token", {"username": "owner", "password": "a-Long-passphrase-42"})
    assert again.json()["token"] == owner.token


def test_revoke_all_ends_the_token_and_every_web_session(owner, other):
    # Given the owner signed in on two browsers and by token, and another user signed in too
    browsers = [Client(), Client()]
    for browser in browsers:
        browser.post("/login/", {"username": "owner", "password": "a-Long-passphrase-42"})
        assert "_auth_user_id" in browser.session
    bystander = Client()
    bystander.post("/login/", {"username": "other", "password": "a-Long-passphrase-42"})
    before = AuditEvent.objects.count()
    # When the owner revokes everything
    response = owner.client.post("/api/v1/auth/revoke")
    assert response.status_code == 200 and response.json() == {"tokens": 1, "sessions": 2}
    # Then the token and both sessions are dead, the other user's are not, and it is audited
    assert_error(owner.client.get("/api/v1/me/consents"), 401)
    for browser in browsers:
        assert browser.get("/api/v1/me/consents").status_code in (401, 403)
    assert bystander.get("/api/v1/me/consents").status_code == 200
    assert other.client.get("/api/v1/me/consents").status_code == 200
    [event] = AuditEvent.objects.filter(seq__gt=before)
    assert event.action == "account.credentials_revoked" and event.details == {"tokens": 1, "sessions": 2}
