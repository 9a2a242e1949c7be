//! The agent's [`Sender`] as the controller client needs it: the ingester in use, switching
//! ingesters, and the sender's counters under the names the controller reports, kept after the
//! sender is closed for the final sync. deepflow-loadgen includes this file (`#[path]`) for its
//! simulated agents, so both report the same counters.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use deepflow_store::transport::{Sender, SenderStats};

/// A sender shared with the controller thread (see `controller::Host`).
pub struct SenderSlot {
    /// `None` once released (then `last` holds its final counters).
    sender: Mutex<Option<Arc<Sender>>>,
    last: Mutex<SenderStats>,
    /// The ingester in use when last asked (reported after the sender is released).
    last_ingester: Mutex<Option<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SenderSlot {
    /// A slot holding `sender`.
    pub fn new(sender: Arc<Sender>) -> Self {
        SenderSlot { sender: Mutex::new(Some(sender)), last: Mutex::default(), last_ingester: Mutex::default() }
    }

    fn sender(&self) -> Option<Arc<Sender>> {
        lock(&self.sender).clone()
    }

    /// The sender's counters now (the last known ones once released).
    pub fn stats(&self) -> SenderStats {
        match self.sender() {
            Some(s) => {
                let st = s.stats();
                *lock(&self.last) = st.clone();
                st
            }
            None => lock(&self.last).clone(),
        }
    }

    /// Stops using the sender (so that its owner can close it); its ingester is remembered.
    pub fn release(&self) {
        self.current_ingester();
        lock(&self.sender).take();
    }

    /// The final counters of the closed sender, for the last sync.
    pub fn set_final(&self, stats: SenderStats) {
        *lock(&self.last) = stats;
    }

    /// The ingester URL calls go to now (the last one once released).
    pub fn current_ingester(&self) -> Option<String> {
        let mut last = lock(&self.last_ingester);
        if let Some(s) = self.sender() {
            let (urls, i) = s.servers();
            *last = urls.get(i).cloned();
        }
        last.clone()
    }

    /// Sends to these ingesters from now on (nothing to do once released).
    pub fn set_ingesters(&self, urls: &[String]) -> Result<(), String> {
        match self.sender() {
            Some(s) => s.set_servers(urls.to_vec()).map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }

    /// The sender's counters under the names the controller shows.
    pub fn counters(&self) -> BTreeMap<String, u64> {
        let s = self.stats();
        [
            ("rows_sent", s.rows_queued),
            ("rows_acked", s.rows_acked),
            ("batches_sent", s.batches_queued),
            ("batches_acked", s.batches_acked),
            ("batches_spilled", s.batches_spilled),
            ("rows_buffered", s.buffered_rows),
            ("rows_dropped", s.rows_dropped),
            ("rows_rejected", s.rows_rejected),
            ("duplicate_acks", s.duplicate_acks),
            ("retries", s.retries),
            ("failovers", s.failovers),
            ("auth_failures", s.auth_failures),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}
