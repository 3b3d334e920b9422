//! Request groups: how a pipelined client session packs several requests into one datagram.
//!
//! A group is one client request with one seqno ([`RslMsg::Requests`](super::RslMsg)), so
//! the reply cache's exactly-once rule covers it whole: it is proposed as one batch entry,
//! and every replica applies its requests in the client's order, all of them, one after
//! the other. Its reply ([`RslMsg::Replies`](super::RslMsg)) holds one sub-reply per
//! request, cached and re-sent like any reply.
//!
//! Encodings (postcard, back to back, no count):
//! - a group: each request as a byte string, at least 1 and at most
//!   [`MAX_GROUP_REQUESTS`] of them;
//! - a group's reply: each request's reply as `Option<bytes>`, in request order. `None`
//!   means the request **was applied** but its reply did not fit in the replica's reply
//!   capacity beside the earlier ones; a reply shorter than the group means the same for
//!   the requests it lacks. Whether a request is applied never depends on reply sizes, so
//!   replicas built with different reply capacities keep identical states. A client
//!   resends a query that came back unanswered (applying it changed nothing); an update
//!   should have a reply small enough to always fit.

use crate::reader::Reader;
use crate::wire::{self, Bytes};

/// Most requests in one group: a client session's pipeline depth.
pub const MAX_GROUP_REQUESTS: usize = 64;

/// Room a group's reply keeps for each request after the one being answered: enough for a
/// short reply (a status, a counter), so that large replies early in a group (reads) do
/// not leave the updates after them unanswered.
pub const SHORT_REPLY_BYTES: usize = 8;

/// Bytes of a reply datagram around a group's reply: header, tag, seqno, length prefix.
pub const REPLY_MESSAGE_OVERHEAD_BYTES: usize = wire::RSL_HEADER_BYTES + 1 + 10 + 3;

/// How many bytes a group's reply may take, for replicas with `reply_capacity`-byte replies
/// and `max_datagram_bytes`-byte datagrams: it must be sent, and re-sent from the cache, in
/// one datagram.
pub fn reply_room(reply_capacity: usize, max_datagram_bytes: usize) -> usize {
    reply_capacity.min(max_datagram_bytes.saturating_sub(REPLY_MESSAGE_OVERHEAD_BYTES))
}

/// Group bytes that are not 1 to [`MAX_GROUP_REQUESTS`] whole byte strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidGroup;

/// Checks that `group` is 1 to [`MAX_GROUP_REQUESTS`] whole requests; returns the count.
pub fn validate(group: &[u8]) -> Result<usize, InvalidGroup> {
    let mut reader = Reader::new(group);
    let mut count = 0;
    while !reader.rest.is_empty() {
        if count == MAX_GROUP_REQUESTS || reader.bytes().is_none() {
            return Err(InvalidGroup);
        }
        count += 1;
    }
    if count == 0 {
        return Err(InvalidGroup);
    }
    Ok(count)
}

/// Iterates the requests of a group (ends early at bytes that do not parse).
/// Read by hand (the engine's postcard reader, not serde): every replica reads every group it
/// executes.
#[derive(Clone, Debug)]
pub struct Requests<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Requests<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        let mut reader = Reader::new(self.rest);
        let request = reader.bytes();
        // Bytes that do not parse end the iteration for good.
        self.rest = if request.is_some() { reader.rest } else { &[] };
        request
    }
}

/// The requests of `group`.
pub fn requests(group: &[u8]) -> Requests<'_> {
    Requests { rest: group }
}

/// Packs the longest prefix of `requests` (at most [`MAX_GROUP_REQUESTS`]) that fits in
/// `out`; returns the bytes written and how many requests they hold.
pub fn encode(requests: &[&[u8]], out: &mut [u8]) -> (usize, usize) {
    let mut len = 0;
    let mut count = 0;
    for request in requests.iter().take(MAX_GROUP_REQUESTS) {
        match wire::append_slice(&mut out[len..], &Bytes(request)) {
            Some(n) => len += n,
            None => break,
        }
        count += 1;
    }
    (len, count)
}

/// Writes a group's reply into a caller's buffer, one sub-reply after another.
#[derive(Debug)]
pub struct ReplyWriter<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl<'b> ReplyWriter<'b> {
    /// A writer filling `buf` from its start.
    pub fn new(buf: &'b mut [u8]) -> Self {
        ReplyWriter { buf, len: 0 }
    }

    /// Appends the next request's reply, keeping [`SHORT_REPLY_BYTES`] free for each of the
    /// `later` requests after it; if it does not fit, appends the unanswered marker instead
    /// (or nothing, if not even that fits).
    pub fn push(&mut self, reply: &[u8], later: usize) {
        let reserve = later.saturating_mul(SHORT_REPLY_BYTES);
        let room = self.buf.len().saturating_sub(self.len).saturating_sub(reserve);
        match wire::append_slice(&mut self.buf[self.len..self.len + room], &Some(Bytes(reply))) {
            Some(n) => self.len += n,
            None => self.push_unanswered(),
        }
    }

    fn push_unanswered(&mut self) {
        if let Some(n) = wire::append_slice(&mut self.buf[self.len..], &None::<Bytes<'_>>) {
            self.len += n;
        }
    }

    /// The reply written so far.
    pub fn written(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Iterates a group's reply: `Some(reply)` per answered request, `None` per request that
/// was applied without room for its reply. Stops at the end (or at bytes that do not parse);
/// requests beyond the last sub-reply were applied without room for theirs.
#[derive(Clone, Debug)]
pub struct Replies<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Replies<'a> {
    type Item = Option<&'a [u8]>;
    fn next(&mut self) -> Option<Option<&'a [u8]>> {
        let (reply, rest) = postcard::take_from_bytes::<Option<Bytes<'a>>>(self.rest).ok()?;
        self.rest = rest;
        Some(reply.map(|b| b.0))
    }
}

/// The sub-replies of a group's reply.
pub fn replies(reply: &[u8]) -> Replies<'_> {
    Replies { rest: reply }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_round_trips_and_packs_only_what_fits() {
        let reqs: [&[u8]; 3] = [b"a", b"bc", b""];
        let mut buf = [0u8; 64];
        let (len, count) = encode(&reqs, &mut buf);
        assert_eq!((len, count), (6, 3));
        assert_eq!(validate(&buf[..len]), Ok(3));
        assert!(requests(&buf[..len]).eq(reqs.iter().copied()));
        let (len, count) = encode(&reqs, &mut buf[..4]);
        assert_eq!((len, count), (2, 1), "\"bc\" needs 3 bytes, 2 are left");
        assert_eq!(validate(&[]), Err(InvalidGroup), "an empty group");
        assert_eq!(validate(&[5, b'x']), Err(InvalidGroup), "a truncated request");
    }

    #[test]
    fn a_group_holds_at_most_max_group_requests() {
        let many = [&b""[..]; MAX_GROUP_REQUESTS + 1];
        let mut buf = [0u8; 128];
        let (len, count) = encode(&many, &mut buf);
        assert_eq!(count, MAX_GROUP_REQUESTS);
        assert_eq!(validate(&buf[..len]), Ok(MAX_GROUP_REQUESTS));
        assert_eq!(validate(&[0u8; MAX_GROUP_REQUESTS + 1]), Err(InvalidGroup));
    }

    #[test]
    fn a_reply_that_does_not_fit_becomes_unanswered_and_leaves_room_for_the_rest() {
        let mut buf = [0u8; 2 * SHORT_REPLY_BYTES + 4];
        let mut w = ReplyWriter::new(&mut buf);
        w.push(b"ab", 2);
        w.push(b"toolong", 1);
        w.push(b"c", 0);
        let got: heapless::Vec<Option<&[u8]>, 4> = replies(w.written()).collect();
        assert_eq!(&got[..], &[Some(&b"ab"[..]), None, Some(&b"c"[..])]);
        let mut tiny = [0u8; 1];
        let mut w = ReplyWriter::new(&mut tiny);
        w.push(b"x", 1);
        w.push(b"y", 0);
        assert_eq!(replies(w.written()).count(), 1, "only one marker fits; the rest is implied");
        assert_eq!(reply_room(1100, 1472), 1100);
        assert_eq!(reply_room(4096, 1472), 1472 - REPLY_MESSAGE_OVERHEAD_BYTES, "one datagram bounds it");
    }

    /// The hand-read requests and count agree with postcard's reading of the same bytes:
    /// valid groups, groups cut short, corrupted ones and random bytes.
    #[test]
    fn requests_are_read_as_postcard_reads_them() {
        let mut rng = crate::test_rng::TestRng(0x6a09_e667_f3bc_c908);
        let mut buf = [0u8; 600];
        for round in 0..50_000 {
            let len = match round % 3 {
                0 => {
                    let reqs: heapless::Vec<heapless::Vec<u8, 40>, 80> = (0..rng.below(80))
                        .map(|_| (0..rng.below(40)).map(|_| rng.below(256) as u8).collect())
                        .collect();
                    let refs: heapless::Vec<&[u8], 80> = reqs.iter().map(|r| &r[..]).collect();
                    let (len, _) = encode(&refs, &mut buf);
                    let cut = if rng.below(4) == 0 { rng.below(len as u64 + 1) as usize } else { len };
                    if cut > 0 && rng.below(4) == 0 {
                        buf[rng.below(cut as u64) as usize] = rng.below(256) as u8;
                    }
                    cut
                }
                _ => {
                    // Zeros are empty requests: runs of them make groups of more than 64.
                    let len = rng.below(100) as usize;
                    buf[..len].iter_mut().for_each(|b| *b = [0, 1, rng.below(256) as u8][rng.below(3) as usize]);
                    len
                }
            };
            let group = &buf[..len];
            let by_postcard: heapless::Vec<&[u8], 700> =
                crate::wire::items::<Bytes<'_>>(group).map_while(Result::ok).map(|b| b.0).collect();
            let by_hand: heapless::Vec<&[u8], 700> = requests(group).collect();
            assert_eq!(by_hand, by_postcard, "{group:?}");
            let count = crate::wire::count_valid::<Bytes<'_>>(group, MAX_GROUP_REQUESTS, |_| true);
            let expected = match count {
                Some(n) if n > 0 => Ok(n),
                _ => Err(InvalidGroup),
            };
            assert_eq!(validate(group), expected, "{group:?}");
        }
    }
}
