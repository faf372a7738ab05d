"""prefect.yaml: a deployment of discover on a cron schedule, accepted by a real Prefect server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml
from prefect.flows import load_flow_from_entrypoint

ROOT = Path(__file__).resolve().parent.parent


def _deployments() -> list[dict]:
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    return config["deployments"]


def test_the_deployment_runs_discover_with_parameters_it_accepts(monkeypatch):
    monkeypatch.chdir(ROOT)
    (dep,) = _deployments()
    flow = load_flow_from_entrypoint(dep["entrypoint"])
    assert flow.name == "lionforge-discover"
    flow.validate_parameters(dep["parameters"])  # raises on a parameter the flow lacks
    for gin_file in dep["parameters"]["gin_files"]:
        assert (ROOT / gin_file).exists()
    assert dep["work_pool"]["name"] == "lionforge"


@pytest.mark.slow
def test_a_prefect_server_accepts_the_deployment_and_its_cron_schedule(monkeypatch):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.testing.utilities import prefect_test_harness

    monkeypatch.chdir(ROOT)
    (dep,) = _deployments()
    flow = load_flow_from_entrypoint(dep["entrypoint"])
    (schedule,) = dep["schedules"]

    async def check():
        async with get_client() as client:
            await client.create_work_pool(
                WorkPoolCreate(name=dep["work_pool"]["name"], type="process")
            )
            deployment = await flow.to_deployment(
                name=dep["name"],
                parameters=dep["parameters"],
                cron=schedule["cron"],
                work_pool_name=dep["work_pool"]["name"],
            )
            deployment_id = await deployment.apply()
            stored = await client.read_deployment(deployment_id)
            return stored

    with prefect_test_harness():
        stored = asyncio.run(check())
    assert stored.parameters["gin_files"] == ["gin/discover.gin"]
    assert stored.work_pool_name == "lionforge"
    assert [s.schedule.cron for s in stored.schedules] == ["0 2 * * *"]
