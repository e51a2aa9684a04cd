"""Account recovery: reset mail through a real SMTP server, confirmation links, and no account oracle."""

from __future__ import annotations

import base64
import re
import socket
import uuid
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy

import pytest
from django.core import mail
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from governance.models import AuditEvent
from webplatform.accounts.models import Account
from webplatform.accounts.recovery import email_verify_token
from webplatform.accounts.services import user_register

PASSWORD = "a-Long-passphrase-42"
NEW_PASSWORD = "another-Long-passphrase-7"
LINK = re.compile(r"https?://\S+")


class Inbox:
    """aiosmtpd handler: keeps every message a real SMTP session delivered."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 (aiosmtpd's hook name)
        self.messages.append(message_from_bytes(envelope.content, policy=default_policy))
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_inbox(settings):
    """A real SMTP server on 127.0.0.1 (aiosmtpd), and Django's SMTP backend pointed at it."""
    from aiosmtpd.controller import Controller

    with socket.socket() as probe:  # a free port: aiosmtpd's controller checks its port by connecting to it
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_USE_TLS = "127.0.0.1", port, False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    yield inbox
    controller.stop()


def link_in(message: EmailMessage) -> str:
    body = message.get_body(preferencelist=("plain",))
    return LINK.findall(body.get_content())[0]


def path_of(link: str) -> str:
    return "/" + link.split("://", 1)[1].split("/", 1)[1]


def confirmed_user(name: str, email: str):
    user, token = user_register(username=name, password=PASSWORD, email=email)
    Account.objects.filter(user=user).update(email_verified_at="2026-01-01T00:00:00Z")
    return user, token


def test_sign_up_confirm_the_address_then_reset_the_password_through_a_real_smtp_server(
        purposes, smtp_inbox, django_capture_on_commit_callbacks):
    # Given a person who signs up on the page with an e-mail address
    client = Client()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/signup", {"username": "rosa", "password": PASSWORD,
                                           "email": "rosa@example.org", "version_processing": "1",
                                           "version_training": "1"})
    assert response.status_code == 302
    assert "not confirmed" in client.get("/account").content.decode()
    # When she follows the confirmation link the SMTP server received, and presses the button
    (confirm,) = smtp_inbox.messages
    assert confirm["To"] == "rosa@example.org" and "Confirm" in confirm["Subject"]
    link = path_of(link_in(confirm))
    assert client.get(link).status_code == 200  # a GET (a mail scanner's) confirms nothing
    assert Account.objects.get(user__username="rosa").email_verified_at is None
    client.post(link)
    # Then her address is confirmed, and says so
    page = client.get("/account").content.decode()
    assert "confirmed" in page and "not confirmed" not in page
    assert AuditEvent.objects.filter(action="account.email_verified").count() == 1

    # Given she forgot her password, on another device
    stranger = Client()
    with django_capture_on_commit_callbacks(execute=True):
        response = stranger.post("/password-reset/", {"email": "ROSA@example.org"})
    assert response.status_code == 302 and response["Location"] == "/password-reset/sent"
    # When she opens the link from the mail and sets a new password
    reset = smtp_inbox.messages[-1]
    assert reset["To"] == "rosa@example.org" and "Reset" in reset["Subject"]
    link = path_of(link_in(reset))
    user = Account.objects.get(user__username="rosa")
    uid = link.split("/")[2]  # the public id, not the sequential key
    assert uuid.UUID(bytes=base64.urlsafe_b64decode(uid + "==")) == user.public_id
    form_page = stranger.get(link, follow=True)
    assert b"Choose a new password" in form_page.content
    done = stranger.post(form_page.redirect_chain[-1][0],
                         {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert done.status_code == 302 and done["Location"] == "/password-reset/done"
    # Then the new password signs in, the old one does not, and the old session is signed out
    assert Client().login(username="rosa", password=NEW_PASSWORD)
    assert not Client().login(username="rosa", password=PASSWORD)
    assert client.get("/account").status_code == 302
    # And the link works once
    assert b"This link does not work" in stranger.get(link, follow=True).content
    assert AuditEvent.objects.filter(action="account.password_reset").count() == 1


def test_reset_answers_and_works_the_same_for_no_account_an_unconfirmed_and_a_confirmed_one(
        purposes, django_capture_on_commit_callbacks):
    confirmed_user("cara", "cara@example.org")
    user_register(username="una", password=PASSWORD, email="una@example.org")  # never confirmed
    answers, queries, mails = {}, {}, {}
    for email in ("nobody@example.org", "una@example.org", "cara@example.org"):
        mail.outbox.clear()
        client = Client()
        with django_capture_on_commit_callbacks(execute=True) as published:
            with CaptureQueriesContext(connection) as request_queries:
                response = client.post("/password-reset/", {"email": email})
        answers[email] = (response.status_code, response["Location"],
                          client.get(response["Location"]).content.decode())
        queries[email] = len(request_queries)
        assert len(published) == 1  # one task published, whether or not it has anyone to mail
        mails[email] = [m.to for m in mail.outbox]
    # The same page, and the same number of database queries in the request, whatever the address
    assert len(set(answers.values())) == 1
    assert len(set(queries.values())) == 1, queries
    # Only the confirmed address gets a reset link
    assert mails == {"nobody@example.org": [], "una@example.org": [],
                     "cara@example.org": [["cara@example.org"]]}


def test_reset_requests_are_throttled_per_caller_and_per_address_asked_for(purposes, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK,
                               "DEFAULT_THROTTLE_RATES": {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"],
                                                          "account_mail": "2/hour"}}
    client = Client(REMOTE_ADDR="203.0.113.5")
    for n in range(2):
        assert client.post("/password-reset/", {"email": f"a{n}@example.org"}).status_code == 302
    refused = client.post("/password-reset/", {"email": "a9@example.org"})
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
    assert "Too many e-mail requests" in refused.content.decode()
    # One address asked for from many places is limited too (mail bombing someone)
    for n in range(2):
        assert Client(REMOTE_ADDR=f"198.51.100.{n}").post("/password-reset/",
                                                          {"email": "b@example.org"}).status_code == 302
    assert Client(REMOTE_ADDR="198.51.100.9").post("/password-reset/",
                                                   {"email": "B@example.org"}).status_code == 429


def test_a_confirmation_link_is_refused_when_forged_or_the_address_changed(purposes):
    user, _ = user_register(username="tess", password=PASSWORD, email="tess@example.org")
    token = email_verify_token(user)
    assert Client().post(f"/account/verify-email/{token}x").status_code == 400
    user.email = "other@example.org"
    user.save(update_fields=["email"])
    refused = Client().post(f"/account/verify-email/{token}")
    assert refused.status_code == 400 and b"not valid" in refused.content
    assert Account.objects.get(user=user).email_verified_at is None


def test_registering_through_the_api_with_an_address_sends_the_confirmation_link(
        purposes, anon, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = anon.client.post("/api/v1/auth/register", {"username": "ivo", "password": PASSWORD,
                                                              "email": "ivo@example.org"}, format="json")
    assert response.status_code == 201
    (sent,) = mail.outbox
    assert sent.to == ["ivo@example.org"] and "/account/verify-email/" in sent.body


def test_a_mail_server_fault_in_embedded_mode_answers_the_same_page(
        purposes, settings, django_capture_on_commit_callbacks):
    confirmed_user("moe", "moe@example.org")
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    with socket.socket() as probe:  # a port nothing listens on: the connection is refused
        probe.bind(("127.0.0.1", 0))
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", probe.getsockname()[1]
    with django_capture_on_commit_callbacks(execute=True):
        response = Client().post("/password-reset/", {"email": "moe@example.org"})
    assert response.status_code == 302 and response["Location"] == "/password-reset/sent"


def test_changing_the_address_needs_the_password_and_leaves_it_unconfirmed_until_its_link(
        purposes, django_capture_on_commit_callbacks):
    user, _ = confirmed_user("noor", "noor@example.org")
    client = Client()
    client.force_login(user)
    # A wrong password changes nothing (and counts against the sign-in limits)
    refused = client.post("/account", {"action": "email", "email": "new@example.org", "password": "wrong"})
    assert refused.status_code == 400 and b"That is not your password" in refused.content
    user.refresh_from_db()
    assert user.email == "noor@example.org" and Account.objects.get(user=user).email_verified_at is not None
    # The right password sets it, unconfirmed, and sends its link to the new address only
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/account", {"action": "email", "email": "new@example.org",
                                            "password": PASSWORD})
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.email == "new@example.org" and Account.objects.get(user=user).email_verified_at is None
    assert [m.to for m in mail.outbox] == [["new@example.org"]]
    assert AuditEvent.objects.filter(action="account.email_changed").count() == 1
    # So a reset asked for the new address sends nothing until it is confirmed
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        Client().post("/password-reset/", {"email": "new@example.org"})
    assert mail.outbox == []


def test_the_reset_page_works_with_its_limit_unapplied_while_the_cache_is_down(purposes):
    from django.test import override_settings

    from .test_cache_outage import DEAD_CACHE, failures

    before = failures("throttle")
    with override_settings(CACHES=DEAD_CACHE):  # a real Redis client on a port where nothing listens
        response = Client().post("/password-reset/", {"email": "anyone@example.org"})
    assert response.status_code == 302 and response["Location"] == "/password-reset/sent"
    assert failures("throttle") >= before + 2  # both counters (caller, address asked for) were skipped
