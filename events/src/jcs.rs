//! RFC 8785 (JSON Canonicalization Scheme) written straight from a `serde_json::Value`. Every
//! appended event is encoded once for the hash chain, so the encoding is on the write path of
//! every command: a general serializer that buffers each object's entries and parses each key
//! back to sort it took a quarter of a bulk import's time. This one borrows the value, sorts each
//! object's keys by UTF-16 code units in place and writes numbers as ECMAScript does.

use serde_json::{Number, Value};

/// The RFC 8785 text of `v`.
pub(crate) fn to_vec(v: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write_value(&mut out, v);
    out
}

/// An object whose members are written in the order given (the caller's keys must already be
/// in RFC 8785 order): the envelope's fixed keys without building a map for them.
pub(crate) struct Object<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Object<'a> {
    pub(crate) fn new(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Object { out, first: true }
    }

    pub(crate) fn member(&mut self, key: &str, value: &Value) -> &mut Self {
        self.key(key);
        write_value(self.out, value);
        self
    }

    pub(crate) fn string(&mut self, key: &str, value: &str) -> &mut Self {
        self.key(key);
        write_str(self.out, value);
        self
    }

    pub(crate) fn number(&mut self, key: &str, value: i64) -> &mut Self {
        self.key(key);
        write_f64(self.out, value as f64);
        self
    }

    pub(crate) fn end(&mut self) {
        self.out.push(b'}');
    }

    fn key(&mut self, key: &str) {
        debug_assert!(
            key.is_ascii(),
            "fixed keys are ASCII, so byte order is RFC 8785's"
        );
        if !std::mem::take(&mut self.first) {
            self.out.push(b',');
        }
        write_str(self.out, key);
        self.out.push(b':');
    }
}

fn write_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_f64(out, as_f64(n)),
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_unstable_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            out.push(b'{');
            for (i, (key, value)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, key);
                out.push(b':');
                write_value(out, value);
            }
            out.push(b'}');
        }
    }
}

/// RFC 8785 treats every number as an IEEE 754 double (serde_json converts integers with `as`).
fn as_f64(n: &Number) -> f64 {
    n.as_f64().unwrap_or_default()
}

fn write_f64(out: &mut Vec<u8>, x: f64) {
    // A `Value` holds only finite numbers.
    out.extend_from_slice(ryu_js::Buffer::new().format_finite(x).as_bytes());
}

/// A string as ECMAScript's `JSON.stringify` writes it: `"` and `\` escaped, the controls below
/// U+0020 as their short escapes or `\u00xx`, everything else as is.
fn write_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\x08' => b"\\b",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            b'\x0c' => b"\\f",
            b'\r' => b"\\r",
            0..=0x1f => &[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(b >> 4) as usize],
                HEX[(b & 0xf) as usize],
            ],
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(escape);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Byte for byte what an independent implementation (serde_jcs) writes.
    #[test]
    fn writes_what_serde_jcs_writes() {
        let values = [
            json!(null),
            json!([true, false, null, "", [], {}]),
            json!({"cvssScore": 10.0, "tiny": 1e-7, "huge": 1e21, "half": 0.5, "big": 1e16,
                   "neg": -3, "zero": -0.0, "max": u64::MAX, "min": i64::MIN, "third": 1.0 / 3.0,
                   "\u{e000}": 1, "\u{1f600}": 2, "é": 3, "Z": 4, "a": 5, "": 6}),
            json!({"s": "quote \" backslash \\ slash / controls \u{0}\u{8}\t\n\u{b}\u{c}\r\u{1f}\u{7f} é 😀 \u{2028}"}),
            json!({"nested": {"b": [1, {"d": 2, "c": [3.5, "x"]}], "a": {"z": null, "y": true}}}),
            json!({"k\"ey\n": "v", "k\u{1}": 1}),
        ];
        for v in values {
            assert_eq!(
                String::from_utf8(to_vec(&v)).unwrap(),
                serde_jcs::to_string(&v).unwrap(),
                "{v}"
            );
        }
    }

    #[test]
    fn fixed_members_are_written_in_the_order_given() {
        let mut out = vec![];
        Object::new(&mut out)
            .member("a", &json!({"y": 1, "x": [2]}))
            .number("b", 1 << 53)
            .string("c", "\n")
            .end();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"a":{"x":[2],"y":1},"b":9007199254740992,"c":"\n"}"#
        );
    }
}
