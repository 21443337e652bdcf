//! LongPoll POST bodies: splitting a body into the frames it carries, as Phoenix does. Pure
//! functions (fuzzed: `fuzz/`, target `longpoll_body`).

use base64::Engine;
use bytes::Bytes;

/// Lines of one POST that are used; the official client never sends more (its batch size).
pub const MAX_BATCH_LINES: usize = 100;

/// One line of a POST body, ready for the socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostedFrame {
    /// A JSON text frame.
    Text(String),
    /// A binary frame (sent base64-encoded).
    Binary(Bytes),
    /// A line that is no frame; the session ends with this close code, as a WebSocket would
    /// (1007 invalid UTF-8, 1009 too large, 1011 not base64).
    Invalid { code: u16, reason: &'static str },
}

/// Split a POST body into frames as Phoenix does. With `ndjson` (`application/x-ndjson`, the
/// 1.8 client) each line is a frame: lines are split on `\n` or `\r\n`, at most
/// [`MAX_BATCH_LINES`] are used, a line starting with `[` is a V2 JSON text frame and any other
/// is base64 of a binary frame. Empty lines are skipped (Phoenix would read one as an empty
/// binary frame and crash the session; a trailing newline is common in ndjson). Without
/// `ndjson` the whole body is one text frame (older clients). Frames longer than
/// `max_frame_bytes` are [`PostedFrame::Invalid`].
pub fn decode_post_body(body: &[u8], ndjson: bool, max_frame_bytes: usize) -> Vec<PostedFrame> {
    if !ndjson {
        return vec![text_frame(body, max_frame_bytes)];
    }
    body.split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .filter(|line| !line.is_empty())
        .take(MAX_BATCH_LINES)
        .map(|line| match line.first() {
            Some(b'[') => text_frame(line, max_frame_bytes),
            _ => binary_frame(line, max_frame_bytes),
        })
        .collect()
}

fn text_frame(bytes: &[u8], max_frame_bytes: usize) -> PostedFrame {
    if bytes.len() > max_frame_bytes {
        return too_large();
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => PostedFrame::Text(text.to_owned()),
        Err(_) => PostedFrame::Invalid {
            code: 1007,
            reason: "text frame is not UTF-8",
        },
    }
}

fn binary_frame(line: &[u8], max_frame_bytes: usize) -> PostedFrame {
    use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
    use base64::engine::DecodePaddingMode;
    // `btoa` pads; accept either way.
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    // Checked before decoding, so an oversized line costs no allocation.
    if line.len() / 4 * 3 > max_frame_bytes.saturating_add(3) {
        return too_large();
    }
    match LENIENT.decode(line) {
        Ok(data) if data.len() > max_frame_bytes => too_large(),
        Ok(data) => PostedFrame::Binary(Bytes::from(data)),
        Err(_) => PostedFrame::Invalid {
            code: 1011,
            reason: "line is neither a JSON array nor base64",
        },
    }
}

fn too_large() -> PostedFrame {
    PostedFrame::Invalid {
        code: 1009,
        reason: "frame larger than the maximum message size",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ndjson_lines_are_text_or_base64() {
        let body = b"[\"1\",\"1\",\"t\",\"phx_join\",{}]\r\nAAEBAXQx\n\n[1]";
        assert_eq!(
            decode_post_body(body, true, 1024),
            vec![
                PostedFrame::Text(r#"["1","1","t","phx_join",{}]"#.into()),
                PostedFrame::Binary(Bytes::from_static(&[0, 1, 1, 1, b't', b'1'])),
                PostedFrame::Text("[1]".into()),
            ]
        );
    }

    #[test]
    fn only_the_first_hundred_lines_count() {
        let body = vec!["[]"; 150].join("\n");
        assert_eq!(decode_post_body(body.as_bytes(), true, 64).len(), 100);
    }

    #[test]
    fn bad_lines_carry_websocket_close_codes() {
        let code = |f: &PostedFrame| match f {
            PostedFrame::Invalid { code, .. } => *code,
            other => panic!("valid: {other:?}"),
        };
        assert_eq!(code(&decode_post_body(b"not base64!", true, 64)[0]), 1011);
        assert_eq!(code(&decode_post_body(b"[\xff]", true, 64)[0]), 1007);
        assert_eq!(code(&decode_post_body(&[b'['; 65], true, 64)[0]), 1009);
        let big = base64::engine::general_purpose::STANDARD.encode([0u8; 65]);
        assert_eq!(code(&decode_post_body(big.as_bytes(), true, 64)[0]), 1009);
    }

    #[test]
    fn other_content_types_post_one_text_frame() {
        assert_eq!(
            decode_post_body(b"[1]\n[2]", false, 64),
            vec![PostedFrame::Text("[1]\n[2]".into())]
        );
    }
}
