//! `/api/collections/{c}/records[/{id}]`: list, get, create, update (PATCH and PUT are both
//! partial), delete. Reads go to the reader pool; writes run as one closure on the writer,
//! which reads the record back inside the transaction so the answer is what was committed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::http::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use serde_json::Value;

use super::body::{self, Form};
use super::{caller, query_pairs, ApiError, Caller};
use crate::channels::filter::local_date;
use crate::channels::privacy::{self, Reader};
use crate::channels::query::ListQuery;
use crate::http::{empty, json_response, App, Body};
use crate::net::ClientAddr;
use crate::phoenix::per_address::client_key;
use crate::store::orders::{self, Customer};
use crate::store::records::Window;
use crate::store::write;
use crate::store::{records, Collection, RecordCtx, Stop};
use std::net::IpAddr;

/// `GET /api/collections/{c}/records`
pub async fn list(
    app: &App,
    req: &Request<Incoming>,
    collection: Collection,
) -> Result<Response<Body>, ApiError> {
    let who = caller(app, req.headers()).await;
    who.may_read(app.settings().public_read)?;
    list_records(app, req, collection, reader(who)).await
}

/// `GET /api/collections/{c}/records/{id}`
pub async fn get(
    app: &App,
    req: &Request<Incoming>,
    collection: Collection,
    id: &str,
) -> Result<Response<Body>, ApiError> {
    let who = caller(app, req.headers()).await;
    who.may_read(app.settings().public_read)?;
    get_record(app, req, collection, record_id(id)?, reader(who)).await
}

/// `POST /api/collections/{c}/records`: any logged-in user may place an order; everything
/// else is for admins.
pub async fn create(
    app: &App,
    req: Request<Incoming>,
    collection: Collection,
) -> Result<Response<Body>, ApiError> {
    let who = caller(app, req.headers()).await;
    if collection == Collection::Order {
        if who == Caller::Anonymous {
            return Err(ApiError::Unauthorized);
        }
    } else {
        who.must_be_admin()?;
    }
    let (form, ctx) = read_body(app, req, collection).await?;
    if collection == Collection::Order {
        place_order(app, form, who, ctx).await
    } else {
        create_record(app, collection, form, ctx).await
    }
}

/// `PATCH` and `PUT /api/collections/{c}/records/{id}` (both partial).
pub async fn update(
    app: &App,
    req: Request<Incoming>,
    collection: Collection,
    id: &str,
) -> Result<Response<Body>, ApiError> {
    caller(app, req.headers()).await.must_be_admin()?;
    let id = record_id(id)?;
    let (form, ctx) = read_body(app, req, collection).await?;
    update_record(app, collection, id, form, ctx).await
}

/// `DELETE /api/collections/{c}/records/{id}`
pub async fn delete(
    app: &App,
    req: &Request<Incoming>,
    collection: Collection,
    id: &str,
) -> Result<Response<Body>, ApiError> {
    caller(app, req.headers()).await.must_be_admin()?;
    delete_record(app, collection, record_id(id)?).await
}

/// Ids are integers; anything else cannot name a record.
fn record_id(id: &str) -> Result<i64, ApiError> {
    id.parse::<i64>()
        .map_err(|_| ApiError::NotFound("record not found"))
}

/// The decoded body of a write, and how to render the record it answers with.
async fn read_body(
    app: &App,
    req: Request<Incoming>,
    collection: Collection,
) -> Result<(Form, RecordCtx), ApiError> {
    let settings = app.settings();
    let (parts, incoming) = req.into_parts();
    let form = body::read(
        incoming,
        &parts.headers,
        collection,
        settings.max_body_bytes,
        settings.max_upload_bytes,
    )
    .await?;
    Ok((form, app.record_ctx(&parts.headers)))
}

/// Who the caller is to an order's `customer_id` (SPEC 6).
fn reader(who: Caller) -> Reader {
    match who {
        Caller::Anonymous => Reader::Public,
        Caller::User { id, admin } => Reader::of(Some(id), admin),
        Caller::AdminToken => Reader::Admin,
    }
}

/// A plain JSON array, as the frontend expects (SPEC 5), bounded (SPEC 10): with `page` /
/// `perPage` that page in snapshot order; without, at most `limits.snapshot_max_records`
/// records, the newest (and for orders without `from_date`, the last
/// `limits.order_snapshot_days` days). `X-Total-Count` says how many match in all.
async fn list_records(
    app: &App,
    req: &Request<Incoming>,
    collection: Collection,
    reader: Reader,
) -> Result<Response<Body>, ApiError> {
    let ctx = app.record_ctx(req.headers());
    let settings = app.settings();
    let asked =
        ListQuery::parse(collection, &query_pairs(req.uri().query())).map_err(ApiError::Invalid)?;
    let page = asked.page;
    // An unpaged order list without `from_date` covers what an order join without it does.
    let today = local_date(app.clock.now(), &app.tz);
    let days = page.is_none().then_some(settings.order_snapshot_days);
    let query = asked.orders.bounded(today, days).query(today, &app.tz);
    // Whose orders a customer filter shows is private: only one's own (admins: any).
    if query.customer_id.is_some_and(|c| !reader.may_filter_by(c)) {
        return Err(ApiError::Forbidden);
    }
    let window = page.unwrap_or(Window::Newest(settings.snapshot_max_records));
    // A client that hangs up stops its list (hyper drops this future, and with it `_gone`).
    let gone = Arc::new(AtomicBool::new(false));
    let _gone = SetOnDrop(Arc::clone(&gone));
    let stop = Stop::when(move || gone.load(Ordering::Relaxed));
    // One list or snapshot at a time per client: a client asking for many at once waits for
    // its own, not in front of everybody else's.
    let client = req
        .extensions()
        .get::<ClientAddr>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |c| client_key(c.0.ip()));
    let _turn = app.store.bulk_turns.take(client).await;
    let listed = app
        .store
        .snapshots
        .read_until(stop, move |conn, stop| {
            let mut listed = records::list_bounded(conn, collection, &query, window, &ctx, stop)?;
            if collection == Collection::Order {
                for record in &mut listed.records {
                    privacy::redact_order(record, reader);
                }
            }
            // Encoded here, on the blocking thread: a list of a few MB must not hold an async
            // worker that logins, orders and `/healthz` are waiting for.
            let body = Value::Array(listed.records).to_string();
            Ok::<_, ApiError>((body, listed.total))
        })
        .await?;
    let (body, total) = listed;
    let mut response = Response::new(Body::from(bytes::Bytes::from(body)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let headers = response.headers_mut();
    headers.insert("x-total-count", HeaderValue::from(total));
    // A frontend on another origin may read the total only when it is exposed.
    headers.insert(
        "access-control-expose-headers",
        HeaderValue::from_static("X-Total-Count"),
    );
    Ok(response)
}

/// Sets its flag when dropped: "whoever waited for this is gone".
struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

async fn get_record(
    app: &App,
    req: &Request<Incoming>,
    collection: Collection,
    id: i64,
    reader: Reader,
) -> Result<Response<Body>, ApiError> {
    let ctx = app.record_ctx(req.headers());
    let record = app
        .store
        .readers
        .read(move |conn| records::get(conn, collection, id, &ctx))
        .await?;
    match record {
        Some(mut record) => {
            if collection == Collection::Order {
                privacy::redact_order(&mut record, reader);
            }
            Ok(json_response(StatusCode::OK, &record))
        }
        None => Err(ApiError::NotFound("record not found")),
    }
}

async fn create_record(
    app: &App,
    collection: Collection,
    form: Form,
    ctx: RecordCtx,
) -> Result<Response<Body>, ApiError> {
    let clock = Arc::clone(&app.clock);
    let record = app
        .store
        .writer
        .write(move |tx| {
            write::create(
                tx,
                collection,
                &form.fields,
                form.image.as_ref(),
                clock.now(),
                &ctx,
            )
        })
        .await?;
    Ok(json_response(StatusCode::CREATED, &record))
}

async fn update_record(
    app: &App,
    collection: Collection,
    id: i64,
    form: Form,
    ctx: RecordCtx,
) -> Result<Response<Body>, ApiError> {
    let clock = Arc::clone(&app.clock);
    let record = app
        .store
        .writer
        .write(move |tx| {
            write::update(
                tx,
                collection,
                id,
                &form.fields,
                form.image.as_ref(),
                clock.now(),
                &ctx,
            )
        })
        .await?;
    Ok(json_response(StatusCode::OK, &record))
}

async fn delete_record(
    app: &App,
    collection: Collection,
    id: i64,
) -> Result<Response<Body>, ApiError> {
    let clock = Arc::clone(&app.clock);
    app.store
        .writer
        .write(move |tx| write::delete(tx, collection, id, clock.now()))
        .await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

/// 201 with the new order, or 200 with the existing one when its `uuid` was seen before.
async fn place_order(
    app: &App,
    form: Form,
    who: Caller,
    ctx: RecordCtx,
) -> Result<Response<Body>, ApiError> {
    let customer = match who {
        Caller::User { id, admin: false } => Customer::Forced(id),
        _ => Customer::AsGiven,
    };
    let clock = Arc::clone(&app.clock);
    let tz = app.tz.clone();
    let limits = app.settings().order_limits;
    let placed = app
        .store
        .writer
        .write(move |tx| orders::place(tx, &form.fields, customer, limits, clock.now(), &tz, &ctx))
        .await?;
    let status = if placed.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(json_response(status, &placed.record))
}
