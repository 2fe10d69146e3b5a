"""Checks boto3 against a running local server: converse, converse_stream, STS, one validation error.

Start the server with `cargo run --example local_server -- --port 18443`, then run
`python3 scripts/boto3_check.py https://127.0.0.1:18443 https://127.0.0.1:18444 <CA file it printed>`.
"""

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
print("boto3: all checks passed")
