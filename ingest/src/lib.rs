//! landport-ingest
