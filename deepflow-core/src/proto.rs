//! The agent ↔ server protobuf schema (feature `proto`).
//!
//! Hand-written [prost](https://docs.rs/prost) messages that mirror
//! `deepflow-core/proto/deepflow/ingest/v1/ingest.proto` field for field (no `protoc` at build
//! time). An agent sends [`Batch`]es to the server's `deepflow.ingest.v1.Ingest/Send` gRPC method
//! ([`INGEST_SEND_PATH`]) and gets an [`Ack`] back once the rows are durably stored.
//!
//! The rows travel as an Arrow IPC stream inside [`Batch::payload`] (deepflow-store builds and
//! checks it: `deepflow_store::transport`), so this crate stays free of arrow.
//!
//! ```
//! use deepflow_core::proto::{Batch, Compression};
//! use prost::Message;
//!
//! let b = Batch {
//!     agent_id: "host-1".into(),
//!     session: 7,
//!     seq: 1,
//!     table: "l4_flow_log".into(),
//!     compression: Compression::Zstd as i32,
//!     payload: vec![1, 2, 3],
//!     row_count: 10,
//! };
//! let bytes = b.encode_to_vec();
//! assert_eq!(Batch::decode(bytes.as_slice()).unwrap(), b);
//! ```

/// The gRPC service name.
pub const INGEST_SERVICE: &str = "deepflow.ingest.v1.Ingest";
/// The gRPC path of `Ingest/Send`.
pub const INGEST_SEND_PATH: &str = "/deepflow.ingest.v1.Ingest/Send";
/// The default agent port of the server.
pub const DEFAULT_INGEST_PORT: u16 = 30033;

/// Rows of one table from one agent (`message Batch`).
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct Batch {
    /// Who sent it (the agent's `--agent-id`).
    #[prost(string, tag = "1")]
    pub agent_id: ::prost::alloc::string::String,
    /// One agent process run (random at start); with `seq` it identifies the batch.
    #[prost(uint64, tag = "2")]
    pub session: u64,
    /// Per-session sequence number, from 1.
    #[prost(uint64, tag = "3")]
    pub seq: u64,
    /// Destination table: `l4_flow_log`, `l7_flow_log`, `network` or `application`.
    #[prost(string, tag = "4")]
    pub table: ::prost::alloc::string::String,
    /// A [`Compression`] value: how the Arrow IPC bodies in `payload` are compressed.
    #[prost(enumeration = "Compression", tag = "5")]
    pub compression: i32,
    /// The rows as an Arrow IPC stream with the table's schema.
    #[prost(bytes = "vec", tag = "6")]
    pub payload: ::prost::alloc::vec::Vec<u8>,
    /// Rows in `payload` (checked by the server).
    #[prost(uint64, tag = "7")]
    pub row_count: u64,
}

/// Compression of the Arrow IPC record batch bodies (`enum Compression`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, ::prost::Enumeration)]
#[repr(i32)]
pub enum Compression {
    /// Uncompressed.
    None = 0,
    /// zstd (Arrow IPC `ZSTD` body compression).
    Zstd = 1,
    /// LZ4 frame (Arrow IPC `LZ4_FRAME` body compression).
    Lz4Frame = 2,
}

/// The server's answer to a [`Batch`], sent after its rows are durable (`message Ack`).
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct Ack {
    /// The acknowledged batch.
    #[prost(uint64, tag = "1")]
    pub seq: u64,
    /// Rows written by this request (0 for a duplicate).
    #[prost(uint64, tag = "2")]
    pub rows_written: u64,
    /// The batch had been written before and was not written again.
    #[prost(bool, tag = "3")]
    pub duplicate: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// The hand-written structs encode exactly as the .proto says (field numbers and wire types).
    #[test]
    fn wire_format_matches_the_proto_file() {
        let b = Batch {
            agent_id: "a".into(),
            session: 2,
            seq: 3,
            table: "t".into(),
            compression: Compression::Lz4Frame as i32,
            payload: vec![9],
            row_count: 5,
        };
        let want = [
            0x0a, 1, b'a', // 1: string
            0x10, 2, // 2: varint
            0x18, 3, // 3: varint
            0x22, 1, b't', // 4: string
            0x28, 2, // 5: enum
            0x32, 1, 9, // 6: bytes
            0x38, 5, // 7: varint
        ];
        assert_eq!(b.encode_to_vec(), want);
        let a = Ack { seq: 300, rows_written: 1, duplicate: true };
        assert_eq!(a.encode_to_vec(), [0x08, 0xac, 0x02, 0x10, 1, 0x18, 1]);
        assert_eq!(Ack::decode(&[0x08u8, 0xac, 0x02, 0x10, 1, 0x18, 1][..]).unwrap(), a);
        assert_eq!(Batch::decode(&want[..]).unwrap().compression(), Compression::Lz4Frame);
    }

    /// The .proto file is the one described here (service and package names).
    #[test]
    fn proto_file_names() {
        let src = include_str!("../proto/deepflow/ingest/v1/ingest.proto");
        assert!(src.contains("package deepflow.ingest.v1;"));
        assert!(src.contains("rpc Send(Batch) returns (Ack);"));
        assert_eq!(INGEST_SEND_PATH, format!("/{INGEST_SERVICE}/Send"));
    }
}
