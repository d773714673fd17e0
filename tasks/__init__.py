"""Celery app and tasks: router, run_model, assemble, sweeper; schemas; frame store; client helpers."""

from tasks.app import app

__all__ = ["app"]
