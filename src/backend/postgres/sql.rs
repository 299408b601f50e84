//! The SQL of the PostgreSQL backend: every statement, written once per
//! table with the table's name quoted as an identifier (never anything
//! else spliced in: ids, values, times and tokens are bound parameters of
//! prepared statements), the stored value's layout, and how the server's
//! errors get their codes.
//!
//! Times are the client's clock, as connect-pg-simple's are: `expire` is
//! written as `to_timestamp(<epoch seconds>)` (a `timestamp` without time
//! zone, in the server's zone, as connect-pg-simple writes it), and a row is
//! live while `expire > to_timestamp(<now>)`. No expiry is `'infinity'`.

use bytes::BytesMut;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{to_sql_checked, FromSql, IsNull, ToSql, Type};

use crate::error::{Code, StoreError};

/// The longest identifier PostgreSQL keeps (longer ones are cut silently).
const MAX_IDENT_BYTES: usize = 63;

/// A schema or table name, checked: not empty, no NUL, at most 63 bytes
/// (PostgreSQL would silently cut a longer one and name another table).
pub fn check_ident(what: &str, name: &str) -> Result<(), StoreError> {
  let bad = |why: &str| StoreError::new(Code::InvalidOption, format!("option {what} {name:?} {why}"));
  if name.is_empty() {
    return Err(bad("must not be empty"));
  }
  if name.contains('\0') {
    return Err(bad("must not contain a NUL character"));
  }
  if name.len() > MAX_IDENT_BYTES {
    return Err(bad(&format!("is {} bytes; PostgreSQL names are at most {MAX_IDENT_BYTES}", name.len())));
  }
  Ok(())
}

/// `name` as a quoted identifier: `"…"`, inner quotes doubled. Case and
/// every character are kept, as connect-pg-simple quotes its table.
pub fn quote(name: &str) -> String {
  format!("\"{}\"", name.replace('"', "\"\""))
}

/// The statements of one table (`schema.table`) and its lock table
/// (`schema.table_lock`).
#[derive(Debug)]
pub struct Sql {
  /// `"schema"."table"` and `"schema"."table_lock"`, also the `to_regclass` arguments.
  pub table: String,
  pub lock_table: String,
  pub create: Vec<String>,
  pub get: String,
  pub set: String,
  pub add: String,
  pub replace: String,
  pub remove: String,
  pub touch: String,
  pub ttl: String,
  pub exists: String,
  pub len: String,
  pub clear: String,
  pub keys: String,
  pub entries: String,
  pub page: String,
  /// A query of the table that reads no session (`store.ping()`).
  pub ping: String,
  pub lock: String,
  pub unlock: String,
  pub renew: String,
  pub sweep: String,
  pub sweep_locks: String,
  /// Moves a live session to a free id: (old, new, value, now).
  pub rotate_put: String,
  pub rotate_take: String,
  pub rotate_drop: String,
  /// A store with per-user rules: the statements over their columns.
  pub users: Option<UserSql>,
  /// The advisory lock keys of table creation and of the sweep (per table).
  pub create_key: i64,
  pub sweep_key: i64,
}

/// FNV-1a of `s`, as an advisory lock key.
fn key_of(s: &str) -> i64 {
  s.bytes().fold(0xcbf29ce484222325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3)) as i64
}

/// Rows deleted per statement of a sweep.
pub const SWEEP_BATCH: i64 = 1000;

/// The statements of a store with per-user rules (`userOf`,
/// `maxSessionsPerUser`, `maxLifetime`; src/backend/postgres/users.rs):
/// three nullable columns beside connect-pg-simple's, which it ignores:
/// `rs_user` (whose; NULL anonymous), `rs_end` (the absolute end; NULL
/// none) and `rs_written` (µs of the server clock at the last write: the
/// order of "least recently written"), and an index on (rs_user, rs_written).
#[derive(Debug)]
pub struct UserSql {
  /// Whether the columns are there.
  pub check: String,
  /// Adds them (and the index) to a table made without them.
  pub add_columns: Vec<String>,
  /// The seed of a user's transaction-level advisory lock (per table).
  pub user_key: i64,
  /// `pg_advisory_xact_lock(hash(user, seed))`: a user's writes, cap and revocation one at a time.
  pub lock: String,
  /// A session's user, absolute end (epoch ms) and liveness, its row locked: (id, now).
  pub current: String,
  /// (id, value, expire s, user, end s): the write, with its user and end.
  pub upsert: String,
  /// (user, now, n): removes the user's live sessions beyond the n most recently written.
  pub cap: String,
  /// (user, now): the user's live sessions, least recently written first.
  pub list: String,
  /// (user, except ids, now): removes the user's sessions but those; counts the live ones.
  pub revoke: String,
}

impl Sql {
  pub fn new(schema: &str, table: &str, users: bool) -> Sql {
    let t = format!("{}.{}", quote(schema), quote(table));
    let lock_table = format!("{table}_lock");
    let l = format!("{}.{}", quote(schema), quote(&lock_table));
    let (index, user_index) = (quote(&format!("IDX_{table}_expire")), quote(&format!("IDX_{table}_rs_user")));
    let cols = if users { ", rs_user, rs_end, rs_written" } else { "" };
    let set_cols = if users { ", rs_user = excluded.rs_user, rs_end = excluded.rs_end, rs_written = excluded.rs_written" } else { "" };
    let batch = SWEEP_BATCH.to_string();
    let names = [
      ("t", t.as_str()),
      ("l", &l),
      ("index", &index),
      ("user_index", &user_index),
      ("cols", cols),
      ("set_cols", set_cols),
      ("batch", &batch),
    ];
    let q = |template: &str| statement(template, &names);
    Sql {
      create: vec![
        // connect-pg-simple's table.sql (the primary key named <table>_pkey, its index IDX_<table>_expire).
        q("CREATE TABLE IF NOT EXISTS {t} (\"sid\" varchar NOT NULL COLLATE \"default\" PRIMARY KEY, \"sess\" json NOT NULL, \"expire\" timestamp(6) NOT NULL)"),
        q("CREATE INDEX IF NOT EXISTS {index} ON {t} (\"expire\")"),
        q("CREATE TABLE IF NOT EXISTS {l} (\"sid\" varchar NOT NULL COLLATE \"default\" PRIMARY KEY, \"token\" text NOT NULL, \"expire\" timestamptz(6) NOT NULL)"),
      ],
      get: q("SELECT sess FROM {t} WHERE sid = $1 AND {live}"),
      set: q("INSERT INTO {t} (sid, sess, expire) VALUES ($1, $2, to_timestamp($3::float8)) ON CONFLICT (sid) DO UPDATE SET sess = excluded.sess, expire = excluded.expire"),
      // One winner among concurrent adds: the row lock of ON CONFLICT; an expired row counts as absent.
      add: q("INSERT INTO {t} AS s (sid, sess, expire) VALUES ($1, $2, to_timestamp($3::float8)) ON CONFLICT (sid) DO UPDATE SET sess = excluded.sess, expire = excluded.expire WHERE s.expire <= to_timestamp($4::float8)"),
      replace: q("UPDATE {t} SET sess = $2, expire = to_timestamp($3::float8) WHERE sid = $1 AND {live}"),
      remove: q("DELETE FROM {t} WHERE sid = $1 RETURNING {live}"),
      // With per-user rules never past the session's absolute end.
      touch: match users {
        false => q("UPDATE {t} SET expire = to_timestamp($2::float8) WHERE sid = $1 AND {live}"),
        true => q("UPDATE {t} SET expire = LEAST(to_timestamp($2::float8), COALESCE(rs_end, 'infinity'::timestamp)) WHERE sid = $1 AND {live}"),
      },
      ttl: q("SELECT date_part('epoch', expire::timestamptz) * 1000 FROM {t} WHERE sid = $1 AND {live}"),
      exists: q("SELECT 1 FROM {t} WHERE sid = $1 AND {live}"),
      len: q("SELECT count(*) FROM {t} WHERE {live}"),
      clear: q("WITH d AS (DELETE FROM {t} RETURNING expire) SELECT count(*) FROM d WHERE {live}"),
      keys: q("SELECT sid FROM {t} WHERE {live}"),
      entries: q("SELECT sid, sess FROM {t} WHERE {live}"),
      // Keyset pages in primary key order: the cursor is the last id of the page before; $3 the page's size, after {live}'s $2.
      page: q("SELECT sid, sess, date_part('epoch', expire::timestamptz) * 1000 FROM {t} WHERE sid > $1 AND {live:2} ORDER BY sid LIMIT $3"),
      ping: q("SELECT 1 FROM {t} LIMIT 0"),
      lock: q("INSERT INTO {l} AS k (sid, token, expire) VALUES ($1, $2, to_timestamp($3::float8)) ON CONFLICT (sid) DO UPDATE SET token = excluded.token, expire = excluded.expire WHERE k.expire <= to_timestamp($4::float8)"),
      unlock: q("DELETE FROM {l} WHERE sid = $1 AND token = $2 AND {live}"),
      renew: q("UPDATE {l} SET expire = to_timestamp($3::float8) WHERE sid = $1 AND token = $2 AND {live}"),
      // The outer condition is checked again on a row changed meanwhile
      // (READ COMMITTED): a session refreshed since the inner SELECT stays.
      // One statement, one implicit transaction: the advisory lock ($2) is
      // held to its end; a process that does not get it deletes nothing.
      sweep: q("WITH k AS (SELECT pg_try_advisory_xact_lock($2::int8) AS got) DELETE FROM {t} WHERE (SELECT got FROM k) AND sid IN (SELECT sid FROM {t} WHERE expire < to_timestamp($1::float8) LIMIT {batch}) AND expire < to_timestamp($1::float8)"),
      sweep_locks: q("WITH k AS (SELECT pg_try_advisory_xact_lock($2::int8) AS got) DELETE FROM {l} WHERE (SELECT got FROM k) AND expire < to_timestamp($1::float8)"),
      rotate_take: q("SELECT sess FROM {t} WHERE sid = $1 AND {live} FOR UPDATE"),
      // The new id is free when no row has it or its row has expired (taken over).
      rotate_put: q("INSERT INTO {t} AS s (sid, sess, expire{cols}) SELECT $2, $3, expire{cols} FROM {t} WHERE sid = $1 ON CONFLICT (sid) DO UPDATE SET sess = excluded.sess, expire = excluded.expire{set_cols} WHERE s.expire <= to_timestamp($4::float8)"),
      rotate_drop: q("DELETE FROM {t} WHERE sid = $1"),
      users: users.then(|| UserSql {
        check: q("SELECT rs_user, rs_end, rs_written FROM {t} LIMIT 0"),
        add_columns: vec![
          q("ALTER TABLE {t} ADD COLUMN IF NOT EXISTS \"rs_user\" varchar, ADD COLUMN IF NOT EXISTS \"rs_end\" timestamp(6), ADD COLUMN IF NOT EXISTS \"rs_written\" int8"),
          q("CREATE INDEX IF NOT EXISTS {user_index} ON {t} (\"rs_user\", \"rs_written\") WHERE \"rs_user\" IS NOT NULL"),
        ],
        user_key: key_of(&format!("rs-store user {t}")),
        lock: q("SELECT pg_advisory_xact_lock(hashtextextended($1::text, $2::int8))"),
        current: q("SELECT rs_user, date_part('epoch', rs_end::timestamptz) * 1000, {live} FROM {t} WHERE sid = $1 FOR UPDATE"),
        upsert: q("INSERT INTO {t} AS s (sid, sess, expire, rs_user, rs_end, rs_written) VALUES ($1, $2, to_timestamp($3::float8), $4, to_timestamp($5::float8), (extract(epoch from clock_timestamp()) * 1000000)::int8) ON CONFLICT (sid) DO UPDATE SET sess = excluded.sess, expire = excluded.expire, rs_user = excluded.rs_user, rs_end = excluded.rs_end, rs_written = excluded.rs_written"),
        // $3 the cap's offset, after {live}'s $2.
        cap: q("DELETE FROM {t} WHERE sid IN (SELECT sid FROM {t} WHERE rs_user = $1 AND {live:2} ORDER BY rs_written DESC OFFSET $3)"),
        list: q("SELECT sid, sess, date_part('epoch', expire::timestamptz) * 1000 FROM {t} WHERE rs_user = $1 AND {live} ORDER BY rs_written"),
        revoke: q("WITH d AS (DELETE FROM {t} WHERE rs_user = $1 AND NOT (sid = ANY($2)) RETURNING expire) SELECT count(*) FROM d WHERE {live}"),
      }),
      create_key: key_of(&format!("rs-store create {t}")),
      sweep_key: key_of(&format!("rs-store sweep {t}")),
      table: t,
      lock_table: l,
    }
  }
}

/// A statement from its template, in one pass (a quoted name is never read
/// as a placeholder): `{name}` is that entry of `names`; `{live}`, that the
/// row is live at the time bound as the parameter after the template's
/// last (`{live:N}`: as parameter N).
fn statement(template: &str, names: &[(&str, &str)]) -> String {
  let last = template.split('$').skip(1).filter_map(|p| p.split(|c: char| !c.is_ascii_digit()).next()?.parse::<u32>().ok()).max();
  let mut out = String::with_capacity(template.len() + 64);
  let mut rest = template;
  while let Some(open) = rest.find('{') {
    let close = open + rest[open..].find('}').expect("a placeholder ends with }");
    out.push_str(&rest[..open]);
    match &rest[open + 1..close] {
      "live" => out.push_str(&format!("expire > to_timestamp(${}::float8)", last.unwrap_or(0) + 1)),
      live if live.starts_with("live:") => out.push_str(&format!("expire > to_timestamp(${}::float8)", &live[5..])),
      name => out.push_str(names.iter().find(|(n, _)| *n == name).unwrap_or_else(|| panic!("no name {name:?} in SQL")).1),
    }
    rest = &rest[close + 1..];
  }
  out.push_str(rest);
  out
}

/// Seconds since the epoch for `to_timestamp`: `None` (never expires) is
/// infinity, and so is an expiry past PostgreSQL's last timestamp (year
/// 294276), which it would refuse.
pub fn seconds(at_ms: Option<u64>) -> f64 {
  match at_ms {
    Some(ms) if ms < 9_000_000_000_000_000 => ms as f64 / 1000.0,
    _ => f64::INFINITY,
  }
}

/// A stored value as `sess` holds it. Session JSON text is stored as it is
/// (so connect-pg-simple reads it); a value the codec made (compressed or
/// encrypted: binary, first byte [`crate::codec::FORMAT`]) cannot be JSON,
/// so it is stored as `{"rs-store.v1":"<base64>"}`, which connect-pg-simple
/// reads as a session without its data.
pub struct Sess<'a>(pub &'a [u8]);

const WRAP_KEY: &str = "rs-store.v1";

impl Sess<'_> {
  fn text(&self) -> std::borrow::Cow<'_, [u8]> {
    use base64::Engine;
    if self.0.first() == Some(&crate::codec::FORMAT) {
      let b64 = base64::engine::general_purpose::STANDARD.encode(self.0);
      return std::borrow::Cow::Owned(format!("{{\"{WRAP_KEY}\":\"{b64}\"}}").into_bytes());
    }
    std::borrow::Cow::Borrowed(self.0)
  }
}

impl std::fmt::Debug for Sess<'_> {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    write!(f, "Sess({} bytes)", self.0.len())
  }
}

impl ToSql for Sess<'_> {
  fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
    // json's binary form is its text; jsonb's is a version byte and the text.
    if *ty == Type::JSONB {
      out.extend_from_slice(&[1]);
    }
    out.extend_from_slice(&self.text());
    Ok(IsNull::No)
  }
  fn accepts(ty: &Type) -> bool {
    matches!(*ty, Type::JSON | Type::JSONB | Type::TEXT | Type::VARCHAR)
  }
  to_sql_checked!();
}

/// `sess` as read back: the bytes the codec decodes (see [`Sess`]).
pub struct Stored(pub Vec<u8>);

impl<'a> FromSql<'a> for Stored {
  fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
    let text = if *ty == Type::JSONB { raw.get(1..).unwrap_or_default() } else { raw };
    Ok(Stored(unwrap_codec(text).unwrap_or_else(|| text.to_vec())))
  }
  fn accepts(ty: &Type) -> bool {
    matches!(*ty, Type::JSON | Type::JSONB | Type::TEXT | Type::VARCHAR)
  }
}

/// The codec's bytes inside a `{"rs-store.v1":"<base64>"}` wrapper (also
/// as jsonb prints it, with a space), or `None` for any other JSON.
fn unwrap_codec(text: &[u8]) -> Option<Vec<u8>> {
  use base64::Engine;
  let rest = text.strip_prefix(b"{\"rs-store.v1\":")?;
  let rest = rest.trim_ascii_start().strip_prefix(b"\"")?.strip_suffix(b"\"}")?;
  base64::engine::general_purpose::STANDARD.decode(rest).ok().filter(|b| b.first() == Some(&crate::codec::FORMAT))
}

/// A tokio-postgres error as a coded store error, named with the server.
pub fn map_err(e: &tokio_postgres::Error, place: &str) -> StoreError {
  let at = |code: Code, what: String| StoreError::new(code, format!("{place}: {what}"));
  let Some(db) = e.as_db_error() else {
    let msg = e.to_string();
    // Client-side: the server asked for a password we do not have, or SCRAM failed.
    if msg.contains("password") || msg.contains("authentication") || msg.contains("SCRAM") {
      return at(Code::StoreAuth, format!("the server refused the credentials: {msg}"));
    }
    return at(Code::StoreUnavailable, msg);
  };
  let msg = db.message().to_string();
  let code = db.code();
  if *code == SqlState::INVALID_PASSWORD || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION {
    at(Code::StoreAuth, format!("the server refused the credentials: {msg}"))
  } else if *code == SqlState::INSUFFICIENT_PRIVILEGE {
    at(Code::StoreAuth, format!("the user lacks a privilege: {msg}"))
  } else if *code == SqlState::INVALID_CATALOG_NAME {
    at(Code::InvalidOption, format!("no such database: {msg}"))
  } else if *code == SqlState::UNDEFINED_TABLE || *code == SqlState::INVALID_SCHEMA_NAME {
    at(Code::InvalidOption, format!("{msg} (with createTable: false the table must exist; see the README, PostgreSQL)"))
  } else if *code == SqlState::UNDEFINED_COLUMN || *code == SqlState::DATATYPE_MISMATCH || *code == SqlState::UNDEFINED_FUNCTION {
    at(Code::InvalidOption, format!("the table is not connect-pg-simple's (sid varchar, sess json, expire timestamp): {msg}"))
  } else if *code == SqlState::READ_ONLY_SQL_TRANSACTION || *code == SqlState::DISK_FULL {
    at(Code::StoreReadOnly, format!("the server refuses writes: {msg}"))
  } else if *code == SqlState::INVALID_TEXT_REPRESENTATION
    || *code == SqlState::UNTRANSLATABLE_CHARACTER
    || *code == SqlState::CHARACTER_NOT_IN_REPERTOIRE
  {
    StoreError::new(Code::NotSerializable, format!("{place} refused the session: {msg}"))
  } else {
    at(Code::StoreUnavailable, msg)
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn identifiers() {
    assert_eq!(quote("session"), "\"session\"");
    assert_eq!(quote("a\"; DROP TABLE x; --"), "\"a\"\"; DROP TABLE x; --\"");
    assert!(check_ident("table", "session").is_ok());
    assert_eq!(check_ident("table", "").unwrap_err().code, Code::InvalidOption);
    assert_eq!(check_ident("table", "a\0b").unwrap_err().code, Code::InvalidOption);
    assert_eq!(check_ident("table", &"x".repeat(64)).unwrap_err().code, Code::InvalidOption);
    let sql = Sql::new("public", "my\"table", false);
    assert!(sql.get.starts_with("SELECT sess FROM \"public\".\"my\"\"table\" WHERE sid = $1 AND expire > to_timestamp($2::float8)"));
    // A name is never read as a placeholder nor a parameter, in any statement.
    let odd = Sql::new("s", "t$NOW{live}$9", true);
    assert_eq!(odd.get, "SELECT sess FROM \"s\".\"t$NOW{live}$9\" WHERE sid = $1 AND expire > to_timestamp($2::float8)");
    assert!(odd.users.unwrap().cap.contains("WHERE rs_user = $1 AND expire > to_timestamp($2::float8) ORDER BY rs_written DESC OFFSET $3"));
  }

  #[test]
  fn codec_values_are_wrapped_as_json() {
    let plain = br#"{"a":1}"#;
    assert_eq!(&*Sess(plain).text(), plain);
    let binary = [crate::codec::FORMAT, 2, 0, 255, 10];
    let text = Sess(&binary).text().into_owned();
    assert!(text.starts_with(b"{\"rs-store.v1\":\""));
    serde_json::from_slice::<serde_json::Value>(&text).unwrap();
    assert_eq!(unwrap_codec(&text).unwrap(), binary);
    // as jsonb prints it
    let spaced = String::from_utf8(text).unwrap().replace("\":\"", "\": \"");
    assert_eq!(unwrap_codec(spaced.as_bytes()).unwrap(), binary);
    assert!(unwrap_codec(br#"{"rs-store.v1":"not base64!"}"#).is_none());
    assert!(unwrap_codec(plain).is_none());
  }

  #[test]
  fn expiry_seconds() {
    assert_eq!(seconds(None), f64::INFINITY);
    assert_eq!(seconds(Some(u64::MAX)), f64::INFINITY);
    assert_eq!(seconds(Some(1500)), 1.5);
  }
}
