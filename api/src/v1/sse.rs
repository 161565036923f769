//! Server-sent events framed once and shared: an item is turned into its wire bytes
//! (`event:`, `id:`, `data:` lines) when it is made, and every live map watching the same feed
//! sends a clone of the same [`Item`] (a reference count, not a copy).
//!
//! axum's `Sse` frames each client's events itself, copying the data into a buffer per client
//! and scanning it for line breaks: with a hundred live maps of a 100,000-device tenant that
//! was a 30 MB copy per map for the first item, ~3 GB at once when they opened together, and
//! every second's changes copied a hundred times (BENCHMARKS.md, "the read side"). axum has no
//! way to hand it bytes framed beforehand, hence this small writer.
//!
//! **gzip, compressed once for every viewer.** A client that accepts gzip (every browser does)
//! gets the stream gzip-encoded: a busy tenant's positions are several MB a second per live
//! map, about 8.6x fewer bytes compressed (docs/architecture.md, "Dependencies chosen"). A compressing layer (tower-http's) would run one
//! compressor per connection, a hundred times the work for a hundred maps of one feed. Here
//! each item is deflated once, the first time a gzip stream sends it, into a self-contained
//! piece of a deflate stream: a fresh compressor (so no back-reference reaches outside the
//! item) ended by a sync flush (so it ends on a byte boundary and is not the last block). Any
//! number of such pieces, in any order, after a gzip header, are a valid gzip stream; each
//! stream only keeps the running CRC-32 and length of what it sent (combined from each item's
//! own), for the trailer it writes if the stream ends.

use std::convert::Infallible;
use std::sync::{Arc, LazyLock, OnceLock};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use flate2::{Compress, Compression, FlushCompress};
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

/// One framed SSE item, cheap to clone and share among streams: its bytes and, made once
/// when a gzip stream first sends it, its deflated piece (see the module docs).
#[derive(Clone)]
pub struct Item(Arc<ItemInner>);

struct ItemInner {
    plain: Bytes,
    deflated: OnceLock<Deflated>,
}

/// An item as a self-contained piece of a deflate stream, with the CRC-32 (and length) of the
/// bytes it stands for.
struct Deflated {
    bytes: Bytes,
    crc: crc32fast::Hasher,
}

impl Item {
    /// The item's bytes as framed.
    pub fn bytes(&self) -> &Bytes {
        &self.0.plain
    }

    fn deflated(&self) -> &Deflated {
        self.0.deflated.get_or_init(|| deflate(&self.0.plain))
    }
}

impl From<Bytes> for Item {
    fn from(plain: Bytes) -> Item {
        Item(Arc::new(ItemInner {
            plain,
            deflated: OnceLock::new(),
        }))
    }
}

impl std::fmt::Debug for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Item")
            .field("len", &self.0.plain.len())
            .finish_non_exhaustive()
    }
}

/// Deflates `plain` alone: a fresh compressor at the fastest level (a live map's second of
/// changes is a few MB; level 1 already takes it to about an eighth), ended by a sync flush.
fn deflate(plain: &[u8]) -> Deflated {
    let mut c = Compress::new(Compression::fast(), false);
    let mut out = Vec::with_capacity(plain.len() / 4 + 64);
    let bytes = loop {
        let fed = usize::try_from(c.total_in()).unwrap_or(plain.len());
        // The loop gives the compressor room until the whole input is in and the flush fit
        // with room to spare, which is how zlib says a sync flush is complete.
        if c.compress_vec(
            &plain[fed.min(plain.len())..],
            &mut out,
            FlushCompress::Sync,
        )
        .is_err()
        {
            // Only misuse fails in memory; should it happen, the item goes out uncompressed.
            break stored(plain);
        }
        let all_in = usize::try_from(c.total_in()).is_ok_and(|n| n >= plain.len());
        if all_in && out.len() < out.capacity() {
            break out;
        }
        out.reserve(out.capacity().max(1024));
    };
    let mut crc = crc32fast::Hasher::new();
    crc.update(plain);
    Deflated {
        bytes: Bytes::from(bytes),
        crc,
    }
}

/// `plain` as stored (uncompressed) deflate blocks, none of them final (RFC 1951, 3.2.4).
fn stored(plain: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(plain.len() + plain.len() / 65_535 * 5 + 5);
    for block in plain
        .chunks(65_535)
        .chain(plain.is_empty().then_some(&[][..]))
    {
        let len = block.len() as u16;
        out.push(0); // BFINAL 0, BTYPE 00: stored, byte-aligned
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    out
}

/// The gzip member header: deflate, no flags, no time, unknown OS (RFC 1952).
const GZIP_HEADER: &[u8] = &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
/// An empty final block of fixed codes, which ends the deflate stream.
const DEFLATE_END: &[u8] = &[0x03, 0x00];

/// The keep-alive comment, framed (and deflated) once.
static KEEP_ALIVE_ITEM: LazyLock<Item> = LazyLock::new(|| Item::from(Bytes::from_static(b":\n\n")));

/// `true` if the request's `Accept-Encoding` takes gzip: `gzip` (or `x-gzip`, or `*` where
/// gzip is not named) with a quality above zero (RFC 9110, 12.5.3).
pub fn accepts_gzip(headers: &HeaderMap) -> bool {
    let mut star = false;
    for value in headers.get_all(header::ACCEPT_ENCODING) {
        let Ok(value) = value.to_str() else { continue };
        for part in value.split(',') {
            let mut params = part.split(';');
            let coding = params.next().unwrap_or("").trim();
            let q = params
                .filter_map(|p| p.trim().strip_prefix("q=").or(p.trim().strip_prefix("Q=")))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
                return q > 0.0;
            }
            if coding == "*" {
                star = q > 0.0;
            }
        }
    }
    star
}

/// A `text/event-stream` response sending `items` as they come, and a keep-alive comment
/// after [`KEEP_ALIVE`] without any; it ends when `items` does. gzip-encoded when the request
/// (its `headers`) accepts it. A large item (a live map's first collection, tens of MB) goes
/// out as slices of [`crate::WRITE_BYTES`] (the same bytes, not copied), so that no single
/// write to the socket is larger (see there).
pub fn response<I>(headers: &HeaderMap, items: impl Stream<Item = I> + Send + 'static) -> Response
where
    I: Into<Item> + 'static,
{
    let items = Box::pin(items.map(Into::into));
    let with_keep_alive = futures_util::stream::unfold(items, |mut items| async move {
        let next = match tokio::time::timeout(KEEP_ALIVE, items.next()).await {
            Ok(Some(item)) => item,
            Ok(None) => return None,
            Err(_) => KEEP_ALIVE_ITEM.clone(),
        };
        Some((next, items))
    });
    let gzip = accepts_gzip(headers);
    let body: std::pin::Pin<Box<dyn Stream<Item = Bytes> + Send>> = if gzip {
        Box::pin(gzip_stream(with_keep_alive))
    } else {
        Box::pin(with_keep_alive.map(|item| item.bytes().clone()))
    };
    let body = body.flat_map(|b| futures_util::stream::iter(slices(b).map(Ok::<_, Infallible>)));
    let mut res = (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::VARY, "accept-encoding"),
        ],
        Body::from_stream(body),
    )
        .into_response();
    if gzip {
        res.headers_mut().insert(
            header::CONTENT_ENCODING,
            header::HeaderValue::from_static("gzip"),
        );
    }
    res
}

/// `items` as one gzip stream: the header, each item's deflated piece, and the trailer when
/// `items` ends.
fn gzip_stream(items: impl Stream<Item = Item> + Send + 'static) -> impl Stream<Item = Bytes> {
    struct Gzip<S> {
        items: std::pin::Pin<Box<S>>,
        started: bool,
        crc: crc32fast::Hasher,
        /// Bytes sent, before compression.
        len: u64,
        done: bool,
    }
    let state = Gzip {
        items: Box::pin(items),
        started: false,
        crc: crc32fast::Hasher::new(),
        len: 0,
        done: false,
    };
    futures_util::stream::unfold(state, |mut g| async move {
        if g.done {
            return None;
        }
        let mut out = Vec::with_capacity(2);
        match g.items.next().await {
            Some(item) => {
                if !g.started {
                    g.started = true;
                    out.push(Bytes::from_static(GZIP_HEADER));
                }
                let d = item.deflated();
                g.crc.combine(&d.crc);
                g.len += item.bytes().len() as u64;
                out.push(d.bytes.clone());
            }
            None => {
                g.done = true;
                out.push(Bytes::from(gzip_trailer(g.started, &g.crc, g.len)));
            }
        }
        Some((futures_util::stream::iter(out), g))
    })
    .flatten()
}

/// What ends a gzip stream after pieces of `len` bytes (before compression) whose CRC-32 `crc`
/// holds (the header too if none went out).
fn gzip_trailer(started: bool, crc: &crc32fast::Hasher, len: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(GZIP_HEADER.len() + 10);
    if !started {
        out.extend_from_slice(GZIP_HEADER);
    }
    out.extend_from_slice(DEFLATE_END);
    out.extend_from_slice(&crc.clone().finalize().to_le_bytes());
    // ISIZE: the length modulo 2^32.
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out
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

    /// What a gzip client reads of `items` sent as one stream: the decoded bytes of the
    /// whole stream if it ended (trailer checked), else of what arrived so far.
    fn gunzip(body: &[u8], ended: bool) -> Vec<u8> {
        use std::io::Read;
        if ended {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(body)
                .read_to_end(&mut out)
                .expect("a valid gzip stream with a matching CRC-32 and length");
            return out;
        }
        // A stream still open: inflate what came, as a browser does while it reads.
        assert_eq!(&body[..GZIP_HEADER.len()], GZIP_HEADER);
        let mut d = flate2::Decompress::new(false);
        let mut out = Vec::with_capacity(body.len() * 16 + 64);
        d.decompress_vec(
            &body[GZIP_HEADER.len()..],
            &mut out,
            flate2::FlushDecompress::Sync,
        )
        .expect("valid deflate data");
        assert_eq!(d.total_in() as usize, body.len() - GZIP_HEADER.len());
        out
    }

    async fn gzip_body(items: Vec<Item>) -> Vec<u8> {
        gzip_stream(futures_util::stream::iter(items))
            .collect::<Vec<Bytes>>()
            .await
            .concat()
    }

    #[tokio::test]
    async fn a_gzip_stream_of_shared_items_decodes_to_the_items_open_or_ended() {
        // A large item (incompressible and repetitive parts), small ones, an empty one.
        let mut big = Vec::new();
        let mut x: u64 = 7;
        for i in 0..40_000u64 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            big.extend_from_slice(format!("{{\"id\":\"t{i}\",\"lon\":{}}},", x >> 40).as_bytes());
        }
        let shared = Item::from(frame("positions", None, &big));
        let items = vec![
            Item::from(comment("ready")),
            shared.clone(),
            Item::from(frame("event", Some("evt_1"), b"{\"a\":1}")),
            Item::from(Bytes::new()),
            shared.clone(),
            KEEP_ALIVE_ITEM.clone(),
        ];
        let plain: Vec<u8> = items.iter().flat_map(|i| i.bytes().to_vec()).collect();
        let body = gzip_body(items.clone()).await;
        assert!(
            body.len() * 3 < plain.len(),
            "{} of {}",
            body.len(),
            plain.len()
        );
        assert_eq!(gunzip(&body, true), plain, "ended: trailer included");
        // Open: everything up to the last item, before any trailer.
        let open_len = body.len() - (DEFLATE_END.len() + 8);
        assert_eq!(gunzip(&body[..open_len], false), plain);
        // The shared item was deflated once, and its piece is the same bytes in both places.
        let piece = &shared.deflated().bytes;
        let first = body
            .windows(piece.len())
            .position(|w| w == &piece[..])
            .unwrap();
        let again = body[first + 1..]
            .windows(piece.len())
            .position(|w| w == &piece[..]);
        assert!(again.is_some(), "the same piece sent twice");
        // Another stream of the same items, in another order, decodes too.
        let mut reordered = items;
        reordered.reverse();
        let plain2: Vec<u8> = reordered.iter().flat_map(|i| i.bytes().to_vec()).collect();
        assert_eq!(gunzip(&gzip_body(reordered).await, true), plain2);
        // A stream that ends before any item is a valid empty gzip stream.
        assert_eq!(gunzip(&gzip_body(Vec::new()).await, true), b"");
    }

    #[test]
    fn the_uncompressed_fallback_is_a_valid_piece_too() {
        for len in [0, 1, 65_535, 65_536, 200_000] {
            let plain: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut body = GZIP_HEADER.to_vec();
            body.extend_from_slice(&stored(&plain));
            assert_eq!(gunzip(&body, false), plain, "{len} bytes");
        }
    }

    #[test]
    fn gzip_is_used_only_when_the_client_accepts_it() {
        let accepts = |values: &[&str]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append(header::ACCEPT_ENCODING, v.parse().unwrap());
            }
            accepts_gzip(&h)
        };
        assert!(accepts(&["gzip, deflate, br, zstd"]), "a browser");
        assert!(accepts(&["deflate", "GZIP;q=0.5"]));
        assert!(accepts(&["x-gzip"]));
        assert!(accepts(&["*"]));
        assert!(!accepts(&[]), "curl without --compressed");
        assert!(!accepts(&["identity"]));
        assert!(!accepts(&["br, gzip;q=0"]));
        assert!(
            !accepts(&["gzip; q=0.0, *"]),
            "gzip refused by name wins over *"
        );
        assert!(!accepts(&["*;q=0"]));
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
