#!/usr/bin/env python3
"""Verify easm hash chains from NDJSON events (one envelope per line, as the API and exports
give them) on standard input, using only the documented canonical encoding. Prints
"ok <events>" or the first bad line and exits 1."""
import hashlib
import json
import sys

KEYS = ["actor", "causationId", "chainSeq", "correlationId", "data", "eventId",
        "occurredAt", "orgId", "requestId", "schemaVersion", "streamId", "streamVersion", "type"]
GENESIS = "0" * 64


def canonical(e):
    return json.dumps({k: e[k] for k in KEYS}, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()


def chain_hash(prev, e):
    return hashlib.sha256(prev.encode() + b"\n" + canonical(e)).hexdigest()


def main():
    heads = {}
    count = 0
    for n, line in enumerate(sys.stdin, 1):
        if not line.strip():
            continue
        e = json.loads(line)
        prev, seq = heads.get(e["orgId"], (GENESIS, 0))
        if e["chainSeq"] != seq + 1 or e["prevHash"] != prev or chain_hash(prev, e) != e["hash"]:
            print(f"line {n}: chain broken at event {e.get('eventId')}")
            return 1
        heads[e["orgId"]] = (e["hash"], e["chainSeq"])
        count += 1
    print(f"ok {count}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
