// The LongPoll transport of the generic Phoenix server (`phoenix_test_server`) through the
// official `phoenix` npm client (1.8.16, and 1.8.12 for the basics): cases 53–55 of
// phoenix-protocol.md §8. With the binaries built (see README.md):
//
//     node --test longpoll.test.mjs
//
// Over Node the client's LongPoll uses `fetch`; a spy wrapped around `globalThis.fetch` records
// every request. The server's test routing breaks WebSocket upgrades whose query holds
// `block_websocket=refuse` (HTTP 403), `block_websocket=hang` (never answered) or
// `block_websocket=mute` (opened, then silent), as a network that blocks WebSockets would,
// while LongPoll requests with the same params go through.
// Every wait is a failure guard; timing assertions are generous bounds only.

import { test, describe, before, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import * as phoenix from "phoenix";
import * as phoenix1812 from "phoenix-1812";
import {
  PHOENIX_TEST_SERVER,
  ServerProcess,
  Clients,
  openSocket,
  joinOk,
  push,
  sleep,
  waitFor,
  withTimeout,
  withServerLog,
} from "./harness.mjs";

const { LongPoll } = phoenix;

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
      // The client reads the answer concurrently with the spy: tests await `entry.done`
      // before looking at `entry.json`, or they race the spy's own parsing.
      let finish;
      entry.done = new Promise((resolve) => (finish = resolve));
      spy.requests.push(entry);
      try {
        const response = await spy.original(url, options);
        entry.status = response.status;
        const text = await response.clone().text();
        try {
          entry.json = JSON.parse(text);
        } catch {
          entry.json = null;
        }
        return response;
      } finally {
        finish();
      }
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

describe("LongPoll through phoenix 1.8.16", () => {
  let server;
  let spy;
  let clients;
  before(async () => {
    server = new ServerProcess(PHOENIX_TEST_SERVER, ["0"], { name: "phoenix_test_server" });
    await server.start();
  });
  after(async () => {
    await server?.stop();
  });
  afterEach(() => {
    clients?.closeAll();
    spy?.uninstall();
  });
  const t = (name, fn) =>
    test(name, () => {
      clients = new Clients(phoenix);
      spy = new FetchSpy();
      spy.install();
      return withServerLog(server, fn);
    });
  /** A socket of the given client module, closed after the test (LongPoll: no frame spy). */
  const socket = (opts, module = phoenix) => {
    const s = new module.Socket(server.url, opts);
    clients.sockets.push(s);
    return s;
  };

  t("case 53: join, two pushes in one POST, a broadcast, and never a heartbeat", async () => {
    const lp = socket({ transport: LongPoll, heartbeatIntervalMs: 100 });
    await openSocket(lp);
    const first = spy.requests[0];
    await first.done;
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
    await batch[0].done;
    assert.equal(batch[0].json.status, 200);

    // A broadcast from a WebSocket client on the same topic reaches the long-poll client.
    const ws = await clients.connected(server.url);
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
    const s = socket({ transport: phoenix1812.LongPoll }, phoenix1812);
    await openSocket(s);
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
    const s = clients.socket(server.url, {
      longPollFallbackMs: 3000,
      params: { block_websocket: "refuse" },
    });
    await openSocket(s);
    assert.equal(s.transport, LongPoll);
    assert.equal(s.spy.connections.length, 1, "one WebSocket attempt");
    assert.equal(s.spy.connections[0].opened, false);
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
    const s = clients.socket(server.url, {
      longPollFallbackMs: 500,
      params: { block_websocket: "hang" },
    });
    await openSocket(s);
    assert.equal(s.transport, LongPoll);
    assert.equal(s.spy.connections[0].opened, false);
    const waited = spy.requests[0].at - started;
    assert.ok(waited >= 400, `waited for the fallback timer (${waited} ms)`);
    const ch = s.channel("test:hang");
    await joinOk(ch);
    assert.equal((await push(ch, "echo", {})).status, "ok");
  });

  t("case 54: an open WebSocket whose health-check heartbeat goes unanswered falls back", async () => {
    const s = clients.socket(server.url, {
      longPollFallbackMs: 500,
      params: { block_websocket: "mute" },
    });
    await openSocket(s, 10000);
    await waitFor(() => s.transport === LongPoll, 5000, "the fallback to LongPoll");
    const [ws] = s.spy.connections;
    assert.equal(ws.opened, true, "the WebSocket opened");
    assert.equal(s.spy.sentFrames("phoenix", "heartbeat").length, 1, "one health-check heartbeat");
    const ch = s.channel("test:mute");
    await joinOk(ch);
    assert.equal((await push(ch, "echo", {})).status, "ok");
    assert.ok(spy.posts().length >= 2, "the join and the push went over LongPoll");
  });

  t("case 55: a session dropped by the server while the client polls makes it reconnect and rejoin", async () => {
    const s = socket({ transport: LongPoll });
    const closes = [];
    s.onClose((e) => closes.push(e.code));
    await openSocket(s);
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
