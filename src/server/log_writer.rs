//! Log lines gathered on their way out, so that a busy engine writes its log a tenth
//! of a second at a time instead of with one system call per line.
//!
//! At `info` every call writes one line when it ends (its record). At 500 calls/s
//! that was 500 `write`s a second to a file or journald's pipe, 3% of the engine
//! thread's CPU per call (BENCHMARKS.md, session 25). The rule here, as nginx's
//! `access_log … buffer= flush=` does it, but with nothing to configure:
//!
//! - a line after a quiet spell (nothing written for [`GATHER`]) goes out at once,
//!   so a lone line (starting, reloading, an occasional call) is never held back;
//! - a line that follows a write less than [`GATHER`] ago is held, with those
//!   after it, until [`GATHER`] after that write, and then they go out in one write
//!   (from a thread of the logger's own, `callflow-log`, so that a quiet engine does
//!   not have to wake for it; or with the first line after that time, if sooner);
//! - a warning or an error goes out at once, with what was held before it, in order;
//! - so does everything held, once [`LIMIT`] bytes are;
//! - [`LogFlush::flush`] writes what is held (before the process exits), and
//!   [`LogFlush::flush_if_free`] before a panic's message.
//!
//! A line is therefore late by at most [`GATHER`], and only under a steady flow of
//! lines. A process killed with SIGKILL loses what was held: at most the lines of
//! the last tenth of a second.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// How long lines are held at most, and how quiet the log must have been for a
/// line to go out at once.
pub const GATHER: Duration = Duration::from_millis(100);

/// Held lines go out once they reach this many bytes.
pub const LIMIT: usize = 64 * 1024;

/// The log's writer, as the subscriber is given it: every line goes to the one
/// output through [`Shared`].
pub struct Gathered {
    /// The output and what is held for it.
    shared: Arc<Shared>,
}

/// Writes what [`Gathered`] holds, on demand.
#[derive(Clone)]
pub struct LogFlush {
    /// The same as the writer's.
    shared: Arc<Shared>,
}

/// The output, what is held for it, and the thread that writes held lines out.
struct Shared {
    /// The output and what is held.
    state: Mutex<State>,
    /// Wakes the `callflow-log` thread when lines are first held.
    held: Condvar,
    /// The `callflow-log` thread, started with the first line held (a logger that
    /// never holds a line, or is never installed, has no thread).
    flusher: OnceLock<()>,
}

/// What [`Shared`]'s lock guards.
struct State {
    /// Where lines go.
    out: Box<dyn Write + Send>,
    /// Lines held, in order.
    held: Vec<u8>,
    /// When lines last went out (`None`: never).
    written: Option<Instant>,
}

/// One line's writer: the line goes to the shared output when it is written.
pub struct Line<'a> {
    /// The output.
    shared: &'a Arc<Shared>,
    /// A warning or an error: it and what is held go out at once.
    urgent: bool,
}

impl Gathered {
    /// A writer gathering lines for `out`, and the handle that flushes it.
    pub fn new(out: impl Write + Send + 'static) -> (Gathered, LogFlush) {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                out: Box::new(out),
                held: Vec::new(),
                written: None,
            }),
            held: Condvar::new(),
            flusher: OnceLock::new(),
        });
        let flush = LogFlush {
            shared: shared.clone(),
        };
        (Gathered { shared }, flush)
    }
}

impl LogFlush {
    /// Writes out every line held now.
    pub fn flush(&self) {
        self.shared.lock().write_out();
    }

    /// Writes out every line held now, unless the log is in use (a panic on the
    /// thread that holds it must not wait for itself).
    pub fn flush_if_free(&self) {
        let mut state = match self.shared.state.try_lock() {
            Ok(state) => state,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return,
        };
        state.write_out();
    }
}

impl<'a> MakeWriter<'a> for Gathered {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Line<'a> {
        Line {
            shared: &self.shared,
            urgent: false,
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Line<'a> {
        Line {
            shared: &self.shared,
            urgent: *meta.level() <= Level::WARN,
        }
    }
}

impl Write for Line<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.shared.put(bytes, self.urgent, Instant::now());
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes `bytes` out now, with what is held, or holds them (see the module's
    /// rule).
    fn put(self: &Arc<Shared>, bytes: &[u8], urgent: bool, now: Instant) {
        let mut state = self.lock();
        let first = state.held.is_empty();
        let quiet = state
            .written
            .is_none_or(|at| now.saturating_duration_since(at) >= GATHER);
        state.held.extend_from_slice(bytes);
        if urgent || quiet || state.held.len() >= LIMIT {
            state.write_out();
        } else if first {
            drop(state);
            self.start_flusher();
            self.held.notify_one();
        }
    }

    /// Starts the `callflow-log` thread, once; it lives as long as the process. If
    /// it cannot start, held lines go out with the next line written after
    /// [`GATHER`], or at the next flush.
    fn start_flusher(self: &Arc<Shared>) {
        self.flusher.get_or_init(|| {
            let shared = self.clone();
            let started = std::thread::Builder::new()
                .name("callflow-log".into())
                .spawn(move || shared.flush_held());
            if let Err(e) = started {
                // Not through `tracing`: this is its writer.
                eprintln!("callflow: log lines are held until the next one: {e}");
            }
        });
    }

    /// The `callflow-log` thread: waits for held lines, then writes them out
    /// [`GATHER`] after the write before them.
    fn flush_held(&self) {
        let mut state = self.lock();
        loop {
            while state.held.is_empty() {
                state = self
                    .held
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            let due = state.written.map_or_else(Instant::now, |at| at + GATHER);
            loop {
                let left = due.saturating_duration_since(Instant::now());
                if left.is_zero() || state.held.is_empty() {
                    break;
                }
                state = self
                    .held
                    .wait_timeout(state, left)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            state.write_out();
        }
    }
}

impl State {
    /// Writes what is held. A failed write is dropped, as `tracing`'s own writers
    /// do: there is nowhere to log it.
    fn write_out(&mut self) {
        if self.held.is_empty() {
            return;
        }
        let _ = self.out.write_all(&self.held);
        let _ = self.out.flush();
        self.held.clear();
        if self.held.capacity() > 4 * LIMIT {
            self.held.shrink_to(LIMIT);
        }
        self.written = Some(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An output that keeps each write apart.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<String>>>);

    impl Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            let mut writes = self.0.lock().unwrap();
            writes.push(String::from_utf8_lossy(bytes).into_owned());
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Sink {
        fn writes(&self) -> Vec<String> {
            self.0.lock().unwrap().clone()
        }

        /// The writes once there are `n`, or after 2 s.
        fn wait_for(&self, n: usize) -> Vec<String> {
            let end = Instant::now() + Duration::from_secs(2);
            while self.writes().len() < n && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(5));
            }
            self.writes()
        }
    }

    fn gathered() -> (Sink, Gathered, LogFlush) {
        let sink = Sink::default();
        let (writer, flush) = Gathered::new(sink.clone());
        (sink, writer, flush)
    }

    fn put(w: &Gathered, line: &str, urgent: bool) {
        w.shared.put(line.as_bytes(), urgent, Instant::now());
    }

    /// A line after a quiet spell goes out at once; the lines right after it are
    /// held and go out together, in order, a tenth of a second after it.
    #[test]
    fn lines_after_a_write_are_gathered_for_a_tenth_of_a_second() {
        let (sink, w, _) = gathered();
        let start = Instant::now();
        put(&w, "a\n", false);
        assert_eq!(sink.writes(), ["a\n"]);
        put(&w, "b\n", false);
        put(&w, "c\n", false);
        assert_eq!(sink.writes(), ["a\n"], "held");
        assert_eq!(sink.wait_for(2), ["a\n", "b\nc\n"]);
        assert!(start.elapsed() >= GATHER, "{:?}", start.elapsed());
        // Quiet again: the next line goes out at once.
        std::thread::sleep(GATHER);
        put(&w, "d\n", false);
        assert_eq!(sink.writes(), ["a\n", "b\nc\n", "d\n"]);
    }

    /// A warning or an error goes out at once, after what was held before it.
    #[test]
    fn an_urgent_line_goes_out_at_once_after_what_was_held() {
        let (sink, w, _) = gathered();
        put(&w, "a\n", false);
        put(&w, "b\n", false);
        put(&w, "warning\n", true);
        assert_eq!(sink.writes(), ["a\n", "b\nwarning\n"]);
    }

    /// Held lines go out once they reach the limit, and on a flush.
    #[test]
    fn held_lines_go_out_at_the_limit_and_on_a_flush() {
        let (sink, w, flush) = gathered();
        put(&w, "a\n", false);
        put(&w, "b\n", false);
        flush.flush();
        assert_eq!(sink.writes(), ["a\n", "b\n"]);
        let long = "x".repeat(LIMIT);
        put(&w, &long, false);
        assert_eq!(sink.writes().len(), 3, "a limit's worth goes at once");
        flush.flush();
        assert_eq!(sink.writes().len(), 3, "nothing was left");
    }

    /// Through `tracing`: a warning is urgent by its level, an info line is not.
    #[test]
    fn the_subscriber_marks_warnings_urgent() {
        let (sink, w, _) = gathered();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .without_time()
            .with_target(false)
            .with_writer(w)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("one");
            tracing::info!("two");
            tracing::warn!("three");
        });
        let writes = sink.writes();
        assert_eq!(writes.len(), 2, "{writes:?}");
        assert!(writes[0].contains("one") && !writes[0].contains("two"));
        assert!(
            writes[1].contains("two") && writes[1].contains("WARN") && writes[1].contains("three")
        );
    }
}
