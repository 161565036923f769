//! Validation of `[tracker]` and `[tracker.eta]`. The sections are the tracker's own settings
//! structs ([`TrackerSettings`], [`EtaSettings`]: fields, units and defaults live there);
//! here they are checked, naming the field.

use landport_tracker::{EtaSettings, TrackerSettings};

use crate::validate::Problems;

pub(crate) fn validate(s: &TrackerSettings, p: &mut Problems) {
    p.check(
        s.offline_after_seconds >= 1,
        "tracker.offline_after_seconds",
        "must be at least 1",
    );
    p.positive(s.route_corridor_m, "tracker.route_corridor_m");
    p.check(
        s.max_speed_kmh.is_finite() && s.max_speed_kmh >= 0.0,
        "tracker.max_speed_kmh",
        "must be a number >= 0 (0 = off)",
    );
    p.positive(s.weight_change_kg, "tracker.weight_change_kg");
    p.positive(s.place_radius_m, "tracker.place_radius_m");
    validate_eta(&s.eta, p);
}

pub(crate) fn validate_eta(s: &EtaSettings, p: &mut Problems) {
    p.check(
        s.detour_factor.is_finite() && s.detour_factor >= 1.0,
        "tracker.eta.detour_factor",
        "must be >= 1",
    );
    p.positive(s.default_speed_kmh, "tracker.eta.default_speed_kmh");
    p.positive(s.min_speed_kmh, "tracker.eta.min_speed_kmh");
    // Only worth saying when both are valid on their own.
    if s.default_speed_kmh.is_finite() && s.default_speed_kmh > 0.0 {
        p.check(
            !s.min_speed_kmh.is_finite() || s.min_speed_kmh <= s.default_speed_kmh,
            "tracker.eta.min_speed_kmh",
            "must not exceed tracker.eta.default_speed_kmh",
        );
    }
    p.check(
        (0.0..=1.0).contains(&s.change_fraction),
        "tracker.eta.change_fraction",
        "must be between 0 and 1",
    );
}
