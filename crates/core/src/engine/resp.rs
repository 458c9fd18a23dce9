//! RESP2, the Redis protocol, without I/O: requests into bytes, bytes into replies. The caller
//! owns the socket (Node's own, on its event loop) and feeds what it read.

use std::fmt::Write as _;

/// One reply from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
  Status(String),
  Error(String),
  Integer(i64),
  Bulk(Option<Vec<u8>>),
  Array(Option<Vec<Reply>>),
}

impl Reply {
  /// The reply as text, for a bulk or status reply.
  pub fn text(&self) -> Option<&str> {
    match self {
      Reply::Bulk(Some(bytes)) => std::str::from_utf8(bytes).ok(),
      Reply::Status(text) => Some(text),
      _ => None,
    }
  }
}

/// Appends one request (a command and its arguments) to `out`.
pub fn encode(out: &mut Vec<u8>, args: &[&[u8]]) {
  let mut header = String::with_capacity(16);
  let _ = write!(header, "*{}\r\n", args.len());
  out.extend_from_slice(header.as_bytes());
  for arg in args {
    header.clear();
    let _ = write!(header, "${}\r\n", arg.len());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(arg);
    out.extend_from_slice(b"\r\n");
  }
}

/// The bytes did not follow the protocol: whatever answered is not a Redis server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotRedis;

/// Collects what was read and hands out complete replies.
#[derive(Default)]
pub struct Decoder {
  buffer: Vec<u8>,
  start: usize,
}

impl Decoder {
  pub fn feed(&mut self, bytes: &[u8]) {
    if self.start == self.buffer.len() {
      self.buffer.clear();
      self.start = 0;
    }
    self.buffer.extend_from_slice(bytes);
  }

  /// The next complete reply, or `None` until more bytes come.
  pub fn next_reply(&mut self) -> Result<Option<Reply>, NotRedis> {
    let mut at = self.start;
    match parse(&self.buffer, &mut at)? {
      Some(reply) => {
        self.start = at;
        if self.start > 64 * 1024 && self.start * 2 > self.buffer.len() {
          self.buffer.drain(..self.start);
          self.start = 0;
        }
        Ok(Some(reply))
      }
      None => Ok(None),
    }
  }

  pub fn clear(&mut self) {
    self.buffer.clear();
    self.start = 0;
  }
}

fn line<'a>(buffer: &'a [u8], at: &mut usize) -> Option<&'a [u8]> {
  let rest = &buffer[*at..];
  let end = rest.windows(2).position(|pair| pair == b"\r\n")?;
  *at += end + 2;
  Some(&rest[..end])
}

fn number(text: &[u8]) -> Result<i64, NotRedis> {
  std::str::from_utf8(text)
    .ok()
    .and_then(|text| text.parse().ok())
    .ok_or(NotRedis)
}

fn parse(buffer: &[u8], at: &mut usize) -> Result<Option<Reply>, NotRedis> {
  let Some(&kind) = buffer.get(*at) else {
    return Ok(None);
  };
  let mut cursor = *at + 1;
  let Some(head) = line(buffer, &mut cursor) else {
    return Ok(None);
  };
  let text = || String::from_utf8_lossy(head).into_owned();
  let reply = match kind {
    b'+' => Reply::Status(text()),
    b'-' => Reply::Error(text()),
    b':' => Reply::Integer(number(head)?),
    b'$' => match number(head)? {
      -1 => Reply::Bulk(None),
      length if length >= 0 => {
        let end = cursor + length as usize;
        if buffer.len() < end + 2 {
          return Ok(None);
        }
        if &buffer[end..end + 2] != b"\r\n" {
          return Err(NotRedis);
        }
        let bytes = buffer[cursor..end].to_vec();
        cursor = end + 2;
        Reply::Bulk(Some(bytes))
      }
      _ => return Err(NotRedis),
    },
    b'*' => match number(head)? {
      -1 => Reply::Array(None),
      count if count >= 0 => {
        let mut items = Vec::with_capacity(count.min(1024) as usize);
        for _ in 0..count {
          match parse(buffer, &mut cursor)? {
            Some(item) => items.push(item),
            None => return Ok(None),
          }
        }
        Reply::Array(Some(items))
      }
      _ => return Err(NotRedis),
    },
    _ => return Err(NotRedis),
  };
  *at = cursor;
  Ok(Some(reply))
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn requests_are_arrays_of_bulk_strings() {
    let mut out = Vec::new();
    encode(&mut out, &[b"SET", b"k", b"v v"]);
    assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nv v\r\n");
  }

  #[test]
  fn replies_come_whole_however_the_bytes_are_cut() {
    let wire: &[u8] =
      b"+OK\r\n$-1\r\n:42\r\n-ERR bad\r\n$5\r\nab\r\nc\r\n*2\r\n:1\r\n$1\r\nx\r\n*-1\r\n";
    let expected = vec![
      Reply::Status("OK".into()),
      Reply::Bulk(None),
      Reply::Integer(42),
      Reply::Error("ERR bad".into()),
      Reply::Bulk(Some(b"ab\r\nc".to_vec())),
      Reply::Array(Some(vec![
        Reply::Integer(1),
        Reply::Bulk(Some(b"x".to_vec())),
      ])),
      Reply::Array(None),
    ];
    for cut in 1..wire.len() {
      let mut decoder = Decoder::default();
      let mut replies = Vec::new();
      for chunk in wire.chunks(cut) {
        decoder.feed(chunk);
        while let Some(reply) = decoder.next_reply().unwrap() {
          replies.push(reply);
        }
      }
      assert_eq!(replies, expected, "cut every {cut} bytes");
    }
  }

  #[test]
  fn other_protocols_are_refused() {
    let mut decoder = Decoder::default();
    decoder.feed(b"HTTP/1.1 400 Bad Request\r\n");
    assert_eq!(decoder.next_reply(), Err(NotRedis));
  }
}
