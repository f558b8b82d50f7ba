//! Who hears of commits. Every batch's transitions go, once the batch is durable and in commit
//! order, to the one listener the application installs (the event bus); and when a batch made
//! a job leasable, the dispatcher's notification fires. The sync thread announces, so nobody
//! outside the queue has to remember to publish an event or wake the dispatcher.

use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::Notify;

use super::model::Committed;

/// Hears every durable commit's transitions, in commit order, on the queue's sync thread; it
/// must return quickly (publish and go).
pub type Listener = Arc<dyn Fn(&Committed) + Send + Sync>;

#[derive(Default)]
pub(crate) struct Announcer {
    listener: RwLock<Option<Listener>>,
    /// What the opening recovery did, until a listener is installed to hear it.
    recovered: Mutex<Option<Committed>>,
    ready: Arc<Notify>,
}

impl Announcer {
    pub(crate) fn with_recovered(recovered: Committed) -> Self {
        Announcer {
            recovered: Mutex::new((!recovered.is_empty()).then_some(recovered)),
            ..Announcer::default()
        }
    }

    /// Installs the listener; it hears the opening recovery first.
    pub(crate) fn listen(&self, listener: Listener) {
        let mut slot = self.listener.write().expect("listener lock");
        if let Some(c) = self.recovered.lock().expect("recovered lock").take() {
            listener(&c);
        }
        *slot = Some(listener);
        self.ready.notify_one();
    }

    /// A durable batch: its transitions to the listener, and a wake-up for the dispatcher when
    /// something became leasable.
    pub(crate) fn announce(&self, committed: &Committed, wake: bool) {
        if !committed.is_empty()
            && let Some(l) = self.listener.read().expect("listener lock").as_ref()
        {
            l(committed);
        }
        if wake {
            self.ready.notify_one();
        }
    }

    /// Fires when a job may have become leasable (stored as a permit if nobody waits).
    pub(crate) fn ready(&self) -> Arc<Notify> {
        Arc::clone(&self.ready)
    }
}
