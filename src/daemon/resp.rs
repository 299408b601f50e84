//! The daemon's side of RESP2: requests are parsed by the `redis` crate's own
//! parser (`redis::parse_redis_value_async`, the one its client uses for
//! replies: a request is an array of bulk strings, a valid RESP value), and
//! replies are written by [`Reply::encode`], the five RESP2 reply types.

use redis::Value;

/// A reply to one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
  /// `+OK` and other status replies.
  Status(&'static str),
  /// `-CODE message`: the first word is the error code clients see.
  Error(String),
  Int(i64),
  /// `$…` or the nil bulk string `$-1`.
  Bulk(Option<Vec<u8>>),
  Array(Vec<Reply>),
}

impl Reply {
  pub fn ok() -> Reply {
    Reply::Status("OK")
  }

  pub fn error(code: &str, message: impl AsRef<str>) -> Reply {
    // A reply line must not hold CR/LF.
    let text = format!("{code} {}", message.as_ref()).replace(['\r', '\n'], " ");
    Reply::Error(text)
  }

  pub fn bool(b: bool) -> Reply {
    Reply::Int(b as i64)
  }

  pub fn encode(&self, out: &mut Vec<u8>) {
    match self {
      Reply::Status(s) => {
        out.push(b'+');
        out.extend_from_slice(s.as_bytes());
      }
      Reply::Error(e) => {
        out.push(b'-');
        out.extend_from_slice(e.as_bytes());
      }
      Reply::Int(n) => {
        out.push(b':');
        out.extend_from_slice(n.to_string().as_bytes());
      }
      Reply::Bulk(None) => out.extend_from_slice(b"$-1"),
      Reply::Bulk(Some(b)) => {
        out.push(b'$');
        out.extend_from_slice(b.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(b);
      }
      Reply::Array(items) => {
        out.push(b'*');
        out.extend_from_slice(items.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
        for item in items {
          item.encode(out);
        }
        return; // each item ended its own line
      }
    }
    out.extend_from_slice(b"\r\n");
  }
}

/// The arguments of a request (an array of bulk strings), or why it is not one.
pub fn request_args(v: Value) -> std::result::Result<Vec<Vec<u8>>, &'static str> {
  let Value::Array(items) = v else { return Err("expected an array of bulk strings") };
  if items.is_empty() {
    return Err("empty request");
  }
  items
    .into_iter()
    .map(|item| match item {
      Value::BulkString(b) => Ok(b),
      Value::SimpleString(s) => Ok(s.into_bytes()),
      Value::Int(n) => Ok(n.to_string().into_bytes()),
      _ => Err("expected an array of bulk strings"),
    })
    .collect()
}

/// Redis-style glob match (`*`, `?`, `\x`; `[` matches itself), as SCAN MATCH.
pub fn glob(pattern: &[u8], s: &[u8]) -> bool {
  let (mut p, mut i) = (0, 0);
  let mut star: Option<(usize, usize)> = None;
  while i < s.len() {
    match pattern.get(p) {
      Some(b'*') => {
        star = Some((p, i));
        p += 1;
        continue;
      }
      Some(b'?') => {
        p += 1;
        i += 1;
        continue;
      }
      Some(&c) => {
        let (lit, step) = if c == b'\\' && p + 1 < pattern.len() { (pattern[p + 1], 2) } else { (c, 1) };
        if lit == s[i] {
          p += step;
          i += 1;
          continue;
        }
      }
      None => {}
    }
    // mismatch: let the last `*` swallow one more byte, or fail
    match star {
      Some((sp, si)) => {
        p = sp + 1;
        i = si + 1;
        star = Some((sp, si + 1));
      }
      None => return false,
    }
  }
  pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
  use super::*;

  fn enc(r: Reply) -> String {
    let mut out = Vec::new();
    r.encode(&mut out);
    String::from_utf8(out).unwrap()
  }

  #[test]
  fn replies_round_trip_through_the_redis_parser() {
    assert_eq!(enc(Reply::ok()), "+OK\r\n");
    assert_eq!(enc(Reply::Int(-2)), ":-2\r\n");
    assert_eq!(enc(Reply::Bulk(None)), "$-1\r\n");
    assert_eq!(enc(Reply::error("ERR", "a\r\nb")), "-ERR a  b\r\n");
    let arr = Reply::Array(vec![Reply::Bulk(Some(b"0".to_vec())), Reply::Array(vec![Reply::Bulk(Some(b"k\r\n".to_vec()))])]);
    let mut out = Vec::new();
    arr.encode(&mut out);
    let v = redis::parse_redis_value(&out).unwrap();
    let (cursor, keys): (String, Vec<Vec<u8>>) = redis::from_redis_value(v).unwrap();
    assert_eq!((cursor.as_str(), keys), ("0", vec![b"k\r\n".to_vec()]));
  }

  #[test]
  fn requests_are_arrays_of_bulk_strings() {
    let packed = redis::cmd("SET").arg("k").arg(b"v\0".as_slice()).get_packed_command();
    let v = redis::parse_redis_value(&packed).unwrap();
    assert_eq!(request_args(v).unwrap(), vec![b"SET".to_vec(), b"k".to_vec(), b"v\0".to_vec()]);
    assert!(request_args(Value::Int(1)).is_err());
    assert!(request_args(Value::Array(vec![])).is_err());
  }

  #[test]
  fn glob_matches_like_redis() {
    assert!(glob(b"*", b"anything"));
    assert!(glob(b"sess:*", b"sess:abc"));
    assert!(!glob(b"sess:*", b"other:abc"));
    assert!(glob(b"a?c", b"abc"));
    assert!(glob(b"a*c*e", b"abcdxe"));
    assert!(!glob(b"a*c*e", b"abcdx"));
    assert!(glob(b"a\\*", b"a*"));
    assert!(!glob(b"a\\*", b"ab"));
    assert!(glob(b"", b""));
    assert!(!glob(b"", b"x"));
  }
}
