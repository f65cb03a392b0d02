"""Simulated student in a one-on-one lesson with a teacher."""

from configs.base import get_base_config
from configs.platforms import apply_platform


def get_config(platform: str = "cpu"):
    c = apply_platform(get_base_config(), platform)
    c.workdir = "runs/student"
    c.data.role = "student"
    return c
