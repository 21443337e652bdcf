//! The menu tree and its indexes (SPEC 3.2), built from the four menu tables.
//!
//! Linear in the number of rows: each table is read once (already in snapshot order) and
//! grouped with maps; nothing is looked up per item with a query.

use std::collections::{BTreeMap, HashMap, HashSet};

use rusqlite::Connection;
use serde_json::{json, Map, Value};

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
    // Group values by key and items by category, keeping the sorted order within each group.
    let values_by_key = group_by(&values, "belongs_to");
    let items_by_category = group_by(&items, "category_id");
    let empty = Vec::new();

    let tree: Vec<Value> = categories
        .iter()
        .map(|category| {
            let cat_id = id_of(category);
            let valid: HashSet<i64> = category["valid_customizations"]
                .as_array()
                .map(|ids| ids.iter().filter_map(Value::as_i64).collect())
                .unwrap_or_default();
            // Keys are already sorted by sort_order, name: filtering keeps that order.
            let customizations = Value::Array(
                keys.iter()
                    .filter(|k| valid.contains(&id_of(k)))
                    .map(|k| {
                        let vals = values_by_key.get(&id_of(k)).unwrap_or(&empty);
                        json!({"key": k, "values": vals})
                    })
                    .collect(),
            );
            let children: Vec<Value> = items_by_category
                .get(&cat_id)
                .unwrap_or(&empty)
                .iter()
                .map(|item| {
                    let mut item = into_object(item.clone());
                    item.insert("customizations".into(), customizations.clone());
                    Value::Object(item)
                })
                .collect();
            let mut category = into_object(category.clone());
            category.insert("items".into(), Value::Array(children));
            Value::Object(category)
        })
        .collect();

    let mut by_category = index_object(&categories, &items_by_category);
    let mut by_key = index_object(&keys, &values_by_key);
    // Rows whose parent is missing (possible only through the shell) still appear in the index.
    add_orphans(&mut by_category, &items_by_category);
    add_orphans(&mut by_key, &values_by_key);

    json!({
        "tree": tree,
        "indexes": {
            "categories": categories,
            "items": items,
            "customization_keys": keys,
            "customization_values": values,
            "items_by_category": by_category,
            "customizations_by_key": by_key,
        }
    })
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

/// `{"<parent id>": [children...]}` for every parent, in parent order.
fn index_object(parents: &[Value], groups: &HashMap<i64, Vec<Value>>) -> Map<String, Value> {
    parents
        .iter()
        .map(|p| {
            let id = id_of(p);
            let children = groups.get(&id).cloned().unwrap_or_default();
            (id.to_string(), Value::Array(children))
        })
        .collect()
}

fn add_orphans(index: &mut Map<String, Value>, groups: &HashMap<i64, Vec<Value>>) {
    let orphans: BTreeMap<i64, &Vec<Value>> = groups
        .iter()
        .filter(|(id, _)| !index.contains_key(&id.to_string()))
        .map(|(id, rows)| (*id, rows))
        .collect();
    for (id, rows) in orphans {
        index.insert(id.to_string(), Value::Array(rows.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A menu of the size SPEC 11 names: 20 categories × 10 items, 20 keys × 4 values, each
    /// category offering 4 keys.
    fn big_menu() -> (Vec<Value>, Vec<Value>, Vec<Value>, Vec<Value>) {
        let ts = "2026-03-01T09:15:02.123456Z";
        let categories = (1..=20)
            .map(|c| {
                let valid: Vec<i64> = (0..4).map(|k| (c + k * 5) % 20 + 1).collect();
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
        let (c, i, k, v) = big_menu();
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
        let (c, i, k, v) = big_menu();
        let rounds = 1000;
        let start = std::time::Instant::now();
        let mut bytes = 0;
        for _ in 0..rounds {
            let menu = assemble(c.clone(), i.clone(), k.clone(), v.clone());
            bytes = serde_json::to_vec(&menu).unwrap().len();
        }
        let per = start.elapsed() / rounds;
        println!("menu of 200 items / 20 keys / 80 values: build + encode {per:?} ({bytes} bytes)");
    }
}
