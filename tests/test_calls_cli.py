"""``relais calls import`` (Asterisk Master.csv) and ``relais report``."""

from __future__ import annotations

import csv
import io
import json

from conftest import FIXTURES
from test_calls import acme_yaml, apply
from typer.testing import CliRunner

from relais.cli import app
from sync.store.calls_models import Call
from sync.store.db import session_scope

runner = CliRunner()

# cdr_csv's columns: accountcode, src, dst, dcontext, clid, channel, dstchannel, lastapp,
# lastdata, start, answer, end, duration, billsec, disposition, amaflags, uniqueid, userfield
MASTER = (FIXTURES / "asterisk_Master.csv").read_text()


def run(*args: str):
    return runner.invoke(app, list(args))


def setup(env, monkeypatch, tmp_path, text=MASTER):
    monkeypatch.setenv("RELAIS_TENANT_ACME_HOOK_URL", "http://127.0.0.1:9/hook")
    apply(acme_yaml())
    path = tmp_path / "Master.csv"
    path.write_text(text)
    return path


def test_import_is_idempotent_and_finds_the_tenant(env, monkeypatch, tmp_path):
    path = setup(env, monkeypatch, tmp_path)
    first = run("calls", "import", str(path), "--zone", "Europe/Paris")
    assert first.exit_code == 0, first.output
    assert "3 rows imported: 3 calls, 8 new events, 0 already known; 0 bad rows" in first.output
    again = run("calls", "import", str(path), "--zone", "Europe/Paris")
    assert "3 rows imported: 3 calls, 0 new events, 8 already known" in again.output
    with session_scope(readonly=True) as session:
        answered = session.get(Call, ("acme", "1762156800.1"))
        assert (answered.outcome, answered.wait_seconds, answered.talk_seconds,
                answered.secretary) == ("answered", 12.0, 180.0, "sophie")
        assert answered.offered_at.isoformat() == "2026-11-03T07:00:00+00:00"  # CET
        lost = session.get(Call, ("acme", "1762160400.3"))
        assert (lost.outcome, lost.wait_seconds) == ("abandoned", 40.0)
        assert session.get(Call, ("acme", "1762214370.5")).secretary == "201"


def test_bad_rows_are_named_by_line_and_nothing_is_imported(env, monkeypatch, tmp_path):
    broken = MASTER.replace('"2026-11-03 09:00:00"', '"03/11/2026 09:00"')
    broken += '"","1","2"\n'
    path = setup(env, monkeypatch, tmp_path, broken)
    result = run("calls", "import", str(path))
    assert result.exit_code == 2
    assert f"{path}:2: start: '03/11/2026 09:00' is not YYYY-MM-DD HH:MM:SS" in result.output
    assert f"{path}:4: 3 columns" in result.output
    with session_scope(readonly=True) as session:
        assert session.get(Call, ("acme", "1762156800.1")) is None
    skipped = run("calls", "import", str(path), "--skip-bad")
    assert skipped.exit_code == 0 and "2 rows imported" in skipped.output


def test_a_file_that_is_no_cdr_exits_2(env, monkeypatch, tmp_path):
    path = setup(env, monkeypatch, tmp_path, "hello,world\n")
    assert run("calls", "import", str(path)).exit_code == 2
    assert run("calls", "import", str(tmp_path / "missing.csv")).exit_code == 2
    assert run("calls", "import", str(path), "--zone", "Mars/Olympus").exit_code == 2


def test_report_table_json_csv(env, monkeypatch, tmp_path):
    path = setup(env, monkeypatch, tmp_path)
    assert run("calls", "import", str(path), "--zone", "Europe/Paris").exit_code == 0
    table = run("report", "--tenant", "acme", "--month", "2026-11")
    assert table.exit_code == 0, table.output
    assert "answer rate" in table.output and "66.7 %" in table.output
    body = json.loads(run("report", "--tenant", "acme", "--month", "2026-11", "--json").output)
    assert body["calls"]["offered"] == 3
    assert body["calls"]["time_to_answer_seconds"] == {"mean": 21.0, "p90": 30.0}
    rows = dict(csv.reader(io.StringIO(
        run("report", "--tenant", "acme", "--month", "2026-11", "--csv").output)))
    assert rows["calls.answered"] == "2" and rows["calls.by_hour[23]"] == "1"
    page = tmp_path / "report.html"
    assert run("report", "--tenant", "acme", "--month", "2026-11", "--html", str(page)
               ).exit_code == 0
    assert page.read_text().count("<svg") == 4
    everyone = json.loads(run("report", "--all", "--month", "2026-11", "--json").output)
    assert everyone["calls"] == body["calls"]
    assert run("report", "--tenant", "acme", "--month", "11/2026").exit_code == 2
    assert run("report", "--tenant", "nobody", "--month", "2026-11").exit_code == 2
    assert run("report", "--month", "2026-11").exit_code == 2
