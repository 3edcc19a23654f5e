//! `GET /metrics/batch?consumer=NAME[&from=oldest]`: every sample the
//! consumer has not been sent, timestamped. The consumer's cursor moves
//! only once the whole body has been handed to the connection.

use std::{
    collections::VecDeque,
    convert::Infallible,
    future::Future,
    os::fd::RawFd,
    pin::Pin,
    task::{Context, Poll},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use axum::{
    body::Body,
    extract::{Query, State},
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Extension,
};
use bytes::Bytes;
use http_body::Frame;

use super::{bad_request, begin_scrape, App, Scrape};
use crate::batch::{
    self,
    encode::{encode, Encoded},
};

/// Body frames are this large: a client that stops reading stops the
/// stream long before the end, so its cursor stays put.
const FRAME: usize = 64 * 1024;

pub const ENDPOINT: &str = "/metrics/batch";

fn valid_consumer(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b))
}

/// A user-supplied value as an error message quotes it: whole when short,
/// else its first 64 characters and its length (a 60 KB name is not
/// echoed back whole).
fn quoted(v: &str) -> String {
    format!("{:?}", crate::files::preview(v, 64))
}

pub async fn handler(
    State(app): State<App>,
    method: axum::http::Method,
    socket: Option<Extension<SocketFd>>,
    Query(params): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    let started = Instant::now();
    let mut consumer = None;
    let mut from_oldest = false;
    let mut seen: Vec<&str> = Vec::with_capacity(2);
    for (k, v) in &params {
        if seen.contains(&k.as_str()) {
            return bad_request(format!(
                "query parameter {} given twice: give each once",
                quoted(k)
            ));
        }
        seen.push(k);
        match k.as_str() {
            "consumer" if valid_consumer(v) => consumer = Some(v.clone()),
            "consumer" => {
                return bad_request(format!(
                    "invalid consumer {}: use 1 to 128 characters from A-Z a-z 0-9 _ - . :",
                    quoted(v)
                ))
            }
            "from" => match v.as_str() {
                "oldest" => from_oldest = true,
                "now" => from_oldest = false,
                _ => {
                    return bad_request(format!(
                        "invalid from={}: use from=oldest (everything held) or from=now (the default)",
                        quoted(v)
                    ))
                }
            },
            _ => {
                return bad_request(format!(
                    "unknown query parameter {}: /metrics/batch takes consumer=NAME and optionally from=oldest",
                    quoted(k)
                ))
            }
        }
    }
    let Some(consumer) = consumer else {
        return bad_request(
            "missing consumer: scrape /metrics/batch?consumer=NAME, one name per scraper (Prometheus: params: {consumer: [NAME]})".into(),
        );
    };
    // A HEAD asks what a GET would answer without taking anything: it
    // neither registers the consumer nor moves its cursor.
    if method == axum::http::Method::HEAD {
        return match begin_scrape(&app, &headers, started, ENDPOINT) {
            Ok(s) => (
                [(header::CONTENT_TYPE, s.format.content_type())],
                Body::empty(),
            )
                .into_response(),
            Err(r) => *r,
        };
    }
    let Scrape {
        format,
        deadline,
        permit,
    } = match begin_scrape(&app, &headers, started, ENDPOINT) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    // The points up to now, drained first.
    app.fresh().await;
    let store = app.store.clone();
    let name = consumer.clone();
    let job = tokio::task::spawn_blocking(move || -> Result<Encoded, batch::store::StoreError> {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let lease = batch::lock(&store).lease(&name, from_oldest, now_ms, Instant::now())?;
        Ok(encode(&lease, format, Some(deadline)))
    });
    let encoded = match job.await {
        Ok(Ok(e)) => e,
        Ok(Err(e)) => {
            return (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response();
        }
        Err(e) => {
            if e.is_panic() {
                app.stats.panicked("batch");
            }
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "encoding the batch failed (counted in ergon_collector_panics_total); the samples stay for the next scrape\n",
            )
                .into_response();
        }
    };
    drop(permit);
    if encoded.cut {
        app.stats
            .batch_cut
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    app.stats.observe(ENDPOINT, started.elapsed().as_secs_f64());
    let store = app.store.clone();
    let Encoded {
        body,
        written,
        samples,
        cut,
        complete,
    } = encoded;
    let body = CommitBody::new(
        Bytes::from(body),
        Box::new(move || batch::lock(&store).commit(&consumer, &written, samples, complete)),
        socket.map(|Extension(s)| s),
    );
    let mut resp = Response::new(Body::new(body));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(format.content_type()),
    );
    if cut {
        h.insert(
            "x-ergon-batch-truncated",
            header::HeaderValue::from_static("deadline"),
        );
    }
    resp
}

/// The connection's socket, so a batch body can wait for the client's
/// acknowledgement of its last byte.
#[derive(Clone, Copy, Debug)]
pub struct SocketFd(pub RawFd);

/// How long a finished body waits for the client to acknowledge it.
const ACK_WAIT: Duration = Duration::from_secs(5);

/// A body that runs `on_end` once the client has every byte: it is polled
/// past its last frame, and then (on a real socket) the kernel's send queue
/// is empty, i.e. the client's TCP acknowledged everything. Dropped earlier
/// (client gone, connection error), or unacknowledged after [`ACK_WAIT`],
/// it never runs it: the samples are sent again next time (a repeated
/// sample is ignored by Prometheus; a lost one cannot be recovered).
pub struct CommitBody {
    frames: VecDeque<Bytes>,
    len: u64,
    on_end: Option<Box<dyn FnOnce() + Send>>,
    socket: Option<SocketFd>,
    wait: Option<(Pin<Box<tokio::time::Sleep>>, Instant, u8)>,
}

/// Bytes the kernel still holds for `fd` (unsent or unacknowledged).
fn unacknowledged(fd: RawFd) -> Option<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: SIOCOUTQ writes one int; `fd` is the connection's socket,
    // open for as long as the connection (which owns this body) lives.
    let rc = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut n) };
    (rc == 0).then_some(n.max(0) as usize)
}

impl CommitBody {
    pub fn new(body: Bytes, on_end: Box<dyn FnOnce() + Send>, socket: Option<SocketFd>) -> Self {
        let len = body.len() as u64;
        let mut frames = VecDeque::new();
        let mut rest = body;
        while rest.len() > FRAME {
            frames.push_back(rest.split_to(FRAME));
        }
        if !rest.is_empty() {
            frames.push_back(rest);
        }
        Self {
            frames,
            len,
            on_end: Some(on_end),
            socket,
            wait: None,
        }
    }
}

impl http_body::Body for CommitBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if let Some(f) = this.frames.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(f))));
        }
        if let (Some(SocketFd(fd)), Some(_)) = (this.socket, this.on_end.as_ref()) {
            // Give the connection a turn to flush, then watch the send queue
            // drain: empty twice in a row (1 ms apart) means acknowledged.
            let (sleep, until, empty) = this.wait.get_or_insert_with(|| {
                (
                    Box::pin(tokio::time::sleep(Duration::from_millis(1))),
                    Instant::now() + ACK_WAIT,
                    0,
                )
            });
            loop {
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                match unacknowledged(fd) {
                    Some(0) => *empty += 1,
                    Some(_) => *empty = 0,
                    None => *empty = 2,
                }
                if *empty >= 2 {
                    break;
                }
                if Instant::now() >= *until {
                    // Never acknowledged: keep the cursor, end the body.
                    this.on_end = None;
                    return Poll::Ready(None);
                }
                sleep
                    .as_mut()
                    .reset((Instant::now() + Duration::from_millis(1)).into());
            }
        }
        if let Some(done) = this.on_end.take() {
            done();
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        // Not before `on_end` ran: the connection must poll once more.
        self.frames.is_empty() && self.on_end.is_none()
    }

    // No exact size on purpose: with a Content-Length, hyper stops polling
    // once it has the last byte and `on_end` would never run. Chunked
    // encoding needs the end of stream, so the commit follows the last frame.
    fn size_hint(&self) -> http_body::SizeHint {
        let mut h = http_body::SizeHint::new();
        h.set_lower(self.len);
        h
    }
}
