//! The OpenAPI document served at `GET /openapi.json`: it is OpenAPI 3.1 and structurally
//! sound (every `$ref` resolves, every operation has responses, every `{param}` is declared),
//! it documents every route the router registers and the router serves every documented
//! operation, and (when installed) `openapi-spec-validator` accepts it.
//!
//! The route list comes from the code: the `.route("...", ...)` calls in `src/lib.rs` and
//! `src/v1/mod.rs`, the files the router is built from. Adding a route there without a
//! `#[utoipa::path]` entry in the document fails `every_registered_route_is_documented`.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use support::TestApi;
use tower::ServiceExt;

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// The full router over a store in a temp dir (kept alive by the returned guard).
fn app() -> (Router, TestApi) {
    let t = TestApi::new("admin-key");
    (t.router(), t)
}

async fn send(router: &Router, method: &str, path: &str) -> (StatusCode, Vec<u8>) {
    let req = Request::builder()
        .method(method.to_uppercase().as_str())
        .uri(path)
        .body(Body::empty())
        .unwrap();
    let res = router.clone().oneshot(req).await.unwrap();
    let status = res.status();
    // The SSE stream never ends: its status is all we need (and it needs a key anyway).
    let body = if status.is_success() && path.starts_with("/v1/stream") {
        Vec::new()
    } else {
        res.into_body().collect().await.unwrap().to_bytes().to_vec()
    };
    (status, body)
}

async fn served_document() -> Value {
    let (router, _dir) = app();
    let (status, body) = send(&router, "get", "/openapi.json").await;
    assert_eq!(status, StatusCode::OK, "GET /openapi.json needs no key");
    serde_json::from_slice(&body).expect("/openapi.json is JSON")
}

/// `(path, method)` of every operation in the document.
fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for m in METHODS {
            if item.get(m).is_some() {
                out.insert((path.clone(), m.to_owned()));
            }
        }
    }
    out
}

/// Follows a local `$ref` (`#/components/schemas/X`, JSON Pointer escapes included).
fn resolve<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
    let pointer = reference.strip_prefix('#')?;
    let pointer = pointer
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect::<Vec<_>>()
        .join("/");
    doc.pointer(&pointer)
}

fn collect_refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r),
                    _ => collect_refs(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// The `{name}`s of a path template.
fn template_params(path: &str) -> BTreeSet<String> {
    path.split('{')
        .skip(1)
        .filter_map(|s| s.split_once('}').map(|(name, _)| name.to_owned()))
        .collect()
}

#[tokio::test]
async fn document_is_openapi_3_1_and_structurally_valid() {
    let doc = served_document().await;
    let version = doc["openapi"].as_str().expect("openapi member");
    assert!(version.starts_with("3.1."), "openapi: {version}");
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());

    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(!refs.is_empty());
    for r in refs {
        assert!(r.starts_with("#/"), "{r}: only local references");
        assert!(resolve(&doc, r).is_some(), "{r} does not resolve");
    }

    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["type"], "http");
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    let error = &doc["components"]["schemas"]["ErrorBody"];
    assert!(error["properties"]["error"].is_object(), "{error}");

    let ops = documented(&doc);
    assert!(!ops.is_empty());
    let mut operation_ids = BTreeSet::new();
    for (path, method) in &ops {
        let op = &doc["paths"][path][method];
        let what = format!("{} {path}", method.to_uppercase());
        let responses = op["responses"].as_object();
        assert!(
            responses.is_some_and(|r| !r.is_empty()),
            "{what}: no responses"
        );
        for (status, r) in responses.unwrap() {
            assert!(
                status.parse::<u16>().is_ok() || status == "default",
                "{what}: {status}"
            );
            assert!(
                r["description"].is_string(),
                "{what} {status}: no description"
            );
        }
        if let Some(id) = op["operationId"].as_str() {
            assert!(
                operation_ids.insert(id.to_owned()),
                "{what}: duplicate operationId {id}"
            );
        }
        for req in op["security"].as_array().into_iter().flatten() {
            for scheme in req.as_object().unwrap().keys() {
                assert!(
                    schemes.get(scheme).is_some(),
                    "{what}: unknown scheme {scheme}"
                );
            }
        }

        // Path parameters: declared (on the operation or its path item) iff in the template.
        let params = op["parameters"]
            .as_array()
            .into_iter()
            .chain(doc["paths"][path]["parameters"].as_array())
            .flatten()
            .map(|p| match p.get("$ref").and_then(Value::as_str) {
                Some(r) => resolve(&doc, r).unwrap(),
                None => p,
            });
        let mut declared = BTreeSet::new();
        for p in params {
            if p["in"] == "path" {
                assert_eq!(
                    p["required"], true,
                    "{what}: path parameter {p} must be required"
                );
                declared.insert(p["name"].as_str().unwrap().to_owned());
            }
        }
        assert_eq!(declared, template_params(path), "{what}: path parameters");
    }
    // Operations that need no key say so; the others need the bearer key.
    let open = [
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/v1/public/{token}",
    ];
    for (path, method) in &ops {
        let security = &doc["paths"][path][method]["security"];
        assert_eq!(
            security.is_null(),
            open.contains(&path.as_str()),
            "{method} {path}: security {security}"
        );
    }
}

/// A route registered in source: path, methods, and whether it is the web map's (an HTML
/// page, outside this JSON API's document).
#[derive(Debug)]
struct Route {
    file: &'static str,
    path: String,
    methods: Vec<String>,
    web: bool,
}

/// The `.route("PATH", get(..).post(..))` calls of one source file.
fn routes_in(file: &'static str, src: &str) -> Vec<Route> {
    // Line comments out (none of the route paths hold `//`).
    let src: String = src
        .lines()
        .map(|l| l.split_once("//").map_or(l, |(code, _)| code))
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = Vec::new();
    let mut rest = src.as_str();
    while let Some(at) = rest.find(".route(") {
        rest = &rest[at + ".route(".len()..];
        // The call's arguments: up to the matching `)`.
        let mut depth = 1;
        let end = rest
            .char_indices()
            .find(|&(_, c)| {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                depth == 0
            })
            .map(|(i, _)| i)
            .unwrap_or_else(|| panic!("{file}: unbalanced .route("));
        let args = &rest[..end];
        let path = args
            .split('"')
            .nth(1)
            .unwrap_or_else(|| panic!("{file}: .route( without a literal path: {args}"));
        let mut methods = Vec::new();
        let mut word = String::new();
        for c in args[args.find(',').unwrap_or(0)..].chars() {
            if c.is_alphanumeric() || c == '_' {
                word.push(c);
                continue;
            }
            if c == '(' && METHODS.contains(&word.as_str()) {
                methods.push(word.clone());
            }
            word.clear();
        }
        assert!(
            !methods.is_empty(),
            "{file}: no method found for {path}: {args}"
        );
        out.push(Route {
            file,
            path: path.to_owned(),
            methods,
            web: args.contains("web::"),
        });
        rest = &rest[end..];
    }
    out
}

fn registered_routes() -> Vec<Route> {
    let dir = env!("CARGO_MANIFEST_DIR");
    let read = |f: &str| std::fs::read_to_string(format!("{dir}/{f}")).unwrap();
    let mut routes = routes_in("src/lib.rs", &read("src/lib.rs"));
    routes.extend(routes_in("src/v1/mod.rs", &read("src/v1/mod.rs")));
    routes
}

#[tokio::test]
async fn every_registered_route_is_documented() {
    let doc = served_document().await;
    let ops = documented(&doc);
    let routes = registered_routes();
    // The parser found the router (a parse that finds nothing would prove nothing).
    for must in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/v1/devices/{id}",
    ] {
        assert!(
            routes.iter().any(|r| r.path == must),
            "{must} not found in {routes:?}"
        );
    }
    let mut missing = Vec::new();
    for r in &routes {
        if r.web {
            eprintln!(
                "not in the document (web map page): {:?} {}",
                r.methods, r.path
            );
            continue;
        }
        for m in &r.methods {
            if !ops.contains(&(r.path.clone(), m.clone())) {
                missing.push(format!("{} {} ({})", m.to_uppercase(), r.path, r.file));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "routes without a #[utoipa::path] in the document: {missing:#?}"
    );
}

#[tokio::test]
async fn every_documented_operation_is_routed() {
    let doc = served_document().await;
    let (router, _dir) = app();
    let mut by_path: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (path, method) in documented(&doc) {
        by_path.entry(path).or_default().push(method);
    }
    for (path, methods) in by_path {
        let concrete: String = path
            .split('{')
            .enumerate()
            .map(|(i, s)| match (i, s.split_once('}')) {
                (0, _) | (_, None) => s.to_owned(),
                (_, Some((_, tail))) => format!("probe{tail}"),
            })
            .collect();
        for method in methods {
            let (status, body) = send(&router, &method, &concrete).await;
            let what = format!("{} {concrete}", method.to_uppercase());
            assert_ne!(
                status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{what} is documented"
            );
            if status == StatusCode::NOT_FOUND {
                // A missing resource is fine (`share token "probe" not found`); the router's
                // fallback for an unknown path (`route "..." not found`) is not.
                let body: Value = serde_json::from_slice(&body).unwrap();
                let message = body["error"]["message"].as_str().unwrap_or_default();
                assert!(
                    !message.starts_with("route "),
                    "{what} is documented: {body}"
                );
            }
        }
    }
}

/// `python3 -m openapi_spec_validator` on the served document. Skipped (with a note) when the
/// validator is not installed, except under `CI`, where that is a failure:
/// `python3 -m pip install openapi-spec-validator`.
#[tokio::test]
async fn openapi_spec_validator_accepts_the_document() {
    let available = std::process::Command::new("python3")
        .args(["-c", "import openapi_spec_validator"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !available {
        let note = "openapi-spec-validator is not installed \
                    (python3 -m pip install openapi-spec-validator)";
        assert!(std::env::var_os("CI").is_none(), "under CI: {note}");
        eprintln!("skipped: {note}");
        return;
    }
    let doc = served_document().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    let out = std::process::Command::new("python3")
        .args(["-m", "openapi_spec_validator"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openapi-spec-validator rejects the document:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn route_parser_reads_method_chains_and_skips_comments() {
    let src = r#"
        Router::new()
            .route("/a/{id}", get(a::one).patch(a::patch).delete(a::remove))
            // .route("/commented", get(x))
            .route("/", get(web::index))
            .route("/b", axum::routing::post(b::create))
    "#;
    let routes = routes_in("snippet", src);
    let got: Vec<_> = routes
        .iter()
        .map(|r| (r.path.as_str(), r.methods.join(","), r.web))
        .collect();
    assert_eq!(
        got,
        [
            ("/a/{id}", "get,patch,delete".to_owned(), false),
            ("/", "get".to_owned(), true),
            ("/b", "post".to_owned(), false),
        ]
    );
}
