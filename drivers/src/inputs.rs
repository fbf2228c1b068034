//! The channel that carries inputs to the node's thread (signals, terminal lines, world
//! completions, frames from the network). Senders on any thread never block; the node's thread
//! can wait for it inside the executor that runs the cluster's sockets, so a frame read on that
//! thread reaches the node without a thread switch.

use weft_engine::Input;

#[derive(Clone)]
pub struct InputTx(async_channel::Sender<Input>);

pub struct InputRx(async_channel::Receiver<Input>);

/// An unbounded channel of inputs.
pub fn channel() -> (InputTx, InputRx) {
    let (tx, rx) = async_channel::unbounded();
    (InputTx(tx), InputRx(rx))
}

impl InputTx {
    /// Hands `i` to the node; an error when the node is gone.
    pub fn send(&self, i: Input) -> Result<(), Input> {
        self.0.try_send(i).map_err(|e| e.into_inner())
    }
}

impl InputRx {
    /// An input that has already arrived.
    pub fn try_recv(&self) -> Option<Input> {
        self.0.try_recv().ok()
    }

    /// The next input (None: every sender is gone).
    pub async fn recv(&self) -> Option<Input> {
        self.0.recv().await.ok()
    }

    /// Blocks this thread for the next input, at most `within`.
    #[cfg(test)]
    pub fn recv_timeout(&self, within: std::time::Duration) -> Option<Input> {
        if let Some(i) = self.try_recv() {
            return Some(i);
        }
        smol::block_on(futures_lite::future::or(self.recv(), async {
            smol::Timer::after(within).await;
            None
        }))
    }
}
