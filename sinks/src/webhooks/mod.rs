//! Webhooks (SPEC 13): the engine that delivers stored events to the tenants' HTTPS endpoints,
//! signed per Standard Webhooks 1.0, at least once, across restarts.
//!
//! ```text
//! events (store, written with the readings) --fan-out, cursor `webhooks`--> webhook_deliveries
//!     --due, per webhook--> attempt tasks (reqwest, guarded DNS) --outcomes--> webhook_deliveries
//! ```
//!
//! - The outbox is the store's (`landport_store` `webhooks` module): an event is durable with
//!   its readings, and the engine's fan-out turns it into one `pending` delivery per matching
//!   webhook in the same transaction that moves its cursor. `kill -9` at any moment loses
//!   nothing: an event not yet fanned out is fanned out after the restart, and a delivery
//!   in flight is still `pending` and goes again (receivers de-duplicate by `webhook-id`, the
//!   event id).
//! - Each attempt is a task holding one of `max_concurrency` slots, at most
//!   `max_concurrency_per_webhook` per webhook: a receiver that takes 10 s per request holds
//!   its own slots and no thread; other webhooks' deliveries and ingest go on.
//! - Outcomes: any 2xx is `delivered`; 410 Gone fails the delivery and disables the webhook;
//!   anything else (a status, a timeout, a refused address) is retried on the schedule of
//!   [`schedule`] until `retry_hours` after it was queued, then `failed`.
//! - Target safety ([`resolve`]): names must not resolve to loopback, private, link-local,
//!   multicast or metadata addresses (checked on every new connection, after DNS); URLs with
//!   such a literal address are refused before each attempt; redirects are not followed; no
//!   proxy from the environment. `allow_private_targets` lifts it (tests and labs).
//!
//! Layout: [`engine`] (the driver), [`sign`] (signatures), [`schedule`] (retry times),
//! [`resolve`] (the DNS guard).

pub mod engine;
pub mod resolve;
pub mod schedule;
pub mod sign;

pub use engine::{WebhookSettings, run};
