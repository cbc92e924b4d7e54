"""Schemathesis hooks for tests/schemathesis/run.sh.

One hook, which keeps the run short without changing what any request means: a query
with `Tessera-Min-Position` past what the read models reach waits for them up to
`Tessera-Max-Wait` milliseconds (default 5000, at most 60000) before it answers
`503 stale`. Generated waits are whole numbers anywhere in the range the description
allows, so most such queries would wait a minute. Before a query is sent, a valid wait
(a whole number) is capped at MAX_WAIT_MS, and a query that asks for a position
without saying how long to wait is given MAX_WAIT_MS: both are still valid values, so
a positive case stays positive. Values that are not whole numbers (negative cases) are
sent as generated, and the host must refuse them. Waiting, and answering 503 stale
past the bound, are covered by tests/read_side_http.rs.
"""

import schemathesis

MAX_WAIT_MS = 200
QUERY_PATH = "/queries/{name}"


def _whole_number(value):
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value >= 0
    return isinstance(value, str) and value.isascii() and value.isdigit()


@schemathesis.hook
def before_call(context, case, kwargs):
    if case.operation.path != QUERY_PATH or case.headers is None:
        return
    wait = case.headers.get("Tessera-Max-Wait")
    if wait is None:
        if _whole_number(case.headers.get("Tessera-Min-Position")):
            case.headers["Tessera-Max-Wait"] = str(MAX_WAIT_MS)
    elif _whole_number(wait) and int(wait) > MAX_WAIT_MS:
        case.headers["Tessera-Max-Wait"] = str(MAX_WAIT_MS)
