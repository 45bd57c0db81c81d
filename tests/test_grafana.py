"""docs/grafana-relais.json queries only metrics /metrics serves."""

from __future__ import annotations

import json
import re

from conftest import ROOT
from fastapi.testclient import TestClient
from test_delivery import acme  # noqa: F401 - a fixture

from relais.api import create_app
from relais.auth import create_key
from sync.store.db import session_scope


def test_the_dashboard_names_served_metrics(acme):  # noqa: F811
    dashboard = json.loads((ROOT / "docs" / "grafana-relais.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in re.findall(r"\b(relais_[a-z_]+)", e)}
    with session_scope() as session:
        key = create_key(session, "operator", None, "ops")
    text = TestClient(create_app()).get("/metrics",
                                        headers={"Authorization": f"Bearer {key}"}).text
    families = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    served = set(families)
    for name, kind in families.items():
        served |= {f"{name}_total"} if kind == "counter" else set()
        if kind == "histogram":
            served |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    assert len(used) >= 10 and used <= served, used - served
