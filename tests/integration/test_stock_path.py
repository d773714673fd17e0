"""The pool on Celery's stock path (CELERY_SPEEDUPS=0, as on any Celery/kombu version the shortcuts were not
written for): events are enriched and stored the same way, through the canvas's chord and Celery's consumer."""

from __future__ import annotations

import pytest

from scripts.fixtures.sample_events import animal_event, person_event
from tests.integration.conftest import started_pool

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stock_pool(pool_models_dir, tmp_path_factory):
    with started_pool(pool_models_dir, tmp_path_factory.mktemp("stock-logs"), {"CELERY_SPEEDUPS": "0"}) as running:
        yield running


def test_events_are_enriched_on_the_stock_path(stock_pool):
    person = stock_pool.client.enrich(person_event("stock-person", face=True), timeout=300)
    assert person["status"] == "complete", person["errors"]
    assert {"clothing", "pose", "threat", "reid", "depth", "age_gender"} <= set(person["models"])
    assert stock_pool.client.stored("stock-person") == person
    animal = stock_pool.client.enrich(animal_event("stock-animal"), timeout=300)
    assert animal["status"] == "complete" and set(animal["models"]) == {"pet", "depth"}


def test_a_duplicate_on_the_stock_path_gets_the_stored_result(stock_pool):
    first = stock_pool.client.enrich(animal_event("stock-dup"), timeout=300)
    again = stock_pool.client.enrich(animal_event("stock-dup"), timeout=60)
    assert again == first


def test_every_worker_says_it_runs_the_stock_path(stock_pool):
    log = stock_pool.log_path.read_text(errors="replace")
    assert log.count("Celery shortcuts off: Celery's stock path") >= 2, "the router and the device worker"
    assert "Celery shortcuts on" not in log
