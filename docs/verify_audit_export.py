#!/usr/bin/env python3
"""Verify an easm audit export without easm: python3 verify_audit_export.py FILE [PUBLIC_KEY].

Needs the `cryptography` package for Ed25519. Prints {"valid": true, ...} or
{"valid": false, "line": N, "reason": ...} and exits 1 when the file was edited.
The algorithm is the one in the README ("Verifiable export"); easm's own `easm audit verify`
does the same.
"""
import base64
import hashlib
import json
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


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


def legacy(obj):
    """How events were hashed before the encoding was named JCS: only numbers differ."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def verify(lines, trusted_key=None):
    hashes, first_prev, last = [], None, None  # last: (chainSeq, hash, orgId)
    n = 0
    for n, text in enumerate(lines, start=1):
        try:
            item = json.loads(text)
        except ValueError:
            return n, "not a JSON object"
        if not isinstance(item, dict):
            return n, "not a JSON object"
        if "digest" in item:
            return check_digest(n, item, hashes, first_prev, last, trusted_key)
        try:
            prev, digest, seq, org = item["prevHash"], item["hash"], item["chainSeq"], item["orgId"]
        except KeyError:
            return n, "not an exported event"
        fields = {k: v for k, v in item.items() if k not in ("position", "prevHash", "hash")}
        computed = [hashlib.sha256((prev + "\n" + text(fields)).encode("utf-8")).hexdigest()
                    for text in (jcs, legacy)]
        if digest not in computed:
            return n, "modified: the event does not hash to its hash"
        if last is None:
            first_prev = prev
        else:
            last_seq, last_hash, last_org = last
            if org != last_org:
                return n, "inserted: an event of another organization"
            if seq <= last_seq:
                return n, f"inserted or reordered: chainSeq {seq} after {last_seq}"
            if seq > last_seq + 1:
                return n, f"removed: chainSeq {last_seq + 1} to {seq - 1} are missing before this line"
            if prev != last_hash:
                return n, "inserted or modified: prevHash is not the previous line's hash"
        hashes.append(digest)
        last = (seq, digest, org)
    return n + 1, "no digest line: the export is truncated"


def check_digest(n, d, hashes, first_prev, last, trusted_key):
    if d.get("digest") != "easm-audit-export/v1" or d.get("algorithm") != "ed25519":
        return n, "digest: not an easm-audit-export/v1 ed25519 digest"
    try:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(trusted_key or d.get("publicKey", "")))
        unsigned = {k: v for k, v in d.items() if k != "signature"}
        key.verify(base64.b64decode(d.get("signature", "")), jcs(unsigned).encode("utf-8"))
    except (ValueError, InvalidSignature):
        return n, "digest: the signature does not match"
    if first_prev is not None and first_prev != d.get("firstPrevHash"):
        return 1, "removed: the first events of the export are missing"
    last_hash = last[1] if last else d.get("firstPrevHash")
    if d.get("lastHash") != last_hash:
        if d.get("lastHash") in hashes:
            return hashes.index(d["lastHash"]) + 2, "inserted: the digest's last event is the line before"
        return n, "removed: the last events of the export are missing"
    if d.get("count") != len(hashes):
        return n, "the digest's count differs from the events in the file"
    if last and last[2] != d.get("orgId"):
        return n, "digest: another organization's digest"
    return None


def main():
    path = sys.argv[1]
    trusted = sys.argv[2] if len(sys.argv) > 2 else None
    with open(path, encoding="utf-8") as f:
        lines = [line.rstrip("\n") for line in f]
    failure = verify(lines, trusted)
    if failure:
        print(json.dumps({"valid": False, "line": failure[0], "reason": failure[1]}))
        sys.exit(1)
    print(json.dumps({"valid": True, "events": len(lines) - 1}))


if __name__ == "__main__":
    main()
