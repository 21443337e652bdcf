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
