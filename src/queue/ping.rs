//! [`Queue::ping`]: a sign of life of the writer thread and its sync thread, for the systemd
//! watchdog. An idle writer waits for commands, so silence proves nothing; a command that goes
//! through a (write-less) transaction and then past the sync thread does: it is answered only
//! while both threads are taking work, behind whatever they were doing when it came.

use super::{Op, Queue, QueueError};

impl Queue {
    /// Answers once the writer has run a transaction for it and the sync thread has passed it.
    /// A refusal (the queue stopped, the disk is full) is an answer too: the threads are alive.
    pub async fn ping(&self) -> Result<(), QueueError> {
        self.call(|reply| Op::Ping { reply }).await
    }
}
