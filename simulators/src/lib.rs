//! landport-simulators
