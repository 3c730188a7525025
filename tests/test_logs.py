"""Logs as an operator collects them: JSON lines from a real `serve`, request ids, no values."""

from __future__ import annotations

import json
import logging
import sys
import uuid
from pathlib import Path

import httpx

from tests.test_cli import new_token, run_cli, serving
from ticketlog.logs import JsonFormatter, TextFormatter

# Personal values a help desk would hold; none may reach a log line.
PEOPLE = [
    {
        "name": "Zebulon Quixote-Marchbanks",
        "email": "zebulon.qm@oddmail.example",
        "phone": "+44 20 7946 0813",
    },
    {
        "name": "Philippa Wrenfeather",
        "email": "p.wrenfeather@quietmail.example",
        "phone": "+1 212 555 0177",
    },
]
SUBJECT = "Invoice dispute about Wrenfeather's orchid greenhouse"
BODY = "My neighbour Ignatius Blackthorne-Pym keeps the spare key under the gnome"
COMMENT = "Call me back on the landline near the Marchbanks aviary"
BAD_EMAIL = "ottoline.fairweather-at-nowhere"
BAD_PHONE = "call Ottoline on Tuesdays"
EXTRA_FIELD = "Cornelius Applethwaite"


def needles() -> list[str]:
    values = [SUBJECT, BODY, COMMENT, BAD_EMAIL, BAD_PHONE, EXTRA_FIELD]
    for person in PEOPLE:
        values += [person["name"], person["email"], person["phone"]]
        values.append(person["email"].split("@")[0])
        values += person["name"].split()  # each part of a name alone, too
    values += ["Ignatius", "Blackthorne", "Ottoline", "Applethwaite", "orchid"]
    return sorted({v for value in values for v in (value, value.lower())})


def test_json_logs_carry_request_ids_and_no_personal_data(tmp_path: Path) -> None:
    data = tmp_path / "data"
    service = {"Authorization": f"Bearer {new_token(data, 'service')}"}
    compliance = {"Authorization": f"Bearer {new_token(data, 'compliance')}"}
    log = tmp_path / "serve.log"
    sent_ids: list[str] = []
    with (
        serving(data, flags=("--log-format", "json"), log=log) as (base, _),
        httpx.Client(base_url=base, timeout=30) as http,
    ):

        def call(method: str, path: str, **kw: object) -> httpx.Response:
            rid = f"test-{uuid.uuid4().hex[:12]}"
            headers = {**kw.pop("headers", service), "X-Request-ID": rid}  # type: ignore[dict-item]
            r = http.request(method, path, headers=headers, **kw)  # type: ignore[arg-type]
            assert r.headers["X-Request-ID"] == rid  # a well-formed id comes back as sent
            sent_ids.append(rid)
            return r

        users = [call("POST", "/v1/users", json={"kind": "customer", **p}).json() for p in PEOPLE]
        agent = call(
            "POST",
            "/v1/users",
            json={"kind": "agent", "name": "Agent Smith", "email": "a@x.io"},
        ).json()
        requester = users[0]["id"]
        ticket = call(
            "POST",
            "/v1/tickets",
            json={"requester_id": requester, "subject": SUBJECT, "body": BODY},
        ).json()
        tid = ticket["id"]
        comment = {"author_id": requester, "body": COMMENT}
        assert call("POST", f"/v1/tickets/{tid}/comments", json=comment).status_code == 201
        assert call("GET", f"/v1/tickets/{tid}").status_code == 200
        assert call("GET", f"/v1/users/{users[1]['id']}").status_code == 200

        # Invalid bodies quoting personal values: 422, and the values stay out of the logs.
        bad_email = {"kind": "customer", "name": PEOPLE[0]["name"], "email": BAD_EMAIL}
        assert call("POST", "/v1/users", json=bad_email).status_code == 422
        bad_phone = {**PEOPLE[1], "kind": "customer", "phone": BAD_PHONE}
        assert call("POST", "/v1/users", json=bad_phone).status_code == 422
        extra = {**PEOPLE[1], "kind": "customer", "nickname": EXTRA_FIELD}
        assert call("POST", "/v1/users", json=extra).status_code == 422
        broken = f'{{"kind": "customer", "name": "{EXTRA_FIELD}", '.encode()
        assert (
            call(
                "POST",
                "/v1/users",
                content=broken,
                headers={**service, "Content-Type": "application/json"},
            ).status_code
            == 422
        )
        # Values in the path and the query string: neither is logged.
        assert call("GET", f"/v1/users/{PEOPLE[0]['email']}").status_code == 404
        assert call("GET", "/v1/tickets", params={"status": PEOPLE[1]["name"]}).status_code == 422
        assert call("GET", f"/v1/tickets/{uuid.uuid4()}").status_code == 404

        # A 409: an agent-less ticket cannot be solved.
        solve = call("POST", f"/v1/tickets/{tid}/status", json={"status": "solved"})
        assert solve.status_code == 409
        assert call(
            "POST", f"/v1/tickets/{tid}/assign", json={"assignee_id": agent["id"]}
        ).is_success
        export = call("GET", f"/v1/subjects/{requester}/export", headers=compliance)
        assert export.status_code == 200
        assert call("POST", f"/v1/subjects/{requester}/erase", headers=compliance).is_success
        after = call("POST", f"/v1/tickets/{tid}/comments", json=comment)
        assert after.status_code == 409

        # A malformed id (spaces, a name in it) is replaced by a fresh one.
        odd = http.get("/healthz", headers={"X-Request-ID": f"{PEOPLE[1]['name']} x"})
        fresh = odd.headers["X-Request-ID"]
        assert fresh != f"{PEOPLE[1]['name']} x"
        assert len(fresh) == 32
        # Rejected before any route: the rate limiter and the body limit also tag responses.
        assert http.get("/v1/tickets").headers["X-Request-ID"]

    raw = log.read_bytes()
    lines = [json.loads(line) for line in raw.decode().splitlines() if line.strip()]
    assert lines, "serve logged nothing"
    access = [line for line in lines if line["logger"] == "ticketlog.http"]
    assert {line["request_id"] for line in access} >= set(sent_ids)
    assert fresh in {line["request_id"] for line in access}
    for line in access:
        assert line["request_id"]
        assert {"method", "route", "status", "duration_ms", "token_id", "role"} <= line.keys()
        assert "?" not in (line["route"] or "")
    statuses = {line["status"] for line in access}
    assert {200, 201, 404, 409, 422} <= statuses
    hits = [n for n in needles() if n.encode() in raw]
    assert hits == []


def test_exception_messages_are_withheld_from_tracebacks() -> None:
    """A library error quoting its input (as pydantic and psycopg errors do) logs only types."""
    value = PEOPLE[0]["name"]
    try:
        try:
            raise ValueError(f"value {value!r} is not a valid email")
        except ValueError as inner:
            raise RuntimeError(f"while storing {value}") from inner
    except RuntimeError:
        record = logging.LogRecord("t", logging.ERROR, __file__, 1, "failed", None, None)
        record.exc_info = sys.exc_info()
    for formatter in (TextFormatter(), JsonFormatter()):
        text = formatter.format(record)
        assert "Zebulon" not in text
        assert "builtins.ValueError" in text
        assert "builtins.RuntimeError" in text
        assert "test_exception_messages_are_withheld_from_tracebacks" in text


def test_an_unknown_log_format_is_refused(tmp_path: Path) -> None:
    result = run_cli(tmp_path / "data", "keys", "list", env={"TICKETLOG_LOG_FORMAT": "xml"})
    assert result.returncode == 2
    assert "TICKETLOG_LOG_FORMAT" in result.stderr
