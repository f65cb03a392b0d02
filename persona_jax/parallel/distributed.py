"""Multi-process (multi-host) start-up: one call at the top of `main`, a no-op on one machine.

JAX runs multi-host jobs as multi-controller programs: every host runs the same script, and
`jax.distributed.initialize` connects the processes into one runtime before any device is
touched. Afterwards `jax.devices()` lists every device of the job, a mesh spans all of them,
and jitted code runs unchanged; only host-side work (input shards, files) needs to know which
process it is in.

`maybe_initialize` decides whether to connect, from (in order of precedence per field):

1. the run config's `distributed` section (`cfg`), e.g. `--config.distributed.auto=True`;
2. environment variables set by the launch scripts, one set per process:
   `PERSONA_JAX_COORDINATOR` (host:port of process 0), `PERSONA_JAX_NUM_PROCESSES`,
   `PERSONA_JAX_PROCESS_ID`, optionally `PERSONA_JAX_LOCAL_DEVICE_IDS` ("0,1,2,3"), and
   `PERSONA_JAX_DISTRIBUTED=auto` for JAX's own cluster detection (Cloud TPU, SLURM, Open MPI).

With none of these set it does nothing, so single-process runs (a laptop, one GPU box, one
TPU VM host) need no configuration.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import jax
from ml_collections import ConfigDict

logger = logging.getLogger(__name__)

ENV_COORDINATOR = "PERSONA_JAX_COORDINATOR"
ENV_NUM_PROCESSES = "PERSONA_JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "PERSONA_JAX_PROCESS_ID"
ENV_LOCAL_DEVICE_IDS = "PERSONA_JAX_LOCAL_DEVICE_IDS"
ENV_MODE = "PERSONA_JAX_DISTRIBUTED"

# Keys accepted in the config's `distributed` section; anything else is a typo worth an error
# (a misspelt `coordinator_adress` would otherwise silently start N independent runs).
CONFIG_KEYS = frozenset(
    {
        "auto",
        "coordinator_address",
        "num_processes",
        "process_id",
        "local_device_ids",
        "initialization_timeout",
        "cpu_collectives",
    }
)


@dataclasses.dataclass(frozen=True)
class DistributedInfo:
    """Where this process sits in the job, as reported by JAX after start-up."""

    process_index: int
    process_count: int
    local_device_count: int
    device_count: int
    initialized: bool
    """Whether the multi-process runtime is up (False for a plain single-process run)."""

    @property
    def is_primary(self) -> bool:
        """Process 0 writes the files every process would otherwise write identically."""
        return self.process_index == 0

    def __str__(self) -> str:
        return (
            f"process {self.process_index}/{self.process_count}, "
            f"{self.local_device_count} local of {self.device_count} devices"
            + ("" if self.initialized else " (single process)")
        )


@dataclasses.dataclass(frozen=True)
class InitSettings:
    """Arguments for `jax.distributed.initialize`, resolved from config and environment."""

    auto: bool
    coordinator_address: str | None = None
    num_processes: int | None = None
    process_id: int | None = None
    local_device_ids: tuple[int, ...] | None = None
    initialization_timeout: int | None = None
    cpu_collectives: str | None = None

    def initialize_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `jax.distributed.initialize` (unset ones left to JAX)."""
        kwargs: dict[str, Any] = {
            k: v
            for k, v in (
                ("coordinator_address", self.coordinator_address),
                ("num_processes", self.num_processes),
                ("process_id", self.process_id),
                (
                    "local_device_ids",
                    None if self.local_device_ids is None else list(self.local_device_ids),
                ),
                ("initialization_timeout", self.initialization_timeout),
            )
            if v is not None
        }
        if not self.auto:
            # Everything was given explicitly, so JAX's cluster detection must not fill in the
            # rest: under SLURM it would restrict each process to GPU $SLURM_LOCALID, which is
            # wrong for one process per node.
            kwargs["cluster_detection_method"] = "deactivate"
        return kwargs


def _as_dict(cfg: Mapping[str, Any] | ConfigDict | None) -> dict[str, Any]:
    if cfg is None:
        return {}
    if hasattr(cfg, "to_dict"):  # ml_collections.ConfigDict is not a Mapping
        cfg = cfg.to_dict()
    out = dict(cfg)
    unknown = set(out) - CONFIG_KEYS
    if unknown:
        raise ValueError(
            f"unknown distributed config keys {sorted(unknown)}; known: {sorted(CONFIG_KEYS)}"
        )
    return out


def _int(value: Any, what: str) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError(f"{what} must be an integer, got {value!r}")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be an integer, got {value!r}") from None


def _device_ids(value: Any, what: str) -> tuple[int, ...] | None:
    if value is None or value == "":
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,)
    items: Sequence[Any] = value.split(",") if isinstance(value, str) else value
    try:
        return tuple(int(str(x).strip()) for x in items)
    except (TypeError, ValueError):
        raise ValueError(
            f"{what} must be device ids like '0,1,2,3' or [0, 1], got {value!r}"
        ) from None


def resolve_settings(
    cfg: Mapping[str, Any] | ConfigDict | None = None, environ: Mapping[str, str] | None = None
) -> InitSettings | None:
    """What `maybe_initialize` would pass to JAX, or None for a single-process run.

    Config values win over environment variables field by field: the environment carries what
    differs per process (the process id), the config what a run pins down for all of them.
    """
    env = os.environ if environ is None else environ
    c = _as_dict(cfg)

    mode = env.get(ENV_MODE, "").strip().lower()
    if mode not in ("", "auto"):
        raise ValueError(f"{ENV_MODE} must be 'auto' or unset, got {env[ENV_MODE]!r}")
    auto = bool(c.get("auto") or mode == "auto")

    def pick(key: str, env_key: str) -> Any:
        value = c.get(key)
        return env.get(env_key) if value is None or value == "" else value

    source = {
        "coordinator_address": f"config.distributed.coordinator_address / ${ENV_COORDINATOR}",
        "num_processes": f"config.distributed.num_processes / ${ENV_NUM_PROCESSES}",
        "process_id": f"config.distributed.process_id / ${ENV_PROCESS_ID}",
        "local_device_ids": f"config.distributed.local_device_ids / ${ENV_LOCAL_DEVICE_IDS}",
    }
    coordinator = pick("coordinator_address", ENV_COORDINATOR) or None
    num_processes = _int(pick("num_processes", ENV_NUM_PROCESSES), source["num_processes"])
    process_id = _int(pick("process_id", ENV_PROCESS_ID), source["process_id"])
    local_ids = _device_ids(
        pick("local_device_ids", ENV_LOCAL_DEVICE_IDS), source["local_device_ids"]
    )
    timeout = _int(c.get("initialization_timeout"), "config.distributed.initialization_timeout")
    collectives = c.get("cpu_collectives") or None

    given = {
        "coordinator_address": coordinator,
        "num_processes": num_processes,
        "process_id": process_id,
    }
    if not auto:
        if all(v is None for v in given.values()) and local_ids is None:
            return None
        missing = [source[k] for k, v in given.items() if v is None]
        if missing:
            raise ValueError(
                "a multi-process run needs the coordinator address, the number of processes and "
                f"this process's id; missing: {', '.join(missing)} "
                f"(or set {ENV_MODE}=auto / config.distributed.auto=True on TPU, SLURM, Open MPI)"
            )
        if num_processes == 1 and local_ids is None:
            logger.info("num_processes=1: running single-process, distributed runtime not started")
            return None
    if coordinator is not None and ":" not in coordinator:
        raise ValueError(f"coordinator address must be host:port, got {coordinator!r}")
    if num_processes is not None and num_processes < 1:
        raise ValueError(f"num_processes must be >= 1, got {num_processes}")
    if process_id is not None and num_processes is not None and not 0 <= process_id < num_processes:
        raise ValueError(f"process_id={process_id} not in [0, {num_processes})")
    return InitSettings(
        auto=auto,
        coordinator_address=coordinator,
        num_processes=num_processes,
        process_id=process_id,
        local_device_ids=local_ids,
        initialization_timeout=timeout,
        cpu_collectives=collectives,
    )


def current_info() -> DistributedInfo:
    """This process's place in the job (initialises the JAX backend if it is not up yet)."""
    return DistributedInfo(
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        local_device_count=jax.local_device_count(),
        device_count=jax.device_count(),
        initialized=jax.distributed.is_initialized(),
    )


def maybe_initialize(cfg: Mapping[str, Any] | ConfigDict | None = None) -> DistributedInfo:
    """Start the multi-process runtime when config or environment ask for it; else a no-op.

    Must run before anything touches devices (`jax.devices()`, `jax.process_index()`, any
    computation): JAX fixes the device list when its backend starts. Calling it again (or after
    something else started the runtime) just reports the current state.
    """
    if jax.distributed.is_initialized():
        return current_info()
    settings = resolve_settings(cfg)
    if settings is None:
        return current_info()
    if settings.cpu_collectives is not None:
        jax.config.update("jax_cpu_collectives_implementation", settings.cpu_collectives)
    elif jax.config.jax_cpu_collectives_implementation is None:
        # Without a CPU collectives implementation, cross-process computations on the CPU
        # backend (tests, CPU clusters) fail at run time; gloo ships with jaxlib.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    kwargs = settings.initialize_kwargs()
    logger.info("starting the JAX distributed runtime: %s", kwargs or "auto-detected")
    try:
        jax.distributed.initialize(**kwargs)
    except ValueError as e:
        if settings.auto:
            raise ValueError(
                f"{e} -- distributed auto-detection found no Cloud TPU, SLURM or Open MPI "
                f"environment; set the coordinator address, number of processes and process id "
                f"(${ENV_COORDINATOR}, ${ENV_NUM_PROCESSES}, ${ENV_PROCESS_ID}) instead"
            ) from e
        raise
    info = current_info()
    logger.info("distributed runtime up: %s", info)
    return info


def is_primary() -> bool:
    """True in process 0, the one that writes shared files (resolved config, TensorBoard).

    Checkpoints are not among them: orbax coordinates its own multi-process writes and must be
    called from every process.
    """
    return jax.process_index() == 0
