"""Schemathesis over every operation of /api/openapi.json, against the real server on loopback:
no 5xx, and every answer (status, content type, headers, JSON body) as the document says.

Each operation is fuzzed with data that fits its schema (positive) and data that breaks it
(negative), half of the time with the ids of a meeting and a roster entry that exist, so that
the handlers behind the 404 are reached. DELETE and PATCH get a fresh meeting each time.

Examples per operation and mode: VECHE_FUZZ_EXAMPLES (default 8, about 40 s on two cores in
all). A longer run, e.g. before a release:

    VECHE_FUZZ_EXAMPLES=300 .venv/bin/pytest tests/test_fuzz_api.py -p no:cacheprovider
"""

import asyncio
import os
from collections import Counter
from dataclasses import replace
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ensure_resource_availability,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    use_after_free,
)

from rooms.roster import new_entry
from server.api.openapi import document
from server.config import Settings
from tests.conftest import LiveServer
from tests.sio_client import make_meeting

# WHIP and WHEP take SDP: text on the wire.
schemathesis.serializer.alias("application/sdp", "text/plain")

EXAMPLES = int(os.environ.get("VECHE_FUZZ_EXAMPLES", "8"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture
def settings(settings: Settings) -> Settings:  # type: ignore[no-redef]
    # The fuzzer sends wrong tokens on purpose; the throttle has its own test.
    return replace(settings, guess_limit=1_000_000)


def operations() -> list[Any]:
    schema = schemathesis.openapi.from_dict(document("http://127.0.0.1"))
    return [result.ok() for result in schema.get_all_operations()]


class Fuzzer:
    """Runs Hypothesis in a worker thread; the server and its store stay on the test's loop."""

    def __init__(self, server: LiveServer, loop: asyncio.AbstractEventLoop) -> None:
        self.server = server
        self.loop = loop
        self.http = requests.Session()
        self.statuses: Counter[int] = Counter()

    def on_loop(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=30)

    async def _real_ids(self) -> dict[str, str]:
        meeting = await make_meeting(self.server, title="Fuzzed")
        entry = new_entry(meeting.id, {"name": "Fuzzed", "role": "host"})
        await self.server.store.add_entry(entry)
        return {"meeting_id": meeting.id, "entry_id": entry.id, "meeting": meeting.id}

    def run(self, operation: Any, mode: GenerationMode) -> None:
        strategy = st.tuples(operation.as_strategy(generation_mode=mode), st.booleans())

        @examples(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(strategy)
        def property_(drawn: tuple[Any, bool]) -> None:
            case, real = drawn
            if real and case.path_parameters:
                ids = self.on_loop(self._real_ids())
                for name in case.path_parameters:
                    if name in ids:
                        case.path_parameters[name] = ids[name]
            response = case.call(
                base_url=self.server.url,
                session=self.http,
                headers=self.server.admin_headers(),
                timeout=30,
            )
            self.statuses[response.status_code] += 1
            case.validate_response(response, checks=CHECKS, headers=self.server.admin_headers())

        property_()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
async def test_every_operation_answers_as_documented(
    live_server: LiveServer, mode: GenerationMode
) -> None:
    fuzzer = Fuzzer(live_server, asyncio.get_running_loop())

    fuzzed: list[str] = []

    def run_all() -> None:
        for operation in operations():
            try:
                fuzzer.run(operation, mode)
            except Unsatisfiable:
                # Nothing to break: no parameters and no body (GET /api/meetings).
                assert mode is GenerationMode.NEGATIVE, operation.label
                continue
            fuzzed.append(operation.label)

    await asyncio.to_thread(run_all)
    fuzzer.http.close()
    print(f"{mode}: {len(fuzzed)} operations, answers by status {sorted(fuzzer.statuses.items())}")
    assert len(fuzzed) >= (len(operations()) if mode is GenerationMode.POSITIVE else 15)
    assert not any(status >= 500 for status in fuzzer.statuses), fuzzer.statuses
    # The fuzzer reached past authentication and validation to real answers.
    assert fuzzer.statuses[200] + fuzzer.statuses[201] + fuzzer.statuses[204] > 0


async def test_linked_operations_in_sequence(live_server: LiveServer) -> None:
    """Stateful: a meeting is made, then its roster, entries and links are used, changed and
    deleted in Hypothesis-chosen orders, following the document's links; a deleted resource
    must stay gone and a created one must be there."""
    schema = schemathesis.openapi.from_dict(document(live_server.url))
    statuses: Counter[int] = Counter()
    http = requests.Session()
    checks = [*CHECKS, use_after_free, ensure_resource_availability]

    class Machine(schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {
                "base_url": live_server.url,
                "session": http,
                "headers": live_server.admin_headers(),
                "timeout": 30,
            }

        def after_call(self, response: Any, case: Any) -> None:
            statuses[response.status_code] += 1

        def validate_response(
            self, response: Any, case: Any, additional_checks: Any = None, **kwargs: Any
        ) -> None:
            case.validate_response(response, checks=checks, transport_kwargs=kwargs)

    run = examples(
        max_examples=max(EXAMPLES, 5),
        stateful_step_count=8,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    await asyncio.to_thread(Machine.run, settings=run)
    http.close()
    print(f"stateful: answers by status {sorted(statuses.items())}")
    assert not any(status >= 500 for status in statuses), statuses
    assert statuses[201] > 0 and statuses[200] > 0
