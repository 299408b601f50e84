//! Answers as JS sees them: a backend's [`Reply`], with sessions decoded
//! to text on the thread that answers, converted to JS values without
//! going through intermediate objects.

use napi::bindgen_prelude::{Null, ToNapiValue, TypeName, Undefined, ValueType};
use napi::sys;

use super::Core;
use crate::backend::{Reply, Ttl};
use crate::error::{Code, StoreError};

/// One answer as JS sees it: null, a string, a boolean, a number, an array
/// of strings, or an Error carrying a `code`. A backend's [`Reply`] as it
/// is, or, where it holds sessions, with them decoded to text (`decoded`).
pub enum JsReply {
  Failed(StoreError),
  Reply(Reply),
  Text(Option<String>),
  /// `all()`: sessions that decode, with their ids.
  TextEntries(Vec<(String, String)>),
  /// A page of a walk: the next cursor, and per session its id, its text
  /// (`None`: it does not decode), its ttl and its stored size.
  TextPage(String, Vec<(String, Option<String>, Ttl, usize)>),
}

impl From<crate::error::Result<Reply>> for JsReply {
  fn from(r: crate::error::Result<Reply>) -> Self {
    match r {
      Ok(r) => JsReply::Reply(r),
      Err(e) => JsReply::Failed(e),
    }
  }
}

/// The TypeScript type and napi value type of a value this layer converts
/// itself.
macro_rules! ts_type {
  ($t:ty, $ts:expr, $kind:ident) => {
    impl napi::bindgen_prelude::TypeName for $t {
      fn type_name() -> &'static str {
        $ts
      }
      fn value_type() -> napi::ValueType {
        napi::ValueType::$kind
      }
    }
  };
}
pub(crate) use ts_type;

ts_type!(JsReply, "undefined | null | string | boolean | number | string[] | Error", Unknown);

impl ToNapiValue for JsReply {
  unsafe fn to_napi_value(env: sys::napi_env, val: Self) -> napi::Result<sys::napi_value> {
    let error = |e: StoreError| <napi::Error<Code> as ToNapiValue>::to_napi_value(env, e.into());
    let reply = match val {
      JsReply::Failed(e) => return error(e),
      JsReply::Text(None) => return Null::to_napi_value(env, Null),
      JsReply::Text(Some(s)) => return text_to_js(env, &s),
      JsReply::TextEntries(es) => {
        // Flat [id, text, id, text, …]
        let mut flat = Vec::with_capacity(es.len() * 2);
        for (id, t) in es {
          flat.push(id);
          flat.push(t);
        }
        return Vec::<String>::to_napi_value(env, flat);
      }
      JsReply::TextPage(next, es) => return page_to_js(env, next, es),
      JsReply::Reply(r) => r,
    };
    match reply {
      Reply::Value(None) => Null::to_napi_value(env, Null),
      // `set` resolves undefined, as on the memory store.
      Reply::Done => Undefined::to_napi_value(env, ()),
      Reply::Bool(b) => bool::to_napi_value(env, b),
      Reply::Ttl(t) => f64::to_napi_value(env, t.pttl() as f64),
      Reply::Count(n) => f64::to_napi_value(env, n as f64),
      Reply::Keys(k) => Vec::<String>::to_napi_value(env, k),
      // run_batch decodes sessions (Value → Text, Entries → TextEntries).
      r @ (Reply::Value(Some(_)) | Reply::Entries(_) | Reply::Page(..)) => {
        error(StoreError::new(Code::Internal, format!("undecoded reply {r:?}")))
      }
    }
  }
}

/// A page as one flat array: `[next, id, text | null, pttl, bytes, id, …]`.
unsafe fn page_to_js(env: sys::napi_env, next: String, es: Vec<(String, Option<String>, Ttl, usize)>) -> napi::Result<sys::napi_value> {
  let mut arr = std::ptr::null_mut();
  // SAFETY: the caller passes the live env of the JS thread (this fn is unsafe
  // for that); `arr` is an out-pointer on our stack.
  napi::check_status!(unsafe { sys::napi_create_array_with_length(env, 1 + es.len() * 4, &mut arr) })?;
  let mut i = 0u32;
  let mut put = |v: sys::napi_value| -> napi::Result<()> {
    // SAFETY: `arr` and `v` are live values of this env.
    napi::check_status!(unsafe { sys::napi_set_element(env, arr, i, v) })?;
    i += 1;
    Ok(())
  };
  // SAFETY: makes a JS value in the same live env (so do the calls below).
  put(unsafe { text_to_js(env, &next)? })?;
  for (id, text, ttl, bytes) in es {
    // SAFETY: as above.
    put(unsafe { String::to_napi_value(env, id)? })?;
    put(match text {
      // SAFETY: as above.
      Some(t) => unsafe { text_to_js(env, &t)? },
      // SAFETY: as above.
      None => unsafe { Null::to_napi_value(env, Null)? },
    })?;
    // SAFETY: as above.
    put(unsafe { f64::to_napi_value(env, ttl.pttl() as f64)? })?;
    // SAFETY: as above.
    put(unsafe { f64::to_napi_value(env, bytes as f64)? })?;
  }
  Ok(arr)
}

/// A JS string of `s`: ASCII (most JSON) is copied as Latin-1, which V8
/// takes without decoding UTF-8.
pub(crate) unsafe fn text_to_js(env: sys::napi_env, s: &str) -> napi::Result<sys::napi_value> {
  let mut v = std::ptr::null_mut();
  let status = if s.is_ascii() {
    // SAFETY: live env (the caller's duty); `s` is valid for s.len() bytes, all ASCII, so Latin-1 reads them as they are.
    unsafe { sys::napi_create_string_latin1(env, s.as_ptr().cast(), s.len() as isize, &mut v) }
  } else {
    // SAFETY: live env; `s` is valid UTF-8 of s.len() bytes.
    unsafe { sys::napi_create_string_utf8(env, s.as_ptr().cast(), s.len() as isize, &mut v) }
  };
  napi::check_status!(status)?;
  Ok(v)
}

/// A reply with its sessions decoded (run on the thread that answers).
pub(crate) fn decoded(core: &Core, get_id: Option<&str>, r: crate::error::Result<Reply>) -> JsReply {
  match r {
    Ok(Reply::Value(Some(b))) => JsReply::Text(get_id.and_then(|id| core.decode(id, b))),
    Ok(Reply::Entries(es)) => JsReply::TextEntries(es.into_iter().filter_map(|(id, v)| core.decode(&id, v).map(|t| (id, t))).collect()),
    Ok(Reply::Page(next, es)) => JsReply::TextPage(
      next,
      es.into_iter()
        .map(|(id, v, ttl)| {
          let bytes = v.len();
          let text = core.decode(&id, v);
          (id, text, ttl, bytes)
        })
        .collect(),
    ),
    other => other.into(),
  }
}

/// What an async `#[napi]` function resolves with: its value, or an Error
/// carrying its `code`. napi-rs's async functions can only reject with a
/// napi status, so the code would be lost; the facade throws the Error
/// instead (`settled` in `lib/errors.js`), as it does for batch replies.
pub struct Settled<T>(pub crate::error::Result<T>);

impl<T: TypeName> TypeName for Settled<T> {
  fn type_name() -> &'static str {
    T::type_name()
  }
  fn value_type() -> ValueType {
    ValueType::Unknown
  }
}

impl<T: ToNapiValue> ToNapiValue for Settled<T> {
  unsafe fn to_napi_value(env: sys::napi_env, val: Self) -> napi::Result<sys::napi_value> {
    match val.0 {
      // SAFETY: `env` is the live env napi-rs passed to this to_napi_value.
      Ok(v) => unsafe { T::to_napi_value(env, v) },
      // SAFETY: as above.
      Err(e) => unsafe { <napi::Error<Code> as ToNapiValue>::to_napi_value(env, e.into()) },
    }
  }
}
