//! The API under test, wired as the binary wires it but over a store in a temp dir and a
//! standalone tracker (no pipeline, no broker): shared by the router, OpenAPI, page and
//! browser tests.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use axum::Router;
use landport_api::web::{self, MapSettings};
use landport_api::{ApiState, AppState, router_with_api};
use landport_ingest::decode::Limits;
use landport_ingest::metrics::Metrics;
use landport_ingest::pipeline::{IngestSettings, Ingestor, TrackerHandle};
use landport_ingest::topic::OwnTracksTenants;
use landport_tracker::{Event, Tracker, TrackerSettings};
use tokio::sync::broadcast;

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
        let ingestor = Ingestor::new(
            Tracker::new(TrackerSettings::default()),
            IngestSettings {
                limits: Limits::default(),
                owntracks: OwnTracksTenants {
                    default_tenant: "default".into(),
                    by_user: HashMap::new(),
                },
                auto_register: false,
            },
            metrics.clone(),
        );
        let tracker = TrackerHandle::standalone(ingestor);
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
