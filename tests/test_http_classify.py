"""One rule maps an HTTP answer to an error kind; providers add their quirks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from connectors.base import AuthExpired, RateLimited, Rejected, TransientError
from connectors.http import Classifier, classify
from connectors.salesforce.client import error_from_status


def test_the_base_rule() -> None:
    start = datetime.now(UTC)
    limited = classify(429, {"Retry-After": "7"})
    assert isinstance(limited, RateLimited)
    assert timedelta(seconds=6) < limited.reset_at - start < timedelta(seconds=9)
    assert isinstance(classify(401, {}), AuthExpired)
    transient = classify(503, {"retry-after": "3"})
    assert isinstance(transient, TransientError) and transient.retry_after == 3.0
    assert isinstance(classify(408, {}), TransientError)
    assert isinstance(classify(0, {}), TransientError)  # no answer at all
    assert isinstance(classify(404, {}, None, "gone"), Rejected)
    # A static token cannot be refreshed: its 401 is final.
    assert isinstance(Classifier(unauthorized=Rejected).classify(401, {}, None, "x"), Rejected)


def test_a_provider_extends_the_rule() -> None:
    start = datetime.now(UTC)
    limit = error_from_status(403, [{"errorCode": "REQUEST_LIMIT_EXCEEDED", "message": "m"}],
                              "query", timedelta(minutes=20))
    assert isinstance(limit, RateLimited) and "24 h API allocation" in str(limit)
    assert timedelta(minutes=19) < limit.reset_at - start <= timedelta(minutes=21)
    refused = error_from_status(403, [{"errorCode": "INSUFFICIENT_ACCESS", "message": "m"}], "q")
    assert isinstance(refused, Rejected)
    assert isinstance(error_from_status(401, [], "q"), AuthExpired)
