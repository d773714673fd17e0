# Two commands for a new user:  `make demo`  and  `make test`.  `make` alone lists every target.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.DEFAULT_GOAL := help
.PHONY: test-faults help check-python setup redis chromium prometheus demo lint test test-unit test-integration fuzz tiny-models \
	bench-figures clean

help:
	@echo "Model Zoo Enrichment: make TARGET"
	@echo ""
	@echo "  demo              set up, then enrich sample events through a local pool (tiny random models) and print"
	@echo "                    the results and prompts"
	@echo "  test              set up, then ruff and every test (unit, integration with real redis-server and workers)"
	@echo "  test-unit         the tests that need no redis-server or worker processes"
	@echo "  test-integration  the tests that start a real redis-server and real workers"
	@echo "  test-faults       the fault suite's long version: Redis killed and full, routers and hosts killed mid-burst"
	@echo "  lint              ruff check ."
	@echo "  fuzz              10,000 seeded valid and hostile events through a real pool"
	@echo "  tiny-models       write the tiny random models tests and the demo use (var/tiny-models)"
	@echo "  bench-figures     the short benchmark runs whose PNGs README shows (scripts/figures)"
	@echo "  setup             check Python, create $(VENV) and install the project (about 6.5 GB, see README)"
	@echo "  redis / chromium / prometheus   install that Debian package when missing (apt-get)"
	@echo "  clean             remove var/ and pytest's cache"
	@echo ""
	@echo "Python: PYTHON=$(PYTHON) (3.11 or newer, with venv and ensurepip); override with make PYTHON=python3.12 ..."

check-python:
	@scripts/check_python.sh $(PYTHON)

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@scripts/check_python.sh $(PYTHON)
	@echo "creating $(VENV) and installing the project: torch with its CUDA runtime wheels and about 190 other"
	@echo "packages, 6.5 GB on disk (README: 'Two commands' says how long it took where it was measured)"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --progress-bar on -e '.[dev]'
	# facenet-pytorch 2.6.0's metadata pins torch<2.3, numpy<2, Pillow<10.3; its code runs on ours (it imports
	# torch, torchvision, numpy, PIL, requests, tqdm: all installed above), so it goes in without its
	# dependencies. Its wheel ships MTCNN's real weights (tests/unit/test_face.py runs them).
	$(PY) -m pip install --progress-bar on --no-deps facenet-pytorch==2.6.0
	$(PY) -c "import torchvision.ops; torchvision.ops.nms; print('torchvision ops OK')"
	touch $@

redis:
	@command -v redis-server >/dev/null || scripts/install_system_packages.sh redis-server

chromium:
	@command -v chromium >/dev/null || scripts/install_system_packages.sh chromium

# Debian's prometheus: promtool checks the alert rules, and one integration test scrapes a real pool with it.
prometheus:
	@command -v promtool >/dev/null && command -v prometheus >/dev/null \
		|| scripts/install_system_packages.sh --no-install-recommends prometheus

demo: setup redis
	$(PY) scripts/demo.py

lint: setup
	$(VENV)/bin/ruff check .

test: setup redis chromium prometheus lint
	$(PY) -m pytest -ra

test-unit: setup redis prometheus
	$(PY) -m pytest -ra -m "not integration"

test-integration: setup redis chromium prometheus
	$(PY) -m pytest -ra -m "integration and not faults"

# The fault suite, long version (Redis killed, shut down and full, routers and hosts killed mid-burst; more rounds and
# events per case). `make test` runs its CI-sized version: each case once, small (README "Reliability").
test-faults: setup redis
	$(PY) -m pytest -ra -s -m faults

# `make test` runs a 300-event seeded fuzz (tests/integration/test_fuzz_pool.py); this is the long one.
fuzz: setup redis
	$(PY) scripts/fuzz_pool.py --events 10000 --seed 15 --json var/fuzz/report.json

tiny-models: setup
	$(PY) scripts/make_tiny_models.py

# The figures README shows: a short bench on no-op models (about 2 minutes on 2 CPU cores) and the cache replay.
bench-figures: setup redis
	$(PY) scripts/bench.py --noop --events 60 --no-affinity --report scripts/figures/bench-noop.json
	$(PY) scripts/bench_cache.py --estimates seed --scene florence --scene clip --json scripts/figures/bench-cache.json

clean:
	rm -rf var/ .pytest_cache
