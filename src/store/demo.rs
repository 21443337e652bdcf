//! The demo café: a realistic Norwegian menu, two display messages and an open status, written
//! through the writer so that it is published like any other write.

use rusqlite::{params, Transaction};

use super::{StoreError, Writer};

/// Categories: name, valid customization keys (by name).
const CATEGORIES: &[(&str, &[&str])] = &[
    ("Kaffe", &["Størrelse", "Melk", "Ekstra shot", "Sirup"]),
    ("Te", &["Størrelse", "Melk", "Sirup"]),
    ("Kald drikke", &["Størrelse", "Melk", "Sirup"]),
    ("Mat og bakst", &[]),
];

/// Items: category, name, price in NOK.
const ITEMS: &[(&str, &str, i64)] = &[
    ("Kaffe", "Espresso", 30),
    ("Kaffe", "Americano", 35),
    ("Kaffe", "Cortado", 40),
    ("Kaffe", "Cappuccino", 45),
    ("Kaffe", "Latte", 45),
    ("Kaffe", "Mocha", 50),
    ("Kaffe", "Filterkaffe", 25),
    ("Te", "Chai Latte", 45),
    ("Te", "Matcha Latte", 50),
    ("Te", "Earl Grey", 30),
    ("Kald drikke", "Iskaffe", 45),
    ("Kald drikke", "Islatte", 50),
    ("Kald drikke", "Eplejuice", 30),
    ("Mat og bakst", "Kanelbolle", 35),
    ("Mat og bakst", "Skolebolle", 35),
    ("Mat og bakst", "Croissant", 30),
    ("Mat og bakst", "Ostesmørbrød", 55),
];

/// Customization keys: name, label colour, multiple choice, values (name, price increment,
/// constant price), and the default value's position.
#[allow(clippy::type_complexity)]
const KEYS: &[(&str, &str, bool, &[(&str, i64, bool)], usize)] = &[
    (
        "Størrelse",
        "#8d6e63",
        false,
        &[("Liten", 0, true), ("Stor", 10, true)],
        0,
    ),
    (
        "Melk",
        "#42a5f5",
        false,
        &[
            ("Hel", 0, true),
            ("Havre", 5, true),
            ("Laktosefri", 0, true),
        ],
        0,
    ),
    (
        "Ekstra shot",
        "#6d4c41",
        false,
        &[("Ekstra shot", 10, true)],
        0,
    ),
    (
        "Sirup",
        "#ec407a",
        true,
        &[
            ("Vanilje", 5, true),
            ("Karamell", 5, true),
            ("Hasselnøtt", 5, true),
        ],
        0,
    ),
];

/// Fill an empty database with a realistic café menu, messages and an open status.
/// Does nothing (returns `false`) when the menu already has categories.
pub async fn load(writer: &Writer) -> Result<bool, StoreError> {
    writer.write(fill).await
}

fn fill(tx: &Transaction<'_>) -> Result<bool, StoreError> {
    let categories: i64 = tx.query_row("SELECT count(*) FROM category", [], |r| r.get(0))?;
    if categories > 0 {
        return Ok(false);
    }
    let mut key_ids = Vec::new();
    for (n, (name, color, multiple, values, default)) in KEYS.iter().enumerate() {
        tx.execute(
            "INSERT INTO customization_key (name, label_color, multiple_choice, sort_order) \
             VALUES (?1, ?2, ?3, ?4)",
            params![name, color, multiple, n as i64],
        )?;
        let key = tx.last_insert_rowid();
        key_ids.push((*name, key));
        let mut value_ids = Vec::new();
        for (m, (value, increment, constant)) in values.iter().enumerate() {
            tx.execute(
                "INSERT INTO customization_value \
                 (name, price_increment_nok, constant_price, belongs_to, sort_order) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![value, increment, constant, key, m as i64],
            )?;
            value_ids.push(tx.last_insert_rowid());
        }
        tx.execute(
            "UPDATE customization_key SET default_value = ?1 WHERE id = ?2",
            params![value_ids[*default].to_string(), key],
        )?;
    }
    for (n, (name, keys)) in CATEGORIES.iter().enumerate() {
        let valid: Vec<i64> = keys
            .iter()
            .filter_map(|k| {
                key_ids
                    .iter()
                    .find(|(name, _)| name == k)
                    .map(|(_, id)| *id)
            })
            .collect();
        tx.execute(
            "INSERT INTO category (name, sort_order, valid_customizations) VALUES (?1, ?2, ?3)",
            params![
                name,
                n as i64,
                serde_json::to_string(&valid).unwrap_or_default()
            ],
        )?;
    }
    for (n, (category, name, price)) in ITEMS.iter().enumerate() {
        tx.execute(
            "INSERT INTO item (name, price_nok, category_id, sort_order) \
             SELECT ?1, ?2, id, ?3 FROM category WHERE name = ?4",
            params![name, price, n as i64, category],
        )?;
    }
    tx.execute(
        "INSERT INTO message (title, subtitle) VALUES \
         ('Velkommen!', 'Bestill i kassen eller på mobilen'), \
         ('Stengt for i dag', 'Vi åpner igjen i morgen klokka 08')",
        [],
    )?;
    let welcome = "(SELECT id FROM message WHERE title = 'Velkommen!')";
    let opened = tx.execute(
        &format!(
            "UPDATE status SET open = 1, show_message = 0, message_id = {welcome} \
             WHERE id = (SELECT min(id) FROM status)"
        ),
        [],
    )?;
    if opened == 0 {
        tx.execute(
            &format!(
                "INSERT INTO status (open, show_message, message_id) VALUES (1, 0, {welcome})"
            ),
            [],
        )?;
    }
    Ok(true)
}

/// Why [`history`] wrote nothing.
#[derive(Debug)]
pub enum HistoryError {
    /// The database already has this many orders: history goes into a café without any.
    HasOrders(i64),
    /// There is no enabled item in a category to order.
    NoMenu,
    /// The database failed.
    Store(StoreError),
}

impl std::fmt::Display for HistoryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HistoryError::HasOrders(n) => write!(
                f,
                "the database already has {n} orders; history is written into a café without \
                 orders (use a new database file)"
            ),
            HistoryError::NoMenu => write!(
                f,
                "the database has no items to order: load a menu first (kaffediem demo)"
            ),
            HistoryError::Store(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for HistoryError {}

impl<E: Into<StoreError>> From<E> for HistoryError {
    fn from(e: E) -> Self {
        HistoryError::Store(e.into())
    }
}

/// What [`history`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct History {
    /// Orders inserted.
    pub orders: u64,
    /// Opening days they are spread over (weekdays before today).
    pub days: u32,
}

/// Orders a café takes on one opening day: a school café's 300–600.
const ORDERS_PER_DAY: std::ops::RangeInclusive<u32> = 300..=600;
/// Opening hours, local time, in minutes after midnight: 07:45–15:30.
const OPENING_MINUTES: std::ops::Range<u32> = 465..930;
/// Orders older than this many opening days were charged the prices before the last price
/// rise (a menu edit): the snapshots keep what was charged, not today's menu.
const PRICE_RISE_DAYS_AGO: u32 = 100;
/// How much cheaper everything was before that rise, in NOK.
const PRICE_RISE_NOK: i64 = 5;

/// One item as the history orders it: the menu row and what its category offers.
struct MenuItem {
    id: i64,
    name: String,
    price_nok: i64,
    category: String,
    /// The customization keys its category offers, as indexes into the keys list.
    keys: Vec<usize>,
}

/// One customization key with its values, as copied into order snapshots.
struct MenuKey {
    id: i64,
    name: String,
    label_color: String,
    multiple_choice: bool,
    /// (id, name, increment in NOK, constant price)
    values: Vec<(i64, String, i64, bool)>,
}

/// Fill the database with `orders` realistic past orders, as a café leaves them: spread over
/// the weekdays before `now`'s local day (300–600 a day, oldest first, within opening hours,
/// numbered 101, 102, … per day), one to four lines each with items and customizations from
/// the current menu (snapshots and totals priced as placement does), almost all `dispatched`,
/// a few `completed` that nobody fetched, some for registered customers. Deterministic for a
/// `seed`. Runs in the caller's transaction with prepared statements, so a million orders are
/// one commit (tests, the bench and `kaffediem demo --history` share it).
///
/// Needs a menu (load the demo café first); refuses a database that already has orders.
pub fn history(
    tx: &Transaction<'_>,
    orders: u64,
    now: jiff::Timestamp,
    tz: &jiff::tz::TimeZone,
    seed: u64,
) -> Result<History, HistoryError> {
    use rand::{Rng, SeedableRng};

    let existing: i64 = tx.query_row("SELECT count(*) FROM \"order\"", [], |r| r.get(0))?;
    if existing > 0 {
        return Err(HistoryError::HasOrders(existing));
    }
    let (items, keys) = read_menu(tx)?;
    if items.is_empty() {
        return Err(HistoryError::NoMenu);
    }
    let customers: Vec<i64> = tx
        .prepare("SELECT id FROM user ORDER BY id")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;

    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    // Orders per day, newest day first, until `orders` are placed.
    let mut per_day = Vec::new();
    let mut left = orders;
    while left > 0 {
        let today = u64::from(rng.random_range(ORDERS_PER_DAY)).min(left);
        per_day.push(today as u32);
        left -= today;
    }
    let today = now.to_zoned(tz.clone()).date();
    let mut days = Vec::with_capacity(per_day.len());
    let mut day = today;
    while days.len() < per_day.len() {
        day = day
            .yesterday()
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        if !matches!(
            day.weekday(),
            jiff::civil::Weekday::Saturday | jiff::civil::Weekday::Sunday
        ) {
            days.push(day);
        }
    }

    let mut insert = tx.prepare(
        "INSERT INTO \"order\" (uuid, customer_id, day_id, state, missing_information, items, \
         total_nok, inserted_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    let mut written = 0u64;
    // Oldest day first, so ids grow with time as in a café's file.
    for (ago, (date, count)) in days.iter().zip(&per_day).enumerate().rev() {
        let discount = if ago as u32 >= PRICE_RISE_DAYS_AGO {
            PRICE_RISE_NOK
        } else {
            0
        };
        let mut minutes: Vec<f64> = (0..*count)
            .map(|_| {
                rng.random_range(f64::from(OPENING_MINUTES.start)..f64::from(OPENING_MINUTES.end))
            })
            .collect();
        minutes.sort_by(f64::total_cmp);
        let midnight = date
            .to_zoned(tz.clone())
            .map_err(|e| StoreError::Unavailable(e.to_string()))?
            .timestamp();
        for (n, minute) in minutes.iter().enumerate() {
            let placed =
                midnight + jiff::SignedDuration::from_micros((minute * 60_000_000.0) as i64);
            let handled = placed + jiff::SignedDuration::from_secs(rng.random_range(60..900));
            let (lines, total) = order_lines(&mut rng, &items, &keys, discount);
            let state = if rng.random_bool(0.02) {
                "completed"
            } else {
                "dispatched"
            };
            let customer = if !customers.is_empty() && rng.random_bool(0.3) {
                Some(customers[rng.random_range(0..customers.len())])
            } else {
                None
            };
            let uuid = uuid::Builder::from_random_bytes(rng.random()).into_uuid();
            insert.execute(params![
                uuid.to_string(),
                customer,
                super::orders::FIRST_DAY_ID + n as i64,
                state,
                rng.random_bool(0.01),
                lines.to_string(),
                total,
                super::records::format_timestamp(placed),
                super::records::format_timestamp(handled),
            ])?;
            written += 1;
        }
    }
    Ok(History {
        orders: written,
        days: days.len() as u32,
    })
}

/// The menu as orders copy it: every enabled item with a category, and every key's values.
fn read_menu(tx: &Transaction<'_>) -> Result<(Vec<MenuItem>, Vec<MenuKey>), StoreError> {
    let mut keys: Vec<MenuKey> = tx
        .prepare(
            "SELECT id, name, coalesce(label_color, ''), multiple_choice FROM customization_key \
             WHERE enable ORDER BY sort_order, id",
        )?
        .query_map([], |r| {
            Ok(MenuKey {
                id: r.get(0)?,
                name: r.get(1)?,
                label_color: r.get(2)?,
                multiple_choice: r.get(3)?,
                values: Vec::new(),
            })
        })?
        .collect::<Result<_, _>>()?;
    let mut values = tx.prepare(
        "SELECT id, name, price_increment_nok, constant_price FROM customization_value \
         WHERE enable AND belongs_to = ?1 ORDER BY sort_order, id",
    )?;
    for key in &mut keys {
        key.values = values
            .query_map([key.id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })?
            .collect::<Result<_, _>>()?;
    }
    let items = tx
        .prepare(
            "SELECT item.id, item.name, item.price_nok, category.name, \
             category.valid_customizations FROM item JOIN category ON category.id = \
             item.category_id WHERE item.enable ORDER BY item.id",
        )?
        .query_map([], |r| {
            let valid: String = r.get(4)?;
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, valid))
        })?
        .collect::<Result<Vec<(i64, String, i64, String, String)>, _>>()?
        .into_iter()
        .map(|(id, name, price_nok, category, valid)| {
            // A JSON list of ids, numbers or numeric strings (the shell may write either).
            let valid: Vec<i64> = serde_json::from_str::<Vec<serde_json::Value>>(&valid)
                .unwrap_or_default()
                .iter()
                .filter_map(|v| v.as_i64().or_else(|| v.as_str()?.parse().ok()))
                .collect();
            MenuItem {
                id,
                name,
                price_nok,
                category,
                keys: keys
                    .iter()
                    .enumerate()
                    .filter(|(_, k)| valid.contains(&k.id) && !k.values.is_empty())
                    .map(|(n, _)| n)
                    .collect(),
            }
        })
        .collect();
    Ok((items, keys))
}

/// One order's lines (1 item most often, up to 4) and its total, priced as placement prices
/// them; `discount` NOK off every item's price (before the last price rise).
fn order_lines(
    rng: &mut impl rand::Rng,
    items: &[MenuItem],
    keys: &[MenuKey],
    discount: i64,
) -> (serde_json::Value, i64) {
    use serde_json::json;
    let count = match rng.random_range(0..100) {
        0..60 => 1,
        60..90 => 2,
        90..97 => 3,
        _ => 4,
    };
    let mut lines = Vec::with_capacity(count);
    let mut total = 0i64;
    for _ in 0..count {
        let item = &items[rng.random_range(0..items.len())];
        let price = (item.price_nok - discount).max(0);
        let mut customizations = Vec::new();
        let mut choices = Vec::new();
        for &k in &item.keys {
            let key = &keys[k];
            // A single-choice key is set about half the time (else its default applies); a
            // multiple-choice one (syrups) has nothing, one, or now and then two values.
            let picks = match (key.multiple_choice, rng.random_range(0..100)) {
                (false, 0..50) => 1,
                (true, 0..25) => 1,
                (true, 25..30) => 2,
                _ => 0,
            };
            let mut taken: Vec<usize> = Vec::new();
            for _ in 0..picks.min(key.values.len()) {
                let v = rng.random_range(0..key.values.len());
                if taken.contains(&v) {
                    continue;
                }
                taken.push(v);
                let (value_id, value_name, increment, constant) = &key.values[v];
                choices.push(super::orders::Choice {
                    increment_nok: *increment,
                    constant_price: *constant,
                });
                customizations.push(json!({
                    "key_id": key.id,
                    "key_name": key.name,
                    "value_id": value_id,
                    "value_name": value_name,
                    "price_change": increment,
                    "constant_price": constant,
                    "label_color": key.label_color,
                }));
            }
        }
        let line_total = super::orders::item_total(price, &choices).unwrap_or(price);
        total += line_total;
        lines.push(json!({
            "item_id": item.id,
            "name": item.name,
            "price": price,
            "category": item.category,
            "customizations": customizations,
            "total": line_total,
        }));
    }
    (serde_json::Value::Array(lines), total)
}
