"""README stays true, and settings stay in one place: every variable the pool reads is a documented setting."""

from __future__ import annotations

import re
from pathlib import Path

from workers.settings import environment_names

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()
CODE_DIRS = ["tasks", "workers", "model_cache", "prompt_formatting", "scripts"]
ENV_READ = re.compile(r"""(?:environ\.get|getenv|environ\[|envvar=)\(?\s*["']([A-Z][A-Z0-9_]+)["']""")
# Other software's own switches, which the code may look at where it configures that software.
LIBRARY_VARIABLES = {"HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "YOLO_OFFLINE", "YOLO_VERBOSE",
                     "PROMETHEUS_MULTIPROC_DIR"}
# Command-line scripts may take an option's default from the variable the pool uses for it (typer's envvar).
SCRIPT_OPTION_VARIABLES = {"MODELS_DIR", "REDIS_URL"}


def env_reads_outside_settings() -> dict[str, set[str]]:
    """Variables read straight from the environment, by file, everywhere but workers/settings.py."""
    reads: dict[str, set[str]] = {}
    for folder in CODE_DIRS:
        for path in (REPO / folder).rglob("*.py"):
            if path == REPO / "workers" / "settings.py":
                continue
            found = set(ENV_READ.findall(path.read_text()))
            if found:
                reads[str(path.relative_to(REPO))] = found
    return reads


def test_every_setting_is_documented_in_the_configuration_table():
    missing = sorted(name for name in environment_names() if f"| {name} |" not in README
                     and f"| `{name}` |" not in README)
    assert not missing, f"README's configuration table lacks {missing}"


def test_nothing_reads_a_project_variable_outside_the_settings():
    stray = {
        path: names - LIBRARY_VARIABLES - (SCRIPT_OPTION_VARIABLES if path.startswith("scripts/") else set())
        for path, names in env_reads_outside_settings().items()
    }
    stray = {path: names for path, names in stray.items() if names}
    assert not stray, f"read outside workers/settings.py: {stray}"


def test_readme_names_the_two_commands_and_ci_runs_the_test_one():
    assert "make demo" in README and "make test" in README
    assert "make test" in (REPO / ".ci" / "run").read_text()


def test_the_acl_lines_in_security_defaults_are_the_ones_the_acl_test_runs():
    from tasks.trust import acl_lines

    missing = [line for line in acl_lines() if line not in README]
    assert not missing, f"README's Security defaults lacks {missing}"


def test_every_code_block_in_the_readme_is_closed():
    """An unclosed ``` turns the rest of the README into one code block (it happened once, in "Reliability")."""
    fences = [number for number, line in enumerate(README.splitlines(), 1) if line.startswith("```")]
    assert len(fences) % 2 == 0, f"an odd number of code fences; the last ones at lines {fences[-4:]}"
