//! The store of a std KV host: an ordered map on the heap behind the engine's
//! [`Storage`] trait.

use std::collections::BTreeMap;

use fleet_engine::kv::storage::{Storage, StorageError};

/// An ordered, heap-backed store for a std KV host: at most `capacity` keys.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StdStore {
    map: BTreeMap<u64, Vec<u8>>,
    capacity: usize,
    max_value: usize,
}

impl StdStore {
    /// An empty store of at most `capacity` keys of at most `max_value` bytes.
    pub fn new(capacity: usize, max_value: usize) -> StdStore {
        StdStore { map: BTreeMap::new(), capacity, max_value }
    }
}

impl Storage for StdStore {
    fn get(&self, key: u64) -> Option<&[u8]> {
        self.map.get(&key).map(Vec::as_slice)
    }
    fn set(&mut self, key: u64, value: &[u8]) -> Result<(), StorageError> {
        if value.len() > self.max_value {
            return Err(StorageError::TooLarge);
        }
        if !self.map.contains_key(&key) && self.map.len() >= self.capacity {
            return Err(StorageError::Full);
        }
        self.map.insert(key, value.to_vec());
        Ok(())
    }
    fn delete(&mut self, key: u64) -> bool {
        self.map.remove(&key).is_some()
    }
    fn next_at_or_after(&self, key: u64) -> Option<(u64, &[u8])> {
        self.map.range(key..).next().map(|(k, v)| (*k, v.as_slice()))
    }
    fn len(&self) -> usize {
        self.map.len()
    }
    fn capacity(&self) -> usize {
        self.capacity
    }
    fn max_value_bytes(&self) -> usize {
        self.max_value
    }
}
