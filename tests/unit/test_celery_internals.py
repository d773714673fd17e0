"""The shortcuts through Celery internals run only on the versions they were written for, else the stock path."""

from __future__ import annotations

import logging

import pytest

from tasks import celery_internals


@pytest.fixture
def fresh_gate(monkeypatch):
    """enabled() decided anew for this test (it is cached per process) and again after it."""
    celery_internals.enabled.cache_clear()
    yield monkeypatch
    celery_internals.enabled.cache_clear()


def test_versions_written_for_match_what_is_installed():
    assert celery_internals.version_mismatch() is None


def test_a_different_version_is_named_with_the_one_written_for():
    mismatch = celery_internals.version_mismatch({"celery": "5.8.1", "kombu": "5.7.0"})
    assert mismatch == "celery 5.8.1 (written for 5.7.0)"


def test_another_celery_version_turns_the_shortcuts_off_with_one_warning(fresh_gate, caplog):
    fresh_gate.setattr(celery_internals.celery, "__version__", "5.9.0")
    with caplog.at_level(logging.WARNING, logger=celery_internals.__name__):
        assert celery_internals.enabled() is False
        assert celery_internals.enabled() is False
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "celery 5.9.0 (written for 5.7.0)" in warnings[0].getMessage()
    assert celery_internals.consumer_class() == celery_internals.STOCK_CONSUMER
    assert celery_internals.broker_transport("redis://127.0.0.1:6379/0") is None


def test_the_setting_turns_the_shortcuts_off(fresh_gate):
    fresh_gate.setenv("CELERY_SPEEDUPS", "0")
    from workers.settings import get_settings

    get_settings.cache_clear()
    try:
        assert celery_internals.enabled() is False
    finally:
        fresh_gate.delenv("CELERY_SPEEDUPS")
        get_settings.cache_clear()


def test_on_the_written_for_versions_the_shortcuts_are_named(fresh_gate):
    assert celery_internals.enabled() is True
    assert celery_internals.consumer_class() == celery_internals.BATCHING_CONSUMER
    assert celery_internals.broker_transport("rediss://h:6380/0") == celery_internals.TRUSTED_TRANSPORT
    assert celery_internals.broker_transport("sentinel://h:26379") is None, "only the Redis transport is screened"
