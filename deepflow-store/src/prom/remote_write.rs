//! Prometheus remote_write 1.0 payloads: snappy (block format) compressed protobuf
//! `prometheus.WriteRequest`. The prost messages are written by hand from Prometheus's
//! `prompb/remote.proto` and `types.proto` (only the fields remote_write 1.0 senders fill:
//! exemplars, histograms and metadata are skipped by the decoder).

use super::Sample;

/// `prometheus.WriteRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    /// Series with their samples.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// `prometheus.TimeSeries`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    /// Labels, including `__name__`.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// Samples.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<PbSample>,
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    /// Label name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Label value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `prometheus.Sample`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PbSample {
    /// Value.
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since the epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// Why a payload was refused.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not snappy block data, or it would decompress past the limit.
    #[error("snappy: {0}")]
    Snappy(String),
    /// Not a `WriteRequest`.
    #[error("protobuf: {0}")]
    Protobuf(#[from] prost::DecodeError),
    /// A series without a metric name.
    #[error("series without __name__")]
    NoName,
}

/// Largest decompressed payload accepted (Prometheus sends ≤ ~2 MiB per request by default).
pub const MAX_DECOMPRESSED: usize = 64 << 20;

/// Decodes a remote_write body (snappy + protobuf) into samples. Series without `__name__` are
/// an error (Prometheus never sends them); empty label values are dropped as in Prometheus.
pub fn decode(body: &[u8]) -> Result<Vec<Sample>, DecodeError> {
    let len = snap::raw::decompress_len(body).map_err(|e| DecodeError::Snappy(e.to_string()))?;
    if len > MAX_DECOMPRESSED {
        return Err(DecodeError::Snappy(format!("decompressed size {len} over the {MAX_DECOMPRESSED} limit")));
    }
    let raw = snap::raw::Decoder::new().decompress_vec(body).map_err(|e| DecodeError::Snappy(e.to_string()))?;
    decode_uncompressed(&raw)
}

/// Decodes an uncompressed `WriteRequest`.
pub fn decode_uncompressed(raw: &[u8]) -> Result<Vec<Sample>, DecodeError> {
    let req: WriteRequest = prost::Message::decode(raw)?;
    let mut out = Vec::new();
    for ts in req.timeseries {
        let mut name = None;
        let mut labels = Vec::with_capacity(ts.labels.len());
        for l in ts.labels {
            if l.name == "__name__" {
                name = Some(l.value);
            } else if !l.value.is_empty() {
                labels.push((l.name, l.value));
            }
        }
        let name = name.ok_or(DecodeError::NoName)?;
        labels.sort();
        labels.dedup_by(|a, b| a.0 == b.0);
        for s in ts.samples {
            out.push(Sample { metric: name.clone(), labels: labels.clone(), time_ms: s.timestamp, value: s.value });
        }
    }
    Ok(out)
}

/// Encodes samples as a remote_write body (one series per sample; for tests and forwarding).
pub fn encode(samples: &[Sample]) -> Vec<u8> {
    let req = WriteRequest {
        timeseries: samples
            .iter()
            .map(|s| TimeSeries {
                labels: std::iter::once(Label { name: "__name__".into(), value: s.metric.clone() })
                    .chain(s.labels.iter().map(|(k, v)| Label { name: k.clone(), value: v.clone() }))
                    .collect(),
                samples: vec![PbSample { value: s.value, timestamp: s.time_ms }],
            })
            .collect(),
    };
    let raw = prost::Message::encode_to_vec(&req);
    snap::raw::Encoder::new().compress_vec(&raw).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_garbage() {
        let s = vec![Sample {
            metric: "m".into(),
            labels: vec![("a".into(), "1".into()), ("b".into(), "2".into())],
            time_ms: 5,
            value: 1.5,
        }];
        assert_eq!(decode(&encode(&s)).unwrap(), s);
        assert!(decode(b"not snappy at all").is_err());
        let bad = snap::raw::Encoder::new().compress_vec(&[0xff, 0xff, 0xff]).unwrap();
        assert!(matches!(decode(&bad), Err(DecodeError::Protobuf(_))));
        assert!(decode(&[]).is_err() || decode(&[]).unwrap().is_empty());
    }
}
