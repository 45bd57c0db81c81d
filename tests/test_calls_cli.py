"""``relais calls import`` (Asterisk Master.csv) and ``relais report``."""

from __future__ import annotations

import csv
import io
import json
import sys

import pypdf
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


def pdf_text(path) -> str:
    return "\n".join(page.extract_text() for page in pypdf.PdfReader(path).pages)


def test_report_pdf_is_the_emailed_one_with_its_figures_and_period(env, monkeypatch, tmp_path):
    from sync.reports.pdf import report_pdf
    from sync.reports.render import html_report

    path = setup(env, monkeypatch, tmp_path)
    assert run("calls", "import", str(path), "--zone", "Europe/Paris").exit_code == 0
    pdf, page = tmp_path / "acme.pdf", tmp_path / "acme.html"
    done = run("report", "--tenant", "acme", "--month", "2026-11", "--pdf", str(pdf),
               "--html", str(page))
    assert done.exit_code == 0, done.output
    text = pdf_text(pdf)
    # the monthly email's title, the period in the tenant's days, the tenant's figures
    assert "ACME Dépannage : mois du 01/11/2026" in text
    assert "du 01/11/2026 au 30/11/2026" in text and "Europe/Paris" in text
    assert "66.7 %" in text and "21.0 s" in text  # answer rate, mean time to answer
    assert "Appels présentés 3" in text.replace("\n", " ")
    # the same render function as the scheduled email: the page gives these very bytes
    html = page.read_text()
    assert 'id="period" data-from="2026-11-01" data-last="2026-11-30"' in html
    assert pdf.read_bytes() == report_pdf(html)
    assert html == html_report(json.loads(run("report", "--tenant", "acme", "--month",
                                              "2026-11", "--json").output),
                               "ACME Dépannage : mois du 01/11/2026")
    days = tmp_path / "days.pdf"
    assert run("report", "--tenant", "acme", "--from", "2026-11-02", "--to", "2026-11-09",
               "--pdf", str(days)).exit_code == 0
    assert "ACME Dépannage : du 02/11/2026 au 08/11/2026" in pdf_text(days)


def test_report_pdf_bad_input_exits_2(env, monkeypatch, tmp_path):
    setup(env, monkeypatch, tmp_path)
    nowhere = run("report", "--tenant", "acme", "--month", "2026-11",
                  "--pdf", str(tmp_path / "missing" / "r.pdf"))
    assert nowhere.exit_code == 2 and "--pdf: cannot write" in nowhere.output
    bad = tmp_path / "bad.pdf"
    assert run("report", "--tenant", "acme", "--month", "2026-13", "--pdf", str(bad)
               ).exit_code == 2
    monkeypatch.setitem(sys.modules, "weasyprint", None)  # what a missing package does
    missing = run("report", "--tenant", "acme", "--month", "2026-11", "--pdf", str(bad),
                  "--html", str(tmp_path / "r.html"))
    assert missing.exit_code == 2 and "WeasyPrint cannot be loaded" in missing.output
    assert not bad.exists() and not (tmp_path / "r.html").exists()
