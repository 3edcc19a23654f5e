//! remote_write 1.0 wire format: the `prometheus.WriteRequest` protobuf
//! (by prost derive, no protoc: four small messages) in the snappy block
//! format.

use prost::Message;

#[derive(Clone, PartialEq, Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TimeSeries {
    /// Sorted by name, `__name__` first.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// In time order.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since the epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// The request body: protobuf, then snappy (block format, not framed).
pub fn encode(req: &WriteRequest) -> Result<Vec<u8>, snap::Error> {
    snap::raw::Encoder::new().compress_vec(&req.encode_to_vec())
}

/// Decodes a request body (for tests and the in-process receiver).
pub fn decode(body: &[u8]) -> Result<WriteRequest, String> {
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| format!("snappy: {e}"))?;
    WriteRequest::decode(raw.as_slice()).map_err(|e| format!("protobuf: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_matches_the_wire_layout() {
        let req = WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![Label {
                    name: "__name__".into(),
                    value: "x".into(),
                }],
                samples: vec![Sample {
                    value: 1.0,
                    timestamp: 2,
                }],
            }],
        };
        // Hand-assembled: field 1 (timeseries) { field 1 (label) { 1: "__name__", 2: "x" },
        // field 2 (sample) { 1: double 1.0, 2: varint 2 } }.
        let want: Vec<u8> = [
            vec![0x0a, 28, 0x0a, 13, 0x0a, 8],
            b"__name__".to_vec(),
            vec![0x12, 1, b'x', 0x12, 11, 0x09],
            1.0f64.to_le_bytes().to_vec(),
            vec![0x10, 2],
        ]
        .concat();
        assert_eq!(req.encode_to_vec(), want);
        let body = encode(&req).expect("snappy");
        assert_eq!(decode(&body).expect("decode"), req);
    }
}
