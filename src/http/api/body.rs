//! Request bodies: JSON objects, or (for items) `multipart/form-data` with text parts and an
//! `image` file part. Size limits are enforced while reading: a `Content-Length` over the
//! limit is refused before a byte is read, and the stream is capped for chunked bodies.

use std::time::Duration;

use crate::http::Incoming;
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::header::{self, HeaderMap};
use serde_json::{Map, Value};

use super::ApiError;
use crate::http::images;
use crate::store::write::{invalid, Image};
use crate::store::Collection;

/// How long a client may take to send a body: a slow sender must not hold a connection (and
/// its buffer) forever. Generous for a 5 MiB photo over bad café Wi-Fi.
const BODY_TIMEOUT: Duration = Duration::from_secs(60);

/// A decoded write body.
#[derive(Debug, Default)]
pub struct Form {
    /// The fields; multipart text parts arrive as strings and are coerced by the store.
    pub fields: Map<String, Value>,
    /// A checked image (multipart `image` part), items only.
    pub image: Option<Image>,
}

/// What the body's `Content-Type` says it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Multipart,
}

fn format(headers: &HeaderMap) -> Option<(Format, String)> {
    let ct = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let essence = ct.split(';').next()?.trim().to_ascii_lowercase();
    if essence == "application/json" || essence.ends_with("+json") {
        Some((Format::Json, ct.to_owned()))
    } else if essence == "multipart/form-data" {
        Some((Format::Multipart, ct.to_owned()))
    } else {
        None
    }
}

/// Read and decode the body of a create or update of `collection`.
pub async fn read(
    body: Incoming,
    headers: &HeaderMap,
    collection: Collection,
    max_json: usize,
    max_upload: usize,
) -> Result<Form, ApiError> {
    let multipart_ok = collection == Collection::Item;
    let Some((format, content_type)) = format(headers) else {
        return Err(ApiError::BadRequest(if multipart_ok {
            "expected Content-Type: application/json or multipart/form-data".into()
        } else {
            "expected Content-Type: application/json".into()
        }));
    };
    match format {
        Format::Json => {
            let bytes = bounded(body, headers, max_json).await?;
            let fields = json_object(&bytes)?;
            Ok(Form {
                fields,
                image: None,
            })
        }
        Format::Multipart if multipart_ok => {
            let boundary = multer::parse_boundary(&content_type)
                .map_err(|e| ApiError::BadRequest(format!("bad multipart Content-Type: {e}")))?;
            let bytes = bounded(body, headers, max_upload).await?;
            multipart(bytes, boundary).await
        }
        Format::Multipart => Err(ApiError::BadRequest(
            "multipart bodies are only taken for items; send application/json".into(),
        )),
    }
}

/// The whole body, at most `limit` bytes.
async fn bounded(body: Incoming, headers: &HeaderMap, limit: usize) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::TooLarge(limit));
    }
    let read = tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, limit).collect());
    match read.await {
        Err(_) => Err(ApiError::TimedOut),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::TooLarge(limit)),
        Ok(Err(e)) => Err(ApiError::BadRequest(format!(
            "could not read the body: {e}"
        ))),
    }
}

/// Parse a JSON object (anything else is a 400).
pub fn json_object(bytes: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::BadRequest("must be a JSON object".into())),
        Err(e) => Err(ApiError::BadRequest(format!("malformed JSON: {e}"))),
    }
}

async fn multipart(bytes: Bytes, boundary: String) -> Result<Form, ApiError> {
    let stream = futures_util::stream::once(async move { Ok::<Bytes, std::io::Error>(bytes) });
    let mut parts = multer::Multipart::new(stream, boundary);
    let mut form = Form::default();
    let bad = |e: multer::Error| ApiError::BadRequest(format!("malformed multipart body: {e}"));
    while let Some(part) = parts.next_field().await.map_err(bad)? {
        let Some(name) = part.name().map(str::to_owned) else {
            continue;
        };
        let is_file = part.file_name().is_some() || part.content_type().is_some();
        if name == "image" && is_file {
            let data = part.bytes().await.map_err(bad)?;
            // A form with no file chosen sends an empty part: keep the current image.
            if data.is_empty() {
                continue;
            }
            let image = images::check(data).ok_or_else(|| {
                ApiError::from(invalid("image", "must be a PNG, JPEG, WebP or AVIF image"))
            })?;
            form.image = Some(image);
        } else if name == "image" {
            // The current image's URL sent back as text: nothing to change.
            let _ = part.text().await.map_err(bad)?;
        } else {
            let text = part.text().await.map_err(bad)?;
            form.fields.insert(name, Value::String(text));
        }
    }
    Ok(form)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_bodies_must_be_objects() {
        assert!(json_object(b"{\"a\":1}").is_ok());
        assert!(matches!(json_object(b"[1]"), Err(ApiError::BadRequest(_))));
        assert!(matches!(
            json_object(b"{oops"),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(json_object(b""), Err(ApiError::BadRequest(_))));
    }

    #[tokio::test]
    async fn multipart_text_parts_and_image_are_separated() {
        let boundary = "XyZ";
        let mut body = Vec::new();
        body.extend_from_slice(
            b"--XyZ\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nMocha\r\n\
              --XyZ\r\nContent-Disposition: form-data; name=\"price_nok\"\r\n\r\n45\r\n\
              --XyZ\r\nContent-Disposition: form-data; name=\"image\"; filename=\"m.png\"\r\n\
              Content-Type: image/png\r\n\r\n\x89PNG\r\n\x1a\nDATA\r\n--XyZ--\r\n",
        );
        let form = multipart(Bytes::from(body), boundary.into()).await.unwrap();
        assert_eq!(form.fields["name"], "Mocha");
        assert_eq!(form.fields["price_nok"], "45");
        let image = form.image.expect("image");
        assert_eq!(image.content_type, "image/png");
    }

    #[tokio::test]
    async fn a_file_that_is_not_an_image_is_a_422() {
        let body = b"--b\r\nContent-Disposition: form-data; name=\"image\"; filename=\"x.gif\"\r\n\
                     Content-Type: image/gif\r\n\r\nGIF89a\r\n--b--\r\n";
        let err = multipart(Bytes::from_static(body), "b".into())
            .await
            .unwrap_err();
        assert!(matches!(err, ApiError::Invalid(e) if e.contains_key("image")));
    }
}
