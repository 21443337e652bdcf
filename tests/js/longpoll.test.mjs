// The LongPoll transport of the generic Phoenix server (`phoenix_test_server`) through the
// official `phoenix` npm client (1.8.16, and 1.8.12 for the basics): cases 53–55 of
// phoenix-protocol.md §8. Self-contained
// (it starts its own server) so it runs beside the rest of the suite:
//
//     cargo build --examples && node --test tests/js/longpoll.test.mjs
//
// Over Node the client's LongPoll uses `fetch`; a spy wrapped around `globalThis.fetch` records
// every request. The server's test routing blocks WebSocket upgrades whose query holds
// `block_websocket=refuse` (HTTP 403) or `block_websocket=hang` (never answered), as a proxy
// that blocks WebSockets would, while LongPoll requests with the same params go through.
// Every wait is a failure guard; timing assertions are generous bounds only.

import { test, describe, before, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Socket, LongPoll } from "phoenix";
import * as phoenix1812 from "phoenix-1812";
import { WebSocket } from "ws";

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const TARGET_DIR = process.env.CARGO_TARGET_DIR
  ? resolve(REPO_ROOT, process.env.CARGO_TARGET_DIR)
  : join(REPO_ROOT, "target");
const SERVER = process.env.PHOENIX_TEST_SERVER
  ? resolve(process.env.PHOENIX_TEST_SERVER)
  : join(TARGET_DIR, "debug", "examples", "phoenix_test_server");

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function withTimeout(promise, ms, what) {
  let timer;
  const guard = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, guard]).finally(() => clearTimeout(timer));
}

async function waitFor(predicate, ms, what) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = predicate();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(20);
  }
}

/** Starts phoenix_test_server on port 0; resolves to {url, stop, output()}. */
async function startServer() {
  if (!existsSync(SERVER)) throw new Error(`${SERVER} does not exist; run cargo build --examples`);
  const proc = spawn(SERVER, ["0"], { stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  const port = await withTimeout(
    new Promise((resolvePort, reject) => {
      const onData = (chunk) => {
        output += chunk.toString();
        const m = output.match(/listening on 127\.0\.0\.1:(\d+)/);
        if (m) resolvePort(Number(m[1]));
      };
      proc.stdout.on("data", onData);
      proc.stderr.on("data", onData);
      proc.on("exit", (code) => reject(new Error(`server exited (${code}):\n${output}`)));
    }),
    30000,
    "phoenix_test_server to listen",
  );
  const exited = new Promise((r) => proc.on("exit", r));
  return {
    url: `ws://127.0.0.1:${port}/socket`,
    output: () => output,
    async stop() {
      proc.kill("SIGTERM");
      const timer = setTimeout(() => proc.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Records the client's HTTP requests: {method, url, body, at, status, json}. */
class FetchSpy {
  constructor() {
    this.requests = [];
    this.original = globalThis.fetch;
  }
  install() {
    const spy = this;
    globalThis.fetch = async function (url, options = {}) {
      const entry = { method: options.method || "GET", url: String(url), body: options.body, at: Date.now() };
      spy.requests.push(entry);
      const response = await spy.original(url, options);
      entry.status = response.status;
      const text = await response.clone().text();
      try {
        entry.json = JSON.parse(text);
      } catch {
        entry.json = null;
      }
      return response;
    };
  }
  uninstall() {
    globalThis.fetch = this.original;
  }
  posts() {
    return this.requests.filter((r) => r.method === "POST");
  }
  /** The session token of the last GET that carried one. */
  lastToken() {
    const gets = this.requests.filter((r) => r.method === "GET" && new URL(r.url).searchParams.get("token"));
    return gets.length ? new URL(gets.at(-1).url).searchParams.getAll("token").at(-1) : null;
  }
}

function joinOk(channel, ms = 5000) {
  return withTimeout(
    new Promise((resolveJoin, reject) => {
      channel
        .join(ms)
        .receive("ok", resolveJoin)
        .receive("error", (r) => reject(new Error(`join ${channel.topic}: ${JSON.stringify(r)}`)))
        .receive("timeout", () => reject(new Error(`join ${channel.topic} timed out`)));
    }),
    ms + 2000,
    `join of ${channel.topic}`,
  );
}

function push(channel, event, payload, ms = 5000) {
  return withTimeout(
    new Promise((resolvePush) => {
      channel
        .push(event, payload, ms)
        .receive("ok", (response) => resolvePush({ status: "ok", response }))
        .receive("error", (response) => resolvePush({ status: "error", response }))
        .receive("timeout", () => resolvePush({ status: "timeout" }));
    }),
    ms + 2000,
    `reply to ${event}`,
  );
}

function opened(socket, ms = 5000) {
  return withTimeout(new Promise((r) => socket.onOpen(r)), ms, "socket onOpen");
}

describe("LongPoll through phoenix 1.8.16", () => {
  let server;
  let spy;
  let sockets = [];
  const socket = (opts) => {
    const s = new Socket(server.url, opts);
    sockets.push(s);
    return s;
  };
  before(async () => {
    server = await startServer();
  });
  after(async () => {
    await server?.stop();
  });
  afterEach(() => {
    for (const s of sockets) s.disconnect();
    sockets = [];
    spy?.uninstall();
  });
  const t = (name, fn) =>
    test(name, async () => {
      spy = new FetchSpy();
      spy.install();
      try {
        await fn();
      } catch (e) {
        e.message += `\n--- phoenix_test_server output ---\n${server.output().split("\n").slice(-30).join("\n")}`;
        throw e;
      }
    });

  t("case 53: join, two pushes in one POST, a broadcast, and never a heartbeat", async () => {
    const lp = socket({ transport: LongPoll, heartbeatIntervalMs: 100 });
    lp.connect();
    await opened(lp);
    const first = spy.requests[0];
    assert.equal(new URL(first.url).pathname, "/socket/longpoll");
    assert.deepEqual(first.json.messages, []);
    assert.equal(first.json.status, 410);

    const ch = lp.channel("test:lp");
    await joinOk(ch);
    const posts = spy.posts().length;
    const replies = Promise.all([push(ch, "echo", { n: 1 }), push(ch, "echo", { n: 2 })]);
    assert.deepEqual(await replies, [
      { status: "ok", response: { echo: { n: 1 } } },
      { status: "ok", response: { echo: { n: 2 } } },
    ]);
    const batch = spy.posts().slice(posts);
    assert.equal(batch.length, 1, "both pushes went in one POST");
    const lines = batch[0].body.split("\n").map((l) => JSON.parse(l));
    assert.deepEqual(
      lines.map((l) => [l[2], l[3], l[4]]),
      [
        ["test:lp", "echo", { n: 1 }],
        ["test:lp", "echo", { n: 2 }],
      ],
    );
    assert.equal(batch[0].json.status, 200);

    // A broadcast from a WebSocket client on the same topic reaches the long-poll client.
    const ws = socket({ transport: WebSocket });
    ws.connect();
    await opened(ws);
    const wsCh = ws.channel("test:lp");
    await joinOk(wsCh);
    const got = new Promise((r) => ch.on("bcasted", r));
    wsCh.push("bcast", { from: "ws" });
    assert.deepEqual(await withTimeout(got, 5000, "bcasted over LongPoll"), { from: "ws" });

    await sleep(400); // four heartbeat intervals
    const sent = spy.posts().flatMap((p) => p.body.split("\n"));
    assert.ok(!sent.some((l) => l.includes('"heartbeat"')), `no heartbeat over LongPoll: ${sent}`);
  });

  t("case 53 with phoenix 1.8.12: join, push and broadcast over LongPoll", async () => {
    const s = new phoenix1812.Socket(server.url, { transport: phoenix1812.LongPoll });
    sockets.push(s);
    s.connect();
    await opened(s);
    const ch = s.channel("test:old");
    await joinOk(ch);
    assert.deepEqual(await push(ch, "echo", { v: "1.8.12" }), {
      status: "ok",
      response: { echo: { v: "1.8.12" } },
    });
    const got = new Promise((r) => ch.on("bcasted", r));
    ch.push("bcast", { n: 1 });
    assert.deepEqual(await withTimeout(got, 5000, "bcasted"), { n: 1 });
  });

  t("case 54: a refused WebSocket upgrade falls back at once and joins over LongPoll", async () => {
    const started = Date.now();
    const s = socket({
      transport: WebSocket,
      longPollFallbackMs: 3000,
      params: { block_websocket: "refuse" },
    });
    s.connect();
    await opened(s);
    assert.equal(s.transport, LongPoll);
    const firstPoll = spy.requests[0];
    assert.ok(firstPoll, "the client polled");
    assert.ok(firstPoll.at - started < 2000, `fell back before the 3000 ms timer (${firstPoll.at - started} ms)`);
    // The socket params go along, and the session was opened with them.
    assert.equal(new URL(firstPoll.url).searchParams.get("block_websocket"), "refuse");
    const ch = s.channel("test:fallback");
    await joinOk(ch);
    assert.deepEqual(await push(ch, "echo", { via: "longpoll" }), {
      status: "ok",
      response: { echo: { via: "longpoll" } },
    });
  });

  t("case 54: a WebSocket upgrade that never completes falls back after longPollFallbackMs", async () => {
    const started = Date.now();
    const s = socket({
      transport: WebSocket,
      longPollFallbackMs: 500,
      params: { block_websocket: "hang" },
    });
    s.connect();
    await opened(s);
    assert.equal(s.transport, LongPoll);
    const waited = spy.requests[0].at - started;
    assert.ok(waited >= 400, `waited for the fallback timer (${waited} ms)`);
    const ch = s.channel("test:hang");
    await joinOk(ch);
    assert.equal((await push(ch, "echo", {})).status, "ok");
  });

  t("case 55: a session dropped by the server while the client polls makes it reconnect and rejoin", async () => {
    const s = socket({ transport: LongPoll });
    const closes = [];
    s.onClose((e) => closes.push(e.code));
    s.connect();
    await opened(s);
    const ch = s.channel("test:gone");
    await joinOk(ch);
    const firstJoinRef = ch.joinRef();
    const token = await waitFor(() => spy.lastToken(), 5000, "a poll with the token");
    // A malformed frame posted on the session ends it, as a WebSocket would be closed.
    const url = new URL(server.url.replace("ws://", "http://") + "/longpoll");
    url.searchParams.set("vsn", "2.0.0");
    url.searchParams.set("token", token);
    const killed = await spy.original(url, {
      method: "POST",
      headers: { "content-type": "application/x-ndjson" },
      body: "[not json",
    });
    assert.deepEqual(await killed.json(), { status: 410 });
    await waitFor(() => closes.includes(3410), 15000, "close 3410 session_gone");
    await waitFor(() => ch.state === "joined" && ch.joinRef() !== firstJoinRef, 15000, "the channel rejoined");
    assert.equal((await push(ch, "echo", { again: true })).status, "ok");
  });
});
