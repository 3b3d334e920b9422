//! Datagrams off the simulated wire: opened by the receiver's guard when the network seals
//! (as the bindings do), then handed to the host or client. A forgery that opens, or a key
//! holder's datagram that does not, is a violation.

use fleet_engine::kv::Storage;
use fleet_engine::Instant;

use super::KvSim;
use crate::net::InFlight;

impl<S: Storage> KvSim<S> {
    pub(super) fn deliver_wire(&mut self, now: Instant, d: &InFlight) {
        match (self.net.open(d), d.forged) {
            (Ok(inner), false) => self.deliver(now, d.from, d.to, inner),
            (Err(_), true) => {}
            (Ok(_), true) => {
                self.net.auth_counts.forged_accepted += 1;
                self.violations.push(format!(
                    "auth: a forgery from {} to {} opened (no host accepts a datagram no key holder produced)",
                    d.from, d.to
                ));
            }
            (Err(e), false) => self
                .violations
                .push(format!("auth: a key holder's datagram from {} to {} did not open: {e}", d.from, d.to)),
        }
    }
}
