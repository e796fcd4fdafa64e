# SPDX-License-Identifier: ISC
"""test_bad_input.py -- hostile and broken requests (API.md "Conventions":
never a 500, always API.md error JSON, nothing crashes).

The module records the cars app's worker pids before its first test and
checks at the end that they are the same (no worker died and was
respawned) and that no app log holds a sanitizer report.  Keep
test_bad_input_no_worker_crashed and test_bad_input_no_sanitizer_report
last in this file.
"""

import gzip
import json
import os
import time

import pytest

from accounts import session_for
from helpers import assert_error, car_body, raw_request, replicated
from test_serve import fcgi_get

MIB = 1024 * 1024
CUT = "\u2026"                      # json.h KEEL_JSON_CUT, "…"


def post_raw(http, data, ctype="application/json", path="/api/cars"):
    headers = {} if ctype is None else {"Content-Type": ctype}
    return http.post(path, data=data, headers=headers)


@pytest.fixture
def student(stack, http):
    """A fresh student's headers: flashcards and study plans are a user's
    own."""
    return session_for(stack, http, "student")[1]


@pytest.fixture(scope="module", autouse=True)
def cars_workers(stack):
    """The cars workers' pids before this module's first request."""
    pids = stack.worker_pids("cars")
    assert pids, "the cars app has no workers"
    return pids


# -------------------------------------------------------------- JSON syntax

@pytest.mark.parametrize("data", [b"{", b"{bad", b'{"a":1,}', b"[1,2",
                                  b"{'licensePlate': 'X'}", b"nul",
                                  b'{"a":1} {"b":2}', b'{"a":1}x',
                                  b"/* c */ {}", b'{"a":01}', b'{"a":1e}',
                                  b'{"a":"\\x41"}'])
def test_bad_input_malformed_json_400(http, data):
    assert_error(post_raw(http, data), 400, "bad_request")


@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"-Infinity"])
def test_bad_input_non_json_number_rejected_naming_year(http, number):
    # Not JSON (RFC 8259 §6); json-c lets them through, the field check
    # must still refuse them.
    body = json.dumps(car_body(year=0)).encode().replace(b'"year": 0',
                                                         b'"year": ' + number)
    r = post_raw(http, body)
    assert r.status_code in (400, 422), r.text
    if r.status_code == 422:
        assert list(assert_error(r, 422, "validation_failed")["fields"]) \
            == ["year"]
    else:
        assert_error(r, 400, "bad_request")


def test_bad_input_json_not_an_object_422(http):
    body = assert_error(post_raw(http, b"[1, 2, 3]"), 422,
                        "validation_failed")
    assert "body" in body["fields"]


@pytest.mark.parametrize("data", [b"null", b" null\n", b"1", b'"x"',
                                  b"true", b"[]"])
@pytest.mark.parametrize("method,path", [("POST", "/api/cars"),
                                         ("PATCH", "/api/users/1")])
def test_bad_input_json_scalar_or_null_body_422(http, data, method, path):
    """`null` is valid JSON, not an object: the 422 of `[]` or `1`, not a
    400 "the JSON could not be parsed: success" (json-c's NULL for it)."""
    r = http.request(method, path, data=data,
                     headers={"Content-Type": "application/json"})
    body = assert_error(r, 422, "validation_failed")
    assert body["fields"] == {"body": "must be a JSON object"}


def test_bad_input_nested_100_deep_400(http):
    doc = b'{"a":' * 100 + b"1" + b"}" * 100
    assert_error(post_raw(http, doc), 400, "bad_request")


def test_bad_input_nested_arrays_100_deep_400(http):
    assert_error(post_raw(http, b"[" * 100 + b"]" * 100), 400, "bad_request")


# -------------------------------------------------------------- types

@pytest.mark.parametrize("field,value", [
    ("licensePlate", 123), ("manufacturer", True), ("model", ["x"]),
    ("category", 5), ("status", {"s": 1}), ("year", "2020"),
    ("year", 2020.5), ("year", True), ("licensePlate", None),
])
def test_bad_input_wrong_type_422_names_field(http, field, value):
    r = http.post("/api/cars", json=car_body(**{field: value}))
    body = assert_error(r, 422, "validation_failed")
    assert list(body["fields"]) == [field]


def test_bad_input_wrong_types_all_named_422(http):
    r = http.post("/api/cars", json=car_body(licensePlate=1, year="x",
                                             category=False))
    body = assert_error(r, 422, "validation_failed")
    assert set(body["fields"]) == {"licensePlate", "year", "category"}


def test_bad_input_patch_wrong_type_422(http):
    car = http.post("/api/cars", json=car_body()).json()
    r = http.patch("/api/cars/%d" % car["id"], json={"isArchived": "yes"})
    assert "isArchived" in assert_error(r, 422, "validation_failed")["fields"]


@pytest.mark.parametrize("number", [b"1e400", b"-1e400", b"1e20",
                                    b"12345678901234567890",
                                    b"-12345678901234567890",
                                    b"9223372036854775807",
                                    b"9223372036854775808",
                                    b"-9223372036854775809",
                                    b"1" * 400])
def test_bad_input_huge_number_422(http, number):
    body = json.dumps(car_body(year=0)).encode().replace(b'"year": 0',
                                                         b'"year": ' + number)
    r = post_raw(http, body)
    assert "year" in assert_error(r, 422, "validation_failed")["fields"]


# ---------------------------------------------------------- body framing

def test_bad_input_empty_body_post_400(http):
    assert_error(post_raw(http, b""), 400, "bad_request")


def test_bad_input_empty_body_patch_400(http):
    r = http.patch("/api/cars/1", data=b"",
                   headers={"Content-Type": "application/json"})
    assert_error(r, 400, "bad_request")


def test_bad_input_missing_content_type_415(http):
    r = post_raw(http, json.dumps(car_body()).encode(), ctype=None)
    assert "Content-Type" not in r.request.headers
    assert_error(r, 415, "unsupported_media_type")


@pytest.mark.parametrize("ctype", ["text/plain",
                                   "application/x-www-form-urlencoded",
                                   "application/jsonx", "json"])
def test_bad_input_non_json_content_type_415(http, ctype):
    r = post_raw(http, json.dumps(car_body()).encode(), ctype=ctype)
    assert_error(r, 415, "unsupported_media_type")


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br"])
def test_bad_input_coded_body_415_says_identity(http, coding):
    """A coded body is refused as coded (RFC 9110 §15.5.16), not read as
    JSON full of NUL bytes (400 before)."""
    body = json.dumps(car_body()).encode()
    if coding == "gzip":
        body = gzip.compress(body)
    r = http.post("/api/cars", data=body, headers={
        "Content-Type": "application/json", "Content-Encoding": coding})
    assert_error(r, 415, "unsupported_media_type")
    assert r.headers["Accept-Encoding"] == "identity"


def test_bad_input_identity_coded_body_accepted(http):
    r = http.post("/api/cars", data=json.dumps(car_body()).encode(),
                  headers={"Content-Type": "application/json",
                           "Content-Encoding": "identity"})
    assert r.status_code == 201, r.text


def test_bad_input_json_content_type_with_charset_accepted(http):
    r = post_raw(http, json.dumps(car_body()).encode(),
                 ctype="application/json; charset=utf-8")
    assert r.status_code == 201, r.text


@pytest.mark.parametrize("bad", [b"\xff", b"\xc3\x28", b"\xed\xa0\x80",
                                 b"\xc0\xaf", b"\xf4\x90\x80\x80", b"\xe2\x82"])
def test_bad_input_invalid_utf8_in_body_rejected(http, bad):
    # Invalid bytes, surrogates, overlongs, past U+10FFFF, truncated:
    # 400, or 422 naming the field (API.md).
    data = json.dumps(car_body(model="@@")).encode().replace(b"@@", bad)
    r = post_raw(http, data)
    if r.status_code == 422:
        assert list(assert_error(r, 422, "validation_failed")["fields"]) \
            == ["model"]
    else:
        assert_error(r, 400, "bad_request")


@pytest.mark.parametrize("bad", [b"\xff", b"\xed\xa0\x80", b"\xc0\xaf"])
def test_bad_input_invalid_utf8_field_name_answer_is_utf8(http, bad):
    """An unknown field is named in the 422; its name must not carry
    invalid UTF-8 into the answer (which claims charset=utf-8)."""
    data = json.dumps(car_body(zz="1")).encode().replace(b'"zz"',
                                                         b'"' + bad + b'"')
    r = post_raw(http, data)
    assert r.status_code in (400, 422), r.text
    r.content.decode("utf-8")       # raises on invalid UTF-8
    assert r.json()["error"] in ("bad_request", "validation_failed")


@pytest.mark.parametrize("ctl", [b"\x01", b"\x1f", b"\n", b"\t"])
def test_bad_input_raw_control_char_in_string_rejected(http, ctl):
    """RFC 8259 §7: control characters in strings must be escaped; a raw
    one makes the document malformed (400), or the field invalid (422)."""
    data = json.dumps(car_body(manufacturer="@@")).encode().replace(
        b"@@", b"a" + ctl + b"b")
    r = post_raw(http, data)
    if r.status_code == 422:
        assert list(assert_error(r, 422, "validation_failed")["fields"]) \
            == ["manufacturer"]
    else:
        assert_error(r, 400, "bad_request")


def test_bad_input_raw_nul_byte_in_body_400(http):
    data = json.dumps(car_body(model="@@")).encode().replace(b"@@", b"a\0b")
    assert_error(post_raw(http, data), 400, "bad_request")


def test_bad_input_escaped_nul_422(http):
    data = json.dumps(car_body(manufacturer="a\u0000b")).encode()
    assert b"\\u0000" in data
    r = post_raw(http, data)
    body = assert_error(r, 422, "validation_failed")
    assert list(body["fields"]) == ["manufacturer"]


@pytest.mark.parametrize("text", ["available\\u0000x", "available\\u0000"])
def test_bad_input_escaped_nul_in_enum_422(http, text):
    """An ENUM was compared up to the NUL: "available\\u0000x" was stored
    as available (201)."""
    data = json.dumps(car_body(status="@@")).encode().replace(
        b"@@", text.encode())
    body = assert_error(post_raw(http, data), 422, "validation_failed")
    assert body["fields"] == {"status": "must not contain NUL characters"}


def test_bad_input_escaped_nul_in_date_422(http, student):
    """A DATE was read up to the NUL: "2026-01-01\\u0000junk" was stored
    as 2026-01-01 (201)."""
    r = http.post("/api/study-plans", headers=student, json={
        "title": "x", "targetDate": "2026-01-01\u0000junk"})
    body = assert_error(r, 422, "validation_failed")
    assert body["fields"] == {"targetDate":
                              "must not contain NUL characters"}


@pytest.mark.parametrize("key", [b"front\\u0000x", b"zz\\u0000x"])
def test_bad_input_escaped_nul_in_field_name_400(http, student, key):
    """json-c cut a name at its NUL: {"front\\u0000x": ...} was read as
    "front" (201), and an unknown one was echoed cut.  Refused as the
    body's (no field can have the name, at any depth)."""
    data = b'{"' + key + b'":"a","back":"b","topic":"t"}'
    if not key.startswith(b"front"):
        data = data.replace(b'{"', b'{"front":"f","', 1)
    r = http.post("/api/flashcards", data=data, headers=dict(
        student, **{"Content-Type": "application/json"}))
    body = assert_error(r, 400, "bad_request")
    assert "NUL" in body["message"]


@pytest.mark.parametrize("escaped", [b"\\ud800", b"\\udc00\\ud800",
                                     b"\\udbff", b"\\udfff",
                                     b"a\\ud83dx", b"\\ud83d\\u0041"])
def test_bad_input_lone_surrogate_escape_400(http, student, escaped):
    """A \\u-escaped surrogate outside a high-low pair is no character;
    it was stored as U+FFFD (201).  400, as invalid UTF-8 is."""
    data = b'{"front":"' + escaped + b'","back":"b","topic":"t"}'
    r = http.post("/api/flashcards", data=data, headers=dict(
        student, **{"Content-Type": "application/json"}))
    body = assert_error(r, 400, "bad_request")
    assert "surrogate" in body["message"]


def test_bad_input_surrogate_pair_escape_round_trips(http, stack, student):
    data = b'{"front":"smile \\ud83d\\ude00","back":"b","topic":"t"}'
    r = http.post("/api/flashcards", data=data, headers=dict(
        student, **{"Content-Type": "application/json"}))
    assert r.status_code == 201, r.text
    card = r.json()
    assert card["front"] == "smile \U0001F600"
    replicated(stack)
    got = http.get("/api/flashcards/%d" % card["id"], headers=student)
    assert got.status_code == 200, got.text
    assert got.json()["front"] == "smile \U0001F600"


def test_bad_input_body_exactly_1mib_passes_size_check(http):
    doc = json.dumps(car_body(model="m" * 200)).encode()
    data = doc + b" " * (MIB - len(doc))
    assert len(data) == MIB
    r = post_raw(http, data)
    # Too long a model (422), not too large a body (413).
    assert "model" in assert_error(r, 422, "validation_failed")["fields"]


def test_bad_input_body_1mib_plus_1_413(http):
    doc = json.dumps(car_body()).encode()
    data = doc + b" " * (MIB + 1 - len(doc))
    assert len(data) == MIB + 1
    assert_error(post_raw(http, data), 413, "payload_too_large")


def test_bad_input_chunked_body_over_1mib_413(http):
    def chunks():
        yield b'{"model":"'
        for _ in range(17):
            yield b"m" * 65536
        yield b'"}'
    r = http.post("/api/cars", data=chunks(),
                  headers={"Content-Type": "application/json"})
    assert r.request.headers.get("Transfer-Encoding") == "chunked"
    assert_error(r, 413, "payload_too_large")


# ------------------------------------------------ the values in a body
# A body within the 1 MiB cap made of tiny containers ("[{},{},...]",
# 349k objects) cost a worker 1.3-1.7 s and ~300 MB (json-c allocates a
# hash table per object), ~700 MB of RSS kept after; on login before the
# rate limiter decided, which parses the body for its key.  json.h's
# KEEL_JSON_MAXVALUES (4096) refuses it before json-c runs: 400.

MIB_OF_OBJECTS = b"[" + b",".join([b"{}"] * 349000) + b"]"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def workers_cpu(stack, app):
    """The CPU seconds app's workers have used, all of them together."""
    total = 0
    for pid in stack.worker_pids(app):
        try:
            with open("/proc/%d/stat" % pid) as f:
                # utime and stime: fields 14 and 15, after "(comm)".
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def workers_rss_kb(stack, app):
    """{pid: VmRSS in kB} of app's live workers."""
    rss = {}
    for pid in stack.worker_pids(app):
        try:
            with open("/proc/%d/status" % pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss[pid] = int(line.split()[1])
        except OSError:
            continue
    return rss


def rss_growth_mb(before, after):
    """The most any worker's RSS grew from before to after, in MB: what a
    request cost the worker that served it, whatever earlier tests left
    in it.  A worker started in between (one that died serving) counts
    whole."""
    return max([kb - before.get(pid, 0) for pid, kb in after.items()],
               default=0) / 1024


@pytest.mark.parametrize("app,path,user", [
    ("auth", "/api/auth/login", False),
    ("auth", "/api/auth/password-reset", False),
    ("flashcards", "/api/flashcards", True),
    ("study-plans", "/api/study-plans", True)])
def test_bad_input_mib_of_empty_objects_400_cheap(stack, anon, student, app,
                                                   path, user):
    assert len(MIB_OF_OBJECTS) <= MIB
    headers = {"Content-Type": "application/json"}
    if user:
        headers.update(student)
    cpu = workers_cpu(stack, app)
    rss = workers_rss_kb(stack, app)
    t0 = time.monotonic()
    r = anon.post(path, data=MIB_OF_OBJECTS, headers=headers)
    took = time.monotonic() - t0
    used = workers_cpu(stack, app) - cpu
    grew = rss_growth_mb(rss, workers_rss_kb(stack, app))
    body = assert_error(r, 400, "bad_request")
    assert body["message"] == "the JSON holds more than 4096 values"
    # Worker CPU, not the wall clock, for the machine may be busy: a scan
    # of the megabyte, where json-c took over a second (more under ASan).
    assert used < 0.5, "the workers used %.2f s of CPU" % used
    assert took < 5, "answered in %.1f s" % took
    # This request's cost in memory, not the workers' size: earlier
    # tests may have grown them.  A scan reads the megabyte it was sent
    # (about 1 MB more under ASan); json-c's tree was hundreds.
    assert grew < 16, "a worker's RSS grew %.0f MB" % grew


def test_bad_input_values_at_bound_reach_the_fields(http, student):
    """4096 values, the bound, are parsed and checked as fields: 422."""
    data = b'{"title":"x","items":[' + b",".join([b"{}"] * 4093) + b"]}"
    r = http.post("/api/study-plans", data=data,
                  headers=dict(student, **{"Content-Type":
                                           "application/json"}))
    body = assert_error(r, 422, "validation_failed")
    assert any(k.startswith("items") for k in body["fields"]), body


# -------------------------------------------------------- the 422's size
# A 422 names the fields to blame (API.md), but no more than json.h's
# KEEL_JSON_MAXERRORS (16) of them, each cut to 64 bytes and marked "…";
# a last entry "…" counts the rest.  Before, a 0.98 MB body of 90k
# unknown names made a 2.9 MB answer, and a 1 MB name came back whole.

def unknown_names_body(n, name="k%d"):
    """A valid car body and n unknown fields, as bytes."""
    doc = json.dumps(car_body()).encode()[:-1]
    return doc + b"".join(b',"' + (name % i).encode() + b'":1'
                          for i in range(n)) + b"}"


def test_bad_input_many_unknown_fields_422_bounded(http):
    # 4000 names and the car's own fields: within json.h's
    # KEEL_JSON_MAXVALUES (4096), made long to fill the megabyte.
    data = unknown_names_body(4000, name="k%d" + "x" * 240)
    assert 0.9 * MIB < len(data) <= MIB
    r = post_raw(http, data)
    body = assert_error(r, 422, "validation_failed")
    assert len(r.content) < 2048, len(r.content)
    assert len(body["fields"]) == 17
    assert body["fields"]["k0" + "x" * 62 + CUT] == "is not a known field"
    assert body["fields"][CUT] == "3984 more problems are not listed"


def test_bad_input_90k_unknown_fields_400(http):
    """Past KEEL_JSON_MAXVALUES the body is refused before json-c builds
    it, so no field is looked at."""
    data = unknown_names_body(90000)
    assert 0.9 * MIB < len(data) <= MIB
    body = assert_error(post_raw(http, data), 400, "bad_request")
    assert body["message"] == "the JSON holds more than 4096 values"


def test_bad_input_1mb_field_name_422_cut(http):
    data = unknown_names_body(1, name="k" * 1000000 + "%d")
    assert len(data) <= MIB
    r = post_raw(http, data)
    body = assert_error(r, 422, "validation_failed")
    assert len(r.content) < 1024, len(r.content)
    assert body["fields"] == {"k" * 64 + CUT: "is not a known field"}


def test_bad_input_escaped_control_names_422_bounded(http):
    """The worst case for the answer's size: names that each escape to six
    bytes a byte (\\u0001), as long as a name is listed."""
    data = unknown_names_body(2000, name="\\u0001" * 60 + "%04d")
    assert len(data) <= MIB
    r = post_raw(http, data)
    body = assert_error(r, 422, "validation_failed")
    assert len(r.content) < 8192, len(r.content)
    assert len(body["fields"]) == 17


@pytest.mark.parametrize("n", [200, 1000])
def test_bad_input_plan_items_unknown_fields_422_bounded(http, student, n):
    """Elements' problems share the one bound: 100 items of n names."""
    item = {"topic": "t"}
    item.update(("k%d" % i, 1) for i in range(n // 100))
    r = http.post("/api/study-plans", headers=student, json={
        "title": "x", "items": [item] * 100})
    body = assert_error(r, 422, "validation_failed")
    assert len(r.content) < 2048, len(r.content)
    assert body["fields"]["items[0].k0"] == "is not a known field"
    assert body["fields"][CUT] == "%d more problems are not listed" % (
        n - 16)


# ------------------------------------------------------------- URI and query

def test_bad_input_invalid_utf8_in_query_400_json(http):
    r = http.get("/api/cars?manufacturer=%C3%28")
    body = assert_error(r, 400, "bad_request")
    assert "manufacturer" in body["message"]


def test_bad_input_long_query_name_error_is_utf8(http):
    """The 400 quotes the parameter's name, cut to 64 bytes: the cut must
    not split a character (63 ASCII bytes, then a 2-byte "\u00e9")."""
    r = http.get("/api/cars?" + "a" * 63 + "%C3%A9=%C3%28")
    assert r.status_code == 400
    r.content.decode("utf-8")       # raises on invalid UTF-8
    assert r.json()["error"] == "bad_request"


@pytest.mark.parametrize("query", [b"manufacturer=%ff", b"manufacturer=\xff",
                                   b"manufacturer=a%00b", b"model=%ed%a0%80"])
def test_bad_input_bad_query_bytes_400_json(stack, query):
    resp = raw_request(stack, b"GET /api/cars?" + query +
                       b" HTTP/1.0\r\nHost: t\r\n\r\n")
    assert_error(resp, 400, "bad_request")


@pytest.mark.parametrize("path", [b"/api/cars/%C3%28", b"/%ff", b"/\xff",
                                  b"/api/cars/1%00"])
def test_bad_input_bad_path_bytes_400_json(stack, path):
    resp = raw_request(stack, b"GET " + path + b" HTTP/1.0\r\nHost: t\r\n\r\n")
    assert_error(resp, 400, "bad_request")


def test_bad_input_64k_path_4xx_json(http):
    r = http.get("/api/cars/" + "a" * 65536)
    assert_error(r, 431, "bad_request")


def test_bad_input_64k_query_4xx_json(http):
    r = http.get("/api/cars?manufacturer=" + "a" * 65536)
    assert_error(r, 431, "bad_request")


def test_bad_input_uri_past_16k_at_the_app_is_414(stack):
    """Behind lighttpd its 431 comes first (8 KB of headers); an app
    behind another server refuses a URI over 16 KB itself, as lighttpd's
    own 414 page does."""
    st, _, body = fcgi_get(os.path.join(stack.dir, "run", "cars.sock"),
                           "/api/cars?manufacturer=" + "a" * 16400)
    assert st == 414
    assert json.loads(body)["error"] == "bad_request"
    assert "too long" in json.loads(body)["message"]


@pytest.mark.parametrize("param", ["carId", "customerId"])
def test_bad_input_largest_int64_id_query_finds_nothing(http, param):
    """9223372036854775807 is an integer (and a bigint): no such row, not
    a 400 "must be an integer"."""
    r = http.get("/api/contracts", params={param: "9223372036854775807"})
    assert r.status_code == 200, r.text
    assert r.json()["data"] == []


@pytest.mark.parametrize("value,msg", [
    ("9223372036854775808", "is out of range"),
    ("99999999999999999999", "is out of range"),
    ("-9223372036854775809", "is out of range"),
    ("12x", "must be an integer"), ("-", "must be an integer")])
def test_bad_input_id_query_past_int64_400_says_why(http, value, msg):
    r = http.get("/api/contracts", params={"carId": value})
    assert assert_error(r, 400, "validation_failed")["fields"] == \
        {"carId": msg}


def test_bad_input_many_query_params_400(http):
    q = "&".join("p%d=1" % i for i in range(65))
    assert_error(http.get("/api/cars?" + q), 400, "bad_request")


# ------------------------------------------------------------- SQL text

SQLISH = ["Robert'); DROP TABLE cars;--", "x' OR '1'='1", "\\'; --",
          "$1 $$ %s %n", "\u00e9\u4e2d\U0001F600"]


@pytest.mark.parametrize("text", SQLISH)
def test_bad_input_sql_metacharacters_round_trip(http, stack, text):
    r = http.post("/api/cars", json=car_body(manufacturer=text, model=text))
    assert r.status_code == 201, r.text
    car = r.json()
    assert car["manufacturer"] == text and car["model"] == text
    replicated(stack)
    got = http.get("/api/cars/%d" % car["id"]).json()
    assert got["manufacturer"] == text and got["model"] == text
    listed = http.get("/api/cars", params={"manufacturer": text,
                                           "model": text, "limit": 100})
    assert car["id"] in [c["id"] for c in listed.json()["data"]]
    assert stack.psql("SELECT to_regclass('cars') IS NOT NULL") == "t"


def test_bad_input_sql_metacharacters_in_id_404(http):
    r = http.get("/api/cars/1%20OR%201=1")
    assert_error(r, 404, "not_found")


# ------------------------------------------- query a route doesn't take
# docs/openapi.yaml: a query parameter a route doesn't take is 400
# validation_failed naming it, so is one given twice, and only the probes
# and the stream ignore what they don't take.  A write that ignored it
# would turn a client's ?dryRun=1 into a real one.

# The routes that read only what they take (router.h KEEL_QUERY_IGNORED;
# the stream is another app, libevent's).
IGNORE_QUERY = {("GET", "/health"), ("GET", "/health/live"),
                ("GET", "/routes"), ("GET", "/api/metrics"),
                ("GET", "/api/notifications/stream")}
# Only a student gets past their auth, to where the query is judged.
STUDENT_ONLY = {("POST", "/api/tests/{id:int}/attempts"),
                ("POST", "/api/attempts/{id:int}/submit")}
NOT_TAKEN = [("bogus=1", "bogus"), ("dryRun=1&dryRun=2", "dryRun")]


def test_bad_input_every_route_refuses_a_query_it_doesnt_take(stack, http):
    """Every route of every app (/routes) but the probes: a parameter it
    doesn't take, alone or repeated, is the 400 a list gives an unknown
    filter, counted by the api limiter like any 400.  No body and ids of
    nothing: the query is judged before anything else of the request."""
    admin = session_for(stack, http, "admin")[1]
    student = session_for(stack, http, "student")[1]
    routes = http.get("/routes").json()["data"]
    wrong, tried = [], 0
    for x in routes:
        route = (x["method"], x["path"])
        if route in IGNORE_QUERY:
            continue
        path = x["path"].replace("{id:int}", "999999999").replace(
            "{name:str}", "email")
        h = student if route in STUDENT_ONLY else admin
        for query, name in NOT_TAKEN:
            r = http.request(x["method"], path + "?" + query, headers=h)
            tried += 1
            got = r.json() if r.status_code == 400 else {}
            if (r.status_code != 400 or
                    got.get("error") != "validation_failed" or
                    got.get("fields") != {
                        name: "is not a known parameter"} or
                    '"api"' not in r.headers.get("RateLimit-Policy", "")):
                wrong.append((x["method"], path + "?" + query,
                              r.status_code, r.text[:200]))
    assert tried >= 100, routes
    assert wrong == [], wrong


def test_bad_input_post_with_a_query_it_doesnt_take_writes_nothing(http,
                                                                  stack):
    body = car_body()
    r = http.post("/api/cars?dryRun=1", json=body)
    assert assert_error(r, 400, "validation_failed")["fields"] == \
        {"dryRun": "is not a known parameter"}
    assert stack.psql("SELECT count(*) FROM cars WHERE license_plate = "
                      "'%s'" % body["licensePlate"]) == "0"


def test_bad_input_patch_with_a_query_it_doesnt_take_changes_nothing(
        http, stack):
    car = http.post("/api/cars", json=car_body()).json()
    r = http.patch("/api/cars/%d?force=true" % car["id"],
                   json={"model": "Changed"})
    assert assert_error(r, 400, "validation_failed")["fields"] == \
        {"force": "is not a known parameter"}
    assert stack.psql("SELECT model FROM cars WHERE id = %d" %
                      car["id"]) == "Probe"


def test_bad_input_delete_with_a_query_it_doesnt_take_deletes_nothing(
        http, stack, student):
    r = http.post("/api/flashcards", json={"front": "Q?", "back": "A"},
                  headers=student)
    assert r.status_code == 201, r.text
    card = r.json()["id"]
    r = http.delete("/api/flashcards/%d?bogus=1" % card, headers=student)
    assert assert_error(r, 400, "validation_failed")["fields"] == \
        {"bogus": "is not a known parameter"}
    assert stack.psql("SELECT count(*) FROM flashcards WHERE id = %d" %
                      card) == "1"


def test_bad_input_logout_with_a_query_it_doesnt_take_ends_nothing(
        http, student):
    r = http.post("/api/auth/logout?all=1&all=1", headers=student)
    assert assert_error(r, 400, "validation_failed")["fields"] == \
        {"all": "is not a known parameter"}
    assert http.get("/api/auth/me", headers=student).status_code == 200


# -------------------------------------------------------- nothing crashed
# Keep these two last: they judge everything above.

def test_bad_input_no_worker_crashed(http, stack, cars_workers):
    assert http.get("/api/cars?limit=1").status_code == 200
    assert stack.worker_pids("cars") == cars_workers


def test_bad_input_no_sanitizer_report(stack):
    for app in ("cars", "flashcards", "study-plans", "health", "routes"):
        log = stack.log(app)
        for needle in ("runtime error", "AddressSanitizer",
                       "LeakSanitizer", "UndefinedBehaviorSanitizer",
                       "SUMMARY:"):
            assert needle not in log, "%s.log: %s" % (app, needle)
