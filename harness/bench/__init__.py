"""The benchmark: engine-only, Faust worker and plain aiokafka loop side by side."""
