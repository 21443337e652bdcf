//! Kaffediem's topics: `collection:{name}` and `notifications:{scope}`. Routes joins, answers
//! with snapshots, keeps the subscriber registry with per-subscriber order filters, and turns
//! each [`crate::store::ChangeSet`] into broadcasts encoded once and queued to every matching
//! subscriber.
