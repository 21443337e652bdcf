//! The properties the fuzz targets check, one function per target. Each takes arbitrary bytes
//! and panics when a property fails; a panic anywhere inside the code under test is a finding
//! too. The same functions run in `cargo test` over the saved reproducers and a bounded number
//! of generated inputs (`tests/it/phoenix_fuzz_regressions.rs`), so a machine without nightly
//! still checks them.
//!
//! What is fuzzed: what a client controls. Frame decoders (V2 text, V1 text, V2 binary) with an
//! independent oracle for which inputs they must accept, the LongPoll POST body splitter, and
//! the `collection:order` join options (with the local-midnight computation they feed).

use bytes::Bytes;
use kaffediem::channels::filter::{local_date, OrderFilter};
use kaffediem::channels::query::OrderOptions;
use kaffediem::phoenix::frame::{self, InMessage, Payload, Vsn};
use kaffediem::phoenix::longpoll::{decode_post_body, PostedFrame, MAX_BATCH_LINES};
use serde_json::{json, Value};

fn is_ref(v: &Value) -> bool {
    matches!(v, Value::Null | Value::String(_) | Value::Number(_))
}

/// Everything the socket may send in answer to a decoded message must encode without
/// panicking, and JSON frames must be JSON again.
fn encoders_hold(vsn: Vsn, m: &InMessage) {
    let frames = [
        frame::encode_reply(
            vsn,
            &m.join_ref,
            &m.reference,
            &m.topic,
            &m.event,
            &m.payload,
        ),
        frame::encode_push(vsn, &m.join_ref, &m.topic, &m.event, &m.payload),
        frame::encode_broadcast(vsn, &m.topic, &m.event, &m.payload),
        frame::encode_close(vsn, &m.join_ref, &m.topic),
        frame::encode_error(vsn, &m.join_ref, &m.topic),
    ];
    for f in frames {
        if f.is_text() {
            let text = f.to_text().expect("text frame");
            let value: Value = serde_json::from_str(text).expect("encoded frames are JSON");
            match vsn {
                Vsn::V2 => assert_eq!(value.as_array().map(Vec::len), Some(5), "{text}"),
                Vsn::V1 => assert!(value.get("join_ref").is_none(), "{text}"),
            }
        } else {
            assert!(f.is_binary(), "only text or binary frames");
            assert_eq!(vsn, Vsn::V2, "V1 has no binary frames");
        }
    }
}

/// `decode_text` on a V2 socket accepts exactly JSON arrays of at least five elements whose
/// refs are null, strings or numbers and whose topic and event are strings.
pub fn frame_v2_text(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let decoded = frame::decode_text(Vsn::V2, text);
    let expected = match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(items)) => {
            items.len() >= 5
                && is_ref(&items[0])
                && is_ref(&items[1])
                && items[2].is_string()
                && items[3].is_string()
        }
        _ => false,
    };
    assert_eq!(decoded.is_ok(), expected, "V2 acceptance of {text:?}");
    if let Ok(m) = decoded {
        let items: Vec<Value> = serde_json::from_str(text).expect("array");
        assert_eq!(m.topic, items[2].as_str().expect("topic"));
        assert_eq!(m.event, items[3].as_str().expect("event"));
        // The ref keeps its JSON type, so the reply echoes it as the client sent it.
        assert_eq!(m.reference.is_string(), items[1].is_string());
        assert_eq!(m.reference.is_number(), items[1].is_number());
        encoders_hold(Vsn::V2, &m);
    }
}

/// `decode_text` on a V1 socket accepts exactly objects with `topic`, `event`, `payload` and
/// `ref` (topic and event strings, refs null, strings or numbers; `join_ref` optional).
pub fn frame_v1_text(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let decoded = frame::decode_text(Vsn::V1, text);
    let expected = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => {
            map.get("topic").is_some_and(Value::is_string)
                && map.get("event").is_some_and(Value::is_string)
                && map.contains_key("payload")
                && map.get("ref").is_some_and(is_ref)
                && map.get("join_ref").is_none_or(is_ref)
        }
        _ => false,
    };
    assert_eq!(decoded.is_ok(), expected, "V1 acceptance of {text:?}");
    if let Ok(m) = decoded {
        encoders_hold(Vsn::V1, &m);
    }
}

/// `decode_binary` accepts exactly kind-0 frames whose four strings fit and are UTF-8, and
/// encoding the result the client's way gives back the same bytes. V1 takes no binary frames.
pub fn frame_binary(data: &[u8]) {
    let bytes = Bytes::copy_from_slice(data);
    assert!(frame::decode_binary(Vsn::V1, &bytes).is_err());
    let decoded = frame::decode_binary(Vsn::V2, &bytes);
    let expected = data.len() >= 5 && data[0] == 0 && {
        let mut at = 5;
        data[1..5].iter().all(|&len| {
            let end = at + usize::from(len);
            let ok = data
                .get(at..end)
                .is_some_and(|s| std::str::from_utf8(s).is_ok());
            at = end;
            ok
        })
    };
    assert_eq!(decoded.is_ok(), expected, "binary acceptance of {data:?}");
    let Ok(m) = decoded else { return };
    let text = |v: &Value| v.as_str().expect("binary refs are strings").to_owned();
    let (join_ref, reference) = (text(&m.join_ref), text(&m.reference));
    let Payload::Binary(payload) = &m.payload else {
        panic!("binary frames carry binary payloads");
    };
    let mut again = vec![0u8];
    for s in [&join_ref, &reference, &m.topic, &m.event] {
        again.push(u8::try_from(s.len()).expect("at most 255 bytes"));
    }
    for s in [&join_ref, &reference, &m.topic, &m.event] {
        again.extend_from_slice(s.as_bytes());
    }
    again.extend_from_slice(payload);
    assert_eq!(again, data, "binary round trip");
    encoders_hold(Vsn::V2, &m);
}

/// `OrderOptions::from_join_payload` never panics, names only known fields in its errors,
/// and a filter it accepts can compute its window in any time zone on any day. JSON input is
/// used as the payload and as the `options`; other input is tried as each option's string.
pub fn join_options(data: &[u8]) {
    let mut payloads = Vec::new();
    match serde_json::from_slice::<Value>(data) {
        Ok(value) => {
            payloads.push(json!({ "options": value.clone() }));
            payloads.push(value);
        }
        Err(_) => {
            let s = String::from_utf8_lossy(data).into_owned();
            payloads.push(json!({"options": {"from_date": s.clone()}}));
            payloads.push(json!({"options": {"customer_id": s}}));
        }
    }
    for payload in payloads {
        match OrderOptions::from_join_payload(&payload) {
            Ok(filter) => window_holds(&filter),
            Err(errors) => {
                assert!(!errors.is_empty(), "an error names its field");
                for key in errors.keys() {
                    assert!(
                        ["options", "from_date", "customer_id"].contains(&key.as_str()),
                        "unknown error key {key}"
                    );
                }
            }
        }
    }
}

fn window_holds(filter: &OrderFilter) {
    use jiff::civil::Date;
    use jiff::tz::{Offset, TimeZone};
    let zones = [
        TimeZone::UTC,
        TimeZone::fixed(Offset::constant(14)),
        TimeZone::fixed(Offset::constant(-12)),
        TimeZone::get("Europe/Oslo").unwrap_or(TimeZone::UTC),
    ];
    let days = [Date::MIN, Date::MAX, jiff::civil::date(2026, 3, 29)];
    for tz in &zones {
        for today in days {
            let _ = filter.since(today, tz);
        }
        for now in [jiff::Timestamp::MIN, jiff::Timestamp::MAX] {
            let _ = local_date(now, tz);
        }
    }
}

/// `decode_post_body` never panics, uses at most 100 lines, and every frame it returns is
/// within the size limit; with ndjson, text frames are single lines starting with `[`. The frames then go through the socket's decoders without panicking.
pub fn longpoll_body(data: &[u8]) {
    let Some((&flags, body)) = data.split_first() else {
        return;
    };
    let ndjson = flags & 1 == 0;
    // Small limits reach the size checks; 0 and 1 are edge cases of their own.
    let max = usize::from(flags >> 1) * 3;
    let frames = decode_post_body(body, ndjson, max);
    assert!(frames.len() <= MAX_BATCH_LINES);
    if !ndjson {
        assert_eq!(frames.len(), 1, "one frame per non-ndjson body");
    }
    for posted in frames {
        match posted {
            PostedFrame::Text(text) => {
                assert!(text.len() <= max);
                if ndjson {
                    assert!(text.starts_with('['), "{text:?}");
                    // One `\r` before the `\n` goes with the separator; another one stays in
                    // the line, as with Phoenix's split on "\n" and "\r\n".
                    assert!(!text.contains('\n'), "{text:?}");
                }
                let _ = frame::decode_text(Vsn::V2, &text);
                let _ = frame::decode_text(Vsn::V1, &text);
            }
            PostedFrame::Binary(data) => {
                assert!(ndjson, "binary lines only in ndjson");
                assert!(data.len() <= max);
                let _ = frame::decode_binary(Vsn::V2, &data);
            }
            PostedFrame::Invalid { code, .. } => {
                assert!([1007, 1009, 1011].contains(&code), "close code {code}");
            }
        }
    }
}
