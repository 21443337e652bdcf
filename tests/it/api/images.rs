//! Item images (SPEC 5.4): multipart uploads as a browser's `FormData` sends them, the file
//! served back with `ETag` and 304, and what happens to uploads that are not images or too big.

use super::{id_of, list, ADMIN};
use crate::support::http::{call, get_json};
use crate::support::Daemon;

/// A multipart body as a browser's `FormData` sends it.
fn form_data(boundary: &str, texts: &[(&str, &str)], image: Option<(&str, &[u8])>) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, value) in texts {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    if let Some((filename, bytes)) = image {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; \
                 filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    body
}

/// A tiny valid PNG header followed by filler: enough for the magic-number check.
fn png() -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    bytes.extend_from_slice(&[7u8; 64]);
    bytes
}

#[tokio::test]
async fn an_uploaded_image_is_served_back_with_etag_and_304() {
    let daemon = Daemon::demo().await;
    let categories = list(&daemon, "category").await;
    let kaffe = id_of(&categories, "Kaffe").to_string();
    let boundary = "----KaffediemForm";
    let image = png();
    // The frontend's FormData: every field a string, the category under `category`.
    let body = form_data(
        boundary,
        &[
            ("id", "0"),
            ("name", "Flat white"),
            ("price_nok", "45"),
            ("category", &kaffe),
            ("enable", "true"),
            ("sort_order", "3"),
        ],
        Some(("flat.png", &image)),
    );
    let reply = call(daemon.addr, "POST", "/api/collections/item/records")
        .header("authorization", ADMIN)
        .header(
            "content-type",
            &format!("multipart/form-data; boundary={boundary}"),
        )
        .raw(body)
        .send()
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    let item = reply.json();
    assert_eq!(item["price_nok"], 45);
    assert_eq!(item["enable"], true);
    assert_eq!(item["sort_order"], 3);
    assert_eq!(item["category_name"], "Kaffe");
    let url = item["image"].as_str().expect("image url");
    let prefix = format!("http://{}/api/files/item/{}/", daemon.addr, item["id"]);
    assert!(url.starts_with(&prefix), "{url} is absolute, from the Host");

    let path = &url[format!("http://{}", daemon.addr).len()..];
    let file = call(daemon.addr, "GET", path).send().await;
    assert_eq!(file.status, 200);
    assert_eq!(file.header("content-type"), Some("image/png"));
    assert_eq!(&file.body[..], &image[..]);
    assert!(file.header("cache-control").is_some());
    let etag = file.header("etag").expect("etag").to_owned();
    let again = call(daemon.addr, "GET", path)
        .header("if-none-match", &etag)
        .send()
        .await;
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    assert_eq!(again.header("etag"), Some(etag.as_str()));

    // Something that is not an image: 422, and the item keeps its picture.
    let body = form_data(
        boundary,
        &[("name", "Renamed")],
        Some(("x.svg", b"<svg></svg>")),
    );
    let reply = call(
        daemon.addr,
        "PATCH",
        &format!("/api/collections/item/records/{}", item["id"]),
    )
    .header("authorization", ADMIN)
    .header(
        "content-type",
        &format!("multipart/form-data; boundary={boundary}"),
    )
    .raw(body)
    .send()
    .await;
    assert_eq!(reply.status, 422, "{}", reply.text());
    assert!(reply.json()["errors"]["image"][0].is_string());
    let (_, kept) = get_json(
        daemon.addr,
        &format!("/api/collections/item/records/{}", item["id"]),
    )
    .await;
    assert_eq!(kept["name"], "Flat white");
    assert_eq!(kept["image"], item["image"]);
    daemon.stop().await;
}

#[tokio::test]
async fn uploads_over_the_upload_limit_are_413() {
    let daemon = Daemon::start(true, |c| c.limits.max_upload_bytes = 2048).await;
    let categories = list(&daemon, "category").await;
    let kaffe = id_of(&categories, "Kaffe").to_string();
    let mut image = png();
    image.extend_from_slice(&[1u8; 4096]);
    let boundary = "b0undary";
    let body = form_data(
        boundary,
        &[("name", "Big"), ("price_nok", "1"), ("category_id", &kaffe)],
        Some(("big.png", &image)),
    );
    let reply = call(daemon.addr, "POST", "/api/collections/item/records")
        .header("authorization", ADMIN)
        .header(
            "content-type",
            &format!("multipart/form-data; boundary={boundary}"),
        )
        .raw(body)
        .send()
        .await;
    assert_eq!(reply.status, 413);
    assert!(list(&daemon, "item")
        .await
        .iter()
        .all(|i| i["name"] != "Big"));
    daemon.stop().await;
}

#[tokio::test]
async fn a_form_posted_from_a_foreign_page_is_refused_and_stores_nothing() {
    let frontend = "http://kaffediem.local:5173";
    let daemon = Daemon::start(true, |c| c.http.allowed_origins = vec![frontend.into()]).await;
    let categories = list(&daemon, "category").await;
    let kaffe = id_of(&categories, "Kaffe").to_string();
    let boundary = "csrf";
    let body = form_data(
        boundary,
        &[
            ("name", "Gratis"),
            ("price_nok", "0"),
            ("category_id", &kaffe),
        ],
        None,
    );
    // A multipart form needs no preflight, so a foreign page could send it with an admin's
    // cookie; the Origin header gives it away.
    let post = |origin: &str| {
        call(daemon.addr, "POST", "/api/collections/item/records")
            .header("authorization", ADMIN)
            .header("origin", origin)
            .header(
                "content-type",
                &format!("multipart/form-data; boundary={boundary}"),
            )
            .raw(body.clone())
    };
    let refused = post("https://evil.example").send().await;
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert!(list(&daemon, "item")
        .await
        .iter()
        .all(|i| i["name"] != "Gratis"));

    let own = format!("http://{}", daemon.addr);
    for origin in [frontend, own.as_str()] {
        let accepted = post(origin).send().await;
        assert_eq!(accepted.status, 201, "{origin}: {}", accepted.text());
    }
    daemon.stop().await;
}
