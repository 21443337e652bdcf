-- Kaffediem database schema, version 3.
--
-- The single source of truth for a fresh database: the daemon embeds this file and runs it in
-- one transaction on an empty file, adds the change-capture triggers it generates for every
-- collection (see `kaffediem_changes` below), then sets `PRAGMA user_version = 3` (the file
-- itself does not, so that the version is set only when everything here succeeded). Older
-- files are upgraded by `src/store/schema.rs` (v2: AUTOINCREMENT ids, the `epoch`; v3: the
-- change log).
--
-- Each collection is one table named after it, with columns named as the JSON fields (SPEC 4),
-- so a café admin can read and fix data with the `sqlite3` shell. Every write from the shell is
-- noticed by the daemon and broadcast like its own writes.
--
-- Conventions:
-- - Booleans are INTEGER 0/1 (a CHECK refuses anything else; write 1, not 'true').
-- - Timestamps are UTC text in RFC 3339 with `Z`. The daemon writes microseconds
--   (`2026-03-01T09:15:02.123456Z`); the column defaults, used by a plain shell INSERT, give
--   milliseconds (`2026-03-01T09:15:02.123Z`). Both are read back as microseconds.
-- - `updated_at` is bumped by a trigger when an UPDATE leaves it unchanged, so a shell UPDATE
--   needs no extra care; a writer that sets it explicitly keeps its value.
-- - Prices are whole NOK.
-- - Ids are AUTOINCREMENT: an id is never handed out twice, not even after the newest row is
--   deleted, so a screen can never mistake a new record for one it saw deleted. After a
--   restore the daemon raises `sqlite_sequence` above every id it ever handed out.

CREATE TABLE category (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    name                 TEXT    NOT NULL DEFAULT '',
    sort_order           INTEGER NOT NULL DEFAULT 0,
    enable               INTEGER NOT NULL DEFAULT 1 CHECK (enable IN (0, 1)),
    -- JSON array of customization_key ids, e.g. '[1,2]'.
    valid_customizations TEXT    NOT NULL DEFAULT '[]',
    inserted_at          TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at           TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE item (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT    NOT NULL DEFAULT '',
    price_nok   INTEGER NOT NULL DEFAULT 0,
    category_id INTEGER NOT NULL REFERENCES category (id),
    -- NULL, or the stored file name of the item's image (the bytes live in table `image`).
    image       TEXT,
    enable      INTEGER NOT NULL DEFAULT 1 CHECK (enable IN (0, 1)),
    sort_order  INTEGER NOT NULL DEFAULT 0,
    inserted_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at  TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX item_category ON item (category_id);

CREATE TABLE customization_key (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    name            TEXT    NOT NULL DEFAULT '',
    enable          INTEGER NOT NULL DEFAULT 1 CHECK (enable IN (0, 1)),
    label_color     TEXT,
    -- A customization_value id, kept as the string the frontend sends.
    default_value   TEXT,
    multiple_choice INTEGER NOT NULL DEFAULT 0 CHECK (multiple_choice IN (0, 1)),
    sort_order      INTEGER NOT NULL DEFAULT 0,
    inserted_at     TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at      TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE customization_value (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    name                TEXT    NOT NULL DEFAULT '',
    price_increment_nok INTEGER NOT NULL DEFAULT 0,
    constant_price      INTEGER NOT NULL DEFAULT 1 CHECK (constant_price IN (0, 1)),
    belongs_to          INTEGER NOT NULL REFERENCES customization_key (id),
    enable              INTEGER NOT NULL DEFAULT 1 CHECK (enable IN (0, 1)),
    sort_order          INTEGER NOT NULL DEFAULT 0,
    inserted_at         TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at          TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX customization_value_key ON customization_value (belongs_to);

CREATE TABLE message (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    title       TEXT NOT NULL DEFAULT '',
    subtitle    TEXT,
    inserted_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE status (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    open         INTEGER NOT NULL DEFAULT 0 CHECK (open IN (0, 1)),
    show_message INTEGER NOT NULL DEFAULT 0 CHECK (show_message IN (0, 1)),
    -- The message shown when show_message is 1; cleared when that message is deleted.
    message_id   INTEGER REFERENCES message (id) ON DELETE SET NULL,
    inserted_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE "order" (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    -- Idempotency key: a retried POST with the same uuid returns the existing order.
    uuid                TEXT    NOT NULL UNIQUE DEFAULT (lower(hex(randomblob(16)))),
    customer_id         INTEGER,
    -- The order's number for its local day: 101, 102, ...
    day_id              INTEGER NOT NULL DEFAULT 0,
    state               TEXT    NOT NULL DEFAULT 'received'
                        CHECK (state IN ('received', 'production', 'completed', 'dispatched')),
    missing_information INTEGER NOT NULL DEFAULT 0 CHECK (missing_information IN (0, 1)),
    -- JSON snapshot of what was ordered, names and prices copied at placement (SPEC 4).
    items               TEXT    NOT NULL DEFAULT '[]',
    total_nok           INTEGER NOT NULL DEFAULT 0,
    inserted_at         TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at          TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
-- Listing oldest first, and "inserted since local midnight" (from_date, day_id numbering).
-- `day_id` rides along so that counting the day's highest number (the first order of a day,
-- or after a schema change) reads today's entries of this index only, never the orders.
CREATE INDEX order_inserted ON "order" (inserted_at, id, day_id);
CREATE INDEX order_customer ON "order" (customer_id, inserted_at);
CREATE INDEX order_day ON "order" (day_id);
-- The newest stamp at start (the clock's floor) without reading every order.
CREATE INDEX order_updated ON "order" (updated_at);

-- Bump updated_at on every UPDATE that did not set it itself.
CREATE TRIGGER category_touch AFTER UPDATE ON category
WHEN NEW.updated_at IS OLD.updated_at BEGIN
    UPDATE category SET updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = NEW.id;
END;
CREATE TRIGGER item_touch AFTER UPDATE ON item
WHEN NEW.updated_at IS OLD.updated_at BEGIN
    UPDATE item SET updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = NEW.id;
END;
CREATE TRIGGER customization_key_touch AFTER UPDATE ON customization_key
WHEN NEW.updated_at IS OLD.updated_at BEGIN
    UPDATE customization_key SET updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
    WHERE id = NEW.id;
END;
CREATE TRIGGER customization_value_touch AFTER UPDATE ON customization_value
WHEN NEW.updated_at IS OLD.updated_at BEGIN
    UPDATE customization_value SET updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
    WHERE id = NEW.id;
END;
CREATE TRIGGER message_touch AFTER UPDATE ON message
WHEN NEW.updated_at IS OLD.updated_at BEGIN
    UPDATE message SET updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = NEW.id;
END;
CREATE TRIGGER status_touch AFTER UPDATE ON status
WHEN NEW.updated_at IS OLD.updated_at BEGIN
    UPDATE status SET updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = NEW.id;
END;
CREATE TRIGGER order_touch AFTER UPDATE ON "order"
WHEN NEW.updated_at IS OLD.updated_at BEGIN
    UPDATE "order" SET updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = NEW.id;
END;

-- Daemon-internal state: `seq` (the last committed change-set number), `epoch` (this database
-- history's identity, carried in join replies beside `seq`: a new one on every restore),
-- `restored_pending` (set in the copies `kaffediem backup` writes: the first start on one
-- begins a new epoch), `collections_version` (bumped by the change-log triggers, see
-- `kaffediem_changes`), `published_version`, later `socket_secret`; `day_start`, `day_max`,
-- `day_schema`: the highest `day_id` of the orders inserted since the local midnight
-- `day_start`, kept by the `order_day_max_*` triggers (`DAY_MAX_TRIGGERS` in
-- `src/store/orders.rs`, created with the schema and put back at start), so numbering the next
-- order reads three keys, not the day's orders.
CREATE TABLE kaffediem_meta (
    key   TEXT PRIMARY KEY,
    value
);

CREATE TABLE user (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    email         TEXT    NOT NULL UNIQUE COLLATE NOCASE,
    name          TEXT    NOT NULL DEFAULT '',
    username      TEXT,
    is_admin      INTEGER NOT NULL DEFAULT 0 CHECK (is_admin IN (0, 1)),
    -- Argon2id PHC string; never logged or returned.
    password_hash TEXT    NOT NULL,
    inserted_at   TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at    TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE session (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    -- SHA-256 of the cookie token; the token itself is never stored.
    token_hash  TEXT    NOT NULL UNIQUE,
    user_id     INTEGER NOT NULL REFERENCES user (id) ON DELETE CASCADE,
    expires_at  TEXT    NOT NULL,
    inserted_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX session_user ON session (user_id);

-- Item images live inside the database so that the one-file backup holds them.
CREATE TABLE image (
    item_id      INTEGER PRIMARY KEY REFERENCES item (id) ON DELETE CASCADE,
    filename     TEXT NOT NULL,
    content_type TEXT NOT NULL,
    bytes        BLOB NOT NULL,
    etag         TEXT NOT NULL,
    inserted_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);


-- The change log: every row a collection gains, loses or changes, whoever writes it (the daemon
-- or the sqlite3 shell), is written here by the `*_captured` triggers, which the daemon
-- generates for every collection when it creates or upgrades the file (`src/store/schema.rs`;
-- `kaffediem check` names any that are missing, and the daemon puts them back at start). The
-- daemon publishes these rows and deletes them in the same transaction, so the table holds only
-- what another process committed and the daemon has not published yet: a shell edit of one
-- order costs the daemon one row here, however many orders the file holds. `op` is 'create',
-- 'update' (also: the row was there before this statement) or 'delete'; `before`, for an
-- order that was there, its fields screens filter on as they were (JSON), so the daemon need
-- not keep every order in memory to tell a screen an order left its filter. The same triggers
-- bump `collections_version`, a floor for `seq` should the shell break it.
CREATE TABLE kaffediem_changes (
    id         INTEGER PRIMARY KEY,
    collection TEXT    NOT NULL,
    row_id     INTEGER NOT NULL,
    op         TEXT    NOT NULL,
    before     TEXT
);

-- `published_version`: the `collections_version` as of the last change set the daemon
-- published (a floor for `seq`, like it).
INSERT INTO kaffediem_meta (key, value)
VALUES ('seq', 0), ('collections_version', 0), ('published_version', 0),
       ('epoch', lower(hex(randomblob(8))));
-- The café starts closed; the front desk opens it.
INSERT INTO status (id, open, show_message) VALUES (1, 0, 0);
