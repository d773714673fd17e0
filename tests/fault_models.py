"""Model families that misbehave on purpose, swapped in with <NAME>_MODEL_FAMILY=tests.fault_models:Class."""

from __future__ import annotations

import os
import signal
import threading
import time

from workers.models.base import ModelFamily, ModelInput


class _Fault(ModelFamily):
    """Loads nothing (constructed like every family: path, device, zoo settings)."""

    def _load(self) -> None:
        self.model = type(self).__name__


class RaisingModel(_Fault):
    """Every inference raises."""

    def infer(self, inputs: ModelInput) -> dict:
        raise RuntimeError("injected failure")


class HangingModel(_Fault):
    """Sleeps far past any time limit (the soft limit interrupts it)."""

    def infer(self, inputs: ModelInput) -> dict:
        time.sleep(3600)
        return {}


class StubbornModel(_Fault):
    """Ignores the soft time limit, so only the hard limit (a killed child) ends it: its chord never completes."""

    def infer(self, inputs: ModelInput) -> dict:
        deadline = time.monotonic() + 3600
        while time.monotonic() < deadline:
            try:
                time.sleep(3600)
            except BaseException:  # noqa: BLE001 - swallowing SoftTimeLimitExceeded is the fault
                continue
        return {}


class SlowModel(_Fault):
    """Takes SLOW_MODEL_SECONDS (default 2) and then answers: a window to kill its worker in."""

    def infer(self, inputs: ModelInput) -> dict:
        time.sleep(float(os.environ.get("SLOW_MODEL_SECONDS", "2")))
        return {"slow": True}


class SuicidalModel(_Fault):
    """Kills its own process on every inference: a poison message for whichever worker takes it."""

    def infer(self, inputs: ModelInput) -> dict:
        os.kill(os.getpid(), signal.SIGKILL)
        return {}


CODE_TIMES: list[tuple[str, float, float]] = []  # (what, started, ended): imports and loads of the two below
IMPORT_STARTED = threading.Event()
LOAD_STARTED = threading.Event()


class SlowImportModel(_Fault):
    """Its warm-up import takes a while (and records when it ran)."""

    @classmethod
    def import_libraries(cls, path) -> None:
        started = time.monotonic()
        IMPORT_STARTED.set()
        time.sleep(0.3)
        CODE_TIMES.append(("import", started, time.monotonic()))


class SlowLoadModel(_Fault):
    """Its load takes a while (and records when it ran)."""

    def _load(self) -> None:
        started = time.monotonic()
        LOAD_STARTED.set()
        time.sleep(0.3)
        CODE_TIMES.append(("load", started, time.monotonic()))
        self.model = "loaded"
