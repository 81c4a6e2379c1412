#!/usr/bin/env python3
"""Checks a running kiln serve (or any OpenAI-compatible server) with the official `openai`
Python client (`pip install openai`): completions, chat, streaming (concatenated deltas equal
the whole response for the same seed), stop strings, n > 1, logprobs (and prompt scoring with
echo), /v1/models, and
malformed requests (unknown model -> 404 NotFoundError, bad sampling values -> 400
BadRequestError).

    cargo run --release -p kiln-serve --example serve_random -- --port 8000 &
    python3 tools/openai_client_test.py --base-url http://127.0.0.1:8000/v1

Prints PASS/FAIL per check; exits 1 if any check fails.
"""

import argparse
import sys
import traceback

try:
    import openai
    from openai import OpenAI
except ImportError:
    sys.exit("the openai package is missing: pip install openai")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    ap.add_argument("--model", default=None, help="model name (default: the first of /v1/models)")
    ap.add_argument("--api-key", default="unused")
    args = ap.parse_args()
    # No retries: a 429 or 5xx must show up as a failure, not be retried away.
    client = OpenAI(base_url=args.base_url, api_key=args.api_key, max_retries=0, timeout=120)
    results = []

    def check(name):
        def run(fn):
            try:
                fn()
                results.append((name, True))
                print(f"PASS {name}")
            except Exception as e:  # noqa: BLE001 - every failure is reported, not raised
                results.append((name, False))
                print(f"FAIL {name}: {type(e).__name__}: {e}")
                traceback.print_exc(limit=2, file=sys.stdout)
        return run

    model = args.model

    @check("models.list")
    def _():
        nonlocal model
        models = client.models.list()
        ids = [m.id for m in models.data]
        assert ids, "no models listed"
        model = model or ids[0]
        assert model in ids, f"{model} not in {ids}"

    model = model or "unknown"
    prompt = "The quick brown fox"
    sampling = dict(temperature=0.8, top_p=0.95, seed=1234)

    whole = {}

    @check("completions.create")
    def _():
        r = client.completions.create(model=model, prompt=prompt, max_tokens=24, **sampling)
        assert r.object == "text_completion", r.object
        assert r.model == model and r.id and r.created > 0
        c = r.choices[0]
        assert c.finish_reason in ("stop", "length"), c.finish_reason
        assert isinstance(c.text, str) and c.text, repr(c.text)
        u = r.usage
        assert u.completion_tokens <= 24 and u.total_tokens == u.prompt_tokens + u.completion_tokens, u
        whole["completion"] = c.text

    @check("completions.create stream=True")
    def _():
        chunks = list(client.completions.create(model=model, prompt=prompt, max_tokens=24, stream=True, **sampling))
        assert len(chunks) >= 2, len(chunks)
        text = "".join(c.choices[0].text for c in chunks if c.choices)
        finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        assert finishes in (["stop"], ["length"]), finishes
        assert text == whole.get("completion"), f"{text!r} != {whole.get('completion')!r}"

    @check("completions.create stop")
    def _():
        full = client.completions.create(model=model, prompt=prompt, max_tokens=40, **sampling).choices[0].text
        assert len(full) > 12, repr(full)
        stop = full[10:12]
        cut = full[: full.index(stop)]
        r = client.completions.create(model=model, prompt=prompt, max_tokens=40, stop=[stop], **sampling)
        assert r.choices[0].text == cut and r.choices[0].finish_reason == "stop", (r.choices[0], cut)
        s = client.completions.create(model=model, prompt=prompt, max_tokens=40, stop=stop, stream=True, **sampling)
        assert "".join(c.choices[0].text for c in s if c.choices) == cut

    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Say something."},
    ]

    @check("chat.completions.create")
    def _():
        r = client.chat.completions.create(model=model, messages=messages, max_tokens=24, **sampling)
        assert r.object == "chat.completion", r.object
        m = r.choices[0].message
        assert m.role == "assistant" and isinstance(m.content, str), m
        assert r.choices[0].finish_reason in ("stop", "length")
        assert r.usage.prompt_tokens > 0
        whole["chat"] = m.content

    @check("chat.completions.create stream=True (+ include_usage)")
    def _():
        chunks = list(client.chat.completions.create(
            model=model, messages=messages, max_tokens=24, stream=True,
            stream_options={"include_usage": True}, **sampling))
        assert all(c.object == "chat.completion.chunk" for c in chunks)
        assert chunks[0].choices[0].delta.role == "assistant"
        text = "".join((c.choices[0].delta.content or "") for c in chunks if c.choices)
        assert text == whole.get("chat"), f"{text!r} != {whole.get('chat')!r}"
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens <= 24, chunks[-1]

    @check("chat.completions.create n=2 (seeded choices)")
    def _():
        r = client.chat.completions.create(model=model, messages=messages, max_tokens=16, n=2, **sampling)
        assert [c.index for c in r.choices] == [0, 1], r.choices
        one = client.chat.completions.create(model=model, messages=messages, max_tokens=16,
                                             **{**sampling, "seed": sampling["seed"] + 1})
        assert r.choices[1].message.content == one.choices[0].message.content
        assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens, r.usage

    @check("chat.completions.create logprobs + top_logprobs")
    def _():
        r = client.chat.completions.create(model=model, messages=messages, max_tokens=12, logprobs=True,
                                           top_logprobs=3, **sampling)
        content = r.choices[0].logprobs.content
        assert content, r.choices[0].logprobs
        assert "".join(t.token for t in content) == r.choices[0].message.content
        for t in content:
            assert t.logprob <= 0 and len(t.top_logprobs) == 3 and t.bytes == list(t.token.encode())
            assert t.top_logprobs[0].logprob >= t.top_logprobs[-1].logprob
        chunks = list(client.chat.completions.create(model=model, messages=messages, max_tokens=12, logprobs=True,
                                                     top_logprobs=3, stream=True, **sampling))
        streamed = [t for c in chunks if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.content]
        assert [t.token for t in streamed] == [t.token for t in content]

    @check("completions.create logprobs=2")
    def _():
        r = client.completions.create(model=model, prompt=prompt, max_tokens=10, logprobs=2, temperature=0)
        lp = r.choices[0].logprobs
        assert "".join(lp.tokens) == r.choices[0].text
        assert len(lp.token_logprobs) == len(lp.tokens) == len(lp.top_logprobs) == len(lp.text_offset)
        for tok, chosen, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs):
            assert abs(max(top.values()) - chosen) < 1e-6, (tok, chosen, top)  # greedy takes the top token

    @check("completions.create echo + logprobs + max_tokens=0 (prompt scoring)")
    def _():
        r = client.completions.create(model=model, prompt=prompt, max_tokens=0, echo=True, logprobs=1)
        lp = r.choices[0].logprobs
        assert r.choices[0].text == prompt and "".join(lp.tokens) == prompt, (r.choices[0].text, lp.tokens)
        assert lp.token_logprobs[0] is None and all(x < 0 for x in lp.token_logprobs[1:]), lp.token_logprobs
        assert r.usage.completion_tokens == 0

    @check("malformed: unknown model -> 404 NotFoundError")
    def _():
        try:
            client.completions.create(model="no-such-model", prompt="hi", max_tokens=2)
        except openai.NotFoundError as e:
            assert e.status_code == 404
            assert e.body and e.body.get("code") == "model_not_found", e.body
            return
        raise AssertionError("no error raised")

    @check("malformed: temperature 5 -> 400 BadRequestError")
    def _():
        try:
            client.chat.completions.create(model=model, messages=messages, temperature=5)
        except openai.BadRequestError as e:
            assert e.status_code == 400
            assert e.body and e.body.get("param") == "temperature" and e.body.get("type") == "invalid_request_error", e.body
            return
        raise AssertionError("no error raised")

    @check("malformed: empty messages -> 400 BadRequestError")
    def _():
        try:
            client.chat.completions.create(model=model, messages=[])
        except openai.BadRequestError as e:
            assert e.body and e.body.get("param") == "messages", e.body
            return
        raise AssertionError("no error raised")

    failed = [n for n, ok in results if not ok]
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
