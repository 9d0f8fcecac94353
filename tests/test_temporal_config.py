"""The Temporal client is configured like the SDK's samples: temporalio.envconfig (issue 18, item 6)."""

from __future__ import annotations

from infra.clients import connect_config


def test_tls_and_api_key_come_from_the_standard_environment(monkeypatch, tmp_path):
    for var in ("TEMPORAL_API_KEY", "TEMPORAL_TLS", "TEMPORAL_CONFIG_FILE", "TEMPORAL_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    plain = connect_config("127.0.0.1:7233", "default")
    assert plain["target_host"] == "127.0.0.1:7233" and not plain.get("tls") and not plain.get("api_key")

    monkeypatch.setenv("TEMPORAL_API_KEY", "cloud-key")
    cloud = connect_config("ns.acct.tmprl.cloud:7233", "ns.acct")
    assert cloud["api_key"] == "cloud-key" and cloud["tls"] is True  # an API key implies TLS
    assert cloud["target_host"] == "ns.acct.tmprl.cloud:7233" and cloud["namespace"] == "ns.acct"
    assert cloud["data_converter"].payload_converter is not None

    monkeypatch.delenv("TEMPORAL_API_KEY")
    config = tmp_path / "temporal.toml"
    config.write_text('[profile.prod]\naddress = "ignored:7233"\napi_key = "from-profile"\n')
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(config))
    monkeypatch.setenv("TEMPORAL_PROFILE", "prod")
    profiled = connect_config("temporal.internal:7233", "default")
    # The profile gives the credentials; the address stays the service's setting (TEMPORAL_ADDRESS).
    assert profiled["api_key"] == "from-profile" and profiled["target_host"] == "temporal.internal:7233"
