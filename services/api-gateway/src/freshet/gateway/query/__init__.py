"""SQL over the parquet caches (`POST /query`): the gate that decides what a statement may do,
the sandboxed DuckDB engine that runs it, result formats and metrics. The service layer
(`freshet.gateway.service_layer.queries`) ties them to the catalog's pointers and leases."""
