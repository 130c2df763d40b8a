"""Property-based testing of the HTTP API against its own OpenAPI document (schemathesis, loopback).

Every operation gets valid and invalid inputs; no answer may be a 5xx, every 4xx must carry an
error with a message, and valid answers must match the response schemas the document publishes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import (  # noqa: E402
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from aios.backends.sim import SimBackend  # noqa: E402
from aios.config import KernelConfig  # noqa: E402
from aios.kernel import Kernel  # noqa: E402
from aios.server import ServerThread  # noqa: E402
from aios.server.settings import server_config_from_mapping  # noqa: E402
from tests.server.conftest import auth, token_table  # noqa: E402

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    data = tmp_path_factory.mktemp("fuzz")
    cfg = server_config_from_mapping(
        {
            "port": 0,
            "log_level": "critical",
            "tokens": token_table(),
            "max_tokens_limit": 64,
            "default_max_tokens": 16,
            "max_messages": 8,
        }
    )

    def kernel() -> Kernel:
        kcfg = KernelConfig(backends=[], data_dir=str(Path(data)), default_timeout=10.0)
        return Kernel(kcfg, backends={"sim": SimBackend(capacity=8)}, entry_points=False)

    srv = ServerThread(server_config=cfg, kernel_factory=kernel).start()
    yield srv
    srv.stop()


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
#: The python tool runs model-written code in a sandbox: not what a fuzzer should feed.
SKIPPED = ("/v1/syscalls/tool/call", "/v1/tool-loop")


def _check(case: Any) -> None:
    response = case.call(headers={**(case.headers or {}), **auth("admin")}, timeout=30)
    if response.status_code == 504:
        # The one legitimate 5xx: the caller gave the syscall a deadline it could not meet.
        asked = case.body.get("timeout") if isinstance(case.body, dict) else None
        asked = asked if asked is not None else float((case.headers or {}).get("X-AIOS-Timeout", "inf"))
        assert response.json()["error"]["code"] == "DeadlineExceededError" and asked < 0.1, asked
        return
    case.validate_response(response, checks=CHECKS)
    if 400 <= response.status_code < 500:
        error = response.json()["error"]
        assert isinstance(error["message"], str) and error["message"], response.text
        assert error["code"], response.text


# Driven from hypothesis directly: schemathesis' pytest plugin does not run under pytest 9.
def test_the_api_honours_its_own_schema(api: ServerThread) -> None:
    schema = schemathesis.openapi.from_url(f"{api.url}/openapi.json")
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) > 20
    tried = []
    for op in operations:
        if op.path in SKIPPED:
            continue
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=op.as_strategy(generation_mode=mode))
            @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), database=None)
            def run(case: Any) -> None:
                _check(case)

            try:
                run()
            except Unsatisfiable:
                # An operation without parameters or body has nothing that could be made invalid.
                assert mode is GenerationMode.NEGATIVE, op.path
                continue
            tried.append((op.method.upper(), op.path, mode.value))
    assert ("POST", "/v1/chat/completions", "negative") in tried
    # The server's own count of its answers: both kinds were exercised, and none was a 5xx.
    codes = {
        int(line.split('"')[1]): float(line.split()[-1])
        for line in httpx.get(f"{api.url}/metrics", headers=auth("admin")).text.splitlines()
        if line.startswith("aios_http_responses_total{")
    }
    print(sorted(codes.items()), len(tried))
    assert sum(n for c, n in codes.items() if c < 300) > 50
    assert sum(n for c, n in codes.items() if 400 <= c < 500) > 50
    assert not [c for c in codes if c >= 500 and c != 504]
