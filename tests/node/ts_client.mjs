// The official TypeScript SDK client on flashsnap-mcp: resources, prompts, completions and elicitation.
//
// node ts_client.mjs --sdk v1|v2 [--era legacy|modern] [--http URL]... [--stdio COMMAND [ARG]...] SCENARIO...
//
//   --sdk v1        @modelcontextprotocol/sdk (1.x, the 2025-11-25 protocol)
//   --sdk v2        @modelcontextprotocol/client (2.x); --era modern pins 2026-07-28, legacy speaks 2025-11-25
//   --http URL      a Streamable HTTP endpoint (repeatable)
//   --stdio CMD...  a server to spawn over stdio, with this process's environment; takes the rest of the line
//                   up to `--`, so put it last or end it with `--`
//   SCENARIO        features: list resources and templates, read a snapshot and a quota, complete template
//                             and prompt arguments, list prompts and get one
//                   accept | decline | cancel: delete a fresh snapshot as a client that can elicit, answering so
//                   no-capability: delete a fresh snapshot as a client that cannot elicit, then again with confirm
//
// Prints one JSON summary on stdout, {"sdk", "era", "targets": {"http" | "stdio": {scenario: ...}}}; any failure of
// the SDK itself exits non-zero, so the Python test sees it. Everything else is for the test to judge.

import { readFileSync } from "node:fs";

const ERA_VERSION = "2026-07-28";

function parse(argv) {
  const options = { sdk: "v1", era: "legacy", targets: [], scenarios: [] };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--sdk") options.sdk = argv[++i];
    else if (arg === "--era") options.era = argv[++i];
    else if (arg === "--http") options.targets.push({ name: "http", url: argv[++i] });
    else if (arg === "--stdio") {
      const command = [];
      while (i + 1 < argv.length && argv[i + 1] !== "--") command.push(argv[++i]);
      if (argv[i + 1] === "--") i++;
      options.targets.push({ name: "stdio", command: command[0], args: command.slice(1) });
    } else options.scenarios.push(arg);
  }
  if (!["v1", "v2"].includes(options.sdk)) throw new Error(`unknown --sdk ${options.sdk}`);
  if (!["legacy", "modern"].includes(options.era)) throw new Error(`unknown --era ${options.era}`);
  if (options.sdk === "v1" && options.era === "modern") throw new Error("the 1.x SDK speaks no 2026-07-28");
  return options;
}

// The version npm installed (neither package exports its package.json).
function installed(name) {
  return JSON.parse(readFileSync(new URL(`./node_modules/${name}/package.json`, import.meta.url), "utf8")).version;
}

// The two SDK lines differ in packages, handler registration and version negotiation, not in the client calls.
async function loadSdk(sdk, era) {
  if (sdk === "v1") {
    const { Client } = await import("@modelcontextprotocol/sdk/client/index.js");
    const { StreamableHTTPClientTransport } = await import("@modelcontextprotocol/sdk/client/streamableHttp.js");
    const { StdioClientTransport } = await import("@modelcontextprotocol/sdk/client/stdio.js");
    const { ElicitRequestSchema } = await import("@modelcontextprotocol/sdk/types.js");
    return {
      version: installed("@modelcontextprotocol/sdk"),
      Client,
      StreamableHTTPClientTransport,
      StdioClientTransport,
      clientOptions: {},
      onElicit: (client, handler) => client.setRequestHandler(ElicitRequestSchema, handler),
      protocolVersion: (client, transport) => transport.protocolVersion ?? null,
    };
  }
  const { Client, StreamableHTTPClientTransport } = await import("@modelcontextprotocol/client");
  const { StdioClientTransport } = await import("@modelcontextprotocol/client/stdio");
  return {
    version: installed("@modelcontextprotocol/client"),
    Client,
    StreamableHTTPClientTransport,
    StdioClientTransport,
    clientOptions: { versionNegotiation: { mode: era === "modern" ? { pin: ERA_VERSION } : "legacy" } },
    onElicit: (client, handler) => client.setRequestHandler("elicitation/create", handler),
    protocolVersion: (client) => client.getNegotiatedProtocolVersion() ?? null,
  };
}

async function connect(sdk, target, { elicit } = {}) {
  const capabilities = elicit ? { elicitation: { form: {} } } : {};
  const client = new sdk.Client(
    { name: "flashsnap-ts-test", version: "1.0.0" },
    { ...sdk.clientOptions, capabilities },
  );
  if (elicit) sdk.onElicit(client, elicit);
  const transport =
    target.url !== undefined
      ? new sdk.StreamableHTTPClientTransport(new URL(target.url))
      : new sdk.StdioClientTransport({
          command: target.command,
          args: target.args,
          env: { ...process.env },
          stderr: "inherit",
        });
  await client.connect(transport);
  return { client, transport, protocolVersion: sdk.protocolVersion(client, transport) };
}

function textOf(result) {
  const [content] = result.contents;
  return { uri: content.uri, mimeType: content.mimeType, json: JSON.parse(content.text) };
}

function toolResult(result) {
  return {
    isError: result.isError === true,
    structuredContent: result.structuredContent ?? null,
    error: result._meta?.["io.flashsnap/error"] ?? null,
    text: (result.content ?? []).filter((c) => c.type === "text").map((c) => c.text).join("\n"),
  };
}

async function save(client, name) {
  const saved = await client.callTool({ name: "snapshot", arguments: { name, core: `${name}, kept.` } });
  if (saved.isError) throw new Error(`snapshot failed: ${JSON.stringify(saved)}`);
  return saved.structuredContent.id;
}

async function features(client, snapshotId) {
  const resources = (await client.listResources()).resources;
  const templates = (await client.listResourceTemplates()).resourceTemplates;
  const snapshot = textOf(await client.readResource({ uri: `neuralsnap://snapshots/${snapshotId}` }));
  const complete = async (ref, name, value, context) =>
    (await client.complete({ ref, argument: { name, value }, ...(context ? { context: { arguments: context } } : {}) }))
      .completion.values;
  const quotaRef = { type: "ref/resource", uri: "neuroflash://workspaces/{workspace_id}/quota" };
  const workspaces = await complete(quotaRef, "workspace_id", "");
  const quota = textOf(await client.readResource({ uri: `neuroflash://workspaces/${workspaces[0]}/quota` }));
  const snapshotRef = { type: "ref/resource", uri: "neuralsnap://snapshots/{snapshot_id}" };
  const prompts = (await client.listPrompts()).prompts;
  const promptRef = { type: "ref/prompt", name: "write_in_brand_voice" };
  const brandVoices = await complete(promptRef, "brand_voice_id", "", { workspace_id: workspaces[0] });
  const prompt = await client.getPrompt({
    name: "write_in_brand_voice",
    arguments: { brief: "A tagline for a TypeScript meetup", brand_voice_id: brandVoices[0], workspace_id: workspaces[0] },
  });
  return {
    resources: resources.map((r) => ({ uri: r.uri, name: r.name, mimeType: r.mimeType })),
    templates: templates.map((t) => ({ uriTemplate: t.uriTemplate, name: t.name, mimeType: t.mimeType })),
    snapshot,
    completions: {
      workspace_id: workspaces,
      snapshot_id: await complete(snapshotRef, "snapshot_id", snapshotId.slice(0, 6)),
      snapshot_id_unknown: await complete(snapshotRef, "snapshot_id", "zzz"),
      prompt_workspace_id: await complete(promptRef, "workspace_id", ""),
      prompt_brand_voice_id: brandVoices,
    },
    quota,
    prompts: prompts.map((p) => ({
      name: p.name,
      title: p.title ?? null,
      arguments: (p.arguments ?? []).map((a) => ({ name: a.name, required: a.required === true })),
    })),
    prompt: {
      description: prompt.description ?? null,
      messages: prompt.messages.map((m) => ({ role: m.role, text: m.content.type === "text" ? m.content.text : null })),
    },
  };
}

async function deleteAsking(sdk, target, answers) {
  // One connection that can elicit; each answer is for one delete_snapshot of a fresh snapshot.
  const asked = [];
  let answer = null;
  const { client, protocolVersion } = await connect(sdk, target, {
    elicit: async (request) => {
      asked.push({ message: request.params.message, requestedSchema: request.params.requestedSchema ?? null });
      return answer === "accept" ? { action: "accept", content: { confirm: true } } : { action: answer };
    },
  });
  try {
    const confirmable = await deleteSnapshotTakesConfirm(client);
    const out = {};
    for (const action of answers) {
      answer = action;
      asked.length = 0;
      const id = await save(client, `Delete me (${action})`);
      const result = toolResult(await client.callTool({ name: "delete_snapshot", arguments: { id } }));
      out[action] = { protocolVersion, confirmable, snapshotId: id, elicitations: [...asked], result };
    }
    return out;
  } finally {
    await client.close();
  }
}

async function deleteWithoutAsking(sdk, target) {
  const { client, protocolVersion } = await connect(sdk, target);
  try {
    const confirmable = await deleteSnapshotTakesConfirm(client);
    const id = await save(client, "Delete me (no capability)");
    const first = toolResult(await client.callTool({ name: "delete_snapshot", arguments: { id } }));
    const confirmed = toolResult(await client.callTool({ name: "delete_snapshot", arguments: { id, confirm: true } }));
    return { "no-capability": { protocolVersion, confirmable, snapshotId: id, first, confirmed } };
  } finally {
    await client.close();
  }
}

async function deleteSnapshotTakesConfirm(client) {
  const tool = (await client.listTools()).tools.find((t) => t.name === "delete_snapshot");
  return Object.keys(tool?.inputSchema?.properties ?? {}).includes("confirm");
}

async function run(sdk, targets, scenarios) {
  const out = Object.fromEntries(targets.map((t) => [t.name, {}]));
  if (scenarios.includes("features")) {
    // Every target saves its snapshot before any lists: the servers may share one short listing cache.
    const open = [];
    try {
      for (const target of targets) {
        const { client, protocolVersion } = await connect(sdk, target);
        open.push({ target, client, protocolVersion });
      }
      for (const one of open) one.snapshotId = await save(one.client, `Read by TypeScript over ${one.target.name}`);
      for (const { target, client, protocolVersion, snapshotId } of open)
        out[target.name].features = { protocolVersion, snapshotId, ...(await features(client, snapshotId)) };
    } finally {
      for (const { client } of open) await client.close();
    }
  }
  const answers = scenarios.filter((s) => ["accept", "decline", "cancel"].includes(s));
  for (const target of targets) {
    if (answers.length) Object.assign(out[target.name], await deleteAsking(sdk, target, answers));
    if (scenarios.includes("no-capability")) Object.assign(out[target.name], await deleteWithoutAsking(sdk, target));
  }
  return out;
}

const options = parse(process.argv.slice(2));
const sdk = await loadSdk(options.sdk, options.era);
const targets = await run(sdk, options.targets, options.scenarios);
const summary = { sdk: options.sdk, version: sdk.version, era: options.era, targets };
process.stdout.write(`${JSON.stringify(summary)}\n`);
