//! The HTTP side: posts a body of line protocol to InfluxDB and sorts the answer into accepted,
//! refused data (do not retry the same lines) and failures (retry later).
//!
//! Both APIs are posted with reqwest (hyper 1, rustls; the HTTP stack the rest of the service
//! uses), the body as built (a `Bytes`, no copy). A base path in the URL is kept for both.
//!
//! - v2 (`{url}/api/v2/write?org=&bucket=&precision=ms`, `Authorization: Token ...`): InfluxDB
//!   2.x, 3.x, Cloud, VictoriaMetrics. Any 2xx is accepted (InfluxDB answers 204).
//! - v1 (`{url}/write?db=&precision=ms`, basic auth when a user name is set, and
//!   `CREATE DATABASE` through `{url}/query`).

use std::fmt;
use std::time::Duration;

use bytes::Bytes;

use super::SinkError;

/// How long to wait for a TCP (and TLS) connection to the server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Characters of a server's error message kept in errors and logs.
const MESSAGE_MAX_CHARS: usize = 1_000;

/// Which write API to speak, with what it needs.
#[derive(Clone, PartialEq, Eq)]
pub enum WriteApi {
    /// InfluxDB 1.x `/write?db=` (the database is created at start when missing).
    V1 {
        database: String,
        /// Basic auth when set (user name, password).
        credentials: Option<(String, String)>,
    },
    /// `/api/v2/write` (InfluxDB 2.x, 3.x, Cloud, VictoriaMetrics...).
    V2 {
        org: String,
        bucket: String,
        token: String,
    },
}

impl fmt::Debug for WriteApi {
    /// Leaves the password and the token out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteApi::V1 {
                database,
                credentials,
            } => f
                .debug_struct("V1")
                .field("database", database)
                .field("username", &credentials.as_ref().map(|(user, _)| user))
                .finish_non_exhaustive(),
            WriteApi::V2 { org, bucket, .. } => f
                .debug_struct("V2")
                .field("org", org)
                .field("bucket", bucket)
                .finish_non_exhaustive(),
        }
    }
}

/// Why a write was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// The server refused the data itself (400, 413, 422): the same lines fail again, so the
    /// sink splits the batch to find the bad ones. InfluxDB 1.x has still written the good
    /// lines of the body ("partial write"); writing them again overwrites them with the same.
    #[error("InfluxDB refused the data ({status}): {message}")]
    Rejected { status: u16, message: String },
    /// InfluxDB 1.x answered 404: the database does not exist (yet, or any more).
    #[error("InfluxDB database not found: {message}")]
    DatabaseNotFound { message: String },
    /// Any other answer (401 and 403: credentials; 429: slow down; 5xx): retried. Credentials
    /// are a configuration problem, not the data's: splitting would throw good data away.
    #[error("InfluxDB answered {status}: {message}")]
    Status { status: u16, message: String },
    /// No answer: refused connection, timeout, broken connection, TLS failure.
    #[error("InfluxDB unreachable: {0}")]
    Transport(String),
}

impl WriteError {
    /// Sorts a non-2xx answer. `v1` tells whether a 404 means a missing database.
    pub fn from_status(v1: bool, status: u16, body: &str) -> WriteError {
        let message = server_message(body);
        match status {
            400 | 413 | 422 => WriteError::Rejected { status, message },
            404 if v1 => WriteError::DatabaseNotFound { message },
            _ => WriteError::Status { status, message },
        }
    }
}

/// The `dropped=N` that InfluxDB 1.x ends a "partial write" message with: how many points of
/// the body it refused after parsing them (lines it could not parse are not counted).
pub fn dropped_points(message: &str) -> Option<usize> {
    let at = message.rfind("dropped=")? + "dropped=".len();
    let digits = message[at..]
        .find(|c: char| !c.is_ascii_digit())
        .map_or(&message[at..], |end| &message[at..at + end]);
    digits.parse().ok()
}

/// Posts line protocol to one InfluxDB server. Cheap to clone (the connection pool is shared).
#[derive(Clone)]
pub struct InfluxWriter {
    inner: Inner,
}

#[derive(Clone)]
enum Inner {
    V1 {
        http: reqwest::Client,
        /// `{url}/write?db=..&precision=ms`, built once.
        write_url: reqwest::Url,
        /// `{url}/query`.
        query_url: reqwest::Url,
        database: String,
        credentials: Option<(String, String)>,
    },
    V2 {
        http: reqwest::Client,
        /// `{url}/api/v2/write?org=..&bucket=..&precision=ms`, built once.
        write_url: reqwest::Url,
        /// `Token {token}`, marked sensitive (left out of reqwest's debug output).
        authorization: reqwest::header::HeaderValue,
    },
}

impl fmt::Debug for InfluxWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (Inner::V1 { write_url, .. } | Inner::V2 { write_url, .. }) = &self.inner;
        f.debug_struct("InfluxWriter")
            .field("write_url", &write_url.as_str())
            .finish_non_exhaustive()
    }
}

impl InfluxWriter {
    /// A writer for the server at `url` (`http://` or `https://`); each request gives up after
    /// `request_timeout`. Fails on a URL that is not one.
    pub fn new(
        url: &str,
        api: &WriteApi,
        request_timeout: Duration,
    ) -> Result<InfluxWriter, SinkError> {
        let base =
            reqwest::Url::parse(url).map_err(|e| SinkError::InvalidUrl(format!("{url:?}: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(SinkError::InvalidUrl(format!(
                "{url:?}: must be an http:// or https:// URL"
            )));
        }
        let builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(request_timeout);
        let http = builder
            .build()
            .map_err(|e| SinkError::HttpClient(e.to_string()))?;
        // `{url}/{path}`, keeping a base path and dropping a query.
        let endpoint = |path: &str| {
            let mut u = base.clone();
            let joined = format!("{}/{path}", u.path().trim_end_matches('/'));
            u.set_path(&joined);
            u.set_query(None);
            u
        };
        let inner = match api {
            WriteApi::V1 {
                database,
                credentials,
            } => {
                let mut write_url = endpoint("write");
                write_url
                    .query_pairs_mut()
                    .append_pair("db", database)
                    .append_pair("precision", "ms");
                Inner::V1 {
                    http,
                    write_url,
                    query_url: endpoint("query"),
                    database: database.clone(),
                    credentials: credentials.clone(),
                }
            }
            WriteApi::V2 { org, bucket, token } => {
                let mut write_url = endpoint("api/v2/write");
                write_url
                    .query_pairs_mut()
                    .append_pair("org", org)
                    .append_pair("bucket", bucket)
                    .append_pair("precision", "ms");
                let mut authorization = reqwest::header::HeaderValue::from_str(&format!(
                    "Token {token}"
                ))
                .map_err(|_| {
                    SinkError::HttpClient("influxdb.token: not a valid header value".into())
                })?;
                authorization.set_sensitive(true);
                Inner::V2 {
                    http,
                    write_url,
                    authorization,
                }
            }
        };
        Ok(InfluxWriter { inner })
    }

    /// Posts `body` (lines of line protocol, times in milliseconds). `Ok` once the server has
    /// answered 2xx, i.e. accepted every line.
    pub async fn write(&self, body: Bytes) -> Result<(), WriteError> {
        match &self.inner {
            Inner::V1 {
                http,
                write_url,
                credentials,
                ..
            } => {
                let mut request = http.post(write_url.clone()).body(body);
                if let Some((user, password)) = credentials {
                    request = request.basic_auth(user, Some(password));
                }
                let response = request.send().await.map_err(transport)?;
                let status = response.status();
                if status.is_success() {
                    return Ok(());
                }
                let text = response.text().await.unwrap_or_default();
                Err(WriteError::from_status(true, status.as_u16(), &text))
            }
            Inner::V2 {
                http,
                write_url,
                authorization,
            } => {
                let response = http
                    .post(write_url.clone())
                    .header(reqwest::header::AUTHORIZATION, authorization.clone())
                    .header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8")
                    .body(body)
                    .send()
                    .await
                    .map_err(transport)?;
                let status = response.status();
                if status.is_success() {
                    return Ok(());
                }
                let text = response.text().await.unwrap_or_default();
                Err(WriteError::from_status(false, status.as_u16(), &text))
            }
        }
    }

    /// InfluxDB 1.x: creates the database unless it exists (`CREATE DATABASE` is idempotent), so
    /// that a fresh server works. Nothing to do for v2: buckets are provisioned with their token.
    pub async fn ensure_database(&self) -> Result<(), WriteError> {
        let Inner::V1 {
            http,
            query_url,
            database,
            credentials,
            ..
        } = &self.inner
        else {
            return Ok(());
        };
        let statement = format!("CREATE DATABASE {}", quote_identifier(database));
        let mut request = http.post(query_url.clone()).query(&[("q", statement)]);
        if let Some((user, password)) = credentials {
            request = request.basic_auth(user, Some(password));
        }
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(WriteError::Status {
                status: status.as_u16(),
                message: server_message(&text),
            });
        }
        // A statement error comes back as 200 with `results[0].error`.
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        match parsed.pointer("/results/0/error").and_then(|e| e.as_str()) {
            Some(error) => Err(WriteError::Status {
                status: status.as_u16(),
                message: error.to_owned(),
            }),
            None => Ok(()),
        }
    }

    /// Whether this writer speaks the v1 API.
    pub fn is_v1(&self) -> bool {
        matches!(self.inner, Inner::V1 { .. })
    }
}

/// An InfluxQL identifier in double quotes.
fn quote_identifier(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// The message of an error answer: `error` (1.x) or `message` (2.x) of a JSON body, else the
/// body; cut to [`MESSAGE_MAX_CHARS`].
fn server_message(body: &str) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let text = parsed
        .as_ref()
        .and_then(|v| v.get("error").or_else(|| v.get("message")))
        .and_then(|m| m.as_str())
        .unwrap_or(body)
        .trim();
    match text.char_indices().nth(MESSAGE_MAX_CHARS) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text.to_owned(),
    }
}

/// A transport error with its causes (reqwest's own message rarely says what went wrong).
fn transport(error: reqwest::Error) -> WriteError {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    WriteError::Transport(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_errors_are_told_apart_from_the_rest() {
        let body = r#"{"error":"partial write: field type conflict dropped=1"}"#;
        assert_eq!(
            WriteError::from_status(true, 400, body),
            WriteError::Rejected {
                status: 400,
                message: "partial write: field type conflict dropped=1".into()
            }
        );
        for status in [413, 422] {
            assert!(matches!(
                WriteError::from_status(false, status, ""),
                WriteError::Rejected { .. }
            ));
        }
        for status in [401, 403, 404, 408, 429, 500, 503] {
            assert!(matches!(
                WriteError::from_status(false, status, "x"),
                WriteError::Status { .. }
            ));
        }
        assert!(matches!(
            WriteError::from_status(true, 404, r#"{"error":"database not found: \"x\""}"#),
            WriteError::DatabaseNotFound { .. }
        ));
    }

    #[test]
    fn server_messages_come_from_json_or_text_and_are_cut() {
        assert_eq!(
            server_message(r#"{"code":"invalid","message":"bad line"}"#),
            "bad line"
        );
        assert_eq!(server_message("plain text\n"), "plain text");
        let long = "é".repeat(2 * MESSAGE_MAX_CHARS);
        assert_eq!(server_message(&long).chars().count(), MESSAGE_MAX_CHARS + 3);
    }

    #[test]
    fn the_points_a_partial_write_dropped_are_read_from_its_message() {
        let m = "partial write: points beyond retention policy dropped=250";
        assert_eq!(dropped_points(m), Some(250));
        let m = "partial write: field type conflict: input field \"temp_c\" dropped=1\n";
        assert_eq!(dropped_points(m), Some(1));
        assert_eq!(
            dropped_points("unable to parse 'x': invalid field format"),
            None
        );
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_identifier("landport"), r#""landport""#);
        assert_eq!(quote_identifier(r#"a"b\c"#), r#""a\"b\\c""#);
    }

    #[test]
    fn v1_urls_keep_a_base_path_and_carry_db_and_precision() {
        let api = WriteApi::V1 {
            database: "my db".into(),
            credentials: None,
        };
        let w = InfluxWriter::new("http://h:8086/influx/", &api, Duration::from_secs(1)).unwrap();
        let Inner::V1 {
            write_url,
            query_url,
            ..
        } = &w.inner
        else {
            unreachable!()
        };
        assert_eq!(
            write_url.as_str(),
            "http://h:8086/influx/write?db=my+db&precision=ms"
        );
        assert_eq!(query_url.as_str(), "http://h:8086/influx/query");
    }

    #[test]
    fn v2_urls_keep_a_base_path_and_carry_org_bucket_and_precision() {
        let api = WriteApi::V2 {
            org: "acme logistics".into(),
            bucket: "tele&metry".into(),
            token: "s3cret".into(),
        };
        let w =
            InfluxWriter::new("http://h:8428/influx/?x=1", &api, Duration::from_secs(1)).unwrap();
        let Inner::V2 {
            write_url,
            authorization,
            ..
        } = &w.inner
        else {
            unreachable!()
        };
        assert_eq!(
            write_url.as_str(),
            "http://h:8428/influx/api/v2/write?org=acme+logistics&bucket=tele%26metry&precision=ms"
        );
        assert_eq!(authorization.to_str().unwrap(), "Token s3cret");
        assert!(authorization.is_sensitive());
        assert!(!format!("{w:?}").contains("s3cret"));
        let bad = WriteApi::V2 {
            org: "o".into(),
            bucket: "b".into(),
            token: "line\nbreak".into(),
        };
        assert!(matches!(
            InfluxWriter::new("http://h", &bad, Duration::from_secs(1)),
            Err(SinkError::HttpClient(_))
        ));
    }

    #[test]
    fn bad_urls_are_refused_not_panicked_on() {
        let api = WriteApi::V2 {
            org: "o".into(),
            bucket: "b".into(),
            token: "t".into(),
        };
        for url in ["", "localhost:8086", "ftp://h", "mailto:x@y"] {
            assert!(matches!(
                InfluxWriter::new(url, &api, Duration::from_secs(1)),
                Err(SinkError::InvalidUrl(_))
            ));
        }
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let api = WriteApi::V2 {
            org: "o".into(),
            bucket: "b".into(),
            token: "s3cret".into(),
        };
        assert!(!format!("{api:?}").contains("s3cret"));
        let api = WriteApi::V1 {
            database: "d".into(),
            credentials: Some(("u".into(), "pa55".into())),
        };
        assert!(!format!("{api:?}").contains("pa55"));
    }
}
