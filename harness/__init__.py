"""Tools around the worker: embedded services, benchmark, simulator, Kafka replay, demo.

Never imported by `agents` (the worker image ships without this package).
"""
