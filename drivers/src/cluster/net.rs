//! gRPC on smol without a tokio runtime: hyper 1's HTTP/2 server and client connections over
//! smol sockets, tonic's generated services on top. Owns sockets, HTTP/2 settings and routing
//! by service path; what the services do with a request is peers.rs's.

use http_body_util::BodyExt;
use hyper::body::Incoming;
use smol_hyper::rt::SmolTimer;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tonic::body::Body;

/// HTTP/2 keep-alive: a ping after this much silence, and the connection is dead when the
/// answer takes longer than the timeout (a partition without a closed socket).
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(2);
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(3);
/// HTTP/2 flow-control windows, fixed: large enough that a relay stream never waits for a window
/// update on loopback or a LAN. (An adaptive window measures the bandwidth-delay product with a
/// PING per burst of data, which costs a wake-up and a write for every small frame.)
const STREAM_WINDOW: u32 = 8 << 20;
const CONNECTION_WINDOW: u32 = 16 << 20;
/// How long opening a connection to a peer may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The executor of every cluster task (connections, streams, the owner of the peers). The
/// node's own thread runs it while it waits for input and between slices of work, so a frame
/// goes from the engine to the socket, and from the socket to the engine, without a thread
/// switch. Whoever starts a transport without a node loop (tests) calls `drive_in_background`.
pub fn executor() -> &'static smol::Executor<'static> {
    static EXECUTOR: std::sync::OnceLock<smol::Executor<'static>> = std::sync::OnceLock::new();
    EXECUTOR.get_or_init(smol::Executor::new)
}

/// Starts a cluster task.
pub fn spawn<F>(fut: F) -> smol::Task<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    executor().spawn(fut)
}

/// Runs the cluster executor on a thread of its own (for a transport with no node loop).
#[cfg(test)]
pub fn drive_in_background() {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        std::thread::spawn(|| smol::block_on(run_until(futures_lite::future::pending::<()>())));
    });
}

/// Runs cluster tasks on this thread until `fut` is ready (cheaper than `Executor::run`, which
/// sets up a queue per call). Ready tasks run before `fut` is polled, so an input a task just
/// read is seen in the same pass.
///
/// Wake-ups that happen while it polls (a task this thread runs waking `fut` or scheduling
/// another task) stay inside: they are served in the same pass instead of reaching the
/// `block_on` around it, which would otherwise take each one as a reason to poll the sockets
/// again (five system calls). The sockets are polled when nothing is left to run, when `fut`
/// asks for it by waking itself (a spinning wait), and after `RUN_BUDGET` tasks in a row.
pub fn run_until<F: Future>(fut: F) -> RunUntil<F> {
    let inner = Arc::new(Intercept::default());
    RunUntil {
        fut: Box::pin(fut),
        ticker: None,
        waker: std::task::Waker::from(inner.clone()),
        inner,
    }
}

/// Tasks run in one pass before the sockets get their look.
const RUN_BUDGET: usize = 256;

pub struct RunUntil<F: Future> {
    fut: Pin<Box<F>>,
    /// A pending `Executor::tick`: keeps this thread registered for tasks scheduled elsewhere.
    ticker: Option<BoxFuture<()>>,
    inner: Arc<Intercept>,
    waker: std::task::Waker,
}

/// The waker `run_until` gives what it polls: it notes the wake-up, and passes it on to the
/// caller's waker only when it comes while no pass is running.
#[derive(Default)]
struct Intercept {
    polling: AtomicBool,
    woken: AtomicBool,
    outer: std::sync::Mutex<Option<std::task::Waker>>,
}

impl std::task::Wake for Intercept {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        if !self.polling.load(Ordering::SeqCst) {
            if let Some(w) = self
                .outer
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
            {
                w.wake_by_ref();
            }
        }
    }
}

impl<F: Future> Future for RunUntil<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        {
            let mut outer = this.inner.outer.lock().unwrap_or_else(|e| e.into_inner());
            if !outer.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *outer = Some(cx.waker().clone());
            }
        }
        let ex = executor();
        let mut icx = Context::from_waker(&this.waker);
        let mut budget = RUN_BUDGET;
        loop {
            this.inner.polling.store(true, Ordering::SeqCst);
            this.inner.woken.store(false, Ordering::SeqCst);
            let mut ran = 0;
            while ran < 64 && ex.try_tick() {
                ran += 1;
            }
            if let Poll::Ready(v) = this.fut.as_mut().poll(&mut icx) {
                this.inner.polling.store(false, Ordering::SeqCst);
                return Poll::Ready(v);
            }
            let ticker = this.ticker.get_or_insert_with(|| Box::pin(ex.tick()));
            if ticker.as_mut().poll(&mut icx).is_ready() {
                this.ticker = None;
                ran += 1;
            }
            budget = budget.saturating_sub(ran);
            this.inner.polling.store(false, Ordering::SeqCst);
            let woken = this.inner.woken.load(Ordering::SeqCst);
            if ran > 0 && budget > 0 {
                continue;
            }
            if woken || budget == 0 {
                // Work is left (or `fut` asked for a look at the sockets): the caller's
                // `block_on` polls the sockets without blocking, then polls again.
                cx.waker().wake_by_ref();
            } else {
                // The caller's `block_on` sleeps in the reactor: it must watch the sockets.
                arm_sockets();
            }
            return Poll::Pending;
        }
    }
}

/// Blocks this thread on `fut`, running cluster tasks meanwhile (for a client with no node loop:
/// its connections' tasks run here).
pub fn block_on<T>(fut: impl Future<Output = T>) -> T {
    smol::block_on(run_until(fut))
}

/// Runs ready cluster tasks on this thread, at most `max` of them; returns whether any ran.
pub fn tick(max: usize) -> bool {
    let mut ran = false;
    for _ in 0..max {
        if !executor().try_tick() {
            break;
        }
        ran = true;
    }
    ran
}

/// The sockets of the open HTTP/2 connections (peers, gRPC clients), so a node that busy-waits
/// can ask the kernel which has data with one `poll(2)` and wake its reader itself, instead of a
/// pass of the reactor (about five system calls) per round.
static SOCKETS: std::sync::Mutex<Vec<Listed>> = std::sync::Mutex::new(Vec::new());

struct Listed {
    ready: Arc<Readiness>,
    io: Arc<smol::Async<std::net::TcpStream>>,
}

/// What a connection's reader waits for: set when the socket had nothing more to read, cleared
/// (and the reader woken) by the reactor or by a busy-waiting node that saw data come in.
#[derive(Default)]
struct Readiness {
    empty: AtomicBool,
    reader: atomic_waker::AtomicWaker,
}

impl std::task::Wake for Readiness {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.empty.store(false, Ordering::SeqCst);
        self.reader.wake();
    }
}

/// A connection's socket, read without the reactor: a read that found it empty (or read less
/// than it asked for, so the kernel had nothing more) is not tried again until a busy-waiting
/// node's `poll(2)` or the reactor reports data. The reactor is only told to watch the socket
/// when the thread is about to sleep (`arm_sockets`), not after every message: that saves a
/// re-arming `epoll_ctl` and a read that fails with EAGAIN per message.
pub struct Tracked {
    io: Arc<smol::Async<std::net::TcpStream>>,
    ready: Arc<Readiness>,
}

impl Tracked {
    fn new(tcp: smol::net::TcpStream) -> Tracked {
        let io: Arc<smol::Async<std::net::TcpStream>> = tcp.into();
        let ready = Arc::new(Readiness::default());
        // Listed everywhere: `arm_sockets` needs every socket a reader may wait on.
        SOCKETS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Listed {
                ready: ready.clone(),
                io: io.clone(),
            });
        Tracked { io, ready }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        let mut s = SOCKETS.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = s.iter().position(|l| Arc::ptr_eq(&l.ready, &self.ready)) {
            s.swap_remove(i);
        }
    }
}

impl Tracked {
    /// Reads into `len` bytes at `dst`, which need not be initialized. The socket is
    /// non-blocking (`Async` made it so).
    fn poll_read_raw(
        &self,
        cx: &mut Context<'_>,
        dst: *mut u8,
        len: usize,
    ) -> Poll<std::io::Result<usize>> {
        self.ready.reader.register(cx.waker());
        // Marked before the read: a wake-up that comes after it clears the mark.
        if self.ready.empty.swap(true, Ordering::SeqCst) {
            return Poll::Pending;
        }
        match self.read_now(dst, len) {
            // A short read took all the kernel had: the mark stays until data is reported.
            Ok(n) if n > 0 && n < len => Poll::Ready(Ok(n)),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Poll::Pending,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {
                self.ready.empty.store(false, Ordering::SeqCst);
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            r => {
                self.ready.empty.store(false, Ordering::SeqCst);
                Poll::Ready(r)
            }
        }
    }

    #[cfg(unix)]
    fn read_now(&self, dst: *mut u8, len: usize) -> std::io::Result<usize> {
        let fd = std::os::fd::AsRawFd::as_raw_fd(&*self.io);
        // SAFETY: `dst` is valid for writes of `len` bytes (the caller's buffer); the kernel
        // writes at most `len` bytes there and reports how many.
        let n = unsafe { libc::recv(fd, dst.cast(), len, 0) };
        if n < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    #[cfg(not(unix))]
    fn read_now(&self, dst: *mut u8, len: usize) -> std::io::Result<usize> {
        use std::io::Read;
        // SAFETY: `dst` is valid for `len` bytes; they are zeroed before a slice is made.
        let buf = unsafe {
            dst.write_bytes(0, len);
            std::slice::from_raw_parts_mut(dst, len)
        };
        self.io.get_ref().read(buf)
    }
}

impl futures_lite::AsyncRead for Tracked {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        self.poll_read_raw(cx, buf.as_mut_ptr(), buf.len())
    }
}

/// hyper reads straight into its buffer's spare room. (smol-hyper's adapter zeroes the whole
/// spare room before every read: several KB of stores per frame, a fifth of a relay node's
/// instructions.)
impl hyper::rt::Read for Tracked {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        // SAFETY: the bytes are only written (by the kernel), never read, before `advance`
        // counts the ones that were.
        let room = unsafe { buf.as_mut() };
        let n = match self.poll_read_raw(cx, room.as_mut_ptr().cast(), room.len()) {
            Poll::Ready(Ok(n)) => n,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        };
        // SAFETY: the read initialized the first `n` bytes.
        unsafe { buf.advance(n) };
        Poll::Ready(Ok(()))
    }
}

impl hyper::rt::Write for Tracked {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        futures_lite::AsyncWrite::poll_write(Pin::new(&mut &*self.io), cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        futures_lite::AsyncWrite::poll_write_vectored(Pin::new(&mut &*self.io), cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        futures_lite::AsyncWrite::poll_flush(Pin::new(&mut &*self.io), cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        futures_lite::AsyncWrite::poll_close(Pin::new(&mut &*self.io), cx)
    }
}

/// Has the reactor watch every socket whose reader waits for data, so a thread that is about to
/// sleep in the reactor wakes when one gets some. A reader whose wake-up the reactor already
/// holds is woken now.
pub fn arm_sockets() {
    for l in SOCKETS.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        if !l.ready.empty.load(Ordering::SeqCst) {
            continue;
        }
        let waker = std::task::Waker::from(l.ready.clone());
        let mut cx = Context::from_waker(&waker);
        // Ready means the reactor reported the socket since it was last armed (the report
        // may be stale: the reader has read since). Wake the reader, and arm again.
        if l.io.poll_readable(&mut cx).is_ready() {
            std::task::Wake::wake_by_ref(&l.ready);
            let _ = l.io.poll_readable(&mut cx);
        }
    }
}

/// Wakes the reader of every open connection whose socket has data (or an error or hang-up)
/// waiting, without blocking; returns how many it woke. Where it cannot look it wakes none, and
/// the caller's next pass of the reactor finds them.
pub fn wake_ready_sockets() -> usize {
    #[cfg(target_os = "linux")]
    {
        thread_local! {
            static FDS: std::cell::RefCell<(Vec<libc::pollfd>, Vec<Arc<Readiness>>)> =
                const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
        }
        FDS.with(|f| {
            let (fds, readers) = &mut *f.borrow_mut();
            fds.clear();
            readers.clear();
            for l in SOCKETS.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                // Only a reader that found its socket empty is waiting for data.
                if l.ready.empty.load(Ordering::SeqCst) {
                    fds.push(libc::pollfd {
                        fd: std::os::fd::AsRawFd::as_raw_fd(&*l.io),
                        events: libc::POLLIN,
                        revents: 0,
                    });
                    readers.push(l.ready.clone());
                }
            }
            if fds.is_empty() {
                return 0;
            }
            // SAFETY: `fds` is a valid array of `fds.len()` pollfd structs; timeout 0 never blocks.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 0) };
            if n <= 0 {
                return 0;
            }
            let mut woke = 0;
            for (p, r) in fds.iter().zip(readers.iter()) {
                if p.revents != 0 {
                    std::task::Wake::wake_by_ref(r);
                    woke += 1;
                }
            }
            woke
        })
    }
    #[cfg(not(target_os = "linux"))]
    {
        // No cheap look here: the reactor's next pass reports the sockets instead.
        arm_sockets();
        0
    }
}

/// hyper's executor: every background task of a connection is a cluster task.
#[derive(Clone, Copy)]
pub struct Spawner;

impl<F> hyper::rt::Executor<F> for Spawner
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        spawn(fut).detach();
    }
}

/// One HTTP/2 connection to a peer as the tower service tonic's generated clients call.
#[derive(Clone)]
pub struct Channel(hyper::client::conn::http2::SendRequest<Body>);

impl tower_service::Service<http::Request<Body>> for Channel {
    type Response = http::Response<Incoming>;
    type Error = hyper::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        Box::pin(self.0.send_request(req))
    }
}

/// Opens an HTTP/2 connection to `addr` (within `CONNECT_TIMEOUT`), with keep-alive pings.
pub async fn connect(addr: &str) -> Result<Channel, String> {
    connect_with(addr, KEEPALIVE_INTERVAL, true, CONNECT_TIMEOUT).await
}

/// `connect` with its own keep-alive interval (and whether to ping an idle connection) and
/// time to open.
pub async fn connect_with(
    addr: &str,
    keepalive: Duration,
    while_idle: bool,
    within: Duration,
) -> Result<Channel, String> {
    let open = async {
        let tcp = smol::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let _ = tcp.set_nodelay(true);
        let mut b = hyper::client::conn::http2::Builder::new(Spawner);
        b.timer(SmolTimer::new())
            .keep_alive_interval(keepalive)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(while_idle)
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW);
        let (send, conn) = b
            .handshake(Tracked::new(tcp))
            .await
            .map_err(|e| format!("HTTP/2 handshake failed: {e}"))?;
        spawn(async move {
            let _ = conn.await;
        })
        .detach();
        Ok(Channel(send))
    };
    let timeout = async {
        smol::Timer::after(within).await;
        Err(format!("no answer within {} ms", within.as_millis()))
    };
    futures_lite::future::or(open, timeout).await
}

/// The `http://addr` origin tonic clients need (HTTP/2 wants a scheme and an authority).
pub fn origin(addr: &str) -> Result<http::Uri, String> {
    format!("http://{addr}")
        .parse()
        .map_err(|e| format!("'{addr}': {e}"))
}

type Handler =
    Arc<dyn Fn(http::Request<Incoming>) -> BoxFuture<http::Response<Body>> + Send + Sync>;

/// Routes requests to gRPC services by their path prefix (`/package.Service/`), so more services
/// (the CollectiveDispatcher of issue 10) can share the node's one port.
#[derive(Clone, Default)]
pub struct Router {
    routes: Vec<(String, Handler)>,
}

impl Router {
    /// Adds a tonic-generated server (`XServer::new(..)`) under its service name
    /// (`weft.relay.Relay`).
    pub fn add<S>(mut self, service_name: &str, svc: S) -> Self
    where
        S: tower_service::Service<
                http::Request<Incoming>,
                Response = http::Response<Body>,
                Error = std::convert::Infallible,
            > + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        let handler: Handler = Arc::new(move |req| {
            let mut s = svc.clone();
            Box::pin(async move {
                match s.call(req).await {
                    Ok(r) => r,
                    Err(never) => match never {},
                }
            })
        });
        self.routes.push((format!("/{service_name}/"), handler));
        self
    }

    fn route(&self, req: http::Request<Incoming>) -> BoxFuture<http::Response<Body>> {
        let path = req.uri().path();
        match self
            .routes
            .iter()
            .find(|(p, _)| path.starts_with(p.as_str()))
        {
            Some((_, h)) => h(req),
            None => {
                let status = tonic::Status::unimplemented(format!("no service at {path}"));
                Box::pin(async move {
                    // Read the request out so the stream ends cleanly.
                    let _ = req.into_body().collect().await;
                    status.into_http()
                })
            }
        }
    }
}

/// How one accepted connection ended.
pub enum Ended {
    /// Closed after at least one request: a peer that went away.
    Closed(Option<String>),
    /// Failed before any request: not an HTTP/2 client (garbage on the port).
    NotGrpc(String),
}

/// The address a request came from (a request extension services can read).
#[derive(Clone, Copy, Debug)]
pub struct Remote(pub std::net::SocketAddr);

impl std::fmt::Display for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Serves one accepted TCP connection with `router` until it closes.
pub async fn serve(
    tcp: smol::net::TcpStream,
    remote: std::net::SocketAddr,
    router: Router,
) -> Ended {
    let _ = tcp.set_nodelay(true);
    let used = Arc::new(AtomicBool::new(false));
    let seen = used.clone();
    let svc = hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
        seen.store(true, Ordering::Relaxed);
        req.extensions_mut().insert(Remote(remote));
        let fut = router.route(req);
        async move { Ok::<_, std::convert::Infallible>(fut.await) }
    });
    let mut b = hyper::server::conn::http2::Builder::new(Spawner);
    b.timer(SmolTimer::new())
        .keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW);
    let r = b.serve_connection(Tracked::new(tcp), svc).await;
    match r {
        Ok(()) => Ended::Closed(None),
        Err(e) if !used.load(Ordering::Relaxed) => Ended::NotGrpc(e.to_string()),
        Err(e) => Ended::Closed(Some(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::AsyncRead;
    use std::io::Write;
    use std::sync::atomic::AtomicUsize;

    #[derive(Default)]
    struct Count(AtomicUsize);

    impl std::task::Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A loopback connection: the writing end, and the reading end as a `Tracked` socket.
    fn connected() -> (std::net::TcpStream, Tracked) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let writer = std::net::TcpStream::connect(addr).unwrap();
        let (server, _) = listener.accept().unwrap();
        let sock = Tracked::new(smol::net::TcpStream::try_from(server).unwrap());
        (writer, sock)
    }

    /// A short read leaves the socket marked empty, and a thread that then sleeps in the reactor
    /// (no busy-wait to look) still wakes when the next bytes come.
    #[test]
    fn a_sleeping_thread_wakes_for_data_on_a_socket_marked_empty() {
        use futures_lite::AsyncReadExt;
        let (mut writer, mut sock) = connected();
        writer.write_all(b"early").unwrap();
        let mut buf = [0u8; 16];
        let first = block_on(async {
            let n = sock.read(&mut buf).await.unwrap();
            buf[..n].to_vec()
        });
        assert_eq!(first, b"early");
        assert!(sock.ready.empty.load(Ordering::SeqCst), "short read marks");
        let late = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            writer.write_all(b"late").unwrap();
            writer
        });
        let second = block_on(futures_lite::future::or(
            async {
                let n = sock.read(&mut buf).await.unwrap();
                Some(buf[..n].to_vec())
            },
            async {
                smol::Timer::after(Duration::from_secs(5)).await;
                None
            },
        ));
        assert_eq!(
            second.as_deref(),
            Some(&b"late"[..]),
            "woken by the reactor"
        );
        drop(late.join());
    }

    /// hyper reads into its buffer's spare room as it is: only the bytes read are written (the
    /// adapter this replaces zeroed the whole spare room first, on every read).
    #[test]
    fn hyper_reads_touch_only_the_bytes_that_came() {
        use std::mem::MaybeUninit;
        let (mut writer, mut sock) = connected();
        writer.write_all(b"frame").unwrap();
        let mut room = [MaybeUninit::new(0xAAu8); 64];
        let mut buf = hyper::rt::ReadBuf::uninit(&mut room);
        let count = Arc::new(Count::default());
        let waker = std::task::Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            match hyper::rt::Read::poll_read(Pin::new(&mut sock), &mut cx, buf.unfilled()) {
                Poll::Ready(r) => break r.unwrap(),
                Poll::Pending => {
                    assert!(std::time::Instant::now() < deadline, "no data");
                    wake_ready_sockets();
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        assert_eq!(buf.filled(), b"frame");
        // SAFETY: every byte of `room` was initialized above.
        let rest: Vec<u8> = room[5..]
            .iter()
            .map(|b| unsafe { b.assume_init() })
            .collect();
        assert!(rest.iter().all(|&b| b == 0xAA), "spare room was written");
        assert!(
            sock.ready.empty.load(Ordering::SeqCst),
            "a short read marks"
        );
    }

    /// A reader that found its socket empty is not read again until someone reports data, and
    /// `wake_ready_sockets` is such a report: it wakes the reader, which then gets the bytes.
    #[test]
    fn a_reader_waiting_on_an_empty_socket_is_woken_by_the_busy_wait_look() {
        let (mut writer, mut sock) = connected();
        let count = Arc::new(Count::default());
        let waker = std::task::Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let mut buf = [0u8; 16];
        assert!(Pin::new(&mut sock)
            .poll_read(&mut cx, &mut buf)
            .is_pending());
        assert!(sock.ready.empty.load(Ordering::SeqCst), "marked empty");
        writer.write_all(b"frame").unwrap();
        // Until the data is reported, the reader does not try the socket again.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while count.0.load(Ordering::SeqCst) == 0 {
            wake_ready_sockets();
            assert!(std::time::Instant::now() < deadline, "never woken");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(
            !sock.ready.empty.load(Ordering::SeqCst),
            "the wake clears the mark"
        );
        match Pin::new(&mut sock).poll_read(&mut cx, &mut buf) {
            Poll::Ready(Ok(n)) => assert_eq!(&buf[..n], b"frame"),
            other => panic!("expected the bytes, got {other:?}"),
        }
        // A closed socket leaves the list.
        let ready = sock.ready.clone();
        drop(sock);
        let listed = SOCKETS
            .lock()
            .unwrap()
            .iter()
            .any(|l| Arc::ptr_eq(&l.ready, &ready));
        assert!(!listed);
    }
}
