//! Black-box fuzzing of the HTTP bodies (issue: "the JSON bodies of every HTTP route, and
//! multipart"): thousands of mutated versions of the frontend's real bodies, and of multipart
//! forms, sent over real HTTP to every write route of a running daemon. Whatever arrives, the
//! answer is a 2xx or a 4xx with a JSON body — never a 500, never a dropped connection — and
//! the daemon still serves afterwards. Deterministic (fixed seeds), so a failure reproduces;
//! `KAFFEDIEM_BODY_FUZZ_CASES` runs more.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::support::http::call;
use crate::support::Daemon;

fn cases() -> usize {
    std::env::var("KAFFEDIEM_BODY_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(600)
}

/// The bodies the existing frontend sends, per route (SPEC 5 and the examples).
fn seeds() -> Vec<(&'static str, &'static str, Value)> {
    vec![
        (
            "POST",
            "/api/collections/order/records",
            json!({"customer_id": 7, "missing_information": false, "state": "received",
            "items": [{"item": 1, "customizations": [{"key": 1, "value": [1]}]}], "uuid": "seed"}),
        ),
        (
            "PATCH",
            "/api/collections/order/records/1",
            json!({"state": "production"}),
        ),
        (
            "POST",
            "/api/collections/item/records",
            json!({"id": 0, "name": "Te", "price_nok": 30, "category_id": 1, "enable": true, "sort_order": 1, "image": null}),
        ),
        (
            "PATCH",
            "/api/collections/item/records/1",
            json!({"name": "Latte", "price_nok": 45, "category_id": 1, "enable": true, "sort_order": 2, "image": "x"}),
        ),
        (
            "PATCH",
            "/api/collections/status/records/1",
            json!({"open": true, "show_message": false, "message_id": null}),
        ),
        (
            "POST",
            "/api/collections/message/records",
            json!({"title": "Vafler", "subtitle": null}),
        ),
        (
            "POST",
            "/api/collections/category/records",
            json!({"id": 0, "name": "Kald", "sort_order": 3, "enable": true, "valid_customizations": [1, 2]}),
        ),
        (
            "POST",
            "/api/collections/customization_key/records",
            json!({"name": "Is", "enable": true, "label_color": "#fff", "default_value": "1", "multiple_choice": false, "sort_order": 1}),
        ),
        (
            "POST",
            "/api/collections/customization_value/records",
            json!({"name": "Mye", "price_increment_nok": 5, "constant_price": true, "belongs_to": 1, "enable": true, "sort_order": 1}),
        ),
        (
            "PUT",
            "/api/collections/category/records/1",
            json!({"valid_customizations": [1]}),
        ),
        (
            "POST",
            "/api/session",
            json!({"email": "a@b.c", "password": "x"}),
        ),
    ]
}

/// Values that have broken parsers elsewhere: wrong types, extremes, odd text.
fn nasty(rng: &mut StdRng) -> Value {
    match rng.random_range(0..16) {
        0 => Value::Null,
        1 => json!(i64::MAX),
        2 => json!(i64::MIN),
        3 => json!(-1),
        4 => json!(1e308),
        5 => json!("9999999999999999999999"),
        6 => json!(""),
        7 => json!("\u{0}\u{feff}ø😀"),
        8 => json!(true),
        9 => json!([]),
        10 => json!({}),
        11 => json!([[[[[[1]]]]]]),
        12 => json!("x".repeat(rng.random_range(0..5000))),
        13 => json!(rng.random::<i32>()),
        14 => json!(format!("{}", rng.random::<i16>())),
        _ => json!({"item": null, "key": [], "value": {}}),
    }
}

/// One random mutation somewhere in `value`.
fn mutate(value: &mut Value, rng: &mut StdRng, depth: usize) {
    match value {
        Value::Object(map) if !map.is_empty() && depth < 6 => {
            let keys: Vec<String> = map.keys().cloned().collect();
            let key = &keys[rng.random_range(0..keys.len())];
            match rng.random_range(0..4) {
                0 => {
                    map.remove(key);
                }
                1 => {
                    map.insert(key.clone(), nasty(rng));
                }
                2 => {
                    map.insert(format!("extra{}", rng.random::<u8>()), nasty(rng));
                }
                _ => {
                    if let Some(inner) = map.get_mut(key) {
                        mutate(inner, rng, depth + 1);
                    }
                }
            }
        }
        Value::Array(items) if !items.is_empty() && depth < 6 => match rng.random_range(0..3) {
            0 => {
                let i = rng.random_range(0..items.len());
                mutate(&mut items[i], rng, depth + 1);
            }
            1 => {
                let copy = items[0].clone();
                for _ in 0..rng.random_range(1..40) {
                    items.push(copy.clone());
                }
            }
            _ => items.push(nasty(rng)),
        },
        other => *other = nasty(rng),
    }
}

fn assert_sane(route: &str, status: u16, body: &str, sent: &str) {
    assert!(
        status < 500,
        "{route} answered {status} to {sent:.300}\n{body:.300}"
    );
    if status >= 400 {
        assert!(
            serde_json::from_str::<Value>(body).is_ok(),
            "{route} {status} without a JSON body: {body:.300}"
        );
    }
}

#[tokio::test]
async fn mutated_json_bodies_never_get_a_500() {
    let daemon = Daemon::demo().await;
    let mut rng = StdRng::seed_from_u64(0x6b61_6666_6564_6965);
    let seeds = seeds();
    for case in 0..cases() {
        let (method, path, seed) = &seeds[case % seeds.len()];
        let mut body = seed.clone();
        for _ in 0..rng.random_range(1..4) {
            mutate(&mut body, &mut rng, 0);
        }
        let text = if rng.random_range(0..10) == 0 {
            // Now and then, not JSON at all: truncated or bit-flipped text.
            let mut bytes = body.to_string().into_bytes();
            let cut = rng.random_range(0..=bytes.len());
            bytes.truncate(cut);
            if let Some(b) = bytes.last_mut() {
                *b ^= 1 << rng.random_range(0..8);
            }
            bytes
        } else {
            body.to_string().into_bytes()
        };
        let sent = String::from_utf8_lossy(&text).into_owned();
        let reply = call(daemon.addr, method, path)
            .header("authorization", "Bearer admin-secret")
            .header("content-type", "application/json")
            .raw(text)
            .try_send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: no answer ({e}) to {sent:.300}"));
        assert_sane(
            &format!("{method} {path}"),
            reply.status.as_u16(),
            &reply.text(),
            &sent,
        );
    }
    let health = call(daemon.addr, "GET", "/healthz").send().await;
    assert_eq!(health.status, 200);
    daemon.stop().await;
}

/// A multipart form with random parts: names, content types, bytes, broken framing.
fn multipart(rng: &mut StdRng, boundary: &str) -> Vec<u8> {
    let fields = [
        "name",
        "price_nok",
        "category_id",
        "enable",
        "sort_order",
        "image",
        "x",
    ];
    let mut out = Vec::new();
    for _ in 0..rng.random_range(0..8) {
        let name = fields[rng.random_range(0..fields.len())];
        out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        if name == "image" || rng.random_range(0..4) == 0 {
            out.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\n").as_bytes(),
            );
            let mut data = match rng.random_range(0..3) {
                0 => b"\x89PNG\r\n\x1a\n".to_vec(),
                1 => b"\xff\xd8\xff".to_vec(),
                _ => Vec::new(),
            };
            for _ in 0..rng.random_range(0..2000) {
                data.push(rng.random());
            }
            out.extend_from_slice(&data);
        } else {
            out.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
            );
            let value = nasty(rng);
            let text = match value {
                Value::String(s) => s,
                other => other.to_string(),
            };
            out.extend_from_slice(text.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
    }
    if rng.random_range(0..3) > 0 {
        out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    }
    if rng.random_range(0..5) == 0 && !out.is_empty() {
        let cut = rng.random_range(0..out.len());
        out.truncate(cut);
    }
    out
}

#[tokio::test]
async fn random_multipart_forms_never_get_a_500() {
    let daemon = Daemon::demo().await;
    let mut rng = StdRng::seed_from_u64(0x6d75_6c74_6970_6172);
    for case in 0..cases() / 2 {
        let boundary = if rng.random_range(0..8) == 0 {
            String::new()
        } else {
            format!("b{}", rng.random::<u32>())
        };
        let body = multipart(&mut rng, &boundary);
        let (method, path) = if case % 2 == 0 {
            ("POST", "/api/collections/item/records")
        } else {
            ("PATCH", "/api/collections/item/records/1")
        };
        let reply = call(daemon.addr, method, path)
            .header("authorization", "Bearer admin-secret")
            .header(
                "content-type",
                &format!("multipart/form-data; boundary={boundary}"),
            )
            .raw(body)
            .try_send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: no answer ({e}), case {case}"));
        assert_sane(
            &format!("{method} {path}"),
            reply.status.as_u16(),
            &reply.text(),
            &format!("multipart case {case}"),
        );
    }
    let health = call(daemon.addr, "GET", "/healthz").send().await;
    assert_eq!(health.status, 200);
    daemon.stop().await;
}
