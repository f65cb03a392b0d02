"""Simulated stranger in an open-ended chat."""

from configs.base import get_base_config


def get_config():
    c = get_base_config()
    c.workdir = "runs/chitchat"
    c.data.role = "chat"
    return c
