//! Frames and serializers: decoding client frames (V2 JSON arrays, V1 JSON objects, V2 binary
//! pushes) and encoding server frames (replies, pushes, broadcasts, close/error) for V1 and V2.
//! Pure functions; the socket decides what to send.

use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

/// The serializer a socket negotiated through `vsn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Vsn {
    V1,
    V2,
}

impl Vsn {
    /// Negotiate like Phoenix's default serializer list: no `vsn` → V1, `~> 1.0.0` → V1,
    /// `~> 2.0.0` → V2, anything else → `None` (HTTP 403).
    pub fn negotiate(vsn: Option<&str>) -> Option<Vsn> {
        let Some(vsn) = vsn else {
            return Some(Vsn::V1);
        };
        let patch_of = |prefix: &str| {
            vsn.strip_prefix(prefix)
                .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        };
        if patch_of("2.0.") {
            Some(Vsn::V2)
        } else if patch_of("1.0.") {
            Some(Vsn::V1)
        } else {
            None
        }
    }
}

/// A message payload: JSON, JSON already encoded, or raw bytes for binary frames (V2 only).
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    Json(serde_json::Value),
    /// JSON text in pieces, written one after the other into text frames as is (together
    /// they must be valid JSON; nothing checks). For large server payloads that exist as
    /// text: a shared document goes in as one `Arc` piece between a small prefix and
    /// suffix, copied once, into the frame. Never produced by decoding a client frame.
    Raw(Vec<Arc<str>>),
    Binary(Bytes),
}

impl Payload {
    /// The JSON value, or `None` for a binary or pre-encoded payload.
    pub fn as_json(&self) -> Option<&serde_json::Value> {
        match self {
            Payload::Json(v) => Some(v),
            Payload::Raw(_) | Payload::Binary(_) => None,
        }
    }
}

/// A decoded client frame. `join_ref` and `ref` stay JSON values (string, number or null) so
/// they are echoed back with the type the client used.
#[derive(Debug, Clone, PartialEq)]
pub struct InMessage {
    pub join_ref: Value,
    pub reference: Value,
    pub topic: String,
    pub event: String,
    pub payload: Payload,
}

/// Why a client frame could not be decoded; the socket closes with 1011.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub &'static str);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for DecodeError {}

/// Decode a text frame with the socket's serializer.
pub fn decode_text(vsn: Vsn, text: &str) -> Result<InMessage, DecodeError> {
    let value: Value = serde_json::from_str(text).map_err(|_| DecodeError("invalid JSON"))?;
    match vsn {
        Vsn::V2 => decode_v2_array(value),
        Vsn::V1 => decode_v1_object(value),
    }
}

fn decode_v2_array(value: Value) -> Result<InMessage, DecodeError> {
    let Value::Array(items) = value else {
        return Err(DecodeError("V2 frame is not an array"));
    };
    if items.len() < 5 {
        return Err(DecodeError("V2 frame has fewer than 5 elements"));
    }
    // Extra elements are ignored, as Phoenix's V2 serializer does.
    let mut items = items.into_iter();
    let mut next = || items.next().unwrap_or(Value::Null);
    let (join_ref, reference, topic, event, payload) = (next(), next(), next(), next(), next());
    build(join_ref, reference, topic, event, payload)
}

fn decode_v1_object(value: Value) -> Result<InMessage, DecodeError> {
    let Value::Object(mut map) = value else {
        return Err(DecodeError("V1 frame is not an object"));
    };
    let mut take = |key: &'static str| map.remove(key).ok_or(DecodeError("V1 frame lacks a key"));
    let (topic, event, payload, reference) = (
        take("topic")?,
        take("event")?,
        take("payload")?,
        take("ref")?,
    );
    let join_ref = map.remove("join_ref").unwrap_or(Value::Null);
    build(join_ref, reference, topic, event, payload)
}

fn build(
    join_ref: Value,
    reference: Value,
    topic: Value,
    event: Value,
    payload: Value,
) -> Result<InMessage, DecodeError> {
    let is_ref = |v: &Value| matches!(v, Value::Null | Value::String(_) | Value::Number(_));
    if !is_ref(&join_ref) || !is_ref(&reference) {
        return Err(DecodeError("join_ref/ref must be a string, number or null"));
    }
    let (Value::String(topic), Value::String(event)) = (topic, event) else {
        return Err(DecodeError("topic and event must be strings"));
    };
    Ok(InMessage {
        join_ref,
        reference,
        topic,
        event,
        payload: Payload::Json(payload),
    })
}

/// Decode a binary frame. Only V2 kind 0 (push) exists from clients:
/// `00 jr_len ref_len topic_len event_len join_ref ref topic event payload`.
pub fn decode_binary(vsn: Vsn, data: &Bytes) -> Result<InMessage, DecodeError> {
    if vsn == Vsn::V1 {
        return Err(DecodeError("binary frame on a V1 socket"));
    }
    let header = data.get(..5).ok_or(DecodeError("binary frame too short"))?;
    if header[0] != 0 {
        return Err(DecodeError("binary frame kind is not 0 (push)"));
    }
    let mut at = 5;
    let mut field = |len: u8| -> Result<String, DecodeError> {
        let end = at + usize::from(len);
        let bytes = data
            .get(at..end)
            .ok_or(DecodeError("binary frame truncated"))?;
        at = end;
        String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError("binary frame field not UTF-8"))
    };
    let join_ref = field(header[1])?;
    let reference = field(header[2])?;
    let topic = field(header[3])?;
    let event = field(header[4])?;
    Ok(InMessage {
        join_ref: Value::String(join_ref),
        reference: Value::String(reference),
        topic,
        event,
        payload: Payload::Binary(data.slice(at..)),
    })
}

#[derive(Serialize)]
struct ReplyBody<'a> {
    status: &'a str,
    response: &'a Value,
}

#[derive(Serialize)]
struct V1Frame<'a, P: Serialize> {
    topic: &'a str,
    event: &'a str,
    payload: P,
    #[serde(rename = "ref")]
    reference: &'a Value,
}

/// Encode a JSON frame. V1 never carries a `join_ref` key.
fn text_frame<P: Serialize>(
    vsn: Vsn,
    join_ref: &Value,
    reference: &Value,
    topic: &str,
    event: &str,
    payload: P,
) -> Message {
    let encoded = match vsn {
        Vsn::V2 => serde_json::to_string(&(join_ref, reference, topic, event, payload)),
        Vsn::V1 => serde_json::to_string(&V1Frame {
            topic,
            event,
            payload,
            reference,
        }),
    };
    // Serializing a `Value` or plain strings cannot fail (no maps with non-string keys).
    Message::text(encoded.unwrap_or_default())
}

/// A JSON frame around a pre-encoded payload (optionally wrapped as a reply's
/// `{"status", "response"}`), spliced as text with the same layout as [`text_frame`].
fn raw_text_frame(
    vsn: Vsn,
    join_ref: &Value,
    reference: &Value,
    topic: &str,
    event: &str,
    status: Option<&str>,
    raw: &[Arc<str>],
) -> Message {
    // Serializing plain strings and refs cannot fail.
    fn json<T: Serialize + ?Sized>(v: &T) -> String {
        serde_json::to_string(v).unwrap_or_else(|_| "null".into())
    }
    let len: usize = raw.iter().map(|piece| piece.len()).sum();
    let mut out = String::with_capacity(len + topic.len() + event.len() + 96);
    let payload = |out: &mut String| {
        if let Some(status) = status {
            out.push_str(r#"{"status":"#);
            out.push_str(&json(status));
            out.push_str(r#","response":"#);
        }
        for piece in raw {
            out.push_str(piece);
        }
        if status.is_some() {
            out.push('}');
        }
    };
    match vsn {
        Vsn::V2 => {
            out.push('[');
            for part in [json(join_ref), json(reference), json(topic), json(event)] {
                out.push_str(&part);
                out.push(',');
            }
            payload(&mut out);
            out.push(']');
        }
        Vsn::V1 => {
            out.push_str(r#"{"topic":"#);
            out.push_str(&json(topic));
            out.push_str(r#","event":"#);
            out.push_str(&json(event));
            out.push_str(r#","payload":"#);
            payload(&mut out);
            out.push_str(r#","ref":"#);
            out.push_str(&json(reference));
            out.push('}');
        }
    }
    Message::text(out)
}

/// How a ref is written in a binary frame: nil as the empty string, numbers as text.
fn ref_text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A binary frame: kind byte, one length byte per string, the strings, then the payload.
/// `None` when a string is longer than 255 bytes (the format cannot carry it).
fn binary_frame(kind: u8, strings: &[&str], payload: &[u8]) -> Option<Message> {
    let mut out = Vec::with_capacity(
        1 + strings.len() + strings.iter().map(|s| s.len()).sum::<usize>() + payload.len(),
    );
    out.push(kind);
    for s in strings {
        out.push(u8::try_from(s.len()).ok()?);
    }
    for s in strings {
        out.extend_from_slice(s.as_bytes());
    }
    out.extend_from_slice(payload);
    Some(Message::Binary(Bytes::from(out)))
}

// Binary payloads a serializer cannot carry (V1 has no binary frames; V2 binary frames limit
// names to 255 bytes) are sent as JSON `null` rather than failing the socket.

/// `[join_ref, ref, topic, "phx_reply", {"status": status, "response": payload}]`, or a kind-1
/// binary reply for a binary payload on V2.
pub fn encode_reply(
    vsn: Vsn,
    join_ref: &Value,
    reference: &Value,
    topic: &str,
    status: &str,
    payload: &Payload,
) -> Message {
    match payload {
        Payload::Json(response) => text_frame(
            vsn,
            join_ref,
            reference,
            topic,
            "phx_reply",
            ReplyBody { status, response },
        ),
        Payload::Raw(raw) => raw_text_frame(
            vsn,
            join_ref,
            reference,
            topic,
            "phx_reply",
            Some(status),
            raw,
        ),
        Payload::Binary(data) => {
            let (jr, r) = (ref_text(join_ref), ref_text(reference));
            (vsn == Vsn::V2)
                .then(|| binary_frame(1, &[&jr, &r, topic, status], data))
                .flatten()
                .unwrap_or_else(|| {
                    encode_reply(
                        vsn,
                        join_ref,
                        reference,
                        topic,
                        status,
                        &Payload::Json(Value::Null),
                    )
                })
        }
    }
}

/// A server push to one join: `[join_ref, null, topic, event, payload]`, or kind 0 binary.
pub fn encode_push(
    vsn: Vsn,
    join_ref: &Value,
    topic: &str,
    event: &str,
    payload: &Payload,
) -> Message {
    match payload {
        Payload::Json(p) => text_frame(vsn, join_ref, &Value::Null, topic, event, p),
        Payload::Raw(raw) => raw_text_frame(vsn, join_ref, &Value::Null, topic, event, None, raw),
        Payload::Binary(data) => {
            let jr = ref_text(join_ref);
            (vsn == Vsn::V2)
                .then(|| binary_frame(0, &[&jr, topic, event], data))
                .flatten()
                .unwrap_or_else(|| {
                    text_frame(vsn, join_ref, &Value::Null, topic, event, Value::Null)
                })
        }
    }
}

/// A broadcast: `[null, null, topic, event, payload]`, or kind 2 binary.
pub fn encode_broadcast(vsn: Vsn, topic: &str, event: &str, payload: &Payload) -> Message {
    match payload {
        Payload::Json(p) => text_frame(vsn, &Value::Null, &Value::Null, topic, event, p),
        Payload::Raw(raw) => {
            raw_text_frame(vsn, &Value::Null, &Value::Null, topic, event, None, raw)
        }
        Payload::Binary(data) => (vsn == Vsn::V2)
            .then(|| binary_frame(2, &[topic, event], data))
            .flatten()
            .unwrap_or_else(|| {
                text_frame(vsn, &Value::Null, &Value::Null, topic, event, Value::Null)
            }),
    }
}

/// `[jr, jr, topic, "phx_close", {}]`: the channel ended normally.
pub fn encode_close(vsn: Vsn, join_ref: &Value, topic: &str) -> Message {
    text_frame(
        vsn,
        join_ref,
        join_ref,
        topic,
        "phx_close",
        serde_json::json!({}),
    )
}

/// `[jr, jr, topic, "phx_error", {"reason":"channel_crash"}]`: the channel failed.
pub fn encode_error(vsn: Vsn, join_ref: &Value, topic: &str) -> Message {
    let payload = serde_json::json!({"reason": "channel_crash"});
    text_frame(vsn, join_ref, join_ref, topic, "phx_error", payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn text(m: &Message) -> Value {
        match m {
            Message::Text(t) => serde_json::from_str(t.as_str()).expect("json"),
            other => panic!("not text: {other:?}"),
        }
    }

    #[test]
    fn negotiates_vsn_like_phoenix() {
        assert_eq!(Vsn::negotiate(None), Some(Vsn::V1));
        assert_eq!(Vsn::negotiate(Some("1.0.0")), Some(Vsn::V1));
        assert_eq!(Vsn::negotiate(Some("2.0.0")), Some(Vsn::V2));
        assert_eq!(Vsn::negotiate(Some("2.0.7")), Some(Vsn::V2));
        for bad in ["2.1.0", "3.0.0", "abc", "2.0.", "2.0.x", ""] {
            assert_eq!(Vsn::negotiate(Some(bad)), None, "{bad}");
        }
    }

    #[test]
    fn v2_array_keeps_ref_types_and_ignores_extras() {
        let m = decode_text(Vsn::V2, r#"["1",2,"t:a","ev",{"x":1},"extra"]"#).expect("decode");
        assert_eq!(m.join_ref, json!("1"));
        assert_eq!(m.reference, json!(2));
        assert_eq!((m.topic.as_str(), m.event.as_str()), ("t:a", "ev"));
        assert_eq!(m.payload, Payload::Json(json!({"x":1})));
        let m = decode_text(Vsn::V2, r#"[null,null,"t","e",[1]]"#).expect("nulls");
        assert_eq!(m.join_ref, Value::Null);
    }

    #[test]
    fn malformed_text_frames_are_errors() {
        for bad in [
            "not json",
            r#"["1","2","t:a"]"#,
            r#"{"topic":"t","event":"e","payload":{},"ref":"1"}"#,
            r#"["1","2",3,"e",{}]"#,
            r#"[{},"2","t","e",{}]"#,
        ] {
            assert!(decode_text(Vsn::V2, bad).is_err(), "{bad}");
        }
        assert!(decode_text(Vsn::V1, r#"{"topic":"t","event":"e","payload":{}}"#).is_err());
        assert!(decode_text(Vsn::V1, r#"["1","2","t","e",{}]"#).is_err());
    }

    #[test]
    fn v1_object_decodes_with_optional_join_ref() {
        let m = decode_text(
            Vsn::V1,
            r#"{"topic":"t","event":"e","payload":{},"ref":"1"}"#,
        )
        .expect("v1");
        assert_eq!((m.join_ref, m.reference), (Value::Null, json!("1")));
        let m = decode_text(
            Vsn::V1,
            r#"{"topic":"t","event":"e","payload":{},"ref":"1","join_ref":"9"}"#,
        )
        .expect("v1 jr");
        assert_eq!(m.join_ref, json!("9"));
    }

    #[test]
    fn binary_push_decodes_observed_bytes() {
        let mut raw = vec![0, 1, 1, 8, 6];
        raw.extend_from_slice(b"34room:binupload");
        raw.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        let m = decode_binary(Vsn::V2, &Bytes::from(raw)).expect("binary");
        assert_eq!((m.join_ref, m.reference), (json!("3"), json!("4")));
        assert_eq!((m.topic.as_str(), m.event.as_str()), ("room:bin", "upload"));
        assert_eq!(
            m.payload,
            Payload::Binary(Bytes::from_static(&[0xde, 0xad, 0xbe, 0xef]))
        );
    }

    #[test]
    fn malformed_binary_frames_are_errors() {
        for bad in [
            &[5u8, 0, 0, 0, 0][..],
            &[0, 5][..],
            &[0, 5, 0, 0, 0, b'1'][..],
            &[][..],
        ] {
            assert!(
                decode_binary(Vsn::V2, &Bytes::copy_from_slice(bad)).is_err(),
                "{bad:?}"
            );
        }
        assert!(decode_binary(Vsn::V1, &Bytes::from_static(&[0, 0, 0, 0, 0])).is_err());
    }

    #[test]
    fn encodes_v2_frames_compactly() {
        let reply = encode_reply(
            Vsn::V2,
            &json!("1"),
            &json!(2),
            "t",
            "ok",
            &Payload::Json(json!({})),
        );
        assert_eq!(
            text(&reply),
            json!(["1", 2, "t", "phx_reply", {"status":"ok","response":{}}])
        );
        let Message::Text(raw) = &reply else {
            unreachable!()
        };
        assert!(!raw.as_str().contains(' '));
        let push = encode_push(
            Vsn::V2,
            &json!("5"),
            "t",
            "pushed",
            &Payload::Json(json!({"a":1})),
        );
        assert_eq!(text(&push), json!(["5", null, "t", "pushed", {"a":1}]));
        let b = encode_broadcast(Vsn::V2, "t", "b", &Payload::Json(json!({})));
        assert_eq!(text(&b), json!([null, null, "t", "b", {}]));
        assert_eq!(
            text(&encode_close(Vsn::V2, &json!("1"), "t")),
            json!(["1", "1", "t", "phx_close", {}])
        );
        assert_eq!(
            text(&encode_error(Vsn::V2, &json!("1"), "t")),
            json!(["1", "1", "t", "phx_error", {"reason":"channel_crash"}])
        );
    }

    #[test]
    fn v1_frames_never_carry_join_ref() {
        let reply = encode_reply(
            Vsn::V1,
            &json!("1"),
            &json!("1"),
            "t",
            "ok",
            &Payload::Json(json!({})),
        );
        assert_eq!(
            text(&reply),
            json!({"topic":"t","event":"phx_reply","payload":{"status":"ok","response":{}},"ref":"1"})
        );
        let b = encode_broadcast(Vsn::V1, "t", "e", &Payload::Json(json!({"x":1})));
        assert_eq!(
            text(&b),
            json!({"topic":"t","event":"e","payload":{"x":1},"ref":null})
        );
    }

    #[test]
    fn binary_server_frames_match_observed_bytes() {
        let data = Payload::Binary(Bytes::from_static(&[1, 2, 3, 4]));
        let reply = encode_reply(Vsn::V2, &json!("3"), &json!("4"), "room:bin", "ok", &data);
        let mut want = vec![1, 1, 1, 8, 2];
        want.extend_from_slice(b"34room:binok");
        want.extend_from_slice(&[1, 2, 3, 4]);
        assert_eq!(reply, Message::Binary(Bytes::from(want)));

        let push = encode_push(
            Vsn::V2,
            &json!("3"),
            "room:bin",
            "bin_push",
            &Payload::Binary(Bytes::from_static(&[9, 9])),
        );
        let mut want = vec![0, 1, 8, 8];
        want.extend_from_slice(b"3room:binbin_push");
        want.extend_from_slice(&[9, 9]);
        assert_eq!(push, Message::Binary(Bytes::from(want)));

        let b = encode_broadcast(
            Vsn::V2,
            "room:bin",
            "bin_bcast",
            &Payload::Binary(Bytes::from_static(b"hello")),
        );
        let mut want = vec![2, 8, 9];
        want.extend_from_slice(b"room:binbin_bcasthello");
        assert_eq!(b, Message::Binary(Bytes::from(want)));
    }

    #[test]
    fn raw_payloads_encode_exactly_like_json_ones() {
        let value =
            json!({"action": "update", "record": {"navn": "Kaffe \"svart\"", "id": 1}, "seq": 7});
        let text = serde_json::to_string(&value).unwrap();
        let (head, tail) = text.split_at(10);
        let raw = Payload::Raw(vec![head.into(), tail.into()]);
        let json = Payload::Json(value);
        for vsn in [Vsn::V1, Vsn::V2] {
            let (jr, r) = (json!("3"), json!(4));
            assert_eq!(
                encode_broadcast(vsn, "collection:menu", "change", &raw),
                encode_broadcast(vsn, "collection:menu", "change", &json)
            );
            assert_eq!(
                encode_push(vsn, &jr, "t:\"q\"", "e", &raw),
                encode_push(vsn, &jr, "t:\"q\"", "e", &json)
            );
            assert_eq!(
                encode_reply(vsn, &jr, &r, "t", "ok", &raw),
                encode_reply(vsn, &jr, &r, "t", "ok", &json)
            );
        }
    }

    #[test]
    fn binary_payload_on_v1_becomes_null() {
        let b = encode_broadcast(
            Vsn::V1,
            "t",
            "e",
            &Payload::Binary(Bytes::from_static(b"x")),
        );
        assert_eq!(
            text(&b),
            json!({"topic":"t","event":"e","payload":null,"ref":null})
        );
    }
}
