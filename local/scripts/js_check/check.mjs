// Checks the AWS SDK for JavaScript v3 against a running local server, over HTTP/2 and HTTP/1.1:
// converse, converse stream, STS get-caller-identity, one validation error, one bad signature,
// ApplyGuardrail, InvokeGuardrailChecks and the async invocations (start, get, list).
//
// `scripts/run_checks.sh` starts a server and runs this and the boto3 check. By hand: start the
// server with `cargo run -p bedrock-pool-local -- --port 18443`, then run
//   cd scripts/js_check && npm ci
//   node check.mjs https://127.0.0.1:18443 https://127.0.0.1:18444 <CA file it printed>
// The script re-runs itself with NODE_EXTRA_CA_CERTS set to the CA file, which both Node's HTTP/2
// and HTTP/1.1 clients honour (it is read once, at start-up).

import { spawnSync } from "node:child_process";
import { deepStrictEqual, strictEqual } from "node:assert";

const [bedrockUrl, stsUrl, ca] = process.argv.slice(2);
if (!bedrockUrl || !stsUrl || !ca) {
  console.error("usage: node check.mjs <bedrock url> <sts url> <CA file>");
  process.exit(2);
}
if (process.env.NODE_EXTRA_CA_CERTS !== ca) {
  const child = spawnSync(process.execPath, process.argv.slice(1), {
    stdio: "inherit",
    // NODE_NO_WARNINGS: the SDK warns on every run that Node 20 support ends in 2027.
    env: { ...process.env, NODE_EXTRA_CA_CERTS: ca, NODE_NO_WARNINGS: "1" },
  });
  process.exit(child.status ?? 1);
}

const {
  ApplyGuardrailCommand,
  BedrockRuntimeClient,
  ConverseCommand,
  ConverseStreamCommand,
  GetAsyncInvokeCommand,
  InvokeGuardrailChecksCommand,
  ListAsyncInvokesCommand,
  StartAsyncInvokeCommand,
} = await import("@aws-sdk/client-bedrock-runtime");
const { STSClient, GetCallerIdentityCommand } = await import("@aws-sdk/client-sts");
const { NodeHttp2Handler, NodeHttpHandler } = await import("@smithy/node-http-handler");

const credentials = {
  accessKeyId: "AKIALOCALTESTKEY0001",
  secretAccessKey: "localTestSecretKeyNotARealSecret000000000",
};
const region = "us-west-2";
const modelId = "anthropic.claude-3-haiku-20240307-v1:0";
const messages = [{ role: "user", content: [{ text: "hello from js today" }] }];

let failures = 0;
async function check(label, fn) {
  try {
    console.log(`${label}: ${await fn()}`);
  } catch (e) {
    failures += 1;
    console.log(`${label}: FAIL ${e.name}: ${e.message}`);
  }
}

/** Returns the error a call must fail with, or throws when it succeeds. */
async function failure(promise) {
  try {
    await promise;
  } catch (e) {
    return e;
  }
  throw new Error("the call succeeded");
}

for (const [protocol, handler] of [
  ["h2", () => new NodeHttp2Handler()],
  ["http/1.1", () => new NodeHttpHandler()],
]) {
  const options = { region, credentials, maxAttempts: 1 };
  const brt = new BedrockRuntimeClient({
    ...options,
    endpoint: bedrockUrl,
    requestHandler: handler(),
  });
  const sts = new STSClient({ ...options, endpoint: stsUrl, requestHandler: handler() });
  const wrongSecret = new BedrockRuntimeClient({
    ...options,
    credentials: { ...credentials, secretAccessKey: "wrong" },
    endpoint: bedrockUrl,
    requestHandler: handler(),
  });

  await check(`${protocol} converse`, async () => {
    const out = await brt.send(
      new ConverseCommand({ modelId, messages, inferenceConfig: { maxTokens: 3 } }),
    );
    const text = out.output.message.content[0].text;
    strictEqual(text, "hello from js");
    strictEqual(out.stopReason, "max_tokens");
    const { inputTokens, outputTokens, totalTokens } = out.usage;
    deepStrictEqual([inputTokens, outputTokens, totalTokens], [4, 3, 7]);
    return `${JSON.stringify(text)} ${out.stopReason} ${inputTokens}+${outputTokens}`;
  });

  await check(`${protocol} converse stream`, async () => {
    const out = await brt.send(new ConverseStreamCommand({ modelId, messages }));
    const kinds = [];
    let text = "";
    for await (const event of out.stream) {
      const kind = Object.keys(event).find((k) => event[k] !== undefined);
      kinds.push(kind);
      if (kind === "contentBlockDelta") text += event.contentBlockDelta.delta.text;
    }
    strictEqual(text, "hello from js today");
    strictEqual(kinds[0], "messageStart");
    deepStrictEqual(kinds.slice(-2), ["messageStop", "metadata"]);
    return `${kinds.length} events ${JSON.stringify(text)}`;
  });

  await check(`${protocol} get-caller-identity`, async () => {
    const id = await sts.send(new GetCallerIdentityCommand({}));
    strictEqual(id.Arn, "arn:aws:iam::123456789012:user/local");
    return `${id.Account} ${id.Arn}`;
  });

  await check(`${protocol} validation error`, async () => {
    const e = await failure(
      brt.send(new ConverseCommand({ modelId, messages, inferenceConfig: { temperature: 7.0 } })),
    );
    strictEqual(e.name, "ValidationException", e.message);
    strictEqual(e.message.startsWith("inferenceConfig.temperature"), true, e.message);
    return `${e.name} ${e.message}`;
  });

  await check(`${protocol} wrong secret`, async () => {
    const e = await failure(wrongSecret.send(new ConverseCommand({ modelId, messages })));
    strictEqual(e.name, "InvalidSignatureException", e.message);
    return e.name;
  });

  await check(`${protocol} apply guardrail`, async () => {
    const out = await brt.send(
      new ApplyGuardrailCommand({
        guardrailIdentifier: "localtestguardrail",
        guardrailVersion: "1",
        source: "INPUT",
        content: [{ text: { text: "a forbidden question" } }],
      }),
    );
    strictEqual(out.action, "GUARDRAIL_INTERVENED");
    strictEqual(out.assessments[0].wordPolicy.customWords[0].match, "forbidden");
    return `${out.action} ${JSON.stringify(out.outputs[0].text)}`;
  });

  await check(`${protocol} invoke guardrail checks`, async () => {
    const out = await brt.send(
      new InvokeGuardrailChecksCommand({
        messages: [{ role: "user", content: [{ text: "a forbidden thing, mail jo@example.com" }] }],
        checks: {
          contentFilter: { categories: [{ category: "VIOLENCE" }] },
          promptAttack: { categories: [{ category: "JAILBREAK" }] },
          sensitiveInformation: { entities: [{ type: "EMAIL" }] },
        },
      }),
    );
    strictEqual(out.results.contentFilter.results[0].severityScore, 0.9);
    strictEqual(out.results.sensitiveInformation.results[0].type, "EMAIL");
    strictEqual(out.usage.promptAttack.textUnits, 1);
    return `violence ${out.results.contentFilter.results[0].severityScore}, ${out.results.sensitiveInformation.results.length} e-mail`;
  });

  await check(`${protocol} async invoke`, async () => {
    const outputDataConfig = { s3OutputDataConfig: { s3Uri: "s3://my-bucket/videos/" } };
    const started = await brt.send(
      new StartAsyncInvokeCommand({
        modelId: "amazon.nova-reel-v1:1",
        modelInput: { prompt: "a cat" },
        outputDataConfig,
      }),
    );
    const job = await brt.send(new GetAsyncInvokeCommand({ invocationArn: started.invocationArn }));
    strictEqual(job.submitTime instanceof Date, true);
    deepStrictEqual(job.outputDataConfig, outputDataConfig);
    const listed = await brt.send(new ListAsyncInvokesCommand({ maxResults: 100 }));
    strictEqual(
      listed.asyncInvokeSummaries.some((j) => j.invocationArn === started.invocationArn),
      true,
    );
    return `${started.invocationArn} ${job.status}`;
  });

  for (const client of [brt, sts, wrongSecret]) client.destroy();
}

if (failures > 0) {
  console.log(`js: ${failures} check(s) failed`);
  process.exit(1);
}
console.log("js: all checks passed");
