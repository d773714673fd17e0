"""The pool's Celery side: the app (tasks.celery), the tasks, their stores, and the backend's client.

Importing this package imports nothing else: a backend that only uses tasks.client never loads the tasks, the
worker signals or the model zoo. `celery -A tasks` finds the app in tasks/celery.py.
"""
