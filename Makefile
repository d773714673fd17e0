# Two commands for a new user:  `make demo`  and  `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

chromium:
	@command -v chromium >/dev/null || scripts/install_system_packages.sh chromium

.PHONY: chromium setup redis demo test test-unit test-integration fuzz tiny-models clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[dev]'
	# facenet-pytorch 2.6.0's metadata pins torch<2.3, numpy<2, Pillow<10.3; its code runs on ours (it imports
	# torch, torchvision, numpy, PIL, requests, tqdm: all installed above), so it goes in without its
	# dependencies. Its wheel ships MTCNN's real weights (tests/unit/test_face.py runs them).
	$(PY) -m pip install -q --no-deps facenet-pytorch==2.6.0
	$(PY) -c "import torchvision.ops; torchvision.ops.nms; print('torchvision ops OK')"
	touch $@

redis:
	@command -v redis-server >/dev/null || scripts/install_system_packages.sh redis-server

demo: setup redis
	$(PY) scripts/demo.py

test: setup redis chromium
	$(PY) -m pytest -ra

test-unit: setup
	$(PY) -m pytest -ra -m "not integration"

test-integration: setup redis chromium
	$(PY) -m pytest -ra -m integration

# `make test` runs a 300-event seeded fuzz (tests/integration/test_fuzz_pool.py); this is the long one.
fuzz: setup redis
	$(PY) scripts/fuzz_pool.py --events 10000 --seed 15 --json var/fuzz/report.json

tiny-models: setup
	$(PY) scripts/make_tiny_models.py

clean:
	rm -rf var/ .pytest_cache
