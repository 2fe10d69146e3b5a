"""Checks boto3 against a running local server: converse, converse_stream, STS, one validation error,
thinking (a signed reasoning block, replayed and tampered with), a guardrail intervention,
invoke_model (an Anthropic Messages body, a Titan V2 embedding), apply_guardrail,
invoke_guardrail_checks, the async invocations (start, idempotent by token, get, list), a prompt
router's trace, cache details by time to live, a refused tool history and a Bedrock API key.
It needs boto3 1.43.30 or newer (the first with invoke_guardrail_checks). boto3 cannot call
bidirectional streams (InvokeModelWithBidirectionalStream); the server does not serve them either.

`scripts/run_checks.sh` starts a server, installs boto3 in a fresh virtualenv and runs this and
the JavaScript SDK check. By hand: start the server with
`cargo run -p bedrock-pool-local -- --port 18443`, then run
`python3 scripts/boto3_check.py https://127.0.0.1:18443 https://127.0.0.1:18444 <CA file it printed>`.
"""

import json
import os
import sys

import boto3
import botocore.exceptions

bedrock_url, sts_url, ca = sys.argv[1:4]
session = boto3.Session(
    aws_access_key_id="AKIALOCALTESTKEY0001",
    aws_secret_access_key="localTestSecretKeyNotARealSecret000000000",
    region_name="us-west-2",
)
brt = session.client("bedrock-runtime", endpoint_url=bedrock_url, verify=ca)
if not hasattr(brt, "invoke_guardrail_checks"):
    raise SystemExit(f"boto3 {boto3.__version__} (botocore {botocore.__version__}) has no "
                     "invoke_guardrail_checks: this needs boto3>=1.43.30")
model = "anthropic.claude-3-haiku-20240307-v1:0"
messages = [{"role": "user", "content": [{"text": "hello from boto3 today"}]}]

out = brt.converse(modelId=model, messages=messages, inferenceConfig={"maxTokens": 3})
text = out["output"]["message"]["content"][0]["text"]
print("converse:", repr(text), out["stopReason"], out["usage"])
assert text == "hello from boto3" and out["stopReason"] == "max_tokens"
assert out["usage"] == {"inputTokens": 4, "outputTokens": 3, "totalTokens": 7}

events = list(brt.converse_stream(modelId=model, messages=messages)["stream"])
kinds = [next(iter(e)) for e in events]
streamed = "".join(e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e)
print("converse_stream:", kinds, repr(streamed))
assert streamed == "hello from boto3 today"
assert kinds[0] == "messageStart" and kinds[-2:] == ["messageStop", "metadata"]

identity = session.client("sts", endpoint_url=sts_url, verify=ca).get_caller_identity()
print("get_caller_identity:", identity["Account"], identity["Arn"])
assert identity["Arn"] == "arn:aws:iam::123456789012:user/local"

try:
    brt.converse(modelId=model, messages=messages, inferenceConfig={"temperature": 7.0})
    raise SystemExit("expected a ValidationException")
except brt.exceptions.ValidationException as e:
    print("validation:", e.response["Error"]["Code"], e.response["Error"]["Message"])
    assert e.response["Error"]["Message"].startswith("inferenceConfig.temperature")

try:
    session.client("sts", endpoint_url=sts_url, verify=ca, aws_secret_access_key="wrong",
                   aws_access_key_id="AKIALOCALTESTKEY0001").get_caller_identity()
    raise SystemExit("expected SignatureDoesNotMatch")
except botocore.exceptions.ClientError as e:
    print("wrong secret:", e.response["Error"]["Code"])
    assert e.response["Error"]["Code"] == "SignatureDoesNotMatch"
thinking = {"thinking": {"type": "enabled", "budget_tokens": 1024}}
out = brt.converse(modelId=model, messages=messages, additionalModelRequestFields=thinking)
content = out["output"]["message"]["content"]
reasoning = content[0]["reasoningContent"]["reasoningText"]
print("thinking:", repr(reasoning["text"]), "signature", reasoning["signature"][:12] + "...")
assert reasoning["signature"] and content[1]["text"] == "hello from boto3 today"
history = messages + [out["output"]["message"], {"role": "user", "content": [{"text": "more"}]}]
brt.converse(modelId=model, messages=history, additionalModelRequestFields=thinking)
reasoning["text"] = "edited"
try:
    brt.converse(modelId=model, messages=history, additionalModelRequestFields=thinking)
    raise SystemExit("expected a ValidationException for a tampered reasoning block")
except brt.exceptions.ValidationException as e:
    print("tampered reasoning:", e.response["Error"]["Message"])
    assert "Invalid `signature` in `thinking` block" in e.response["Error"]["Message"]
events = list(brt.converse_stream(modelId=model, messages=messages,
                                  additionalModelRequestFields=thinking)["stream"])
thoughts = [e["contentBlockDelta"]["delta"]["reasoningContent"] for e in events
            if e.get("contentBlockDelta", {}).get("contentBlockIndex") == 0]
assert "signature" in thoughts[-1] and all("text" in t for t in thoughts[:-1])

# The default test guardrail (localtestguardrail, version 1) blocks the word "forbidden".
guard = {"guardrailIdentifier": "localtestguardrail", "guardrailVersion": "1", "trace": "enabled"}
blocked = [{"role": "user", "content": [{"text": "a forbidden question"}]}]
out = brt.converse(modelId=model, messages=blocked, guardrailConfig=guard)
print("guardrail:", out["stopReason"], repr(out["output"]["message"]["content"][0]["text"]))
assert out["stopReason"] == "guardrail_intervened"
words = out["trace"]["guardrail"]["inputAssessment"]["localtestguardrail"]["wordPolicy"]["customWords"]
assert words[0]["match"] == "forbidden" and words[0]["action"] == "BLOCKED"

body = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 32,
        "messages": [{"role": "user", "content": "hello invoke from boto3"}]}
out = brt.invoke_model(modelId=model, body=json.dumps(body), contentType="application/json")
reply = json.loads(out["body"].read())
print("invoke_model:", reply["content"][0]["text"], reply["stop_reason"], reply["usage"])
assert reply["content"][0]["text"] == "hello invoke from boto3" and reply["type"] == "message"
assert reply["usage"] == {"input_tokens": 4, "output_tokens": 4}

out = brt.invoke_model(modelId="amazon.titan-embed-text-v2:0", contentType="application/json",
                       body=json.dumps({"inputText": "embed me", "dimensions": 256}))
emb = json.loads(out["body"].read())
print("titan embedding:", len(emb["embedding"]), emb["inputTextTokenCount"])
assert len(emb["embedding"]) == 256 and abs(sum(x * x for x in emb["embedding"]) - 1) < 1e-3

# ApplyGuardrail with the test guardrail: a clean text passes, the trigger word intervenes.
clean = brt.apply_guardrail(guardrailIdentifier="localtestguardrail", guardrailVersion="1",
                            source="INPUT", content=[{"text": {"text": "a fine day"}}])
hit = brt.apply_guardrail(guardrailIdentifier="localtestguardrail", guardrailVersion="DRAFT",
                          source="OUTPUT", content=[{"text": {"text": "a forbidden answer"}}])
print("apply_guardrail:", clean["action"], hit["action"], hit["outputs"])
assert clean["action"] == "NONE" and hit["action"] == "GUARDRAIL_INTERVENED"
assert hit["assessments"][0]["wordPolicy"]["customWords"][0]["match"] == "forbidden"

# InvokeGuardrailChecks (no guardrail resource): the test guardrail's trigger word scores 0.9 in
# each requested category, a clean text 0.0; e-mail addresses are found with their offsets.
checks = {"contentFilter": {"categories": [{"category": "VIOLENCE"}]},
          "promptAttack": {"categories": [{"category": "JAILBREAK"}]},
          "sensitiveInformation": {"entities": [{"type": "EMAIL"}]}}
out = brt.invoke_guardrail_checks(checks=checks, messages=[
    {"role": "user", "content": [{"text": "a forbidden thing, mail jo@example.com"}]}])
email = out["results"]["sensitiveInformation"]["results"][0]
print("invoke_guardrail_checks:", out["results"]["contentFilter"]["results"], email)
assert out["results"]["contentFilter"]["results"][0] == {"category": "VIOLENCE", "severityScore": 0.9}
assert out["results"]["promptAttack"]["results"][0]["severityScore"] == 0.9
assert (email["type"], email["beginOffset"], email["endOffset"]) == ("EMAIL", 24, 38)
assert (email["messageIndex"], email["contentIndex"]) == (0, 0)
assert out["usage"]["promptAttack"]["textUnits"] == 1
clean = brt.invoke_guardrail_checks(checks=checks, messages=[
    {"role": "user", "content": [{"text": "a fine day"}]}])
assert clean["results"]["contentFilter"]["results"][0]["severityScore"] == 0.0
assert clean["results"]["sensitiveInformation"]["results"] == []

# Async invocations: start (idempotent by token), read back, list.
s3 = {"s3OutputDataConfig": {"s3Uri": "s3://my-bucket/videos/"}}
started = brt.start_async_invoke(modelId="amazon.nova-reel-v1:1", modelInput={"prompt": "a cat"},
                                 outputDataConfig=s3, clientRequestToken="boto3-check-token")
again = brt.start_async_invoke(modelId="amazon.nova-reel-v1:1", modelInput={"prompt": "a cat"},
                               outputDataConfig=s3, clientRequestToken="boto3-check-token")
arn = started["invocationArn"]
assert again["invocationArn"] == arn
job = brt.get_async_invoke(invocationArn=arn)
print("async invoke:", arn, job["status"], job["submitTime"])
assert job["status"] in ("InProgress", "Completed") and job["outputDataConfig"] == s3
listed = brt.list_async_invokes(maxResults=10)["asyncInvokeSummaries"]
assert any(j["invocationArn"] == arn for j in listed)

# A prompt router's ARN: the trace names the model that answered.
router = "arn:aws:bedrock:us-west-2:123456789012:default-prompt-router/anthropic.claude:1"
out = brt.converse(modelId=router, messages=messages)
invoked = out["trace"]["promptRouter"]["invokedModelId"]
print("prompt router:", invoked)
assert invoked.endswith("inference-profile/us.anthropic.claude-3-haiku-20240307-v1:0")

# Cache writes by time to live.
cached = [{"role": "user", "content": [{"text": "a long document to cache"},
                                        {"cachePoint": {"type": "default", "ttl": "1h"}},
                                        {"text": "what does it say"}]}]
out = brt.converse(modelId=model, messages=cached)
print("cache details:", out["usage"].get("cacheDetails"))
assert out["usage"]["cacheDetails"][0]["ttl"] == "1h"

# A tool history that answers no tool use is refused as the service refuses it.
tools = {"tools": [{"toolSpec": {"name": "get_weather", "inputSchema": {"json": {"type": "object"}}}}]}
stray = messages + [{"role": "assistant", "content": [{"text": "hm"}]},
                    {"role": "user", "content": [{"toolResult": {"toolUseId": "t9", "content": [{"text": "21"}]}}]}]
try:
    brt.converse(modelId=model, messages=stray, toolConfig=tools)
    raise SystemExit("expected a ValidationException for a stray toolResult")
except brt.exceptions.ValidationException as e:
    print("tool history:", e.response["Error"]["Message"])
    assert "unexpected `tool_use_id` found in `tool_result` blocks: t9" in e.response["Error"]["Message"]

# A Bedrock API key (the server's public test key) instead of SigV4: botocore reads it from
# AWS_BEARER_TOKEN_BEDROCK and switches to bearer auth.
os.environ["AWS_BEARER_TOKEN_BEDROCK"] = "ABSKTG9jYWxUZXN0QXBpS2V5Tm90QVJlYWxLZXk="
keyed = boto3.Session(region_name="us-west-2").client("bedrock-runtime", endpoint_url=bedrock_url, verify=ca)
out = keyed.converse(modelId=model, messages=messages)
print("api key:", out["stopReason"])
del os.environ["AWS_BEARER_TOKEN_BEDROCK"]
print("boto3: all checks passed")
