"""README stays true: every setting and environment variable the code reads is documented there."""

from __future__ import annotations

import re
from pathlib import Path

from tasks.settings import Settings

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()
CODE_DIRS = ["tasks", "workers", "model_cache", "prompt_formatting", "scripts"]
ENV_READ = re.compile(r"""(?:environ\.get|getenv|environ\[|envvar=)\(?\s*["']([A-Z][A-Z0-9_]+)["']""")
ENV_CONSTANT = re.compile(r"""^[A-Z_]*ENV\w*\s*=\s*["']([A-Z][A-Z0-9_]+)["']""", re.MULTILINE)


def env_names_in_code() -> set[str]:
    names = set()
    for folder in CODE_DIRS:
        for path in (REPO / folder).rglob("*.py"):
            text = path.read_text()
            names |= set(ENV_READ.findall(text)) | set(ENV_CONSTANT.findall(text))
    return names


def test_every_settings_field_is_documented():
    missing = [name.upper() for name in Settings.model_fields if name.upper() not in README]
    assert not missing, f"README's configuration table lacks {missing}"


def test_every_environment_variable_read_by_the_code_is_documented():
    names = env_names_in_code()
    assert "THREAT_CONFIDENCE" in names and "NEMOTRON_URL" in names, "the scan finds the code's variables"
    ignored = {"HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "YOLO_OFFLINE", "YOLO_VERBOSE", "CUDA_VISIBLE_DEVICES",
               "UPDATE_GOLDEN", "TINY_MODELS_DIR", "CI"}
    missing = sorted(name for name in names - ignored if name not in README)
    assert not missing, f"README does not mention {missing}"


def test_readme_names_the_two_commands_and_ci_runs_the_test_one():
    assert "make demo" in README and "make test" in README
    assert "make test" in (REPO / ".ci" / "run").read_text()
