//! Counting what each client address holds open (TCP connections, sockets) so that one
//! address cannot take every slot: a count per address, and a guard that gives the slot back
//! when what it counts closes. An address with nothing open has no entry, so the table is as
//! large as what is open, never larger.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

/// The key one client is counted under: its IPv4 address, or its IPv6 /64 (one LAN or one
/// host's privacy addresses; a client picking new addresses in its /64 is still one client).
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        v4 => v4,
    }
}

/// Open things per client address.
#[derive(Debug, Default)]
pub struct PerAddress {
    counts: Mutex<HashMap<IpAddr, usize>>,
}

impl PerAddress {
    pub fn new() -> Arc<PerAddress> {
        Arc::new(PerAddress::default())
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Count one more for `ip` if it holds fewer than `limit`; `None` when it is at the limit.
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr, limit: usize) -> Option<AddressSlot> {
        let key = client_key(ip);
        let mut counts = self.lock();
        let count = counts.entry(key).or_insert(0);
        if *count >= limit {
            if *count == 0 {
                counts.remove(&key);
            }
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            table: Arc::clone(self),
            key,
        })
    }

    /// How many `ip`'s client holds now.
    pub fn count(&self, ip: IpAddr) -> usize {
        self.lock().get(&client_key(ip)).copied().unwrap_or(0)
    }

    /// Addresses holding something now.
    pub fn addresses(&self) -> usize {
        self.lock().len()
    }
}

/// One counted thing; dropping it gives the slot back.
#[derive(Debug)]
pub struct AddressSlot {
    table: Arc<PerAddress>,
    key: IpAddr,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut counts = self.table.lock();
        if let Some(count) = counts.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_up_to_the_limit_and_forgets_addresses_with_nothing_open() {
        let table = PerAddress::new();
        let a: IpAddr = [10, 0, 0, 1].into();
        let first = table.try_acquire(a, 2).expect("first");
        let second = table.try_acquire(a, 2).expect("second");
        assert!(table.try_acquire(a, 2).is_none());
        assert!(table.try_acquire([10, 0, 0, 2].into(), 2).is_some());
        drop(first);
        let third = table.try_acquire(a, 2).expect("room given back");
        drop((second, third));
        assert_eq!(table.addresses(), 0);
        assert!(table.try_acquire(a, 0).is_none());
        assert_eq!(table.addresses(), 0, "a refusal leaves no entry");
    }

    #[test]
    fn ipv6_clients_are_counted_per_64_and_mapped_ipv4_as_ipv4() {
        let one: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        assert_eq!(client_key(one), client_key(same));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(client_key(mapped), IpAddr::from([10, 0, 0, 1]));
    }
}
