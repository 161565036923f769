//! landport-api
