"""Property-based run of schemathesis over the served OpenAPI document: for every operation,
generated requests (as the Tianhe operator and as the province admin) never produce a server
error, and the answers conform to the documented status codes, content types and schemas.
Bounded: a few examples per operation, no shrinking deadline."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, Phase, given, settings

from tests.access.conftest import token_for

pytestmark = pytest.mark.integration

# Raise for a longer hunt: ACCESS_FUZZ_EXAMPLES=200 pytest tests/access/test_access_schemathesis.py
MAX_EXAMPLES = int(os.environ.get("ACCESS_FUZZ_EXAMPLES", "6"))


def test_schemathesis_no_server_errors(access):
    import schemathesis
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    engine, app, _ = access
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app.server)
    headers = [token_for(engine, "tianhe-operator"), token_for(engine, "gd-admin")]
    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 13
    ran = []

    for op in operations:
        @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
                  phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(case=op.as_strategy())
        def run(case):
            for h in headers:
                case.call_and_validate(headers=h, checks=checks)
            ran.append(op.label)

        run()
    assert len(set(ran)) == len(operations)
