//! The API under test, wired as the binary wires it but over a store in a temp dir and a
//! standalone tracker (no pipeline, no broker): shared by the router, OpenAPI, page and
//! browser tests.

#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use landport_api::web::{self, MapSettings};
use landport_api::{ApiState, AppState, router_with_api};
use landport_pipeline::metrics::Metrics;
use landport_pipeline::{Core, TrackerHandle};
use landport_tracker::{Event, Tracker, TrackerSettings};
use tokio::sync::broadcast;
use tower::ServiceExt;

pub struct TestApi {
    /// The store's directory; removed when this is dropped.
    pub dir: tempfile::TempDir,
    pub tracker: TrackerHandle,
    /// The live event broadcast, as the pipeline would feed it.
    pub events: broadcast::Sender<Arc<Event>>,
    pub api: ApiState,
    pub state: AppState,
}

impl TestApi {
    /// With `admin_key` as the configured admin key; devices must be registered.
    pub fn new(admin_key: &str) -> TestApi {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Metrics::new();
        // Devices must be registered (auto_register off), as in the service's default.
        let core = Core::new(
            Tracker::new(TrackerSettings::default()),
            false,
            metrics.clone(),
        );
        let tracker = TrackerHandle::standalone(core);
        let (events, _) = broadcast::channel(16);
        let api =
            ApiState::new(dir.path(), tracker.clone(), events.clone(), Some(admin_key)).unwrap();
        let state = AppState {
            metrics,
            ready: Arc::new(AtomicBool::new(true)),
        };
        TestApi {
            dir,
            tracker,
            events,
            api,
            state,
        }
    }

    /// `/v1`, `/openapi.json`, health and metrics.
    pub fn router(&self) -> Router {
        router_with_api(self.state.clone(), self.api.clone())
    }

    /// [`TestApi::router`] plus the pages, with `map`.
    pub fn router_with_pages(&self, map: MapSettings) -> Router {
        self.router().merge(web::router(map, self.api.clone()))
    }
}

/// How long [`SseStream::next`] waits for an item (the positions topic ticks every second).
pub const SSE_ITEM_WAIT: Duration = Duration::from_secs(10);

/// One item of a `text/event-stream`: its `event:` name (`message` if none), `id:` and `data:`
/// lines (joined by `\n`), and its comment lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseItem {
    pub event: String,
    pub id: Option<String>,
    pub data: String,
    pub comments: Vec<String>,
}

impl SseItem {
    /// The data as JSON (panics, naming the item, if it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("{self:?}: {e}"))
    }
}

/// A `/v1/stream` response read through the router, item by item.
pub struct SseStream {
    body: Body,
    /// Bytes received and not yet parsed into items.
    buf: String,
}

impl SseStream {
    /// `GET path` with `key` through `router`; returns once the stream is established: `200`,
    /// `text/event-stream`, and its first item, the `: ready` comment the handler sends once it
    /// has subscribed to the live events, has been read. An event sent after this returns is
    /// on the stream.
    pub async fn open(router: &Router, path: &str, key: &str) -> SseStream {
        let req = Request::get(path)
            .header(header::AUTHORIZATION, format!("Bearer {key}"))
            .header(header::ACCEPT, "text/event-stream")
            .body(Body::empty())
            .unwrap();
        let res = router.clone().oneshot(req).await.unwrap();
        let status = res.status();
        if status != StatusCode::OK {
            let body = res.into_body().collect().await.unwrap().to_bytes();
            panic!("GET {path}: {status} {}", String::from_utf8_lossy(&body));
        }
        let kind = res.headers()[header::CONTENT_TYPE].to_str().unwrap();
        assert!(kind.starts_with("text/event-stream"), "GET {path}: {kind}");
        let mut stream = SseStream {
            body: res.into_body(),
            buf: String::new(),
        };
        let first = stream.next_raw().await;
        assert_eq!(
            (first.comments.as_slice(), first.data.as_str()),
            (["ready".to_owned()].as_slice(), ""),
            "GET {path}: the stream opens with the `: ready` comment, got {first:?}"
        );
        stream
    }

    /// The next item that carries data (comments alone, such as keep-alives, are skipped);
    /// panics after [`SSE_ITEM_WAIT`].
    pub async fn next(&mut self) -> SseItem {
        loop {
            let item = self.next_raw().await;
            if item.event != "message" || !item.data.is_empty() {
                return item;
            }
        }
    }

    /// The next item named `event`, skipping items of other names; panics after
    /// [`SSE_ITEM_WAIT`] for each item.
    pub async fn next_named(&mut self, event: &str) -> SseItem {
        loop {
            let item = self.next().await;
            if item.event == event {
                return item;
            }
        }
    }

    /// The next item, comments alone included.
    async fn next_raw(&mut self) -> SseItem {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                return parse_item(&block);
            }
            let frame = tokio::time::timeout(SSE_ITEM_WAIT, self.body.frame())
                .await
                .unwrap_or_else(|_| panic!("no SSE item within {SSE_ITEM_WAIT:?}"))
                .expect("the stream ended")
                .expect("reading the stream");
            if let Ok(data) = frame.into_data() {
                self.buf.push_str(std::str::from_utf8(&data).unwrap());
            }
        }
    }
}

/// One SSE block (its lines up to the blank line), as the SSE spec parses it.
fn parse_item(block: &str) -> SseItem {
    let mut item = SseItem {
        event: "message".to_owned(),
        id: None,
        data: String::new(),
        comments: Vec::new(),
    };
    let mut data = Vec::new();
    for line in block.lines().filter(|l| !l.is_empty()) {
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "" => item.comments.push(value.to_owned()),
            "event" => item.event = value.to_owned(),
            "id" => item.id = Some(value.to_owned()),
            "data" => data.push(value),
            _ => {}
        }
    }
    item.data = data.join("\n");
    item
}
