"""The metric-name extraction the observability tests rely on."""

from __future__ import annotations

import pytest

from tests.deploy.promql import exported_names, metric_names


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('sum by (status) (increase(freshet_a_total{status="FAILED"}[30m]))', {"freshet_a_total"}),
        (
            "histogram_quantile(0.95, sum by (le) (rate(freshet_h_bucket[$__rate_interval])))",
            {"freshet_h_bucket"},
        ),
        (
            "max(x_seconds and on (job, instance) (leader == 1)) > 1e-9",
            {"x_seconds", "leader"},
        ),
        ("(sum(freshet_leader) or vector(0)) < 1", {"freshet_leader"}),
        ('up{job=~"freshet-.+"} == 0', {"up"}),
        ("deriv(sum by (topic) (lag)[15m:1m]) > 0", {"lag"}),
    ],
)
def test_metric_names_are_found_in_expressions(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_exported_names_include_every_sample_form() -> None:
    text = (
        "# HELP a_total x\n# TYPE a_total counter\n"
        "# HELP h_seconds y\n# TYPE h_seconds histogram\n"
        "# HELP g z\n# TYPE g gauge\ng 1.0\n"
    )
    assert {"a_total", "h_seconds_bucket", "h_seconds_count", "g"} <= exported_names(text)
