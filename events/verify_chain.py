#!/usr/bin/env python3
"""Verify easm hash chains from NDJSON events (one envelope per line, as the API and exports
give them) on standard input, using only the documented canonical encoding (RFC 8785, JCS;
events hashed before it was named JCS differ from it only in how numbers are written, and verify
as Python's json.dumps writes them). Standard library only. Prints "ok <events>" or the first bad
line and exits 1."""
import hashlib
import json
import sys

KEYS = ["actor", "causationId", "chainSeq", "correlationId", "data", "eventId",
        "occurredAt", "orgId", "requestId", "schemaVersion", "streamId", "streamVersion", "type"]
GENESIS = "0" * 64


def jcs(v):
    """RFC 8785 (JCS) text of a parsed JSON value."""
    if v is None or isinstance(v, bool):
        return json.dumps(v)
    if isinstance(v, (int, float)):
        return es_number(float(v)) if isinstance(v, float) or abs(v) > 2 ** 53 else str(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ",".join(jcs(x) for x in v) + "]"
    keys = sorted(v, key=lambda k: k.encode("utf-16-be"))
    return "{" + ",".join(jcs(k) + ":" + jcs(v[k]) for k in keys) + "}"


def es_number(x):
    """A double as ECMAScript's Number.prototype.toString writes it (JCS section 3.2.2.3)."""
    if x == 0:
        return "0"
    sign, mantissa, _, exp = ("-" if x < 0 else ""), *repr(abs(x)).partition("e")
    whole, _, frac = mantissa.partition(".")
    digits, point = whole + frac, len(whole) + int(exp or 0)
    while digits.startswith("0"):
        digits, point = digits[1:], point - 1
    digits = digits.rstrip("0")
    k, n = len(digits), point
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * -n + digits
    e = n - 1
    return sign + digits[0] + ("." + digits[1:] if k > 1 else "") + "e" + ("+" if e > 0 else "-") + str(abs(e))


def hash_holds(prev, e):
    fields = {k: e[k] for k in KEYS}
    legacy = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return any(hashlib.sha256((prev + "\n" + text).encode()).hexdigest() == e["hash"]
               for text in (jcs(fields), legacy))


def main():
    heads = {}
    count = 0
    for n, line in enumerate(sys.stdin, 1):
        if not line.strip():
            continue
        e = json.loads(line)
        prev, seq = heads.get(e["orgId"], (GENESIS, 0))
        if e["chainSeq"] != seq + 1 or e["prevHash"] != prev or not hash_holds(prev, e):
            print(f"line {n}: chain broken at event {e.get('eventId')}")
            return 1
        heads[e["orgId"]] = (e["hash"], e["chainSeq"])
        count += 1
    print(f"ok {count}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
