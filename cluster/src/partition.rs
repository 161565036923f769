//! Which partition a device belongs to.
