"""Metric sinks: TensorBoard event files and a JSONL log, written by process 0 only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax

METRICS_FILE = "metrics.jsonl"  # one JSON object per logged step, appended across resumes


class MetricWriter:
    def __init__(self, workdir: str | Path) -> None:
        self.primary = jax.process_index() == 0
        self._tb = None
        self._jsonl = None
        if self.primary:
            from tensorboardX import SummaryWriter

            Path(workdir).mkdir(parents=True, exist_ok=True)
            self._tb = SummaryWriter(str(Path(workdir) / "tensorboard"))
            self._jsonl = open(Path(workdir) / METRICS_FILE, "a")  # noqa: SIM115

    def write(self, step: int, metrics: dict[str, Any], prefix: str = "") -> None:
        if not self.primary:
            return
        flat = {f"{prefix}{k}": float(v) for k, v in metrics.items()}
        for k, v in flat.items():
            self._tb.add_scalar(k, v, step)
        self._jsonl.write(json.dumps({"step": step, **flat}) + "\n")
        self._jsonl.flush()

    def close(self) -> None:
        if self.primary:
            self._tb.close()
            self._jsonl.close()
