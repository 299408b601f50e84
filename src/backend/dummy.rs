//! Stores nothing (HTTP Sessions' `DummyStorage`): every read misses, every
//! write succeeds. Useful in tests and to measure host overhead.

use super::{Cond, Op, Reply, SyncBackend, Ttl};
use crate::error::Result;

#[derive(Debug, Default)]
pub struct DummyBackend;

impl SyncBackend for DummyBackend {
  fn run(&self, op: Op) -> Result<Reply> {
    Ok(match op {
      Op::Get(_) => Reply::Value(None),
      Op::Set(..) => Reply::Done,
      // An add is "written" (nothing is there); a replace finds nothing.
      Op::SetIf(.., cond) => Reply::Bool(cond == Cond::Absent),
      Op::Remove(_) | Op::Touch(..) | Op::Exists(_) => Reply::Bool(false),
      Op::Ttl(_) => Reply::Ttl(Ttl::Missing),
      Op::Len | Op::Clear => Reply::Count(0),
      Op::Keys => Reply::Keys(Vec::new()),
      Op::Entries => Reply::Entries(Vec::new()),
      Op::Page(..) => Reply::Page(String::new(), Vec::new()),
      // Like HTTP Sessions' DummyStorage: every lock is granted, none is exclusive.
      Op::Lock(..) | Op::Unlock(..) | Op::Renew(..) => Reply::Bool(true),
      Op::Write(.., None, _) => Reply::Done,
      Op::Write(.., Some(cond), _) => Reply::Bool(cond == Cond::Absent),
      Op::SessionsOf(_) => Reply::Page(String::new(), Vec::new()),
      Op::RevokeUser(..) => Reply::Count(0),
      Op::Rotate(..) => Reply::Bool(false),
      Op::Ping => Reply::Done,
    })
  }
  fn close(&self) -> Result<()> {
    Ok(())
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn stores_nothing() {
    let d = DummyBackend;
    assert_eq!(d.run(Op::Set("a".into(), b"x".to_vec(), None)).unwrap(), Reply::Done);
    assert_eq!(d.run(Op::Get("a".into())).unwrap(), Reply::Value(None));
    assert_eq!(d.run(Op::SetIf("a".into(), b"x".to_vec(), None, Cond::Absent)).unwrap(), Reply::Bool(true));
    assert_eq!(d.run(Op::SetIf("a".into(), b"x".to_vec(), None, Cond::Present)).unwrap(), Reply::Bool(false));
    assert_eq!(d.run(Op::Exists("a".into())).unwrap(), Reply::Bool(false));
    assert_eq!(d.run(Op::Len).unwrap(), Reply::Count(0));
    assert_eq!(d.run(Op::Ttl("a".into())).unwrap(), Reply::Ttl(Ttl::Missing));
  }
}
