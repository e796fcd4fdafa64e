# SPDX-License-Identifier: ISC
"""apicheck.py -- every response the end-to-end tests see, checked against
docs/openapi.yaml, so the reference can't drift from the code.

check(method, url, status, headers, body) finds the operation of
(method, path) by the document's path templates (`/api/cars/{id}`), takes
the response object of the exact status (else `default`), and raises
ContractError (an AssertionError: the test fails) when

  - the status is not documented for the operation and there is no default;
  - the answer has a body but the document describes none;
  - the document says JSON and the answer is not (Content-Type or syntax);
  - the JSON body does not validate against the response's schema.

A path that matches no documented path (a deliberate 404 test), or a
method its path doesn't document (405), must still be an error status
whose body is the document's Error schema; a CORS preflight's 204 on a
documented path (OPTIONS, with Access-Control-Allow-Origin and -Methods)
is documented once, in info.description.  HEAD is checked as GET,
status only; so are 204s and other empty bodies.  The test-only apps
(NOT_API) are not part of the API and are skipped.

The validator is jsonschema's Draft 4: OpenAPI 3.0's Schema Object is an
adapted subset of JSON Schema Wright-00, which Draft 4 reads the same way
(boolean exclusiveMinimum included).  `nullable` is rewritten into a type
list and
$refs resolved against the whole document (RefResolver: Debian 12 ships
jsonschema 4.10, which predates `referencing`).  The formats date-time
and date are checked by our own functions, so the result does not depend
on which optional packages jsonschema finds.
"""

import datetime
import json
import os
import re
import urllib.parse
import warnings

import jsonschema
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
DOC = os.path.join(ROOT, "docs", "openapi.yaml")

# Path prefixes that are not part of the API: the test-only apps of
# tests/e2e/apps.conf (keel-testapp, keel-limitapp), whose answers exist
# only to drive lib's machinery.  Nothing else may be skipped.
NOT_API = ("/_test", "/api/_limit")


class ContractError(AssertionError):
    """A response that disagrees with docs/openapi.yaml."""


# ---------------------------------------------------------------- formats

FORMATS = jsonschema.FormatChecker(formats=())
_DATE_TIME = re.compile(r"(\d{4}-\d{2}-\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d+)?"
                        r"(Z|[+-](\d{2}):(\d{2}))\Z")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}\Z")


@FORMATS.checks("date-time", raises=ValueError)
def _is_date_time(s):
    """RFC 3339 date-time (section 5.6) naming a real day and time."""
    if not isinstance(s, str):
        return True
    m = _DATE_TIME.match(s)
    if m is None:
        return False
    datetime.date.fromisoformat(m.group(1))
    hh, mm, ss = int(m.group(2)), int(m.group(3)), int(m.group(4))
    oh, om = int(m.group(7) or 0), int(m.group(8) or 0)
    return hh < 24 and mm < 60 and ss <= 60 and oh < 24 and om < 60


@FORMATS.checks("date", raises=ValueError)
def _is_date(s):
    """RFC 3339 full-date: YYYY-MM-DD, a day that exists."""
    if not isinstance(s, str):
        return True
    if not _DATE.match(s):
        return False
    datetime.date.fromisoformat(s)
    return True


# ----------------------------------------------------------------- schemas

def openapi_to_jsonschema(node):
    """A deep copy of node with OpenAPI 3.0's `nullable: true` turned into
    what a JSON Schema validator knows (a type list, null in the enum, or
    anyOf null where the schema has no type)."""
    if isinstance(node, list):
        return [openapi_to_jsonschema(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: openapi_to_jsonschema(v) for k, v in node.items()}
    if out.pop("nullable", False) is True:
        if "type" in out:
            t = out["type"]
            out["type"] = (t if isinstance(t, list) else [t]) + ["null"]
            if "enum" in out:
                out["enum"] = out["enum"] + [None]
        else:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


def _template_regex(template):
    """The regex of a path template: each {param} is one path segment."""
    parts = re.split(r"(\{[^}/]+\})", template)
    return re.compile("".join("[^/]+" if p.startswith("{") else re.escape(p)
                              for p in parts) + r"\Z")


def media_type(ctype):
    return (ctype or "").split(";")[0].strip().lower()


class Contract:
    """docs/openapi.yaml (or another document), ready to check responses."""

    def __init__(self, doc):
        self.raw = doc
        self.doc = openapi_to_jsonschema(doc)
        # Concrete paths before templated ones (OpenAPI 3.0 "Paths"):
        # fewer parameters first.
        self.paths = sorted(
            ((_template_regex(t), t, item)
             for t, item in self.doc.get("paths", {}).items()),
            key=lambda p: p[1].count("{"))
        with warnings.catch_warnings():
            # Newer jsonschema deprecates RefResolver for `referencing`;
            # Debian 12's 4.10 has only RefResolver.
            warnings.simplefilter("ignore", DeprecationWarning)
            self.resolver = jsonschema.RefResolver("", self.doc)
        self.error_schema = {"$ref": "#/components/schemas/Error"}

    @classmethod
    def load(cls, path=DOC):
        with open(path, encoding="utf-8") as f:
            return cls(yaml.safe_load(f))

    # --------------------------------------------------------- lookups

    def path_item(self, path):
        """(template, path item) for a request path, or (None, None)."""
        for rx, template, item in self.paths:
            if rx.match(path):
                return template, item
        return None, None

    def operation(self, method, path):
        """(template, operation) of method and path; operation is None
        when the path is documented without that method, both None when
        no documented path matches."""
        template, item = self.path_item(path)
        if item is None:
            return None, None
        m = method.lower()
        op = item.get(m)
        if op is None and m == "head":
            op = item.get("get")        # RFC 9110 §9.3.2: GET's answer
        return template, op

    def _deref(self, obj):
        """Follow $refs of a response object (components/responses)."""
        seen = 0
        while isinstance(obj, dict) and "$ref" in obj:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                _, obj = self.resolver.resolve(obj["$ref"])
            seen += 1
            if seen > 20:
                raise ContractError("$ref loop at %r" % obj)
        return obj

    def response(self, op, status):
        """The response object for status: exact, else default, else None."""
        responses = op.get("responses", {})
        r = responses.get(str(status), responses.get("default"))
        return None if r is None else self._deref(r)

    # ------------------------------------------------------- validation

    def validate(self, schema, value, where):
        """Raise ContractError when value breaks schema."""
        v = jsonschema.Draft4Validator(schema, resolver=self.resolver,
                                       format_checker=FORMATS)
        errors = sorted(v.iter_errors(value), key=lambda e: list(e.path))
        if errors:
            lines = ["%s: /%s: %s" % (where, "/".join(map(str, e.path)),
                                      e.message) for e in errors[:5]]
            if len(errors) > 5:
                lines.append("... and %d more" % (len(errors) - 5))
            raise ContractError("\n".join(lines)
                                + "\nbody: " + json.dumps(value)[:500])

    def check(self, method, url, status, headers, body):
        """Check one response (headers: a mapping, any case of names;
        body: the decoded bytes).  Returns what was checked ("skipped",
        "status", "media type" or "schema"); raises ContractError."""
        path = urllib.parse.urlsplit(url).path or "/"
        if any(path == p or path.startswith(p + "/") for p in NOT_API):
            return "skipped"
        ctype = media_type(_header(headers, "Content-Type"))
        where = "%s %s -> %d" % (method, _short(path), status)
        empty = method.upper() == "HEAD" or status == 204 or not body
        template, op = self.operation(method, path)
        if op is None and template and _is_preflight(method, status,
                                                     headers):
            # The CORS protocol's answer on every path of the API, one
            # bullet of info.description, not an operation of each path.
            if body:
                raise ContractError("%s: a preflight's 204 has a body"
                                    % where)
            return "preflight"
        if op is None:
            # No such route (404) or method (405): still an API error.
            if status < 400:
                raise ContractError("%s: %s is not documented" % (
                    where, "the method" if template else "the path"))
            if empty:
                return "status"
            schema = self.error_schema
        else:
            resp = self.response(op, status)
            if resp is None:
                raise ContractError(
                    "%s: status %d is not documented for %s %s (it lists "
                    "%s)" % (where, status, method.upper(), template,
                             ", ".join(op.get("responses", {}))))
            if empty:
                return "status"
            content = resp.get("content") or {}
            if not content:
                raise ContractError("%s: the answer has a body (%s), the "
                                    "document describes none: %r" % (
                                        where, ctype, body[:200]))
            if ctype not in content:
                raise ContractError("%s: Content-Type %r, the document "
                                    "says %s: %r" % (
                                        where, ctype, ", ".join(content),
                                        body[:200]))
            if not ctype.endswith("json"):
                return "media type"
            schema = content[ctype].get("schema")
            if schema is None:
                raise ContractError("%s: %s has no schema" % (where, ctype))
        if ctype != "application/json":
            raise ContractError("%s: Content-Type %r, not JSON: %r" % (
                where, ctype, body[:200]))
        try:
            value = json.loads(body)
        except ValueError as e:
            raise ContractError("%s: the body is not JSON (%s): %r" % (
                where, e, body[:200])) from None
        self.validate(schema, value, where)
        return "schema"


def _is_preflight(method, status, headers):
    """A CORS preflight's answer (KEEL_CORS_ORIGINS): OPTIONS, 204, with
    the origin and the methods allowed."""
    return (method.upper() == "OPTIONS" and status == 204
            and _header(headers, "Access-Control-Allow-Origin") is not None
            and _header(headers, "Access-Control-Allow-Methods")
            is not None)


def _short(s, n=120):
    return s if len(s) <= n else s[:n] + "...(%d more)" % (len(s) - n)


def _header(headers, name):
    if headers is None:
        return None
    for k, v in headers.items():
        if k.lower() == name.lower():
            return v
    return None


_CONTRACT = []


def contract():
    """docs/openapi.yaml, loaded once per test session."""
    if not _CONTRACT:
        _CONTRACT.append(Contract.load())
    return _CONTRACT[0]


def check(method, url, status, headers, body):
    """Check one response against docs/openapi.yaml (see Contract.check)."""
    return contract().check(method, url, status, headers, body)


def check_response(r, body=None):
    """Check a requests.Response (its body, or `body` when the caller
    read the raw stream itself)."""
    return check(r.request.method, r.request.url, r.status_code, r.headers,
                 r.content if body is None else body)
