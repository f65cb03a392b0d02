"""Simulated therapy patient (the main job of `make run`).

CPU defaults finish in about 30 minutes on 2 cores with SmolLM2-135M; `--config.platform=gpu`
or `tpu` switches to the accelerator settings below (larger batch and turns, a mesh).
"""

from configs.base import get_base_config


def get_config():
    c = get_base_config()
    c.workdir = "runs/patient"
    c.data.role = "patient"
    return c
