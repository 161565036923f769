//! Pagination of the list endpoints (SPEC 15): `?limit=` (default [`DEFAULT_LIMIT`], at most
//! [`MAX_LIMIT`]) and `?next=CURSOR`, answered as `{"<items>": [...], "next": CURSOR | null}`.
//!
//! Lists are in a stable order, by the key each names (`(tenant, id)` for devices, geofences
//! and shipments). A cursor is that key of the last item of a page, encoded so that clients
//! treat it as opaque (hex of the key's parts); the next page starts strictly after it, so an
//! item added or deleted meanwhile never makes another appear twice or go missing. `next` is
//! `null` on the last page.
//!
//! A handler takes [`PageQuery`] (its own `Query` extractor, so it combines with a handler's
//! other query parameters), turns it into a [`Page`] with [`PageQuery::page`], fetches up to
//! `page.limit + 1` items after `page.after` (the extra one says whether there is more), and
//! ends with [`Page::finish`].

use serde::Deserialize;

use crate::error::ApiError;

/// Items per page when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 100;
/// The largest `limit` accepted.
pub const MAX_LIMIT: usize = 1_000;

/// `?limit=&next=` of a list.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items per page, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// The `next` of the previous page; absent for the first page.
    pub next: Option<String>,
}

/// A checked page request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// Items on this page.
    pub limit: usize,
    /// The key of the last item of the previous page (`parts` strings); `None` = from the start.
    pub after: Option<Vec<String>>,
}

impl PageQuery {
    /// Checks `limit` and decodes `next` into a key of `parts` strings; a 400 naming the
    /// parameter otherwise.
    pub fn page(&self, parts: usize) -> Result<Page, ApiError> {
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::bad_request(format!(
                "limit must be in [1, {MAX_LIMIT}]"
            )));
        }
        let after =
            match self.next.as_deref() {
                None | Some("") => None,
                Some(c) => Some(decode(c).filter(|key| key.len() == parts).ok_or_else(|| {
                    ApiError::bad_request(format!("next: {c:?} is not a cursor"))
                })?),
            };
        Ok(Page { limit, after })
    }
}

impl Page {
    /// The `(tenant, id)` key the page starts after, for the store's paged lists.
    pub fn after_pair(&self) -> Option<(&str, &str)> {
        match self.after.as_deref() {
            Some([a, b]) => Some((a.as_str(), b.as_str())),
            _ => None,
        }
    }

    /// Whether an item with this key belongs after the cursor.
    pub fn is_after(&self, key: &[&str]) -> bool {
        match &self.after {
            None => true,
            Some(after) => key.iter().copied().gt(after.iter().map(String::as_str)),
        }
    }

    /// Cuts `items` (sorted by key, up to `limit + 1` of them, all after the cursor) to the
    /// page and returns the cursor of the next page: `None` when this is the last one.
    pub fn finish<T>(&self, items: &mut Vec<T>, key: impl Fn(&T) -> Vec<&str>) -> Option<String> {
        if items.len() <= self.limit {
            return None;
        }
        items.truncate(self.limit);
        items.last().map(|last| encode(&key(last)))
    }
}

/// The first `want` items after `after` that pass `keep`, from a source read in key order in
/// batches: `fetch(after, n)` returns up to `n` items after that key (cluster mode: a shard
/// lists only its own partition's devices and shipments, about one in N of the store's rows,
/// and a page must still be full while there are more).
pub fn filtered<T, E>(
    after: Option<(&str, &str)>,
    want: usize,
    mut fetch: impl FnMut(Option<(&str, &str)>, usize) -> Result<Vec<T>, E>,
    key: impl Fn(&T) -> (String, String),
    keep: impl Fn(&T) -> bool,
) -> Result<Vec<T>, E> {
    let batch = want.clamp(64, 4 * MAX_LIMIT);
    let mut out = Vec::new();
    let mut cursor = after.map(|(a, b)| (a.to_owned(), b.to_owned()));
    loop {
        let items = fetch(
            cursor.as_ref().map(|(a, b)| (a.as_str(), b.as_str())),
            batch,
        )?;
        let more = items.len() == batch;
        cursor = items.last().map(&key);
        out.extend(items.into_iter().filter(&keep));
        if out.len() >= want || !more {
            out.truncate(want);
            return Ok(out);
        }
    }
}

/// The cursor of a key: hex of its parts, each followed by a 0 byte (ids never hold one).
pub fn encode(parts: &[&str]) -> String {
    let mut out = String::new();
    for p in parts {
        for b in p.bytes().chain(std::iter::once(0)) {
            out.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
            out.push(char::from_digit(u32::from(b & 15), 16).unwrap_or('0'));
        }
    }
    out
}

/// The key of a cursor made by [`encode`]; `None` when it is not one.
fn decode(cursor: &str) -> Option<Vec<String>> {
    if !cursor.len().is_multiple_of(2) || cursor.len() > 4 * 1024 {
        return None;
    }
    let bytes = (0..cursor.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(cursor.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    let (last, body) = bytes.split_last()?;
    if *last != 0 {
        return None;
    }
    body.split(|b| *b == 0)
        .map(|p| String::from_utf8(p.to_vec()).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(limit: Option<usize>, next: Option<&str>) -> PageQuery {
        PageQuery {
            limit,
            next: next.map(str::to_owned),
        }
    }

    #[test]
    fn a_cursor_decodes_to_the_key_it_was_made_from() {
        let c = encode(&["acme", "truck-1"]);
        let page = query(Some(5), Some(&c)).page(2).unwrap();
        assert_eq!(page.after_pair(), Some(("acme", "truck-1")));
        assert_eq!(page.limit, 5);
    }

    #[test]
    fn limits_outside_one_to_a_thousand_and_foreign_cursors_are_refused() {
        assert_eq!(query(None, None).page(2).unwrap().limit, DEFAULT_LIMIT);
        assert!(query(Some(0), None).page(2).is_err());
        assert!(query(Some(MAX_LIMIT + 1), None).page(2).is_err());
        for bad in ["zz", "abc", "61", &encode(&["only-one"])] {
            assert!(query(None, Some(bad)).page(2).is_err(), "{bad}");
        }
    }

    #[test]
    fn filtered_reads_batches_until_the_page_is_full_or_the_source_ends() {
        let rows: Vec<(String, String)> =
            (0..1000).map(|i| ("t".into(), format!("{i:04}"))).collect();
        let fetch = |after: Option<(&str, &str)>, n: usize| {
            Ok::<_, ()>(
                rows.iter()
                    .filter(|(t, i)| after.is_none_or(|(a, b)| (t.as_str(), i.as_str()) > (a, b)))
                    .take(n)
                    .cloned()
                    .collect::<Vec<_>>(),
            )
        };
        // One in ten kept: 11 wanted takes more than one batch of 64.
        let keep = |r: &(String, String)| r.1.ends_with('7');
        let got = filtered(None, 11, fetch, Clone::clone, keep).unwrap();
        let ids: Vec<&str> = got.iter().map(|r| r.1.as_str()).collect();
        assert_eq!(ids.len(), 11);
        assert_eq!((ids[0], ids[10]), ("0007", "0107"));
        let rest = filtered(Some(("t", "0107")), 1000, fetch, Clone::clone, keep).unwrap();
        assert_eq!(rest.len(), 89);
        assert!(
            filtered(Some(("t", "0999")), 5, fetch, Clone::clone, keep)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn finish_cuts_the_extra_item_and_points_after_the_last_kept() {
        let page = query(Some(2), None).page(2).unwrap();
        let mut items = vec![("t", "a"), ("t", "b"), ("t", "c")];
        let next = page.finish(&mut items, |(t, i)| vec![*t, *i]);
        assert_eq!(items.len(), 2);
        let next = query(Some(2), next.as_deref()).page(2).unwrap();
        assert!(next.is_after(&["t", "c"]) && !next.is_after(&["t", "b"]));
        let mut last = vec![("t", "c")];
        assert_eq!(next.finish(&mut last, |(t, i)| vec![*t, *i]), None);
    }
}
