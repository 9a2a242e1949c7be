//! JSON lines of [`L7FlowLog`] written by a thread of their own, so that serializing rows costs
//! the capture loop only a channel send: the loop hands over whole batches (the `Vec` it
//! collected), the thread writes them with [`L7FlowLog::write_json`] in 64 KiB chunks, drops
//! the rows and gives the emptied `Vec` back for reuse. The channel is bounded, so a slow output
//! slows the loop down instead of growing memory.

use std::io::{self, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use super::l7::L7FlowLog;

/// Batches in flight between the loop and the writer thread.
const IN_FLIGHT: usize = 4;
/// Bytes of JSON gathered before each write.
const CHUNK: usize = 1 << 16;

/// A writer thread for JSON lines of [`L7FlowLog`] (one object and `\n` per row).
pub struct JsonlThread {
    tx: Option<SyncSender<Vec<L7FlowLog>>>,
    back: Receiver<Vec<L7FlowLog>>,
    handle: Option<JoinHandle<Outcome>>,
}

/// What the thread did: rows written and the first write error, if any.
struct Outcome {
    rows: u64,
    error: Option<io::Error>,
}

impl JsonlThread {
    /// Starts the thread writing to `out` (flushed after every batch, so that live output
    /// appears as it is produced).
    pub fn spawn<W: Write + Send + 'static>(out: W) -> io::Result<Self> {
        let (tx, rx) = sync_channel::<Vec<L7FlowLog>>(IN_FLIGHT);
        let (back_tx, back) = sync_channel::<Vec<L7FlowLog>>(IN_FLIGHT);
        let handle =
            std::thread::Builder::new().name("jsonl-writer".into()).spawn(move || write_batches(out, &rx, &back_tx))?;
        Ok(JsonlThread { tx: Some(tx), back, handle: Some(handle) })
    }

    /// Hands the rows in `rows` to the thread; `rows` is left empty (with the capacity of an
    /// earlier batch when one has come back). After a write error the rows are still taken,
    /// and dropped: [`JsonlThread::finish`] reports the error.
    pub fn send(&mut self, rows: &mut Vec<L7FlowLog>) {
        if rows.is_empty() {
            return;
        }
        let mut spare = self.back.try_recv().unwrap_or_default();
        // room for a batch like this one, allocated while empty: the loop's pushes never
        // move rows to grow it
        spare.reserve(rows.len());
        let batch = std::mem::replace(rows, spare);
        if let Some(tx) = &self.tx {
            // an error means the thread is gone (it only ends when the sender is dropped, or
            // by a panic): the batch is dropped here
            let _ = tx.send(batch);
        }
    }

    /// Waits for every handed-over row to be written; returns the rows written, or the first
    /// write error.
    pub fn finish(mut self) -> io::Result<u64> {
        self.join()
    }

    fn join(&mut self) -> io::Result<u64> {
        self.tx = None;
        let Some(h) = self.handle.take() else { return Ok(0) };
        match h.join() {
            Ok(Outcome { error: Some(e), .. }) => Err(e),
            Ok(Outcome { rows, error: None }) => Ok(rows),
            Err(_) => Err(io::Error::other("the JSON lines writer thread panicked")),
        }
    }
}

impl Drop for JsonlThread {
    fn drop(&mut self) {
        let _ = self.join();
    }
}

fn write_batches<W: Write>(mut out: W, rx: &Receiver<Vec<L7FlowLog>>, back: &SyncSender<Vec<L7FlowLog>>) -> Outcome {
    let mut line = Vec::with_capacity(CHUNK * 2);
    let mut o = Outcome { rows: 0, error: None };
    while let Ok(mut batch) = rx.recv() {
        if o.error.is_none() {
            for r in &batch {
                r.write_json(&mut line);
                line.push(b'\n');
                if line.len() >= CHUNK {
                    if let Err(e) = out.write_all(&line) {
                        o.error = Some(e);
                        break;
                    }
                    line.clear();
                }
            }
            if o.error.is_none() {
                let res = out.write_all(&line).and_then(|()| out.flush());
                match res {
                    Ok(()) => o.rows += batch.len() as u64,
                    Err(e) => o.error = Some(e),
                }
            }
            line.clear();
        }
        batch.clear();
        // for reuse by the loop; dropped when the loop already holds enough spares
        let _ = back.try_send(batch);
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A `Write` that appends to a shared buffer (and can be told to fail).
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>, bool);

    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            if self.1 {
                return Err(io::Error::new(io::ErrorKind::BrokenPipe, "closed"));
            }
            self.0.lock().map_err(|_| io::Error::other("poisoned"))?.extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn row(i: u64) -> L7FlowLog {
        let flow = crate::FlowInfo {
            flow_id: i,
            protocol: 6,
            client_ip: std::net::IpAddr::from([127, 0, 0, 1]),
            server_ip: std::net::IpAddr::from([127, 0, 0, 2]),
            client_port: 40000,
            server_port: 80,
            tunnel: Default::default(),
            start_time_us: i,
        };
        let mut r = L7FlowLog::new(&flow, crate::record::L7Protocol::Http1, crate::record::LogType::Session);
        r.request_resource = Some(format!("/r/{i}\n\"q\""));
        r
    }

    #[test]
    fn writes_every_row_in_order_as_serde_json_would() {
        let out = Shared::default();
        let mut t = JsonlThread::spawn(out.clone()).unwrap();
        let mut expected = Vec::new();
        let mut rows = Vec::new();
        for i in 0..5000u64 {
            let r = row(i);
            serde_json::to_writer(&mut expected, &r).unwrap();
            expected.push(b'\n');
            rows.push(r);
            if i % 700 == 0 {
                t.send(&mut rows);
                assert!(rows.is_empty());
            }
        }
        t.send(&mut rows);
        assert_eq!(t.finish().unwrap(), 5000);
        assert_eq!(*out.0.lock().unwrap(), expected);
    }

    #[test]
    fn a_write_error_is_reported_and_the_rows_are_still_taken() {
        let mut t = JsonlThread::spawn(Shared(Arc::default(), true)).unwrap();
        for i in 0..20 {
            let mut rows = vec![row(i); 100];
            t.send(&mut rows);
            assert!(rows.is_empty());
        }
        assert_eq!(t.finish().unwrap_err().kind(), io::ErrorKind::BrokenPipe);
    }
}
