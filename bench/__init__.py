"""Freshet benchmarks: `python -m bench` (or `make bench`).

Three figures, each on a stack of its own (temp data folder, free ports, its own embedded
broker, a fresh catalog):

1. collector throughput: CollectionRequested -> RunCompleted for many small runs, with only the
   broker and the collector running;
2. trigger -> preview persisted latency for one dataset, with the whole system running;
3. isolation (AC3): the same healthy runs with and without sources that accept a connection and
   never answer, with only the broker and the collector running.

Results are printed and written as JSON to var/bench/results.json.
"""
