//! gRPC and gRPC-Web framing by hand: a message is a 5-byte prefix (a flag whose low bit says
//! "compressed with `grpc-encoding`", then a big-endian `u32` length) and its bytes. A unary
//! call carries one message each way; the outcome travels in `grpc-status` and
//! `grpc-message` trailers (HTTP/2) or, in gRPC-Web, in a last frame flagged `0x80` that holds
//! the trailers as HTTP header lines.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use http_body::Frame;

use crate::error::{Error, Result};

/// The prefix before each message.
pub const PREFIX_BYTES: usize = 5;
/// Flag bit: the message is compressed with the call's `grpc-encoding`.
const COMPRESSED: u8 = 0x01;
/// Flag bit (gRPC-Web): the frame holds trailers, not a message.
const TRAILERS: u8 = 0x80;

/// The one message of a unary request: its bytes and whether they are compressed.
#[derive(Debug)]
pub struct Unframed {
    pub message: Bytes,
    pub compressed: bool,
}

/// Takes the single length-prefixed message of a unary request from its body. The length is
/// checked against `max_bytes` before anything is trusted.
pub fn unframe(body: Bytes, max_bytes: usize) -> Result<Unframed> {
    if body.len() < PREFIX_BYTES {
        return Err(Error::BadRequest(format!(
            "gRPC request body is {} bytes, shorter than one message's 5-byte prefix",
            body.len()
        )));
    }
    let flag = body[0];
    if flag & !COMPRESSED != 0 {
        return Err(Error::BadRequest(format!(
            "gRPC message flag is {flag:#04x}; only 0 and 1 (compressed) are defined"
        )));
    }
    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    if len > max_bytes {
        return Err(Error::TooLarge {
            what: "gRPC request message",
            bytes: len,
            limit: max_bytes,
        });
    }
    let available = body.len() - PREFIX_BYTES;
    if available < len {
        return Err(Error::BadRequest(format!(
            "gRPC message prefix says {len} bytes, the body holds {available}"
        )));
    }
    if available > len {
        return Err(Error::BadRequest(format!(
            "a unary gRPC call carries one message; {} bytes follow the first",
            available - len
        )));
    }
    Ok(Unframed {
        message: body.slice(PREFIX_BYTES..),
        compressed: flag & COMPRESSED != 0,
    })
}

/// One uncompressed message with its prefix.
pub fn frame(message: &[u8]) -> Bytes {
    frame_with_flag(0, message)
}

fn frame_with_flag(flag: u8, payload: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(PREFIX_BYTES + payload.len());
    out.push(flag);
    // Responses are far below 4 GiB: the engine's memory limit bounds what a query returns.
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    out.into()
}

/// The trailers of a call: `grpc-status` and, for errors, `grpc-message`.
pub fn status_trailers(status: u8, message: Option<&str>) -> HeaderMap {
    let mut trailers = HeaderMap::new();
    trailers.insert(
        HeaderName::from_static("grpc-status"),
        HeaderValue::from(u16::from(status)),
    );
    if let Some(message) = message {
        let encoded = percent_encode(message);
        if let Ok(value) = HeaderValue::from_str(&encoded) {
            trailers.insert(HeaderName::from_static("grpc-message"), value);
        }
    }
    trailers
}

/// gRPC-Web's trailer frame: the trailers as `name: value` lines.
pub fn trailers_frame(trailers: &HeaderMap) -> Bytes {
    let mut text = Vec::new();
    for (name, value) in trailers {
        text.extend_from_slice(name.as_str().as_bytes());
        text.extend_from_slice(b": ");
        text.extend_from_slice(value.as_bytes());
        text.extend_from_slice(b"\r\n");
    }
    frame_with_flag(TRAILERS, &text)
}

/// `grpc-message` is percent-encoded: every byte outside printable ASCII, and `%` itself.
pub fn percent_encode(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for b in message.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `grpc-timeout`: at most 8 digits and a unit, `H`, `M`, `S`, `m` (ms), `u` (µs) or `n` (ns).
pub fn parse_timeout(text: &str) -> Result<Duration> {
    let bad = || {
        Error::BadRequest(format!(
            "grpc-timeout {text:?} is not 1-8 digits and a unit"
        ))
    };
    if !text.is_ascii() {
        return Err(bad());
    }
    let (digits, unit) = text.split_at(text.len().saturating_sub(1));
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    Ok(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return Err(bad()),
    })
}

/// A response body that yields at most one data frame, then the trailers.
#[derive(Debug)]
pub struct TrailersBody {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl TrailersBody {
    pub fn new(data: Option<Bytes>, trailers: HeaderMap) -> Self {
        Self {
            data: data.filter(|d| !d.is_empty()),
            trailers: Some(trailers),
        }
    }
}

impl http_body::Body for TrailersBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if let Some(data) = this.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.trailers.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_bad_prefixes_are_named() {
        let framed = frame(b"hello");
        assert_eq!(&framed[..], b"\x00\x00\x00\x00\x05hello");
        let u = unframe(framed, 100).expect("one message");
        assert_eq!((&u.message[..], u.compressed), (&b"hello"[..], false));
        let compressed = unframe(Bytes::from_static(b"\x01\x00\x00\x00\x01x"), 100).expect("ok");
        assert!(compressed.compressed);
        let empty = unframe(Bytes::from_static(b"\x00\x00\x00\x00\x00"), 100).expect("empty");
        assert!(empty.message.is_empty());

        for (body, needle) in [
            (&b"\x00\x00"[..], "shorter than"),
            (b"\x02\x00\x00\x00\x00", "flag is 0x02"),
            (b"\x00\x00\x00\x00\x09abc", "says 9 bytes"),
            (b"\x00\x00\x00\x00\x01ab", "one message"),
            (b"\x00\x7f\xff\xff\xff", "the limit is 100"),
        ] {
            let e = unframe(Bytes::copy_from_slice(body), 100).expect_err("bad frame");
            assert!(e.to_string().contains(needle), "{e}");
        }
    }

    #[test]
    fn messages_are_percent_encoded_and_trailers_framed() {
        assert_eq!(percent_encode("a 100% é\n"), "a 100%25 %C3%A9%0A");
        let trailers = status_trailers(3, Some("bad: é"));
        assert_eq!(trailers["grpc-status"], "3");
        assert_eq!(trailers["grpc-message"], "bad: %C3%A9");
        let framed = trailers_frame(&status_trailers(0, None));
        assert_eq!(&framed[..], b"\x80\x00\x00\x00\x10grpc-status: 0\r\n");
    }

    #[test]
    fn timeouts() {
        assert_eq!(parse_timeout("5S").expect("s"), Duration::from_secs(5));
        assert_eq!(
            parse_timeout("250m").expect("ms"),
            Duration::from_millis(250)
        );
        assert_eq!(parse_timeout("1H").expect("h"), Duration::from_secs(3600));
        for bad in ["", "S", "123456789S", "5x", "-1S", "1.5S", "5é"] {
            assert!(parse_timeout(bad).is_err(), "{bad}");
        }
    }
}
