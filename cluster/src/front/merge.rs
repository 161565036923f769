//! Merging the answers of every partition into the one answer a single node would give: pure
//! functions over the shards' JSON bodies, in partition order.
//!
//! - Keyed lists (`/v1/devices`, `/v1/shipments`, `/v1/geofences/{id}/devices`): each shard
//!   answers the first `limit` of its own items after the cursor, sorted by key; the merge is
//!   the first `limit` of all of them by key, and the cursor the key of the last one kept, the
//!   same opaque cursor a single node makes (so a page's `next` is good for any partition).
//! - `/v1/devices/nearby`: nearest first over every partition, cut to `limit`.
//! - `/v1/positions`: one FeatureCollection, by tenant and device id.
//! - `/v1/events`: each partition has its own event numbers; the merged page takes events
//!   from the partitions' pages in time order (a k-way merge of the heads, so each
//!   partition's share is a prefix of its page, in its own order) and the cursor is composite:
//!   one number per partition ([`EventCursor`]).
//! - `/v1/webhooks/{id}/deliveries`: as events, by queue time, the composite cursor made of
//!   each partition's last delivery number.
//! - `/v1/reports/geofence-visits`: every visit, by entry time.

use std::borrow::Cow;

use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

/// A shard's answer that is not what the merge expects (a bug or a version mismatch).
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("partition {partition} answered an unexpected body: {why}")]
pub struct MergeError {
    pub partition: u32,
    pub why: String,
}

fn bad(partition: u32, why: impl Into<String>) -> MergeError {
    MergeError {
        partition,
        why: why.into(),
    }
}

/// The array under `list` of a shard's body.
fn items<'a>(partition: u32, body: &'a Value, list: &str) -> Result<&'a Vec<Value>, MergeError> {
    body.get(list)
        .and_then(Value::as_array)
        .ok_or_else(|| bad(partition, format!("no {list:?} array")))
}

/// How an item of a keyed list is keyed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// `(tenant, id)`: devices, shipments.
    TenantId,
    /// `id`: the devices inside one geofence (one tenant's).
    Id,
}

impl Key {
    fn of(self, item: &Value) -> Option<Vec<String>> {
        let s = |k: &str| item.get(k).and_then(Value::as_str).map(str::to_owned);
        match self {
            Key::TenantId => Some(vec![s("tenant")?, s("id")?]),
            Key::Id => Some(vec![s("id")?]),
        }
    }
}

/// A page cursor as a single node makes it (`landport_api`'s `page::encode`): hex of the
/// key's parts, each followed by a 0 byte.
pub fn page_cursor(parts: &[String]) -> String {
    let mut out = String::new();
    for p in parts {
        for b in p.bytes().chain(std::iter::once(0)) {
            out.push_str(&format!("{b:02x}"));
        }
    }
    out
}

/// One page of a keyed list (`{list: [...], "next": CURSOR | null}`) from each partition's
/// page of the same request (`limit`, `next`).
pub fn keyed_page(
    pages: &[(u32, Value)],
    list: &str,
    key: Key,
    limit: usize,
) -> Result<Value, MergeError> {
    let mut all: Vec<(Vec<String>, &Value)> = Vec::new();
    let mut more = false;
    for (p, body) in pages {
        for item in items(*p, body, list)? {
            let k = key
                .of(item)
                .ok_or_else(|| bad(*p, format!("an item of {list:?} without its key")))?;
            all.push((k, item));
        }
        more |= body.get("next").is_some_and(|n| !n.is_null());
    }
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all.dedup_by(|a, b| a.0 == b.0);
    more |= all.len() > limit;
    all.truncate(limit);
    let next = match all.last() {
        Some((k, _)) if more => Value::String(page_cursor(k)),
        _ => Value::Null,
    };
    let out: Vec<Value> = all.into_iter().map(|(_, v)| v.clone()).collect();
    let mut body = Map::new();
    body.insert(list.to_owned(), Value::Array(out));
    body.insert("next".to_owned(), next);
    Ok(Value::Object(body))
}

/// `{"devices": [...]}` nearest first over every partition, at most `limit`.
pub fn nearby(pages: &[(u32, Value)], limit: usize) -> Result<Value, MergeError> {
    let mut all: Vec<(f64, &Value)> = Vec::new();
    for (p, body) in pages {
        for d in items(*p, body, "devices")? {
            let dist = d
                .get("distance_m")
                .and_then(Value::as_f64)
                .ok_or_else(|| bad(*p, "a nearby device without distance_m"))?;
            all.push((dist, d));
        }
    }
    // Stable: equal distances keep partition order.
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    all.truncate(limit);
    Ok(json!({"devices": all.into_iter().map(|(_, d)| d.clone()).collect::<Vec<_>>()}))
}

/// One FeatureCollection of every partition's Features, by tenant then device id (a single
/// node lists one tenant's by id). The Features are copied as the shards wrote them, not
/// re-encoded (a province box is megabytes): the merged document is byte for byte the one a
/// single node writes for a tenant's key.
pub fn positions(pages: &[(u32, &[u8])]) -> Result<Vec<u8>, MergeError> {
    #[derive(serde::Deserialize)]
    struct Collection<'a> {
        #[serde(borrow)]
        features: Vec<&'a RawValue>,
    }
    #[derive(serde::Deserialize)]
    struct Head<'a> {
        #[serde(borrow)]
        id: Cow<'a, str>,
        #[serde(borrow)]
        properties: Props<'a>,
    }
    #[derive(serde::Deserialize)]
    struct Props<'a> {
        #[serde(borrow)]
        tenant: Cow<'a, str>,
    }
    // ((tenant, id), the Feature's bytes)
    type Keyed<'a> = ((Cow<'a, str>, Cow<'a, str>), &'a RawValue);
    let mut all: Vec<Keyed<'_>> = Vec::new();
    let mut bytes = 0;
    for (p, body) in pages {
        let c: Collection<'_> = serde_json::from_slice(body)
            .map_err(|e| bad(*p, format!("not a FeatureCollection: {e}")))?;
        bytes += body.len();
        for f in c.features {
            let h: Head<'_> = serde_json::from_str(f.get())
                .map_err(|_| bad(*p, "a Feature without id or properties.tenant"))?;
            all.push(((h.properties.tenant, h.id), f));
        }
    }
    // Each page is already in order for one tenant: a nearly sorted run merge.
    all.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = Vec::with_capacity(bytes + 64);
    out.extend_from_slice(br#"{"type":"FeatureCollection","features":["#);
    for (i, (_, f)) in all.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(f.get().as_bytes());
    }
    out.extend_from_slice(b"]}");
    Ok(out)
}

/// `{"visits": [...]}` of every partition, by entry time (a partition's own order for ties).
pub fn visits(pages: &[(u32, Value)]) -> Result<Value, MergeError> {
    let mut all: Vec<(String, &Value)> = Vec::new();
    for (p, body) in pages {
        for v in items(*p, body, "visits")? {
            let at = v
                .get("entered_at")
                .and_then(Value::as_str)
                .ok_or_else(|| bad(*p, "a visit without entered_at"))?;
            all.push((at.to_owned(), v));
        }
    }
    all.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(json!({"visits": all.into_iter().map(|(_, v)| v.clone()).collect::<Vec<_>>()}))
}

/// The CSV of geofence visits of every partition: one header row, then every row by entry
/// time (the third column; ids hold no commas or quotes).
pub fn visits_csv(pages: &[(u32, &[u8])]) -> Result<Vec<u8>, MergeError> {
    let mut header: Option<&str> = None;
    let mut rows: Vec<&str> = Vec::new();
    for (p, body) in pages {
        let text = std::str::from_utf8(body).map_err(|_| bad(*p, "CSV that is not UTF-8"))?;
        let mut lines = text.lines();
        let h = lines
            .next()
            .ok_or_else(|| bad(*p, "CSV without a header"))?;
        header.get_or_insert(h);
        rows.extend(lines.filter(|l| !l.is_empty()));
    }
    rows.sort_by(|a, b| a.split(',').nth(2).cmp(&b.split(',').nth(2)));
    let mut out = String::new();
    for line in header.into_iter().chain(rows) {
        out.push_str(line);
        out.push_str("\r\n");
    }
    Ok(out.into_bytes())
}

/// The cursor of a merged event list: each partition's own cursor, in partition order.
/// Written `c` + the numbers joined by `.`; clients treat it as opaque.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventCursor(pub Vec<i64>);

impl EventCursor {
    /// The cursor of `partitions` partitions from `s` (absent or empty: the start); `None`
    /// when `s` is not a cursor of this many partitions.
    pub fn parse(s: Option<&str>, partitions: u32) -> Option<EventCursor> {
        let n = partitions as usize;
        let s = match s {
            None | Some("") => return Some(EventCursor(vec![0; n])),
            Some(s) => s,
        };
        let nums: Vec<i64> = s
            .strip_prefix('c')?
            .split('.')
            .map(|x| x.parse::<i64>().ok().filter(|v| *v >= 0))
            .collect::<Option<_>>()?;
        (nums.len() == n).then_some(EventCursor(nums))
    }
}

impl std::fmt::Display for EventCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("c")?;
        for (i, n) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            write!(f, "{n}")?;
        }
        Ok(())
    }
}

/// One page of at most `limit` events from each partition's page after `from` (a shard's page
/// holds each event's own cursor under `cursors`), and the cursor of the next page. An empty
/// page leaves the cursor where it was.
pub fn events(
    pages: &[(u32, Value)],
    from: &EventCursor,
    limit: usize,
) -> Result<Value, MergeError> {
    let mut lanes = Vec::new();
    for (p, body) in pages {
        let events = items(*p, body, "events")?;
        let cursors: Vec<i64> = items(*p, body, "cursors")?
            .iter()
            .map(|c| c.as_str().and_then(|c| c.parse().ok()))
            .collect::<Option<_>>()
            .ok_or_else(|| bad(*p, "cursors that are not numbers"))?;
        if cursors.len() != events.len() {
            return Err(bad(*p, "not one cursor per event"));
        }
        lanes.push(Lane::new(*p, events, cursors, "ts")?);
    }
    let (out, cursor, _) = k_way(lanes, from, limit)?;
    Ok(json!({"events": out, "next": cursor.to_string()}))
}

/// One page of at most `limit` deliveries of a webhook (each partition's engine delivers its
/// own partition's events) from each partition's page after `from` (a delivery's cursor is
/// the number of its id, `dlv_N`), by queue time, and the composite cursor of the next page:
/// `null` when no partition has more.
pub fn deliveries(
    pages: &[(u32, Value)],
    from: &EventCursor,
    limit: usize,
) -> Result<Value, MergeError> {
    let mut lists = Vec::new();
    let mut all_cursors = Vec::new();
    let mut more = false;
    for (p, body) in pages {
        let list = items(*p, body, "deliveries")?;
        let cursors: Vec<i64> = list
            .iter()
            .map(|d| {
                let id = d.get("id").and_then(Value::as_str)?;
                id.strip_prefix("dlv_")?.parse().ok()
            })
            .collect::<Option<_>>()
            .ok_or_else(|| bad(*p, "a delivery whose id is not dlv_N"))?;
        // Each shard numbers its own deliveries: the cluster's id names the partition too.
        let list: Vec<Value> = list
            .iter()
            .map(|d| {
                let mut d = d.clone();
                if let Some(id) = d.get("id").and_then(Value::as_str) {
                    d["id"] = Value::String(cluster_delivery_id(*p, id));
                }
                d
            })
            .collect();
        more |= body.get("next").is_some_and(|n| !n.is_null());
        lists.push((*p, list));
        all_cursors.push(cursors);
    }
    let mut lanes = Vec::new();
    for ((p, list), cursors) in lists.iter().zip(all_cursors) {
        lanes.push(Lane::new(*p, list, cursors, "queued_at")?);
    }
    let (out, cursor, left) = k_way(lanes, from, limit)?;
    let next = (more || left).then(|| cursor.to_string());
    Ok(json!({"deliveries": out, "next": next}))
}

/// A delivery's id in cluster mode: the shard's own (`dlv_17`) and its partition
/// (`dlv_17-p3`), so that a retry goes to the shard that holds it.
pub fn cluster_delivery_id(p: u32, local: &str) -> String {
    format!("{local}-p{p}")
}

/// The partition and the shard's own id of a cluster delivery id; `None` if it is not one.
pub fn parse_cluster_delivery_id(id: &str) -> Option<(u32, &str)> {
    let (local, p) = id.rsplit_once("-p")?;
    let p = p.parse().ok()?;
    local.strip_prefix("dlv_")?.parse::<i64>().ok()?;
    Some((p, local))
}

/// One partition's page in a [`k_way`] merge.
struct Lane<'a> {
    items: &'a [Value],
    /// The cursor after each item.
    cursors: Vec<i64>,
    /// The time member items are merged by (RFC 3339, one format: compared as text).
    time: &'static str,
    next: usize,
}

impl<'a> Lane<'a> {
    fn new(
        p: u32,
        items: &'a [Value],
        cursors: Vec<i64>,
        time: &'static str,
    ) -> Result<Lane<'a>, MergeError> {
        if items
            .iter()
            .any(|i| i.get(time).and_then(Value::as_str).is_none())
        {
            return Err(bad(p, format!("an item without {time}")));
        }
        Ok(Lane {
            items,
            cursors,
            time,
            next: 0,
        })
    }

    fn head_time(&self) -> &str {
        self.items[self.next][self.time].as_str().unwrap_or("")
    }
}

/// Takes up to `limit` items from the lanes (one per partition, in partition order), each
/// time the earliest head (ties: the lower partition), so each lane's share is a prefix of it;
/// returns them, the cursor after them, and whether items were left.
fn k_way(
    mut lanes: Vec<Lane<'_>>,
    from: &EventCursor,
    limit: usize,
) -> Result<(Vec<Value>, EventCursor, bool), MergeError> {
    if from.0.len() != lanes.len() {
        return Err(bad(0, "a cursor of another number of partitions"));
    }
    let mut cursor = from.clone();
    let mut out = Vec::new();
    while out.len() < limit {
        let best = lanes
            .iter()
            .enumerate()
            .filter(|(_, l)| l.next < l.items.len())
            .min_by(|(i, a), (j, b)| a.head_time().cmp(b.head_time()).then(i.cmp(j)))
            .map(|(i, _)| i);
        let Some(slot) = best else { break };
        let lane = &mut lanes[slot];
        out.push(lane.items[lane.next].clone());
        cursor.0[slot] = lane.cursors[lane.next];
        lane.next += 1;
    }
    let left = lanes.iter().any(|l| l.next < l.items.len());
    Ok((out, cursor, left))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_delivery_id_names_its_partition_and_reads_back() {
        let id = cluster_delivery_id(3, "dlv_17");
        assert_eq!(id, "dlv_17-p3");
        assert_eq!(parse_cluster_delivery_id(&id), Some((3, "dlv_17")));
        for bad in ["dlv_17", "dlv_x-p3", "dlv_17-px", "wh_1-p2", "dlv_17-p"] {
            assert_eq!(parse_cluster_delivery_id(bad), None, "{bad}");
        }
    }

    fn dev(t: &str, id: &str) -> Value {
        json!({"tenant": t, "id": id})
    }

    fn page(list: &str, items: Vec<Value>, next: Option<&str>) -> Value {
        json!({list: items, "next": next})
    }

    fn ids(v: &Value, list: &str) -> Vec<String> {
        v[list]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                format!(
                    "{}/{}",
                    d["tenant"].as_str().unwrap_or(""),
                    d["id"].as_str().unwrap()
                )
            })
            .collect()
    }

    #[test]
    fn a_keyed_page_is_the_first_limit_of_all_by_key_with_a_single_node_cursor() {
        let pages = vec![
            (
                0,
                page(
                    "devices",
                    vec![dev("a", "1"), dev("a", "3"), dev("b", "0")],
                    Some("x"),
                ),
            ),
            (1, page("devices", vec![dev("a", "2"), dev("a", "4")], None)),
        ];
        let v = keyed_page(&pages, "devices", Key::TenantId, 3).unwrap();
        assert_eq!(ids(&v, "devices"), ["a/1", "a/2", "a/3"]);
        assert_eq!(v["next"], page_cursor(&["a".into(), "3".into()]));
        // The API's own encoding: "a\0" "3\0".
        assert_eq!(v["next"], "61003300");
    }

    #[test]
    fn the_last_page_has_no_cursor_and_a_partition_with_more_keeps_one() {
        let pages = vec![
            (0, page("devices", vec![dev("a", "1")], None)),
            (1, page("devices", vec![dev("a", "2")], None)),
        ];
        let v = keyed_page(&pages, "devices", Key::TenantId, 2).unwrap();
        assert_eq!(ids(&v, "devices"), ["a/1", "a/2"]);
        assert_eq!(v["next"], Value::Null);
        // Exactly `limit` items in all, but partition 1 says it has more.
        let pages = vec![
            (0, page("devices", vec![dev("a", "1")], None)),
            (1, page("devices", vec![dev("a", "2")], Some("c"))),
        ];
        let v = keyed_page(&pages, "devices", Key::TenantId, 2).unwrap();
        assert_eq!(v["next"], page_cursor(&["a".into(), "2".into()]));
        let empty = keyed_page(
            &[(0, page("devices", vec![], None))],
            "devices",
            Key::TenantId,
            5,
        )
        .unwrap();
        assert_eq!(empty, json!({"devices": [], "next": null}));
    }

    #[test]
    fn paging_a_merged_list_visits_every_item_once_in_order() {
        // 3 partitions holding interleaved keys; each shard answers its first `limit` after
        // the cursor, as the API does.
        let all: Vec<Vec<String>> = (0..3)
            .map(|p| {
                (0..20)
                    .filter(|i| i % 3 == p)
                    .map(|i| format!("{i:02}"))
                    .collect()
            })
            .collect();
        let shard = |p: usize, after: Option<&str>, limit: usize| {
            let after_key = after.map(|c| {
                let s = String::from_utf8(
                    (0..c.len())
                        .step_by(2)
                        .map(|i| u8::from_str_radix(&c[i..i + 2], 16).unwrap())
                        .collect(),
                )
                .unwrap();
                s.split('\0').nth(1).unwrap().to_owned()
            });
            let mine: Vec<&String> = all[p]
                .iter()
                .filter(|i| after_key.as_ref().is_none_or(|a| *i > a))
                .collect();
            let more = mine.len() > limit;
            let items: Vec<Value> = mine.into_iter().take(limit).map(|i| dev("t", i)).collect();
            page("devices", items, more.then_some("more"))
        };
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..20 {
            let pages: Vec<(u32, Value)> = (0..3)
                .map(|p| (p as u32, shard(p, cursor.as_deref(), 4)))
                .collect();
            let v = keyed_page(&pages, "devices", Key::TenantId, 4).unwrap();
            seen.extend(ids(&v, "devices"));
            match v["next"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        let want: Vec<String> = (0..20).map(|i| format!("t/{i:02}")).collect();
        assert_eq!(seen, want);
    }

    #[test]
    fn a_body_without_the_list_or_keys_is_an_error_naming_the_partition() {
        let e = keyed_page(&[(3, json!({"x": 1}))], "devices", Key::TenantId, 5).unwrap_err();
        assert_eq!(e.partition, 3);
        let e = keyed_page(
            &[(1, page("devices", vec![json!({"id": "x"})], None))],
            "devices",
            Key::TenantId,
            5,
        )
        .unwrap_err();
        assert_eq!(e.partition, 1);
        assert!(
            keyed_page(
                &[(1, page("devices", vec![json!({"id": "x"})], None))],
                "devices",
                Key::Id,
                5
            )
            .is_ok()
        );
    }

    #[test]
    fn nearby_is_nearest_first_over_every_partition_cut_to_the_limit() {
        let d = |id: &str, m: f64| json!({"tenant": "t", "id": id, "distance_m": m});
        let pages = vec![
            (0, json!({"devices": [d("a", 5.0), d("b", 300.0)]})),
            (
                1,
                json!({"devices": [d("c", 1.0), d("d", 40.0), d("e", 301.0)]}),
            ),
        ];
        let v = nearby(&pages, 3).unwrap();
        assert_eq!(ids(&v, "devices"), ["t/c", "t/a", "t/d"]);
        assert!(nearby(&[(0, json!({"devices": [{"id": "x"}]}))], 3).is_err());
    }

    #[test]
    fn positions_are_one_collection_by_tenant_and_id_copied_byte_for_byte() {
        let f = |t: &str, id: &str| {
            format!(
                r#"{{"type":"Feature","id":"{id}","geometry":{{"type":"Point","coordinates":[1.5,-2.25]}},"properties":{{"tenant":"{t}","online":true,"speed_kmh":null,"geofences":["g\"1"]}}}}"#
            )
        };
        let fc = |fs: Vec<String>| {
            format!(
                r#"{{"type":"FeatureCollection","features":[{}]}}"#,
                fs.join(",")
            )
        };
        let p0 = fc(vec![f("b", "1"), f("a", "3")]);
        let p1 = fc(vec![f("a", "2")]);
        let p2 = fc(vec![]);
        let pages = vec![(0, p0.as_bytes()), (1, p1.as_bytes()), (2, p2.as_bytes())];
        let out = positions(&pages).unwrap();
        let want = fc(vec![f("a", "2"), f("a", "3"), f("b", "1")]);
        assert_eq!(String::from_utf8(out).unwrap(), want);
        // Valid JSON, as a single node writes it.
        let v: Value = serde_json::from_str(&want).unwrap();
        assert_eq!(v["features"][0]["properties"]["geofences"][0], "g\"1");
        assert_eq!(positions(&[(0, p2.as_bytes())]).unwrap(), p2.as_bytes());
        let e = positions(&[(0, p0.as_bytes()), (4, br#"{"features":[{"id":"x"}]}"#)]).unwrap_err();
        assert_eq!(e.partition, 4);
        assert_eq!(positions(&[(5, b"[1,2")]).unwrap_err().partition, 5);
    }

    fn ev(id: &str, ts: &str) -> Value {
        json!({"id": id, "type": "device.online", "tenant": "t", "device": "d", "ts": ts, "data": {}})
    }

    fn epage(events: Vec<(&str, &str, i64)>) -> Value {
        let cursors: Vec<String> = events.iter().map(|e| e.2.to_string()).collect();
        let evs: Vec<Value> = events.iter().map(|e| ev(e.0, e.1)).collect();
        json!({"events": evs, "next": cursors.last().cloned().unwrap_or_default(), "cursors": cursors})
    }

    fn event_ids(v: &Value) -> Vec<&str> {
        v["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn events_merge_in_time_order_and_the_cursor_counts_per_partition() {
        let from = EventCursor::parse(None, 2).unwrap();
        let pages = vec![
            (
                0,
                epage(vec![
                    ("a1", "2026-01-01T00:00:01.000Z", 11),
                    ("a2", "2026-01-01T00:00:05.000Z", 12),
                ]),
            ),
            (
                1,
                epage(vec![
                    ("b1", "2026-01-01T00:00:02.000Z", 7),
                    ("b2", "2026-01-01T00:00:03.000Z", 9),
                ]),
            ),
        ];
        let v = events(&pages, &from, 3).unwrap();
        assert_eq!(event_ids(&v), ["a1", "b1", "b2"]);
        // Partition 0 gave one event (cursor 11), partition 1 two (cursor 9).
        assert_eq!(v["next"], "c11.9");
        let next = EventCursor::parse(v["next"].as_str(), 2).unwrap();
        assert_eq!(next, EventCursor(vec![11, 9]));
        // Caught up: an empty page keeps the cursor.
        let empty = vec![(0, epage(vec![])), (1, epage(vec![]))];
        let v = events(&empty, &next, 3).unwrap();
        assert_eq!(event_ids(&v), Vec::<&str>::new());
        assert_eq!(v["next"], "c11.9");
    }

    #[test]
    fn a_merged_event_page_takes_a_prefix_of_each_partition_even_out_of_time_order() {
        // Partition 0's commit order is not time order: its events are taken in its own order.
        let pages = vec![
            (
                0,
                epage(vec![
                    ("a1", "2026-01-01T00:00:09.000Z", 1),
                    ("a2", "2026-01-01T00:00:01.000Z", 2),
                ]),
            ),
            (1, epage(vec![("b1", "2026-01-01T00:00:05.000Z", 1)])),
        ];
        let v = events(&pages, &EventCursor(vec![0, 0]), 2).unwrap();
        assert_eq!(event_ids(&v), ["b1", "a1"]);
        assert_eq!(v["next"], "c1.1");
    }

    #[test]
    fn event_cursors_of_another_shape_are_refused() {
        assert_eq!(
            EventCursor::parse(Some(""), 3),
            Some(EventCursor(vec![0, 0, 0]))
        );
        assert_eq!(
            EventCursor::parse(Some("c1.2.3"), 3),
            Some(EventCursor(vec![1, 2, 3]))
        );
        for bad in ["12", "c1.2", "c1.2.x", "c1.-2.3", "x1.2.3", "c", "c1..3"] {
            assert_eq!(EventCursor::parse(Some(bad), 3), None, "{bad}");
        }
        // A shard page without per-event cursors (an unpartitioned API) is an error.
        let e = events(
            &[(0, json!({"events": [], "next": "0"}))],
            &EventCursor(vec![0]),
            5,
        )
        .unwrap_err();
        assert_eq!(e.partition, 0);
        let mismatch = json!({"events": [ev("a", "2026-01-01T00:00:00.000Z")], "cursors": []});
        assert!(events(&[(0, mismatch)], &EventCursor(vec![0]), 5).is_err());
    }

    #[test]
    fn deliveries_merge_by_queue_time_with_a_composite_cursor_until_none_is_left() {
        let d = |n: i64, at: &str| json!({"id": format!("dlv_{n}"), "queued_at": at});
        let pages = vec![
            (
                0,
                json!({"deliveries": [d(4, "2026-01-01T00:00:02Z"), d(9, "2026-01-01T00:00:04Z")], "next": null}),
            ),
            (
                1,
                json!({"deliveries": [d(4, "2026-01-01T00:00:01Z"), d(5, "2026-01-01T00:00:03Z")], "next": "x"}),
            ),
        ];
        let from = EventCursor::parse(None, 2).unwrap();
        let v = deliveries(&pages, &from, 3).unwrap();
        let at: Vec<&str> = v["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["queued_at"].as_str().unwrap())
            .collect();
        assert_eq!(
            at,
            [
                "2026-01-01T00:00:01Z",
                "2026-01-01T00:00:02Z",
                "2026-01-01T00:00:03Z"
            ]
        );
        assert_eq!(v["next"], "c4.5");
        // All taken, but partition 1 has more: a cursor; none anywhere: null.
        let v = deliveries(&pages, &from, 10).unwrap();
        assert_eq!(v["next"], "c9.5");
        let last = vec![
            (0, json!({"deliveries": [], "next": null})),
            (
                1,
                json!({"deliveries": [d(7, "2026-01-01T00:00:09Z")], "next": null}),
            ),
        ];
        let v = deliveries(&last, &EventCursor(vec![9, 5]), 10).unwrap();
        assert_eq!(v["next"], Value::Null);
        assert_eq!(v["deliveries"].as_array().unwrap().len(), 1);
        let odd = vec![(0, json!({"deliveries": [{"id": "x", "queued_at": "t"}]}))];
        assert!(deliveries(&odd, &EventCursor(vec![0]), 5).is_err());
    }

    #[test]
    fn visits_merge_by_entry_time_in_json_and_csv() {
        let v = |d: &str, at: &str| json!({"device": d, "geofence": "g", "entered_at": at});
        let pages = vec![
            (
                0,
                json!({"visits": [v("a", "2026-01-01T00:00:01Z"), v("a", "2026-01-01T00:00:09Z")]}),
            ),
            (1, json!({"visits": [v("b", "2026-01-01T00:00:05Z")]})),
        ];
        let m = visits(&pages).unwrap();
        let got: Vec<&str> = m["visits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["device"].as_str().unwrap())
            .collect();
        assert_eq!(got, ["a", "b", "a"]);
        let h = "device,geofence,entered_at,exited_at,dwell_s";
        let c0 = format!("{h}\r\na,g,2026-01-01T00:00:01Z,,1\r\na,g,2026-01-01T00:00:09Z,,1\r\n");
        let c1 = format!("{h}\r\nb,g,2026-01-01T00:00:05Z,,1\r\n");
        let out = visits_csv(&[(0, c0.as_bytes()), (1, c1.as_bytes())]).unwrap();
        let out = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], h);
        assert_eq!(
            lines[1..].iter().map(|l| &l[..1]).collect::<Vec<_>>(),
            ["a", "b", "a"]
        );
    }
}
