"""The benchmark (`rebate-engine bench`), split by concern.

command (the CLI) -> results (the run: every scenario, results.json) -> collect (one scenario:
publish, collect credits, CPU/RSS) -> stats (percentiles, series), systems (services, the Faust
worker and the plain loop as subprocesses), plain (the plain aiokafka pipeline), workload
(generated seed and fills, engine only), profile (py-spy), report (console table, plot),
soak (memory over a long run); config holds the presets.
"""
