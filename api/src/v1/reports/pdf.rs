//! The shipment record as a printable PDF (A4): the summary and verdict, a chart of the
//! temperature with the allowed band, the excursion table, the ETA history, the gaps, and the
//! route driven on a simple plot.
//!
//! Written with `pdf-writer` (a low-level, pure-Rust writer) and the standard Helvetica
//! fonts, which every PDF reader has: nothing to embed, so text is limited to the WinAnsi
//! (Latin-1) characters; anything else prints as `?`. Tables longer than a page continue on
//! the next one; very long ones are cut at [`MAX_ROWS`] with a line saying how many more.

use pdf_writer::{Content, Name, Pdf, Rect, Ref, Str};

use super::Record;
use crate::v1::view::rfc3339_string;

const PAGE_W: f32 = 595.0;
const PAGE_H: f32 = 842.0;
const MARGIN: f32 = 40.0;
/// Rows of one table at most.
const MAX_ROWS: usize = 200;

const REGULAR: Name = Name(b"F1");
const BOLD: Name = Name(b"F2");

/// Pages being written: the current one's content and where the next line goes.
struct Doc {
    pages: Vec<Content>,
    page: Content,
    y: f32,
}

/// Latin-1 bytes of `s` (WinAnsi agrees on the printable ASCII range, which is all we need).
fn latin1(s: &str) -> Vec<u8> {
    s.chars()
        .map(|c| {
            if (' '..='~').contains(&c) {
                c as u8
            } else {
                b'?'
            }
        })
        .collect()
}

fn time(ms: Option<i64>) -> String {
    rfc3339_string(ms).unwrap_or_else(|| "-".to_owned())
}

fn duration(s: f64) -> String {
    let s = s.max(0.0).round() as i64;
    if s >= 3600 {
        format!("{}h {:02}m {:02}s", s / 3600, s % 3600 / 60, s % 60)
    } else {
        format!("{}m {:02}s", s / 60, s % 60)
    }
}

impl Doc {
    fn new() -> Doc {
        Doc {
            pages: Vec::new(),
            page: Content::new(),
            y: PAGE_H - MARGIN,
        }
    }

    fn new_page(&mut self) {
        let done = std::mem::replace(&mut self.page, Content::new());
        self.pages.push(done);
        self.y = PAGE_H - MARGIN;
    }

    /// Makes room for `h` points, starting a page when this one is full.
    fn need(&mut self, h: f32) {
        if self.y - h < MARGIN {
            self.new_page();
        }
    }

    fn text_at(&mut self, x: f32, y: f32, font: Name, size: f32, s: &str) {
        let bytes = latin1(s);
        self.page
            .begin_text()
            .set_font(font, size)
            .next_line(x, y)
            .show(Str(&bytes))
            .end_text();
    }

    /// A line of text at the left margin.
    fn line(&mut self, font: Name, size: f32, s: &str) {
        self.need(size + 4.0);
        self.y -= size + 4.0;
        let y = self.y;
        self.text_at(MARGIN, y, font, size, s);
    }

    fn gap(&mut self, h: f32) {
        self.y -= h;
    }

    /// A table: a bold header row, then rows, columns at `xs` (offsets from the margin).
    fn table(&mut self, xs: &[f32], header: &[&str], rows: &[Vec<String>]) {
        self.need(30.0);
        self.y -= 13.0;
        for (x, h) in xs.iter().zip(header) {
            let y = self.y;
            self.text_at(MARGIN + x, y, BOLD, 9.0, h);
        }
        for row in rows.iter().take(MAX_ROWS) {
            self.need(13.0);
            self.y -= 12.0;
            for (x, cell) in xs.iter().zip(row) {
                let y = self.y;
                self.text_at(MARGIN + x, y, REGULAR, 9.0, cell);
            }
        }
        if rows.len() > MAX_ROWS {
            self.line(
                REGULAR,
                9.0,
                &format!("... and {} more", rows.len() - MAX_ROWS),
            );
        }
    }

    fn finish(mut self) -> Vec<Content> {
        self.pages.push(self.page);
        self.pages
    }
}

/// The temperature chart: the allowed band shaded, each time bucket's min..max drawn as a
/// line through the buckets, axes labelled with the temperatures and the range's ends.
fn chart(doc: &mut Doc, r: &Record) {
    let h = 170.0;
    doc.need(h + 40.0);
    doc.line(BOLD, 12.0, "Temperature (deg C)");
    let (x0, w) = (MARGIN + 40.0, PAGE_W - 2.0 * MARGIN - 50.0);
    let y0 = doc.y - h - 6.0;
    let (Some(f), Some(t)) = (r.from_ms, r.to_ms) else {
        doc.line(REGULAR, 10.0, "No range recorded yet.");
        return;
    };
    if r.temp_series.is_empty() {
        doc.line(REGULAR, 10.0, "No temperature readings in the range.");
        return;
    }
    let mut lo = r
        .temp_series
        .iter()
        .map(|p| p.1)
        .fold(f64::INFINITY, f64::min);
    let mut hi = r
        .temp_series
        .iter()
        .map(|p| p.2)
        .fold(f64::NEG_INFINITY, f64::max);
    if let Some([a, b]) = r.temp_range_c {
        lo = lo.min(a);
        hi = hi.max(b);
    }
    let pad = ((hi - lo) * 0.1).max(0.5);
    let (lo, hi) = (lo - pad, hi + pad);
    let span_ms = (t - f).max(1) as f64;
    let px = |ts: i64| x0 + ((ts - f) as f64 / span_ms) as f32 * w;
    let py = |c: f64| y0 + ((c - lo) / (hi - lo)) as f32 * h;
    let c = &mut doc.page;
    // the allowed band
    if let Some([a, b]) = r.temp_range_c {
        c.save_state();
        c.set_fill_rgb(0.85, 0.95, 0.85);
        c.rect(x0, py(a), w, py(b) - py(a));
        c.fill_nonzero();
        c.restore_state();
    }
    // frame
    c.set_line_width(0.5);
    c.set_stroke_rgb(0.4, 0.4, 0.4);
    c.rect(x0, y0, w, h);
    c.stroke();
    // the series: min and max of each bucket
    c.set_line_width(1.0);
    c.set_stroke_rgb(0.1, 0.3, 0.8);
    for (i, (ts, mn, mx)) in r.temp_series.iter().enumerate() {
        let (x, a, b) = (px(*ts), py(*mn), py(*mx));
        if i == 0 {
            c.move_to(x, a);
        } else {
            c.line_to(x, a);
        }
        if b > a {
            c.line_to(x, b);
        }
    }
    c.stroke();
    // excursions marked along the bottom
    c.set_fill_rgb(0.85, 0.1, 0.1);
    for e in &r.cold.excursions {
        let a = px(e.begin_ms);
        let b = px(e.end_ms.unwrap_or(e.last_out_ms)).max(a + 1.0);
        c.rect(a, y0, b - a, 4.0);
    }
    c.fill_nonzero();
    c.set_fill_rgb(0.0, 0.0, 0.0);
    let labels = [
        (x0 - 38.0, y0 - 2.0, format!("{lo:.1}")),
        (x0 - 38.0, y0 + h - 8.0, format!("{hi:.1}")),
        (x0, y0 - 12.0, time(Some(f))),
        (x0 + w - 115.0, y0 - 12.0, time(Some(t))),
    ];
    for (x, y, s) in labels {
        doc.text_at(x, y, REGULAR, 8.0, &s);
    }
    if let Some([a, b]) = r.temp_range_c {
        doc.text_at(
            x0 + 4.0,
            py(b) + 2.0,
            REGULAR,
            7.0,
            &format!("allowed {a} .. {b}"),
        );
    }
    doc.y = y0 - 18.0;
}

/// The route driven, scaled into a square (longitude shrunk by cos(latitude)).
fn route_plot(doc: &mut Doc, r: &Record) {
    let side = 260.0;
    doc.need(side + 30.0);
    doc.line(BOLD, 12.0, "Route driven");
    if r.route.len() < 2 {
        doc.line(REGULAR, 10.0, "No positions in the range.");
        return;
    }
    let (mut x_lo, mut x_hi, mut y_lo, mut y_hi) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    let k = r.route[0].1.to_radians().cos().max(0.01);
    for (lon, lat) in &r.route {
        x_lo = x_lo.min(lon * k);
        x_hi = x_hi.max(lon * k);
        y_lo = y_lo.min(*lat);
        y_hi = y_hi.max(*lat);
    }
    let extent = (x_hi - x_lo).max(y_hi - y_lo).max(1e-6);
    let (ox, oy) = (MARGIN + 10.0, doc.y - side - 6.0);
    // centred in the square along the shorter side
    let (cx, cy) = (
        (extent - (x_hi - x_lo)) / 2.0,
        (extent - (y_hi - y_lo)) / 2.0,
    );
    let sx = |lon: f64| ox + ((lon * k - x_lo + cx) / extent) as f32 * side;
    let sy = |lat: f64| oy + ((lat - y_lo + cy) / extent) as f32 * side;
    let c = &mut doc.page;
    c.set_line_width(0.5);
    c.set_stroke_rgb(0.6, 0.6, 0.6);
    c.rect(ox - 5.0, oy - 5.0, side + 10.0, side + 10.0);
    c.stroke();
    c.set_line_width(1.2);
    c.set_stroke_rgb(0.1, 0.3, 0.8);
    for (i, (lon, lat)) in r.route.iter().enumerate() {
        if i == 0 {
            c.move_to(sx(*lon), sy(*lat));
        } else {
            c.line_to(sx(*lon), sy(*lat));
        }
    }
    c.stroke();
    let (first, last) = (r.route[0], r.route[r.route.len() - 1]);
    c.set_fill_rgb(0.1, 0.6, 0.1);
    c.rect(sx(first.0) - 3.0, sy(first.1) - 3.0, 6.0, 6.0);
    c.fill_nonzero();
    c.set_fill_rgb(0.8, 0.1, 0.1);
    c.rect(sx(last.0) - 3.0, sy(last.1) - 3.0, 6.0, 6.0);
    c.fill_nonzero();
    c.set_fill_rgb(0.0, 0.0, 0.0);
    let x_note = ox + side + 20.0;
    doc.text_at(x_note, oy + side - 10.0, REGULAR, 9.0, "green: start");
    doc.text_at(x_note, oy + side - 22.0, REGULAR, 9.0, "red: end");
    let km = extent * 111.32;
    doc.text_at(
        x_note,
        oy + side - 34.0,
        REGULAR,
        9.0,
        &format!("box side ~{km:.1} km"),
    );
    doc.y = oy - 14.0;
}

/// The whole document; `now_ms` is when it was made (printed in the footer line).
pub(crate) fn render(r: &Record, now_ms: i64) -> Vec<u8> {
    let mut doc = Doc::new();
    doc.line(BOLD, 18.0, &format!("Shipment record {}", r.shipment));
    doc.line(
        REGULAR,
        9.0,
        &format!("Made by Landport at {}", time(Some(now_ms))),
    );
    doc.gap(6.0);
    let verdict = r.cold.verdict.as_str().to_uppercase();
    let (cr, cg, cb) = match r.cold.verdict {
        landport_tracker::reports::Verdict::Compliant => (0.1, 0.55, 0.1),
        landport_tracker::reports::Verdict::Excursion => (0.8, 0.1, 0.1),
        landport_tracker::reports::Verdict::Incomplete => (0.85, 0.5, 0.0),
    };
    doc.page.set_fill_rgb(cr, cg, cb);
    doc.line(BOLD, 16.0, &format!("Verdict: {verdict}"));
    doc.page.set_fill_rgb(0.0, 0.0, 0.0);
    let place = |v: &Option<serde_json::Value>| match v {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Object(p)) => format!(
            "{:.5}, {:.5} (lat, lon)",
            p.get("lat").and_then(|v| v.as_f64()).unwrap_or(f64::NAN),
            p.get("lon").and_then(|v| v.as_f64()).unwrap_or(f64::NAN)
        ),
        Some(other) => other.to_string(),
        None => "-".to_owned(),
    };
    let t = r.cold.temperature;
    let summary = [
        format!("Reference: {}", r.reference.as_deref().unwrap_or("-")),
        format!("Device: {}    Status: {}", r.device, r.status),
        format!(
            "Origin: {}    Destination: {}",
            place(&r.origin),
            place(&Some(r.destination.clone()))
        ),
        format!(
            "Departed: {}    Arrived: {}",
            time(r.departed_ms),
            time(r.arrived_ms)
        ),
        format!(
            "Deadline: {}    Late by: {}",
            time(r.deadline_ms),
            r.late_by_s()
                .map(duration)
                .unwrap_or_else(|| "-".to_owned())
        ),
        format!("Record covers: {} to {}", time(r.from_ms), time(r.to_ms)),
        format!(
            "Distance: planned {}    driven {:.1} km",
            r.planned_m
                .map(|m| format!("{:.1} km", m / 1000.0))
                .unwrap_or_else(|| "-".to_owned()),
            r.driven_m / 1000.0
        ),
        match r.temp_range_c {
            Some([a, b]) => format!("Allowed temperature: {a} to {b} deg C"),
            None => "Allowed temperature: not set".to_owned(),
        },
        match t {
            Some(t) => format!(
                "Temperature: {} readings, min {:.1}, max {:.1}, mean {:.2} deg C, in range {}",
                t.readings,
                t.min_c,
                t.max_c,
                t.mean_c,
                t.time_in_range_pct
                    .map(|p| format!("{p:.1} % of the covered time"))
                    .unwrap_or_else(|| "-".to_owned())
            ),
            None => "Temperature: no readings".to_owned(),
        },
        format!(
            "Excursions: {}    Gaps without readings: {}",
            r.cold.excursions.len(),
            r.cold.gaps.len()
        ),
    ];
    for s in &summary {
        doc.line(REGULAR, 10.0, s);
    }
    doc.gap(8.0);
    chart(&mut doc, r);

    doc.line(BOLD, 12.0, "Excursions");
    if r.cold.excursions.is_empty() {
        doc.line(REGULAR, 10.0, "None.");
    } else {
        let rows: Vec<Vec<String>> = r
            .cold
            .excursions
            .iter()
            .map(|e| {
                vec![
                    time(Some(e.begin_ms)),
                    e.end_ms
                        .map(|m| time(Some(m)))
                        .unwrap_or_else(|| "still out".to_owned()),
                    duration(e.duration_s()),
                    format!("{:.1}", e.peak_c),
                ]
            })
            .collect();
        doc.table(
            &[0.0, 150.0, 300.0, 400.0],
            &["Begin", "End", "Duration", "Peak (deg C)"],
            &rows,
        );
    }
    doc.gap(8.0);
    doc.line(BOLD, 12.0, "Gaps without readings");
    if r.cold.gaps.is_empty() {
        doc.line(REGULAR, 10.0, "None.");
    } else {
        let rows: Vec<Vec<String>> = r
            .cold
            .gaps
            .iter()
            .map(|g| {
                vec![
                    time(Some(g.from_ms)),
                    time(Some(g.to_ms)),
                    duration(g.duration_s()),
                ]
            })
            .collect();
        doc.table(&[0.0, 150.0, 300.0], &["From", "To", "Duration"], &rows);
    }
    doc.gap(8.0);
    doc.line(BOLD, 12.0, "ETA history");
    if r.etas.is_empty() {
        doc.line(REGULAR, 10.0, "No ETA was announced.");
    } else {
        let rows: Vec<Vec<String>> = r
            .etas
            .iter()
            .map(|p| {
                vec![
                    time(Some(p.predicted_ms)),
                    time(Some(p.eta_ms)),
                    r.arrived_ms
                        .map(|a| {
                            let e = (p.eta_ms - a) as f64 / 1000.0;
                            format!("{}{}", if e < 0.0 { "-" } else { "+" }, duration(e.abs()))
                        })
                        .unwrap_or_else(|| "-".to_owned()),
                ]
            })
            .collect();
        doc.table(
            &[0.0, 150.0, 300.0],
            &["Predicted at", "ETA", "Against arrival"],
            &rows,
        );
        doc.line(
            REGULAR,
            9.0,
            &format!("Actual arrival: {}", time(r.arrived_ms)),
        );
    }
    doc.gap(8.0);
    route_plot(&mut doc, r);

    let pages = doc.finish();
    let mut pdf = Pdf::new();
    let catalog = Ref::new(1);
    let tree = Ref::new(2);
    let regular = Ref::new(3);
    let bold = Ref::new(4);
    let first_page = 5;
    let page_ids: Vec<Ref> = (0..pages.len())
        .map(|i| Ref::new(first_page + 2 * i as i32))
        .collect();
    pdf.catalog(catalog).pages(tree);
    pdf.pages(tree)
        .kids(page_ids.iter().copied())
        .count(pages.len() as i32);
    pdf.type1_font(regular)
        .base_font(Name(b"Helvetica"))
        .encoding_predefined(Name(b"WinAnsiEncoding"));
    pdf.type1_font(bold)
        .base_font(Name(b"Helvetica-Bold"))
        .encoding_predefined(Name(b"WinAnsiEncoding"));
    for (i, content) in pages.into_iter().enumerate() {
        let id = page_ids[i];
        let content_id = Ref::new(id.get() + 1);
        let mut page = pdf.page(id);
        page.media_box(Rect::new(0.0, 0.0, PAGE_W, PAGE_H))
            .parent(tree)
            .contents(content_id);
        page.resources()
            .fonts()
            .pair(REGULAR, regular)
            .pair(BOLD, bold);
        drop(page);
        pdf.stream(content_id, &content.finish());
    }
    pdf.finish()
}
