//! What the store must know about the format of the streams it keeps, and nothing more.
//!
//! The vault format is format-blind: a stream is bytes cut into chunks. But a backup must not
//! become a recovery point unless its stream is whole *in its format*, `verify` must say when
//! a stream no longer reads as what it was, and a damage report should name what a lost
//! byte range costs. The store asks those questions through [`StreamFormat`], which its
//! caller supplies (the engine supplies pg_dump's custom archive format,
//! `pgvault_core::postgres::archive::CustomArchive`). What a format records about a stream is
//! kept in the manifest as [`Recorded`] JSON that the store stores, compares and hands back,
//! but never reads.

use std::fmt;
use std::ops::Range;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

/// A stream format: how to watch one stream, and how to read what watching it recorded.
pub trait StreamFormat: Send + Sync {
    /// What a stream in this format is, for messages: "custom-format archive".
    fn name(&self) -> &'static str;

    /// A fresh observer for one stream.
    fn observer(&self) -> Box<dyn StreamObserver>;

    /// The named parts of a stream, from what its observer recorded: for damage reports and
    /// verification. `None` when the record is not one this format reads.
    fn layout(&self, recorded: &Recorded) -> Option<StreamLayout>;
}

/// Watches every byte of one stream, in order, on the thread that reads it.
pub trait StreamObserver: Send {
    fn observe(&mut self, bytes: &[u8]);

    /// The verdict on the whole stream: what to record in the manifest, or why the stream is
    /// not whole in its format (the error keeps its type, for the caller to downcast).
    fn finish(self: Box<Self>) -> Result<Recorded, ObserveError>;
}

/// Why a stream is not whole in its format.
pub type ObserveError = Box<dyn std::error::Error + Send + Sync>;

/// The parts of a stream a format names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamLayout {
    /// Bytes without which nothing of the stream can be read (an archive's header and table of
    /// contents).
    pub header: Range<u64>,
    /// Named parts and their bytes (a table's data); a name may repeat.
    pub parts: Vec<(String, Range<u64>)>,
    /// How many entries the format counts in the stream (an archive's table of contents).
    pub entries: usize,
}

/// JSON a stream format recorded (an object), kept in a manifest as it was written. Two records are equal
/// when their JSON values are (whatever the spacing or key order of the text), so a record
/// read from a format 1 manifest (pretty, inline) compares equal to the same one packed.
#[derive(Clone)]
pub struct Recorded(Box<RawValue>);

impl Recorded {
    /// Records `value` as JSON.
    pub fn of<T: Serialize>(value: &T) -> Result<Recorded, serde_json::Error> {
        Ok(Recorded(serde_json::value::to_raw_value(value)?))
    }

    /// Reads the record back as the type its format wrote.
    pub fn read<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.0.get())
    }

    /// The record's JSON text.
    pub fn json(&self) -> &str {
        self.0.get()
    }

    /// A record read back from a manifest: a JSON object, or an error.
    pub(crate) fn from_json(text: String) -> Result<Recorded, String> {
        if !text.trim_start().starts_with('{') {
            return Err("a recorded part is not a JSON object".into());
        }
        RawValue::from_string(text)
            .map(Recorded)
            .map_err(|e| e.to_string())
    }

    fn value(&self) -> Option<serde_json::Value> {
        serde_json::from_str(self.0.get()).ok()
    }
}

impl PartialEq for Recorded {
    fn eq(&self, other: &Recorded) -> bool {
        self.0.get() == other.0.get()
            || matches!((self.value(), other.value()), (Some(a), Some(b)) if a == b)
    }
}

impl fmt::Debug for Recorded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Recorded({} bytes of JSON)", self.0.get().len())
    }
}

impl Serialize for Recorded {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Recorded {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Recorded, D::Error> {
        let raw = Box::<RawValue>::deserialize(d)?;
        Recorded::from_json(raw.get().to_owned()).map_err(serde::de::Error::custom)
    }
}

/// A format that records nothing and judges every stream whole: for streams whose format the
/// store's caller does not check, and for the store's own tests.
#[derive(Clone, Copy, Debug, Default)]
pub struct AnyBytes;

impl StreamFormat for AnyBytes {
    fn name(&self) -> &'static str {
        "byte stream"
    }

    fn observer(&self) -> Box<dyn StreamObserver> {
        Box::new(CountBytes(0))
    }

    fn layout(&self, _: &Recorded) -> Option<StreamLayout> {
        None
    }
}

struct CountBytes(u64);

impl StreamObserver for CountBytes {
    fn observe(&mut self, bytes: &[u8]) {
        self.0 += bytes.len() as u64;
    }

    fn finish(self: Box<Self>) -> Result<Recorded, ObserveError> {
        Ok(Recorded::of(&serde_json::json!({ "bytes": self.0 }))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_compare_by_value_not_by_text() {
        let packed = Recorded::of(&serde_json::json!({"a": 1, "b": [1, 2]})).unwrap();
        let pretty = Recorded::from_json("{\n  \"b\": [1, 2],\n  \"a\": 1\n}".into()).unwrap();
        let other = Recorded::of(&serde_json::json!({"a": 2, "b": [1, 2]})).unwrap();
        assert_eq!(packed, pretty);
        assert_ne!(packed, other);
        assert_eq!(
            pretty.read::<serde_json::Value>().unwrap(),
            serde_json::json!({"a": 1, "b": [1, 2]})
        );
    }
}
