//! Every malformed request gets the right 4xx in OpenAI's error shape, never a 5xx; the server
//! keeps serving afterwards.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use common::*;
use kiln_serve::ServeOptions;
use serde_json::{json, Value};

/// (url, body, status, param, code).
type Case<'a> = (&'a str, Value, u16, Option<&'a str>, Option<&'a str>);

/// Checks `{"error": {"message": str, "type": str, "param": …, "code": …}}`.
fn assert_error_shape(v: &Value) {
    let e = &v["error"];
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    assert!(e["type"].as_str().is_some(), "{v}");
    assert!(e.get("param").is_some() && e.get("code").is_some(), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_openai_4xx_errors() {
    let opts = ServeOptions { max_tokens_limit: 100, ..Default::default() };
    let base = start(tiny(), opts).await; // context 128
    let c = reqwest::Client::new();
    let cmpl = format!("{base}/v1/completions");
    let chat = format!("{base}/v1/chat/completions");
    let user = json!([{ "role": "user", "content": "hi" }]);
    let long = "x".repeat(128);
    let near = "x".repeat(100);
    // (url, body, status, param, code)
    let cases: Vec<Case> = vec![
        (&cmpl, json!({ "prompt": "hi" }), 400, Some("model"), Some("missing_required_parameter")),
        (&cmpl, json!({ "model": 3, "prompt": "hi" }), 400, Some("model"), Some("invalid_type")),
        (&cmpl, json!({ "model": "gpt-4", "prompt": "hi" }), 404, Some("model"), Some("model_not_found")),
        (&chat, json!({ "model": "gpt-4", "messages": user }), 404, Some("model"), Some("model_not_found")),
        (&cmpl, json!({ "model": "tiny" }), 400, Some("prompt"), Some("missing_required_parameter")),
        (&cmpl, json!({ "model": "tiny", "prompt": 7 }), 400, Some("prompt"), Some("invalid_type")),
        (&cmpl, json!({ "model": "tiny", "prompt": [] }), 400, Some("prompt"), Some("invalid_value")),
        (&cmpl, json!({ "model": "tiny", "prompt": ["a", "b"] }), 400, Some("prompt"), Some("unsupported_value")),
        (&cmpl, json!({ "model": "tiny", "prompt": [1, 100000] }), 400, Some("prompt"), Some("invalid_value")),
        (&cmpl, json!({ "model": "tiny", "prompt": "" }), 400, Some("prompt"), Some("invalid_value")),
        (&cmpl, json!({ "model": "tiny", "prompt": "caf\u{e9}" }), 400, Some("prompt"), None),
        (
            &cmpl,
            json!({ "model": "tiny", "prompt": "hi", "max_tokens": 101 }),
            400,
            Some("max_tokens"),
            Some("invalid_value"),
        ),
        (
            &cmpl,
            json!({ "model": "tiny", "prompt": "hi", "max_tokens": 0 }),
            400,
            Some("max_tokens"),
            Some("invalid_value"),
        ),
        (
            &cmpl,
            json!({ "model": "tiny", "prompt": "hi", "max_tokens": -5 }),
            400,
            Some("max_tokens"),
            Some("invalid_value"),
        ),
        (
            &cmpl,
            json!({ "model": "tiny", "prompt": "hi", "max_tokens": "ten" }),
            400,
            Some("max_tokens"),
            Some("invalid_type"),
        ),
        (
            &cmpl,
            json!({ "model": "tiny", "prompt": "hi", "max_tokens": 1.5 }),
            400,
            Some("max_tokens"),
            Some("invalid_type"),
        ),
        (
            &cmpl,
            json!({ "model": "tiny", "prompt": "hi", "max_tokens": 1e30 }),
            400,
            Some("max_tokens"),
            Some("invalid_type"),
        ),
        (
            &cmpl,
            json!({ "model": "tiny", "prompt": near, "max_tokens": 50 }),
            400,
            Some("max_tokens"),
            Some("context_length_exceeded"),
        ),
        (&cmpl, json!({ "model": "tiny", "prompt": long }), 400, Some("prompt"), Some("context_length_exceeded")),
        (
            &chat,
            json!({ "model": "tiny", "messages": [{ "role": "user", "content": long }] }),
            400,
            Some("messages"),
            Some("context_length_exceeded"),
        ),
        (
            &chat,
            json!({ "model": "tiny", "messages": user, "max_completion_tokens": 500 }),
            400,
            Some("max_completion_tokens"),
            Some("invalid_value"),
        ),
        (
            &cmpl,
            json!({ "model": "tiny", "prompt": "hi", "temperature": 2.5 }),
            400,
            Some("temperature"),
            Some("invalid_value"),
        ),
        (
            &cmpl,
            json!({ "model": "tiny", "prompt": "hi", "temperature": -0.1 }),
            400,
            Some("temperature"),
            Some("invalid_value"),
        ),
        (
            &cmpl,
            json!({ "model": "tiny", "prompt": "hi", "temperature": "hot" }),
            400,
            Some("temperature"),
            Some("invalid_type"),
        ),
        (&cmpl, json!({ "model": "tiny", "prompt": "hi", "top_p": 0 }), 400, Some("top_p"), Some("invalid_value")),
        (&cmpl, json!({ "model": "tiny", "prompt": "hi", "top_p": 1.01 }), 400, Some("top_p"), Some("invalid_value")),
        (&cmpl, json!({ "model": "tiny", "prompt": "hi", "top_k": -2 }), 400, Some("top_k"), Some("invalid_value")),
        (&cmpl, json!({ "model": "tiny", "prompt": "hi", "n": 17 }), 400, Some("n"), Some("invalid_value")),
        (&chat, json!({ "model": "tiny", "messages": user, "n": 0 }), 400, Some("n"), Some("invalid_value")),
        (&cmpl, json!({ "model": "tiny", "prompt": "hi", "stop": 5 }), 400, Some("stop"), Some("invalid_type")),
        (&cmpl, json!({ "model": "tiny", "prompt": "hi", "stop": ["a", 1] }), 400, Some("stop"), Some("invalid_type")),
        (&cmpl, json!({ "model": "tiny", "prompt": "hi", "stream": "yes" }), 400, Some("stream"), Some("invalid_type")),
        (
            &cmpl,
            json!({ "model": "tiny", "prompt": "hi", "logprobs": 3, "echo": true, "stream": true }),
            400,
            Some("logprobs"),
            Some("unsupported_value"),
        ),
        (
            &cmpl,
            json!({ "model": "tiny", "prompt": "hi", "logprobs": 21 }),
            400,
            Some("logprobs"),
            Some("invalid_value"),
        ),
        (
            &chat,
            json!({ "model": "tiny", "messages": user, "top_logprobs": 2 }),
            400,
            Some("top_logprobs"),
            Some("invalid_value"),
        ),
        (
            &chat,
            json!({ "model": "tiny", "messages": user, "logprobs": true, "top_logprobs": -1 }),
            400,
            Some("top_logprobs"),
            Some("invalid_value"),
        ),
        (
            &chat,
            json!({ "model": "tiny", "messages": user, "logprobs": 2 }),
            400,
            Some("logprobs"),
            Some("invalid_type"),
        ),
        (
            &chat,
            json!({ "model": "tiny", "messages": user, "frequency_penalty": 2.5 }),
            400,
            Some("frequency_penalty"),
            Some("invalid_value"),
        ),
        (&cmpl, json!({ "model": "tiny", "prompt": "hi", "min_p": 1.5 }), 400, Some("min_p"), Some("invalid_value")),
        (
            &cmpl,
            json!({ "model": "tiny", "prompt": "hi", "repetition_penalty": 0 }),
            400,
            Some("repetition_penalty"),
            Some("invalid_value"),
        ),
        (
            &chat,
            json!({ "model": "tiny", "messages": user, "tools": [{ "type": "function" }] }),
            400,
            Some("tools"),
            Some("unsupported_value"),
        ),
        (&chat, json!({ "model": "tiny" }), 400, Some("messages"), Some("missing_required_parameter")),
        (&chat, json!({ "model": "tiny", "messages": [] }), 400, Some("messages"), Some("invalid_value")),
        (&chat, json!({ "model": "tiny", "messages": "hi" }), 400, Some("messages"), Some("invalid_type")),
        (&chat, json!({ "model": "tiny", "messages": ["hi"] }), 400, Some("messages[0]"), Some("invalid_type")),
        (
            &chat,
            json!({ "model": "tiny", "messages": [{ "content": "hi" }] }),
            400,
            Some("messages[0].role"),
            Some("missing_required_parameter"),
        ),
        (
            &chat,
            json!({ "model": "tiny", "messages": [{ "role": "wizard", "content": "hi" }] }),
            400,
            Some("messages[0].role"),
            Some("invalid_value"),
        ),
        (
            &chat,
            json!({ "model": "tiny", "messages": [{ "role": "user", "content": 5 }] }),
            400,
            Some("messages[0].content"),
            Some("invalid_type"),
        ),
        (
            &chat,
            json!({ "model": "tiny", "messages": [{ "role": "user", "content": [{ "type": "image_url" }] }] }),
            400,
            Some("messages[0].content"),
            Some("unsupported_value"),
        ),
    ];
    for (url, body, status, param, code) in cases {
        for stream in [false, true] {
            let mut body = body.clone();
            if body.get("stream").is_none() {
                body["stream"] = json!(stream);
            }
            let (got, v) = post(&c, url, &body).await;
            assert_eq!(got, status, "{body} -> {v}");
            assert_error_shape(&v);
            assert_eq!(v["error"]["param"].as_str(), param, "{body} -> {v}");
            assert_eq!(v["error"]["code"].as_str(), code, "{body} -> {v}");
            if status == 400 {
                assert_eq!(v["error"]["type"], "invalid_request_error");
            }
        }
    }

    // Bodies that are not JSON objects.
    for raw in ["{", "", "[1, 2]", "null", "\"text\"", "{\"model\": \"tiny\", \"prompt\": \"hi\",}"] {
        for url in [&cmpl, &chat] {
            let (got, v) = post_raw(&c, url, raw).await;
            assert_eq!(got, 400, "{raw:?} -> {v}");
            assert_error_shape(&v);
        }
    }
    // Unknown URLs and methods.
    for (method, path, status) in
        [("GET", "/v1/completions", 405), ("GET", "/v1/nothing", 404), ("POST", "/health", 405)]
    {
        let r = c.request(method.parse().unwrap(), format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{method} {path}");
        assert_error_shape(&r.json().await.unwrap());
    }
    // A body over the size limit.
    let huge = format!("{{\"model\": \"tiny\", \"prompt\": \"{}\"}}", "x".repeat((2 << 20) + 64));
    // (Its own client: the server closes that connection without reading the whole body.)
    let (got, v) = post_raw(&reqwest::Client::new(), &cmpl, &huge).await;
    assert_eq!(got, 413, "{v}");
    assert_error_shape(&v);

    // Still serving, and no 5xx was ever counted.
    let (status, _) = post(&c, &cmpl, &greedy("hi", 4)).await;
    assert_eq!(status, 200);
    let text = c.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(!text.contains("status=\"5"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompts_at_the_edge_of_the_context_work() {
    let base = start(tiny(), ServeOptions::default()).await; // context 128
    let c = reqwest::Client::new();
    let url = format!("{base}/v1/completions");
    let (status, v) = post(&c, &url, &json!({ "model": "tiny", "prompt": "x".repeat(120), "max_tokens": 8 })).await;
    assert_eq!((status, &v["usage"]["completion_tokens"]), (200, &json!(8)), "{v}");
    // Without max_tokens the default (16) is cut to what the context leaves.
    let (status, v) = post(&c, &url, &json!({ "model": "tiny", "prompt": "x".repeat(125) })).await;
    assert_eq!((status, &v["usage"]["completion_tokens"]), (200, &json!(3)), "{v}");
    // Chat without max_tokens fills the context.
    let chat = json!({ "model": "tiny", "messages": [{ "role": "user", "content": "hi" }], "temperature": 0 });
    let (status, v) = post(&c, &format!("{base}/v1/chat/completions"), &chat).await;
    assert_eq!(status, 200);
    assert_eq!(v["usage"]["total_tokens"], 128, "{v}");
    // A null field is as good as an absent one (clients send explicit nulls).
    let nulls = json!({ "model": "tiny", "prompt": "hi", "max_tokens": 2, "stop": null, "seed": null,
                        "temperature": null, "logprobs": null, "stream_options": null, "user": "me" });
    let (status, v) = post(&c, &url, &nulls).await;
    assert_eq!(status, 200, "{v}");
}
