//! Kaffediem's topics: `collection:{name}` and `notifications:{scope}` (SPEC 3). Routes joins,
//! answers them with snapshots, keeps the subscriber registry with per-subscriber order
//! filters, and (in [`fanout`]) turns each [`crate::store::ChangeSet`] into broadcasts encoded
//! once and queued to every matching subscriber.
//!
//! Architecture invariant: channels never write. Clients change data over HTTP; what they
//! see here comes from the change feed, in commit order.

pub mod fanout;
pub mod filter;
pub mod log;
pub mod privacy;
pub mod query;
pub mod registry;

use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use jiff::tz::TimeZone;
use serde_json::{json, Value};

use crate::clock::Clock;
use crate::phoenix::per_address::client_key;
use crate::phoenix::{
    BoxFuture, Channel, ConnectInfo, JoinResult, Outbox, Payload, Refused, Reply, SocketHandler,
};
use crate::store::records::{Listed, Window};
use crate::store::{self, Collection, OrderQuery, RecordCtx, Stop, Store, StoreError};

use filter::local_date;
use log::{ChangeLog, Resume};
use privacy::Reader;
use query::OrderOptions;
use registry::{Registry, Subscription, TopicKey};

/// Who is on the other end of a socket.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Viewer {
    pub user_id: Option<i64>,
    pub admin: bool,
    /// What vouched for the socket, so that revoking it closes the socket
    /// ([`SocketHandler::id`]).
    pub credential: Credential,
    /// The client's address key (IPv4, or IPv6 /64), set at connect: its snapshots take
    /// turns with its HTTP lists on the bulk lane ([`store::readers::Turns`]).
    pub client: Option<IpAddr>,
}

/// What a socket authenticated with. Revoking it closes every socket that used it: the client
/// reconnects, and its connect is judged afresh.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Credential {
    /// Nothing: an anonymous socket.
    #[default]
    None,
    /// A login session (its cookie, or a socket token issued for it): `session:<id>`.
    Session(i64),
    /// The interim `access.admin_token`: `admin_token`.
    AdminToken,
}

impl Viewer {
    /// Who this viewer is to an order's `customer_id` (SPEC 6).
    pub fn reader(&self) -> Reader {
        Reader::of(self.user_id, self.admin)
    }
}

impl Credential {
    /// The socket id of sockets authenticated this way.
    pub fn socket_id(self) -> Option<String> {
        match self {
            Credential::None => None,
            Credential::Session(id) => Some(format!("session:{id}")),
            Credential::AdminToken => Some(ADMIN_TOKEN_SOCKETS.to_owned()),
        }
    }

    /// The credential a socket id ([`Credential::socket_id`]) names.
    pub fn from_socket_id(id: &str) -> Credential {
        match id.strip_prefix("session:").map(str::parse) {
            Some(Ok(session)) => Credential::Session(session),
            _ if id == ADMIN_TOKEN_SOCKETS => Credential::AdminToken,
            _ => Credential::None,
        }
    }
}

/// The socket id shared by every socket that authenticated with `access.admin_token`.
pub const ADMIN_TOKEN_SOCKETS: &str = "admin_token";

/// Settings the channels read on every join; replaced on config reload.
#[derive(Debug, Clone)]
pub struct Access {
    /// Anonymous sockets may join `collection:*`.
    pub public_read: bool,
    /// Days of orders an order join without `from_date` gets (`limits.order_snapshot_days`):
    /// a year of history is no screen's business and would cost every join seconds.
    pub order_snapshot_days: u32,
    /// Records in one snapshot at most, the newest kept (`limits.snapshot_max_records`).
    pub snapshot_max_records: usize,
}

/// What an [`Authenticate`] answers with: it may read the database, so it is awaited (off
/// the async threads), never run inside the upgrade on a runtime worker.
pub type AuthFuture<'a, T> = futures_util::future::BoxFuture<'a, T>;

/// Decides who a connecting socket is. The HTTP layer provides the real one (sessions, socket
/// tokens, `access.admin_token`); without it, every socket is anonymous.
pub trait Authenticate: Send + Sync + 'static {
    /// `Ok(None)`: no credentials given, an anonymous viewer. `Err`: credentials given but
    /// invalid or expired → the upgrade is refused with 403.
    fn viewer<'a>(
        &'a self,
        info: &'a ConnectInfo,
    ) -> AuthFuture<'a, Result<Option<Viewer>, Refused>>;

    /// Who a socket's credential vouches for now, at a join: the session may have ended or
    /// the user's rights changed since the connect. `None`: it has ended (the socket joins
    /// as anonymous, and is closed). Default: what it vouched for at the connect.
    fn recheck<'a>(&'a self, viewer: &'a Viewer) -> AuthFuture<'a, Option<Viewer>> {
        Box::pin(std::future::ready(Some(viewer.clone())))
    }
}

/// The socket handler of the café. Cheap to clone: a join on a session socket takes a copy
/// into its future, to route the join once the session has been read again.
#[derive(Clone)]
pub struct Cafe {
    store: Store,
    registry: Arc<Registry>,
    access: Arc<RwLock<Access>>,
    auth: Option<Arc<dyn Authenticate>>,
    clock: Arc<dyn Clock>,
    tz: TimeZone,
    records: RecordCtx,
    /// The database's epoch (`store::epoch`): every collection join reply carries it beside
    /// `seq`, and a `since` from another epoch gets the full snapshot.
    epoch: Arc<str>,
}

impl Cafe {
    pub fn new(
        store: Store,
        registry: Arc<Registry>,
        access: Access,
        clock: Arc<dyn Clock>,
        tz: TimeZone,
        records: RecordCtx,
    ) -> Self {
        Cafe {
            store,
            registry,
            access: Arc::new(RwLock::new(access)),
            auth: None,
            clock,
            tz,
            records,
            epoch: Arc::from(""),
        }
    }

    /// Carry `epoch` in join replies (the daemon's database epoch, decided at start).
    pub fn with_epoch(mut self, epoch: &str) -> Self {
        self.epoch = Arc::from(epoch);
        self
    }

    /// Use `auth` to identify sockets (sessions, socket tokens).
    pub fn with_auth(mut self, auth: Arc<dyn Authenticate>) -> Self {
        self.auth = Some(auth);
        self
    }

    pub fn set_access(&self, access: Access) {
        *self.access.write().unwrap_or_else(|e| e.into_inner()) = access;
    }

    /// Who a connecting socket is: a session or socket token, the admin token, or nobody.
    async fn viewer(&self, info: &ConnectInfo) -> Result<Viewer, Refused> {
        match &self.auth {
            Some(auth) => Ok(auth.viewer(info).await?.unwrap_or_default()),
            None => Ok(Viewer::default()),
        }
    }

    fn access(&self) -> Access {
        self.access
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn join_collection(
        &self,
        viewer: &Viewer,
        name: &str,
        payload: &Value,
        outbox: Outbox,
    ) -> BoxFuture<JoinResult> {
        let access = self.access();
        if !access.public_read && viewer.user_id.is_none() && !viewer.admin {
            return refuse("unauthorized");
        }
        let store = self.store.clone();
        let ctx = self.records.clone();
        let client = viewer.client;
        let since = match resume_point(payload) {
            Ok(since) => since,
            Err(errors) => return invalid_options(errors),
        };
        // A `seq` from another database history means nothing here: full snapshot.
        let since = since.filter(|_| same_epoch(payload, &self.epoch));
        // The snapshot is for this join only: once its socket has gone (or the join ended),
        // it is skipped in the lane's queue, or stopped between chunks of rows.
        let stop = {
            let outbox = outbox.clone();
            Stop::when(move || outbox.is_closed())
        };
        let window = Window::Newest(access.snapshot_max_records);
        if name == "menu" {
            let (sub, resumed) =
                self.subscribe_resuming(TopicKey::Menu, outbox, Reader::Public, since, |log, s| {
                    log.resume(s, Resume::Menu)
                });
            return Box::pin(async move {
                if let Some(resumed) = resumed {
                    return resumed_join(resumed, sub);
                }
                let _turn = bulk_turn(&store, client).await;
                let read = store
                    .snapshot_until(stop, move |conn, _| {
                        store::menu::build(conn, &ctx).map(|menu| Encoded {
                            items: menu.to_string(),
                            truncated: false,
                        })
                    })
                    .await;
                joined(read, sub)
            });
        }
        let Some(collection) = Collection::from_name(name) else {
            return refuse("unknown collection");
        };
        if collection != Collection::Order {
            let key = TopicKey::Collection(collection);
            let (sub, resumed) =
                self.subscribe_resuming(key, outbox, Reader::Public, since, |log, s| {
                    log.resume(s, Resume::Collection(collection))
                });
            return Box::pin(async move {
                if let Some(resumed) = resumed {
                    return resumed_join(resumed, sub);
                }
                let _turn = bulk_turn(&store, client).await;
                let read = store
                    .snapshot_until(stop, move |conn, stop| {
                        let query = OrderQuery::default();
                        store::records::list_bounded(conn, collection, &query, window, &ctx, stop)
                            .map(Encoded::from)
                    })
                    .await;
                joined(read, sub)
            });
        }
        let filter = match OrderOptions::from_join_payload(payload) {
            Ok(filter) => filter,
            Err(errors) => return invalid_options(Value::Object(errors)),
        };
        // Whose orders a customer filter shows is private: only one's own (admins: any).
        let reader = viewer.reader();
        if filter.customer_id.is_some_and(|c| !reader.may_filter_by(c)) {
            return refuse("unauthorized");
        }
        let today = local_date(self.clock.now(), &self.tz);
        let options = OrderOptions::from(filter).bounded(today, Some(access.order_snapshot_days));
        let (filter, query) = (options.filter, options.query(today, &self.tz));
        let from = query.since;
        let key = TopicKey::Orders(filter);
        let (sub, resumed) = self.subscribe_resuming(key, outbox, reader, since, |log, s| {
            let mut changes = log.resume(
                s,
                Resume::Orders {
                    filter: &filter,
                    since: from,
                },
            )?;
            for change in &mut changes {
                privacy::redact_change(change, reader);
            }
            Some(changes)
        });
        Box::pin(async move {
            if let Some(resumed) = resumed {
                return resumed_join(resumed, sub);
            }
            let _turn = bulk_turn(&store, client).await;
            let read = store
                .snapshot_until(stop, move |conn, stop| {
                    let mut listed = store::records::list_bounded(
                        conn,
                        Collection::Order,
                        &query,
                        window,
                        &ctx,
                        stop,
                    )?;
                    for record in &mut listed.records {
                        privacy::redact_order(record, reader);
                    }
                    Ok::<_, StoreError>(Encoded::from(listed))
                })
                .await;
            joined(read, sub)
        })
    }

    /// Subscribe; with a resume point, read the changes after it from the log at the very
    /// point the subscription starts. `None`: the log cannot answer, send a snapshot.
    fn subscribe_resuming(
        &self,
        key: TopicKey,
        outbox: Outbox,
        reader: Reader,
        since: Option<u64>,
        resume: impl FnOnce(&ChangeLog, u64) -> Option<Vec<Value>>,
    ) -> (Subscription, Option<(u64, Vec<Value>)>) {
        self.registry.subscribe_with(key, outbox, reader, |topics| {
            let since = since?;
            resume(&topics.log, since).map(|changes| (topics.log.last_seq, changes))
        })
    }

    fn join_notifications(
        &self,
        viewer: &Viewer,
        scope: &str,
        outbox: Outbox,
    ) -> BoxFuture<JoinResult> {
        let key = if scope == "admin" {
            if !viewer.admin {
                return refuse("unauthorized");
            }
            TopicKey::Admin
        } else if let Some(id) = scope.strip_prefix("user:") {
            let Ok(id) = id.parse::<i64>() else {
                return refuse("unknown scope");
            };
            if !(viewer.admin || viewer.user_id == Some(id)) {
                return refuse("unauthorized");
            }
            TopicKey::User(id)
        } else {
            return refuse("unknown scope");
        };
        let sub = self.registry.subscribe(key, outbox);
        Box::pin(async move {
            JoinResult::Ok {
                response: Payload::Json(json!({})),
                seq: 0,
                channel: Box::new(Joined { _sub: sub }),
            }
        })
    }
}

impl SocketHandler for Cafe {
    type Session = Viewer;

    async fn connect(&self, info: &ConnectInfo) -> Result<Viewer, Refused> {
        let viewer = self.viewer(info).await?;
        Ok(Viewer {
            client: Some(client_key(info.peer.ip())),
            ..viewer
        })
    }

    fn id(&self, viewer: &Viewer) -> Option<String> {
        viewer.credential.socket_id()
    }

    fn join(
        &self,
        viewer: &Arc<Viewer>,
        topic: &str,
        payload: Payload,
        outbox: Outbox,
    ) -> Option<BoxFuture<JoinResult>> {
        if !(topic.starts_with("collection:") || topic.starts_with("notifications:")) {
            return None;
        }
        let payload = payload.as_json().cloned().unwrap_or(Value::Null);
        // A session is judged as it is now, not as it was at the connect: its row is read
        // again (awaited, as every read is) before the join is routed.
        if let (Some(auth), Credential::Session(_)) = (&self.auth, viewer.credential) {
            let (this, auth, viewer) = (self.clone(), Arc::clone(auth), Arc::clone(viewer));
            let topic = topic.to_owned();
            return Some(Box::pin(async move {
                let now = Viewer {
                    client: viewer.client,
                    ..auth.recheck(&viewer).await.unwrap_or_default()
                };
                match this.route_join(&now, &topic, &payload, outbox) {
                    Some(join) => join.await,
                    None => JoinResult::Error(json!({"reason": "unmatched topic"})),
                }
            }));
        }
        self.route_join(viewer, topic, &payload, outbox)
    }
}

impl Cafe {
    /// The join of `topic` for `viewer`; `None` when no channel handles the topic.
    fn route_join(
        &self,
        viewer: &Viewer,
        topic: &str,
        payload: &Value,
        outbox: Outbox,
    ) -> Option<BoxFuture<JoinResult>> {
        if let Some(name) = topic.strip_prefix("collection:") {
            let join = self.join_collection(viewer, name, payload, outbox);
            Some(with_epoch(join, Arc::clone(&self.epoch)))
        } else {
            topic
                .strip_prefix("notifications:")
                .map(|scope| self.join_notifications(viewer, scope, outbox))
        }
    }
}

/// A joined café topic. Clients write over HTTP, so every client event is refused at once
/// (the old backend ignored them and the client's push timed out after 10 s).
struct Joined {
    _sub: Subscription,
}

impl Channel for Joined {
    fn handle_in(&mut self, _event: &str, _payload: Payload, _outbox: &Outbox) -> Reply {
        Reply::error(json!({"reason": "unknown event"}))
    }
}

fn refuse(reason: &'static str) -> BoxFuture<JoinResult> {
    Box::pin(async move { JoinResult::Error(json!({ "reason": reason })) })
}

/// The `since` option: the `seq` a rejoining client has seen everything up to.
fn resume_point(payload: &Value) -> Result<Option<u64>, Value> {
    match payload.get("options").and_then(|o| o.get("since")) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) if n.as_u64().is_some() => Ok(n.as_u64()),
        Some(Value::String(s)) if s.trim().parse::<u64>().is_ok() => Ok(s.trim().parse().ok()),
        Some(_) => Err(json!({"since": ["must be a non-negative integer"]})),
    }
}

/// Whether a resuming join's `since` belongs to this database history: its `epoch` option is
/// ours, or absent (a client from before epochs; its `since` is then judged by `seq` alone).
fn same_epoch(payload: &Value, epoch: &str) -> bool {
    match payload.get("options").and_then(|o| o.get("epoch")) {
        None | Some(Value::Null) => true,
        Some(Value::String(theirs)) => theirs == epoch,
        Some(_) => false,
    }
}

/// Put `"epoch"` beside `"seq"` in a successful collection join reply.
fn with_epoch(join: BoxFuture<JoinResult>, epoch: Arc<str>) -> BoxFuture<JoinResult> {
    Box::pin(async move {
        let mut result = join.await;
        if let JoinResult::Ok { response, .. } = &mut result {
            match response {
                Payload::Json(reply) => {
                    if let Some(reply) = reply.as_object_mut() {
                        reply.insert("epoch".into(), Value::from(&*epoch));
                    }
                }
                // `joined`'s pieces end with the closing brace: the epoch goes before it.
                Payload::Raw(pieces) => {
                    let field = format!(",\"epoch\":{}", Value::from(&*epoch));
                    let at = pieces.len().saturating_sub(1);
                    pieces.insert(at, Arc::from(field));
                }
                Payload::Binary(_) => {}
            }
        }
        result
    })
}

/// The client's turn on the bulk lane (one snapshot or list at a time per client), waited for
/// before its snapshot is read; a socket without an address (tests) goes straight in.
async fn bulk_turn(store: &Store, client: Option<IpAddr>) -> Option<store::readers::Turn> {
    match client {
        Some(client) => Some(store.bulk_turns.take(client).await),
        None => None,
    }
}

fn invalid_options(errors: Value) -> BoxFuture<JoinResult> {
    let reply = json!({"reason": "invalid options", "errors": errors});
    Box::pin(async move { JoinResult::Error(reply) })
}

/// The reply to a join that resumed from the log: no snapshot, the missed changes.
fn resumed_join((seq, changes): (u64, Vec<Value>), sub: Subscription) -> JoinResult {
    JoinResult::Ok {
        response: Payload::Json(json!({"items": null, "seq": seq, "changes": changes})),
        seq,
        channel: Box::new(Joined { _sub: sub }),
    }
}

/// A snapshot encoded as JSON text where it was read (on the bulk lane's blocking thread): a
/// reply of megabytes never holds an async worker that orders, logins and `/healthz` share.
struct Encoded {
    items: String,
    /// The window cut it (SPEC 3.1's `"truncated": true`).
    truncated: bool,
}

impl From<Listed> for Encoded {
    fn from(listed: Listed) -> Encoded {
        Encoded {
            items: Value::Array(listed.records).to_string(),
            truncated: listed.truncated,
        }
    }
}

fn joined(read: Result<(u64, Encoded), StoreError>, sub: Subscription) -> JoinResult {
    match read {
        Ok((seq, snapshot)) => {
            // SPEC 3.1: a snapshot cut to `limits.snapshot_max_records` says so.
            let truncated = if snapshot.truncated {
                ",\"truncated\":true"
            } else {
                ""
            };
            // `with_epoch` adds its field before the last piece, the closing brace.
            let response = Payload::Raw(vec![
                Arc::from("{\"items\":"),
                Arc::from(snapshot.items),
                Arc::from(format!(",\"seq\":{seq}{truncated}")),
                Arc::from("}"),
            ]);
            JoinResult::Ok {
                response,
                seq,
                channel: Box::new(Joined { _sub: sub }),
            }
        }
        Err(StoreError::Unavailable(why)) if why == store::readers::STOPPED => {
            // The socket has gone: nobody reads this reply.
            JoinResult::Error(json!({"reason": "unavailable"}))
        }
        Err(e) => {
            tracing::error!(error = %e, "reading a snapshot for a join failed");
            JoinResult::Error(json!({"reason": "unavailable"}))
        }
    }
}
