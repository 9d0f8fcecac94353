"""Connecting to Temporal with the project's data converter (pydantic models on the wire)."""

from __future__ import annotations

import asyncio

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.envconfig import ClientConfigProfile
from temporalio.runtime import Runtime

from infra import tracing

SEARCH_ATTRIBUTES = {
    "TrustOdsCode": "Keyword",
    "RegimePhase": "Keyword",
    "NextDeadline": "Datetime",
    "EscalationLevel": "Int",
    "RegimeId": "Keyword",
}


def connect_config(address: str, namespace: str) -> dict:
    """Client.connect's arguments as the SDK's own samples build them: `temporalio.envconfig` reads the
    standard environment (TEMPORAL_API_KEY, TEMPORAL_TLS, TEMPORAL_TLS_CLIENT_CERT_PATH and _KEY_PATH,
    TEMPORAL_TLS_SERVER_CA_CERT_PATH, TEMPORAL_TLS_SERVER_NAME, ...) and a profile (TEMPORAL_CONFIG_FILE,
    TEMPORAL_PROFILE), so the service runs against Temporal Cloud or a TLS cluster unchanged; the address and
    namespace are the service's settings (the same TEMPORAL_ADDRESS and TEMPORAL_NAMESPACE variables)."""
    config = dict(ClientConfigProfile.load().to_client_connect_config())
    config.update(target_host=address, namespace=namespace, data_converter=pydantic_data_converter,
                  interceptors=tracing.interceptors())
    return config


async def connect_temporal(address: str, namespace: str = "default", attempts: int = 1,
                           runtime: Runtime | None = None) -> Client:
    last: Exception | None = None
    for i in range(attempts):
        try:
            return await Client.connect(**connect_config(address, namespace), runtime=runtime)
        except Exception as e:  # the server may still be starting
            last = e
            await asyncio.sleep(min(0.2 * (i + 1), 2))
    assert last is not None
    raise last
