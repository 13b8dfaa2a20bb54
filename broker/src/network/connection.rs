//! One client connection. A reader task turns the byte stream into request frames within the
//! connection's limits (frame size, in-flight requests, its own and the broker-wide memory
//! budget, idle and whole-request read timeouts); the connection task handles them concurrently
//! and writes the responses strictly in request order, as Kafka clients require for pipelining.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use fjord_protocol::kafka_protocol::messages::ApiKey;
use fjord_protocol::kafka_protocol::messages::ResponseKind;
use fjord_protocol::{DecodeError, decode_request, encode_fetch_response_chunked, encode_response};
use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};

use super::memory_pool::{MemoryPool, Reservation};
use crate::broker::Broker;
use crate::handlers::{self, Reply, Turn};
use crate::security::Session;

/// A request frame and what it holds until answered: its share of the connection's and the
/// broker's request memory and one of the connection's in-flight slots.
struct Frame {
    bytes: Bytes,
    _budget: OwnedSemaphorePermit,
    _memory: Reservation,
    _slot: InFlight,
}

/// One of a connection's `max_in_flight_requests` slots, counted in the broker-wide gauge.
struct InFlight {
    _permit: OwnedSemaphorePermit,
    gauge: Gauge,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// Why the reader stopped.
enum ReadEnd {
    Closed,
    Idle,
    /// A request did not arrive whole within `request_read_timeout`.
    Slow,
    TooLarge(usize),
    Invalid(i32),
    Io(std::io::Error),
}

/// The reader's limits, from `network.*`.
struct ReadLimits {
    max_request: usize,
    idle_timeout: Duration,
    request_read_timeout: Duration,
}

/// Runs a connection over its two halves: the TCP socket's own halves on plaintext listeners,
/// the halves of the TLS stream on SSL and SASL_SSL listeners.
pub(super) async fn run<R, W>(
    read_half: R,
    mut write_half: W,
    session: Arc<Session>,
    broker: Arc<Broker>,
    mut shutdown: watch::Receiver<bool>,
    pool: Arc<MemoryPool>,
) where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send,
{
    let peer = session.peer;
    broker.metrics.connections.inc();
    let net = &broker.config.network;
    let max_request = net.max_request_size.as_u64() as usize;
    // Requests read but not yet answered may hold at most max_request_size bytes in total
    // (a single request may use all of it), so memory per connection stays bounded; the
    // broker-wide pool bounds the sum over connections.
    let budget = Arc::new(Semaphore::new(max_request));
    // At most max_in_flight_requests are read and not yet answered, whatever their API: the
    // reader takes a slot before reading a request and the slot is freed with its response.
    let slots = Arc::new(Semaphore::new(net.max_in_flight_requests));
    let (frames_tx, mut frames_rx) = mpsc::channel(net.max_in_flight_requests);
    let reader = tokio::spawn(read_frames(
        read_half,
        frames_tx,
        budget,
        slots,
        pool,
        ReadLimits {
            max_request,
            idle_timeout: net.idle_timeout,
            request_read_timeout: net.request_read_timeout,
        },
        broker.clone(),
        peer,
    ));

    let mut in_flight = FuturesOrdered::new();
    let mut out = BytesMut::with_capacity(64 * 1024);
    let mut last_turn = None;
    let mut reading = true;
    let mut closing = false;
    loop {
        if (closing || !reading) && in_flight.is_empty() {
            break;
        }
        tokio::select! {
            biased;
            Some((reply, frame)) = in_flight.next(), if !in_flight.is_empty() => {
                let (reply, _frame): (Reply, Frame) = (reply, frame);
                match reply {
                    // Fetch responses are mostly record data: write it from the read buffers
                    // instead of copying it into `out` (see fjord_protocol::chunked).
                    Reply::Response { version, correlation_id, body, .. } if matches!(*body, ResponseKind::Fetch(_)) => {
                        let ResponseKind::Fetch(fetch) = *body else { unreachable!("matched above") };
                        let chunks = match encode_fetch_response_chunked(version, correlation_id, &fetch) {
                            Ok(chunks) => chunks,
                            Err(error) => {
                                tracing::error!(%peer, %error, "cannot encode response, closing connection");
                                break;
                            }
                        };
                        drop(fetch);
                        let sent = out.len() + chunks.iter().map(Bytes::len).sum::<usize>();
                        if let Err(error) = write_all(&mut write_half, &out, &chunks).await {
                            tracing::debug!(%peer, %error, "write failed, closing connection");
                            break;
                        }
                        if let Err(error) = write_half.flush().await {
                            tracing::debug!(%peer, %error, "write failed, closing connection");
                            break;
                        }
                        broker.metrics.bytes_out.inc_by(sent as u64);
                        out.clear();
                        continue;
                    }
                    Reply::Response { api_key, version, correlation_id, body } => {
                        if let Err(error) = encode_response(&mut out, api_key, version, correlation_id, &body) {
                            tracing::error!(%peer, %error, "cannot encode response, closing connection");
                            break;
                        }
                    }
                    Reply::Final { api_key, version, correlation_id, body } => {
                        // Answer, then close (a failed SASL authentication).
                        if encode_response(&mut out, api_key, version, correlation_id, &body).is_ok()
                            && write_half.write_all(&out).await.is_ok()
                        {
                            broker.metrics.bytes_out.inc_by(out.len() as u64);
                        }
                        out.clear();
                        let _ = write_half.flush().await;
                        break;
                    }
                    Reply::None => {}
                    Reply::Close => break,
                }
                // Batch writes: flush when nothing else is ready or the buffer is large.
                if in_flight.is_empty() || out.len() >= 256 * 1024 {
                    if let Err(error) = write_half.write_all(&out).await {
                        tracing::debug!(%peer, %error, "write failed, closing connection");
                        break;
                    }
                    // A TLS stream buffers records until flushed (a no-op on a TCP socket).
                    if let Err(error) = write_half.flush().await {
                        tracing::debug!(%peer, %error, "write failed, closing connection");
                        break;
                    }
                    broker.metrics.bytes_out.inc_by(out.len() as u64);
                    out.clear();
                    if out.capacity() > 4 * 1024 * 1024 {
                        out = BytesMut::with_capacity(64 * 1024);
                    }
                }
            }
            frame = frames_rx.recv(), if reading && !closing => match frame {
                Some(frame) => {
                    let broker = broker.clone();
                    let session = session.clone();
                    let turn = Turn::after(&mut last_turn);
                    in_flight.push_back(async move {
                        let reply = handle_frame(&broker, frame.bytes.clone(), &session, turn).await;
                        (reply, frame)
                    });
                }
                None => reading = false,
            },
            _ = shutdown.changed(), if !closing => closing = true,
        }
    }
    if !out.is_empty() && write_half.write_all(&out).await.is_ok() {
        broker.metrics.bytes_out.inc_by(out.len() as u64);
    }
    let _ = write_half.flush().await;
    reader.abort();
    let _ = write_half.shutdown().await;
    broker.metrics.connections.dec();
}

/// Writes `head` (already encoded responses) and then `chunks` with vectored writes.
async fn write_all<W: AsyncWrite + Unpin>(write_half: &mut W, head: &[u8], chunks: &[Bytes]) -> std::io::Result<()> {
    let mut parts: Vec<&[u8]> = Vec::with_capacity(chunks.len() + 1);
    if !head.is_empty() {
        parts.push(head);
    }
    parts.extend(chunks.iter().map(|c| &c[..]).filter(|c| !c.is_empty()));
    let mut first = 0;
    while first < parts.len() {
        let slices: Vec<std::io::IoSlice<'_>> = parts[first..]
            .iter()
            .take(64)
            .map(|p| std::io::IoSlice::new(p))
            .collect();
        let mut written = write_half.write_vectored(&slices).await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while first < parts.len() && written >= parts[first].len() {
            written -= parts[first].len();
            first += 1;
        }
        if written > 0 {
            parts[first] = &parts[first][written..];
        }
    }
    Ok(())
}

/// Decodes and handles one frame. Decode failures answer as Kafka does: ApiVersions at a
/// too-new version gets UNSUPPORTED_VERSION in a v0 response; anything else closes.
async fn handle_frame(broker: &Arc<Broker>, frame: Bytes, session: &Arc<Session>, turn: Turn) -> Reply {
    let peer = session.peer;
    let started = Instant::now();
    match decode_request(frame) {
        Ok(request) => {
            let api_key = request.api_key;
            let reply = handlers::handle(broker, request, turn, session).await;
            broker.metrics.observe_request(api_key, started.elapsed());
            reply
        }
        Err(DecodeError::UnsupportedVersion {
            api_key: ApiKey::ApiVersions,
            version,
            correlation_id,
            ..
        }) => {
            tracing::debug!(%peer, version, "api versions request too new, answering with v0 fallback");
            handlers::api_versions::unsupported_version(correlation_id)
        }
        Err(error) => {
            tracing::warn!(%peer, %error, "bad request, closing connection");
            Reply::Close
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn read_frames<R: AsyncRead + Unpin>(
    read_half: R,
    frames: mpsc::Sender<Frame>,
    budget: Arc<Semaphore>,
    slots: Arc<Semaphore>,
    pool: Arc<MemoryPool>,
    limits: ReadLimits,
    broker: Arc<Broker>,
    peer: std::net::SocketAddr,
) {
    let peer = Some(peer);
    let metrics = &broker.metrics.network;
    let max_request = limits.max_request;
    let mut reader = BufReader::with_capacity(64 * 1024, read_half);
    let end = loop {
        // With max_in_flight_requests unanswered, stop reading until a response is written.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break ReadEnd::Closed;
        };
        // Between requests only the idle timeout applies; from a request's first byte, the
        // whole request must arrive within request_read_timeout (slowloris).
        match tokio::time::timeout(limits.idle_timeout, reader.fill_buf()).await {
            Err(_) => break ReadEnd::Idle,
            Ok(Err(e)) => break ReadEnd::Io(e),
            Ok(Ok([])) => break ReadEnd::Closed,
            Ok(Ok(_)) => {}
        }
        let mut deadline = tokio::time::Instant::now() + limits.request_read_timeout;
        let size = match tokio::time::timeout_at(deadline, reader.read_i32()).await {
            Err(_) => break ReadEnd::Slow,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break ReadEnd::Closed,
            Ok(Err(e)) => break ReadEnd::Io(e),
            Ok(Ok(size)) => size,
        };
        if size < 8 {
            break ReadEnd::Invalid(size);
        }
        let size = size as usize;
        if size > max_request {
            break ReadEnd::TooLarge(size);
        }
        // Memory before the body: the connection's own budget, then the broker's pool. Waiting
        // here is the broker's doing, so it does not count against the client's deadline.
        let waiting = tokio::time::Instant::now();
        let Ok(permit) = budget.clone().acquire_many_owned(size as u32).await else {
            break ReadEnd::Closed;
        };
        let memory = match pool.try_reserve(size) {
            Some(memory) => memory,
            None => {
                metrics.request_memory_waits.inc();
                pool.reserve(size).await
            }
        };
        deadline += waiting.elapsed();
        // Read into uninitialised capacity: a zeroed allocation of this size is a calloc, which
        // jemalloc serves by purging pages that then fault in again on every request.
        let mut buf = BytesMut::with_capacity(size);
        match tokio::time::timeout_at(deadline, read_body(&mut reader, &mut buf, size)).await {
            Err(_) => break ReadEnd::Slow,
            Ok(Err(end)) => break end,
            Ok(Ok(())) => {}
        }
        broker.metrics.bytes_in.inc_by(size as u64 + 4);
        metrics.requests_in_flight.inc();
        let slot = InFlight {
            _permit: slot,
            gauge: metrics.requests_in_flight.clone(),
        };
        if frames
            .send(Frame {
                bytes: buf.freeze(),
                _budget: permit,
                _memory: memory,
                _slot: slot,
            })
            .await
            .is_err()
        {
            break ReadEnd::Closed;
        }
    };
    match end {
        ReadEnd::Closed => {}
        ReadEnd::Idle => tracing::debug!(?peer, "closing idle connection"),
        ReadEnd::Slow => {
            metrics.request_read_timeouts.inc();
            tracing::debug!(
                ?peer,
                timeout = ?limits.request_read_timeout,
                "request not received whole within network.request_read_timeout, closing connection"
            )
        }
        ReadEnd::TooLarge(size) => {
            tracing::warn!(
                ?peer,
                size,
                max_request,
                "request larger than network.max_request_size, closing connection"
            )
        }
        ReadEnd::Invalid(size) => tracing::warn!(?peer, size, "invalid request size prefix, closing connection"),
        ReadEnd::Io(error) => tracing::debug!(?peer, %error, "read failed, closing connection"),
    }
}

/// Reads the `size` bytes of a request body into `buf`.
async fn read_body<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    buf: &mut BytesMut,
    size: usize,
) -> Result<(), ReadEnd> {
    while buf.len() < size {
        match (&mut *reader).take((size - buf.len()) as u64).read_buf(buf).await {
            Ok(0) => return Err(ReadEnd::Closed),
            Ok(_) => {}
            Err(e) => return Err(ReadEnd::Io(e)),
        }
    }
    Ok(())
}
