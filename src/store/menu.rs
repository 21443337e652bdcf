//! The menu tree and its indexes (SPEC 3.2), built from the four menu tables.
//!
//! Linear in the number of rows: each table is read once (already in snapshot order) and
//! grouped with maps; nothing is looked up per item with a query.

use std::collections::{BTreeMap, HashMap, HashSet};

use rusqlite::Connection;
use serde_json::{Map, Value};

use super::records::{self, into_object, Collection};
use super::{RecordCtx, StoreError};

/// Build `{"tree": [...], "indexes": {...}}` from the current menu tables.
pub fn build(conn: &Connection, ctx: &RecordCtx) -> Result<Value, StoreError> {
    let categories = records::list(conn, Collection::Category, ctx)?;
    let items = records::list(conn, Collection::Item, ctx)?;
    let keys = records::list(conn, Collection::CustomizationKey, ctx)?;
    let values = records::list(conn, Collection::CustomizationValue, ctx)?;
    Ok(assemble(categories, items, keys, values))
}

/// Put the four sorted lists together. Separate from [`build`] so the shape can be tested and
/// timed without a database.
pub fn assemble(
    categories: Vec<Value>,
    items: Vec<Value>,
    keys: Vec<Value>,
    values: Vec<Value>,
) -> Value {
    // Values are moved, never passed to `json!` (which would serialize them over again):
    // building is dominated by copying records, so each is copied only where it appears.
    let mut values_by_key = group_by(&values, "belongs_to");
    let mut items_by_category = group_by(&items, "category_id");
    let empty = Vec::new();

    let tree: Vec<Value> = categories
        .iter()
        .map(|category| {
            let valid: HashSet<i64> = category["valid_customizations"]
                .as_array()
                .map(|ids| ids.iter().filter_map(Value::as_i64).collect())
                .unwrap_or_default();
            // Keys are already sorted by sort_order, name: filtering keeps that order.
            let customizations: Vec<Value> = keys
                .iter()
                .filter(|k| valid.contains(&id_of(k)))
                .map(|k| {
                    let vals = values_by_key.get(&id_of(k)).unwrap_or(&empty);
                    let mut pair = Map::new();
                    pair.insert("key".into(), k.clone());
                    pair.insert("values".into(), Value::Array(vals.clone()));
                    Value::Object(pair)
                })
                .collect();
            let children: Vec<Value> = items_by_category
                .get(&id_of(category))
                .unwrap_or(&empty)
                .iter()
                .map(|item| {
                    let mut item = into_object(item.clone());
                    item.insert(
                        "customizations".into(),
                        Value::Array(customizations.clone()),
                    );
                    Value::Object(item)
                })
                .collect();
            let mut category = into_object(category.clone());
            category.insert("items".into(), Value::Array(children));
            Value::Object(category)
        })
        .collect();

    let by_category = index_object(&categories, &mut items_by_category);
    let by_key = index_object(&keys, &mut values_by_key);

    let mut indexes = Map::new();
    indexes.insert("categories".into(), Value::Array(categories));
    indexes.insert("items".into(), Value::Array(items));
    indexes.insert("customization_keys".into(), Value::Array(keys));
    indexes.insert("customization_values".into(), Value::Array(values));
    indexes.insert("items_by_category".into(), Value::Object(by_category));
    indexes.insert("customizations_by_key".into(), Value::Object(by_key));
    let mut menu = Map::new();
    menu.insert("tree".into(), Value::Array(tree));
    menu.insert("indexes".into(), Value::Object(indexes));
    Value::Object(menu)
}

fn id_of(v: &Value) -> i64 {
    v["id"].as_i64().unwrap_or_default()
}

/// Group `rows` by the integer field `field`, preserving order.
fn group_by(rows: &[Value], field: &str) -> HashMap<i64, Vec<Value>> {
    let mut groups: HashMap<i64, Vec<Value>> = HashMap::new();
    for row in rows {
        if let Some(parent) = row[field].as_i64() {
            groups.entry(parent).or_default().push(row.clone());
        }
    }
    groups
}

/// `{"<parent id>": [children...]}` for every parent, in parent order, then the groups whose
/// parent is missing (possible only through the shell), so that no row drops out of the index.
fn index_object(parents: &[Value], groups: &mut HashMap<i64, Vec<Value>>) -> Map<String, Value> {
    let mut index: Map<String, Value> = parents
        .iter()
        .map(|p| {
            let id = id_of(p);
            let children = groups.remove(&id).unwrap_or_default();
            (id.to_string(), Value::Array(children))
        })
        .collect();
    let orphans: BTreeMap<i64, Vec<Value>> = groups.drain().collect();
    for (id, rows) in orphans {
        index.insert(id.to_string(), Value::Array(rows));
    }
    index
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::{Duration, Instant};

    /// A menu of the size SPEC 11 names: 20 categories × 10 items, 20 keys × 4 values, each
    /// category offering `per_category` keys.
    #[allow(clippy::type_complexity)]
    fn big_menu(per_category: i64) -> (Vec<Value>, Vec<Value>, Vec<Value>, Vec<Value>) {
        let ts = "2026-03-01T09:15:02.123456Z";
        let categories = (1..=20)
            .map(|c| {
                let valid: Vec<i64> = (0..per_category).map(|k| (c + k * 5) % 20 + 1).collect();
                json!({"id": c, "name": format!("Kategori {c}"), "sort_order": c, "enable": true,
                       "valid_customizations": valid, "inserted_at": ts, "updated_at": ts})
            })
            .collect();
        let items = (1..=200)
            .map(|i| {
                json!({"id": i, "name": format!("Vare {i}"), "price_nok": 40 + i % 20,
                       "category_id": (i - 1) / 10 + 1, "category_name": "Kategori",
                       "image": null, "enable": true, "sort_order": i,
                       "inserted_at": ts, "updated_at": ts})
            })
            .collect();
        let keys = (1..=20)
            .map(|k| {
                json!({"id": k, "name": format!("Valg {k}"), "enable": true,
                       "label_color": "#aabbcc", "default_value": null, "multiple_choice": false,
                       "sort_order": k, "inserted_at": ts, "updated_at": ts})
            })
            .collect();
        let values = (1..=80)
            .map(|v| {
                json!({"id": v, "name": format!("Verdi {v}"), "price_increment_nok": 5,
                       "constant_price": true, "belongs_to": (v - 1) / 4 + 1, "enable": true,
                       "sort_order": v, "inserted_at": ts, "updated_at": ts})
            })
            .collect();
        (categories, items, keys, values)
    }

    #[test]
    fn every_category_offers_its_valid_keys_in_key_order() {
        let (c, i, k, v) = big_menu(4);
        let menu = assemble(c, i, k, v);
        let first = &menu["tree"][0];
        let keys: Vec<i64> = first["items"][0]["customizations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["key"]["id"].as_i64().unwrap())
            .collect();
        assert_eq!(keys, vec![2, 7, 12, 17]);
        assert_eq!(first["items"].as_array().unwrap().len(), 10);
        assert_eq!(
            menu["indexes"]["customizations_by_key"]["3"]
                .as_array()
                .unwrap()
                .len(),
            4
        );
    }

    /// `cargo test --release --lib menu_build_timing -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn menu_build_timing() {
        for per_category in [1, 2, 4] {
            let (c, i, k, v) = big_menu(per_category);
            let rounds = 500;
            let (mut build, mut encode, mut bytes) = (Duration::ZERO, Duration::ZERO, 0);
            for _ in 0..rounds {
                let (c, i, k, v) = (c.clone(), i.clone(), k.clone(), v.clone());
                let start = Instant::now();
                let menu = assemble(c, i, k, v);
                build += start.elapsed();
                let start = Instant::now();
                bytes = serde_json::to_vec(&menu).unwrap().len();
                encode += start.elapsed();
            }
            println!(
                "menu of 200 items / 20 keys / 80 values, {per_category} keys per category: \
                 build {:?} + encode {:?} ({bytes} bytes)",
                build / rounds,
                encode / rounds
            );
        }
    }
}
