//! The queue, timeouts, cancellation on disconnect, and many concurrent streaming clients.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use common::*;
use futures_util::StreamExt;
use kiln_serve::ServeOptions;
use serde_json::json;
use std::time::{Duration, Instant};

/// A model slow enough (a few ms per token on 2 cores) that a long completion is still running
/// while the test sends its next requests.
fn slow() -> kiln_serve::ServedModel {
    model(256, 4, 1024)
}

fn long_stream(max_tokens: usize) -> serde_json::Value {
    json!({ "model": "tiny", "prompt": "a", "max_tokens": max_tokens, "temperature": 1.0, "seed": 2, "stream": true })
}

async fn wait_for(c: &reqwest::Client, base: &str, series: &str, value: f64) {
    let t = Instant::now();
    while metric(c, base, series).await != value {
        assert!(t.elapsed() < Duration::from_secs(30), "{series} never reached {value}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_429_and_the_server_recovers() {
    // One sequence at a time, so the second request waits in the queue.
    let base = start(slow(), ServeOptions { queue_len: 1, max_num_seqs: 1, ..Default::default() }).await;
    let c = reqwest::Client::new();
    let url = format!("{base}/v1/completions");
    // A runs (its headers come once the worker has taken it), B waits in the queue.
    let a = c.post(&url).json(&long_stream(1000)).send().await.unwrap();
    assert_eq!(a.status(), 200);
    let (c2, url2) = (c.clone(), url.clone());
    let b = tokio::spawn(async move { post(&c2, &url2, &seeded("b", 5)).await });
    wait_for(&c, &base, "kiln_queue_depth", 1.0).await;
    wait_for(&c, &base, "kiln_running_sequences", 1.0).await;
    assert_eq!(metric(&c, &base, "kiln_queue_depth").await, 1.0);
    // C finds the queue full.
    let r = c.post(&url).json(&seeded("c", 5)).send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "rate_limit_error");
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    // A's client goes away: its generation stops, B runs, and new requests are served.
    drop(a);
    let (status, v) = tokio::time::timeout(Duration::from_secs(30), b).await.unwrap().unwrap();
    assert_eq!(status, 200, "{v}");
    assert!(metric(&c, &base, "kiln_generated_tokens_total").await < 1000.0);
    let (status, _) = post(&c, &url, &seeded("d", 5)).await;
    assert_eq!(status, 200);
    assert_eq!(metric(&c, &base, r#"kiln_requests_total{endpoint="/v1/completions",status="429"}"#).await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disconnect_mid_stream_cancels_generation() {
    let base = start(slow(), ServeOptions::default()).await;
    let c = reqwest::Client::new();
    for path in ["/v1/completions", "/v1/chat/completions"] {
        let before = metric(&c, &base, "kiln_generated_tokens_total").await;
        let mut body = long_stream(900);
        if path == "/v1/chat/completions" {
            body["messages"] = json!([{ "role": "user", "content": "go" }]);
        }
        let r = c.post(format!("{base}{path}")).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let mut stream = r.bytes_stream();
        let mut seen = 0;
        while seen < 3 {
            seen += stream.next().await.unwrap().unwrap().windows(6).filter(|w| w == b"data: ").count();
        }
        drop(stream);
        wait_for(&c, &base, "kiln_running_sequences", 0.0).await;
        let generated = metric(&c, &base, "kiln_generated_tokens_total").await - before;
        eprintln!("{path}: {generated} tokens generated before the disconnect stopped it");
        assert!(generated < 800.0, "{path}: generation went on after the disconnect ({generated} tokens)");
    }
    // The next request is served normally.
    let (status, v) = post(&c, &format!("{base}/v1/completions"), &seeded("x", 10)).await;
    assert_eq!((status, &v["usage"]["completion_tokens"]), (200, &json!(10)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_timeout_bounds_queue_wait_and_generation() {
    let timeout = Duration::from_millis(300);
    let opts = ServeOptions { request_timeout: timeout, max_num_seqs: 1, ..Default::default() };
    let base = start(slow(), opts).await;
    let c = reqwest::Client::new();
    let url = format!("{base}/v1/completions");
    let mut body = long_stream(1000);
    body["stream"] = json!(false);
    let t = Instant::now();
    let (status, v) = post(&c, &url, &body).await;
    assert_eq!(status, 408, "{v}");
    assert_eq!(v["error"]["type"], "timeout_error");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    wait_for(&c, &base, "kiln_running_sequences", 0.0).await;

    // Streaming: the stream has begun, so it ends with an error event and [DONE].
    let r = c.post(&url).json(&long_stream(1000)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let chunks = parse_sse(&r.text().await.unwrap());
    assert!(chunks.len() > 1);
    assert_eq!(chunks.last().unwrap()["error"]["type"], "timeout_error");
    wait_for(&c, &base, "kiln_running_sequences", 0.0).await;

    // Waiting in the queue counts too: B waits behind A and runs out of time.
    let a = c.post(&url).json(&long_stream(1000)).send().await.unwrap();
    let (status, v) = post(&c, &url, &body).await;
    assert_eq!(status, 408, "{v}");
    drop(a);
    let (status, _) = post(&c, &url, &seeded("x", 3)).await;
    assert_eq!(status, 200);
}

/// The load test: 64 clients each stream 4 requests at once (256 requests), batched 16 at a
/// time: every one is answered (200 with a complete stream), never a 5xx, and no KV block is
/// left in use afterwards. With room for 2 sequences and a queue of 3, the overflow gets 429s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_streaming_clients() {
    for (clients, max_num_seqs, queue_len, expect_429) in [(64, 16, 64, false), (16, 2, 3, true)] {
        let opts = ServeOptions { queue_len, max_num_seqs, ..Default::default() };
        let base = start(tiny(), opts).await;
        let c = reqwest::Client::new();
        let clients = (0..clients).map(|i| {
            let (c, base) = (c.clone(), base.clone());
            tokio::spawn(async move {
                let mut statuses = vec![];
                for j in 0..4 {
                    let (path, mut body) = if (i + j) % 2 == 0 {
                        ("/v1/completions", seeded("hello", 16))
                    } else {
                        let m = json!([{ "role": "user", "content": format!("client {i} turn {j}") }]);
                        ("/v1/chat/completions", json!({ "model": "tiny", "messages": m, "max_tokens": 16, "seed": j }))
                    };
                    body["stream"] = json!(true);
                    let r = c.post(format!("{base}{path}")).json(&body).send().await.unwrap();
                    let status = r.status().as_u16();
                    let text = r.text().await.unwrap();
                    if status == 200 {
                        let chunks = parse_sse(&text);
                        assert_eq!(stream_finish(&chunks), "length");
                        assert_eq!(stream_text(&chunks).chars().count(), 16);
                    } else {
                        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
                        assert_eq!(v["error"]["type"], "rate_limit_error", "{v}");
                    }
                    statuses.push(status);
                }
                statuses
            })
        });
        let all =
            tokio::time::timeout(Duration::from_secs(240), futures_util::future::join_all(clients)).await.unwrap();
        let statuses: Vec<u16> = all.into_iter().flat_map(|r| r.unwrap()).collect();
        assert!(statuses.iter().all(|&s| s == 200 || s == 429), "{statuses:?}");
        let ok = statuses.iter().filter(|&&s| s == 200).count();
        assert!(ok >= 4, "{statuses:?}");
        assert_eq!(ok < statuses.len(), expect_429, "{statuses:?}");
        let metrics = c.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
        assert!(!metrics.contains("status=\"5"), "{metrics}");
        let generated = metric(&c, &base, "kiln_generated_tokens_total").await;
        assert_eq!(generated, 16.0 * ok as f64);
        assert_eq!(metric(&c, &base, "kiln_queue_depth").await, 0.0);
        assert_eq!(metric(&c, &base, "kiln_running_sequences").await, 0.0);
        assert_eq!(metric(&c, &base, "kiln_kv_blocks_used").await, 0.0, "KV blocks leaked");
        if !expect_429 {
            // Sequences shared forward passes: far fewer steps than tokens.
            let steps = metric(&c, &base, "kiln_engine_steps_total").await;
            assert!(steps < generated / 2.0, "{steps} steps for {generated} tokens: no batching");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unbounded_timeout_and_an_empty_queue_still_serve() {
    let opts = ServeOptions { request_timeout: Duration::MAX, queue_len: 0, ..Default::default() };
    let base = start(tiny(), opts).await;
    let c = reqwest::Client::new();
    for _ in 0..3 {
        let (status, v) = post(&c, &format!("{base}/v1/completions"), &seeded("x", 4)).await;
        assert_eq!(status, 200, "{v}");
    }
}
