// Checks the AWS SDK for JavaScript v3 against a running local server, over HTTP/2 and HTTP/1.1:
// converse, converse stream, STS get-caller-identity, one validation error, one bad signature,
// ApplyGuardrail, InvokeGuardrailChecks and the async invocations (start, get, list); then
// InvokeModelWithBidirectionalStream: over HTTP/2 a Nova Sonic session with the echo model (a text
// turn, then an audio turn sent only once the text's answer came back), over HTTP/1.1 its refusal.
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
  InvokeModelWithBidirectionalStreamCommand,
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
const sonicModelId = "amazon.nova-sonic-v1:0";
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

/**
 * The input of a bidirectional session: an async iterable of `chunk` events, each one Nova Sonic
 * event, that yields what the check pushes as it goes and ends when it is closed.
 */
function sessionInput() {
  const queued = [];
  let wake = () => {};
  let closed = false;
  return {
    push(name, body) {
      const bytes = new TextEncoder().encode(JSON.stringify({ event: { [name]: body } }));
      queued.push({ chunk: { bytes } });
      wake();
    },
    close() {
      closed = true;
      wake();
    },
    async *[Symbol.asyncIterator]() {
      for (;;) {
        if (queued.length > 0) yield queued.shift();
        else if (closed) return;
        else await new Promise((resolve) => (wake = resolve));
      }
    },
  };
}

/**
 * Reads a session's output: `until(name)` returns the events (`[name, body]`) up to and with the
 * first one named `name`, `end()` checks that the output ends there. Either fails when nothing
 * comes for 10 s (a server that waited for the whole input before answering, say).
 */
function sessionOutput(body) {
  const events = body[Symbol.asyncIterator]();
  const next = async () => {
    let timer;
    const late = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error("no output event for 10 s")), 10_000);
    });
    try {
      return await Promise.race([events.next(), late]);
    } finally {
      clearTimeout(timer);
    }
  };
  return {
    async until(name) {
      const seen = [];
      for (;;) {
        const { done, value } = await next();
        if (done) {
          throw new Error(`the output ended before ${name} (after ${seen.map((e) => e[0])})`);
        }
        const event = JSON.parse(new TextDecoder().decode(value.chunk.bytes)).event;
        const [kind] = Object.keys(event);
        seen.push([kind, event[kind]]);
        if (kind === name) return seen;
      }
    },
    async end() {
      const { done, value } = await next();
      if (!done) throw new Error(`an output event after sessionEnd: ${JSON.stringify(value)}`);
    },
  };
}

/** A Nova Sonic session with the echo model over HTTP/2: a text turn, then an audio turn. */
async function sonicSession(brt) {
  const input = sessionInput();
  const promptName = "js-prompt";
  input.push("sessionStart", { inferenceConfiguration: { maxTokens: 1024, topP: 0.9 } });
  input.push("promptStart", { promptName, textOutputConfiguration: { mediaType: "text/plain" } });
  input.push("contentStart", {
    promptName,
    contentName: "js-text",
    type: "TEXT",
    role: "USER",
    interactive: true,
    textInputConfiguration: { mediaType: "text/plain" },
  });
  input.push("textInput", { promptName, contentName: "js-text", content: "hello from js" });
  input.push("contentEnd", { promptName, contentName: "js-text" });
  try {
    const out = await brt.send(
      new InvokeModelWithBidirectionalStreamCommand({ modelId: sonicModelId, body: input }),
    );
    const output = sessionOutput(out.body);

    const turn = await output.until("usageEvent");
    deepStrictEqual(
      turn.map(([kind]) => kind),
      ["completionStart", "contentStart", "textOutput", "contentEnd", "usageEvent"],
    );
    const [, [, start], [, said], [, end], [, usage]] = turn;
    deepStrictEqual([start.type, start.role], ["TEXT", "ASSISTANT"]);
    deepStrictEqual(
      [said.role, said.content, said.promptName],
      ["ASSISTANT", "hello from js", promptName],
    );
    strictEqual(end.stopReason, "END_TURN");
    const { totalInputTokens, totalOutputTokens, totalTokens } = usage;
    deepStrictEqual([totalInputTokens, totalOutputTokens, totalTokens], [3, 3, 6]);

    // Only now the audio (200 ms of 16 kHz 16-bit mono), in two pieces: the session is a real
    // exchange, its input still open while the answers come.
    const audio = Buffer.alloc(6400);
    for (let i = 0; i < audio.length; i += 1) audio[i] = (i * 7 + (i >> 8)) & 0xff;
    input.push("contentStart", {
      promptName,
      contentName: "js-audio",
      type: "AUDIO",
      role: "USER",
      interactive: true,
      audioInputConfiguration: {
        mediaType: "audio/lpcm",
        sampleRateHertz: 16000,
        sampleSizeBits: 16,
        channelCount: 1,
        audioType: "SPEECH",
        encoding: "base64",
      },
    });
    for (const piece of [audio.subarray(0, 4000), audio.subarray(4000)]) {
      const content = piece.toString("base64");
      input.push("audioInput", { promptName, contentName: "js-audio", content });
    }
    input.push("contentEnd", { promptName, contentName: "js-audio" });
    const heard = await output.until("usageEvent");
    const transcript = heard.find(([kind, e]) => kind === "textOutput" && e.role === "USER");
    strictEqual(transcript?.[1].content, "[audio: 6400 bytes]");
    const audioStart = heard.find(([kind, e]) => kind === "contentStart" && e.type === "AUDIO");
    strictEqual(audioStart?.[1].role, "ASSISTANT");
    const back = Buffer.concat(
      heard
        .filter(([kind]) => kind === "audioOutput")
        .map(([, e]) => Buffer.from(e.content, "base64")),
    );
    strictEqual(back.equals(audio), true, `${back.length} audio bytes back, not the 6400 sent`);
    const speech = heard.at(-1)[1].details.delta.input.speechTokens;
    strictEqual(speech, 5);

    input.push("promptEnd", { promptName });
    const completion = await output.until("completionEnd");
    strictEqual(completion.length, 1, JSON.stringify(completion));
    input.push("sessionEnd", {});
    input.close();
    await output.end();
    return (
      `${JSON.stringify(said.content)} ${totalTokens} tokens, ` +
      `${back.length} audio bytes back (${speech} speech tokens), ended`
    );
  } finally {
    input.close();
  }
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

  if (protocol === "h2") {
    await check(`${protocol} bidirectional stream`, () => sonicSession(brt));
  } else {
    // The SDK sends the event stream over HTTP/1.1 too (chunked): the server refuses it. A client
    // of its own with a quiet logger, else the SDK warns on the console ("An error was
    // encountered in a non-retryable streaming request") as for any failed streaming call.
    await check(`${protocol} bidirectional stream refused`, async () => {
      const quiet = { trace() {}, debug() {}, info() {}, warn() {}, error() {} };
      const h1 = new BedrockRuntimeClient({
        ...options,
        endpoint: bedrockUrl,
        requestHandler: handler(),
        logger: quiet,
      });
      const input = sessionInput();
      input.push("sessionStart", {});
      try {
        const e = await failure(
          h1.send(
            new InvokeModelWithBidirectionalStreamCommand({ modelId: sonicModelId, body: input }),
          ),
        );
        strictEqual(e.name, "ValidationException", e.message);
        strictEqual(e.$metadata.httpStatusCode, 400);
        const needsHttp2 = "InvokeModelWithBidirectionalStream needs HTTP/2";
        strictEqual(e.message.startsWith(needsHttp2), true, e.message);
        return `${e.name} ${e.message}`;
      } finally {
        input.close();
        h1.destroy();
      }
    });
  }

  for (const client of [brt, sts, wrongSecret]) client.destroy();
}

if (failures > 0) {
  console.log(`js: ${failures} check(s) failed`);
  process.exit(1);
}
console.log("js: all checks passed");
