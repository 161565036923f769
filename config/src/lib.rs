//! landport-config
