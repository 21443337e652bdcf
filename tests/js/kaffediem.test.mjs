// The Kaffediem daemon through the official `phoenix` npm client: collection snapshots, live
// changes after writes made by another process (better-sqlite3 on the daemon's file, as the
// sqlite3 shell would), order filters, admin notifications, and the socket's life cycle
// (heartbeat vs. idle timeout, reconnect after a restart). SPEC sections 2 and 3.

import { test, describe, before, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join as joinPath } from "node:path";
import { randomUUID } from "node:crypto";
import Database from "better-sqlite3";
import * as phoenix from "phoenix";
import * as phoenix1812 from "phoenix-1812";
import {
  KAFFEDIEM_BIN,
  ServerProcess,
  Clients,
  tempDir,
  join,
  joinOk,
  leave,
  push,
  collect,
  sleep,
  waitFor,
  withTimeout,
  withServerLog,
} from "./harness.mjs";

const ADMIN_TOKEN = "js-suite-admin-token";
// Foreign commits are published within one second; these are failure guards, not timings.
const CHANGE_MS = 6000;
// How long to watch for an event that must not come.
const GRACE_MS = 2000;

const COLLECTIONS = [
  "menu",
  "order",
  "status",
  "message",
  "category",
  "item",
  "customization_key",
  "customization_value",
];

/** A daemon on a fresh demo database in its own temporary directory. */
class Daemon {
  constructor() {
    this.tmp = tempDir("kaffediem-js-daemon-");
    this.configPath = joinPath(this.tmp.dir, "kaffediem.toml");
    this.dbPath = joinPath(this.tmp.dir, "kaffediem.db");
    writeFileSync(
      this.configPath,
      [
        "# written by tests/js/kaffediem.test.mjs",
        "[access]",
        `admin_token = "${ADMIN_TOKEN}"`,
        "",
        "[limits]",
        "idle_timeout_seconds = 1",
        "",
      ].join("\n"),
    );
    this.process = null;
    this.db = null;
  }

  /** Start (again); `port` 0 picks a free one. */
  async start(port = 0) {
    this.process = new ServerProcess(KAFFEDIEM_BIN, ["serve", "--config", this.configPath, "--demo"], {
      name: "kaffediem",
      cwd: this.tmp.dir,
      env: {
        KAFFEDIEM_PORT: String(port),
        KAFFEDIEM_BIND: "127.0.0.1",
        KAFFEDIEM_DB: this.dbPath,
      },
    });
    await this.process.start();
    return this.process.port;
  }

  get url() {
    return this.process.url;
  }

  /** The database as another process sees it (the daemon created it on start). */
  sqlite() {
    if (!this.db) {
      this.db = new Database(this.dbPath);
      this.db.pragma("busy_timeout = 10000");
      // like the sqlite3 shell: no foreign key enforcement, so test customers need no user rows
      this.db.pragma("foreign_keys = OFF");
    }
    return this.db;
  }

  async stop() {
    return this.process?.stop();
  }

  async dispose() {
    try {
      this.db?.close();
    } catch {}
    this.db = null;
    await this.stop();
    this.tmp.cleanup();
  }
}

function columns(db, table) {
  return db.prepare(`PRAGMA table_info("${table}")`).all().map((c) => c.name);
}

/** INSERT with only the columns the table has; returns the new id. */
function insert(db, table, values) {
  const have = new Set(columns(db, table));
  const keys = Object.keys(values).filter((k) => have.has(k));
  const sql = `INSERT INTO "${table}" (${keys.map((k) => `"${k}"`).join(", ")}) VALUES (${keys
    .map(() => "?")
    .join(", ")})`;
  return Number(db.prepare(sql).run(...keys.map((k) => values[k])).lastInsertRowid);
}

let dayCounter = 900;
function insertOrder(db, { customer_id = null, inserted_at } = {}) {
  const values = {
    uuid: randomUUID(),
    customer_id,
    day_id: ++dayCounter,
    state: "received",
    missing_information: 0,
    items: "[]",
    total_nok: 0,
  };
  if (inserted_at !== undefined) {
    values.inserted_at = inserted_at;
    values.updated_at = inserted_at;
  }
  return insert(db, "order", values);
}

function insertMessage(db, title, subtitle = "from the js suite") {
  return insert(db, "message", { title, subtitle });
}

function count(db, table) {
  return db.prepare(`SELECT count(*) AS n FROM "${table}"`).get().n;
}

/** A change payload {action, record, seq} for record `id` (and `action` when given). */
const changeFor = (id, action) => (c) => c.record && c.record.id === id && (!action || c.action === action);

function assertChangeShape(change) {
  assert.ok(["create", "update", "delete"].includes(change.action), `action: ${JSON.stringify(change)}`);
  assert.equal(typeof change.record, "object");
  assert.ok(Number.isInteger(change.seq), `seq is an integer: ${JSON.stringify(change)}`);
}

describe("kaffediem daemon (demo database) through phoenix 1.8.16", () => {
  const daemon = new Daemon();
  let clients;
  before(async () => {
    await daemon.start();
  });
  after(async () => {
    await daemon.dispose();
  });
  afterEach(() => clients?.closeAll());
  // idle_timeout_seconds = 1: every socket heartbeats every 300 ms
  const connect = (opts = {}) => clients.connected(daemon.url, { heartbeatIntervalMs: 300, ...opts });
  // an admin's screen: it may filter orders by customer and sees their customer_id (SPEC 6)
  const connectAdmin = () => connect({ params: { token: ADMIN_TOKEN } });
  const t = (name, fn) =>
    test(name, () => {
      clients = new Clients(phoenix);
      return withServerLog(() => daemon.process, fn);
    });

  t("joins all eight collections; every snapshot has items and seq", async () => {
    const socket = await connect();
    const db = daemon.sqlite();
    for (const name of COLLECTIONS) {
      const reply = await joinOk(socket.channel(`collection:${name}`));
      assert.ok(Number.isInteger(reply.seq) && reply.seq >= 0, `collection:${name} seq: ${JSON.stringify(reply.seq)}`);
      if (name === "menu") continue;
      assert.ok(Array.isArray(reply.items), `collection:${name} items is an array`);
      assert.equal(reply.items.length, count(db, name), `collection:${name} has every row`);
      for (const record of reply.items) {
        assert.ok(Number.isInteger(record.id), `collection:${name} record id`);
        assert.match(record.inserted_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
        assert.match(record.updated_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
      }
    }
  });

  t("menu snapshot: the demo's categories and items as tree and indexes", async () => {
    const socket = await connect();
    const db = daemon.sqlite();
    const { items: menu } = await joinOk(socket.channel("collection:menu"));
    assert.ok(menu && Array.isArray(menu.tree), "items.tree is an array");
    const categories = db.prepare(`SELECT id, name FROM category ORDER BY sort_order, name`).all();
    const items = db.prepare(`SELECT id, name, category_id FROM item ORDER BY sort_order, name`).all();
    assert.ok(categories.length > 0, "the demo has categories");
    assert.ok(items.length > 0, "the demo has items");
    assert.deepEqual(
      menu.tree.map((c) => c.name),
      categories.map((c) => c.name),
      "tree: every category in sort order",
    );
    for (const category of menu.tree) {
      assert.ok(Array.isArray(category.items), `category ${category.name} has items`);
      assert.ok(Array.isArray(category.valid_customizations));
      assert.deepEqual(
        category.items.map((i) => i.id),
        items.filter((i) => i.category_id === category.id).map((i) => i.id),
        `items of ${category.name}`,
      );
      for (const item of category.items) {
        assert.ok(Array.isArray(item.customizations), `item ${item.name} has customizations`);
        for (const c of item.customizations) {
          assert.ok(c.key && Number.isInteger(c.key.id));
          assert.ok(Array.isArray(c.values));
          for (const v of c.values) assert.equal(v.belongs_to, c.key.id);
        }
      }
    }
    const idx = menu.indexes;
    assert.ok(idx, "indexes present");
    assert.deepEqual(idx.categories.map((c) => c.id), categories.map((c) => c.id));
    assert.deepEqual(idx.items.map((i) => i.id), items.map((i) => i.id));
    assert.equal(idx.customization_keys.length, count(db, "customization_key"));
    assert.equal(idx.customization_values.length, count(db, "customization_value"));
    assert.equal(typeof idx.items_by_category, "object");
    assert.equal(typeof idx.customizations_by_key, "object");
    for (const category of categories) {
      const listed = idx.items_by_category[String(category.id)] || [];
      assert.deepEqual(
        listed.map((i) => i.id),
        items.filter((i) => i.category_id === category.id).map((i) => i.id),
        `items_by_category[${category.id}]`,
      );
    }
  });

  t("status and message snapshots", async () => {
    const socket = await connect();
    const { items: status } = await joinOk(socket.channel("collection:status"));
    assert.equal(status.length, 1, "one status row");
    const [row] = status;
    for (const key of ["id", "open", "show_message", "message_id"]) assert.ok(key in row, `status.${key}`);
    assert.equal(row.open, true, "the demo café is open");
    assert.equal(typeof row.show_message, "boolean");
    const { items: messages } = await joinOk(socket.channel("collection:message"));
    for (const m of messages) {
      assert.equal(typeof m.title, "string");
      assert.ok("subtitle" in m);
    }
    const titles = messages.map((m) => m.title);
    assert.deepEqual(titles, [...titles].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)), "messages by title");
  });

  t("collection:message: create, update and delete after foreign writes", async () => {
    const socket = await connect();
    const db = daemon.sqlite();
    const ch = socket.channel("collection:message");
    const { seq: joinSeq } = await joinOk(ch);
    const changes = collect(ch, "change");

    const id = insertMessage(db, "Fresh cinnamon buns");
    const created = await changes.next(CHANGE_MS, changeFor(id, "create"), `create of message ${id}`);
    assertChangeShape(created);
    assert.equal(created.record.title, "Fresh cinnamon buns");
    assert.equal(created.record.subtitle, "from the js suite");
    assert.ok(created.seq > joinSeq, "seq grows past the snapshot's");

    db.prepare(`UPDATE message SET title = ? WHERE id = ?`).run("Cinnamon buns: sold out", id);
    const updated = await changes.next(CHANGE_MS, changeFor(id, "update"), `update of message ${id}`);
    assert.equal(updated.record.title, "Cinnamon buns: sold out");
    assert.ok(updated.seq > created.seq);

    db.prepare(`DELETE FROM message WHERE id = ?`).run(id);
    const deleted = await changes.next(CHANGE_MS, changeFor(id, "delete"), `delete of message ${id}`);
    assert.deepEqual(deleted.record, { id });
    assert.ok(deleted.seq > updated.seq);
    assert.deepEqual(
      changes.items.filter((c) => c.record.id === id).map((c) => c.action),
      ["create", "update", "delete"],
    );
  });

  t("collection:order: create, update and delete after foreign writes", async () => {
    const socket = await connectAdmin();
    const db = daemon.sqlite();
    const ch = socket.channel("collection:order");
    await joinOk(ch);
    const changes = collect(ch, "change");

    const id = insertOrder(db, { customer_id: 4242 });
    const created = await changes.next(CHANGE_MS, changeFor(id, "create"), `create of order ${id}`);
    assertChangeShape(created);
    for (const key of ["uuid", "customer_id", "day_id", "state", "missing_information", "items", "total_nok"]) {
      assert.ok(key in created.record, `order.${key}`);
    }
    assert.equal(created.record.state, "received");
    assert.equal(created.record.customer_id, 4242);

    db.prepare(`UPDATE "order" SET state = 'production' WHERE id = ?`).run(id);
    const updated = await changes.next(CHANGE_MS, changeFor(id, "update"), `update of order ${id}`);
    assert.equal(updated.record.state, "production");

    db.prepare(`DELETE FROM "order" WHERE id = ?`).run(id);
    const deleted = await changes.next(CHANGE_MS, changeFor(id, "delete"), `delete of order ${id}`);
    assert.deepEqual(deleted.record, { id });
  });

  t("one transaction touching three menu rows gives exactly one menu update", async () => {
    const socket = await connect();
    const db = daemon.sqlite();
    const menu = socket.channel("collection:menu");
    const itemCh = socket.channel("collection:item");
    await joinOk(menu);
    await joinOk(itemCh);
    const menuChanges = collect(menu, "change");
    const itemChanges = collect(itemCh, "change");

    const category = db.prepare(`SELECT id, name FROM category ORDER BY id LIMIT 1`).get();
    const item = db.prepare(`SELECT id, name FROM item ORDER BY id LIMIT 1`).get();
    const key = db.prepare(`SELECT id, name FROM customization_key ORDER BY id LIMIT 1`).get();
    assert.ok(category && item && key, "the demo menu has a category, an item and a customization key");
    const tag = `js${Date.now() % 100000}`;
    db.transaction(() => {
      db.prepare(`UPDATE category SET name = ? WHERE id = ?`).run(`${category.name} ${tag}`, category.id);
      db.prepare(`UPDATE item SET name = ? WHERE id = ?`).run(`${item.name} ${tag}`, item.id);
      db.prepare(`UPDATE customization_key SET name = ? WHERE id = ?`).run(`${key.name} ${tag}`, key.id);
    })();

    const update = await menuChanges.next(CHANGE_MS, () => true, "the menu update");
    assert.equal(update.action, "update");
    assert.ok(Number.isInteger(update.seq));
    assert.ok(Array.isArray(update.record.tree) && update.record.indexes, "record is {tree, indexes}");
    const c = update.record.indexes.categories.find((x) => x.id === category.id);
    const i = update.record.indexes.items.find((x) => x.id === item.id);
    const k = update.record.indexes.customization_keys.find((x) => x.id === key.id);
    assert.equal(c.name, `${category.name} ${tag}`);
    assert.equal(i.name, `${item.name} ${tag}`);
    assert.equal(k.name, `${key.name} ${tag}`);
    // the item collection broadcasts its own change, with the same seq
    const itemUpdate = await itemChanges.next(CHANGE_MS, changeFor(item.id, "update"), "the item update");
    assert.equal(itemUpdate.record.name, `${item.name} ${tag}`);
    assert.equal(itemUpdate.seq, update.seq, "one transaction, one seq");
    await sleep(GRACE_MS);
    assert.equal(menuChanges.items.length, 1, `exactly one menu update, got ${menuChanges.items.length}`);
  });

  t("customer_id filter: snapshot and live stream; moving an order deletes and creates", async () => {
    const db = daemon.sqlite();
    const alice = 700000 + (Date.now() % 10000);
    const bob = alice + 1;
    // orders from before the joins, published before the joins: a foreign commit reaches the
    // daemon within a second, and a join racing it may see the row in its snapshot and then
    // its create as well
    const watcher = (await connect()).channel("collection:order");
    await joinOk(watcher);
    const watched = collect(watcher, "change");
    const aliceOld = insertOrder(db, { customer_id: alice });
    const bobOld = insertOrder(db, { customer_id: bob });
    await watched.next(CHANGE_MS, changeFor(aliceOld, "create"), "the first order's publication");
    await watched.next(CHANGE_MS, changeFor(bobOld, "create"), "the second order's publication");
    const socket = await connectAdmin();
    const chA = socket.channel("collection:order", { options: { customer_id: alice } });
    const other = await connectAdmin();
    // a numeric string is accepted too
    const chB = other.channel("collection:order", { options: { customer_id: String(bob) } });
    const snapA = await joinOk(chA);
    const snapB = await joinOk(chB);
    assert.deepEqual(snapA.items.map((o) => o.id), [aliceOld], "alice's snapshot holds only her order");
    assert.deepEqual(snapB.items.map((o) => o.id), [bobOld], "bob's snapshot holds only his order");
    const a = collect(chA, "change");
    const b = collect(chB, "change");

    const id = insertOrder(db, { customer_id: alice });
    const created = await a.next(CHANGE_MS, changeFor(id, "create"), "alice's create");
    assert.equal(created.record.customer_id, alice);

    db.prepare(`UPDATE "order" SET customer_id = ? WHERE id = ?`).run(bob, id);
    const gone = await a.next(CHANGE_MS, changeFor(id), "alice's delete after the move");
    assert.equal(gone.action, "delete", `the order left alice's filter: ${JSON.stringify(gone)}`);
    assert.deepEqual(gone.record, { id });
    const arrived = await b.next(CHANGE_MS, changeFor(id), "bob's create after the move");
    assert.equal(arrived.action, "create", `the order entered bob's filter: ${JSON.stringify(arrived)}`);
    assert.equal(arrived.record.customer_id, bob);
    assert.ok(arrived.seq > created.seq);

    await sleep(GRACE_MS);
    assert.deepEqual(
      a.items.map((c) => [c.action, c.record.id]),
      [
        ["create", id],
        ["delete", id],
      ],
      "alice saw only her order's create and delete",
    );
    assert.deepEqual(b.items.map((c) => [c.action, c.record.id]), [["create", id]], "bob saw only the move in");
  });

  t("customer_id filter: an order that was in the join snapshot leaves with a delete", async () => {
    const db = daemon.sqlite();
    const carol = 800000 + (Date.now() % 10000);
    const dave = carol + 1;
    const watcher = (await connect()).channel("collection:order");
    await joinOk(watcher);
    const watched = collect(watcher, "change");
    const order = insertOrder(db, { customer_id: carol });
    await watched.next(CHANGE_MS, changeFor(order, "create"), "the order's publication");
    // two sockets: the official client keeps one joined Channel per topic per socket
    const socket = await connectAdmin();
    const other = await connectAdmin();
    const chC = socket.channel("collection:order", { options: { customer_id: carol } });
    const chD = other.channel("collection:order", { options: { customer_id: dave } });
    const snapC = await joinOk(chC);
    const c = collect(chC, "change");
    const d = collect(chD, "change");
    const snapD = await joinOk(chD);
    assert.deepEqual(snapC.items.map((o) => o.id), [order], "carol's snapshot holds her order");
    assert.deepEqual(snapD.items, [], "dave's snapshot is empty");
    db.prepare(`UPDATE "order" SET customer_id = ? WHERE id = ?`).run(dave, order);
    const gone = await c.next(CHANGE_MS, changeFor(order), "carol's delete after the move");
    assert.equal(gone.action, "delete", JSON.stringify(gone));
    const arrived = await d.next(CHANGE_MS, changeFor(order), "dave's create after the move");
    assert.equal(arrived.action, "create", JSON.stringify(arrived));
    await sleep(500);
    assert.deepEqual(c.items.map((x) => x.action), ["delete"]);
    assert.deepEqual(d.items.map((x) => x.action), ["create"]);
  });

  t("from_date as an ISO date (and today) filters the snapshot", async () => {
    const db = daemon.sqlite();
    // store an old timestamp in whatever format the daemon stores inserted_at
    const recent = insertOrder(db, { customer_id: 31337 });
    const raw = db.prepare(`SELECT inserted_at FROM "order" WHERE id = ?`).get(recent).inserted_at;
    let old;
    if (typeof raw === "string") old = raw.replace(/^\d{4}/, "2020");
    else if (typeof raw === "number" || typeof raw === "bigint") {
      const n = Number(raw);
      const sixYearsSeconds = 6 * 365 * 24 * 3600;
      const unit = n > 1e15 ? 1e6 : n > 1e12 ? 1e3 : 1;
      old = n - sixYearsSeconds * unit;
    } else assert.fail(`unexpected inserted_at storage: ${JSON.stringify(raw)}`);
    const ancient = insertOrder(db, { customer_id: 31337, inserted_at: old });

    const socket = await connectAdmin();
    const ids = async (options) =>
      (await joinOk(socket.channel("collection:order", { options }))).items.map((o) => o.id);
    const since2021 = await ids({ from_date: "2021-01-01", customer_id: 31337 });
    assert.ok(since2021.includes(recent), "a recent order is in from 2021-01-01");
    assert.ok(!since2021.includes(ancient), "an order from 2020 is not in from 2021-01-01");
    const since2019 = await ids({ from_date: "2019-06-01", customer_id: 31337 });
    assert.deepEqual(since2019, [ancient, recent], "both from 2019-06-01, oldest first");
    const today = await ids({ from_date: "today", customer_id: 31337 });
    assert.deepEqual(today, [recent], "today holds only the recent order");
  });

  t("unknown collection and invalid options are refused", async () => {
    const socket = await connect();
    const unknown = socket.channel("collection:nope");
    assert.deepEqual(await join(unknown), { status: "error", response: { reason: "unknown collection" } });
    unknown.leave();
    for (const options of [{ from_date: "yesterday-ish" }, { customer_id: "abc" }, { from_date: "2024-13-45" }]) {
      const ch = socket.channel("collection:order", { options });
      const r = await join(ch);
      ch.leave();
      assert.equal(r.status, "error", `options ${JSON.stringify(options)}`);
      assert.equal(r.response.reason, "invalid options", `options ${JSON.stringify(options)}`);
      assert.equal(typeof r.response.errors, "object", `errors for ${JSON.stringify(options)}`);
    }
    // unknown option keys are ignored
    await joinOk(socket.channel("collection:order", { options: { colour: "blue" } }));
  });

  t("client events on a joined topic are refused with unknown event; unmatched topics and scopes", async () => {
    const socket = await connect();
    const ch = socket.channel("collection:message");
    await joinOk(ch);
    assert.deepEqual(await push(ch, "new_msg", { body: "hi" }), {
      status: "error",
      response: { reason: "unknown event" },
    });
    // a binary push (ArrayBuffer payload) too
    const bin = await push(ch, "upload", new Uint8Array([1, 2, 3]).buffer);
    assert.equal(bin.status, "error");
    assert.deepEqual(bin.response, { reason: "unknown event" });
    // the channel is still joined and live
    const changes = collect(ch, "change");
    const id = insertMessage(daemon.sqlite(), "Still subscribed");
    await changes.next(CHANGE_MS, changeFor(id, "create"), "a change after the refused events");

    const nope = socket.channel("nope:x");
    assert.deepEqual(await join(nope), { status: "error", response: { reason: "unmatched topic" } });
    nope.leave();
    const [reply] = socket.spy.receivedFrames("nope:x", "phx_reply");
    assert.equal(reply[0], null, "unmatched topic replies carry a null join_ref");
    const scope = socket.channel("notifications:bogus");
    assert.deepEqual(await join(scope), { status: "error", response: { reason: "unknown scope" } });
    scope.leave();
    const user = socket.channel("notifications:user:1");
    assert.deepEqual(await join(user), { status: "error", response: { reason: "unauthorized" } });
    user.leave();
    assert.ok(socket.isConnected(), "refusals leave the socket open");
  });

  t("notifications:admin needs the admin token; new_order arrives on an order insert", async () => {
    const anonymous = await connect();
    const refused = anonymous.channel("notifications:admin");
    assert.deepEqual(await join(refused), { status: "error", response: { reason: "unauthorized" } });
    refused.leave();
    // a wrong token may refuse the whole socket (SPEC 2: an invalid token → 403); if the
    // socket opens anyway, the join must be refused
    const wrong = clients.socket(daemon.url, { heartbeatIntervalMs: 300, params: { token: "not-the-token" } });
    const outcome = new Promise((r) => {
      wrong.onOpen(() => r("open"));
      wrong.onError(() => r("error"));
    });
    wrong.connect();
    if ((await withTimeout(outcome, 5000, "the wrong-token socket to open or fail")) === "open") {
      const wrongCh = wrong.channel("notifications:admin");
      const wrongJoin = await join(wrongCh);
      wrongCh.leave();
      assert.deepEqual(wrongJoin, { status: "error", response: { reason: "unauthorized" } });
    }
    wrong.disconnect();

    const admin = await connect({ params: { token: ADMIN_TOKEN } });
    const ch = admin.channel("notifications:admin");
    await joinOk(ch);
    const notes = collect(ch, "new_order");
    const db = daemon.sqlite();
    const id = insertOrder(db, { customer_id: 5 });
    const note = await notes.next(CHANGE_MS, (n) => n.order_id === id, `new_order for ${id}`);
    const dayId = db.prepare(`SELECT day_id FROM "order" WHERE id = ?`).get(id).day_id;
    assert.equal(note.day_id, dayId);
    assert.equal(typeof note.message, "string");
    assert.ok(note.message.length > 0);
    assert.match(note.timestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/, "RFC 3339 UTC");
  });

  t("leave stops the events of that topic", async () => {
    const socket = await connect();
    const watcher = await connect();
    const ch = socket.channel("collection:message");
    const control = watcher.channel("collection:message");
    await joinOk(ch);
    await joinOk(control);
    const mine = collect(ch, "change");
    const theirs = collect(control, "change");
    assert.equal((await leave(ch)).status, "ok");
    const id = insertMessage(daemon.sqlite(), "After the leave");
    await theirs.next(CHANGE_MS, changeFor(id, "create"), "the control subscriber's create");
    await sleep(500);
    assert.equal(mine.items.length, 0, "no change reaches the channel that left");
    assert.equal(socket.spy.receivedFrames("collection:message", "change").length, 0, "no change frame on the wire");
  });

  t("two Channel objects on one topic: each change is delivered once", async () => {
    const socket = await connect();
    const first = socket.channel("collection:message");
    await joinOk(first);
    const second = socket.channel("collection:message");
    await joinOk(second);
    const a = collect(first, "change");
    const b = collect(second, "change");
    const id = insertMessage(daemon.sqlite(), "Delivered once");
    await b.next(CHANGE_MS, changeFor(id, "create"), "the live channel's create");
    await sleep(GRACE_MS);
    const frames = socket.spy.receivedFrames("collection:message", "change").filter((f) => f[4].record.id === id);
    assert.equal(frames.length, 1, `one change frame on the wire, got ${frames.length}`);
    assert.equal(b.items.filter((c) => c.record.id === id).length, 1);
    assert.equal(a.items.length, 0, "the replaced channel gets nothing");
  });

  t("resume: params as a function send the latest seq on the automatic rejoin; nothing is lost", async () => {
    // SPEC 3.1: with the official client, pass the channel params as a function so that each
    // automatic rejoin sends the latest seq
    const socket = await connect({ reconnectAfterMs: () => 2000 });
    let lastSeq = null;
    const ch = socket.channel("collection:message", () => ({ options: lastSeq === null ? {} : { since: lastSeq } }));
    const replies = [];
    const seen = [];
    ch.on("change", (c) => {
      seen.push(c);
      lastSeq = c.seq;
    });
    const first = await new Promise((resolveJoin) =>
      ch.join().receive("ok", (reply) => {
        replies.push(reply);
        if (reply.changes) for (const c of reply.changes) seen.push(c);
        lastSeq = reply.seq;
        resolveJoin(reply);
      }),
    );
    assert.ok(Array.isArray(first.items), "the first join gets the full snapshot");
    const before = lastSeq;

    // the network drops; a message is written while the screen is away
    socket.spy.connections[0].ws.terminate();
    await waitFor(() => socket.events.close.length > 0, 5000, "the client to notice the drop");
    const id = insertMessage(daemon.sqlite(), "Written while away");
    await waitFor(() => replies.length >= 2, 15000, "the automatic rejoin's reply");

    const rejoin = socket.spy.sentFrames("collection:message", "phx_join").at(-1);
    assert.deepEqual(rejoin[4], { options: { since: before } }, "the rejoin sends the latest seq");
    const resumed = replies[1];
    assert.equal(resumed.items, null, `a resumed join has items: null: ${JSON.stringify(resumed)}`);
    assert.ok(Array.isArray(resumed.changes), "and the missed changes");
    assert.ok(resumed.seq >= before);
    await waitFor(() => seen.some(changeFor(id, "create")), CHANGE_MS, "the missed create");
    await sleep(500);
    assert.equal(seen.filter(changeFor(id)).length, 1, "the missed change arrives exactly once");
    const seqs = seen.map((c) => c.seq);
    assert.deepEqual(seqs, [...seqs].sort((x, y) => x - y), "in seq order");
  });

  t("heartbeats keep a socket open past idle_timeout_seconds = 1; silence closes it with 1002", async () => {
    const busy = await connect({ heartbeatIntervalMs: 300 });
    const quiet = await connect({ heartbeatIntervalMs: 60000 });
    await joinOk(busy.channel("collection:status"));
    await joinOk(quiet.channel("collection:status"));
    await sleep(3000);
    assert.deepEqual(busy.events.close, [], "the heartbeating socket stays open");
    assert.equal(busy.spy.connections.length, 1);
    assert.ok(busy.spy.sentFrames("phoenix", "heartbeat").length >= 4);
    assert.ok(quiet.events.close.length >= 1, "the silent socket was closed by the idle timeout");
    assert.notEqual(quiet.events.close[0], 1000, "never 1000 for a close the client did not ask for");
    assert.equal(quiet.events.close[0], 1002, "idle timeout closes with 1002");
  });
});

describe("kaffediem daemon through phoenix 1.8.12", () => {
  const daemon = new Daemon();
  let clients;
  before(async () => {
    await daemon.start();
  });
  after(async () => {
    clients?.closeAll();
    await daemon.dispose();
  });

  test("1.8.12 (no reconnect after a 1000 close) comes back after the daemon's idle close", () =>
    withServerLog(() => daemon.process, async () => {
      clients = new Clients(phoenix1812);
      // no heartbeat within idle_timeout_seconds = 1: the daemon closes the socket
      const socket = await clients.connected(daemon.url, { heartbeatIntervalMs: 60000 });
      const ch = socket.channel("collection:message");
      await joinOk(ch);
      const changes = collect(ch, "change");
      await waitFor(() => socket.events.close.length > 0, 5000, "the daemon's idle close");
      assert.equal(socket.events.close[0], 1002);
      await waitFor(() => socket.events.open >= 2, 5000, "the reconnect");
      await waitFor(
        () => socket.spy.sentFrames("collection:message", "phx_join").length >= 2 && ch.state === "joined",
        5000,
        "the rejoin",
      );
      // keep the rejoined socket alive while the change travels
      const keepAlive = setInterval(() => socket.ping(() => {}), 300);
      try {
        const id = insertMessage(daemon.sqlite(), "For the old client");
        await changes.next(CHANGE_MS, changeFor(id, "create"), "a change after the rejoin");
      } finally {
        clearInterval(keepAlive);
      }
    }));
});

describe("kaffediem daemon restart", () => {
  const daemon = new Daemon();
  let clients;
  before(async () => {
    await daemon.start();
  });
  after(async () => {
    clients?.closeAll();
    await daemon.dispose();
  });

  test("the client reconnects and rejoins after SIGTERM and a restart on the same port", () =>
    withServerLog(() => daemon.process, async () => {
      clients = new Clients(phoenix);
      const socket = await clients.connected(daemon.url, { heartbeatIntervalMs: 300 });
      const ch = socket.channel("collection:message");
      await joinOk(ch);
      const changes = collect(ch, "change");
      const port = daemon.process.port;

      const status = await daemon.stop();
      assert.deepEqual(status, { code: 0, signal: null }, "SIGTERM stops the daemon with exit 0");
      await waitFor(() => socket.events.close.length > 0, 5000, "the client to see the close");
      assert.notEqual(socket.events.close[0], 1000, "shutdown must not close with 1000");
      assert.equal(socket.events.close[0], 1001, "shutdown closes every socket with 1001 (SPEC 9)");

      await daemon.start(port);
      assert.equal(daemon.process.port, port);
      await waitFor(() => socket.events.open >= 2, 15000, "the automatic reconnect");
      await waitFor(
        () => socket.spy.sentFrames("collection:message", "phx_join").length >= 2 && ch.state === "joined",
        10000,
        "the automatic rejoin",
      );
      const id = insertMessage(daemon.sqlite(), "After the restart");
      const created = await changes.next(CHANGE_MS, changeFor(id, "create"), "a change after the restart");
      assert.equal(created.record.title, "After the restart");
    }));
});
