//! One AMI action over HTTP: `POST /ami/action/{Name}` with a JSON object of headers as the
//! body (or none), HTTP Basic auth against the proxy's users. The answer is JSON:
//! `{"response": {...}, "events": [...]}`, a list collected with its closing event.
//!
//! Each request is a whole AMI session through the proxy's session code (login, the action,
//! logoff), so the user's address rules, bans, policy, scope, rate limits and audit apply as
//! to a TCP client. HTTP statuses: 200 when the action was answered (even `Response:
//! Error`: the AMI answer says why), 400 for a body that is not an action, 401 for a
//! refused login, 413 for a body over the limit, 503/504 when the proxy or the upstream
//! cannot answer in time.

use super::bridge::{Bridge, BridgeError};
use super::{basic_auth, json_error, json_response, not_allowed, Body, Req, Site, MAX_BODY};
use crate::json::{self, Bounds};
use crate::sessions::Transport;
use ami_proto::ActionName;
use http_body_util::{BodyExt, Limited};
use hyper::header::{HeaderValue, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::{Method, Response, StatusCode};
use std::sync::Arc;
use std::time::Duration;

/// Actions that change the session itself, which an HTTP request does not keep.
fn session_only(name: &str) -> bool {
    matches!(
        ActionName::parse(name),
        ActionName::Login
            | ActionName::Logoff
            | ActionName::Challenge
            | ActionName::Events
            | ActionName::Filter
            | ActionName::WaitEvent
    )
}

pub(super) async fn action(site: &Site, r: Req) -> Response<Body> {
    let Req { req, peer } = r;
    if req.method() != Method::POST {
        return not_allowed("POST");
    }
    let name = req.uri().path().trim_start_matches("/ami/action/").to_owned();
    let Some((user, secret)) = basic_auth(req.headers()) else {
        let mut r = json_error(StatusCode::UNAUTHORIZED, "HTTP Basic authentication is required");
        r.headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"amiproxy\""));
        return r;
    };
    // A body, if any, must say it is JSON: an HTML form cannot, so a page elsewhere cannot
    // post one here even where a browser would add credentials it cached.
    let content_type = req.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
    if content_type.is_some_and(|v| !v.trim_start().to_ascii_lowercase().starts_with("application/json")) {
        return json_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the action as application/json",
        );
    }
    let config = site.core.config();
    // The login first: nothing more is read from a client that cannot log in.
    let mut bridge = match Bridge::open(
        &site.core,
        peer,
        site.local,
        Transport::Http,
        site.tls,
        Arc::from("web-api"),
    )
    .await
    {
        Ok(b) => b,
        Err(e) => return json_error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    if let Err(e) = bridge.login(&user, &secret, false, config.proxy.auth_timeout).await {
        return match e {
            BridgeError::Refused(m) => json_error(StatusCode::UNAUTHORIZED, &m),
            other => json_error(StatusCode::SERVICE_UNAVAILABLE, &other.to_string()),
        };
    }
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return json_error(StatusCode::PAYLOAD_TOO_LARGE, "the body is over the limit"),
    };
    let Ok(text) = std::str::from_utf8(&body) else {
        return json_error(StatusCode::BAD_REQUEST, "the body is not UTF-8");
    };
    let bounds = Bounds {
        max_line: config.proxy.max_line,
        max_lines: config.proxy.max_lines,
    };
    let a = match json::action_from_json(text, Some(&name), &bounds) {
        Ok(a) => a,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    if session_only(&name) {
        return json_error(StatusCode::BAD_REQUEST, "this action changes a session: use /ami/ws");
    }
    let msg = match a.msg.action_id() {
        Some(_) => a.msg,
        None => a.msg.with_header("ActionID", "http"),
    };
    let answer = bridge
        .call(&msg, config.proxy.action_timeout + Duration::from_secs(1))
        .await;
    bridge.logoff().await;
    match answer {
        Ok(collected) => json_response(StatusCode::OK, collected.to_json()),
        Err(BridgeError::Timeout) => json_error(StatusCode::GATEWAY_TIMEOUT, "no answer in time"),
        Err(e) => json_error(StatusCode::BAD_GATEWAY, &e.to_string()),
    }
}
