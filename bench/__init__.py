"""Freshet benchmarks: `python -m bench` (or `make bench`).

Two figures, each on a stack of its own (temp data folder, free ports, its own embedded broker,
a fresh catalog):

1. collector throughput: CollectionRequested -> RunCompleted for many small runs, with only the
   broker and the collector running;
2. trigger -> preview persisted latency for one dataset, with the whole system running.

Results are printed and written as JSON to var/bench/results.json.
"""
