//! The OpenAI API over real HTTP: completions, chat, streaming, stop strings and tokens,
//! `/v1/models`, `/health`, `/metrics`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use common::*;
use kiln_serve::{default_chat_prompt, ServeOptions};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_have_openai_shape_and_usage() {
    let base = start(tiny(), ServeOptions::default()).await;
    let c = reqwest::Client::new();
    let url = format!("{base}/v1/completions");
    let (status, v) = post(&c, &url, &greedy("Hello", 20)).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["object"], "text_completion");
    assert!(v["id"].as_str().unwrap().starts_with("cmpl-"));
    assert!(v["created"].as_u64().unwrap() > 1_600_000_000);
    assert_eq!(v["model"], "tiny");
    let choice = &v["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["finish_reason"], "length");
    assert_eq!(choice["text"].as_str().unwrap().chars().count(), 20);
    assert_eq!(v["usage"], json!({ "prompt_tokens": 5, "completion_tokens": 20, "total_tokens": 25 }));

    // Greedy and seeded sampling are reproducible; the default max_tokens is 16.
    let (_, again) = post(&c, &url, &greedy("Hello", 20)).await;
    assert_eq!(again["choices"][0]["text"], choice["text"]);
    let sampled =
        json!({ "model": "tiny", "prompt": "Hello", "temperature": 1.2, "top_p": 0.9, "top_k": 20, "seed": 5 });
    let (_, a) = post(&c, &url, &sampled).await;
    let (_, b) = post(&c, &url, &sampled).await;
    assert_eq!(a["choices"][0]["text"], b["choices"][0]["text"]);
    assert_eq!(a["usage"]["completion_tokens"], 16);

    // echo puts the prompt in front; token-id prompts work too.
    let mut echo = greedy("Hello", 20);
    echo["echo"] = json!(true);
    let (_, e) = post(&c, &url, &echo).await;
    assert_eq!(e["choices"][0]["text"].as_str().unwrap(), format!("Hello{}", choice["text"].as_str().unwrap()));
    let ids: Vec<u32> = common::char_tokenizer().encode("Hello").unwrap();
    let (_, t) = post(&c, &url, &json!({ "model": "tiny", "prompt": ids, "max_tokens": 20, "temperature": 0 })).await;
    assert_eq!(t["choices"][0]["text"], choice["text"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_uses_the_template_or_the_default_one() {
    let msgs = vec![
        kiln_data::ChatMessage { role: "system".into(), content: "Be brief.".into() },
        kiln_data::ChatMessage { role: "user".into(), content: "Hi there".into() },
    ];
    let body = json!({ "model": "tiny", "messages": msgs, "max_tokens": 12, "temperature": 0 });
    let c = reqwest::Client::new();

    let base = start(tiny(), ServeOptions::default()).await;
    let (status, v) = post(&c, &format!("{base}/v1/chat/completions"), &body).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["object"], "chat.completion");
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["message"]["content"].as_str().unwrap().chars().count(), 12);
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["prompt_tokens"], default_chat_prompt(&msgs).chars().count());
    assert_eq!(default_chat_prompt(&msgs), "<|system|>\nBe brief.\n<|user|>\nHi there\n<|assistant|>\n");

    let mut m = tiny();
    m.chat = Some(template());
    let base = start(m, ServeOptions::default()).await;
    let (_, v) = post(&c, &format!("{base}/v1/chat/completions"), &body).await;
    let rendered = template().render(&msgs, true).unwrap();
    assert_eq!(v["usage"]["prompt_tokens"], rendered.chars().count());
    // Content as text parts, max_completion_tokens preferred over max_tokens.
    let parts = json!({ "model": "tiny", "temperature": 0, "max_tokens": 3, "max_completion_tokens": 12, "messages": [
        { "role": "system", "content": [{ "type": "text", "text": "Be brief." }] },
        { "role": "user", "content": [{ "type": "text", "text": "Hi " }, { "type": "text", "text": "there" }] },
    ]});
    let (_, p) = post(&c, &format!("{base}/v1/chat/completions"), &parts).await;
    assert_eq!(p["choices"][0]["message"], v["choices"][0]["message"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_are_openai_sse_and_match_the_whole_response() {
    let base = start(tiny(), ServeOptions::default()).await;
    let c = reqwest::Client::new();
    for (path, body) in [
        ("/v1/completions", greedy("The quick", 30)),
        (
            "/v1/completions",
            json!({ "model": "tiny", "prompt": "abc", "max_tokens": 25, "temperature": 0.9, "seed": 3 }),
        ),
        (
            "/v1/chat/completions",
            json!({ "model": "tiny", "messages": [{ "role": "user", "content": "Hey" }], "max_tokens": 30, "temperature": 0 }),
        ),
        (
            "/v1/chat/completions",
            json!({ "model": "tiny", "messages": [{ "role": "user", "content": "Hey" }], "max_tokens": 30, "seed": 11 }),
        ),
    ] {
        let url = format!("{base}{path}");
        let (_, whole) = post(&c, &url, &body).await;
        let mut sbody = body.clone();
        sbody["stream"] = json!(true);
        let (status, ctype, chunks) = post_stream(&c, &url, &sbody).await;
        assert_eq!(status, 200);
        assert!(ctype.starts_with("text/event-stream"), "{ctype}");
        let choice = &whole["choices"][0];
        let text = choice["text"].as_str().or_else(|| choice["message"]["content"].as_str()).unwrap();
        assert_eq!(stream_text(&chunks), text, "{path}");
        assert_eq!(stream_finish(&chunks), choice["finish_reason"].as_str().unwrap());
        assert!(chunks.iter().all(|c| c["id"] == chunks[0]["id"] && c["model"] == "tiny"));
        if path == "/v1/chat/completions" {
            assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk"));
            assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
            assert!(chunks[1..].iter().all(|c| c["choices"][0]["delta"].get("role").is_none()));
            assert_eq!(chunks.last().unwrap()["choices"][0]["delta"], json!({}));
        } else {
            assert!(chunks.iter().all(|c| c["object"] == "text_completion"));
        }
        // More than one content chunk: it really streams token by token.
        assert!(chunks.len() > 10, "{}", chunks.len());
    }

    // include_usage: every chunk has "usage": null, then a last chunk with no choices and the usage.
    let mut body = greedy("The quick", 7);
    body["stream"] = json!(true);
    body["stream_options"] = json!({ "include_usage": true });
    let (_, _, chunks) = post_stream(&c, &format!("{base}/v1/completions"), &body).await;
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"], json!({ "prompt_tokens": 9, "completion_tokens": 7, "total_tokens": 16 }));
    assert!(chunks[..chunks.len() - 1].iter().all(|c| c["usage"].is_null() && c.get("usage").is_some()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_strings_cut_the_text_and_never_leak_into_streams() {
    let base = start(tiny(), ServeOptions::default()).await;
    let c = reqwest::Client::new();
    let url = format!("{base}/v1/completions");
    let (_, v) = post(&c, &url, &seeded("Once upon", 60)).await;
    let full: Vec<char> = v["choices"][0]["text"].as_str().unwrap().chars().collect();
    // A stop string from the middle of the greedy text, and one that never occurs.
    let stop: String = full[20..23].iter().collect();
    let full_text: String = full.iter().collect();
    let cut = &full_text[..full_text.find(&stop).unwrap()];
    assert!(cut.len() >= 5, "the stop string should not occur at the very start: {full_text:?}");
    for stops in [json!(stop), json!(["\u{1}never", stop])] {
        let mut body = seeded("Once upon", 60);
        body["stop"] = stops;
        let (_, s) = post(&c, &url, &body).await;
        assert_eq!(s["choices"][0]["text"], cut);
        assert_eq!(s["choices"][0]["finish_reason"], "stop");
        body["stream"] = json!(true);
        let (_, _, chunks) = post_stream(&c, &url, &body).await;
        assert_eq!(stream_text(&chunks), cut);
        assert_eq!(stream_finish(&chunks), "stop");
    }
    // A stop string that begins in the text but is never completed is released at the end.
    let mut body = seeded("Once upon", 60);
    let tail: String = full[57..].iter().copied().chain(['\u{1}']).collect();
    body["stop"] = json!(tail);
    body["stream"] = json!(true);
    let (_, _, chunks) = post_stream(&c, &url, &body).await;
    assert_eq!(stream_text(&chunks), full_text);
    assert_eq!(stream_finish(&chunks), "length");

    // A stop token (end-of-sequence): generation ends after it, its text is not returned.
    let mut m = tiny();
    let eos = m.tok.encode(&full[10].to_string()).unwrap()[0];
    m.stop = vec![eos];
    let base = start(m, ServeOptions::default()).await;
    let (_, s) = post(&c, &format!("{base}/v1/completions"), &seeded("Once upon", 60)).await;
    let upto: String = full.iter().take_while(|&&ch| ch != full[10]).collect();
    assert_eq!(s["choices"][0]["text"], upto.as_str());
    assert_eq!(s["choices"][0]["finish_reason"], "stop");
    assert_eq!(s["usage"]["completion_tokens"], upto.chars().count() + 1);
    // `ignore_eos` (vLLM's benchmark extension) generates through it: the full greedy text.
    let mut body = seeded("Once upon", 60);
    body["ignore_eos"] = json!(true);
    let (_, s) = post(&c, &format!("{base}/v1/completions"), &body).await;
    assert_eq!(s["choices"][0]["text"], full_text.as_str());
    assert_eq!(
        (s["choices"][0]["finish_reason"].as_str(), s["usage"]["completion_tokens"].as_u64()),
        (Some("length"), Some(60))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_health_and_metrics() {
    let base = start(tiny(), ServeOptions::default()).await;
    let c = reqwest::Client::new();
    let models: serde_json::Value = c.get(format!("{base}/v1/models")).send().await.unwrap().json().await.unwrap();
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], "tiny");
    assert_eq!(models["data"][0]["object"], "model");
    let one = c.get(format!("{base}/v1/models/tiny")).send().await.unwrap();
    assert_eq!(one.status(), 200);
    for other in ["gpt-4", "org/tiny"] {
        let r = c.get(format!("{base}/v1/models/{other}")).send().await.unwrap();
        assert_eq!(r.status(), 404);
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "model_not_found");
    }
    let health = c.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);

    post(&c, &format!("{base}/v1/completions"), &greedy("Hi", 9)).await;
    post(&c, &format!("{base}/v1/completions"), &greedy("Hi", 9)).await;
    post(&c, &format!("{base}/v1/completions"), &json!({ "model": "tiny" })).await;
    let resp = c.get(format!("{base}/metrics")).send().await.unwrap();
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = resp.text().await.unwrap();
    for name in ["kiln_queue_depth", "kiln_running_sequences", "kiln_generated_tokens_total", "kiln_tokens_per_second"]
    {
        assert!(text.contains(&format!("# TYPE {name} ")), "{name} missing:\n{text}");
    }
    assert_eq!(metric(&c, &base, r#"kiln_requests_total{endpoint="/v1/completions",status="200"}"#).await, 2.0);
    assert_eq!(metric(&c, &base, r#"kiln_requests_total{endpoint="/v1/completions",status="400"}"#).await, 1.0);
    assert_eq!(metric(&c, &base, r#"kiln_requests_total{endpoint="/v1/models",status="200"}"#).await, 1.0);
    assert_eq!(metric(&c, &base, "kiln_generated_tokens_total").await, 18.0);
    assert_eq!(metric(&c, &base, "kiln_prompt_tokens_total").await, 4.0);
    assert!(metric(&c, &base, "kiln_tokens_per_second").await > 0.0);
    assert_eq!(metric(&c, &base, "kiln_queue_depth").await, 0.0);
    assert_eq!(metric(&c, &base, "kiln_running_sequences").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byte_level_bpe_streams_whole_characters() {
    // Random byte tokens may form invalid UTF-8: streaming must still equal the whole text,
    // and no chunk may end inside a character.
    let tok = kiln_data::Tokenizer::train_bpe("h\u{e9}llo w\u{f6}rld, \u{2713} caf\u{e9} \u{20ac}5 ", 280).unwrap();
    let cfg = kiln_models::gpt::GptConfig::gpt2(tok.vocab_size(), 128, 32, 2, 4);
    let model = kiln_models::gpt::Gpt::new(cfg, 3, &kiln_cpu::cpu()).unwrap();
    let m = kiln_serve::ServedModel { name: "tiny".into(), model, tok, chat: None, stop: vec![], bos: None };
    let base = start(m, ServeOptions::default()).await;
    let c = reqwest::Client::new();
    let url = format!("{base}/v1/completions");
    for seed in 0..4 {
        let body = json!({ "model": "tiny", "prompt": "caf\u{e9} \u{2713}", "max_tokens": 40, "seed": seed });
        let (status, whole) = post(&c, &url, &body).await;
        assert_eq!(status, 200, "{whole}");
        let mut sbody = body.clone();
        sbody["stream"] = json!(true);
        let (_, _, chunks) = post_stream(&c, &url, &sbody).await;
        assert_eq!(stream_text(&chunks), whole["choices"][0]["text"].as_str().unwrap());
        assert_eq!(whole["usage"]["completion_tokens"], 40);
    }
}

/// Penalties and min-p are accepted and act: a strong frequency penalty on a greedy completion
/// repeats characters less than none does (a tiny random model repeats a lot when greedy).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn penalties_change_greedy_output() {
    let base = start(tiny(), ServeOptions::default()).await;
    let c = reqwest::Client::new();
    let url = format!("{base}/v1/completions");
    let distinct = |v: &serde_json::Value| {
        let s: std::collections::HashSet<char> = v["choices"][0]["text"].as_str().unwrap().chars().collect();
        s.len()
    };
    let (status, plain) = post(&c, &url, &greedy("Hello", 40)).await;
    assert_eq!(status, 200, "{plain}");
    let mut req = greedy("Hello", 40);
    req["frequency_penalty"] = json!(2.0);
    req["presence_penalty"] = json!(2.0);
    req["repetition_penalty"] = json!(1.5);
    req["min_p"] = json!(0.05);
    let (status, penalised) = post(&c, &url, &req).await;
    assert_eq!(status, 200, "{penalised}");
    assert!(distinct(&penalised) > distinct(&plain), "{plain} vs {penalised}");
}

/// `response_format` with a JSON schema constrains the completion: even a random model answers
/// with JSON the schema accepts, streamed or not; `json_object` and unsupported schemas are 400s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_schema_response_format_constrains_the_output() {
    let base = start(tiny(), ServeOptions::default()).await;
    let c = reqwest::Client::new();
    let url = format!("{base}/v1/chat/completions");
    let schema = json!({
        "type": "object",
        "properties": {
            "color": { "enum": ["red", "green", "blue"] },
            "ok": { "type": "boolean" },
            "n": { "type": "integer", "minimum": 0 },
            "tag": { "type": "string", "maxLength": 5 }
        },
        "required": ["color", "ok", "n"]
    });
    let mut complete = 0;
    for (seed, stream) in [(1, false), (2, false), (3, true)] {
        let body = json!({
            "model": "tiny",
            "messages": [{ "role": "user", "content": "Describe it as JSON." }],
            "max_tokens": 60, "temperature": 1.0, "seed": seed, "stream": stream,
            "response_format": { "type": "json_schema", "json_schema": { "name": "thing", "schema": schema } }
        });
        let text = if stream {
            let r = c.post(&url).json(&body).send().await.unwrap();
            assert_eq!(r.status(), 200);
            stream_text(&parse_sse(&r.text().await.unwrap()))
        } else {
            let (status, v) = post(&c, &url, &body).await;
            assert_eq!(status, 200, "{v}");
            v["choices"][0]["message"]["content"].as_str().unwrap().to_string()
        };
        eprintln!("seed {seed}: {text}");
        // A random model may run out of tokens inside an integer; when it finishes, the text
        // is valid JSON under the schema.
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
            assert!(["red", "green", "blue"].contains(&v["color"].as_str().unwrap()), "{text}");
            assert!(v["ok"].is_boolean() && v["n"].is_i64(), "{text}");
            assert!(v.get("tag").is_none_or(|t| t.as_str().unwrap().chars().count() <= 5), "{text}");
            complete += 1;
        } else {
            assert!(text.starts_with("{\"color\""), "{text}");
        }
    }
    assert!(complete >= 1, "no completion finished its JSON");
    for (rf, what) in [
        (json!({ "type": "json_object" }), "json_object"),
        (json!({ "type": "json_schema", "json_schema": { "schema": { "type": "object" } } }), "properties"),
        (json!({ "type": "json_schema" }), "schema"),
        (json!({ "type": "xml" }), "type"),
    ] {
        let body = json!({ "model": "tiny", "messages": [{ "role": "user", "content": "x" }], "response_format": rf });
        let (status, v) = post(&c, &url, &body).await;
        assert_eq!(status, 400, "{v}");
        assert_eq!(v["error"]["param"], "response_format");
        assert!(v["error"]["message"].as_str().unwrap().contains(what), "{v}");
    }
}

/// `n` choices: indexes 0..n, choice i is what a single request with seed + i generates,
/// usage counts the prompt once and every choice's tokens; streams interleave the choices and
/// each one's text matches the whole response.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n_choices_are_seeded_samples() {
    let base = start(tiny(), ServeOptions::default()).await;
    let c = reqwest::Client::new();
    let url = format!("{base}/v1/completions");
    let body = json!({ "model": "tiny", "prompt": "abc", "max_tokens": 12, "temperature": 1.0, "seed": 40, "n": 3 });
    let (status, v) = post(&c, &url, &body).await;
    assert_eq!(status, 200, "{v}");
    let choices = v["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 3);
    for (i, ch) in choices.iter().enumerate() {
        assert_eq!(ch["index"], i);
        let one = json!({ "model": "tiny", "prompt": "abc", "max_tokens": 12, "temperature": 1.0, "seed": 40 + i });
        let (_, single) = post(&c, &url, &one).await;
        assert_eq!(ch["text"], single["choices"][0]["text"], "choice {i}");
    }
    assert_ne!(choices[0]["text"], choices[1]["text"]);
    assert_eq!(v["usage"], json!({ "prompt_tokens": 3, "completion_tokens": 36, "total_tokens": 39 }));

    let chat = format!("{base}/v1/chat/completions");
    let body = json!({ "model": "tiny", "messages": [{ "role": "user", "content": "Hey" }], "max_tokens": 10,
                       "seed": 2, "n": 2, "stream": true, "stream_options": { "include_usage": true } });
    let (_, _, chunks) = post_stream(&c, &chat, &body).await;
    let mut whole_body = body.clone();
    whole_body["stream"] = json!(false);
    let (_, whole) = post(&c, &chat, &whole_body).await;
    for i in 0..2 {
        let mine: Vec<&serde_json::Value> =
            chunks.iter().filter_map(|c| c["choices"].get(0)).filter(|ch| ch["index"] == i).collect();
        assert_eq!(mine[0]["delta"]["role"], "assistant", "choice {i} starts with its role");
        let text: String = mine.iter().filter_map(|ch| ch["delta"]["content"].as_str()).collect();
        assert_eq!(text, whole["choices"][i]["message"]["content"].as_str().unwrap(), "choice {i}");
        assert_eq!(mine.iter().filter(|ch| !ch["finish_reason"].is_null()).count(), 1);
    }
    assert_eq!(chunks.last().unwrap()["usage"]["completion_tokens"], 20);
}

/// Log-probabilities: completions' legacy shape (tokens spell the text, offsets count
/// characters, greedy picks the top entry) and chat's `content` entries, streamed or not, agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logprobs_describe_every_generated_token() {
    let base = start(tiny(), ServeOptions::default()).await;
    let c = reqwest::Client::new();
    let url = format!("{base}/v1/completions");
    let mut body = greedy("Hello", 15);
    body["logprobs"] = json!(3);
    let (status, v) = post(&c, &url, &body).await;
    assert_eq!(status, 200, "{v}");
    let ch = &v["choices"][0];
    let lp = &ch["logprobs"];
    let tokens: Vec<&str> = lp["tokens"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    assert_eq!(tokens.len(), 15);
    assert_eq!(tokens.concat(), ch["text"].as_str().unwrap());
    let offsets: Vec<u64> = lp["text_offset"].as_array().unwrap().iter().map(|o| o.as_u64().unwrap()).collect();
    assert_eq!(offsets, (0..15).collect::<Vec<u64>>(), "one character per token");
    for (i, top) in lp["top_logprobs"].as_array().unwrap().iter().enumerate() {
        let top = top.as_object().unwrap();
        assert!(top.len() <= 3 && !top.is_empty());
        let best = top.values().map(|x| x.as_f64().unwrap()).fold(f64::NEG_INFINITY, f64::max);
        let chosen = lp["token_logprobs"][i].as_f64().unwrap();
        assert!(chosen <= 0.0 && (chosen - best).abs() < 1e-6, "greedy takes the most likely token");
        assert_eq!(top.get(tokens[i]).and_then(|x| x.as_f64()), Some(chosen));
    }
    // Without logprobs the field is null.
    let (_, plain) = post(&c, &url, &greedy("Hello", 15)).await;
    assert!(plain["choices"][0]["logprobs"].is_null());

    let chat = format!("{base}/v1/chat/completions");
    let body = json!({ "model": "tiny", "messages": [{ "role": "user", "content": "Hey" }], "max_tokens": 12,
                       "seed": 9, "logprobs": true, "top_logprobs": 2 });
    let (_, whole) = post(&c, &chat, &body).await;
    let content = whole["choices"][0]["logprobs"]["content"].as_array().unwrap();
    assert_eq!(content.len(), 12);
    let text: String = content.iter().map(|e| e["token"].as_str().unwrap()).collect();
    assert_eq!(text, whole["choices"][0]["message"]["content"].as_str().unwrap());
    for e in content {
        assert_eq!(e["bytes"], json!(e["token"].as_str().unwrap().as_bytes()));
        assert_eq!(e["top_logprobs"].as_array().unwrap().len(), 2);
    }
    let mut sbody = body.clone();
    sbody["stream"] = json!(true);
    let (_, _, chunks) = post_stream(&c, &chat, &sbody).await;
    let streamed: Vec<serde_json::Value> =
        chunks.iter().filter_map(|c| c["choices"][0]["logprobs"]["content"].as_array()).flatten().cloned().collect();
    assert_eq!(&streamed, content);
}

/// Scoring a prompt the way evaluation harnesses do (`echo`, `logprobs`, `max_tokens: 0`): one
/// entry per prompt token, the first without a log-probability, the others equal to the
/// engine's raw-logit log-softmax; with `max_tokens` > 0 the completion's entries follow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_with_logprobs_scores_the_prompt() {
    let base = start(tiny(), ServeOptions::default()).await;
    let c = reqwest::Client::new();
    let url = format!("{base}/v1/completions");
    let body = json!({ "model": "tiny", "prompt": "Hello there", "max_tokens": 0, "echo": true, "logprobs": 1,
                       "temperature": 0 });
    let (status, v) = post(&c, &url, &body).await;
    assert_eq!(status, 200, "{v}");
    let ch = &v["choices"][0];
    assert_eq!(ch["text"], "Hello there");
    assert_eq!(v["usage"]["completion_tokens"], 0);
    let lp = &ch["logprobs"];
    let tokens: Vec<&str> = lp["tokens"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    assert_eq!(tokens.concat(), "Hello there");
    assert!(lp["token_logprobs"][0].is_null() && lp["top_logprobs"][0].is_null());
    let scores: Vec<f64> = lp["token_logprobs"].as_array().unwrap()[1..].iter().map(|x| x.as_f64().unwrap()).collect();
    assert_eq!(scores.len(), 10);
    assert!(scores.iter().all(|&s| s < 0.0));
    assert_eq!(lp["text_offset"], json!((0..11).collect::<Vec<u32>>()));
    // With a completion: the prompt's entries, then the completion's (greedy: its top entries).
    let mut more = body.clone();
    more["max_tokens"] = json!(5);
    let (_, m) = post(&c, &url, &more).await;
    let mlp = &m["choices"][0]["logprobs"];
    assert_eq!(mlp["tokens"].as_array().unwrap().len(), 16);
    assert_eq!(mlp["token_logprobs"].as_array().unwrap()[..11], lp["token_logprobs"].as_array().unwrap()[..]);
    let (_, plain) =
        post(&c, &url, &json!({ "model": "tiny", "prompt": "Hello there", "max_tokens": 5, "temperature": 0 })).await;
    assert_eq!(
        m["choices"][0]["text"].as_str().unwrap(),
        format!("Hello there{}", plain["choices"][0]["text"].as_str().unwrap())
    );
    // max_tokens 0 without echo + logprobs generates nothing useful: refused.
    let (status, _) = post(&c, &url, &json!({ "model": "tiny", "prompt": "hi", "max_tokens": 0 })).await;
    assert_eq!(status, 400);
}
