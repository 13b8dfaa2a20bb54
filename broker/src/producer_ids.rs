//! Producer ids for InitProducerId. Ids are handed out from blocks that the controller reserves
//! durably in the metadata log before the first id of a block is used, so an id is never given
//! to two producers, across restarts included (Kafka's ProducerIdManager).

use std::ops::Range;

use parking_lot::Mutex;

use crate::broker::Broker;
use crate::controller::ApiError;

/// Producer ids reserved per metadata commit (Kafka's block size).
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1000;

/// The ids left in this broker's current block.
#[derive(Debug, Default)]
pub struct ProducerIdAllocator {
    block: Mutex<Range<i64>>,
}

impl ProducerIdAllocator {
    /// The next unused producer id; reserves a new block when the current one is used up
    /// (a metadata commit with an fsync: call through `Broker::blocking`).
    pub fn next_id(&self, broker: &Broker) -> Result<i64, ApiError> {
        let mut block = self.block.lock();
        if block.is_empty() {
            *block = broker.allocate_producer_id_block(PRODUCER_ID_BLOCK_SIZE)?;
        }
        let id = block.start;
        block.start += 1;
        Ok(id)
    }
}
