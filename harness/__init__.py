"""Test and benchmark harness: brokers and services the engine runs against, started by us."""
