"""Celery's per-task log lines stay out of the log unless TASK_LOG_LINES=1; failures are logged either way."""

from __future__ import annotations

import logging

import pytest

from tasks.signals import TASK_LINE_LOGGERS, quiet_task_lines
from workers.settings import get_settings


@pytest.fixture(autouse=True)
def restore_levels():
    levels = {name: logging.getLogger(name).level for name in TASK_LINE_LOGGERS}
    get_settings.cache_clear()  # settings are read once per process; each test sets its own environment
    yield
    get_settings.cache_clear()
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def test_task_lines_are_quiet_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TASK_LOG_LINES", raising=False)
    quiet_task_lines()
    for name in TASK_LINE_LOGGERS:
        logger = logging.getLogger(name)
        assert not logger.isEnabledFor(logging.INFO), name
        assert logger.isEnabledFor(logging.ERROR), f"{name} must still log failures"


def test_task_log_lines_1_keeps_them(monkeypatch: pytest.MonkeyPatch) -> None:
    logging.getLogger("celery").setLevel(logging.INFO)  # what `celery worker --loglevel info` sets up
    monkeypatch.setenv("TASK_LOG_LINES", "1")
    quiet_task_lines()
    assert all(logging.getLogger(name).isEnabledFor(logging.INFO) for name in TASK_LINE_LOGGERS)
