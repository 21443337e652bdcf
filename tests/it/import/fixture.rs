//! Kaffebase files as cafés have them (`kaffebase-schema.md`): the old backend's DDL as its
//! Ecto migrations leave it (`ecto_sqlite3`: AUTOINCREMENT ids, TEXT stamps, 0/1 booleans,
//! columns added by later migrations at the end), filled with a clean café, the odd rows the
//! schema notes describe, the built-in admin, or a long history of orders.

use std::path::{Path, PathBuf};

use jiff::{SignedDuration, Timestamp};
use rusqlite::{params, Connection};
use serde_json::{json, Value};

/// The tables as the old migrations create them, in migration order.
pub const KAFFEBASE_DDL: &str = r#"
CREATE TABLE IF NOT EXISTS "schema_migrations" ("version" INTEGER PRIMARY KEY, "inserted_at" TEXT);
CREATE TABLE "users" ("id" INTEGER PRIMARY KEY AUTOINCREMENT, "email" TEXT NOT NULL, "hashed_password" TEXT, "confirmed_at" TEXT, "inserted_at" TEXT NOT NULL, "updated_at" TEXT NOT NULL);
CREATE UNIQUE INDEX "users_email_index" ON "users" ("email");
CREATE TABLE "users_tokens" ("id" INTEGER PRIMARY KEY AUTOINCREMENT, "user_id" INTEGER NOT NULL CONSTRAINT "users_tokens_user_id_fkey" REFERENCES "users"("id") ON DELETE CASCADE, "token" BLOB NOT NULL, "context" TEXT NOT NULL, "sent_to" TEXT, "authenticated_at" TEXT, "inserted_at" TEXT NOT NULL);
CREATE INDEX "users_tokens_user_id_index" ON "users_tokens" ("user_id");
CREATE UNIQUE INDEX "users_tokens_context_token_index" ON "users_tokens" ("context", "token");
ALTER TABLE "users" ADD COLUMN "name" TEXT;
ALTER TABLE "users" ADD COLUMN "username" TEXT;
ALTER TABLE "users" ADD COLUMN "is_admin" INTEGER DEFAULT 0 NOT NULL;
CREATE UNIQUE INDEX "users_username_index" ON "users" ("username");
CREATE TABLE "category" ("id" INTEGER PRIMARY KEY AUTOINCREMENT, "name" TEXT NOT NULL, "sort_order" INTEGER DEFAULT 0 NOT NULL, "enable" INTEGER DEFAULT 0 NOT NULL, "valid_customizations" TEXT DEFAULT '[]' NOT NULL, "inserted_at" TEXT, "updated_at" TEXT);
CREATE TABLE "item" ("id" INTEGER PRIMARY KEY AUTOINCREMENT, "name" TEXT NOT NULL, "category_id" INTEGER CONSTRAINT "item_category_id_fkey" REFERENCES "category"("id") ON DELETE RESTRICT, "image" TEXT, "enable" INTEGER DEFAULT 0 NOT NULL, "sort_order" INTEGER DEFAULT 0 NOT NULL, "inserted_at" TEXT, "updated_at" TEXT);
CREATE UNIQUE INDEX "item_name_index" ON "item" ("name");
CREATE INDEX "item_category_id_index" ON "item" ("category_id");
CREATE TABLE "customization_key" ("id" INTEGER PRIMARY KEY AUTOINCREMENT, "name" TEXT NOT NULL, "enable" INTEGER DEFAULT 0 NOT NULL, "label_color" TEXT, "default_value" TEXT, "multiple_choice" INTEGER DEFAULT 0 NOT NULL, "sort_order" INTEGER DEFAULT 0 NOT NULL, "inserted_at" TEXT, "updated_at" TEXT);
CREATE TABLE "customization_value" ("id" INTEGER PRIMARY KEY AUTOINCREMENT, "name" TEXT NOT NULL, "belongs_to" INTEGER NOT NULL, "enable" INTEGER DEFAULT 0 NOT NULL, "constant_price" INTEGER DEFAULT 0 NOT NULL, "sort_order" INTEGER DEFAULT 0 NOT NULL, "inserted_at" TEXT, "updated_at" TEXT);
CREATE INDEX "customization_value_belongs_to_index" ON "customization_value" ("belongs_to");
CREATE TABLE "message" ("id" INTEGER PRIMARY KEY AUTOINCREMENT, "title" TEXT NOT NULL, "subtitle" TEXT, "inserted_at" TEXT, "updated_at" TEXT);
CREATE TABLE "status" ("id" INTEGER PRIMARY KEY AUTOINCREMENT, "open" INTEGER DEFAULT 0 NOT NULL, "show_message" INTEGER DEFAULT 0 NOT NULL, "message_id" INTEGER CONSTRAINT "status_message_id_fkey" REFERENCES "message"("id") ON DELETE SET NULL, "inserted_at" TEXT, "updated_at" TEXT);
CREATE TABLE "order" ("id" INTEGER PRIMARY KEY AUTOINCREMENT, "uuid" TEXT NOT NULL, "customer_id" INTEGER, "day_id" INTEGER NOT NULL, "items_data" TEXT, "state" TEXT NOT NULL, "missing_information" INTEGER DEFAULT 0 NOT NULL, "inserted_at" TEXT, "updated_at" TEXT);
CREATE UNIQUE INDEX "order_uuid_index" ON "order" ("uuid");
CREATE INDEX "order_customer_id_index" ON "order" ("customer_id");
ALTER TABLE "item" ADD COLUMN "price_nok" INTEGER DEFAULT 0 NOT NULL;
ALTER TABLE "customization_value" ADD COLUMN "price_increment_nok" INTEGER DEFAULT 0 NOT NULL;
INSERT INTO "schema_migrations" ("version", "inserted_at") VALUES
  (20250101120000, '2025-01-01T12:00:00'), (20250301090000, '2025-03-01T09:00:00'),
  (20251116103333, '2025-11-16T10:33:33');
"#;

/// The built-in admin's address and published password (the old backend's source).
pub const BUILT_IN_ADMIN: &str = "kaffediem@asvg.codes";
pub const BUILT_IN_PASSWORD: &str = "kaffediem";

/// The café's own admin and a customer, with their passwords.
pub const KARI: (&str, &str) = ("kari@kafe.no", "kari sitt lange passord");
pub const OLA: (&str, &str) = ("ola@elev.no", "ola drikker kakao");

/// A Kaffebase file being built.
pub struct Kaffebase {
    pub path: PathBuf,
    pub conn: Connection,
    /// The stamps "now" is built from (one instant per file, so day numbers are consistent).
    pub now: Timestamp,
}

/// An Ecto `utc_datetime_usec` stamp.
pub fn usec(ts: Timestamp) -> String {
    ts.strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string()
}

/// A bcrypt hash as `bcrypt_elixir` writes it (`$2b$`).
pub fn bcrypt(password: &str, cost: u32) -> String {
    bcrypt::hash_with_result(password, cost)
        .expect("bcrypt")
        .format_for_version(bcrypt::Version::TwoB)
}

impl Kaffebase {
    /// An empty Kaffebase file (WAL, as `ecto_sqlite3` leaves it) at `path`.
    pub fn create(path: &Path) -> Kaffebase {
        let conn = Connection::open(path).expect("create kaffebase");
        conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
            .expect("wal");
        conn.execute_batch(KAFFEBASE_DDL).expect("old DDL");
        Kaffebase {
            path: path.to_path_buf(),
            conn,
            now: Timestamp::now(),
        }
    }

    /// Close it, as the stopped old backend leaves it (WAL checkpointed, no `-wal`).
    pub fn close(self) -> PathBuf {
        self.conn.close().expect("close kaffebase");
        self.path
    }

    pub fn ago(&self, minutes: i64) -> Timestamp {
        self.now - SignedDuration::from_mins(minutes)
    }

    pub fn user(&self, id: i64, email: &str, hash: Option<&str>, admin: bool, name: &str) {
        let stamp = usec(self.ago(60 * 24 * 90));
        self.conn
            .execute(
                "INSERT INTO users (id, email, hashed_password, confirmed_at, inserted_at, updated_at, name, username, is_admin) \
                 VALUES (?1, ?2, ?3, ?4, ?4, ?4, ?5, ?6, ?7)",
                params![id, email, hash, stamp, name, email.split('@').next(), admin],
            )
            .expect("user");
    }

    /// The café a clean file holds: three users (the built-in admin among them, cost 12 as
    /// the old backend hashed), a menu with NOK and percent prices, a message, the status, and
    /// orders of earlier days and of today.
    pub fn clean_cafe(&self) {
        self.user(
            1,
            BUILT_IN_ADMIN,
            Some(&bcrypt(BUILT_IN_PASSWORD, 12)),
            true,
            "Kaffediem",
        );
        self.user(2, KARI.0, Some(&bcrypt(KARI.1, 4)), true, "Kari");
        self.user(3, OLA.0, Some(&bcrypt(OLA.1, 4)), false, "Ola");
        let at = usec(self.ago(60 * 24 * 30));
        self.conn
            .execute_batch(&format!(
                r#"
INSERT INTO customization_key VALUES
  (1, 'Melk', 1, '#f5deb3', '4', 0, 1, '{at}', '{at}'),
  (2, 'Sirup', 1, '#b5651d', NULL, 1, 2, '{at}', '{at}'),
  (3, 'Størrelse', 1, '#4682b4', '', 0, 0, '{at}', '{at}');
INSERT INTO customization_value VALUES
  (4, 'Havremelk', 1, 1, 1, 0, '{at}', '{at}', 5),
  (5, 'Laktosefri', 1, 1, 1, 1, '{at}', '{at}', 0),
  (6, 'Vanilje', 2, 1, 1, 0, '{at}', '{at}', 8),
  (7, 'Karamell', 2, 1, 1, 1, '{at}', '{at}', 8),
  (8, 'Liten', 3, 1, 0, 0, '{at}', '{at}', 100),
  (9, 'Stor', 3, 1, 0, 1, '{at}', '{at}', 110);
INSERT INTO category VALUES
  (1, 'Kaffe', 0, 1, '[1,2,3]', '{at}', '{at}'),
  (2, 'Te', 1, 1, '["2"]', '{at}', '{at}'),
  (3, 'Bakst', 2, 1, '[]', '{at}', '{at}');
INSERT INTO item VALUES
  (1, 'Espresso', 1, NULL, 1, 0, '{at}', '{at}', 30),
  (2, 'Latte', 1, 'https://cdn.kafe.no/latte.png', 1, 1, '{at}', '{at}', 45),
  (3, 'Chai', 2, '', 1, 0, '{at}', '{at}', 42),
  (4, 'Kanelbolle', 3, '/images/kanelbolle.png', 1, 0, '{at}', '{at}', 35);
INSERT INTO message VALUES (1, 'Velkommen!', 'Ny meny i dag', '{at}', '{at}');
INSERT INTO status VALUES (1, 1, 1, 1, '{at}', '{at}');
"#
            ))
            .expect("clean menu");
        let latte = |milk: bool, small: bool| {
            let mut c = Vec::new();
            if milk {
                c.push(json!({"key_id": 1, "key_name": "Melk", "value_id": 4, "value_name": "Havremelk", "price_change": 5.0}));
            }
            if small {
                c.push(json!({"key_id": 3, "key_name": "Størrelse", "value_id": 8, "value_name": "Liten", "price_change": 100.0}));
            }
            json!({"item_id": 2, "name": "Latte", "price": 45.0, "category": "Kaffe", "customizations": c})
        };
        let bolle = json!({"item_id": 4, "name": "Kanelbolle", "price": 35.0, "category": "Bakst", "customizations": []});
        // Yesterday's day: 101, 102; today's: 101 (received), 102 (production).
        let yesterday = self.ago(60 * 24);
        self.order(
            1,
            101,
            "dispatched",
            yesterday,
            Some(3),
            &json!([latte(false, false)]),
        );
        self.order(
            2,
            102,
            "completed",
            yesterday,
            None,
            &json!([bolle.clone()]),
        );
        self.order(
            3,
            101,
            "received",
            self.ago(3),
            Some(3),
            &json!([latte(true, false), bolle]),
        );
        self.order(
            4,
            102,
            "production",
            self.ago(2),
            Some(2),
            &json!([latte(true, true)]),
        );
    }

    pub fn order(
        &self,
        id: i64,
        day_id: i64,
        state: &str,
        at: Timestamp,
        customer: Option<i64>,
        items: &Value,
    ) {
        let stamp = usec(at);
        self.conn
            .execute(
                r#"INSERT INTO "order" (id, uuid, customer_id, day_id, items_data, state, missing_information, inserted_at, updated_at)
                   VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7, ?7)"#,
                params![id, format!("00000000-0000-4000-8000-{id:012}"), customer, day_id, items.to_string(), state, stamp],
            )
            .expect("order");
    }

    /// `n` orders of today after the clean café's (ids from 5), each a latte: the size a
    /// busy café's file has, for progress and for the daemon's big foreign commit.
    pub fn many_orders_today(&self, n: i64) {
        let tx = self.conn.unchecked_transaction().expect("tx");
        let items = json!([{"item_id": 1, "name": "Espresso", "price": 30.0, "category": "Kaffe",
                            "customizations": [{"key_id": 2, "key_name": "Sirup", "value_id": 6, "value_name": "Vanilje", "price_change": 8.0}]}])
        .to_string();
        let at = usec(self.ago(1));
        {
            let mut stmt = tx
                .prepare(r#"INSERT INTO "order" (id, uuid, customer_id, day_id, items_data, state, missing_information, inserted_at, updated_at)
                             VALUES (?1, ?2, 3, ?3, ?4, 'completed', 0, ?5, ?5)"#)
                .expect("prepare");
            for i in 0..n {
                let id = 5 + i;
                stmt.execute(params![id, format!("bulk-{id}"), 103 + i, items, at])
                    .expect("bulk order");
            }
        }
        tx.commit().expect("commit");
    }

    /// The odd rows the schema notes describe, beside a clean café: every one must be named
    /// in the report.
    pub fn odd_rows(&self) {
        self.conn
            .execute_batch(
                r#"
PRAGMA foreign_keys = OFF;
-- The old unique index on email compares case-sensitively: the same person twice.
INSERT INTO users (id, email, hashed_password, inserted_at, updated_at, name, username, is_admin)
  VALUES (5, 'KARI@kafe.no', NULL, '2025-11-17 10:21:33', '2025-11-17 10:21:33', 'Kari igjen', 'kari2', 0),
         (6, 'nopass@kafe.no', NULL, '2025-11-17T10:21:33', '2025-11-17T10:21:33', 'Uten passord', 'nopass', 0);
-- Older decimal prices, as REAL and as text.
INSERT INTO item (id, name, category_id, image, enable, sort_order, inserted_at, updated_at, price_nok)
  VALUES (8, 'Kakao', 2, NULL, 1, 5, '2025-11-17T10:21:33Z', NULL, 39.5),
         (9, 'Muffin', NULL, NULL, 1, 0, NULL, NULL, 30),
         (10, 'Rundstykke', 77, NULL, 1, 0, NULL, NULL, 25),
         (11, 'Smoothie', 1, NULL, 1, 0, NULL, NULL, '55.0');
INSERT INTO customization_value (id, name, belongs_to, enable, constant_price, sort_order, price_increment_nok)
  VALUES (20, 'Ekstra shot', 99, 1, 1, 0, 10);
INSERT INTO category (id, name, sort_order, enable, valid_customizations, inserted_at, updated_at)
  VALUES (4, 'Sesong', 3, 0, '[1, 42]', 'i går', NULL);
INSERT INTO status (id, open, show_message, message_id) VALUES (2, 0, 1, 99);
"#,
            )
            .expect("odd rows");
        let yesterday = self.ago(60 * 24);
        // A float total the exact rule would not charge: 50 × 110 % = 55, the frontend's
        // floating point charged 56.
        self.order(5, 103, "dispatched", yesterday, Some(3), &json!([
            {"item_id": 8, "name": "Kakao", "price": 50.0, "category": "Te",
             "customizations": [{"key_id": 3, "key_name": "Størrelse", "value_id": 9, "value_name": "Stor", "price_change": 110.0}]}
        ]));
        self.order(6, 104, "served", yesterday, None, &json!([
            {"item_id": 8, "name": "Kakao", "price": 39.5, "category": "Te", "customizations": []}
        ]));
        self.conn
            .execute_batch(
                r#"
INSERT INTO "order" (id, uuid, customer_id, day_id, items_data, state, missing_information, inserted_at, updated_at)
  VALUES (7, 'odd-7', NULL, 105, NULL, 'completed', 0, 'last tuesday', '2025-11-18 09:00:00'),
         (8, 'odd-8', 3, 105, 'not json', 'completed', 1, '2025-11-18 09:00:01', NULL),
         (9, 'odd-9', 5, 106, '[]', 'completed', 0, NULL, NULL);
"#,
            )
            .expect("odd orders");
    }
}

/// The bytes and modification time of a file, to show it was not changed.
pub fn fingerprint(path: &Path) -> (Vec<u8>, std::time::SystemTime) {
    let bytes = std::fs::read(path).expect("read file");
    let mtime = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .expect("mtime");
    (bytes, mtime)
}

/// A minimal PNG (the signature and an IHDR chunk), as the old frontend's files are.
pub fn png() -> Vec<u8> {
    let mut b = b"\x89PNG\r\n\x1a\n".to_vec();
    b.extend_from_slice(&[0, 0, 0, 13]);
    b.extend_from_slice(b"IHDR");
    b.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1, 8, 6, 0, 0, 0]);
    b.extend_from_slice(&[0x1f, 0x15, 0xc4, 0x89]);
    b
}
