"""Schemathesis against /api/schema/, in process: generated requests for every operation, checked for no 5xx,
documented status codes, content types and headers, and responses matching their schemas.
`make test-hostile` runs it; skipped otherwise. HOSTILE_EXAMPLES sets the examples per operation.

Not checked: "schema-valid request rejected". A schema cannot say that a file must decode as an image, a
password must pass the validators or a policy version must be the current one, so those 4xx are right."""

from __future__ import annotations

import os

import pytest

if not os.environ.get("HOSTILE_SCHEMATHESIS"):
    pytest.skip("set HOSTILE_SCHEMATHESIS=1 (make test-hostile does)", allow_module_level=True)

import schemathesis  # noqa: E402  (a dev-only dependency, imported only when asked for)
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from webplatform.wsgi import application  # noqa: E402

# Loaded at import (the schema is generated from code, no database needed); from_fixture does not yet
# work with pytest 9.
schema = schemathesis.openapi.from_wsgi("/api/schema/", application)


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]


EXAMPLES = settings(max_examples=int(os.environ.get("HOSTILE_EXAMPLES", "40")), deadline=None,
                    suppress_health_check=list(HealthCheck))


@schema.parametrize()
@EXAMPLES
def test_the_api_keeps_its_schema_for_an_end_user(case, owner):
    # The caller holds processing consent; compliance-only operations answer their documented 403.
    case.call_and_validate(headers={"Authorization": f"Token {owner.token}"}, checks=CHECKS)


@schema.parametrize()
@EXAMPLES
def test_the_api_keeps_its_schema_for_a_compliance_officer(case, officer):
    case.call_and_validate(headers={"Authorization": f"Token {officer.token}"}, checks=CHECKS)
