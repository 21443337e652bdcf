#!/usr/bin/env node
// A small Phoenix test server in JavaScript with the test channel of phoenix-protocol.md §8,
// written from that document. It exists only to check the conformance tests themselves: run
//   PHOENIX_TEST_SERVER=tools/reference-server.mjs node --test protocol.test.mjs
// and every case should pass; a case that fails here is a bug in the test, not in the server.
// Usage (like phoenix_test_server): reference-server.mjs PORT [idle_timeout_ms]

import http from "node:http";
import { WebSocketServer } from "ws";

const port = Number(process.argv[2] || 0);
const idleMs = Number(process.argv[3] || 60000);
const topics = new Map(); // topic -> Set of {conn, joinRef}

const server = http.createServer((req, res) => {
  res.writeHead(404);
  res.end();
});
const wss = new WebSocketServer({
  noServer: true,
  perMessageDeflate: false,
  handleProtocols: (protocols) => (protocols.has("phoenix") ? "phoenix" : false),
});

server.on("upgrade", (req, socket, head) => {
  const url = new URL(req.url, "http://x");
  const params = Object.fromEntries(url.searchParams);
  if (url.pathname !== "/socket/websocket" || params.reject === "true" || !/^2\.0\.\d+$/.test(params.vsn || "")) {
    socket.end("HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n");
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => serve(ws, params));
});

function serve(ws, params) {
  const joined = new Map(); // topic -> joinRef
  let idle;
  const touch = () => {
    clearTimeout(idle);
    idle = setTimeout(() => ws.close(1002), idleMs);
  };
  touch();
  const send = (frame) => ws.send(JSON.stringify(frame));
  const reply = (jr, ref, topic, status, response) =>
    send([jr, ref, topic, "phx_reply", { status, response }]);
  const unjoin = (topic) => {
    joined.delete(topic);
    topics.get(topic)?.forEach((s) => s.conn === ws && topics.get(topic).delete(s));
  };
  ws.on("close", () => {
    clearTimeout(idle);
    for (const t of joined.keys()) unjoin(t);
  });
  ws.on("message", (data, isBinary) => {
    touch();
    if (isBinary) {
      const b = Buffer.from(data);
      if (b[0] !== 0) return ws.close(1011);
      let o = 5;
      const str = (n) => b.subarray(o, (o += n)).toString();
      const [jr, ref, topic, event] = [str(b[1]), str(b[2]), str(b[3]), str(b[4])];
      const payload = b.subarray(o);
      if (joined.get(topic) !== jr || event !== "bin") return;
      const hdr = (parts) => Buffer.concat(parts.map((p) => Buffer.from(p)));
      const rep = Buffer.concat([
        Buffer.from([1, jr.length, ref.length, topic.length, 2]),
        hdr([jr, ref, topic, "ok"]),
        payload,
        Buffer.from([3, 4]),
      ]);
      ws.send(rep);
      ws.send(Buffer.concat([Buffer.from([0, jr.length, topic.length, 8]), hdr([jr, topic, "bin_push"]), Buffer.from([0, 1])]));
      return;
    }
    let frame;
    try {
      frame = JSON.parse(data.toString());
    } catch {
      return ws.close(1011);
    }
    const [jr, ref, topic, event, payload] = frame;
    if (topic === "phoenix" && event === "heartbeat") return reply(null, ref, "phoenix", "ok", {});
    if (event === "phx_join") {
      if (!topic.startsWith("test:")) return reply(null, ref, topic, "error", { reason: "unmatched topic" });
      if (joined.has(topic)) {
        const old = joined.get(topic);
        unjoin(topic);
        setImmediate(() => send([old, old, topic, "phx_close", {}]));
      }
      if (topic === "test:refuse") return reply(jr, ref, topic, "error", { reason: "unauthorized" });
      if (topic === "test:joincrash") return reply(jr, ref, topic, "error", { reason: "join crashed" });
      joined.set(topic, jr);
      if (!topics.has(topic)) topics.set(topic, new Set());
      topics.get(topic).add({ conn: ws, joinRef: jr });
      return reply(jr, ref, topic, "ok", payload && payload.welcome === true ? { welcome: true } : {});
    }
    if (!joined.has(topic)) {
      if (event === "phx_leave") return reply(jr, ref, topic, "ok", {});
      return reply(null, ref, topic, "error", { reason: "unmatched topic" });
    }
    const cur = joined.get(topic);
    if (jr !== null && jr !== cur) return;
    switch (event) {
      case "phx_leave":
        reply(cur, ref, topic, "ok", {});
        unjoin(topic);
        return send([cur, cur, topic, "phx_close", {}]);
      case "echo":
        return reply(cur, ref, topic, "ok", { echo: payload });
      case "noreply":
        return;
      case "error":
        return reply(cur, ref, topic, "error", { reason: "nope" });
      case "crash":
        unjoin(topic);
        return send([cur, cur, topic, "phx_error", { reason: "channel_crash" }]);
      case "stop":
        reply(cur, ref, topic, "ok", {});
        unjoin(topic);
        return send([cur, cur, topic, "phx_close", {}]);
      case "push":
        return send([cur, null, topic, "pushed", { a: 1 }]);
      case "bcast": {
        const text = JSON.stringify([null, null, topic, "bcasted", payload || {}]);
        for (const s of topics.get(topic) || []) s.conn.send(text);
        return reply(cur, ref, topic, "ok", {});
      }
      default:
        unjoin(topic);
        return send([cur, cur, topic, "phx_error", { reason: "channel_crash" }]);
    }
  });
}

server.listen(port, "127.0.0.1", () => {
  console.log(`listening on 127.0.0.1:${server.address().port}`);
});
process.on("SIGTERM", () => process.exit(0));
