// Conformance of the generic Phoenix server (`phoenix_test_server`, the test channel of
// phoenix-protocol.md §8) as seen through the official `phoenix` npm client. Case numbers are
// those of §8.

import { test, describe, before, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import * as phoenix from "phoenix";
import * as phoenix1812 from "phoenix-1812";
import {
  PHOENIX_TEST_SERVER,
  ServerProcess,
  Clients,
  openSocket,
  join,
  joinOk,
  push,
  collect,
  bytes,
  sleep,
  waitFor,
  withTimeout,
  withServerLog,
} from "./harness.mjs";

function testServer(idleMs) {
  const args = idleMs ? ["0", String(idleMs)] : ["0"];
  return new ServerProcess(PHOENIX_TEST_SERVER, args, { name: "phoenix_test_server" });
}

describe("phoenix_test_server through phoenix 1.8.16", () => {
  let server;
  let clients;
  before(async () => {
    server = testServer();
    await server.start();
  });
  after(async () => {
    await server?.stop();
  });
  afterEach(() => clients?.closeAll());
  const t = (name, fn) =>
    test(name, () => {
      clients = new Clients(phoenix);
      return withServerLog(server, fn);
    });

  t("case 1: the client connects with params in the URL and opens", async () => {
    const socket = await clients.connected(server.url, { params: { token: "abc" } });
    const [conn] = socket.spy.connections;
    const url = new URL(conn.url);
    assert.equal(url.pathname, "/socket/websocket");
    assert.equal(url.search, "?token=abc&vsn=2.0.0");
    assert.ok(socket.isConnected());
    // the params reach the server's connect hook: the same socket with reject=true is refused
    const refused = clients.socket(server.url, { params: { token: "abc", reject: "true" } });
    const errored = new Promise((r) => refused.onError(r));
    refused.connect();
    await withTimeout(errored, 5000, "onError of the socket with reject=true");
    assert.equal(refused.events.open, 0);
    // and the V2 protocol is spoken over the accepted one
    const ch = socket.channel("test:params");
    await joinOk(ch);
    const r = await push(ch, "echo", { q: 1 });
    assert.deepEqual(r, { status: "ok", response: { echo: { q: 1 } } });
  });

  t("case 4: a refused connect gives onError then onClose 1006, and the client retries", async () => {
    const order = [];
    const socket = clients.socket(server.url, { params: { reject: "true" } });
    socket.onError(() => order.push("error"));
    socket.onClose((e) => order.push(`close ${e.code}`));
    socket.connect();
    // retries at about 10, 50, 100, 150 ms: several attempts appear well within 3 s
    await waitFor(() => socket.spy.connections.length >= 4, 5000, "4 connection attempts");
    socket.disconnect();
    assert.equal(socket.events.open, 0, "a refused socket never opens");
    assert.deepEqual(order.slice(0, 2), ["error", "close 1006"]);
    for (let i = 0; i + 1 < order.length && i < 6; i += 2) {
      assert.deepEqual(order.slice(i, i + 2), ["error", "close 1006"], `attempt ${i / 2 + 1}: ${order}`);
    }
  });

  t("case 6: authToken sends the phoenix subprotocol and the server selects it", async () => {
    const socket = await clients.connected(server.url, { authToken: "my secret token!?" });
    const [conn] = socket.spy.connections;
    assert.deepEqual(conn.protocols, ["phoenix", "base64url.bearer.phx.bXkgc2VjcmV0IHRva2VuIT8"]);
    assert.equal(conn.ws.protocol, "phoenix");
    await joinOk(socket.channel("test:auth"));
  });

  t("case 13: join with params returns the join response; join_ref equals ref", async () => {
    const socket = await clients.connected(server.url);
    const ch = socket.channel("test:a", { welcome: true });
    const response = await joinOk(ch);
    assert.deepEqual(response, { welcome: true });
    const [frame] = socket.spy.sentFrames("test:a", "phx_join");
    assert.equal(frame[0], frame[1], "join_ref == ref in the join frame");
    assert.deepEqual(frame[4], { welcome: true });
    const [replyFrame] = socket.spy.receivedFrames("test:a", "phx_reply");
    assert.deepEqual(replyFrame, [frame[0], frame[1], "test:a", "phx_reply", { status: "ok", response: { welcome: true } }]);
    // without welcome: an empty response
    const plain = socket.channel("test:plain");
    assert.deepEqual(await joinOk(plain), {});
  });

  t("case 15: a refused join is retried with new join_refs and onError is not called", async () => {
    const socket = await clients.connected(server.url);
    const ch = socket.channel("test:refuse");
    let channelErrors = 0;
    ch.onError(() => channelErrors++);
    const first = await join(ch);
    assert.deepEqual(first, { status: "error", response: { reason: "unauthorized" } });
    // rejoins at about +1000 and +2000 ms after the first refusal
    await waitFor(() => socket.spy.sentFrames("test:refuse", "phx_join").length >= 3, 8000, "2 rejoin attempts");
    const joins = socket.spy.sentFrames("test:refuse", "phx_join");
    const refs = joins.map((f) => f[0]);
    assert.equal(new Set(refs).size, refs.length, `each attempt has a new join_ref: ${refs}`);
    for (const f of joins) assert.equal(f[0], f[1]);
    await waitFor(
      () => socket.spy.receivedFrames("test:refuse", "phx_reply").length >= 3,
      3000,
      "the replies to the rejoins",
    );
    for (const r of socket.spy.receivedFrames("test:refuse", "phx_reply")) {
      assert.deepEqual(r[4], { status: "error", response: { reason: "unauthorized" } });
    }
    assert.equal(channelErrors, 0, "onError must not be called for a refused join");
    assert.equal(socket.spy.receivedFrames("test:refuse", "phx_error").length, 0);
    ch.leave();
  });

  t("case 20: a second Channel object on a topic leaves the first, then joins", async () => {
    const socket = await clients.connected(server.url);
    const first = socket.channel("test:d");
    await joinOk(first);
    let firstClosed = false;
    first.onClose(() => (firstClosed = true));
    const second = socket.channel("test:d");
    await joinOk(second);
    const sent = socket.spy.sent.filter((f) => f.json && f.json[2] === "test:d").map((f) => f.json);
    assert.deepEqual(
      sent.map((f) => f[3]),
      ["phx_join", "phx_leave", "phx_join"],
      "the client leaves the first channel before the second join",
    );
    const [join1, leave1, join2] = sent;
    assert.equal(leave1[0], join1[0], "the leave carries the first join_ref");
    await waitFor(() => firstClosed, 3000, "the first channel's onClose");
    const got = socket.spy.receivedFrames("test:d");
    const leaveReply = got.find((f) => f[1] === leave1[1]);
    assert.deepEqual(leaveReply, [join1[0], leave1[1], "test:d", "phx_reply", { status: "ok", response: {} }]);
    assert.ok(
      got.some((f) => f[3] === "phx_close" && f[0] === join1[0] && f[1] === join1[0]),
      `phx_close for the first join_ref: ${JSON.stringify(got)}`,
    );
    const joinReply = got.find((f) => f[1] === join2[1]);
    assert.deepEqual(joinReply, [join2[0], join2[1], "test:d", "phx_reply", { status: "ok", response: {} }]);
    // the second channel is live: one broadcast arrives once
    const bc = collect(second, "bcasted");
    second.push("bcast", { n: 1 });
    assert.deepEqual(await bc.next(3000), { n: 1 });
    await sleep(300);
    assert.equal(bc.items.length, 1);
  });

  t("case 27: an event without reply times out on the client", async () => {
    const socket = await clients.connected(server.url);
    const ch = socket.channel("test:a");
    await joinOk(ch);
    const started = Date.now();
    const r = await push(ch, "noreply", {}, 500);
    const elapsed = Date.now() - started;
    assert.equal(r.status, "timeout");
    assert.ok(elapsed >= 400 && elapsed < 5000, `timed out after ${elapsed} ms`);
    const [frame] = socket.spy.sentFrames("test:a", "noreply");
    assert.equal(socket.spy.received.filter((f) => f.json && f.json[1] === frame[1]).length, 0);
  });

  t("case 28: a server push reaches channel.on with the join_ref and a null ref", async () => {
    const socket = await clients.connected(server.url);
    const ch = socket.channel("test:a");
    await joinOk(ch);
    const pushed = collect(ch, "pushed");
    ch.push("push", {});
    assert.deepEqual(await pushed.next(3000), { a: 1 });
    const [frame] = socket.spy.receivedFrames("test:a", "pushed");
    assert.deepEqual(frame, [ch.joinRef(), null, "test:a", "pushed", { a: 1 }]);
  });

  t("case 29: a broadcast reaches every socket on the topic exactly once", async () => {
    const a = await clients.connected(server.url);
    const b = await clients.connected(server.url);
    const chA = a.channel("test:b");
    const chB = b.channel("test:b");
    await joinOk(chA);
    await joinOk(chB);
    const gotA = collect(chA, "bcasted");
    const gotB = collect(chB, "bcasted");
    chA.push("bcast", { hello: "all" });
    assert.deepEqual(await gotA.next(3000), { hello: "all" });
    assert.deepEqual(await gotB.next(3000), { hello: "all" });
    await sleep(300);
    assert.equal(gotA.items.length, 1);
    assert.equal(gotB.items.length, 1);
    for (const s of [a, b]) {
      const frames = s.spy.receivedFrames("test:b", "bcasted");
      assert.deepEqual(frames, [[null, null, "test:b", "bcasted", { hello: "all" }]]);
    }
  });

  t("case 33: a crash errors the channel only; the client rejoins with a new join_ref", async () => {
    const socket = await clients.connected(server.url);
    const ch = socket.channel("test:a");
    const other = socket.channel("test:other");
    await joinOk(ch);
    await joinOk(other);
    const firstRef = ch.joinRef();
    const errors = [];
    ch.onError((reason) => errors.push(reason));
    ch.push("crash", {});
    await waitFor(() => errors.length > 0, 3000, "the channel's onError");
    assert.deepEqual(errors[0], { reason: "channel_crash" });
    const [errFrame] = socket.spy.receivedFrames("test:a", "phx_error");
    assert.deepEqual(errFrame, [firstRef, firstRef, "test:a", "phx_error", { reason: "channel_crash" }]);
    // other channels and the socket are unaffected
    assert.deepEqual(await push(other, "echo", { still: "here" }), { status: "ok", response: { echo: { still: "here" } } });
    assert.ok(socket.isConnected());
    // rejoin after about 1 s with a new join_ref
    await waitFor(() => socket.spy.sentFrames("test:a", "phx_join").length >= 2, 5000, "the rejoin");
    await waitFor(() => ch.state === "joined", 3000, "the channel to be joined again");
    assert.notEqual(ch.joinRef(), firstRef);
    assert.deepEqual(await push(ch, "echo", { back: true }), { status: "ok", response: { echo: { back: true } } });
  });

  t("case 34: stop replies ok, closes the channel, and the client does not rejoin", async () => {
    const socket = await clients.connected(server.url);
    const ch = socket.channel("test:a");
    await joinOk(ch);
    const jr = ch.joinRef();
    let closed = 0;
    ch.onClose(() => closed++);
    const r = await push(ch, "stop", {});
    assert.equal(r.status, "ok");
    await waitFor(() => closed > 0, 3000, "the channel's onClose");
    const frames = socket.spy.receivedFrames("test:a");
    const closeFrame = frames.find((f) => f[3] === "phx_close");
    assert.deepEqual(closeFrame, [jr, jr, "test:a", "phx_close", {}]);
    assert.ok(
      frames.indexOf(closeFrame) > frames.findIndex((f) => f[3] === "phx_reply" && f[1] !== jr),
      "the reply comes before phx_close",
    );
    assert.ok(!socket.channels.includes(ch), "the channel is removed from the socket");
    await sleep(3000);
    assert.equal(socket.spy.sentFrames("test:a", "phx_join").length, 1, "no rejoin");
    assert.equal(closed, 1);
  });

  t("case 40: ArrayBuffer pushes go binary; binary replies and pushes arrive as ArrayBuffers", async () => {
    const socket = await clients.connected(server.url);
    const ch = socket.channel("test:bin");
    await joinOk(ch);
    const binPush = collect(ch, "bin_push");
    const payload = new Uint8Array([0xde, 0xad, 0xbe, 0xef]).buffer;
    const r = await push(ch, "bin", payload);
    assert.equal(r.status, "ok");
    assert.ok(r.response instanceof ArrayBuffer, "the reply payload is an ArrayBuffer");
    assert.deepEqual(bytes(r.response), [0xde, 0xad, 0xbe, 0xef, 0x03, 0x04]);
    const got = await binPush.next(3000);
    assert.ok(got instanceof ArrayBuffer, "the bin_push payload is an ArrayBuffer");
    assert.deepEqual(bytes(got), [0x00, 0x01]);
    // what the client sent: kind 0 with the length bytes of the strings that follow
    const frame = socket.spy.sent.find((f) => !f.json);
    assert.ok(frame, "a binary frame was sent");
    const b = frame.data;
    const jr = ch.joinRef();
    assert.equal(b[0], 0);
    const [jl, rl, tl, el] = [b[1], b[2], b[3], b[4]];
    const text = (from, len) => Buffer.from(b.slice(from, from + len)).toString();
    assert.equal(text(5, jl), jr);
    assert.equal(tl, "test:bin".length);
    assert.equal(text(5 + jl + rl, tl), "test:bin");
    assert.equal(text(5 + jl + rl + tl, el), "bin");
    assert.deepEqual([...b.slice(5 + jl + rl + tl + el)], [0xde, 0xad, 0xbe, 0xef]);
  });

  t("case 42: a forced disconnect by socket id closes with 1001; the client reconnects and rejoins", async () => {
    const seven = await clients.connected(server.url, { params: { user_id: "7" } });
    const other = await clients.connected(server.url, { params: { user_id: "8" } });
    const ch = seven.channel("test:a");
    await joinOk(ch);
    const otherCh = other.channel("test:a");
    await joinOk(otherCh);
    const res = await fetch(`http://127.0.0.1:${server.port}/control/disconnect?id=users_socket:7`, {
      method: "POST",
    });
    assert.equal(await res.text(), "1", "exactly one socket has that id");
    await waitFor(() => seven.events.close.length > 0, 5000, "the forced close");
    assert.equal(seven.events.close[0], 1001);
    // the client reconnects (running connect again) and rejoins its channel by itself
    await waitFor(() => seven.events.open >= 2, 5000, "the reconnect");
    await waitFor(
      () => seven.spy.sentFrames("test:a", "phx_join").length >= 2 && ch.state === "joined",
      5000,
      "the rejoin",
    );
    assert.deepEqual(await push(ch, "echo", { back: true }), { status: "ok", response: { echo: { back: true } } });
    // user 8's socket was never touched
    assert.equal(other.events.close.length, 0);
    assert.equal(other.spy.connections.length, 1);
    assert.deepEqual(await push(otherCh, "echo", { v: 8 }), { status: "ok", response: { echo: { v: 8 } } });
  });

  t("case 44: disconnect() closes the socket and the client does not reconnect", async () => {
    const socket = await clients.connected(server.url);
    const ch = socket.channel("test:a");
    await joinOk(ch);
    const closed = new Promise((r) => socket.onClose(r));
    socket.disconnect();
    await withTimeout(closed, 3000, "onClose after disconnect()");
    await sleep(1500);
    assert.equal(socket.spy.connections.length, 1, "no reconnect after disconnect()");
    assert.ok(!socket.isConnected());
    // the server is still healthy for the next client
    const next = await clients.connected(server.url);
    await joinOk(next.channel("test:a"));
  });
});

describe("case 43: server-closed sockets come back, phoenix 1.8.12 and 1.8.16", () => {
  let server;
  let clients;
  before(async () => {
    server = testServer();
    await server.start();
  });
  after(async () => {
    await server?.stop();
  });
  afterEach(() => clients?.closeAll());

  for (const [version, module] of [
    ["1.8.12", phoenix1812],
    ["1.8.16", phoenix],
  ]) {
    test(`case 43: phoenix ${version} reconnects and rejoins after the server closes on a malformed frame (1011)`, () =>
      withServerLog(server, async () => {
        clients = new Clients(module);
        const socket = await clients.connected(server.url);
        const ch = socket.channel("test:malformed");
        await joinOk(ch);
        // a frame the official client never sends, injected under it: the server must close
        // the connection (Phoenix: 1011), never with 1000, which 1.8.12 would not reconnect after
        socket.spy.connections[0].ws.send("not json");
        await waitFor(() => socket.events.close.length > 0, 5000, "the server's close");
        const code = socket.events.close[0];
        assert.notEqual(code, 1000, "the server must never close with 1000 on an error path");
        assert.equal(code, 1011, "a malformed frame closes with 1011");
        await waitFor(() => socket.events.open >= 2, 5000, "the reconnect");
        await waitFor(
          () => socket.spy.sentFrames("test:malformed", "phx_join").length >= 2 && ch.state === "joined",
          5000,
          "the rejoin",
        );
        assert.deepEqual(await push(ch, "echo", { v: version }), { status: "ok", response: { echo: { v: version } } });
      }));
  }
});

describe("timers against phoenix_test_server (idle timeout 1000 ms)", () => {
  let server;
  let clients;
  before(async () => {
    server = testServer(1000);
    await server.start();
  });
  after(async () => {
    await server?.stop();
  });
  afterEach(() => clients?.closeAll());

  test("case 10: heartbeats every 300 ms are answered and keep the socket open past the idle timeout", () =>
    withServerLog(server, async () => {
      clients = new Clients(phoenix);
      const socket = await clients.connected(server.url, { heartbeatIntervalMs: 300 });
      const ch = socket.channel("test:hb");
      await joinOk(ch);
      await sleep(3000);
      const beats = socket.spy.sentFrames("phoenix", "heartbeat");
      assert.ok(beats.length >= 4, `at least 4 heartbeats in 3 s, saw ${beats.length}`);
      for (const hb of beats) {
        assert.equal(hb[0], null);
        assert.deepEqual(hb[4], {});
      }
      const replies = socket.spy.receivedFrames("phoenix", "phx_reply");
      for (const hb of beats.slice(0, -1)) {
        const reply = replies.find((f) => f[1] === hb[1]);
        assert.deepEqual(reply, [null, hb[1], "phoenix", "phx_reply", { status: "ok", response: {} }]);
      }
      assert.deepEqual(socket.events.close, [], "no close");
      assert.equal(socket.spy.connections.length, 1, "still the first connection");
      assert.ok(socket.isConnected());
      assert.deepEqual(await push(ch, "echo", { alive: 1 }), { status: "ok", response: { echo: { alive: 1 } } });
    }));

  for (const [version, module] of [
    ["1.8.12", phoenix1812],
    ["1.8.16", phoenix],
  ]) {
    test(`case 43: phoenix ${version} reconnects and rejoins after the server's idle-timeout close`, () =>
      withServerLog(server, async () => {
        clients = new Clients(module);
        // heartbeats far apart: the server's idle timeout closes the socket
        const socket = await clients.connected(server.url, { heartbeatIntervalMs: 60000 });
        const ch = socket.channel("test:idle");
        await joinOk(ch);
        await waitFor(() => socket.events.close.length > 0, 5000, "the server's idle close");
        const code = socket.events.close[0];
        assert.notEqual(code, 1000, "the server must never close with 1000 on idle");
        assert.ok([1001, 1002].includes(code), `idle timeout closes with 1002 (Bandit parity) or 1001, got ${code}`);
        await waitFor(() => socket.events.open >= 2, 5000, "the reconnect");
        await waitFor(
          () => socket.spy.sentFrames("test:idle", "phx_join").length >= 2 && ch.state === "joined",
          5000,
          "the rejoin",
        );
        assert.deepEqual(await push(ch, "echo", { v: version }), { status: "ok", response: { echo: { v: version } } });
      }));
  }
});
