//! Per-user sessions on PostgreSQL (`userOf`, `maxSessionsPerUser`,
//! `maxLifetime`) and `rotate`, over the columns of [`super::sql::UserSql`].
//!
//! * A write of a store with per-user rules is one transaction: the user's
//!   advisory lock (so concurrent logins of one user and a revocation of
//!   that user run one at a time), the row read `FOR UPDATE` (its user, its
//!   absolute end, whether it is live), the condition of `add`/`replace`
//!   checked, the upsert with the expiry held to the absolute end, then the
//!   cap: the user's live sessions beyond the most recently written
//!   `maxSessionsPerUser` deleted. Twenty concurrent logins leave exactly n.
//! * `revokeUser` deletes under the same lock; a `replace`/`update` of one
//!   of those sessions in flight waits for the row and then finds it gone
//!   (it answers false), so no revoked session comes back.
//! * `rotate` locks the old row, inserts the new id from it (taking over
//!   only an expired row there), then deletes the old: one transaction.
//! * Such writes run alone on their connection, not in a pipeline (a
//!   transaction cannot share one): a store without the rules pays nothing.

use deadpool_postgres::Object;
use futures::TryFutureExt;
use tokio_postgres::types::ToSql;

use super::sql::{seconds, Sess, UserSql};
use super::Inner;
use crate::backend::{Cond, Op, Recode, Reply, UserRules};
use crate::error::{Code, Result, StoreError};
use crate::expiry::now_ms;

/// Whose a written session is.
enum Owner<'a> {
  /// As it was (a plain `set`/`add`/`replace`).
  Keep,
  /// This user's (`None`: anonymous).
  User(Option<&'a str>),
}

impl Inner {
  fn user_sql(&self) -> Result<&UserSql> {
    self
      .sql
      .users
      .as_ref()
      .ok_or_else(|| StoreError::new(Code::InvalidOption, "sessionsOf() and revokeUser() need the store's userOf option"))
  }

  /// Runs `body` in a transaction on `c` (alone on it): committed when it
  /// answers, rolled back when it fails.
  async fn transaction(&self, c: &Object, body: impl std::future::Future<Output = Result<Reply>>) -> Result<Reply> {
    c.batch_execute("BEGIN").await.map_err(|e| self.err(e))?;
    match body.await {
      Ok(r) => {
        c.batch_execute("COMMIT").await.map_err(|e| self.err(e))?;
        Ok(r)
      }
      Err(e) => {
        // A broken connection is dropped by the pool; a live one is clean again.
        let _ = c.batch_execute("ROLLBACK").await;
        Err(e)
      }
    }
  }

  async fn exec(&self, c: &Object, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
    let st = c.prepare_cached(sql).await.map_err(|e| self.err(e))?;
    c.execute(&st, params).await.map_err(|e| self.err(e))
  }

  async fn rows(&self, c: &Object, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<tokio_postgres::Row>> {
    let st = c.prepare_cached(sql).await.map_err(|e| self.err(e))?;
    c.query(&st, params).await.map_err(|e| self.err(e))
  }

  /// A write of a store with per-user rules (see the module comment), in
  /// two round trips: `BEGIN`, the user's lock and the row read are one
  /// pipeline, the upsert, the cap and `COMMIT` the next.
  pub(super) async fn user_write(&self, c: &Object, op: &Op, rules: &UserRules) -> Result<Reply> {
    let u = self.user_sql()?;
    let (id, value, at, cond, owner) = match op {
      Op::Write(id, v, at, cond, user) => (id, v, *at, *cond, Owner::User(user.as_deref())),
      Op::Set(id, v, at) => (id, v, *at, None, Owner::Keep),
      Op::SetIf(id, v, at, cond) => (id, v, *at, Some(*cond), Owner::Keep),
      op => return Err(StoreError::new(Code::Internal, format!("{op:?} is not a write"))),
    };
    let e = |e| self.err(e);
    // Prepared first (cached after a connection's first use): each query
    // below is then written at its first poll, in the order try_join polls.
    let [lock, current, upsert, cap] = [&u.lock, &u.current, &u.upsert, &u.cap];
    let (lock, current, upsert, cap) =
      futures::try_join!(c.prepare_cached(lock), c.prepare_cached(current), c.prepare_cached(upsert), c.prepare_cached(cap)).map_err(e)?;
    let now = seconds(Some(now_ms()));
    // Only a write that names its user takes that user's lock (and caps):
    // a plain write keeps the user and so the count.
    let named = match owner {
      Owner::User(Some(user)) => Some(user),
      _ => None,
    };
    let body = async {
      let (_, _, mut rows) = futures::try_join!(
        c.batch_execute("BEGIN").map_err(e),
        async {
          match named {
            Some(user) => c.execute(&lock, &[&user, &u.user_key]).await.map_err(e),
            None => Ok(0),
          }
        },
        async { c.query(&current, &[id, &now]).await.map_err(e) },
      )?;
      let row = rows.pop();
      let (old_user, old_end, live) = match &row {
        Some(r) => (r.get::<_, Option<String>>(0), r.get::<_, Option<f64>>(1), r.get::<_, bool>(2)),
        None => (None, None, false),
      };
      if cond.is_some_and(|c| live != (c == Cond::Present)) {
        c.batch_execute("COMMIT").await.map_err(e)?;
        return Ok(Reply::Bool(false));
      }
      // A live session keeps its absolute end; one that is not, or has
      // none (written without maxLifetime), starts anew.
      let end = old_end.filter(|_| live).map(|ms| ms as u64).or_else(|| rules.end_from_now());
      let user = match owner {
        Owner::Keep => old_user.filter(|_| live),
        Owner::User(user) => user.map(str::to_string),
      };
      let expire = seconds(UserRules::clamp(end, at));
      let end_s = end.map(|e| seconds(Some(e)));
      let limit = rules.max_per_user.map(|n| n as i64);
      futures::try_join!(
        async { c.execute(&upsert, &[id, &Sess(value), &expire, &user, &end_s]).await.map_err(e) },
        async {
          match (named, limit) {
            (Some(user), Some(n)) => c.execute(&cap, &[&user, &now, &n]).await.map_err(e),
            _ => Ok(0),
          }
        },
        c.batch_execute("COMMIT").map_err(e),
      )?;
      Ok(if cond.is_some() { Reply::Bool(true) } else { Reply::Done })
    };
    let out = body.await;
    if out.is_err() {
      // A broken connection is dropped by the pool; a live one is clean again.
      let _ = c.batch_execute("ROLLBACK").await;
    }
    out
  }

  /// A user's live sessions with their ttl, least recently written first.
  pub(super) async fn sessions_of(&self, c: &Object, user: &str) -> Result<Reply> {
    let u = self.user_sql()?;
    let now = seconds(Some(now_ms()));
    let rows = self.rows(c, &u.list, &[&user, &now]).await?;
    let page = rows.iter().map(|r| Ok((r.get::<_, String>(0), self.stored(r, 1)?, super::ttl_of(r.get(2))))).collect::<Result<Vec<_>>>()?;
    Ok(Reply::Page(String::new(), page))
  }

  /// Removes every session of `user` but `except`; how many live ones:
  /// `BEGIN`, the user's lock, the delete and `COMMIT` in one pipeline.
  pub(super) async fn revoke_user(&self, c: &Object, user: &str, except: &[String]) -> Result<Reply> {
    let u = self.user_sql()?;
    let e = |e| self.err(e);
    let (lock, revoke) = futures::try_join!(c.prepare_cached(&u.lock), c.prepare_cached(&u.revoke)).map_err(e)?;
    let now = seconds(Some(now_ms()));
    let out = futures::try_join!(
      c.batch_execute("BEGIN").map_err(e),
      async { c.execute(&lock, &[&user, &u.user_key]).await.map_err(e) },
      async { c.query(&revoke, &[&user, &except, &now]).await.map_err(e) },
      c.batch_execute("COMMIT").map_err(e),
    );
    match out {
      Ok((_, _, rows, _)) => Ok(Reply::Count(rows.first().map_or(0, |r| r.get::<_, i64>(0)) as u64)),
      Err(err) => {
        let _ = c.batch_execute("ROLLBACK").await;
        Err(err)
      }
    }
  }

  /// Moves a live session to a free id (with its user and end where the
  /// store keeps them); the value re-encoded for the new id by `recode`.
  pub(super) async fn rotate(&self, c: &Object, old: &str, new: &str, recode: Option<&Recode>) -> Result<Reply> {
    self
      .transaction(c, async {
        let now = seconds(Some(now_ms()));
        let Some(row) = self.rows(c, &self.sql.rotate_take, &[&old, &now]).await?.pop() else {
          return Ok(Reply::Bool(false));
        };
        let mut value = self.stored(&row, 0)?;
        if let Some(r) = recode {
          value = (r.0)(old, new, value)?;
        }
        if self.exec(c, &self.sql.rotate_put, &[&old, &new, &Sess(&value), &now]).await? == 0 {
          return Ok(Reply::Bool(false)); // taken: nothing was written
        }
        self.exec(c, &self.sql.rotate_drop, &[&old]).await?;
        Ok(Reply::Bool(true))
      })
      .await
  }

  /// Makes sure the per-user columns are there: added (under the table's
  /// creation lock) when the store may create its table, else a coded
  /// error that gives the statements to run.
  pub(super) async fn ensure_user_columns(&self, c: &Object) -> Result<()> {
    let Some(u) = &self.sql.users else { return Ok(()) };
    if c.batch_execute(&u.check).await.is_ok() {
      return Ok(());
    }
    if !self.create_table {
      return Err(StoreError::new(
        Code::InvalidOption,
        format!(
          "{}: per-user sessions need three columns the table lacks (createTable is false): {};",
          self.place,
          u.add_columns.join("; ")
        ),
      ));
    }
    let mut script = format!("SELECT pg_advisory_xact_lock({});", self.sql.create_key);
    for s in &u.add_columns {
      script.push_str(s);
      script.push(';');
    }
    c.batch_execute(&script).await.map_err(|e| self.err(e))
  }
}
