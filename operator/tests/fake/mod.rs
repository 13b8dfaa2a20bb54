//! A fake Kubernetes API server that keeps objects, served in-process as the tower service
//! behind a `kube::Client`. It models what the reconcilers rely on: get, list with a label
//! selector, create, server-side apply (the applied object replaces what it names; status
//! apply replaces status), JSON merge patch with resourceVersion conflicts, `generation` bumps on
//! spec changes, delete with finalizers (deletionTimestamp first, removal once they are gone),
//! and the events the recorder posts. Tests drive the StatefulSet "controller" by hand
//! (`set_ready`).

// Shared by several test binaries; each uses only part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{Value, json};

pub(crate) mod admin;
pub(crate) mod tls;

#[derive(Default)]
struct State {
    objects: BTreeMap<String, Value>,
    events: Vec<Value>,
    resource_version: u64,
    requests: Vec<String>,
}

/// The fake API; clone freely (shared state).
#[derive(Clone, Default)]
pub(crate) struct FakeKube {
    state: Arc<Mutex<State>>,
}

fn status(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason,
        "message": message, "code": code.as_u16()});
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(&body).expect("json")))
        .expect("response")
}

fn ok(code: StatusCode, value: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(value).expect("json")))
        .expect("response")
}

fn ok_empty() -> Response<Body> {
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(Body::from(Vec::new()))
        .expect("response")
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8(out).expect("utf8")
}

/// RFC 7386 JSON merge patch.
fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

fn labels_match(obj: &Value, selector: &str) -> bool {
    selector.split(',').filter(|s| !s.is_empty()).all(|term| {
        let (k, v) = term.split_once('=').unwrap_or((term, ""));
        obj["metadata"]["labels"][k].as_str() == Some(v)
    })
}

fn is_dns_1035_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && !s.ends_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// A field selector of `a.b=v` terms (e.g. `involvedObject.name=x,reason=FailedCreate`).
fn fields_match(obj: &Value, selector: &str) -> bool {
    selector.split(',').filter(|s| !s.is_empty()).all(|term| {
        let (path, v) = term.split_once('=').unwrap_or((term, ""));
        let found = path.split('.').fold(obj, |o, k| &o[k]);
        found.as_str() == Some(v)
    })
}

impl FakeKube {
    pub(crate) fn client(&self) -> kube::Client {
        let fake = self.clone();
        let service = tower::service_fn(move |req: Request<Body>| {
            let fake = fake.clone();
            async move { Ok::<_, Infallible>(fake.handle(req).await) }
        });
        kube::Client::new(service, "default")
    }

    fn next_rv(state: &mut State) -> String {
        state.resource_version += 1;
        state.resource_version.to_string()
    }

    pub(crate) async fn handle(&self, req: Request<Body>) -> Response<Body> {
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let query: BTreeMap<String, String> = req
            .uri()
            .query()
            .unwrap_or("")
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), percent_decode(v)))
            .collect();
        let content_type = req
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        if method == Method::GET && matches!(query.get("watch").map(String::as_str), Some("true" | "1")) {
            // A watch that sees no change: it stays open (bounded, so a test never waits on it)
            // and ends empty, like a server-side watch timeout; the watcher then watches again.
            self.state
                .lock()
                .expect("lock")
                .requests
                .push(format!("WATCH {}", req.uri().path()));
            let seconds = query
                .get("timeoutSeconds")
                .and_then(|s| s.parse().ok())
                .unwrap_or(60u64);
            tokio::time::sleep(std::time::Duration::from_secs(seconds.min(60))).await;
            return ok_empty();
        }
        let body = req.into_body().collect_bytes().await.unwrap_or_default();
        let body: Value = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body).unwrap_or(Value::Null)
        };
        let mut state = self.state.lock().expect("lock");
        state.requests.push(format!("{method} {path}"));
        let (key, subresource) = match path.strip_suffix("/status") {
            Some(k) => (k.to_string(), Some("status")),
            None => (path.clone(), None),
        };
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let resource = match segments.first() {
            Some(&"api") => segments.get(4),
            _ => segments.get(5),
        };
        // The events the recorder writes (not, say, a Topic named "events").
        if resource == Some(&"events") {
            if method == Method::POST || method == Method::PATCH {
                state.events.push(body.clone());
                return ok(StatusCode::CREATED, &body);
            }
        }
        // The API server's name validation for the kinds where it is stricter than for the
        // Cluster itself: a Service name is a DNS-1035 label.
        if matches!(method, Method::POST | Method::PATCH) && path.contains("/services") {
            let name = if method == Method::POST {
                body["metadata"]["name"].as_str().unwrap_or_default().to_string()
            } else {
                key.rsplit('/').next().unwrap_or_default().to_string()
            };
            if !is_dns_1035_label(&name) {
                return status(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid",
                    &format!(
                        "Service \"{name}\" is invalid: metadata.name: Invalid value: \"{name}\": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character"
                    ),
                );
            }
        }
        match method {
            Method::GET => {
                if let Some(obj) = state.objects.get(&key) {
                    return ok(StatusCode::OK, obj);
                }
                // A collection: direct children of the path.
                let prefix = format!("{key}/");
                let segments: Vec<&str> = key.split('/').filter(|s| !s.is_empty()).collect();
                let collection = matches!(
                    (segments.first(), segments.len()),
                    (Some(&"api"), 5) | (Some(&"apis"), 6)
                );
                // All namespaces: `/api/v1/<resource>` or `/apis/<group>/<version>/<resource>`.
                let all_namespaces = matches!(
                    (segments.first(), segments.len()),
                    (Some(&"api"), 3) | (Some(&"apis"), 4)
                );
                if collection || all_namespaces {
                    let selector = query.get("labelSelector").cloned().unwrap_or_default();
                    let fields = query.get("fieldSelector").cloned().unwrap_or_default();
                    let in_collection = |k: &str| {
                        if collection {
                            return k.starts_with(&prefix) && !k[prefix.len()..].contains('/');
                        }
                        // <base>/namespaces/<ns>/<resource>/<name>
                        let (base, resource) = key.rsplit_once('/').expect("a path");
                        let Some(rest) = k.strip_prefix(&format!("{base}/namespaces/")) else {
                            return false;
                        };
                        let parts: Vec<&str> = rest.split('/').collect();
                        parts.len() == 3 && parts[1] == resource
                    };
                    let items: Vec<Value> = state
                        .objects
                        .iter()
                        .filter(|(k, _)| in_collection(k))
                        .filter(|(_, v)| labels_match(v, &selector) && fields_match(v, &fields))
                        .map(|(_, v)| v.clone())
                        .collect();
                    let rv = state.resource_version.to_string();
                    return ok(
                        StatusCode::OK,
                        &json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": rv}, "items": items}),
                    );
                }
                status(StatusCode::NOT_FOUND, "NotFound", &format!("{key} not found"))
            }
            Method::POST => {
                let name = body["metadata"]["name"].as_str().unwrap_or_default().to_string();
                let key = format!("{path}/{name}");
                if state.objects.contains_key(&key) {
                    return status(StatusCode::CONFLICT, "AlreadyExists", &format!("{key} exists"));
                }
                let mut obj = body;
                let rv = Self::next_rv(&mut state);
                obj["metadata"]["resourceVersion"] = json!(rv);
                obj["metadata"]["generation"] = json!(1);
                obj["metadata"]["uid"] = json!(format!("uid-{rv}"));
                state.objects.insert(key, obj.clone());
                ok(StatusCode::CREATED, &obj)
            }
            Method::PATCH => {
                let existing = state.objects.get(&key).cloned();
                let is_apply = content_type.starts_with("application/apply-patch");
                let mut obj = match (&existing, is_apply) {
                    (Some(o), _) => o.clone(),
                    (None, true) if subresource.is_none() => json!({}),
                    (None, _) => return status(StatusCode::NOT_FOUND, "NotFound", &format!("{key} not found")),
                };
                let before_spec = obj["spec"].clone();
                match (subresource, is_apply) {
                    (Some(_), true) => obj["status"] = body["status"].clone(),
                    (Some(_), false) => {
                        let mut s = obj["status"].take();
                        merge(&mut s, &body["status"]);
                        obj["status"] = s;
                    }
                    (None, true) => {
                        // The applied object replaces everything the operator manages; keep status
                        // and server-set metadata.
                        let keep_status = obj["status"].clone();
                        let keep_meta = obj["metadata"].clone();
                        obj = body.clone();
                        if !keep_status.is_null() {
                            obj["status"] = keep_status;
                        }
                        for k in [
                            "uid",
                            "resourceVersion",
                            "generation",
                            "creationTimestamp",
                            "deletionTimestamp",
                            "finalizers",
                        ] {
                            if !keep_meta[k].is_null() {
                                obj["metadata"][k] = keep_meta[k].clone();
                            }
                        }
                    }
                    (None, false) => {
                        if let Some(rv) = body["metadata"]["resourceVersion"].as_str()
                            && obj["metadata"]["resourceVersion"].as_str() != Some(rv)
                        {
                            return status(StatusCode::CONFLICT, "Conflict", "resourceVersion mismatch");
                        }
                        let mut patch = body.clone();
                        if let Some(m) = patch["metadata"].as_object_mut() {
                            m.remove("resourceVersion");
                        }
                        merge(&mut obj, &patch);
                    }
                }
                let rv = Self::next_rv(&mut state);
                obj["metadata"]["resourceVersion"] = json!(rv);
                if existing.is_none() {
                    obj["metadata"]["generation"] = json!(1);
                    obj["metadata"]["uid"] = json!(format!("uid-{rv}"));
                    obj["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
                } else if obj["spec"] != before_spec {
                    let g = obj["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
                    obj["metadata"]["generation"] = json!(g);
                }
                let deleting = !obj["metadata"]["deletionTimestamp"].is_null();
                let no_finalizers = obj["metadata"]["finalizers"].as_array().is_none_or(|f| f.is_empty());
                if deleting && no_finalizers {
                    state.objects.remove(&key);
                } else {
                    state.objects.insert(key, obj.clone());
                }
                ok(StatusCode::OK, &obj)
            }
            Method::DELETE => {
                let Some(mut obj) = state.objects.get(&key).cloned() else {
                    return status(StatusCode::NOT_FOUND, "NotFound", &format!("{key} not found"));
                };
                if obj["metadata"]["finalizers"].as_array().is_some_and(|f| !f.is_empty()) {
                    obj["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
                    let rv = Self::next_rv(&mut state);
                    obj["metadata"]["resourceVersion"] = json!(rv);
                    state.objects.insert(key, obj.clone());
                    return ok(StatusCode::ACCEPTED, &obj);
                }
                state.objects.remove(&key);
                ok(StatusCode::OK, &obj)
            }
            _ => status(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", "unsupported"),
        }
    }

    // -- test helpers -----------------------------------------------------------------------

    pub(crate) fn get(&self, key: &str) -> Option<Value> {
        self.state.lock().expect("lock").objects.get(key).cloned()
    }

    pub(crate) fn put(&self, key: &str, mut obj: Value) {
        let mut state = self.state.lock().expect("lock");
        let rv = Self::next_rv(&mut state);
        obj["metadata"]["resourceVersion"] = json!(rv);
        if obj["metadata"]["uid"].is_null() {
            obj["metadata"]["uid"] = json!(format!("uid-{rv}"));
        }
        if obj["metadata"]["generation"].is_null() {
            obj["metadata"]["generation"] = json!(1);
        }
        state.objects.insert(key.to_string(), obj);
    }

    /// Changes an object's spec like `kubectl edit` would (bumping generation).
    pub(crate) fn edit_spec(&self, key: &str, patch: Value) {
        let mut state = self.state.lock().expect("lock");
        let rv = Self::next_rv(&mut state);
        let obj = state.objects.get_mut(key).expect("object exists");
        merge(&mut obj["spec"], &patch);
        let g = obj["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
        obj["metadata"]["generation"] = json!(g);
        obj["metadata"]["resourceVersion"] = json!(rv);
    }

    pub(crate) fn remove(&self, key: &str) {
        self.state.lock().expect("lock").objects.remove(key);
    }

    /// Marks an object deleted the way the API server does (deletionTimestamp while finalizers remain).
    pub(crate) fn delete(&self, key: &str) {
        let mut state = self.state.lock().expect("lock");
        let Some(obj) = state.objects.get_mut(key) else { return };
        if obj["metadata"]["finalizers"].as_array().is_some_and(|f| !f.is_empty()) {
            obj["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        } else {
            state.objects.remove(key);
        }
    }

    /// Plays the StatefulSet controller: every pod of every StatefulSet is up to date and ready.
    pub(crate) fn set_ready(&self) {
        let mut state = self.state.lock().expect("lock");
        for (key, obj) in state.objects.iter_mut() {
            if key.contains("/statefulsets/") {
                let replicas = obj["spec"]["replicas"].as_i64().unwrap_or(1);
                obj["status"] = json!({"replicas": replicas, "readyReplicas": replicas, "updatedReplicas": replicas,
                    "availableReplicas": replicas});
            }
        }
    }

    /// Keys of stored objects under a prefix.
    pub(crate) fn keys(&self, prefix: &str) -> Vec<String> {
        self.state
            .lock()
            .expect("lock")
            .objects
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect()
    }

    /// Reasons of the events posted so far.
    pub(crate) fn event_reasons(&self) -> Vec<String> {
        self.state
            .lock()
            .expect("lock")
            .events
            .iter()
            .filter_map(|e| e["reason"].as_str().map(String::from))
            .collect()
    }

    /// (reason, note) of every event posted or patched (a series repeat) so far, in order.
    pub(crate) fn event_notes(&self) -> Vec<(String, String)> {
        self.state
            .lock()
            .expect("lock")
            .events
            .iter()
            .map(|e| {
                (
                    e["reason"].as_str().unwrap_or_default().to_string(),
                    e["note"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    /// "METHOD path" of every request so far, in order.
    pub(crate) fn requests(&self) -> Vec<String> {
        self.state.lock().expect("lock").requests.clone()
    }
}
