//! The menu tree and its indexes (SPEC 3.2), built from the four menu tables.
//!
//! Linear in the number of rows: each table is read once (already in snapshot order) and
//! grouped with maps; nothing is looked up per item with a query.
//!
//! Two builders with one shape: [`build`] makes a `serde_json::Value` (join snapshots, the
//! HTTP API), [`build_published`] makes the JSON text the fan-out broadcasts after every menu
//! commit. The text is written directly: every row is serialized once, and each category's
//! `customizations` array once, then spliced into each of its items — a 600 KB menu repeats
//! those arrays 200 times, and building them as a `Value` tree only to serialize it again
//! cost several milliseconds per commit (see `BENCHMARKS.md`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Deref;
use std::sync::{Arc, OnceLock};

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

/// The menu as published after a commit: its JSON text (`{"tree", "indexes"}`), built once.
/// Dereferences to the parsed tree for code that wants to look inside (parsed on first use;
/// the fan-out never does).
pub struct Menu {
    json: Arc<str>,
    parsed: OnceLock<Value>,
}

impl Menu {
    pub fn from_json(json: Arc<str>) -> Menu {
        Menu {
            json,
            parsed: OnceLock::new(),
        }
    }

    /// The JSON text, shared (cloning the `Arc` copies nothing).
    pub fn json(&self) -> &Arc<str> {
        &self.json
    }
}

impl Deref for Menu {
    type Target = Value;

    fn deref(&self) -> &Value {
        // The text is our own serializer's output, so it always parses.
        self.parsed
            .get_or_init(|| serde_json::from_str(&self.json).unwrap_or(Value::Null))
    }
}

impl std::fmt::Debug for Menu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Menu({} bytes of JSON)", self.json.len())
    }
}

/// Compared as the trees they hold, so tests can compare a published menu with [`build`].
impl PartialEq<Menu> for Value {
    fn eq(&self, menu: &Menu) -> bool {
        *self == **menu
    }
}

impl PartialEq<Value> for Menu {
    fn eq(&self, tree: &Value) -> bool {
        **self == *tree
    }
}

impl serde::Serialize for Menu {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (**self).serialize(serializer)
    }
}

/// Build the published menu (its JSON text) from the current menu tables.
pub fn build_published(conn: &Connection, ctx: &RecordCtx) -> Result<Menu, StoreError> {
    let categories = records::list(conn, Collection::Category, ctx)?;
    let items = records::list(conn, Collection::Item, ctx)?;
    let keys = records::list(conn, Collection::CustomizationKey, ctx)?;
    let values = records::list(conn, Collection::CustomizationValue, ctx)?;
    Ok(Menu::from_json(
        encode(&categories, &items, &keys, &values).into(),
    ))
}

/// The JSON text of the menu: the same object [`assemble`] builds, written directly.
pub fn encode(categories: &[Value], items: &[Value], keys: &[Value], values: &[Value]) -> String {
    let parts = Parts::new(categories, items, keys, values);
    // Measure first, then write into one allocation of the exact size: growing a string
    // of several hundred KB by doubling costs copies and fresh pages each time.
    let mut size = Count(0);
    parts.write(&mut size);
    let mut out = String::with_capacity(size.0);
    parts.write(&mut out);
    out
}

/// Everything the text is made of, each piece serialized once.
struct Parts {
    category_text: Vec<String>,
    item_text: Vec<String>,
    key_text: Vec<String>,
    value_text: Vec<String>,
    /// Per category: the positions of its items, and its `customizations` array as text.
    tree: Vec<(Vec<usize>, String)>,
    /// `items_by_category` and `customizations_by_key`: (parent id, child positions).
    items_by_category: Vec<(i64, Vec<usize>)>,
    customizations_by_key: Vec<(i64, Vec<usize>)>,
}

impl Parts {
    fn new(categories: &[Value], items: &[Value], keys: &[Value], values: &[Value]) -> Parts {
        let text = |rows: &[Value]| -> Vec<String> {
            rows.iter()
                .map(|r| serde_json::to_string(r).unwrap_or_else(|_| "null".into()))
                .collect()
        };
        let (key_text, value_text) = (text(keys), text(values));
        let mut values_by_key = group_indexes(values, "belongs_to");
        let mut items_by_category = group_indexes(items, "category_id");
        let tree = categories
            .iter()
            .map(|category| {
                let valid: HashSet<i64> = category["valid_customizations"]
                    .as_array()
                    .map(|ids| ids.iter().filter_map(Value::as_i64).collect())
                    .unwrap_or_default();
                let mut customizations = String::from("[");
                // Keys are already sorted by sort_order, name: filtering keeps that order.
                let offered = keys
                    .iter()
                    .enumerate()
                    .filter(|(_, k)| valid.contains(&id_of(k)));
                for (n, (ki, key)) in offered.enumerate() {
                    separate(&mut customizations, n);
                    customizations.put("{\"key\":");
                    customizations.put(&key_text[ki]);
                    customizations.put(",\"values\":");
                    let members = values_by_key
                        .get(&id_of(key))
                        .map_or(&[][..], Vec::as_slice);
                    array(
                        &mut customizations,
                        members.iter().map(|&vi| &value_text[vi]),
                    );
                    customizations.put("}");
                }
                customizations.put("]");
                let members = items_by_category
                    .get(&id_of(category))
                    .cloned()
                    .unwrap_or_default();
                (members, customizations)
            })
            .collect();
        Parts {
            category_text: text(categories),
            item_text: text(items),
            key_text,
            value_text,
            tree,
            items_by_category: index_entries(categories, &mut items_by_category),
            customizations_by_key: index_entries(keys, &mut values_by_key),
        }
    }

    fn write(&self, out: &mut impl Sink) {
        out.put("{\"tree\":[");
        for (ci, (members, customizations)) in self.tree.iter().enumerate() {
            separate(out, ci);
            open_object(out, &self.category_text[ci]);
            out.put("\"items\":[");
            for (n, &ii) in members.iter().enumerate() {
                separate(out, n);
                open_object(out, &self.item_text[ii]);
                out.put("\"customizations\":");
                // This category's customizations, serialized once, copied into each item.
                out.put(customizations);
                out.put("}");
            }
            out.put("]}");
        }
        out.put("],\"indexes\":{\"categories\":");
        array(out, self.category_text.iter());
        out.put(",\"items\":");
        array(out, self.item_text.iter());
        out.put(",\"customization_keys\":");
        array(out, self.key_text.iter());
        out.put(",\"customization_values\":");
        array(out, self.value_text.iter());
        out.put(",\"items_by_category\":");
        index_text(out, &self.items_by_category, &self.item_text);
        out.put(",\"customizations_by_key\":");
        index_text(out, &self.customizations_by_key, &self.value_text);
        out.put("}}");
    }
}

/// Where the text goes: a string, or a counter of its length.
trait Sink {
    fn put(&mut self, s: &str);
}

impl Sink for String {
    fn put(&mut self, s: &str) {
        self.push_str(s);
    }
}

struct Count(usize);

impl Sink for Count {
    fn put(&mut self, s: &str) {
        self.0 += s.len();
    }
}

fn separate(out: &mut impl Sink, n: usize) {
    if n > 0 {
        out.put(",");
    }
}

/// Write `object` (a serialized JSON object) without its closing brace, ready for one more
/// member.
fn open_object(out: &mut impl Sink, object: &str) {
    match object.strip_suffix('}') {
        Some(open) if open.len() > 1 => {
            out.put(open);
            out.put(",");
        }
        _ => out.put("{"),
    }
}

fn array<'a>(out: &mut impl Sink, members: impl Iterator<Item = &'a String>) {
    out.put("[");
    for (n, m) in members.enumerate() {
        separate(out, n);
        out.put(m);
    }
    out.put("]");
}

/// Positions of `rows` grouped by the integer field `field`, preserving order.
fn group_indexes(rows: &[Value], field: &str) -> HashMap<i64, Vec<usize>> {
    let mut groups: HashMap<i64, Vec<usize>> = HashMap::new();
    for (i, row) in rows.iter().enumerate() {
        if let Some(parent) = row[field].as_i64() {
            groups.entry(parent).or_default().push(i);
        }
    }
    groups
}

/// The entries of an index object as [`index_object`] builds them: every parent in order
/// (once), then the groups whose parent is missing, by id.
fn index_entries(
    parents: &[Value],
    groups: &mut HashMap<i64, Vec<usize>>,
) -> Vec<(i64, Vec<usize>)> {
    let mut seen = HashSet::new();
    let mut entries: Vec<(i64, Vec<usize>)> = parents
        .iter()
        .map(id_of)
        .filter(|id| seen.insert(*id))
        .map(|id| (id, groups.remove(&id).unwrap_or_default()))
        .collect();
    let orphans: BTreeMap<i64, Vec<usize>> = groups.drain().collect();
    entries.extend(orphans);
    entries
}

fn index_text(out: &mut impl Sink, entries: &[(i64, Vec<usize>)], text: &[String]) {
    out.put("{");
    for (n, (id, members)) in entries.iter().enumerate() {
        separate(out, n);
        out.put("\"");
        out.put(&id.to_string());
        out.put("\":");
        array(out, members.iter().map(|&i| &text[i]));
    }
    out.put("}");
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

    #[test]
    fn published_text_is_the_same_menu_as_the_tree() {
        for per_category in [0, 1, 4] {
            let (c, i, k, v) = big_menu(per_category);
            let text = encode(&c, &i, &k, &v);
            let parsed: Value = serde_json::from_str(&text).expect("valid JSON");
            assert_eq!(
                parsed,
                assemble(c, i, k, v),
                "{per_category} keys per category"
            );
        }
    }

    #[test]
    fn published_text_keeps_orphans_and_empty_groups() {
        let (mut c, mut i, k, mut v) = big_menu(2);
        c.truncate(3);
        i.push(json!({"id": 999, "name": "Foreldreløs", "category_id": 77}));
        v.push(json!({"id": 998, "name": "Uten nøkkel", "belongs_to": 55}));
        let text = encode(&c, &i, &k, &v);
        let parsed: Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(parsed["indexes"]["items_by_category"]["77"][0]["id"], 999);
        assert_eq!(parsed, assemble(c, i, k, v));
    }

    /// `cargo test --release --lib menu_build_timing -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn menu_build_timing() {
        for per_category in [1, 2, 4] {
            let (c, i, k, v) = big_menu(per_category);
            let rounds = 500;
            let (mut build, mut encode, mut bytes) = (Duration::ZERO, Duration::ZERO, 0);
            let mut published = Duration::ZERO;
            for _ in 0..rounds {
                let start = Instant::now();
                let text = super::encode(&c, &i, &k, &v);
                published += start.elapsed();
                assert!(text.len() > 1000);
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
                 build {:?} + encode {:?} ({bytes} bytes); as text directly: {:?}",
                build / rounds,
                encode / rounds,
                published / rounds
            );
        }
    }
}
