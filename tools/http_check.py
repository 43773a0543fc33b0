#!/usr/bin/env python3
"""Drives a live rpc-server's HTTP door with the third-party clients people already use.

    python3 tools/http_check.py --spawn .build/debug/rpc-server
    python3 tools/http_check.py --url http://127.0.0.1:8080    # a server already running

Clients: the `openai` SDK (models, chat and text completions streamed and not, embeddings in
base64 and float, a 429 retried after its Retry-After, errors raised as APIError),
`tritonclient[http]` (health, metadata, infer in binary and JSON modes), `prometheus_client`'s
parser over /metrics, and `curl -N` for the seed's raw SSE. They come pinned from
tools/requirements-http.txt; `.ci/run` installs them into a virtual environment.

With --spawn the script starts two servers on free ports (one with a tight rate limit for the
retry check), runs every check, then sends SIGTERM and requires clean exits.
"""

import argparse
import base64
import math
import os
import signal
import struct
import subprocess
import sys
import time
import urllib.request

import numpy as np
import openai
import tritonclient.http as triton
from prometheus_client.parser import text_string_to_metric_families

# Tokens 5 ms apart: the essay (about 100 tokens) then outlasts a deadline of 0.1 s.
SERVER_FLAGS = ["--port", "0", "--http-port", "0", "--token-interval", "0.005", "--batch-timeout", "0.002",
                "--rate-limit", "100000"]
FAILURES = []


def check(name, condition, detail=""):
    print(("ok   " if condition else "FAIL ") + name + ("" if condition else ": " + str(detail)))
    if not condition:
        FAILURES.append(name)


def spawn(binary, extra):
    process = subprocess.Popen([binary] + SERVER_FLAGS + extra, stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            raise SystemExit("the server exited before listening (code %s)" % process.wait())
        if line.startswith("http listening on "):
            return process, "http://" + line.split()[-1]
    process.kill()
    raise SystemExit("the server did not print 'http listening on' within 120 s")


def stop(process, name):
    process.send_signal(signal.SIGTERM)
    try:
        code = process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        code = "killed after 60 s"
    check(name + " exits 0 on SIGTERM", code == 0, code)


def client(url, client_id, **options):
    return openai.OpenAI(base_url=url + "/v1", api_key="any", default_headers={"X-Client-ID": client_id},
                         **options)


def openai_checks(url):
    ai = client(url, "openai-check", max_retries=0)

    ids = [model.id for model in ai.models.list()]
    check("models.list names every model and generator",
          {"echo", "sim", "embed", "essay", "syllables"} <= set(ids), ids)

    reply = ai.chat.completions.create(model="syllables", messages=[{"role": "user", "content": "một hai ba"}])
    check("chat completion in one piece", reply.choices[0].message.content == "một hai ba"
          and reply.choices[0].finish_reason == "stop" and reply.usage.completion_tokens == 3, reply)

    chunks = list(ai.chat.completions.create(
        model="syllables", messages=[{"role": "user", "content": "xin chào các bạn"}], stream=True,
        stream_options={"include_usage": True}))
    roles = [c.choices[0].delta.role for c in chunks if c.choices]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    check("chat stream: a role chunk first", roles[:1] == ["assistant"], roles)
    check("chat stream: the deltas make the text", text == "xin chào các bạn", text)
    check("chat stream: one finish reason, stop", finishes == ["stop"], finishes)
    check("chat stream: a usage chunk last", chunks[-1].usage is not None and chunks[-1].choices == []
          and chunks[-1].usage.completion_tokens == 4, chunks[-1])
    check("chat stream: one id for every chunk", len({c.id for c in chunks}) == 1)

    limited = list(ai.chat.completions.create(
        model="essay", messages=[{"role": "user", "content": "AI"}], stream=True, max_tokens=5))
    finishes = [c.choices[0].finish_reason for c in limited if c.choices and c.choices[0].finish_reason]
    deltas = [c for c in limited if c.choices and c.choices[0].delta.content]
    check("chat stream: max_tokens ends it with length", finishes == ["length"] and len(deltas) == 5,
          (finishes, len(deltas)))

    stopped = ai.chat.completions.create(model="syllables", messages=[{"role": "user", "content": "một hai ba bốn"}],
                                         stop=["ba"])
    check("chat: a stop sequence ends the text before it", stopped.choices[0].message.content == "một hai "
          and stopped.choices[0].finish_reason == "stop", stopped.choices[0])

    completion = ai.completions.create(model="syllables", prompt="một hai ba", max_tokens=2)
    check("completion in one piece honours max_tokens", completion.choices[0].text == "một hai "
          and completion.choices[0].finish_reason == "length", completion)
    pieces = list(ai.completions.create(model="syllables", prompt="một hai ba", stream=True))
    check("completion stream", "".join(p.choices[0].text for p in pieces if p.choices) == "một hai ba"
          and pieces[-1].choices[0].finish_reason == "stop", pieces[-1])

    embedded = ai.embeddings.create(model="embed", input=["xin chào thế giới", "xin chào thế giới!", "batching"])
    vectors = [np.array(item.embedding) for item in embedded.data]
    check("embeddings (base64, the SDK's default) are unit vectors",
          all(abs(np.linalg.norm(v) - 1) < 1e-5 for v in vectors), [np.linalg.norm(v) for v in vectors])
    check("embeddings: similar texts score higher than unrelated ones",
          vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2, (vectors[0] @ vectors[1], vectors[0] @ vectors[2]))
    floats = ai.embeddings.create(model="embed", input="xin chào thế giới", encoding_format="float")
    check("embeddings in float equal those in base64",
          np.allclose(np.array(floats.data[0].embedding), vectors[0], atol=1e-7))

    try:
        ai.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
        check("an unknown model raises NotFoundError", False, "no error")
    except openai.NotFoundError as error:
        check("an unknown model raises NotFoundError", error.status_code == 404
              and error.body.get("type") == "not_found_error", error.body)

    try:
        for _ in ai.chat.completions.create(model="essay", messages=[{"role": "user", "content": "x"}], stream=True,
                                            extra_headers={"X-Request-Timeout": "0.1"}):
            pass
        check("a stream that fails after it started raises APIError", False, "no error")
    except openai.APIError as error:
        check("a stream that fails after it started raises APIError", "deadline" in str(error).lower()
              or "exceeded" in str(error).lower(), error)


def retry_checks(url):
    # This server allows 2 requests per second per client: the third call gets 429 with
    # Retry-After: 1, which the SDK honours before it retries.
    ai = client(url, "retry-check", max_retries=2)
    for _ in range(2):
        ai.completions.create(model="syllables", prompt="a", max_tokens=1)
    start = time.monotonic()
    third = ai.completions.create(model="syllables", prompt="một", max_tokens=1)
    waited = time.monotonic() - start
    check("a 429 is retried after its Retry-After and then succeeds", third.choices[0].text == "một"
          and waited >= 0.5, waited)
    raw = client(url, "retry-check-raw", max_retries=0)
    for _ in range(2):
        raw.completions.create(model="syllables", prompt="a", max_tokens=1)
    try:
        raw.completions.with_raw_response.create(model="syllables", prompt="a", max_tokens=1)
        check("without retries, the 429 reaches the caller", False, "no error")
    except openai.RateLimitError as error:
        headers = error.response.headers
        check("without retries, the 429 reaches the caller with its headers",
              headers.get("retry-after", "").isdigit() and "ratelimit-policy" in headers, dict(headers))


def triton_checks(url):
    host = url.split("//", 1)[1]
    tc = triton.InferenceServerClient(url=host)
    check("triton: server live", tc.is_server_live())
    check("triton: server ready", tc.is_server_ready())
    check("triton: model ready", tc.is_model_ready("echo"))
    check("triton: server metadata", "binary_tensor_data" in tc.get_server_metadata()["extensions"])
    metadata = tc.get_model_metadata("embed")
    check("triton: embed's metadata says FP32 [-1, 64]", metadata["outputs"][0]["datatype"] == "FP32"
          and metadata["outputs"][0]["shape"] == [-1, 64], metadata)

    texts = np.array(["xin chào".encode(), b"\x00\xffbinary", "ba".encode()], dtype=np.object_)
    for binary in (True, False):
        source = texts if binary else texts[[0, 2]]
        tensor = triton.InferInput("INPUT", [len(source)], "BYTES")
        tensor.set_data_from_numpy(source, binary_data=binary)
        result = tc.infer("echo", [tensor], outputs=[triton.InferRequestedOutput("OUTPUT", binary_data=binary)])
        back = [x if isinstance(x, bytes) else x.encode() for x in result.as_numpy("OUTPUT")]
        check("triton: echo infer, %s" % ("binary" if binary else "JSON"), back == list(source), back)

    tensor = triton.InferInput("TEXT", [2, 1], "BYTES")
    tensor.set_data_from_numpy(np.array([["xin chào thế giới".encode()], [b"batching"]], dtype=np.object_))
    vectors = tc.infer("embed", [tensor]).as_numpy("OUTPUT")
    ai = client(url, "triton-compare")
    reference = np.array(ai.embeddings.create(model="embed", input="xin chào thế giới").data[0].embedding)
    check("triton: embed gives FP32 [2, 64] equal to /v1/embeddings", vectors.dtype == np.float32
          and vectors.shape == (2, 64) and np.allclose(vectors[0], reference, atol=1e-7), vectors.shape)

    try:
        tc.infer("no-such-model", [tensor])
        check("triton: an unknown model raises", False, "no error")
    except triton.InferenceServerException as error:
        check("triton: an unknown model raises with the server's message", "no-such-model" in str(error), error)


def metrics_checks(url):
    text = urllib.request.urlopen(url + "/metrics").read().decode()
    families = {family.name: family for family in text_string_to_metric_families(text)}
    wanted = ["vai:requests", "vai:e2e_request_latency_seconds", "vai:request_queue_time_seconds",
              "vai:batch_compute_time_seconds", "vai:batch_size", "vai:num_requests_waiting",
              "vai:num_requests_in_flight", "vai:time_to_first_token_seconds",
              "vai:request_time_per_output_token_seconds", "vai:generation_tokens", "vai:num_streams_running",
              "vai:rate_limit_decisions", "http_requests", "http_request_duration_seconds",
              "vai:open_connections"]
    missing = [name for name in wanted if name not in families]
    check("prometheus_client parses /metrics and finds every family", not missing, missing)
    successes = [s.value for s in families["vai:requests"].samples
                 if s.labels.get("model_name") == "echo" and s.labels.get("outcome") == "success"]
    check("the echo requests of this run are counted", successes and successes[0] >= 3, successes)
    routes = {s.labels.get("route") for s in families["http_requests"].samples}
    check("HTTP requests are counted by route pattern, not path", any("{name}" in r or ":name" in r for r in routes),
          routes)
    running = [s.value for s in families["vai:num_streams_running"].samples]
    check("no stream is left running", running == [0.0], running)


def curl_checks(url):
    raw = subprocess.run(["curl", "-sN", url + "/v1/stream", "-H", "Content-Type: application/json",
                          "-d", '{"prompt": "một \\"hai\\" ba", "model": "syllables"}'],
                         capture_output=True, check=True).stdout.decode()
    expected = 'data: {"token": "một "}\n\ndata: {"token": "\\"hai\\" "}\n\ndata: {"token": "ba"}\n\ndata: [DONE]\n\n'
    check("curl -N /v1/stream: exactly the seed's SSE", raw == expected, repr(raw))
    head = subprocess.run(["curl", "-sN", "-D", "-", "-o", "/dev/null", url + "/v1/stream",
                           "-d", '{"prompt": "a"}'], capture_output=True, check=True).stdout.decode().lower()
    check("SSE headers: no caching, no proxy buffering",
          "cache-control: no-cache" in head and "x-accel-buffering: no" in head, head)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="a server already running (its HTTP door)")
    parser.add_argument("--spawn", metavar="SERVER", help="start this rpc-server binary on free ports")
    args = parser.parse_args()
    if args.url:
        openai_checks(args.url)
        triton_checks(args.url)
        curl_checks(args.url)
        metrics_checks(args.url)
    else:
        main_server, url = spawn(args.spawn, [])
        tight_server, tight_url = spawn(args.spawn, ["--rate-limit", "2", "--rate-window", "1"])
        try:
            openai_checks(url)
            triton_checks(url)
            curl_checks(url)
            metrics_checks(url)
            retry_checks(tight_url)
        finally:
            stop(main_server, "the server")
            stop(tight_server, "the rate-limited server")
    if FAILURES:
        print("%d check(s) failed: %s" % (len(FAILURES), ", ".join(FAILURES)))
        sys.exit(1)
    print("every HTTP check passed")


if __name__ == "__main__":
    main()
