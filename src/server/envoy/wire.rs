//! The part of Envoy's `CheckRequest` that Check reads, as protobuf messages of
//! its own with the same field numbers (`envoy.service.auth.v3`'s
//! `CheckRequest.attributes.request.http`): the method, host, path, headers and
//! body. Everything else Envoy sends (the peers, TLS, metadata, context
//! extensions, the other HTTP fields) is skipped while decoding, not built.
//!
//! The headers arrive as a protobuf map; they are decoded as the map's wire
//! entries into a list (no hash map of all headers per call), and
//! [`Http::headers`] gives them with the map's meaning: a key that occurs twice
//! in the map keeps its last value, as the map would.

use envoy_types::ext_authz::v3::pb::CheckRequest;
use prost::Message as _;
use std::borrow::Cow;

/// Envoy's `CheckRequest`, as far as Check reads it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CheckInput {
    /// `CheckRequest.attributes`.
    #[prost(message, optional, tag = "1")]
    pub attributes: Option<Attributes>,
}

/// `AttributeContext`: only its `request`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Attributes {
    #[prost(message, optional, tag = "4")]
    pub request: Option<RequestAttributes>,
}

/// `AttributeContext.Request`: only its `http`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RequestAttributes {
    #[prost(message, optional, tag = "2")]
    pub http: Option<Http>,
}

/// `AttributeContext.HttpRequest`: the fields Check reads.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Http {
    #[prost(string, tag = "2")]
    pub method: String,
    /// `map<string, string> headers`, entry by entry as on the wire (see
    /// [`Http::headers`]).
    #[prost(message, repeated, tag = "3")]
    pub header_entries: Vec<MapEntry>,
    #[prost(string, tag = "4")]
    pub path: String,
    #[prost(string, tag = "5")]
    pub host: String,
    #[prost(string, tag = "11")]
    pub body: String,
    #[prost(bytes = "vec", tag = "12")]
    pub raw_body: Vec<u8>,
    /// `config.core.v3.HeaderMap header_map` (with `encode_raw_headers`).
    #[prost(message, optional, tag = "13")]
    pub header_map: Option<HeaderMap>,
}

/// One entry of a protobuf `map<string, string>` as it is encoded.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MapEntry {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `config.core.v3.HeaderMap`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HeaderMap {
    #[prost(message, repeated, tag = "1")]
    pub headers: Vec<HeaderValue>,
}

/// `config.core.v3.HeaderValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HeaderValue {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
    #[prost(bytes = "vec", tag = "3")]
    pub raw_value: Vec<u8>,
}

/// A Check request as [`super::plan`] reads it: the service's own
/// [`CheckInput`], or Envoy's whole `CheckRequest` (as built by envoy-types),
/// read as the service reads it off the wire.
pub trait CheckMessage {
    fn as_input(&self) -> Cow<'_, CheckInput>;
}

impl CheckMessage for CheckInput {
    fn as_input(&self) -> Cow<'_, CheckInput> {
        Cow::Borrowed(self)
    }
}

impl CheckMessage for CheckRequest {
    /// Encoded and decoded again: exactly what the service reads of it.
    fn as_input(&self) -> Cow<'_, CheckInput> {
        // A message just encoded decodes; were it ever not to, an empty
        // request is denied as carrying no HTTP request.
        Cow::Owned(CheckInput::decode(self.encode_to_vec().as_slice()).unwrap_or_default())
    }
}

impl CheckInput {
    /// The HTTP request, when the check carries one.
    pub fn http(&self) -> Option<&Http> {
        self.attributes
            .as_ref()
            .and_then(|a| a.request.as_ref())
            .and_then(|r| r.http.as_ref())
    }
}

impl Http {
    /// The `headers` map as a map reads: each key once, with the value of its
    /// last entry. A key is compared exactly (two spellings of a name in case
    /// are two keys, as in the map).
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        let entries = &self.header_entries;
        entries.iter().enumerate().filter_map(move |(i, e)| {
            // Kept only at its last entry: a later entry with the same key
            // replaces it. Envoy sends each key once, so this scans a few
            // short keys that differ, mostly in length.
            let replaced = entries[i + 1..].iter().any(|later| later.key == e.key);
            (!replaced).then_some((e.key.as_str(), e.value.as_str()))
        })
    }
}
