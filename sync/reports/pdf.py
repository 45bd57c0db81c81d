"""The report page (``sync.reports.render``) as a PDF, with WeasyPrint.

Invariants:
- WeasyPrint is imported here, lazily, on the first PDF: the rest of Relais
  (the API, ``relais demo``, a worker that sends no report) runs without it;
  without it, or when it fails on a page, :func:`report_pdf` raises
  :class:`PdfUnavailable` (naming only the exception's type) and the caller
  sends the report without the attachment;
- the same page gives the same bytes (WeasyPrint writes no creation date; the
  document identifier is derived from the page), but the scheduler still keeps
  the bytes it sends (``sync.reports.schedule``): a retry on another machine,
  with other fonts or another WeasyPrint, resends what was rendered once;
- the page is self-contained and no resource is ever fetched (the URL fetcher
  refuses everything: no file read, no network), whatever the page names;
- nothing of the page reaches the logs: WeasyPrint's and fontTools' own
  warnings quote CSS and text, so they are cut down to their level and logger.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

PRINT_CSS = """
@page { size: A4; margin: 14mm 12mm; }
body { font-family: "DejaVu Sans", "Liberation Sans", sans-serif; font-size: 10pt; }
h1 { font-size: 15pt; margin: 0 0 4mm; }
table { border-collapse: collapse; margin-bottom: 5mm; }
th { text-align: left; font-weight: normal; padding: 1mm 6mm 1mm 0; }
td { text-align: right; font-weight: bold; padding: 1mm 0; }
div { break-inside: avoid; margin-bottom: 3mm; }
svg { width: 100%; height: auto; }
"""

# Filters do not pass down to child loggers: each one WeasyPrint and fontTools log on is
# named, and the two roots raised to ERROR (their children inherit that level).
_ROOTS = ("weasyprint", "fontTools")
_QUIET = (*_ROOTS, "weasyprint.progress", "fontTools.subset", "fontTools.ttLib",
          "fontTools.ttLib.ttFont", "fontTools.ttLib.tables")


class PdfUnavailable(RuntimeError):
    """No PDF: WeasyPrint (or the Pango it loads) is missing, or it failed on the page."""


class _Withheld(logging.Filter):
    """Keep a third-party record's level and logger, drop its text (it quotes the page)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR:
            return False
        record.msg, record.args = "PDF rendering problem (details withheld)", None
        record.exc_info = record.exc_text = None
        return True


def _quiet_loggers() -> None:
    for name in _ROOTS:
        logging.getLogger(name).setLevel(logging.ERROR)
    for name in _QUIET:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _Withheld) for f in logger.filters):
            logger.addFilter(_Withheld())


def _refuse(url: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
    raise ValueError("the report page fetches no resource")


def _no_fetcher(weasyprint: Any) -> Any:
    """A URL fetcher that refuses every URL: a ``URLFetcher`` whose ``fetch`` raises
    (recent WeasyPrint takes only those), else the plain function (older ones)."""
    base = getattr(getattr(weasyprint, "urls", None), "URLFetcher", None)
    if base is None:
        return _refuse

    class Refuse(base):  # type: ignore[misc, valid-type]
        def fetch(self, url: str, headers: Any = None) -> Any:
            return _refuse(url)

    return Refuse()


def report_pdf(page: str) -> bytes:
    """The PDF of the HTML ``page`` (A4, its inline SVG charts drawn as vectors)."""
    _quiet_loggers()
    try:
        import weasyprint
    except (ImportError, OSError) as exc:  # OSError: the Pango libraries are missing
        raise PdfUnavailable(f"WeasyPrint cannot be loaded ({type(exc).__name__})") from None
    identifier = hashlib.sha256(page.encode()).hexdigest()[:32].encode()
    try:
        document = weasyprint.HTML(string=page, url_fetcher=_no_fetcher(weasyprint),
                                   base_url="about:blank")
        out = document.write_pdf(stylesheets=[weasyprint.CSS(string=PRINT_CSS,
                                                             url_fetcher=_no_fetcher(weasyprint))],
                                 pdf_identifier=identifier)
    except Exception as exc:  # noqa: BLE001 - a renderer's bug must not hold the report
        # Its message may quote the page: only the type is kept.
        raise PdfUnavailable(f"WeasyPrint failed ({type(exc).__name__})") from None
    if not isinstance(out, bytes):
        raise PdfUnavailable("WeasyPrint returned no document")
    return out
