//! Server-sent events framed once and shared: an item is turned into its wire bytes
//! (`event:`, `id:`, `data:` lines) when it is made, and every live map watching the same feed
//! sends a clone of the same [`Bytes`] (a reference count, not a copy).
//!
//! axum's `Sse` frames each client's events itself, copying the data into a buffer per client
//! and scanning it for line breaks: with a hundred live maps of a 100,000-device tenant that
//! was a 30 MB copy per map for the first item, ~3 GB at once when they opened together, and
//! every second's changes copied a hundred times (BENCHMARKS.md, "the read side"). axum has no
//! way to hand it bytes framed beforehand, hence this small writer.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt};

/// A comment line sent when nothing else went out for this long, so that proxies and clients
/// keep an idle stream open (axum's default interval).
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// One event: `event: NAME`, `id: ID` if given, `data` as `data:` lines (one per line of
/// `data`; a JSON document written compactly is one), and the blank line that ends it. Line
/// breaks in `name` or `id` are replaced by spaces rather than trusted to split fields.
pub fn frame(name: &str, id: Option<&str>, data: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(data.len() + name.len() + 32);
    field(&mut out, b"event: ", name.as_bytes());
    if let Some(id) = id {
        field(&mut out, b"id: ", id.as_bytes());
    }
    for line in data.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out.push(b'\n');
    Bytes::from(out)
}

/// `event: NAME` and the start of one `data:` line; the caller appends a document with no
/// line break in it (compact JSON) and then [`FRAME_END`].
pub fn frame_start(name: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    field(&mut out, b"event: ", name.as_bytes());
    out.extend_from_slice(b"data: ");
    out
}

/// Ends what [`frame_start`] began.
pub const FRAME_END: &[u8] = b"\n\n";

/// A comment (`: TEXT` and a blank line), ignored by SSE parsers.
pub fn comment(text: &str) -> Bytes {
    let mut out = Vec::with_capacity(text.len() + 4);
    field(&mut out, b": ", text.as_bytes());
    out.push(b'\n');
    Bytes::from(out)
}

fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend(
        value
            .iter()
            .map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b }),
    );
    out.push(b'\n');
}

/// A `text/event-stream` response sending `items` as they come, and a keep-alive comment
/// after [`KEEP_ALIVE`] without any; it ends when `items` does. A large item (a live map's
/// first collection, tens of MB) goes out as slices of [`crate::WRITE_BYTES`] (the same
/// bytes, not copied), so that no single write to the socket is larger (see there).
pub fn response(items: impl Stream<Item = Bytes> + Send + 'static) -> Response {
    let items = Box::pin(items);
    let body = futures_util::stream::unfold(items, |mut items| async move {
        let next = match tokio::time::timeout(KEEP_ALIVE, items.next()).await {
            Ok(Some(item)) => item,
            Ok(None) => return None,
            Err(_) => Bytes::from_static(b":\n\n"),
        };
        Some((next, items))
    })
    .flat_map(|item| futures_util::stream::iter(slices(item).map(Ok::<_, Infallible>)));
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

/// `item` as consecutive slices of at most [`crate::WRITE_BYTES`].
fn slices(item: Bytes) -> impl Iterator<Item = Bytes> {
    (0..item.len())
        .step_by(crate::WRITE_BYTES)
        .map(move |at| item.slice(at..(at + crate::WRITE_BYTES).min(item.len())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_item_goes_out_in_slices_of_the_same_bytes() {
        let item = Bytes::from(vec![7u8; 2 * crate::WRITE_BYTES + 5]);
        let parts: Vec<Bytes> = slices(item.clone()).collect();
        assert_eq!(
            parts.iter().map(Bytes::len).collect::<Vec<_>>(),
            [crate::WRITE_BYTES, crate::WRITE_BYTES, 5]
        );
        assert_eq!(
            parts[1].as_ptr(),
            item[crate::WRITE_BYTES..].as_ptr(),
            "not copied"
        );
        assert_eq!(parts.concat(), item);
        assert_eq!(slices(comment("x")).count(), 1);
    }

    #[test]
    fn frames_are_what_an_sse_parser_reads() {
        assert_eq!(
            &frame("event", Some("ev-1"), br#"{"a":1}"#)[..],
            b"event: event\nid: ev-1\ndata: {\"a\":1}\n\n"
        );
        assert_eq!(
            &frame("x", None, b"one\ntwo\r\nthree")[..],
            b"event: x\ndata: one\ndata: two\ndata: three\n\n"
        );
        assert_eq!(
            &frame("a\nb", Some("i\rd"), b"")[..],
            b"event: a b\nid: i d\ndata: \n\n"
        );
        assert_eq!(&comment("ready")[..], b": ready\n\n");
        let mut started = frame_start("positions");
        started.extend_from_slice(b"{}");
        started.extend_from_slice(FRAME_END);
        assert_eq!(&started[..], &frame("positions", None, b"{}")[..]);
    }
}
