# SPDX-License-Identifier: ISC
"""test_apicheck.py -- the schema check itself (apicheck.py) can fail: made-up
answers that break docs/openapi.yaml are refused, the right ones pass.  No
stack needed: these feed apicheck.check() what a server might have sent.
"""

import json

import pytest
import yaml

from apicheck import Contract, ContractError, check

JSON = {"Content-Type": "application/json; charset=utf-8"}
BASE = "http://127.0.0.1:8080"


def car(**kw):
    c = {"id": 7, "licensePlate": "AB-123", "manufacturer": "Volvo",
         "model": "V60", "category": "midsize", "status": "available",
         "year": 2019, "isArchived": False,
         "createdAt": "2026-01-31T12:00:00.123456Z",
         "updatedAt": "2026-01-31T12:00:00.123456Z"}
    c.update(kw)
    return c


def body(doc):
    return json.dumps(doc).encode()


def test_apicheck_a_documented_car_passes():
    assert check("GET", BASE + "/api/cars/7", 200, JSON,
                 body(car())) == "schema"


@pytest.mark.parametrize("broken", [
    {"year": "2019"},                           # wrong type
    {"status": "stolen"},                       # not in the enum
    {"licensePlate": "ab-123"},                 # stored upper-case
    {"createdAt": "2026-02-30T12:00:00.123456Z"},   # no such day
    {"updatedAt": "yesterday"},                 # not a date-time
    {"colour": "red"},                          # the object is closed
])
def test_apicheck_a_car_breaking_its_schema_is_refused(broken):
    with pytest.raises(ContractError):
        check("GET", BASE + "/api/cars/7", 200, JSON, body(car(**broken)))


def test_apicheck_a_car_missing_a_field_is_refused():
    c = car()
    del c["isArchived"]
    with pytest.raises(ContractError, match="isArchived"):
        check("PATCH", BASE + "/api/cars/7", 200, JSON, body(c))


def test_apicheck_an_undocumented_status_is_refused():
    with pytest.raises(ContractError, match="not documented"):
        check("GET", BASE + "/api/cars/7", 418, JSON,
              body({"error": "bad_request", "message": "teapot"}))


def test_apicheck_an_error_code_must_fit_its_status():
    ok = {"error": "not_found", "message": "no such car"}
    assert check("GET", BASE + "/api/cars/7", 404, JSON, body(ok)) == "schema"
    with pytest.raises(ContractError):
        check("GET", BASE + "/api/cars/7", 404, JSON,
              body(dict(ok, error="conflict")))
    with pytest.raises(ContractError):
        check("GET", BASE + "/api/cars/7", 404, JSON,
              body(dict(ok, message="")))


def test_apicheck_a_non_json_answer_is_refused():
    with pytest.raises(ContractError, match="Content-Type"):
        check("GET", BASE + "/api/cars/7", 200,
              {"Content-Type": "text/html"}, b"<h1>hi</h1>")
    with pytest.raises(ContractError, match="not JSON"):
        check("GET", BASE + "/api/cars/7", 200, JSON, b"{nope")


def test_apicheck_a_body_where_none_is_documented_is_refused():
    with pytest.raises(ContractError, match="describes none"):
        check("POST", BASE + "/api/auth/password-reset", 202, JSON,
              body({"queued": True}))


def test_apicheck_empty_bodies_and_head_check_the_status_only():
    assert check("POST", BASE + "/api/auth/password-reset", 202, {},
                 b"") == "status"
    assert check("HEAD", BASE + "/api/cars", 200, JSON, b"") == "status"
    with pytest.raises(ContractError, match="not documented"):
        check("HEAD", BASE + "/api/cars", 201, JSON, b"")


def test_apicheck_an_unknown_api_path_must_answer_an_error():
    err = {"error": "not_found", "message": "no such route"}
    assert check("GET", BASE + "/api/nothing/here", 404, JSON,
                 body(err)) == "schema"
    with pytest.raises(ContractError):
        check("GET", BASE + "/api/nothing/here", 404, JSON,
              body({"data": []}))
    with pytest.raises(ContractError, match="not documented"):
        check("GET", BASE + "/api/nothing/here", 200, JSON, body({}))
    # A method its path doesn't document: the 405 must be an Error too.
    with pytest.raises(ContractError):
        check("PUT", BASE + "/api/cars", 405, JSON, body({"ok": 1}))


def test_apicheck_only_the_test_apps_are_skipped():
    assert check("GET", BASE + "/_test/pid", 200, JSON, b"{}") == "skipped"
    assert check("POST", BASE + "/api/_limit/write", 201, JSON,
                 b"x") == "skipped"
    # A lookalike prefix is API, and checked.
    with pytest.raises(ContractError):
        check("GET", BASE + "/api/_limitx", 200, JSON, b"{}")


def test_apicheck_nullable_cursors():
    page = {"data": [car()], "page": {"limit": 20, "next": None,
                                      "prev": None}}
    assert check("GET", BASE + "/api/cars?limit=20", 200, JSON,
                 body(page)) == "schema"
    page["page"]["next"] = 5
    with pytest.raises(ContractError):
        check("GET", BASE + "/api/cars?limit=20", 200, JSON, body(page))


def test_apicheck_a_429_needs_retry_after():
    limited = {"error": "rate_limited", "message": "slow down",
               "retryAfter": 12}
    assert check("GET", BASE + "/api/cars", 429, JSON,
                 body(limited)) == "schema"
    del limited["retryAfter"]
    with pytest.raises(ContractError, match="retryAfter"):
        check("GET", BASE + "/api/cars", 429, JSON, body(limited))


MINI = """
openapi: 3.0.3
info: {title: t, version: '1'}
paths:
  /things/{id}:
    get:
      responses:
        '200':
          description: a thing
          content:
            application/json:
              schema:
                type: object
                required: [name]
                properties: {name: {type: string, nullable: true}}
        default:
          description: any error
          content:
            application/json:
              schema: {$ref: '#/components/schemas/Error'}
  /things/all:
    get:
      responses:
        '200': {description: the list}
components:
  schemas:
    Error:
      type: object
      required: [error]
      properties: {error: {type: string}}
"""


def test_apicheck_default_response_and_concrete_paths_first():
    c = Contract(yaml.safe_load(MINI))
    assert c.check("GET", "/things/1", 200, JSON,
                   body({"name": None})) == "schema"
    # Not 200: the default applies, and its schema must hold.
    assert c.check("GET", "/things/1", 503, JSON,
                   body({"error": "down"})) == "schema"
    with pytest.raises(ContractError):
        c.check("GET", "/things/1", 503, JSON, body({"name": "x"}))
    # /things/all is its own path, not /things/{id}: no default there.
    with pytest.raises(ContractError, match="not documented"):
        c.check("GET", "/things/all", 503, JSON, body({"error": "down"}))
