"""prefect.yaml: a deployment of discover on a cron schedule, accepted by a real Prefect server."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
import yaml
from prefect.flows import load_flow_from_entrypoint

ROOT = Path(__file__).resolve().parent.parent


def _deployments() -> list[dict]:
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    return config["deployments"]


@pytest.fixture(autouse=True)
def _restore_sys_path(monkeypatch):
    """Prefect's entrypoint loader puts the entrypoint's folder on sys.path; undo that."""
    monkeypatch.setattr(sys, "path", list(sys.path))


def test_loading_the_entrypoint_keeps_the_flows_package_importable_by_name(monkeypatch):
    """A Prefect worker loads the entrypoint by path, which puts flows/ on sys.path: no module
    in the package may then shadow the package itself (a flows/flows.py once did)."""
    monkeypatch.chdir(ROOT)
    (dep,) = _deployments()
    load_flow_from_entrypoint(dep["entrypoint"])
    folder = str((ROOT / dep["entrypoint"].split(":")[0]).parent)
    assert not (ROOT / "flows" / "flows.py").exists()
    import subprocess

    probe = subprocess.run(
        [sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
         "import flows.prefect_flows, flows.steps", folder],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert probe.returncode == 0, probe.stderr[-2000:]


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
def test_a_prefect_server_accepts_the_deployment_and_its_cron_schedule(monkeypatch,
                                                                      prefect_harness):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate

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

    with prefect_harness():
        stored = asyncio.run(check())
    assert stored.parameters["gin_files"] == ["gin/discover.gin"]
    assert stored.work_pool_name == "lionforge"
    assert [s.schedule.cron for s in stored.schedules] == ["0 2 * * *"]
