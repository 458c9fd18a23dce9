//! The hosts' connections when the caller owns the sockets (Node's own, on its event loop):
//! the bytes to write to each host, and which reply answers which request. Nothing here
//! blocks, sleeps or spawns; the caller reports what its sockets did and writes what it is
//! given.
//!
//! Replies come in the order of the requests on one connection, so each host keeps a queue of
//! what it was asked; a reply that comes after its call gave up is still matched, and dropped.

use std::collections::VecDeque;

use super::host::{Endpoint, Host};
use super::resp::{encode, Decoder, Reply};
use crate::error::{Error, ErrorKind};

/// What one host's connection is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
  /// No socket: the next request asks the caller to connect.
  Closed,
  /// The caller is connecting; requests wait in `queued`.
  Connecting,
  /// Connected; the handshake is out and its replies (this many still to come) are awaited
  /// before any request is sent, so that no request runs after a failed AUTH or SELECT.
  Greeting(usize),
  Open,
}

struct Link<E> {
  state: State,
  decoder: Decoder,
  /// Requests not handed to the caller yet.
  queued: Vec<u8>,
  /// The handshake, while it is still to be written.
  greeting: Vec<u8>,
  /// What each reply to a request still to come answers, oldest first; `sent` counts those
  /// whose requests were written.
  expected: VecDeque<E>,
  sent: usize,
  handshake: Vec<u8>,
  /// For each reply to the handshake, whether an error in it closes the connection.
  handshake_replies: Vec<bool>,
}

/// What the caller must do for one host.
pub enum Action {
  Connect(usize),
  Write(usize, Vec<u8>),
}

/// How a request ended.
pub enum Outcome {
  Reply(Reply),
  /// The server answered with an error.
  Refused(Error),
  /// The connection failed. `sent`: the request was written, so it may have run.
  Lost {
    error: Error,
    sent: bool,
  },
}

/// The replies a read produced, and whether the connection must be closed (a handshake that
/// failed, bytes that are not the Redis protocol).
pub struct Read<E> {
  pub replies: Vec<(E, Outcome)>,
  pub close: bool,
}

pub struct Wire<E> {
  links: Vec<Link<E>>,
}

impl<E> Wire<E> {
  /// Connections to `endpoints`; each starts with its AUTH and SELECT, then `preload` (requests
  /// whose failure is no reason to close, such as loading scripts).
  pub fn new(endpoints: &[&Endpoint], preload: &[&[&[u8]]]) -> Wire<E> {
    let links = endpoints
      .iter()
      .map(|endpoint| {
        let (mut handshake, mut handshake_replies) = handshake(endpoint);
        for request in preload {
          encode(&mut handshake, request);
          handshake_replies.push(false);
        }
        Link {
          state: State::Closed,
          decoder: Decoder::default(),
          queued: Vec::new(),
          greeting: Vec::new(),
          expected: VecDeque::new(),
          sent: 0,
          handshake,
          handshake_replies,
        }
      })
      .collect();
    Wire { links }
  }

  /// Queues a request to `host`; its reply will come back with `expect`.
  pub fn send(&mut self, host: usize, args: &[&[u8]], expect: E) {
    let link = &mut self.links[host];
    encode(&mut link.queued, args);
    link.expected.push_back(expect);
  }

  /// Whether a request sent to `host` now goes out at once (no connection to wait for).
  pub fn is_open(&self, host: usize) -> bool {
    self.links[host].state == State::Open
  }

  /// The caller's socket to `host` connected: the handshake goes out first.
  pub fn connected(&mut self, host: usize) {
    let link = &mut self.links[host];
    link.greeting = link.handshake.clone();
    link.state = State::Greeting(link.handshake_replies.len());
  }

  /// The socket to `host` closed or failed: every request still unanswered on it fails with
  /// `error`, and the next request connects again.
  pub fn closed(&mut self, host: usize, error: &Error) -> Vec<(E, Outcome)> {
    let link = &mut self.links[host];
    link.state = State::Closed;
    link.decoder.clear();
    link.queued.clear();
    link.greeting.clear();
    let sent = std::mem::take(&mut link.sent);
    link
      .expected
      .drain(..)
      .enumerate()
      .map(|(index, expect)| {
        let lost = Outcome::Lost {
          error: error.clone(),
          sent: index < sent,
        };
        (expect, lost)
      })
      .collect()
  }

  /// Bytes read from `host`.
  pub fn received(&mut self, host: &Host, index: usize, bytes: &[u8]) -> Read<E> {
    self.links[index].decoder.feed(bytes);
    let mut replies = Vec::new();
    loop {
      let link = &mut self.links[index];
      let reply = match link.decoder.next_reply() {
        Ok(Some(reply)) => reply,
        Ok(None) => {
          return Read {
            replies,
            close: false,
          }
        }
        Err(_) => {
          let error = Error::new(
            ErrorKind::Connection,
            format!(
              "{}: the server answered, but not in the Redis protocol: not a Redis server (check the host and port)",
              host.label()
            ),
          );
          replies.extend(self.closed(index, &error));
          return Read {
            replies,
            close: true,
          };
        }
      };
      if let State::Greeting(left) = link.state {
        let required = link.handshake_replies[link.handshake_replies.len() - left];
        if let (Reply::Error(text), true) = (&reply, required) {
          // A failed AUTH or SELECT: no request may run on this connection.
          let error = host.error_reply(text);
          replies.extend(self.closed(index, &error));
          return Read {
            replies,
            close: true,
          };
        }
        link.state = if left > 1 {
          State::Greeting(left - 1)
        } else {
          State::Open
        };
        continue;
      }
      let Some(expect) = link.expected.pop_front().filter(|_| link.sent > 0) else {
        let error = Error::new(
          ErrorKind::Connection,
          format!("{}: a reply came that nothing asked for", host.label()),
        );
        replies.extend(self.closed(index, &error));
        return Read {
          replies,
          close: true,
        };
      };
      link.sent -= 1;
      let outcome = match reply {
        Reply::Error(text) => Outcome::Refused(host.error_reply(&text)),
        reply => Outcome::Reply(reply),
      };
      replies.push((expect, outcome));
    }
  }

  /// What the caller must do now: connect to hosts with requests waiting, write to the others.
  pub fn actions(&mut self) -> Vec<Action> {
    let mut actions = Vec::new();
    for (index, link) in self.links.iter_mut().enumerate() {
      match link.state {
        State::Greeting(_) if !link.greeting.is_empty() => {
          actions.push(Action::Write(index, std::mem::take(&mut link.greeting)))
        }
        State::Open if !link.queued.is_empty() => {
          link.sent = link.expected.len();
          actions.push(Action::Write(index, std::mem::take(&mut link.queued)))
        }
        State::Closed if !link.expected.is_empty() => {
          link.state = State::Connecting;
          actions.push(Action::Connect(index));
        }
        _ => {}
      }
    }
    actions
  }
}

/// AUTH and SELECT, as the host's URL and the client's options ask; and the number of replies
/// they bring.
fn handshake(endpoint: &Endpoint) -> (Vec<u8>, Vec<bool>) {
  let mut bytes = Vec::new();
  let mut replies = Vec::new();
  match (&endpoint.username, &endpoint.password) {
    (Some(username), Some(password)) => {
      encode(
        &mut bytes,
        &[b"AUTH", username.as_bytes(), password.as_bytes()],
      );
      replies.push(true);
    }
    (None, Some(password)) => {
      encode(&mut bytes, &[b"AUTH", password.as_bytes()]);
      replies.push(true);
    }
    _ => {}
  }
  if endpoint.db != 0 {
    encode(&mut bytes, &[b"SELECT", endpoint.db.to_string().as_bytes()]);
    replies.push(true);
  }
  (bytes, replies)
}
