// Test harness for the conformance suite: starts a server binary on port 0, drives the official
// `phoenix` client over a spying `ws` transport, and offers bounded waits. Every wait here is a
// failure guard (a test that would otherwise hang fails with a message instead); no test asserts
// on timing beyond generous bounds.

import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join as joinPath, dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { WebSocket } from "ws";

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const TARGET_DIR = process.env.CARGO_TARGET_DIR
  ? resolve(REPO_ROOT, process.env.CARGO_TARGET_DIR)
  : joinPath(REPO_ROOT, "target");

/** Path of the generic Phoenix test server (override: PHOENIX_TEST_SERVER). */
export const PHOENIX_TEST_SERVER = process.env.PHOENIX_TEST_SERVER
  ? resolve(process.env.PHOENIX_TEST_SERVER)
  : joinPath(TARGET_DIR, "debug", "examples", "phoenix_test_server");
/** Path of the daemon (override: KAFFEDIEM_BIN). */
export const KAFFEDIEM_BIN = process.env.KAFFEDIEM_BIN
  ? resolve(process.env.KAFFEDIEM_BIN)
  : joinPath(TARGET_DIR, "debug", "kaffediem");

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Rejects after `ms` with a message naming what was awaited. */
export function withTimeout(promise, ms, what) {
  let timer;
  const guard = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, guard]).finally(() => clearTimeout(timer));
}

/** Polls `predicate` until it is truthy (returns its value) or fails after `ms`. */
export async function waitFor(predicate, ms, what, every = 20) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = predicate();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(every);
  }
}

const LISTENING = /listening on 127\.0\.0\.1:(\d+)/;

// Servers still running when this test process ends (a crash, a cancelled hook) are killed, so
// no server outlives the suite.
const running = new Set();
process.on("exit", () => {
  for (const proc of running) {
    try {
      proc.kill("SIGKILL");
    } catch {}
  }
});

/**
 * A server process: `start()` spawns it and resolves once it printed `listening on
 * 127.0.0.1:PORT` on stdout or stderr. Output is kept so failures can show it.
 */
export class ServerProcess {
  constructor(bin, args = [], { env = {}, cwd, name } = {}) {
    this.bin = bin;
    this.args = args;
    this.env = env;
    this.cwd = cwd;
    this.name = name || bin.split("/").pop();
    this.output = "";
    this.proc = null;
    this.port = null;
    this.exit = null; // {code, signal} once exited
  }

  async start(timeoutMs = 30000) {
    if (!existsSync(this.bin)) {
      throw new Error(
        `${this.bin} does not exist; build it first (scripts/test.sh runs cargo test --all-targets and cargo build --examples)`,
      );
    }
    this.exit = null;
    const proc = spawn(this.bin, this.args, {
      cwd: this.cwd,
      env: { ...process.env, RUST_BACKTRACE: "1", ...this.env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.proc = proc;
    running.add(proc);
    const exited = new Promise((resolveExit) => {
      proc.on("exit", (code, signal) => {
        running.delete(proc);
        this.exit = { code, signal };
        resolveExit(this.exit);
      });
    });
    this.exited = exited;
    const listening = new Promise((resolveListen, rejectListen) => {
      let buffered = "";
      const onData = (chunk) => {
        const text = chunk.toString();
        this.output += text;
        if (this.port === null || this.portPending) {
          buffered += text;
          const m = buffered.match(LISTENING);
          if (m) {
            this.port = Number(m[1]);
            this.portPending = false;
            resolveListen(this.port);
          }
        }
      };
      this.portPending = true;
      proc.stdout.on("data", onData);
      proc.stderr.on("data", onData);
      proc.on("error", rejectListen);
      exited.then(({ code, signal }) =>
        rejectListen(
          new Error(`${this.name} exited (code ${code}, signal ${signal}) before listening:\n${this.tail()}`),
        ),
      );
    });
    try {
      await withTimeout(listening, timeoutMs, `${this.name} to print "listening on 127.0.0.1:PORT"`);
    } catch (e) {
      await this.stop();
      e.message += `\n--- ${this.name} output ---\n${this.tail()}`;
      throw e;
    }
    return this.port;
  }

  /** The last lines of the server's output, for failure messages. */
  tail(lines = 40) {
    return this.output.split("\n").slice(-lines).join("\n");
  }

  get url() {
    return `ws://127.0.0.1:${this.port}/socket`;
  }

  /** SIGTERM, then SIGKILL after `graceMs`. Resolves to the exit status. */
  async stop(graceMs = 5000) {
    if (!this.proc || this.exit) return this.exit;
    this.proc.kill("SIGTERM");
    const timer = setTimeout(() => {
      if (!this.exit) this.proc.kill("SIGKILL");
    }, graceMs);
    const status = await this.exited;
    clearTimeout(timer);
    return status;
  }
}

/** A fresh temporary directory, removed by `cleanup()`. */
export function tempDir(prefix = "kaffediem-js-") {
  const dir = mkdtempSync(joinPath(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/**
 * Records everything crossing the client's transports: one entry per WebSocket the client
 * opened (`urls`, `protocols`) and every frame sent and received, decoded when it is JSON.
 */
export class Spy {
  constructor() {
    this.connections = []; // {url, protocols, ws, opened, closeCode}
    this.sent = []; // {conn, data, json}
    this.received = [];
  }

  /** A WebSocket class to pass as the `transport` option. */
  transport() {
    const spy = this;
    return class SpyWebSocket extends WebSocket {
      constructor(url, protocols) {
        super(url, protocols);
        const conn = { url, protocols, ws: this, opened: false, closeCode: null };
        const index = spy.connections.push(conn) - 1;
        this.addEventListener("open", () => (conn.opened = true));
        this.addEventListener("close", (e) => (conn.closeCode = e.code));
        this.addEventListener("message", (e) => spy.received.push(decode(index, e.data)));
        this._spyIndex = index;
      }
      send(data) {
        spy.sent.push(decode(this._spyIndex, data));
        super.send(data);
      }
    };
  }

  /** Sent JSON frames matching topic and event ([join_ref, ref, topic, event, payload]). */
  sentFrames(topic, event) {
    return this.sent.filter((f) => f.json && match(f.json, topic, event)).map((f) => f.json);
  }

  receivedFrames(topic, event) {
    return this.received.filter((f) => f.json && match(f.json, topic, event)).map((f) => f.json);
  }
}

function match(frame, topic, event) {
  return (topic === undefined || frame[2] === topic) && (event === undefined || frame[3] === event);
}

function decode(conn, data) {
  if (typeof data === "string") {
    try {
      return { conn, data, json: JSON.parse(data) };
    } catch {
      return { conn, data, json: null };
    }
  }
  if (Buffer.isBuffer(data)) {
    const text = data.toString("utf8");
    // `ws` delivers text frames as Buffers only when asked to; try JSON, else keep binary
    try {
      return { conn, data, json: JSON.parse(text) };
    } catch {
      return { conn, data: new Uint8Array(data), json: null };
    }
  }
  if (data instanceof ArrayBuffer) return { conn, data: new Uint8Array(data), json: null };
  if (ArrayBuffer.isView(data)) return { conn, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), json: null };
  return { conn, data, json: null };
}

/**
 * Creates phoenix sockets over a spying transport and disconnects them all on `close()`.
 * `phoenix` is the module (so 1.8.12 and 1.8.16 can both be driven).
 */
export class Clients {
  constructor(phoenix) {
    this.phoenix = phoenix;
    this.sockets = [];
  }

  socket(url, opts = {}) {
    const spy = new Spy();
    const socket = new this.phoenix.Socket(url, { transport: spy.transport(), ...opts });
    socket.spy = spy;
    socket.events = { open: 0, close: [], error: 0 };
    socket.onOpen(() => socket.events.open++);
    socket.onClose((e) => socket.events.close.push(e && e.code));
    socket.onError(() => socket.events.error++);
    this.sockets.push(socket);
    return socket;
  }

  /** A socket that is connected (onOpen seen). */
  async connected(url, opts = {}, ms = 5000) {
    const socket = this.socket(url, opts);
    await openSocket(socket, ms);
    return socket;
  }

  closeAll() {
    for (const s of this.sockets) {
      try {
        s.disconnect();
      } catch {}
    }
    this.sockets = [];
  }
}

export function openSocket(socket, ms = 5000) {
  const opened = new Promise((resolveOpen) => socket.onOpen(() => resolveOpen()));
  socket.connect();
  return withTimeout(opened, ms, "socket onOpen");
}

/** Join and resolve to {status, response} for ok, error or timeout. */
export function join(channel, ms = 5000) {
  return withTimeout(
    new Promise((resolveJoin) => {
      channel
        .join(ms)
        .receive("ok", (response) => resolveJoin({ status: "ok", response }))
        .receive("error", (response) => resolveJoin({ status: "error", response }))
        .receive("timeout", () => resolveJoin({ status: "timeout" }));
    }),
    ms + 2000,
    `join reply on ${channel.topic}`,
  );
}

/** Join and require ok; resolves to the response. */
export async function joinOk(channel, ms = 5000) {
  const r = await join(channel, ms);
  if (r.status !== "ok") {
    throw new Error(`join ${channel.topic} answered ${r.status}: ${JSON.stringify(r.response)}`);
  }
  return r.response;
}

/** Push and resolve to {status, response} for ok, error or timeout. */
export function push(channel, event, payload, ms = 5000) {
  return withTimeout(
    new Promise((resolvePush) => {
      channel
        .push(event, payload, ms)
        .receive("ok", (response) => resolvePush({ status: "ok", response }))
        .receive("error", (response) => resolvePush({ status: "error", response }))
        .receive("timeout", () => resolvePush({ status: "timeout" }));
    }),
    ms + 2000,
    `reply to ${event} on ${channel.topic}`,
  );
}

/** Resolves with {status, response} once the push is left by the channel (leave ok/timeout). */
export function leave(channel, ms = 5000) {
  return withTimeout(
    new Promise((resolveLeave) => {
      channel
        .leave(ms)
        .receive("ok", (response) => resolveLeave({ status: "ok", response }))
        .receive("timeout", () => resolveLeave({ status: "timeout" }));
    }),
    ms + 2000,
    `leave reply on ${channel.topic}`,
  );
}

/**
 * Collects every payload of `event` on `channel`. `next(ms)` resolves with the next one not yet
 * taken (optionally the next one satisfying `pred`).
 */
export function collect(channel, event) {
  const items = [];
  let waiters = [];
  let taken = 0;
  channel.on(event, (payload) => {
    items.push(payload);
    waiters = waiters.filter((w) => !w());
  });
  return {
    items,
    next(ms = 5000, pred = () => true, what = `${event} on ${channel.topic}`) {
      return withTimeout(
        new Promise((resolveNext) => {
          const tryTake = () => {
            while (taken < items.length) {
              const item = items[taken++];
              if (pred(item)) {
                resolveNext(item);
                return true;
              }
            }
            return false;
          };
          if (!tryTake()) waiters.push(tryTake);
        }),
        ms,
        what,
      );
    },
    /** How many arrived that were not taken by `next` yet. */
    get pending() {
      return items.length - taken;
    },
  };
}

/** Bytes of an ArrayBuffer (or view) as an array of numbers, for deepEqual. */
export function bytes(buf) {
  if (buf instanceof ArrayBuffer) return [...new Uint8Array(buf)];
  if (ArrayBuffer.isView(buf)) return [...new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength)];
  throw new Error(`not binary: ${Object.prototype.toString.call(buf)}`);
}

/** Wraps an assertion block so a failure also prints the server's recent output. */
export async function withServerLog(serverOrGetter, fn) {
  try {
    return await fn();
  } catch (e) {
    const server = typeof serverOrGetter === "function" ? serverOrGetter() : serverOrGetter;
    if (server && e && typeof e.message === "string") {
      e.message += `\n--- ${server.name} output (tail) ---\n${server.tail()}`;
    }
    throw e;
  }
}
