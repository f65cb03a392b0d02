"""Simulated stranger in an open-ended chat."""

from configs.base import get_base_config
from configs.platforms import apply_platform


def get_config(platform: str = "cpu"):
    c = apply_platform(get_base_config(), platform)
    c.workdir = "runs/chitchat"
    c.data.role = "chat"
    return c
