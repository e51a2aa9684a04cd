"""Account tasks: they take user ids and call the service. Published by name through webplatform.taskqueue."""

from __future__ import annotations

import logging
import smtplib

from celery import shared_task

from .recovery import account_mail_send

log = logging.getLogger(__name__)
MAIL_ERRORS = (smtplib.SMTPException, OSError)  # what Django's SMTP backend lets through


@shared_task(bind=True, max_retries=5)
def account_mail_task(self, kind: str, user_ids: list[int], domain: str, secure: bool) -> int:
    try:
        return account_mail_send(kind=kind, user_ids=user_ids, domain=domain, secure=secure)
    except MAIL_ERRORS as exc:
        if self.request.is_eager:
            # Embedded mode runs this in the request: the page must answer the same whether or not a mail
            # was due, so a mail server fault is logged, never shown.
            log.warning("account mail (%s) not sent: %s", kind, exc)
            return 0
        raise self.retry(exc=exc, countdown=60 * 2**self.request.retries) from exc
