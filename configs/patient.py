"""Simulated therapy patient (the main job of `make run`).

CPU defaults (`make run`) finish within 30 minutes on 2 cores with SmolLM2-135M;
`--config=configs/patient.py:gpu` or `:tpu` selects the accelerator settings of
`configs/platforms.py` (larger batch, more turns, a mesh).
"""

from configs.base import get_base_config
from configs.platforms import apply_platform


def get_config(platform: str = "cpu"):
    c = apply_platform(get_base_config(), platform)
    c.workdir = "runs/patient"
    c.data.role = "patient"
    return c
