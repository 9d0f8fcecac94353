"""What operators scrape (issue 18, metrics): GET /metrics in the Prometheus text format."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tests.driver import Regime


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


async def test_metrics_count_requests_problems_and_the_regimes_state(stack):
    reg = await Regime.place(stack, "RMX1")
    await stack.settle(reg.id)
    # The domain gauges are read from PostgreSQL at most every 15 s: this scrape reads them.
    before = samples((await stack.http.get("/metrics")).text)
    ops = reg.users["operations"]
    for _ in range(3):
        assert (await stack.http.get(f"/regimes/{reg.id}", headers=ops)).status_code == 200
    assert (await stack.http.get("/regimes/regime-NOPE-2020-01-01", headers=ops)).status_code == 404
    r = await stack.http.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    after = samples(r.text)

    def grew(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    # The route is the template, never the path: one series for every regime.
    assert grew("sm_http_requests_total", method="GET", route="/regimes/{regime_id}", status="200") == 3
    assert grew("sm_http_requests_total", method="GET", route="/regimes/{regime_id}", status="404") == 1
    problems = {dict(k[1])["type"]: v - before.get(k, 0) for k, v in after.items()
                if k[0] == "sm_http_problems_total" and dict(k[1])["status"] == "404"}
    assert sum(problems.values()) >= 1 and all(len(t) < 50 for t in problems), problems
    assert grew("sm_http_request_duration_seconds_count", method="GET", route="/regimes/{regime_id}") == 4
    assert not any("RMX1" in str(k) for k in after), "no identifier in a label"
    # Domain gauges, read from this regime's database.
    assert after[("sm_regimes", (("phase", "in_special_measures"),))] == 1
    assert after[("sm_open_steps", (("role", "trust"),))] >= 1
    assert after[("sm_dead_letters_pending", ())] == 0
