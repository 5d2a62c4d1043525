"""What Schemathesis needs to speak to easm beyond its OpenAPI document: generators for the PEM
formats the document names (no pattern says that PEM decodes) and for list cursors, and the
NDJSON body of scan result imports. Loaded with SCHEMATHESIS_HOOKS=schemathesis_hooks."""
import datetime
import json

import schemathesis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import strategies as st


def _certificate_and_key():
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "easm schemathesis")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return cert_pem, key_pem


CERTIFICATE, KEY = _certificate_and_key()
schemathesis.openapi.format("x-pem-certificates", st.just(CERTIFICATE))
schemathesis.openapi.format("x-pem-private-key", st.just(KEY))
# A cursor of the findings list (`after`): opaque, the hex of `sort:keys:id`.
schemathesis.openapi.format(
    "x-easm-cursor",
    st.sampled_from(["lastDetected:0:f", "severity:4:0:f"]).map(lambda c: c.encode().hex()),
)


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx, value):
    """One JSON value per line; a list is its items."""
    items = value if isinstance(value, list) else [value]
    return "".join(json.dumps(item) + "\n" for item in items).encode()
