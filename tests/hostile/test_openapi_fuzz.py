"""Every operation of the OpenAPI description, fuzzed by schemathesis against the ``app`` target.

Schemathesis reads ``/openapi.json`` from the running app and sends generated requests (valid and invalid
parameters, bodies and path values) with valid credentials, so the handlers behind authentication are reached.
Whatever it sends, the answer keeps the contract of :func:`assert_clean_answer` and matches the description
(status codes and content types it declares). Schemathesis keeps numbers near the bounds the description states;
numbers far beyond 64 bits, on every route and every function target, are fuzzed in ``test_numbers.py``.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from schemathesis.checks import CheckFunction

from farmsync.services import Services
from tests.hostile.conftest import BEARER, HOSTILE, SERVICE, app_target, assert_clean_answer

FRAMEWORK_METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "OPTIONS", "HEAD", "PATCH"})
CHECKS: list[CheckFunction] = [
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
]


# Loaded at import: /openapi.json needs no settings. (schemathesis.pytest.from_fixture would defer this, but
# 4.32.5 reads ``request.node._nodeid``, which pytest 9 no longer has.)
schema = schemathesis.openapi.from_asgi("/openapi.json", app_target())


@pytest.mark.slow
@schema.parametrize()
@HOSTILE
def test_fuzzed_requests_keep_the_contract(case: Any, hostile_services: Services) -> None:
    response = case.call(headers={**SERVICE, **BEARER})
    if response.status_code == 405 and case.method.upper() not in FRAMEWORK_METHODS:
        # functions-framework routes only these methods to the target; it refuses the rest itself (text/plain)
        assert "Traceback" not in response.text
        return
    assert_clean_answer(response)
    case.validate_response(response, checks=CHECKS)
