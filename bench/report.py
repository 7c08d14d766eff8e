"""The printed report."""

from __future__ import annotations

from typing import Any

from bench import scheduler_fires, ui_refreshes


def _ms(summary: dict[str, Any], keys: tuple[str, ...] = ("p50", "p99")) -> str:
    if not summary or not summary.get("count"):
        return "n/a"
    return "  ".join(f"{k} {summary[k]:>9.1f}" for k in keys)


def _cpu(cpu: dict[str, float], seconds: float | None = None) -> str:
    if not cpu:
        return "n/a"
    parts = []
    for name, used in sorted(cpu.items(), key=lambda kv: -kv[1]):
        share = f" ({used / seconds:.0%} of a core)" if seconds else ""
        parts.append(f"{name} {used:.1f}s{share}")
    return ", ".join(parts)


def _statuses(statuses: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(statuses.items())) or "none"


def _isolation(i: dict[str, Any]) -> list[str]:
    out: list[str] = []
    add = out.append
    k = i["hanging_endpoints"]
    before, after, ratio = i["baseline"], i["with_hanging"], i["ratio"]
    add("")
    add(f"3. Isolation (AC3): healthy runs while {k} sources hang (broker + collector only)")
    add(
        f"   {k} postgres endpoints whose server accepts and never answers (run_timeout_s "
        f"{i['hanging_run_timeout_s']}), {i['healthy_endpoints']} healthy sqlite endpoints"
    )
    add(
        f"   {i['runs_per_phase']} healthy runs per phase, after {i['warmup_runs']} warm-up runs "
        f"({i['warmup_s']:.1f}s); hanging runs per partition {i['hanging_per_partition']}"
    )
    add(
        f"   hanging runs RUNNING (and connected) {i['hanging_running_after_s']:.2f} s after "
        "their requests, before the second phase was published"
    )

    def p(summary: dict[str, Any], key: str) -> str:
        return f"{summary[key]:.1f}" if summary.get("count") else "n/a"

    def r(value: float | None) -> str:
        return f"{value:.2f}" if value is not None else "n/a"

    rows = [
        (
            "throughput (runs/s)",
            f"{before['runs_per_s']:.1f}",
            f"{after['runs_per_s']:.1f}",
            r(ratio["runs_per_s"]),
        ),
        (
            "requested -> completed p50 ms",
            p(before["requested_to_completed_ms"], "p50"),
            p(after["requested_to_completed_ms"], "p50"),
            r(ratio["requested_to_completed_p50"]),
        ),
        (
            "requested -> completed p99 ms",
            p(before["requested_to_completed_ms"], "p99"),
            p(after["requested_to_completed_ms"], "p99"),
            r(ratio["requested_to_completed_p99"]),
        ),
        (
            "runs completed",
            f"{before['runs_completed']} of {before['runs_requested']}",
            f"{after['runs_completed']} of {after['runs_requested']}",
            "",
        ),
        ("total s", f"{before['total_s']:.2f}", f"{after['total_s']:.2f}", ""),
    ]
    add(f"   {'':<32}{'baseline':>12}{f'{k} hanging':>14}{'ratio':>9}")
    for label, b, a, q in rows:
        add(f"   {label:<32}{b:>12}{a:>14}{q:>9}".rstrip())
    add("   (ratio = with hanging / baseline: 1.00 is no effect)")
    for name, phase in (("baseline", before), ("with hanging", after)):
        flag = (
            "" if phase["statuses"].get("SUCCEEDED") == phase["runs_requested"] else "  <-- NOT ALL"
        )
        add(f"   statuses, {name:<13}  {_statuses(phase['statuses'])}{flag}")
        if phase["errors"]:
            add(f"   errors, {name:<15}  {phase['errors']}")
        if phase["duplicate_run_completed"]:
            add(f"   duplicate RunCompleted, {name}: {phase['duplicate_run_completed']}")
    flag = "" if i["hanging_still_running"] == k else "   <-- expected all of them"
    add(
        f"   hanging runs still RUNNING at the end   {i['hanging_still_running']} of {k}"
        f" ({_statuses(i['hanging_statuses_at_end'])}){flag}"
    )
    dropped = i["hanging_connections_dropped_after_s"]
    dropped_text = (
        f"the collector dropped their connections {dropped:.1f} s later"
        if dropped is not None
        else "the collector had NOT dropped all their connections "
        f"{i['hanging_drop_wait_s']:g} s later"
    )
    add(f"   clean-up: {i['hanging_cancelled']} cancelled in the catalog; {dropped_text}")
    add("   (then the servers were closed)")
    add(f"   CPU, phase with hanging    {_cpu(after['cpu_seconds'], after['total_s'])}")
    if i.get("exited_services"):
        add(f"   EXITED early              {i['exited_services']}")
    return out


def _refresh(r: dict[str, Any]) -> list[str]:
    floor, best = r["floor"], r["refresh"]
    verdict = (
        "meets"
        if r["ratio"] >= r["target"]["ratio"] and r["peak_rss_mb_max"] < r["target"]["peak_rss_mb"]
        else "misses"
    )
    return [
        "",
        f"5. Refresh: a {r['rows']:,}-row PostgreSQL table into a parquet cache version",
        f"   batches of {r['batch_rows']:,} rows; best of {r['rounds']} runs each,"
        " one process each",
        f"   floor (COPY TO STDOUT, discarded)  {floor['rows_per_s']:>12,.0f} rows/s"
        f"  ({floor['seconds']:.2f} s, peak RSS {floor['peak_rss_mb']:.0f} MB)",
        f"   refresh (scanner -> parquet, fsync) {best['rows_per_s']:>11,.0f} rows/s"
        f"  ({best['seconds']:.2f} s, {best['bytes'] / 1e6:.0f} MB file,"
        f" peak RSS {best['peak_rss_mb']:.0f} MB)",
        f"   ratio {r['ratio']:.0%} of the floor; highest peak RSS {r['peak_rss_mb_max']:.0f} MB"
        f"  -> {verdict} the target (>= 80%, < 300 MB)",
    ]


def _query(q: dict[str, Any]) -> list[str]:
    out = [
        "",
        f"6. Queries over the cache: {q['rows']:,}-row table, {q['queries']} aggregate queries "
        "per phase, one at a time (broker + gateway, collector, refresher)",
        "   ms, from the gateway's own timings and the client's clock:",
    ]
    labels = {
        "overhead": "pointers + reader lease (resolve + release)",
        "resolve": "  resolve: pointers, lease registered",
        "release": "  release: lease released",
        "setup": "DuckDB instance and views",
        "execute": "execution",
        "client": "whole request (client)",
    }
    for phase, title in (("quiet", "quiet system"), ("during_refresh", "while refreshing")):
        out.append(f"   {title}:")
        for key, label in labels.items():
            out.append(f"     {label:<44} {_ms(q[phase][key])}")
    out.append(
        f"   refreshes completed during the second phase: {q['refreshes_during']} "
        f"(each {_ms(q['refresh_ms'])}); versions the queries saw: {q['versions_seen_during']}"
    )
    return out


def render(results: dict[str, Any]) -> str:
    out: list[str] = []
    add = out.append
    m = results["machine"]
    s = results["settings"]
    add("")
    add("=" * 78)
    add("Freshet benchmark")
    add("=" * 78)
    add(
        f"machine   {m['cores']} cores, Python {m['python']}, load average at start "
        f"{' / '.join(str(x) for x in m['load_average_at_start'])}"
    )
    for key in (
        "fetch_max_wait_ms",
        "relay_poll_interval_s",
        "relay_batch_size",
        "log_level",
        "max_concurrent_runs",
        "source_timeout_s",
    ):
        item = s[key]
        add(f"setting   {item['env']:<32} {item['value']:<8} ({item['source']})")
    add(f"catalog   {s['catalog']}; broker {s['broker']}")
    add(f"data dir  {results['data_dir']}")

    c = results.get("collector_throughput")
    if c:
        add("")
        add("1. Collector path: CollectionRequested -> RunCompleted (broker + collector only)")
        add(
            f"   {c['runs_completed']} of {c['runs_requested']} runs over {c['endpoints']} "
            f"endpoints (2 tables each), after {c['warmup_runs']} warm-up runs "
            f"({c['warmup_s']:.1f}s)"
        )
        add(
            f"   requests per partition    {c['requests_per_partition']} (collections per "
            f"partition {c['collections_per_partition']}; each partition's requests are claimed in "
            "order, runs then execute concurrently)"
        )
        add(f"   published in              {c['publish_s']:.2f} s")
        add(f"   total (first send -> last RunCompleted read)  {c['total_s']:.2f} s")
        add(f"   throughput                {c['runs_per_s']:.1f} runs/s (events/s)")
        statuses = _statuses(c["statuses"])
        flag = "" if c["statuses"].get("SUCCEEDED") == c["runs_requested"] else "   <-- NOT ALL"
        add(f"   statuses                  {statuses}{flag}")
        if c["errors"]:
            add(f"   errors                    {c['errors']}")
        if c["duplicate_run_completed"]:
            add(f"   duplicate RunCompleted    {c['duplicate_run_completed']}")
        add("   per run, from the events (ms):")
        add(f"     completed_at - requested_at   {_ms(c['requested_to_completed_ms'])}")
        add(f"     started_at   - requested_at   {_ms(c['requested_to_started_ms'])}  (queued)")
        add(f"     completed_at - started_at     {_ms(c['started_to_completed_ms'])}  (the run)")
        add(
            f"     RunCompleted read - completed {_ms(c['completed_to_received_ms'])}  "
            "(relay + broker)"
        )
        add(
            "     (all requests are sent at once, so completed - requested is mostly waiting "
            "for the collector's one core; the handler claims a run and returns)"
        )
        if c.get("collector_handler_mean_ms") is not None:
            add(f"   collector handler mean    {c['collector_handler_mean_ms']:.1f} ms")
        if c.get("collector_retries") or c.get("collector_dead_letters"):
            add(
                f"   retries {c['collector_retries']:.0f}, dead letters "
                f"{c['collector_dead_letters']:.0f}   <-- look at the collector log"
            )
        add(f"   CPU during the run        {_cpu(c['cpu_seconds'], c['total_s'])}")
        if c.get("exited_services"):
            add(f"   EXITED early              {c['exited_services']}")

    p = results.get("preview_latency")
    if p:
        t = p["trigger_to_preview_persisted_ms"]
        add("")
        add("2. Trigger -> preview persisted, one dataset (all five services)")
        add(
            f"   {p['iterations']} repetitions after a first, unmeasured run "
            f"({p['first_run_and_preview_s']:.2f}s)"
        )
        add(
            f"   p50 {t['p50']:.1f} ms   p99 {t['p99']:.1f} ms   min {t['min']:.1f} ms   "
            f"max {t['max']:.1f} ms   (mean {t['mean']:.1f} ms)"
        )
        add(
            f"   measured: POST /collections/{{id}}/trigger, then the catalog database read "
            f"directly every {p['poll_interval_ms']:g} ms"
        )
        add(
            "   until payload.preview.sampledAt is newer (no HTTP in the measurement "
            "but the trigger itself)"
        )
        add("   stages (p50 / p99 ms, from catalog timestamps):")
        names = {
            "trigger_http": "POST trigger answered",
            "trigger_to_run_started": "trigger -> run RUNNING",
            "run_started_to_completed": "run RUNNING -> finished",
            "run_completed_to_sampled": "run finished -> sample taken",
            "sampled_to_seen_persisted": "sample taken -> seen persisted",
        }
        for key, label in names.items():
            add(f"     {label:<32} {_ms(p['stages_ms'][key])}")
        add(f"   outbox relay leader       {p.get('relay_leader')}")
        add(f"   CPU during the repetitions  {_cpu(p['cpu_seconds'])}")
        if p.get("exited_services"):
            add(f"   EXITED early              {p['exited_services']}")

    i = results.get("isolation")
    if i:
        out.extend(_isolation(i))

    f = results.get("preview_fanout")
    if f:
        limits = ", ".join(f"{k.removeprefix('FRESHET_')}={v}" for k, v in f["limits"].items())
        add("")
        add("4. Preview fan-out: one endpoint, many small tables (broker + gateway, collector,")
        add("   previewer), limits raised: " + limits)
        add(f"   tables                         {f['tables']}")
        add(f"   collection run                 {f['run_s']:.2f} s")
        add(
            f"   RunCompleted -> last persisted {f['run_completed_to_last_persisted_s']:.2f} s"
            f"   ({f['previews_per_s']} previews/s)"
        )
        first = f["run_completed_to_first_sample_started_s"]
        add(
            f"   RunCompleted -> first sample   {first:.3f} s;"
            f" samples started over {f['sampling_span_s']:.2f} s"
        )
        add(f"   request statuses               {_statuses(f['request_statuses'])}")
        add(f"   CPU                            {_cpu(f['cpu_seconds'])}")
        if f.get("exited_services"):
            add(f"   EXITED early              {f['exited_services']}")

    r = results.get("refresh")
    if r:
        out.extend(_refresh(r))
    q = results.get("query")
    if q:
        out.extend(_query(q))
    if results.get("scheduler"):
        out.extend(scheduler_fires.report_lines(results["scheduler"]))

    if results.get("ui_refreshes"):
        out.extend(ui_refreshes.report_lines(results["ui_refreshes"]))

    if results.get("error"):
        add("")
        add(f"ERROR: {results['error']}")
    add("")
    add(f"bench took {results['duration_s']:.1f} s")
    return "\n".join(out) + "\n"
