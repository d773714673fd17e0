"""A device runtime's start-up services and commands: estimates from disk, warm-up, preload and unload (directly,
through Redis as under prefork, in process as in a threads pool), the control commands and the byte gauges."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest
from prometheus_client import REGISTRY as PROMETHEUS

from tasks import control
from workers import model_commands
from workers.frames import DecodedFrames
from workers.model_commands import ModelCommand, wait_for_replies
from workers.registry import REGISTRY
from workers.runtime import DeviceRuntime
from workers.settings import Settings

MB = 2**20


def make_runtime(models_dir, client=None, worker="cpu0@test", **overrides) -> DeviceRuntime:
    settings = Settings(models_dir=models_dir, device="cpu", memory_share_mb=overrides.pop("share_mb", 4096),
                        heartbeat_seconds=1, **overrides)
    return DeviceRuntime(settings, DecodedFrames(None, settings.max_image_pixels), worker, client=client)


@pytest.fixture
def runtime(pool_models_dir):
    created = make_runtime(pool_models_dir)
    yield created
    created.stop()


def test_estimate_comes_from_the_weights_on_disk_and_the_registry_without_them(runtime, tmp_path):
    pose = REGISTRY["pose"]
    on_disk = runtime.spec_for(pose).estimated_bytes
    assert on_disk == pytest.approx((runtime.settings.models_dir / "pose" / "yolov8n-pose.pt").stat().st_size * 2,
                                    rel=0.01)
    assert on_disk != pose.estimated_mb * MB
    empty = make_runtime(tmp_path)
    assert empty.spec_for(pose).estimated_bytes == pose.estimated_mb * MB


def test_the_measurement_replaces_the_estimate_after_the_first_load(runtime):
    runtime.services.preload(["pet"])
    (held,) = runtime.cache.snapshot()["models"]
    assert held["measured_bytes"] is not None and held["bytes"] == held["measured_bytes"]
    assert held["estimated_bytes"] == runtime.spec_for(REGISTRY["pet"]).estimated_bytes


def test_warm_up_imports_each_present_family_and_times_it(runtime):
    timings = runtime.services.warm_up(["pose", "pet", "clothing", "reid"])
    assert set(timings) == {"pose", "pet", "clothing", "reid"}
    assert len(runtime.cache) == 0  # nothing loaded


def test_preload_loads_in_order_and_says_what_happened(runtime):
    outcomes = runtime.services.preload(["pet", "reid", "pet", "nonsense"])
    assert [o["status"] for o in outcomes] == ["loaded", "loaded", "already loaded", "error"]
    assert outcomes[0]["bytes"] > 0 and outcomes[0]["load_ms"] >= 0
    assert "unknown model 'nonsense'" in outcomes[3]["detail"]
    assert {m["name"] for m in runtime.cache.snapshot()["models"]} == {"pet", "reid"}


def test_preload_of_a_model_bigger_than_the_share_is_skipped(pool_models_dir):
    small = make_runtime(pool_models_dir, share_mb=1)
    (outcome,) = small.services.preload(["pose"])
    assert outcome["status"] == "skipped" and "budget" in outcome["detail"]


def test_unload_frees_a_model_even_a_resident_one_but_not_one_in_use(runtime):
    runtime.services.preload(["florence", "pet"])
    assert runtime.services.unload("florence")["status"] == "unloaded"
    assert runtime.services.unload("florence")["status"] == "not loaded"
    with runtime.cache.using(runtime.spec_for(REGISTRY["pet"])):
        assert runtime.services.unload("pet")["status"] == "in use"
    assert runtime.services.unload("pet")["status"] == "unloaded"
    assert runtime.services.unload("nonsense")["status"] == "error"
    assert len(runtime.cache) == 0


def test_commands_through_redis_reach_the_listening_model_process(pool_models_dir, redis_client):
    created = make_runtime(pool_models_dir, client=redis_client, worker="cpu0@redis")
    stop = threading.Event()
    subscribed = threading.Event()
    listener = threading.Thread(target=model_commands.listen,
                                args=(redis_client, created.worker, created.services.execute, stop, 0.1, subscribed))
    listener.start()
    try:
        assert subscribed.wait(5)
        command = ModelCommand("preload", ("pet",), created.worker)
        assert model_commands.publish_command(redis_client, command) == 1
        outcome = wait_for_replies(redis_client, {created.worker: command.id}, timeout=60)[created.worker]
        assert outcome["results"][0]["status"] == "loaded" and outcome["models"] == ["pet"]
        assert redis_client.ttl(model_commands.reply_key(command.id)) == -2  # popped: nothing left behind

        unload = ModelCommand("unload", ("pet",), created.worker)
        model_commands.publish_command(redis_client, unload)
        outcome = wait_for_replies(redis_client, {created.worker: unload.id}, timeout=30)[created.worker]
        assert outcome["results"][0]["status"] == "unloaded" and outcome["models"] == []
    finally:
        stop.set()
        listener.join(5)
        created.stop()


def test_start_model_services_preloads_the_configured_models_and_listens(pool_models_dir, redis_client):
    created = make_runtime(pool_models_dir, client=redis_client, worker="cpu0@services", preload_models="pet,reid")
    try:
        created.services.start()
        created.services.start()  # idempotent
        deadline = time.monotonic() + 120
        while len(created.cache) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert {m["name"] for m in created.cache.snapshot()["models"]} == {"pet", "reid"}
        assert model_commands.local_executor() == created.services.execute
        deadline = time.monotonic() + 10
        while redis_client.pubsub_numsub(model_commands.command_channel(created.worker))[0][1] != 1:
            assert time.monotonic() < deadline, "the listener never subscribed"
            time.sleep(0.05)
    finally:
        created.stop()
        created.services.command_listener.join(5)
        model_commands.unregister_local(created.services.execute)


def control_state(worker: str, pool: object | None = None) -> SimpleNamespace:
    return SimpleNamespace(consumer=SimpleNamespace(hostname=worker, pool=pool))


@pytest.fixture
def device_role(monkeypatch, redis_server):
    """The control commands' view of this process: a device worker whose Redis is the test server."""
    monkeypatch.setattr(control, "get_settings", lambda: Settings(worker_role="device"))
    monkeypatch.setattr(control, "redis_client", redis_server.client)
    monkeypatch.setattr(model_commands, "_local", {})


def test_control_command_in_a_prefork_parent_goes_through_redis(device_role, pool_models_dir, redis_client,
                                                                monkeypatch):
    refused = control.preload_models(control_state("cpu0@parent"), ["pet"])
    assert "no model process is listening" in refused["error"]

    child = make_runtime(pool_models_dir, client=redis_client, worker="cpu0@parent")
    stop, subscribed = threading.Event(), threading.Event()
    listener = threading.Thread(target=model_commands.listen,
                                args=(redis_client, child.worker, child.services.execute, stop, 0.1, subscribed))
    listener.start()
    try:
        assert subscribed.wait(5)
        answer = control.preload_models(control_state("cpu0@parent"), ["pet"])
        assert answer["via"] == "redis" and answer["models"] == ["pet"]
        outcome = wait_for_replies(redis_client, {"cpu0@parent": answer["request"]}, 60)["cpu0@parent"]
        assert outcome["results"][0]["status"] == "loaded"
    finally:
        stop.set()
        listener.join(5)
        child.stop()


def test_control_command_in_a_threads_pool_runs_in_process(device_role, pool_models_dir, redis_client, monkeypatch):
    here = make_runtime(pool_models_dir, worker="cpu0@threads")
    model_commands.register_local(here.services.execute)
    answer = control.unload_model(control_state("cpu0@threads"), "pet")  # a single name is accepted too
    assert answer["via"] == "in process"
    outcome = wait_for_replies(redis_client, {"cpu0@threads": answer["request"]}, 30)["cpu0@threads"]
    assert outcome["results"] == [{"model": "pet", "status": "not loaded"}]
    answer = control.preload_models(control_state("cpu0@threads"), ["pet"])
    outcome = wait_for_replies(redis_client, {"cpu0@threads": answer["request"]}, 60)["cpu0@threads"]
    assert outcome["results"][0]["status"] == "loaded" and "pet" in here.cache
    here.stop()


def test_control_commands_refuse_unknown_models_and_router_workers(device_role, monkeypatch):
    assert "unknown model(s) ['nonsense']" in control.preload_models(control_state("cpu0@x"), ["pet", "nonsense"])["error"]
    assert "at least one" in control.unload_model(control_state("cpu0@x"), [])["error"]
    monkeypatch.setattr(control, "get_settings", lambda: Settings(worker_role="router"))
    assert control.preload_models(control_state("router@x"), ["pet"])["skipped"] == "not a device worker"


def gauge(name: str, **labels: str) -> float | None:
    return PROMETHEUS.get_sample_value(name, labels)


def test_byte_gauges_show_estimated_and_measured_side_by_side(runtime):
    runtime.worker = runtime.status.worker = "cpu0@gauges"
    runtime.services.preload(["pet"])
    runtime.status.publish()
    held = runtime.cache.snapshot()["models"][0]
    assert gauge("model_zoo_model_charged_bytes", worker="cpu0@gauges", model="pet") == held["bytes"]
    assert gauge("model_zoo_model_estimated_bytes", worker="cpu0@gauges", model="pet") == held["estimated_bytes"]
    assert gauge("model_zoo_model_measured_bytes", worker="cpu0@gauges", model="pet") == held["measured_bytes"]
    assert gauge("model_zoo_memory_measured_bytes", worker="cpu0@gauges") == held["measured_bytes"]
    assert gauge("model_zoo_memory_estimated_bytes", worker="cpu0@gauges") == held["estimated_bytes"]
    runtime.services.unload("pet")
    runtime.status.publish()
    assert gauge("model_zoo_model_charged_bytes", worker="cpu0@gauges", model="pet") == 0
    assert gauge("model_zoo_model_measured_bytes", worker="cpu0@gauges", model="pet") == 0
    assert gauge("model_zoo_memory_estimated_bytes", worker="cpu0@gauges") == 0


def test_every_model_has_its_counters_before_its_first_request(runtime):
    for name in REGISTRY:
        assert gauge("model_zoo_model_loads_total", model=name) is not None
        assert gauge("model_zoo_model_records_total", model=name, status="timeout") is not None
        assert gauge("model_zoo_model_evictions_total", model=name, reason="idle") is not None


def test_a_batched_call_is_counted_by_its_size(runtime):
    from workers.runtime import Job

    def buckets() -> tuple[float, float]:
        return tuple(gauge("model_zoo_batch_size_bucket", model="pet", le=le) or 0 for le in ("2.0", "3.0"))

    runtime.services.preload(["pet"])
    up_to_2, up_to_3 = buckets()
    runtime.run_batch("pet", [Job(None)] * 3)  # bad inputs: each gets its own error, the call is still one batch of 3
    assert buckets() == (up_to_2, up_to_3 + 1)


def test_models_table_shows_estimated_and_measured_megabytes_side_by_side():
    from rich.console import Console

    from tasks.cli import loaded_models_table

    state = {"queue": "gpu.0", "device": "cuda", "budget_bytes": 4096 * MB, "used_bytes": 300 * MB,
             "estimated_bytes": 450 * MB, "measured_bytes": 290 * MB, "unmeasured": ["pose"],
             "models": [{"name": "clothing", "priority": "HIGH", "bytes": 290 * MB, "estimated_bytes": 440 * MB,
                         "measured_bytes": 290 * MB, "hits": 3, "last_used_age_s": 2},
                        {"name": "pose", "priority": "HIGH", "bytes": 10 * MB, "estimated_bytes": 10 * MB,
                         "measured_bytes": None, "hits": 0, "last_used_age_s": 0}]}
    console = Console(width=200, record=True)
    console.print(loaded_models_table({"gpu0@host": state}))
    text = console.export_text()
    assert "MB estimated" in text and "MB measured" in text
    clothing = next(line for line in text.splitlines() if "clothing" in line)
    assert "440.0" in clothing and "290.0" in clothing
    pose = next(line for line in text.splitlines() if "pose" in line and "HIGH" in line)
    assert " - " in pose  # not measured yet
    assert "pose not measured yet" in text and "450.0" in text


@pytest.mark.parametrize("first", ["import", "load"])
def test_warm_up_imports_and_model_loads_never_overlap(tmp_path, monkeypatch, first):
    """Two threads importing model code at once can see each other's half-initialised modules (torchvision from
    torchreid's and open_clip's sides); warm-up imports and loads take turns, whichever starts first."""
    import torch  # noqa: F401  - warm-up's own first step, done before the clock matters

    from tests import fault_models

    for name in ("clothing", "pose"):
        (tmp_path / name).mkdir()
    monkeypatch.setenv("CLOTHING_MODEL_FAMILY", "tests.fault_models:SlowImportModel")
    monkeypatch.setenv("POSE_MODEL_FAMILY", "tests.fault_models:SlowLoadModel")
    runtime = make_runtime(tmp_path)
    fault_models.CODE_TIMES.clear()
    threads = {
        "load": (threading.Thread(target=lambda: runtime.load_family(REGISTRY["pose"])), fault_models.LOAD_STARTED),
        "import": (threading.Thread(target=lambda: runtime.services.warm_up(["clothing"])), fault_models.IMPORT_STARTED),
    }
    second = "load" if first == "import" else "import"
    threads[first][1].clear()
    threads[first][0].start()
    assert threads[first][1].wait(60)
    threads[second][0].start()  # while the first is inside its import or load
    for thread, _ in threads.values():
        thread.join(10)
    spans = sorted(fault_models.CODE_TIMES, key=lambda span: span[1])
    assert [what for what, _, _ in spans] == [first, second]
    assert spans[0][2] <= spans[1][1], f"warm-up import and model load ran at the same time: {spans}"


def test_residents_are_preloaded_by_default_when_the_worker_has_room(pool_models_dir, tmp_path):
    roomy = make_runtime(pool_models_dir)
    assert roomy.settings.preload_models == ["residents"]
    assert roomy.services.preload_names() == ["florence", "clip"]
    residents = sum(roomy.spec_for(REGISTRY[n]).estimated_bytes for n in ("florence", "clip"))
    cramped = make_runtime(pool_models_dir)
    cramped.cache.budget_bytes = int(residents * 1.5)  # the residents would take more than half of it
    assert cramped.services.preload_names() == []
    assert make_runtime(pool_models_dir, scene_models="clip").services.preload_names() == ["clip"]
    assert make_runtime(tmp_path).services.preload_names() == [], "no weights, nothing to preload"
    assert make_runtime(pool_models_dir, preload_models="pet,residents,clip").services.preload_names() == [
        "pet", "florence", "clip"]
    assert make_runtime(pool_models_dir, preload_models="").services.preload_names() == []
    for runtime in (roomy, cramped):
        runtime.stop()
