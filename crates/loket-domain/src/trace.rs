//! W3C Trace Context (`traceparent`), as the CloudEvents distributed-tracing extension
//! carries it: version `00`, a 16-byte trace id, an 8-byte parent span id and flags, in
//! lowercase hex. The gateway continues a publisher's trace: every hop (intake, each
//! delivery, each Kafka record) keeps the trace id and names its own span as the parent.

use std::fmt;

/// A parsed `traceparent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub flags: u8,
}

impl TraceParent {
    /// Reads a `traceparent` header value; `None` for anything but a valid version-00
    /// value with non-zero ids (the W3C rule: such a header is ignored, a new trace starts).
    pub fn parse(text: &str) -> Option<Self> {
        // Version 00 has one shape, `00-` 32 hex `-` 16 hex `-` 2 hex: checked by position
        // (every delivery reads one, and splitting on '-' cost more than the decoding).
        let b = text.as_bytes();
        if b.len() != 55 || !b.starts_with(b"00-") || b[35] != b'-' || b[52] != b'-' {
            return None;
        }
        let trace_id: [u8; 16] = hex_bytes(&b[3..35])?;
        let span_id: [u8; 8] = hex_bytes(&b[36..52])?;
        let [flags] = hex_bytes::<1>(&b[53..55])?;
        let valid = trace_id != [0; 16] && span_id != [0; 8];
        valid.then_some(TraceParent { trace_id, span_id, flags })
    }

    /// The same trace, continued by the span `span_id` (a hop of the gateway's).
    pub fn child(&self, span_id: [u8; 8]) -> Self {
        TraceParent { span_id, ..*self }
    }

    /// The trace id in lowercase hex.
    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }

    /// The span id in lowercase hex.
    pub fn span_id_hex(&self) -> String {
        hex(&self.span_id)
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Written into one buffer: every delivery prints one, and the formatter's
        // per-byte `{:02x}` cost more than the rest of building the delivery's trace.
        let mut text = *b"00-00000000000000000000000000000000-0000000000000000-00";
        let hex_to = |bytes: &[u8], out: &mut [u8]| hex::encode_to_slice(bytes, out).expect("twice the bytes");
        hex_to(&self.trace_id, &mut text[3..35]);
        hex_to(&self.span_id, &mut text[36..52]);
        hex_to(&[self.flags], &mut text[53..55]);
        f.write_str(std::str::from_utf8(&text).expect("hex is ASCII"))
    }
}

/// Whether a `tracestate` value is acceptable: at most 32 comma-separated `key=value`
/// members of printable ASCII, 512 characters in all (the W3C limits).
pub fn valid_tracestate(text: &str) -> bool {
    text.len() <= 512
        && text.split(',').count() <= 32
        && text.split(',').map(str::trim).filter(|m| !m.is_empty()).all(|m| {
            m.split_once('=').is_some_and(|(k, v)| !k.is_empty() && !v.is_empty())
                && m.bytes().all(|b| (0x20..0x7f).contains(&b))
        })
}

fn hex(bytes: &[u8]) -> String {
    let mut out = vec![0; 2 * bytes.len()];
    hex::encode_to_slice(bytes, &mut out).expect("twice the bytes");
    String::from_utf8(out).expect("hex is ASCII")
}

/// `N` bytes from exactly `2 * N` lowercase hex digits (W3C refuses uppercase).
fn hex_bytes<const N: usize>(text: &[u8]) -> Option<[u8; N]> {
    if text.len() != 2 * N || !text.iter().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b)) {
        return None;
    }
    let mut out = [0; N];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_and_prints_the_w3c_example() {
        let t = TraceParent::parse(EXAMPLE).unwrap();
        assert_eq!(t.to_string(), EXAMPLE);
        let child = t.child([1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(child.to_string(), "00-4bf92f3577b34da6a3ce929d0e0e4736-0102030405060708-01");
    }

    #[test]
    fn refuses_malformed_values() {
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7001",
            "00-4bf92f3577b34da6a3ce929d0e0e4736000f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bg-01",
            // 55 bytes with the dashes in place, one of them a two-byte character.
            "00-4bf92f3577b34da6a3ce929d0e0e47é-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad}");
        }
        assert!(valid_tracestate("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"));
        assert!(!valid_tracestate("novalue"));
    }
}
