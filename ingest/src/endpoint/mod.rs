//! Landport's own MQTT endpoint (SPEC section 12): devices connect here and publish straight
//! into the pipeline.
//!
//! - [`auth`]: who a connecting client is ([`auth::Principal`], decided by an
//!   [`auth::Authenticator`] the binary backs with the store) and what it may publish and
//!   subscribe to (the ACL, pure functions).

pub mod auth;
