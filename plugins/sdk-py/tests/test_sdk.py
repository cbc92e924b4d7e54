"""The SDK's own tests, natively (no host, no component): what its answers and messages
must be for a Python plugin to answer as a Rust one. The expected texts are what the
Rust SDK (serde_json 1.0.154, Rust's `{:?}` and `FromStr`) writes; the differential test
(tests/differential_py.rs) checks the whole plugins against the Rust ones in a host.

    python -m unittest discover -s plugins/sdk-py/tests
"""

import sys
import unittest
from pathlib import Path

sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tessera_sdk import Page, PageRequest, Params, QueryHandler, Refusal, dumps, format_float, parse, u64, usize  # noqa: E402
from tessera_sdk._rust import debug_str  # noqa: E402
from tessera_sdk.query import decode_cursor, encode_cursor, handle_text  # noqa: E402

CURSOR = {"as_of": "i64", "balance": "i64", "id": "string"}


class Json(unittest.TestCase):
    def test_floats_are_written_as_serde_json_writes_them(self):
        # Printed by serde_json 1.0.154 for the same f64 values.
        cases = {
            1.0: "1.0", 1e15: "1000000000000000.0", 1e16: "1e+16", 1e21: "1e+21",
            1e-5: "0.00001", 1.5e-5: "0.000015", 1e-6: "1e-6", 1.2345e-7: "1.2345e-7",
            0.000123: "0.000123", 18437736874454811000.0: "1.843773687445481e+19",
            -0.0: "-0.0", 5e-324: "5e-324", 1.7976931348623157e308: "1.7976931348623157e+308",
        }
        for value, text in cases.items():
            self.assertEqual(format_float(value), text, repr(value))

    def test_documents_are_compact_sorted_and_exact(self):
        text = '{"b": [18446744073709551615, 2.50, true, null], "a": "é\\n\\u001f"}'
        self.assertEqual(dumps(parse(text)), '{"a":"é\\n\\u001f","b":[18446744073709551615,2.5,true,null]}')
        with self.assertRaises(ValueError):
            parse("NaN")


class Messages(unittest.TestCase):
    def test_debug_strings_escape_as_rust(self):
        self.assertEqual(debug_str('a\u001bb"\\\n'), '"a\\u{1b}b\\"\\\\\\n"')
        self.assertEqual(debug_str("Zoë 🏦"), '"Zoë 🏦"')

    def test_params_parse_as_from_str(self):
        params = Params({"limit": "+2", "big": "4294967296", "n": 5, "f": 2.0, "o": {"b": 1, "a": [1]}})
        self.assertEqual(params.get("limit", usize), 2)
        self.assertEqual(params.get("n", u64), 5)
        self.assertEqual(params.text("o"), '{"a":[1],"b":1}')
        for name in ("big", "f"):
            with self.assertRaises(Refusal) as refused:
                params.get(name, usize)
            self.assertEqual(refused.exception.kind, "invalid")
        self.assertEqual(refused.exception.fields[0].message, '"2.0" is not a valid f')
        with self.assertRaises(Refusal) as refused:
            params.require("missing")
        self.assertEqual(refused.exception.fields[0].message, "is required")


class Paging(unittest.TestCase):
    def test_cursors_are_the_rust_handlers(self):
        # bank-queries (Rust) returns this cursor for as_of 5, balance 100, id "x".
        rust = "7b2261735f6f66223a352c2262616c616e6365223a3130302c226964223a2278227d"
        self.assertEqual(encode_cursor({"as_of": 5, "balance": 100, "id": "x"}), rust)
        self.assertEqual(decode_cursor(rust.upper(), CURSOR), {"as_of": 5, "balance": 100, "id": "x"})
        self.assertEqual(decode_cursor('[5, 100, "x"]'.encode().hex(), CURSOR), {"as_of": 5, "balance": 100, "id": "x"})

    def test_what_is_not_a_cursor_is_refused(self):
        for text in ['{"as_of":5}', '{"as_of":5,"balance":1,"id":"x","id":"y"}', '{"as_of":1.0,"balance":1,"id":"x"}',
                     '{"as_of":1,"balance":true,"id":"x"}', '{"as_of":1,"balance":1,"id":"\\ud800"}', '"x"', ""]:
            self.assertIsNone(decode_cursor(text.encode().hex(), CURSOR), text)
        for text in ["zz", "abc", "+", "a+", "é0"]:
            self.assertIsNone(decode_cursor(text, CURSOR), text)
        with self.assertRaises(Refusal) as refused:
            PageRequest.from_params(Params({"cursor": "zz"}), 50, 500, cursor=CURSOR)
        self.assertEqual(refused.exception.fields[0].message, "is not a cursor this query returned")
        with self.assertRaises(Refusal) as refused:
            PageRequest.from_params(Params({"limit": "0"}), 50, 500, cursor=CURSOR)
        self.assertEqual(refused.exception.fields[0].message, "must be between 1 and 500")

    def test_a_page_says_whether_more_follow(self):
        page = Page.from_rows([{"id": "a"}, {"id": "b"}, {"id": "c"}], 2, lambda last: {"id": last["id"]})
        self.assertEqual(page.items, [{"id": "a"}, {"id": "b"}])
        self.assertEqual(page.next_cursor, encode_cursor({"id": "b"}))
        self.assertIsNone(Page.from_rows([{"id": "a"}], 2, lambda last: {"id": last["id"]}).next_cursor)


class Handling(unittest.TestCase):
    def test_a_handler_answers_json_text_or_refuses(self):
        class Echo(QueryHandler):
            name = "echo"
            queries = ("echo",)

            def handle(self, name, params):
                if name != "echo":
                    raise Refusal.not_found(f"no query named {name}")
                return {"z": params.require("n", u64), "a": None}

        self.assertEqual(handle_text(Echo(), "echo", '{"n": "18446744073709551615"}'), '{"a":null,"z":18446744073709551615}')
        with self.assertRaises(Refusal) as refused:
            handle_text(Echo(), "echo", "[1]")
        self.assertEqual((refused.exception.kind, refused.exception.fields[0].field), ("invalid", "params"))
        with self.assertRaises(Refusal) as refused:
            handle_text(Echo(), "other", "{}")
        self.assertEqual(refused.exception.kind, "not-found")


if __name__ == "__main__":
    unittest.main()
