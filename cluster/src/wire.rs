//! HTTP requests and responses carried over NATS between instances.
//!
//! A request or response is one NATS message: the body is the payload, and what HTTP says
//! around it travels in NATS headers (`Lp-Method`, `Lp-Path` with the query, `Lp-Status`, and
//! the few HTTP headers a handler reads or a client needs back). Nothing is re-encoded, so a
//! 3 MB GeoJSON answer costs one copy.

use async_nats::HeaderMap;
use axum::body::Body;
use axum::http::{self, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use bytes::Bytes;
use http_body_util::BodyExt;

/// NATS header with the HTTP method of a request.
pub const METHOD: &str = "Lp-Method";
/// NATS header with a request's path and query (`/v1/devices?limit=10`).
pub const PATH: &str = "Lp-Path";
/// NATS header with a response's HTTP status.
pub const STATUS: &str = "Lp-Status";

/// HTTP headers of a request that go along to the shard that answers it: what handlers read.
/// Anything else (hop-by-hop headers, cookies, the replication headers, which only a
/// replicated entry may set) stays behind.
const REQUEST_HEADERS: &[&str] = &[
    "authorization",
    "content-type",
    "accept",
    "x-api-key",
    "last-event-id",
];

/// HTTP headers of a response that go back to the client.
const RESPONSE_HEADERS: &[&str] = &[
    "content-type",
    "content-disposition",
    "retry-after",
    "location",
    "x-landport-tenant",
    "cache-control",
];

/// A request as it crosses NATS.
#[derive(Debug, Clone, PartialEq)]
pub struct WireRequest {
    pub method: Method,
    /// Path and query.
    pub path: String,
    /// The forwarded headers, lower-case names.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

/// A response as it crosses NATS.
#[derive(Debug, Clone, PartialEq)]
pub struct WireResponse {
    pub status: StatusCode,
    /// The forwarded headers, lower-case names.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

/// Why a message could not be read as a request or response.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("missing NATS header {0}")]
    Missing(&'static str),
    #[error("bad NATS header {0}: {1}")]
    Bad(&'static str, String),
    #[error("reading the body: {0}")]
    Body(String),
}

impl WireRequest {
    /// Takes an incoming HTTP request apart: the forwarded headers and the whole body (the
    /// API's own body limits have already applied where this is called).
    pub async fn from_http(req: Request<Body>) -> Result<WireRequest, WireError> {
        let (parts, body) = req.into_parts();
        let path = parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path().to_owned(), |p| p.as_str().to_owned());
        let headers = pick(&parts.headers, REQUEST_HEADERS);
        let body = body
            .collect()
            .await
            .map_err(|e| WireError::Body(e.to_string()))?
            .to_bytes();
        Ok(WireRequest {
            method: parts.method,
            path,
            headers,
            body,
        })
    }

    /// The HTTP request a shard's router runs.
    pub fn to_http(&self) -> Result<Request<Body>, WireError> {
        let mut b = Request::builder()
            .method(self.method.clone())
            .uri(&self.path);
        for (k, v) in &self.headers {
            b = b.header(k.as_str(), v.as_str());
        }
        b.body(Body::from(self.body.clone()))
            .map_err(|e| WireError::Bad(PATH, e.to_string()))
    }

    /// The NATS headers and payload of this request.
    pub fn to_nats(&self) -> (HeaderMap, Bytes) {
        let h = nats_headers(
            &[(METHOD, self.method.as_str()), (PATH, self.path.as_str())],
            &self.headers,
        );
        (h, self.body.clone())
    }

    /// Reads a request from a NATS message's headers and payload.
    pub fn from_nats(
        headers: Option<&HeaderMap>,
        payload: Bytes,
    ) -> Result<WireRequest, WireError> {
        let h = headers.ok_or(WireError::Missing(METHOD))?;
        let method = h.get(METHOD).ok_or(WireError::Missing(METHOD))?.as_str();
        let method = Method::from_bytes(method.as_bytes())
            .map_err(|e| WireError::Bad(METHOD, e.to_string()))?;
        let path = h
            .get(PATH)
            .ok_or(WireError::Missing(PATH))?
            .as_str()
            .to_owned();
        let headers = forwarded(h, REQUEST_HEADERS);
        Ok(WireRequest {
            method,
            path,
            headers,
            body: payload,
        })
    }

    /// The value of a forwarded header.
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

impl WireResponse {
    /// Takes a router's response apart (the whole body).
    pub async fn from_http(res: Response<Body>) -> Result<WireResponse, WireError> {
        let (parts, body) = res.into_parts();
        let headers = pick(&parts.headers, RESPONSE_HEADERS);
        let body = body
            .collect()
            .await
            .map_err(|e| WireError::Body(e.to_string()))?
            .to_bytes();
        Ok(WireResponse {
            status: parts.status,
            headers,
            body,
        })
    }

    /// A JSON response (`{"error": ...}` bodies of the front itself).
    pub fn json(status: StatusCode, value: &serde_json::Value) -> WireResponse {
        WireResponse {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: Bytes::from(serde_json::to_vec(value).unwrap_or_default()),
        }
    }

    /// The HTTP response for the client.
    pub fn to_http(&self) -> Response<Body> {
        let mut res = Response::new(Body::from(self.body.clone()));
        *res.status_mut() = self.status;
        for (k, v) in &self.headers {
            if let (Ok(k), Ok(v)) = (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(v),
            ) {
                res.headers_mut().append(k, v);
            }
        }
        res
    }

    /// The NATS headers and payload of this response.
    pub fn to_nats(&self) -> (HeaderMap, Bytes) {
        let h = nats_headers(&[(STATUS, self.status.as_str())], &self.headers);
        (h, self.body.clone())
    }

    /// Reads a response from a NATS message's headers and payload.
    pub fn from_nats(
        headers: Option<&HeaderMap>,
        payload: Bytes,
    ) -> Result<WireResponse, WireError> {
        let h = headers.ok_or(WireError::Missing(STATUS))?;
        let status = h.get(STATUS).ok_or(WireError::Missing(STATUS))?.as_str();
        let status = status
            .parse::<u16>()
            .ok()
            .and_then(|s| StatusCode::from_u16(s).ok())
            .ok_or_else(|| WireError::Bad(STATUS, status.to_owned()))?;
        let headers = forwarded(h, RESPONSE_HEADERS);
        Ok(WireResponse {
            status,
            headers,
            body: payload,
        })
    }

    /// The value of a forwarded header.
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

/// Where an instance's HTTP front hands a write (any method but GET and HEAD): the replicated
/// registry log, which every shard applies in the same order. The answer is the response of a
/// shard that applied it.
pub trait WriteLog: Send + Sync + 'static {
    fn submit(
        &self,
        req: WireRequest,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = WireResponse> + Send + '_>>;
}

/// NATS headers: `own` (ours: method, path, status) and then the forwarded HTTP headers.
fn nats_headers(own: &[(&str, &str)], forwarded: &[(String, String)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in own {
        h.insert(*k, *v);
    }
    for (k, v) in forwarded {
        h.insert(k.as_str(), v.as_str());
    }
    h
}

/// The HTTP headers of `names` a NATS message carries.
fn forwarded(h: &HeaderMap, names: &[&str]) -> Vec<(String, String)> {
    names
        .iter()
        .filter_map(|&k| h.get(k).map(|v| (k.to_owned(), v.as_str().to_owned())))
        .collect()
}

fn pick(headers: &http::HeaderMap, names: &[&str]) -> Vec<(String, String)> {
    names
        .iter()
        .filter_map(|&k| {
            let v = headers.get(k)?.to_str().ok()?;
            Some((k.to_owned(), v.to_owned()))
        })
        .collect()
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_crosses_nats_whole_and_drops_what_is_not_forwarded() {
        let req = Request::builder()
            .method("POST")
            .uri("/v1/devices?limit=5")
            .header("authorization", "Bearer k")
            .header("content-type", "application/json")
            .header("x-landport-seed", "forged")
            .body(Body::from("{\"id\":\"t1\"}"))
            .unwrap();
        let wire = WireRequest::from_http(req).await.unwrap();
        let (h, p) = wire.to_nats();
        let back = WireRequest::from_nats(Some(&h), p).unwrap();
        assert_eq!(back, wire);
        assert_eq!(back.path, "/v1/devices?limit=5");
        assert_eq!(back.header("authorization"), Some("Bearer k"));
        assert_eq!(back.header("x-landport-seed"), None);
        let http = back.to_http().unwrap();
        assert_eq!(http.method(), Method::POST);
        assert_eq!(http.uri().query(), Some("limit=5"));
    }

    #[tokio::test]
    async fn a_response_crosses_nats_whole() {
        let res = Response::builder()
            .status(404)
            .header("content-type", "application/json")
            .header("set-cookie", "x")
            .body(Body::from("{\"error\":\"no\"}"))
            .unwrap();
        let wire = WireResponse::from_http(res).await.unwrap();
        let (h, p) = wire.to_nats();
        let back = WireResponse::from_nats(Some(&h), p).unwrap();
        assert_eq!(back, wire);
        assert_eq!(back.status, StatusCode::NOT_FOUND);
        assert_eq!(back.header("set-cookie"), None);
        assert_eq!(back.to_http().status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn a_message_without_the_headers_is_an_error_not_a_panic() {
        assert!(WireRequest::from_nats(None, Bytes::new()).is_err());
        let mut h = HeaderMap::new();
        h.insert(STATUS, "abc");
        assert!(WireResponse::from_nats(Some(&h), Bytes::new()).is_err());
    }
}
