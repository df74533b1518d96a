"""The Frankfurter v1 compatible paths and /api/v1/convert of the real somrated.

The daemon scrapes a 24.kg page from the fixture server on 127.0.0.1 and an NBKR file;
older 24.kg days are written straight into its database. Requests are sent the way
Frankfurter clients send them, and every answer is checked against the schemas of
Frankfurter's own OpenAPI file (tests/data/integrations/frankfurter-v1.openapi.json) by a
small validator below. One relaxation, stated where it is made: the spec's currency code
enum lists the ECB's currencies only, so codes are checked as three capital letters (the
som, KGS, is the point of this API). Expected numbers are computed here independently, on
Python's Decimal, with Frankfurter's rounding rule.
"""

import datetime
import json
import os
import sqlite3
import sys
import tempfile
import unittest
from decimal import ROUND_HALF_EVEN, Decimal, localcontext

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from daemon import TEST_DATA, Daemon, wait_for  # noqa: E402
from fixture import FixtureServer  # noqa: E402
from test_daemon import latest_rates, seed_page  # noqa: E402

SPEC_PATH = os.path.join(TEST_DATA, "integrations", "frankfurter-v1.openapi.json")

# What a Frankfurter client sends besides the URL.
CLIENT_HEADERS = {"Accept": "application/json", "User-Agent": "frankfurter-client-test/1.0"}

# The scraped values (KGS per unit).
TODAY = {"USD": Decimal("87.45"), "EUR": Decimal("99.56"), "RUB": Decimal("1.10")}
# Older 24.kg values written into the database: days before the scrape -> changes at
# 12:00 UTC of that day. Days without an entry change nothing.
HISTORY = {
    5: {"USD": "86.00", "EUR": "98.00", "RUB": "1.05"},
    4: {"USD": "86.50"},
    2: {"USD": "87.00", "EUR": "98.50"},
}


# ---- reference arithmetic ---------------------------------------------------------------


def quote_round(value):
    """Frankfurter's rounding (lib/versions/v1/roundable.rb), half to even on the exact
    value: places by magnitude."""
    if value > 5000:
        places = 0
    elif value > 80:
        places = 2
    elif value > 20:
        places = 3
    elif value > 1:
        places = 4
    elif value > Decimal("0.0001"):
        places = 5
    else:
        places = 6
    return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)


def significant(value, digits=10):
    """value rounded half to even to digits significant digits."""
    return value.quantize(Decimal(1).scaleb(value.adjusted() - digits + 1),
                          rounding=ROUND_HALF_EVEN)


def exact(fn):
    """Runs fn with enough precision that no intermediate Decimal step rounds."""
    with localcontext() as ctx:
        ctx.prec = 80
        return fn()


def expected_rates(kgs, base="KGS", symbols=None, amount=Decimal(1)):
    """What somrated must answer for som values kgs (currency -> KGS per unit)."""
    codes = symbols if symbols is not None else sorted(list(kgs) + ["KGS"])
    out = {}
    for code in codes:
        if code == base:
            continue
        if code == "KGS":
            out[code] = kgs[base] if amount == 1 else exact(lambda: amount * kgs[base])
        elif base == "KGS":
            out[code] = exact(lambda: quote_round(amount / kgs[code]))
        else:
            out[code] = exact(lambda: quote_round(amount * kgs[base] / kgs[code]))
    return out


# ---- a validator for the subset of JSON Schema the spec uses ---------------------------


class SchemaError(AssertionError):
    pass


class Spec:
    """Frankfurter's OpenAPI file, with $ref resolution and the one stated relaxation."""

    CODE = "#/components/schemas/base"

    def __init__(self, path):
        with open(path) as f:
            self.doc = json.load(f)

    def resolve(self, ref):
        if ref == self.CODE:
            # The relaxation: any ISO-style code, not only the ECB's list.
            return {"type": "string", "pattern": "[A-Z]{3}"}
        node = self.doc
        for part in ref.lstrip("#/").split("/"):
            node = node[part]
        return node

    def response_schema(self, path, status="200"):
        response = self.doc["paths"][path]["get"]["responses"][status]
        if "$ref" in response:
            response = self.resolve(response["$ref"])
        return response["content"]["application/json"]["schema"]

    def check(self, value, schema, where="$"):
        """Raises SchemaError naming where value breaks schema."""
        if "$ref" in schema:
            self.check(value, self.resolve(schema["$ref"]), where)
        for sub in schema.get("allOf", []):
            self.check(value, sub, where)
        kind = schema.get("type")
        if kind == "object":
            if not isinstance(value, dict):
                raise SchemaError(f"{where}: expected an object, got {value!r}")
            for key in schema.get("required", []):
                if key not in value:
                    raise SchemaError(f"{where}: missing required {key!r}")
            if len(value) < schema.get("minProperties", 0):
                raise SchemaError(f"{where}: fewer than {schema['minProperties']} members")
            props = schema.get("properties", {})
            for key, member in value.items():
                if "propertyNames" in schema:
                    self.check(key, schema["propertyNames"], f"{where} key {key!r}")
                if key in props:
                    self.check(member, props[key], f"{where}.{key}")
                elif isinstance(schema.get("additionalProperties"), dict):
                    self.check(member, schema["additionalProperties"], f"{where}.{key}")
        elif kind == "number":
            if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
                raise SchemaError(f"{where}: expected a number, got {value!r}")
            if "exclusiveMinimum" in schema and not value > Decimal(str(schema["exclusiveMinimum"])):
                raise SchemaError(f"{where}: {value} is not above {schema['exclusiveMinimum']}")
            step = schema.get("multipleOf")
            if step is not None and Decimal(value) % Decimal(str(step)) != 0:
                raise SchemaError(f"{where}: {value} is not a multiple of {step}")
        elif kind == "string":
            if not isinstance(value, str):
                raise SchemaError(f"{where}: expected a string, got {value!r}")
            if len(value) < schema.get("minLength", 0):
                raise SchemaError(f"{where}: shorter than {schema['minLength']}")
            if "enum" in schema and value not in schema["enum"]:
                raise SchemaError(f"{where}: {value!r} is not one of the enum")
            if schema.get("pattern") == "[A-Z]{3}" and not (
                    len(value) == 3 and value.isascii() and value.isupper() and value.isalpha()):
                raise SchemaError(f"{where}: {value!r} is not a currency code")
            if schema.get("format") == "date":
                try:
                    parsed = datetime.date.fromisoformat(value)
                except ValueError:
                    raise SchemaError(f"{where}: {value!r} is not a date") from None
                if parsed.isoformat() != value:
                    raise SchemaError(f"{where}: {value!r} is not YYYY-MM-DD")


def decimal_json(text):
    """JSON with every number as an exact Decimal (ints stay ints)."""
    return json.loads(text, parse_float=Decimal)


class Frankfurter(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.spec = Spec(SPEC_PATH)
        cls.fixture = FixtureServer()
        cls.fixture.__enter__()
        cls.dir = tempfile.mkdtemp(prefix="somrated-fx-")
        cls.fixture.set_page("/english/", seed_page())
        # NBKR's file says the rates take effect tomorrow, as on any afternoon.
        cls.tomorrow = datetime.datetime.now(datetime.timezone.utc).date() + datetime.timedelta(1)
        nbkr = os.path.join(cls.dir, "daily.xml")
        with open(nbkr, "wb") as f:
            f.write(("<?xml version=\"1.0\" encoding=\"windows-1251\" ?>\n"
                     f"<CurrencyRates Name=\"Daily Exchange Rates\" "
                     f"Date=\"{cls.tomorrow.strftime('%d.%m.%Y')}\">\n"
                     "<Currency ISOCode=\"USD\"><Nominal>1</Nominal><Value>87,4500</Value></Currency>\n"
                     "<Currency ISOCode=\"EUR\"><Nominal>1</Nominal><Value>99,1234</Value></Currency>\n"
                     "<Currency ISOCode=\"KZT\"><Nominal>1</Nominal><Value>0,1686</Value></Currency>\n"
                     "</CurrencyRates>\n").encode("cp1251"))
        config = f"""
[storage]
path = "@DB@"

[[source]]
name = "24kg"
kind = "24kg"
url = "{cls.fixture.url('/english/')}"
interval = "1h"

[[source]]
name = "nbkr"
kind = "nbkr"
url = "file://{nbkr}"
interval = "1h"
"""
        cls.d = Daemon(config).start()
        try:
            wait_for(lambda: latest_rates(cls.d) == {"USD": 87.45, "EUR": 99.56, "RUB": 1.10},
                     what="the 24kg scrape")
            wait_for(lambda: latest_rates(cls.d, "nbkr"), what="the nbkr scrape")
            status, latest = cls.d.get_json("/v1/latest")
            assert status == 200, latest
            cls.last = datetime.date.fromisoformat(latest["date"])
            cls.seed_history()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            cls.d.stop()
        finally:
            cls.fixture.__exit__(None, None, None)

    @classmethod
    def seed_history(cls):
        """Writes HISTORY as 24kg change points (schema of sql/001_init.sql); the daemon
        only reads them."""
        db = sqlite3.connect(cls.d.db, timeout=30)
        try:
            (source_id,) = db.execute("SELECT id FROM source WHERE name = '24kg'").fetchone()
            rows = []
            for days_before, values in HISTORY.items():
                day = cls.last - datetime.timedelta(days_before)
                at = datetime.datetime(day.year, day.month, day.day, 12,
                                       tzinfo=datetime.timezone.utc)
                ms = int(at.timestamp() * 1000)
                for code, rate in values.items():
                    rows.append((source_id, code, ms, rate, float(rate), ms))
            with db:
                db.executemany("INSERT INTO rate_change (source_id, currency, since, rate, "
                               "rate_num, observed_at) VALUES (?, ?, ?, ?, ?, ?)", rows)
        finally:
            db.close()

    # -- helpers ----------------------------------------------------------------------

    @classmethod
    def kgs_on(cls, day):
        """The 24.kg som values in force at the end of day."""
        values = {}
        for days_before in sorted(HISTORY, reverse=True):
            if cls.last - datetime.timedelta(days_before) <= day:
                values.update({k: Decimal(v) for k, v in HISTORY[days_before].items()})
        if day >= cls.last:
            values.update(TODAY)
        return values

    def day(self, days_before):
        return self.last - datetime.timedelta(days_before)

    def get(self, path, headers=None):
        r = self.d.get(path, headers={**CLIENT_HEADERS, **(headers or {})})
        return r

    def ok(self, path, schema_path):
        """A 200 JSON answer to path, checked against the spec's schema for schema_path."""
        r = self.get(path)
        self.assertEqual(r.status, 200, f"{path}: {r.text}")
        self.assertEqual(r.headers["Content-Type"], "application/json; charset=utf-8")
        self.assertEqual(r.headers["Access-Control-Allow-Origin"], "*")
        body = decimal_json(r.text)
        self.spec.check(body, self.spec.response_schema(schema_path))
        return body

    def error(self, path, status, message):
        """A Frankfurter error answer: status and {"message": message}."""
        r = self.get(path)
        self.assertEqual(r.status, status, f"{path}: {r.text}")
        self.assertEqual(r.headers["Content-Type"], "application/json; charset=utf-8")
        body = r.json()
        if status == 404:
            self.spec.check(body, self.spec.response_schema("/latest", "404"))
        self.assertEqual(set(body), {"message"}, body)
        self.assertTrue(body["message"].startswith(message), body)

    def assert_exact(self, got, want):
        """Same numbers with the same digits (87.50 is not 87.5)."""
        self.assertEqual({k: str(v) for k, v in got.items()},
                         {k: str(v) for k, v in want.items()})

    # -- tests ------------------------------------------------------------------------

    def test_latest_with_the_som_as_base(self):
        body = self.ok("/v1/latest", "/latest")
        self.assertEqual(body["base"], "KGS")
        self.assertEqual(body["amount"], Decimal("1.0"))
        self.assertEqual(body["date"], self.last.isoformat())
        self.assert_exact(body["rates"], expected_rates(TODAY))
        # 1 / 87.45 = 0.011435...: what one som buys, in Frankfurter's direction.
        self.assertEqual(str(body["rates"]["USD"]), "0.01144")

    def test_cross_rates_and_amounts(self):
        cases = [
            ("?base=USD", "USD", None, Decimal(1)),
            ("?base=USD&symbols=EUR", "USD", ["EUR"], Decimal(1)),
            ("?from=EUR&to=USD,RUB,KGS", "EUR", ["USD", "RUB", "KGS"], Decimal(1)),
            ("?from=usd&to=eur,kgs&amount=100", "USD", ["EUR", "KGS"], Decimal(100)),
            ("?amount=2500&symbols=USD,EUR", "KGS", ["USD", "EUR"], Decimal(2500)),
            ("?base=RUB&symbols=USD&amount=12.5", "RUB", ["USD"], Decimal("12.5")),
        ]
        for query, base, symbols, amount in cases:
            with self.subTest(query=query):
                body = self.ok(f"/v1/latest{query}", "/latest")
                self.assertEqual(body["base"], base)
                self.assertEqual(Decimal(body["amount"]), amount)
                self.assert_exact(body["rates"], expected_rates(TODAY, base, symbols, amount))
        # The som keeps the published digits; 100 × 87.45 is exact.
        r = self.get("/v1/latest?from=USD&to=KGS&amount=100")
        self.assertIn('"KGS":8745.00', r.text)
        self.assertIn('"KGS":87.45', self.get("/v1/latest?from=USD&to=KGS").text)

    def test_single_dates(self):
        for days_before in (5, 4, 3, 2, 1, 0):
            day = self.day(days_before)
            with self.subTest(day=day):
                body = self.ok(f"/v1/{day.isoformat()}?base=USD", "/{date}")
                self.assertEqual(body["date"], day.isoformat())
                self.assert_exact(body["rates"], expected_rates(self.kgs_on(day), "USD"))
        # Before any data: not found; after the newest: the newest, with its date.
        self.error(f"/v1/{self.day(6).isoformat()}", 404, "not found")
        body = self.ok("/v1/2999-12-31?symbols=USD", "/{date}")
        self.assertEqual(body["date"], self.last.isoformat())

    def test_ranges(self):
        start, end = self.day(5), self.last
        body = self.ok(f"/v1/{start.isoformat()}..{end.isoformat()}?base=USD&symbols=KGS,EUR",
                       "/{start_date}..{end_date}")
        self.assertEqual(body["base"], "USD")
        self.assertEqual(body["start_date"], start.isoformat())
        self.assertEqual(body["end_date"], end.isoformat())
        days = [self.day(n).isoformat() for n in range(5, -1, -1)]
        self.assertEqual(list(body["rates"]), days)
        for n in range(5, -1, -1):
            day = self.day(n)
            self.assert_exact(body["rates"][day.isoformat()],
                              expected_rates(self.kgs_on(day), "USD", ["KGS", "EUR"]))
        # The range starts at the first day with data.
        body = self.ok(f"/v1/2000-01-01..{self.day(4).isoformat()}?symbols=USD",
                       "/{start_date}..{end_date}")
        self.assertEqual(list(body["rates"]), [self.day(5).isoformat(), self.day(4).isoformat()])

    def test_open_ended_range(self):
        start = self.day(3).isoformat()
        open_ended = self.ok(f"/v1/{start}..?from=EUR&amount=10", "/{start_date}..")
        closed = self.ok(f"/v1/{start}..{self.last.isoformat()}?from=EUR&amount=10",
                         "/{start_date}..{end_date}")
        self.assertEqual(open_ended, closed)
        self.assertEqual(open_ended["end_date"], self.last.isoformat())
        self.assertEqual(len(open_ended["rates"]), 4)

    def test_currencies(self):
        body = self.ok("/v1/currencies", "/currencies")
        self.assertEqual(body, {"EUR": "Euro", "KGS": "Kyrgyzstani Som", "RUB": "Russian Ruble",
                                "USD": "US Dollar"})
        body = self.ok("/v1/currencies?source=nbkr", "/currencies")
        self.assertEqual(list(body), ["EUR", "KGS", "KZT", "USD"])

    def test_a_source_that_sets_rates_a_day_ahead(self):
        body = self.ok("/v1/latest?source=nbkr&base=USD", "/latest")
        self.assertEqual(body["date"], self.tomorrow.isoformat())
        nbkr = {"USD": Decimal("87.4500"), "EUR": Decimal("99.1234"), "KZT": Decimal("0.1686")}
        self.assert_exact(body["rates"], expected_rates(nbkr, "USD"))
        body = self.ok(f"/v1/{self.tomorrow.isoformat()}?source=nbkr&from=KZT&to=KGS", "/{date}")
        self.assertEqual(str(body["rates"]["KGS"]), "0.1686")

    def test_errors_in_frankfurters_shape(self):
        self.error("/v1/2024-02-30", 422, "invalid date")
        self.error(f"/v1/{self.day(2).isoformat()}..2024-13-01", 422, "invalid date")
        self.error("/v1/not-a-date", 404, "not found")
        self.error("/v1/latest?symbols=XYZ", 404, "not found")
        self.error("/v1/latest?base=XYZ", 404, "not found")
        self.error("/v1/latest?from=USD&to=USD", 422, "bad currency pair")
        self.error("/v1/latest?amount=0", 422, "invalid amount")
        self.error("/v1/latest?amount=ten", 422, "invalid amount")
        self.error(f"/v1/{(self.last + datetime.timedelta(1)).isoformat()}..", 404, "not found")
        self.error("/v1/latest?source=ecb", 404, "source:")

    def test_caching_and_pretty(self):
        r = self.get("/v1/latest?symbols=USD")
        etag = r.headers["ETag"]
        self.assertTrue(etag)
        again = self.get("/v1/latest?symbols=USD", headers={"If-None-Match": etag})
        self.assertEqual(again.status, 304)
        pretty = self.get("/v1/latest?symbols=USD&pretty")
        self.assertIn("\n  ", pretty.text)
        self.assertEqual(decimal_json(pretty.text), decimal_json(r.text))
        head = self.d.request("/v1/latest", method="HEAD")
        self.assertEqual(head.status, 200)
        self.assertEqual(head.body, b"")

    def test_convert(self):
        r = self.get("/api/v1/convert?from=USD&to=EUR&amount=100")
        self.assertEqual(r.status, 200, r.text)
        body = decimal_json(r.text)
        usd, eur = TODAY["USD"], TODAY["EUR"]
        self.assertEqual(set(body), {"from", "to", "amount", "rate", "result", "date", "source",
                                     "kgs_rates"})
        self.assertEqual((body["from"], body["to"], body["amount"]), ("USD", "EUR", 100))
        self.assertEqual(str(body["rate"]), str(exact(lambda: significant(usd / eur))))
        self.assertEqual(str(body["result"]), str(exact(lambda: significant(100 * usd / eur))))
        self.assertEqual(body["date"], self.last.isoformat())
        self.assertEqual(body["source"], "24kg")
        self.assert_exact(body["kgs_rates"], {"USD": usd, "EUR": eur})

        day = self.day(4)
        body = decimal_json(self.get(f"/api/v1/convert?from=USD&to=KGS&amount=3&date={day}").text)
        self.assertEqual(str(body["result"]), "259.50")  # 3 × 86.50, exact
        self.assertEqual(body["date"], day.isoformat())

        r = self.get("/api/v1/convert?from=USD&to=XYZ")
        self.assertEqual(r.status, 404)
        self.assertEqual(r.json()["error"]["code"], "unknown_currency")


if __name__ == "__main__":
    unittest.main()
