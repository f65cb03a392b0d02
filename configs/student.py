"""Simulated student in a one-on-one lesson with a teacher."""

from configs.base import get_base_config


def get_config():
    c = get_base_config()
    c.workdir = "runs/student"
    c.data.role = "student"
    return c
