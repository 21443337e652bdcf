//! Sharing the database with a replicator: Litestream streams the WAL off the Pi
//! (`database.external_replication`, README "Backups").
//!
//! Litestream keeps a read transaction open on the database so that nobody checkpoints frames
//! it has not shipped yet, and checkpoints the WAL itself once they are shipped. The daemon's
//! own checkpoints fight that: SQLite's automatic ones after commits, and above all the
//! `wal_checkpoint(TRUNCATE)` of a clean stop, which waits out the busy timeout for
//! Litestream's read lock (holding off writers, Litestream's own included), and which, if it
//! lands between two of Litestream's lock renewals, restarts the WAL under it. So with a
//! replicator the daemon checkpoints nothing: its checkpointer thread (`writer/checkpointer`)
//! is told to stand by, automatic checkpoints are off on the writer's connection (a writer
//! beside the daemon, `kaffediem user`, would otherwise make them), and the shutdown
//! checkpoint is skipped. The WAL then stays beside the database
//! after a stop (Litestream checkpoints it when it next runs): a copy of `kaffediem.db` alone is
//! no longer a whole backup, `kaffediem backup` (SQLite's backup API) still is.
//!
//! Out of our hands: the start-up connections that migrate and settle the epoch before the
//! writer's setting is made (SQLite's automatic checkpoints are PASSIVE: they never pass
//! Litestream's read lock), and SQLite's checkpoint when the last connection to the file
//! closes, which only happens when Litestream is not running (it keeps one open).

use super::writer::Writer;
use super::StoreError;

/// Leave every checkpoint to the replicator: none by the checkpointer, no automatic ones on
/// the writer's connection from now on, and none at shutdown. Call before the first write.
pub async fn leave_checkpoints_to_replicator(writer: &Writer) -> Result<(), StoreError> {
    writer.leave_checkpoints();
    writer
        .write(|tx| {
            // A connection setting, not a change: the (empty) commit publishes nothing.
            tx.pragma_update(None, "wal_autocheckpoint", 0)?;
            Ok(())
        })
        .await
}
