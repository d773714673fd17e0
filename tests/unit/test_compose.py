"""docker-compose.yml checked against the code: its services, the queues they consume, the variables they set."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import workers.__main__ as workers_cli
from workers.launch import ROUTER_QUEUES
from workers.registry import REGISTRY
from workers.settings import environment_names

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
SECRETS = {"REDIS_PASSWORD": "test-password", "FLOWER_BASIC_AUTH": "admin:test", "POOL_SIGNING_KEY": "test-key"}

# Every variable the pool reads goes through workers.settings.Settings (nested groups included).
SETTINGS_VARIABLES = set(environment_names())
MODEL_PATH_VARIABLES = {entry.path_env for entry in REGISTRY.values()}
# Read by other software, or by the compose file itself.
OTHER_VARIABLES = {
    "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "YOLO_OFFLINE", "PYTHONUNBUFFERED",
    "FLOWER_BASIC_AUTH",  # Flower's --basic-auth
    "REDISCLI_AUTH",  # redis-cli's password, for the redis healthcheck
    "WORKER_NODE",  # the worker's node name
    "GF_USERS_ALLOW_SIGN_UP", "GF_AUTH_ANONYMOUS_ENABLED", "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH",  # Grafana's
}
KNOWN_VARIABLES = SETTINGS_VARIABLES | MODEL_PATH_VARIABLES | OTHER_VARIABLES


def interpolate(value: str, env: dict[str, str] | None = None) -> str:
    """Compose's interpolation: ${VAR:-default}, ${VAR:?error} (must be set), ${VAR}, and $$ for a literal $."""
    env = SECRETS | (env or {})

    def replace(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name, modifier, word = match.group(1), match.group(2), match.group(3)
        if env.get(name):
            return env[name]
        if modifier and modifier.endswith("?"):
            raise KeyError(f"{name} must be set: {word}")
        return word if modifier else ""

    return re.sub(r"\$\$|\$\{(\w+)(?:(:?[-?])([^}]*))?\}", replace, value)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def environment(service: dict) -> dict[str, str]:
    return {key: interpolate(str(value)) for key, value in (service.get("environment") or {}).items()}


def launched(service: dict, tmp_path: Path, monkeypatch) -> tuple[list[str], dict[str, str]]:
    """What `python -m workers ...` from the service's command would exec, with the service's environment."""
    command = [interpolate(part) for part in service["command"]]
    assert command[:3] == ["python", "-m", "workers"], command
    captured: list[tuple[list[str], dict[str, str]]] = []
    monkeypatch.setattr(workers_cli, "exec_worker", lambda cmd, env: captured.append((cmd, env)))
    result = CliRunner().invoke(workers_cli.cli, command[3:], env=environment(service) | {"METRICS_DIR": str(tmp_path)})
    assert result.exit_code == 0, result.output
    (worker_command, worker_env), = captured
    return worker_command, worker_env


def option(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


def pool_services(services: dict) -> dict[str, dict]:
    """Every service that runs `python -m workers ...`: the workers and beat."""
    return {name: s for name, s in services.items() if s.get("command", [None])[:3] == ["python", "-m", "workers"]}


def worker_services(services: dict) -> dict[str, dict]:
    """The Celery workers (beat consumes no queue and serves no endpoints)."""
    return {name: s for name, s in pool_services(services).items() if s["command"][3] != "beat"}


def gpu_services(services: dict) -> dict[str, dict]:
    return {name: s for name, s in worker_services(services).items() if "device" in s["command"]}


def test_compose_runs_redis_router_beat_two_gpu_workers_and_flower(services):
    always = {name for name, service in services.items() if not service.get("profiles")}
    assert always == {"redis", "router", "beat", "gpu0", "gpu1", "flower"}
    assert set(gpu_services(services)) == {"gpu0", "gpu1"}


def test_prometheus_and_grafana_come_only_with_the_monitoring_profile(services):
    monitoring = {name for name, service in services.items() if service.get("profiles")}
    assert monitoring == {"prometheus", "grafana"}
    assert all(services[name]["profiles"] == ["monitoring"] for name in monitoring)
    for name in monitoring:  # loopback unless said otherwise, like Redis and Flower
        assert all(interpolate(port).startswith("127.0.0.1:") for port in services[name]["ports"]), name


def test_each_worker_serves_metrics_on_its_own_port_reachable_from_the_network(services, tmp_path, monkeypatch):
    ports = {}
    for name, service in worker_services(services).items():
        env = environment(service)
        assert env["METRICS_ADDR"] == "0.0.0.0", name
        _, worker_env = launched(service, tmp_path, monkeypatch)
        assert worker_env["METRICS_PORT"] == env["METRICS_PORT"], f"{name}: the launcher moved its port"
        assert [interpolate(p) for p in service["ports"]] == [f"127.0.0.1:{env['METRICS_PORT']}:{env['METRICS_PORT']}"]
        ports[name] = env["METRICS_PORT"]
    assert len(set(ports.values())) == len(ports), ports


def test_worker_healthchecks_ask_the_workers_own_readyz(services):
    for name, service in worker_services(services).items():
        assert service["healthcheck"]["test"] == ["CMD", "python", "-m", "workers.health"], name


def test_prometheus_scrapes_every_worker_and_flower_and_loads_the_alert_rules(services):
    config = yaml.safe_load((REPO / "monitoring" / "prometheus.yml").read_text())
    targets = {target for job in config["scrape_configs"] for group in job["static_configs"]
               for target in group["targets"]}
    workers = {f"{name}:{environment(service)['METRICS_PORT']}" for name, service in worker_services(services).items()}
    assert targets == workers | {"flower:5555"}
    mounts = dict(volume.split(":")[:2] for volume in services["prometheus"]["volumes"] if volume.startswith("./"))
    assert mounts["./monitoring/prometheus.yml"] == "/etc/prometheus/prometheus.yml"
    assert config["rule_files"] == [mounts["./monitoring/alerts.yml"]]
    for source in mounts:
        assert (REPO / source).exists(), source


def test_grafana_is_provisioned_with_the_datasource_and_the_dashboard(services):
    mounts = dict(v.split(":")[:2] for v in services["grafana"]["volumes"] if v.startswith("./"))
    provisioning = REPO / "monitoring" / "grafana" / "provisioning"
    assert mounts["./monitoring/grafana/provisioning"] == "/etc/grafana/provisioning"
    (datasource,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert datasource["url"] == "http://prometheus:9090"
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "model-zoo.yml").read_text())["providers"]
    assert mounts["./monitoring/grafana/dashboards"] == provider["options"]["path"]
    dashboard = json.loads((REPO / "monitoring" / "grafana" / "dashboards" / "model-zoo.json").read_text())
    assert {panel["datasource"]["uid"] for panel in dashboard["panels"]} == {datasource["uid"]}


def test_every_environment_key_is_a_variable_the_code_reads(services):
    unknown = {
        f"{name}.{key}" for name, service in services.items() for key in (service.get("environment") or {})
        if key not in KNOWN_VARIABLES
    }
    assert not unknown, f"not read by the code (typo?): {sorted(unknown)}"


def test_the_variables_compose_sets_for_the_pool_are_settings():
    for variable in ("METRICS_PORT_BASE", "NEMOTRON_URL", "VISIBLE_DEVICE_INDEX", "MEMORY_SHARE_MB", "REDIS_URL"):
        assert variable in SETTINGS_VARIABLES


def test_model_path_overrides_come_from_an_optional_file_not_a_list_of_models(services):
    for name, service in worker_services(services).items():
        env = environment(service)
        assert env["MODELS_DIR"] == "/models"
        assert not [variable for variable in env if variable in MODEL_PATH_VARIABLES], name
        assert {"path": "./model-overrides.env", "required": False} in service["env_file"], name


def test_workers_mount_the_models_read_only(services):
    for name, service in worker_services(services).items():
        assert any(interpolate(v).endswith(":/models:ro") for v in service["volumes"]), name
        assert environment(service)["MODELS_DIR"] == "/models"


def test_redis_requires_a_password_and_persists(services):
    redis = services["redis"]
    command = redis["command"]
    assert re.fullmatch(r"\$\{REDIS_PASSWORD:\?[^}]+\}", option(command, "--requirepass"))
    assert option(command, "--appendonly") == "yes"
    assert any(v.endswith(":/data") for v in redis["volumes"])
    assert "redis-cli ping" in " ".join(redis["healthcheck"]["test"])
    for name, service in worker_services(services).items():
        raw = service["environment"]["REDIS_PASSWORD"]
        assert raw.startswith("${REDIS_PASSWORD:?"), f"{name} must refuse to start without the password"
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"


def test_flower_requires_basic_auth(services):
    flower = services["flower"]
    assert flower["command"][:4] == ["celery", "-A", "tasks", "flower"]
    assert "--port=5555" in flower["command"]
    assert flower["environment"]["FLOWER_BASIC_AUTH"].startswith("${FLOWER_BASIC_AUTH:?")
    assert any(interpolate(p).endswith(":5555:5555") for p in flower["ports"])
    with pytest.raises(KeyError, match="FLOWER_BASIC_AUTH"):
        interpolate(flower["environment"]["FLOWER_BASIC_AUTH"], {"FLOWER_BASIC_AUTH": ""})


def test_every_queue_is_consumed_by_some_service(services, tmp_path, monkeypatch):
    import celeryconfig

    consumed = set()
    for service in worker_services(services).values():
        command, _ = launched(service, tmp_path, monkeypatch)
        if "-Q" in command:  # beat consumes nothing
            consumed |= set(option(command, "-Q").split(","))
    routed = {route["queue"] for route in celeryconfig.task_routes.values()}
    static = set(environment(services["router"])["DEVICE_QUEUES"].split(","))
    required = routed | set(ROUTER_QUEUES.split(",")) | static
    assert required <= consumed, f"nobody consumes {sorted(required - consumed)}"


def test_beat_runs_in_its_own_service_not_in_the_router(services, tmp_path, monkeypatch):
    """Issue 28, point 3: a killed router leaves no beat behind; one beat owner per pool."""
    command, env = launched(services["router"], tmp_path, monkeypatch)
    assert "-B" not in command and "beat" not in command and env["WORKER_ROLE"] == "router"
    assert option(command, "-n") == f"{environment(services['router'])['WORKER_NODE']}@%h"
    command, env = launched(services["beat"], tmp_path, monkeypatch)
    assert command[command.index("tasks") + 1] == "beat" and env["WORKER_ROLE"] == "beat"
    beats = [name for name, service in pool_services(services).items() if "beat" in service["command"]]
    assert beats == ["beat"]


def seconds(duration: str) -> float:
    """compose's duration (2m30s, 90s, 1m) in seconds."""
    parts = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", duration)
    assert parts and duration, duration
    return int(parts.group(1) or 0) * 60 + int(parts.group(2) or 0)


def test_compose_waits_at_least_as_long_as_the_launcher_before_killing(services):
    """Issue 27 point 5 / issue 28 point 4: a warm shutdown gets MODEL_TIME_LIMIT plus a margin in compose too."""
    from workers.launch import stop_grace_seconds
    from workers.settings import Settings

    for name, service in worker_services(services).items():
        if name == "beat":
            continue
        limit = float(environment(service).get("MODEL_TIME_LIMIT", Settings().model_time_limit))
        assert seconds(service["stop_grace_period"]) >= stop_grace_seconds(Settings(model_time_limit=limit)), name


def test_redis_keeps_an_append_only_file_written_every_second(services):
    command = [interpolate(part) for part in services["redis"]["command"]]
    assert option(command, "--appendonly") == "yes" and option(command, "--appendfsync") == "everysec"
    assert option(command, "--maxmemory-policy") == "noeviction"


def test_each_gpu_service_reserves_its_gpu_and_consumes_its_queue(services, tmp_path, monkeypatch):
    for name, service in gpu_services(services).items():
        index = name.removeprefix("gpu")
        (device,) = service["deploy"]["resources"]["reservations"]["devices"]
        assert device["driver"] == "nvidia" and device["device_ids"] == [index] and "gpu" in device["capabilities"]
        command, env = launched(service, tmp_path, monkeypatch)
        assert option(command, "-Q") == f"gpu.{index}" and env["DEVICE_QUEUE"] == f"gpu.{index}"
        assert option(command, "-P") == "threads" and env["WORKER_ROLE"] == "device"
        assert option(command, "-n") == f"{environment(service)['WORKER_NODE']}@%h"


def test_a_second_host_moves_its_workers_to_other_queues(services, tmp_path, monkeypatch):
    monkeypatch.setitem(SECRETS, "GPU0_QUEUE_INDEX", "2")
    command, env = launched(services["gpu0"], tmp_path, monkeypatch)
    assert option(command, "-Q") == "gpu.2" and option(command, "-n") == "gpu2@%h"
    assert environment(services["gpu0"])["WORKER_NODE"] == "gpu2"
    assert services["gpu0"]["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"] == ["0"]


def test_each_gpu_worker_sees_its_reserved_gpu_as_cuda_device_0(services, tmp_path, monkeypatch):
    for service in gpu_services(services).values():
        _, env = launched(service, tmp_path, monkeypatch)
        assert env["CUDA_VISIBLE_DEVICES"] == "0"


def test_image_installs_the_project_and_runs_as_a_non_root_user():
    dockerfile = (REPO / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim$", dockerfile, re.M)
    assert re.search(r"^RUN pip install --no-deps \.", dockerfile, re.M)
    users = re.findall(r"^USER (\S+)$", dockerfile, re.M)
    assert users and users[-1] not in {"root", "0"}


def docker_compose_works() -> bool:
    if not shutil.which("docker"):
        return False
    return subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0


@pytest.mark.skipif(not docker_compose_works(), reason="the docker compose plugin is not installed")
def test_docker_compose_accepts_the_file_and_refuses_it_without_secrets():
    def config(env: dict[str, str]) -> subprocess.CompletedProcess:
        return subprocess.run(["docker", "compose", "-f", str(COMPOSE_FILE), "config", "-q"], cwd=REPO,
                              env={"PATH": "/usr/bin:/bin:/usr/local/bin"} | env, capture_output=True, text=True)

    ok = config(SECRETS)
    assert ok.returncode == 0, ok.stderr
    missing = config({"FLOWER_BASIC_AUTH": "admin:test"})
    assert missing.returncode != 0 and "REDIS_PASSWORD" in missing.stderr


def test_every_pool_process_gets_the_signing_key_and_compose_requires_it():
    text = (Path(__file__).resolve().parents[2] / "docker-compose.yml").read_text()
    assert text.count("POOL_SIGNING_KEY: ${POOL_SIGNING_KEY:?set POOL_SIGNING_KEY}") == 2, "workers and flower"
    with pytest.raises(KeyError, match="POOL_SIGNING_KEY"):
        interpolate("${POOL_SIGNING_KEY:?set POOL_SIGNING_KEY}", {"POOL_SIGNING_KEY": ""})
