//! gRPC over HTTP/2: detection, field mapping and message framing (L7_FIELDS.md "gRPC").
//!
//! gRPC has no parser of its own: the HTTP/2 parser ([`super::http2`]) tags a stream as gRPC
//! when its `content-type` starts with `application/grpc` and uses the helpers here to fill
//! the row:
//! - `endpoint` = the full `:path`, `request_resource` = the service part
//!   ([`service_of_path`]);
//! - `response_code` = `grpc-status` (trailers, or a trailers-only response) when present,
//!   else `:status`; status by [`grpc_status`];
//! - `response_exception` = the percent-decoded `grpc-message` ([`percent_decode`]);
//! - request/response lengths = the sum of the gRPC message lengths, counted from the 5-byte
//!   message prefixes of the DATA stream ([`GrpcFramer`]), so streaming calls are measured
//!   too (one session per HTTP/2 stream).
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]

use deepflow_core::record::ResponseStatus;

/// True for `application/grpc`, `application/grpc+proto`, `application/grpc-web...`.
pub fn is_grpc_content_type(ct: &[u8]) -> bool {
    ct.len() >= 16 && ct.get(..16).is_some_and(|p| p.eq_ignore_ascii_case(b"application/grpc"))
}

/// `/pkg.Service/Method` → `pkg.Service`; `None` unless the path has exactly two `/` and
/// starts with one.
pub fn service_of_path(path: &str) -> Option<&str> {
    let rest = path.strip_prefix('/')?;
    let (service, method) = rest.split_once('/')?;
    if method.contains('/') || service.is_empty() {
        return None;
    }
    Some(service)
}

/// `/pkg.Service/Method` → `Method` (same rule as [`service_of_path`]).
pub fn method_of_path(path: &str) -> Option<&str> {
    let rest = path.strip_prefix('/')?;
    let (service, method) = rest.split_once('/')?;
    if method.contains('/') || service.is_empty() {
        return None;
    }
    Some(method)
}

/// Response status of a `grpc-status` code: 0 → ok; 1 (CANCELLED), 3 (INVALID_ARGUMENT),
/// 5 (NOT_FOUND), 6 (ALREADY_EXISTS), 7 (PERMISSION_DENIED), 9 (FAILED_PRECONDITION),
/// 11 (OUT_OF_RANGE), 16 (UNAUTHENTICATED) → client_error; others → server_error.
pub fn grpc_status(code: u32) -> ResponseStatus {
    match code {
        0 => ResponseStatus::Ok,
        1 | 3 | 5 | 6 | 7 | 9 | 11 | 16 => ResponseStatus::ClientError,
        _ => ResponseStatus::ServerError,
    }
}

/// Canonical name of a gRPC status code.
pub fn grpc_status_name(code: u32) -> &'static str {
    match code {
        0 => "OK",
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => "UNKNOWN_CODE",
    }
}

/// Decodes the `%XX` escapes of a `grpc-message` value (invalid escapes are kept as is).
pub fn percent_decode(v: &[u8]) -> String {
    fn hex(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while let Some(&b) = v.get(i) {
        if b == b'%'
            && let (Some(h), Some(l)) = (v.get(i + 1).copied().and_then(hex), v.get(i + 2).copied().and_then(hex))
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(b);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Counts gRPC messages in a DATA byte stream split at arbitrary points: each message is a
/// 1-byte compressed flag, a 4-byte big-endian length, then the message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GrpcFramer {
    /// Prefix bytes collected so far (0..5).
    prefix: [u8; 5],
    prefix_len: u8,
    /// Message bytes still to skip.
    body_left: u64,
    /// Complete message prefixes seen.
    pub messages: u32,
    /// Sum of the declared message lengths (without the 5-byte prefixes).
    pub message_bytes: u64,
    /// Messages with the compressed flag set.
    pub compressed: u32,
    /// A prefix with a compressed flag other than 0/1 was seen: framing is not gRPC (or we
    /// joined mid-message); counting stops.
    pub invalid: bool,
}

impl GrpcFramer {
    /// Feeds DATA payload bytes.
    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() && !self.invalid {
            if self.body_left > 0 {
                let n = usize::try_from(self.body_left).unwrap_or(usize::MAX).min(data.len());
                self.body_left -= n as u64;
                data = data.get(n..).unwrap_or_default();
                continue;
            }
            let need = 5 - usize::from(self.prefix_len);
            let take = need.min(data.len());
            if let (Some(dst), Some(src)) = (self.prefix.get_mut(usize::from(self.prefix_len)..), data.get(..take))
                && let Some(dst) = dst.get_mut(..take)
            {
                dst.copy_from_slice(src);
            }
            self.prefix_len += take as u8;
            data = data.get(take..).unwrap_or_default();
            if self.prefix_len == 5 {
                self.prefix_len = 0;
                let [flag, a, b, c, d] = self.prefix;
                if flag > 1 {
                    self.invalid = true;
                    return;
                }
                let len = u32::from_be_bytes([a, b, c, d]);
                self.messages += 1;
                self.compressed += u32::from(flag);
                self.message_bytes += u64::from(len);
                self.body_left = u64::from(len);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_types() {
        assert_eq!(service_of_path("/helloworld.Greeter/SayHello"), Some("helloworld.Greeter"));
        assert_eq!(method_of_path("/helloworld.Greeter/SayHello"), Some("SayHello"));
        assert_eq!(service_of_path("/a/b/c"), None);
        assert_eq!(service_of_path("a/b"), None);
        assert_eq!(service_of_path("/ab"), None);
        assert!(is_grpc_content_type(b"application/grpc"));
        assert!(is_grpc_content_type(b"application/grpc+proto"));
        assert!(!is_grpc_content_type(b"application/json"));
        assert!(!is_grpc_content_type(b"application/grp"));
    }

    #[test]
    fn status_mapping() {
        assert_eq!(grpc_status(0), ResponseStatus::Ok);
        for c in [1, 3, 5, 6, 7, 9, 11, 16] {
            assert_eq!(grpc_status(c), ResponseStatus::ClientError);
        }
        for c in [2, 4, 8, 10, 12, 13, 14, 15, 17] {
            assert_eq!(grpc_status(c), ResponseStatus::ServerError);
        }
        assert_eq!(grpc_status_name(12), "UNIMPLEMENTED");
    }

    #[test]
    fn percent() {
        assert_eq!(percent_decode(b"no%20such%3a method"), "no such: method");
        assert_eq!(percent_decode(b"bad%zz%4"), "bad%zz%4");
    }

    #[test]
    fn framer_split_everywhere() {
        let mut stream = Vec::new();
        for (i, len) in [0u32, 3, 300, 1].iter().enumerate() {
            stream.push((i % 2) as u8);
            stream.extend_from_slice(&len.to_be_bytes());
            stream.extend(std::iter::repeat_n(0xab, *len as usize));
        }
        for cut in 0..=stream.len() {
            for cut2 in [cut, (cut + 7).min(stream.len())] {
                let mut f = GrpcFramer::default();
                f.feed(&stream[..cut]);
                f.feed(&stream[cut..cut2]);
                f.feed(&stream[cut2..]);
                assert_eq!((f.messages, f.message_bytes, f.compressed, f.invalid), (4, 304, 2, false));
            }
        }
        let mut f = GrpcFramer::default();
        f.feed(&[7, 0, 0, 0, 1, 0]);
        assert!(f.invalid);
    }
}
