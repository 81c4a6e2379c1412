//! The endpoints that do not generate: `/v1/models`, `/health`, `/metrics`, and OpenAI-shaped
//! answers for unknown URLs and methods.

use crate::error::ApiError;
use crate::server::AppState;
use axum::extract::{MatchedPath, Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

fn model_card(app: &AppState) -> Value {
    let s = app.shared();
    json!({ "id": s.name, "object": "model", "created": s.created, "owned_by": "kiln" })
}

/// `GET /v1/models`: the one served model.
pub async fn models(State(app): State<AppState>) -> Json<Value> {
    Json(json!({ "object": "list", "data": [model_card(&app)] }))
}

/// `GET /v1/models/{model}` (the name may contain slashes).
pub async fn model(State(app): State<AppState>, Path(name): Path<String>) -> Response {
    if name == app.shared().name {
        Json(model_card(&app)).into_response()
    } else {
        ApiError::model_not_found(&name).into_response()
    }
}

/// `GET /health`: 200 while the generation worker runs, 503 once it has stopped.
pub async fn health(State(app): State<AppState>) -> Response {
    if app.worker_alive() {
        Json(json!({ "status": "ok" })).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "worker stopped" }))).into_response()
    }
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(app): State<AppState>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], app.shared().metrics.render())
        .into_response()
}

/// Any URL the server does not know: 404.
pub async fn not_found(req: Request) -> ApiError {
    ApiError::invalid(format!("Unknown request URL: {} {}.", req.method(), req.uri().path()), None)
        .with_status(StatusCode::NOT_FOUND)
        .with_code("unknown_url")
}

/// A known URL with the wrong method: 405.
pub async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::invalid(format!("Method {} is not allowed on {}.", req.method(), req.uri().path()), None)
        .with_status(StatusCode::METHOD_NOT_ALLOWED)
        .with_code("method_not_allowed")
}

/// Middleware counting every answered request by route and status.
pub async fn count_requests(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let endpoint = req.extensions().get::<MatchedPath>().map_or("unmatched", |m| m.as_str()).to_string();
    let resp = next.run(req).await;
    app.shared().metrics.count_request(&endpoint, resp.status().as_u16());
    resp
}
