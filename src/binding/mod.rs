//! The one thin `#[napi]` layer: store constructors, and one generic call
//! per store kind that takes an op as data (`call`, `q`; see
//! [`crate::backend::Op::from_call`]). It converts arguments and results,
//! applies the session size limit and the codec, and gives errors their
//! codes. Host quirks (units, callbacks, never-reject, reads of ids no
//! session can have) live in the JS facades under `lib/`.
//!
//! Every sync export is `catch_unwind`: a panic becomes a JS error with code
//! `ERR_INTERNAL` instead of aborting Node.
//!
//! `cargo test` builds no napi registrations, so these exports look unused
//! there; the node tests (`__test__/`) exercise them.
#![cfg_attr(test, allow(dead_code))]

mod async_store;
mod daemon;
mod file;
mod info;
mod init;
mod memory;
mod object_storage;
mod postgres;
mod redis;
mod reply;
mod session_codec;
mod snapshot;
mod store_core;
mod sync_store;
mod text;
mod wire_store;

pub use self::redis::{redis_wire_store, RedisStoreConfig};
pub use async_store::{dispatch_store, AsyncStore, DispatchStoreConfig};
pub use daemon::{start_daemon, DaemonConfig, DaemonListen, DaemonServer, DaemonStorage};
pub use file::{FileStoreConfig, READ_CACHE_BYTES};
pub use info::{addon_version, check_json, error_codes};
pub use memory::{dummy_store, memory_store, MemoryStoreOptions};
pub use object_storage::{NativeModuleStore, ObjectStoreConfig};
pub use postgres::PostgresStoreConfig;
pub use reply::JsReply;
pub use session_codec::SessionCodec;
pub use snapshot::{snapshot_store, SnapshotStoreConfig};
pub(crate) use store_core::Core;
pub use sync_store::SyncStore;
pub use text::{Utf8Text, DEFAULT_MAX_SESSION_BYTES, MAX_ID_BYTES};
pub use wire_store::WireStore;
