//! Parse error kinds shared by every parser.

/// Why a parser rejected its input. Every error is counted in
/// [`L7Counters`](crate::L7Counters); none is fatal to the flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// The bytes do not follow the protocol grammar.
    #[error("malformed message")]
    Malformed,
    /// A header block / record exceeds the configured buffer cap.
    #[error("message header larger than the buffer cap")]
    Oversize,
    /// A datagram (or length-prefixed frame) ended before the message did.
    #[error("message truncated")]
    Truncated,
    /// A field uses a value the parser does not support (e.g. unknown TLS version).
    #[error("unsupported value")]
    Unsupported,
}
