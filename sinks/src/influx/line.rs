//! InfluxDB line protocol, written into a caller's `String` (pure: no I/O, no clock).
//!
//! ```text
//! telemetry,device=d-1,seq=42,shipment=s-9,tenant=acme lat=52.1,lon=4.3,battery_pct=87.5 1767225600123
//! events,device=d-1,geofence=depot,tenant=acme,type=geofence.entered id="evt_…",data="{\"k\":1}" 1767225600123
//! ```
//!
//! - Timestamps are the device's `ts`, epoch **milliseconds**: write with `precision=ms`.
//! - Tags are written sorted by key, the order InfluxDB stores them in (it sorts them itself
//!   otherwise). A tag whose value is empty is left out: line protocol has no empty tag value.
//! - A reading's `seq`, when it has one, is a tag (decimal): the store keeps readings with the
//!   same `ts` and different `seq` apart (SPEC 11), and InfluxDB keeps a point per series and
//!   time, so without it the later would overwrite the earlier. The price is series
//!   cardinality: each `seq` value of a device is a series of its own (see
//!   docs/configuration.md, `[influxdb]`).
//! - Every telemetry field is a float (`lat`, `lon`, `speed_kmh`, `heading_deg`, `accuracy_m`,
//!   `temp_c`, `weight_kg`, `battery_pct`), written only when present and finite, in the
//!   shortest form that reads back as the same `f64` (`zmij`). A reading with no field at all
//!   (e.g. one that carried only a `seq`) has no line: InfluxDB refuses a point without fields.
//! - Events carry two string fields, `id` and `data` (the event's `data` object as JSON).
//!
//! # Escaping (InfluxDB line protocol reference, "Special characters")
//!
//! - Tag keys, tag values and field keys: comma, equals sign and space get a backslash. A
//!   backslash is literal except in front of those three or at the end of the text, where it
//!   would escape the separator that follows, so there it is doubled.
//! - String field values are quoted with `"`; `"` and `\` inside get a backslash.
//! - A line cannot hold a newline anywhere, escaped or not: a `\n` or `\r` in a value is written
//!   as the two characters `\n` / `\r`. (Device and tenant ids never contain one: topics
//!   restrict them to `[A-Za-z0-9._-]`, and JSON from `serde_json` escapes its own newlines.)

use landport_tracker::Event;

use landport_store::TelemetryRow;

/// Measurement of the readings.
pub const TELEMETRY_MEASUREMENT: &str = "telemetry";

/// Measurement of the events.
pub const EVENTS_MEASUREMENT: &str = "events";

/// Appends the line of one stored reading, ending in `\n`, to `out`. Returns `false`, and
/// writes nothing, when the reading has no field to write.
pub fn encode_reading(out: &mut String, row: &TelemetryRow) -> bool {
    let r = &row.reading;
    let fix = r.fix.as_ref();
    let fields = [
        ("lat", fix.map(|f| f.lat)),
        ("lon", fix.map(|f| f.lon)),
        ("speed_kmh", fix.and_then(|f| f.speed_kmh)),
        ("heading_deg", fix.and_then(|f| f.heading_deg)),
        ("accuracy_m", fix.and_then(|f| f.accuracy_m)),
        ("temp_c", r.temp_c),
        ("weight_kg", r.weight_kg),
        ("battery_pct", r.battery_pct),
    ];
    if !fields.iter().any(|(_, v)| v.is_some_and(f64::is_finite)) {
        return false;
    }
    out.push_str(TELEMETRY_MEASUREMENT);
    push_tag(out, "device", &row.device);
    if let Some(seq) = r.seq {
        push_tag(out, "seq", itoa::Buffer::new().format(seq));
    }
    if let Some(shipment) = &row.shipment {
        push_tag(out, "shipment", shipment);
    }
    push_tag(out, "tenant", &row.tenant);
    let mut separator = ' ';
    let mut floats = zmij::Buffer::new();
    for (key, value) in fields {
        if let Some(v) = value.filter(|v| v.is_finite()) {
            out.push(separator);
            out.push_str(key);
            out.push('=');
            out.push_str(floats.format_finite(v));
            separator = ',';
        }
    }
    push_timestamp(out, r.ts_ms);
    true
}

/// Appends the line of one event, ending in `\n`, to `out`.
pub fn encode_event(out: &mut String, event: &Event) {
    out.push_str(EVENTS_MEASUREMENT);
    push_tag(out, "device", &event.device);
    if let Some(geofence) = &event.geofence {
        push_tag(out, "geofence", geofence);
    }
    if let Some(shipment) = &event.shipment {
        push_tag(out, "shipment", shipment);
    }
    push_tag(out, "tenant", &event.tenant);
    push_tag(out, "type", event.kind.as_str());
    out.push_str(" id=");
    push_string_field(out, &event.id);
    out.push_str(",data=");
    // Serializing a `serde_json::Value` to a string cannot fail (its map keys are strings).
    let data = serde_json::to_string(&event.data).unwrap_or_else(|_| "{}".to_owned());
    push_string_field(out, &data);
    push_timestamp(out, event.ts_ms);
}

/// `,key=value`, escaped; nothing when `value` is empty.
fn push_tag(out: &mut String, key: &str, value: &str) {
    if value.is_empty() {
        return;
    }
    out.push(',');
    push_key(out, key);
    out.push('=');
    push_key(out, value);
}

/// ` {ts_ms}\n`.
fn push_timestamp(out: &mut String, ts_ms: i64) {
    out.push(' ');
    out.push_str(itoa::Buffer::new().format(ts_ms));
    out.push('\n');
}

/// Appends a tag key, tag value or field key, escaped (see the module docs).
pub fn push_key(out: &mut String, text: &str) {
    // Ids are plain ASCII almost always: one scan, one copy.
    if !text
        .bytes()
        .any(|b| matches!(b, b',' | b'=' | b' ' | b'\\' | b'\n' | b'\r'))
    {
        out.push_str(text);
        return;
    }
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ',' | '=' | ' ' => {
                out.push('\\');
                out.push(c);
            }
            '\\' => {
                out.push('\\');
                if matches!(chars.peek(), None | Some(',' | '=' | ' ')) {
                    out.push('\\');
                }
            }
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

/// Appends a string field value: quoted, with `"` and `\` escaped (see the module docs).
pub fn push_string_field(out: &mut String, text: &str) {
    out.push('"');
    if !text
        .bytes()
        .any(|b| matches!(b, b'"' | b'\\' | b'\n' | b'\r'))
    {
        out.push_str(text);
    } else {
        for c in text.chars() {
            match c {
                '"' | '\\' => {
                    out.push('\\');
                    out.push(c);
                }
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                c => out.push(c),
            }
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use landport_tracker::{EventType, Reading};
    use serde_json::json;

    use super::*;

    fn row(device: &str, shipment: Option<&str>, reading: Reading) -> TelemetryRow {
        TelemetryRow {
            tenant: "acme".into(),
            device: device.into(),
            shipment: shipment.map(Into::into),
            reading,
            received_ms: 0,
        }
    }

    fn line(row: &TelemetryRow) -> String {
        let mut out = String::new();
        assert!(encode_reading(&mut out, row));
        out
    }

    fn key(text: &str) -> String {
        let mut out = String::new();
        push_key(&mut out, text);
        out
    }

    fn string_field(text: &str) -> String {
        let mut out = String::new();
        push_string_field(&mut out, text);
        out
    }

    #[test]
    fn a_full_reading_has_every_field_sorted_tags_and_a_millisecond_time() {
        let mut r = Reading::at(1_767_225_600_123)
            .with_position(4.25, 52.5)
            .with_speed(80.0)
            .with_accuracy(3.5)
            .with_temp(-18.25)
            .with_weight(1200.0);
        r.fix.as_mut().unwrap().heading_deg = Some(271.0);
        r.battery_pct = Some(87.5);
        assert_eq!(
            line(&row("d-1", Some("s-9"), r)),
            "telemetry,device=d-1,shipment=s-9,tenant=acme lat=52.5,lon=4.25,speed_kmh=80.0,\
             heading_deg=271.0,accuracy_m=3.5,temp_c=-18.25,weight_kg=1200.0,battery_pct=87.5 \
             1767225600123\n"
        );
    }

    #[test]
    fn only_present_fields_are_written_and_no_shipment_means_no_tag() {
        assert_eq!(
            line(&row("d-2", None, Reading::at(5).with_temp(4.0))),
            "telemetry,device=d-2,tenant=acme temp_c=4.0 5\n"
        );
        assert_eq!(
            line(&row(
                "d-2",
                Some(""),
                Reading::at(-5).with_position(1.0, 2.0)
            )),
            "telemetry,device=d-2,tenant=acme lat=2.0,lon=1.0 -5\n"
        );
    }

    #[test]
    fn a_seq_is_a_tag_in_key_order_so_that_equal_times_stay_apart() {
        let r = Reading::at(7)
            .with_temp(1.5)
            .with_seq(18_446_744_073_709_551_615);
        assert_eq!(
            line(&row("d-1", Some("s-9"), r)),
            "telemetry,device=d-1,seq=18446744073709551615,shipment=s-9,tenant=acme temp_c=1.5 7\n"
        );
        let a = line(&row("d", None, Reading::at(7).with_temp(1.0).with_seq(1)));
        let b = line(&row("d", None, Reading::at(7).with_temp(1.0).with_seq(2)));
        assert_ne!(a, b, "two series, not one point overwritten");
        assert_eq!(a, "telemetry,device=d,seq=1,tenant=acme temp_c=1.0 7\n");
    }

    #[test]
    fn a_reading_without_any_field_writes_nothing() {
        let mut out = String::from("kept");
        assert!(!encode_reading(
            &mut out,
            &row("d", None, Reading::at(1).with_seq(3))
        ));
        let mut nan = Reading::at(1);
        nan.temp_c = Some(f64::NAN);
        assert!(!encode_reading(&mut out, &row("d", None, nan)));
        assert_eq!(out, "kept");
    }

    #[test]
    fn floats_are_written_so_that_they_read_back_exactly() {
        for v in [0.1, 1e20, -1e-7, 52.123456789012345, f64::MAX, 5e-324] {
            let l = line(&row("d", None, Reading::at(0).with_temp(v)));
            let text = l
                .strip_prefix("telemetry,device=d,tenant=acme temp_c=")
                .unwrap();
            let text = text.strip_suffix(" 0\n").unwrap();
            assert_eq!(text.parse::<f64>().unwrap(), v, "{text}");
        }
    }

    #[test]
    fn tag_text_escapes_commas_equals_and_spaces() {
        assert_eq!(key("plain-id_1.x"), "plain-id_1.x");
        assert_eq!(key("a b,c=d"), r"a\ b\,c\=d");
    }

    #[test]
    fn a_backslash_is_doubled_only_where_it_would_escape_a_separator() {
        assert_eq!(key(r"a\b"), r"a\b");
        assert_eq!(key(r"a\"), r"a\\");
        assert_eq!(key(r"a\,b"), r"a\\\,b");
        assert_eq!(key("line\nbreak\r"), r"line\nbreak\r");
    }

    #[test]
    fn string_fields_are_quoted_with_quotes_and_backslashes_escaped() {
        assert_eq!(string_field("evt_1"), r#""evt_1""#);
        assert_eq!(string_field(r#"{"k":"a\b"}"#), r#""{\"k\":\"a\\b\"}""#);
        assert_eq!(string_field("a\nb"), r#""a\nb""#);
    }

    #[test]
    fn an_event_has_its_tags_id_and_data_as_json() {
        let event = Event::new(
            EventType::GeofenceEntered,
            "acme",
            "d-1",
            Some("s 1"),
            Some("depot"),
            1_000,
            0,
            json!({"name": "Depot \"A\""}),
        );
        let mut out = String::new();
        encode_event(&mut out, &event);
        assert_eq!(
            out,
            format!(
                "events,device=d-1,geofence=depot,shipment=s\\ 1,tenant=acme,type=geofence.entered \
                 id=\"{}\",data=\"{{\\\"name\\\":\\\"Depot \\\\\\\"A\\\\\\\"\\\"}}\" 1000\n",
                event.id
            )
        );
    }

    #[test]
    fn lines_append_to_the_buffer() {
        let mut out = String::new();
        let r = row("d", None, Reading::at(1).with_temp(1.0));
        assert!(encode_reading(&mut out, &r));
        assert!(encode_reading(&mut out, &r));
        assert_eq!(out.lines().count(), 2);
    }
}
