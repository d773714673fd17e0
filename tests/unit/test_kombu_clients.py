"""kombu's Redis channels reuse one synchronous client: the method replaced still exists and the reuse holds."""

from __future__ import annotations

import threading

from kombu import Connection

from tasks.celery_internals import redis_clients as kombu_clients


def test_the_patch_is_installed_by_the_app_and_targets_an_existing_method():
    import tasks.celery  # noqa: F401 - installing is part of building the app

    assert kombu_clients.installed()
    assert callable(kombu_clients._original_create_client)


def test_a_channel_hands_out_one_client_until_its_pool_changes(redis_server):
    kombu_clients.install()
    with Connection(redis_server.url) as connection:
        channel = connection.default_channel
        with channel.conn_or_acquire() as first, channel.conn_or_acquire() as second:
            assert first is second
        assert first.ping()
        channel._pool = None  # a reconnect builds a new pool: the client follows it
        with channel.conn_or_acquire() as third:
            assert third is not first and third.connection_pool is channel.pool


def test_the_shared_client_serves_threads_at_once(redis_server):
    kombu_clients.install()
    with Connection(redis_server.url) as connection:
        channel = connection.default_channel
        errors: list[Exception] = []

        def work(n: int) -> None:
            try:
                for i in range(50):
                    with channel.conn_or_acquire() as client:
                        client.set(f"kc:{n}:{i}", i)
                        assert int(client.get(f"kc:{n}:{i}")) == i
            except Exception as exc:  # noqa: BLE001 - collected for the assertion
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert not errors
