"""gin at the package boundary: what an experiment file may bind, and parsing it.

Configurables are registered here, once, under short names (``EvolveSettings.budget = 100``,
``EvolutionConfig.population_size = 64``, ``Stage``, ``Hurdles``, ...), so pipeline/ stays
plain Python. ``parse()`` turns gin's errors into :class:`ConfigError` naming the file, the
line and the binding, and returns the operative config text that every run logs; ``load()``
parses once and returns every settings object as one :class:`Configuration`.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from prefect.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner

import gin
from flows import settings
from pipeline.evaluator import Hurdles
from pipeline.funnel import Stage
from pipeline.mutate import MutationConfig
from pipeline.proxy import Proxy
from pipeline.search_config import EvolutionConfig, RestartFrom, Strategy

__all__ = [
    "ConfigError",
    "Configuration",
    "configured",
    "load",
    "parse",
    "prefect_api_for",
    "spawn_local_cluster",
    "task_runner",
]


class ConfigError(ValueError):
    """A gin file or binding that does not configure lionforge."""


def _register() -> dict[str, type]:
    classes = {
        "Experiment": settings.Experiment,
        "EvolveSettings": settings.EvolveSettings,
        "FunnelSettings": settings.FunnelSettings,
        "SimplifySettings": settings.SimplifySettings,
        "BenchmarkSettings": settings.BenchmarkSettings,
        "RegisterSettings": settings.RegisterSettings,
        "TrackingSettings": settings.TrackingSettings,
        "EvolutionConfig": EvolutionConfig,
        "MutationConfig": MutationConfig,
        "Hurdles": Hurdles,
        "Stage": Stage,
        "Proxy": Proxy,
    }
    out = {name: gin.external_configurable(cls, name=name) for name, cls in classes.items()}
    gin.constant("RESTART_SEED", RestartFrom.SEED)
    gin.constant("RESTART_BEST", RestartFrom.BEST)
    gin.constant("RESTART_ALTERNATE", RestartFrom.ALTERNATE)
    gin.constant("STRATEGY_EVOLUTION", Strategy.EVOLUTION)
    gin.constant("STRATEGY_RANDOM", Strategy.RANDOM)
    return out


_CONFIGURABLE = _register()


@gin.configurable
def task_runner(
    kind: str = "threads",
    max_workers: int = 1,
    address: str | None = None,
    n_workers: int = 2,
    performance_report: str | None = None,
):
    """The Prefect task runner for evaluation batches.

    ``kind``:
      - ``threads`` (default; TF releases the GIL) or ``processes``: a local pool of
        ``max_workers``.
      - ``dask`` (prefect-dask's ``DaskTaskRunner``): with ``address`` (``tcp://host:8786``),
        tasks go to that running Dask scheduler and its workers; without, to a local cluster of
        ``n_workers`` spawned worker processes, one thread each (:func:`spawn_local_cluster`).
        ``performance_report``: write Dask's HTML performance report (task stream) there.

    Workers need the project importable; they get program texts and parse them themselves.
    """
    if max_workers < 1:
        raise ConfigError(f"task_runner.max_workers must be >= 1, got {max_workers}")
    if kind == "threads":
        return ThreadPoolTaskRunner(max_workers=max_workers)
    if kind == "processes":
        return ProcessPoolTaskRunner(max_workers=max_workers)
    if kind == "dask":
        return _dask_runner(address, n_workers, performance_report)
    raise ConfigError(
        f"task_runner.kind must be 'threads', 'processes' or 'dask', got {kind!r}"
    )


def _dask_runner(address: str | None, n_workers: int, performance_report: str | None):
    from prefect_dask import DaskTaskRunner

    report = {"performance_report_path": performance_report} if performance_report else {}
    if address:
        if "://" not in address:
            raise ConfigError(
                f"task_runner.address must be a scheduler address like 'tcp://host:8786', "
                f"got {address!r}"
            )
        return DaskTaskRunner(address=address, **report)
    if n_workers < 1:
        raise ConfigError(f"task_runner.n_workers must be >= 1, got {n_workers}")
    return DaskTaskRunner(
        cluster_class=spawn_local_cluster, cluster_kwargs={"n_workers": n_workers}, **report
    )


def spawn_local_cluster(n_workers: int = 2, **kwargs):
    """A ``distributed.LocalCluster`` of ``n_workers`` worker processes, one thread each.

    Worker processes are started with ``spawn``, never ``fork``: a forked child of a process
    that imported TensorFlow inherits its threads' locks and can hang. distributed reads its
    ``distributed.worker.multiprocessing-method`` setting whenever a nanny (re)starts a worker,
    so it is set for this process, not only around the construction.
    """
    import dask
    from distributed import LocalCluster

    dask.config.set({"distributed.worker.multiprocessing-method": "spawn"})
    options = {"processes": True, "threads_per_worker": 1}
    return LocalCluster(n_workers=n_workers, **{**options, **kwargs})


@contextlib.contextmanager
def prefect_api_for(runner) -> Iterator[None]:
    """Run flows with ``runner`` inside this: local Dask workers report to this process' server.

    With no ``PREFECT_API_URL``, Prefect starts a temporary local server for the flow, and each
    worker of a local Dask cluster would start one more of its own (tasks ship the flow's
    settings, which name no server). Here the temporary server is started first and named, so
    every worker reports to it. A runner on a remote scheduler is left alone: its workers
    cannot reach this machine's 127.0.0.1; point ``PREFECT_API_URL`` at a ``prefect server``.
    """
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_SERVER_EPHEMERAL_ENABLED,
        temporary_settings,
    )

    local_dask = getattr(runner, "cluster_class", None) is spawn_local_cluster
    ephemeral = PREFECT_SERVER_EPHEMERAL_ENABLED.value()
    if not local_dask or PREFECT_API_URL.value() or not ephemeral:
        yield
        return
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()  # the one Prefect itself would start; stopped at exit
    server.start()
    with temporary_settings({PREFECT_API_URL: server.api_url}):
        yield


def configured(name: str):
    """An instance of the registered configurable ``name`` with the parsed bindings."""
    return _CONFIGURABLE[name]()


@dataclass(frozen=True)
class Configuration:
    """What an experiment's gin files and bindings configure, read once by :func:`load`:
    every settings object, the operative config text every run logs, and where it came from.
    The flows take one (the CLI parses gin once, before Prefect starts, and hands it on)."""

    gin_files: tuple[str, ...]
    gin_params: tuple[str, ...]
    text: str
    experiment: settings.Experiment
    evolve: settings.EvolveSettings
    funnel: settings.FunnelSettings
    simplify: settings.SimplifySettings
    benchmark: settings.BenchmarkSettings
    register: settings.RegisterSettings
    tracking: settings.TrackingSettings


# Configuration's fields -> the configurable each is built from.
_SETTINGS = {"experiment": "Experiment", "evolve": "EvolveSettings", "funnel": "FunnelSettings",
             "simplify": "SimplifySettings", "benchmark": "BenchmarkSettings",
             "register": "RegisterSettings", "tracking": "TrackingSettings"}


def load(gin_files: Sequence[str | os.PathLike] = (), gin_params: Sequence[str] = ()
         ) -> Configuration:
    """Parse gin (:func:`parse`) and build every settings object from it, so an
    out-of-range value (K = 0, a negative tolerance, an unknown task, ...) is a
    :class:`ConfigError` naming its binding before anything starts."""
    text = parse(gin_files, gin_params)
    built = {}
    for field_name, name in _SETTINGS.items():
        try:
            built[field_name] = configured(name)
        except (ValueError, TypeError) as err:
            raise ConfigError(f"bad gin config: {str(err).splitlines()[0]}") from None
    return Configuration(tuple(map(str, gin_files)), tuple(gin_params), text, **built)


def parse(gin_files: Sequence[str | os.PathLike] = (), gin_params: Sequence[str] = ()) -> str:
    """Clear gin, parse the files then the bindings; returns the config text to log.

    Files are looked up as given, then in the repository's ``gin/`` folder; ``include`` lines
    resolve against the given files' folders and ``gin/`` (so a file of yours can include
    ours).
    """
    gin.clear_config()
    files = [str(_locate(f)) for f in gin_files]
    for folder in [str(GIN_DIR), *(str(Path(f).parent) for f in files)]:
        if folder not in _SEARCH_PATHS:  # gin keeps search paths for the process' lifetime
            gin.add_config_file_search_path(folder)
            _SEARCH_PATHS.add(folder)
    try:
        with _quiet_include_probes():
            gin.parse_config_files_and_bindings(files, list(gin_params), finalize_config=False)
    except (ValueError, SyntaxError, KeyError, TypeError) as err:
        raise ConfigError(f"bad gin config: {err}") from None
    return gin.config_str()


class _IncludeProbe(logging.Filter):
    """gin tries an ``include`` in the working directory before the search paths and logs
    'Path not found' at ERROR for each miss; a miss that a later path resolves is not one."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.getMessage().startswith("Path not found:")
            and record.pathname.endswith(os.path.join("gin", "resource_reader.py"))
        )


@contextlib.contextmanager
def _quiet_include_probes() -> Iterator[None]:
    probe = _IncludeProbe()
    root = logging.getLogger()
    root.addFilter(probe)
    try:
        yield
    finally:
        root.removeFilter(probe)


GIN_DIR = Path(__file__).resolve().parent.parent / "gin"
_SEARCH_PATHS: set[str] = set()


def _locate(path: str | os.PathLike) -> Path:
    p = Path(path)
    if p.exists():
        return p.resolve()
    bundled = GIN_DIR / p.name
    if bundled.exists():
        return bundled
    raise ConfigError(f"gin file not found: {path}")
