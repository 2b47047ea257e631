import Logging
import NIOCore
import StorageHost
import Synchronization

/// Appends to one of the broker's internal logs (the transaction state log, the aborted
/// transactions index log) and compacts it, through the storage ABI.
///
/// Entries are submitted back to back followed by a sync, under a lock, so the log's order is
/// the order of the calls (callers that need their own order, like the transaction coordinator,
/// call under their own lock). A write is done when every append and the sync completed: durable
/// on a DURABLE backend.
final class InternalLogWriter: Sendable {
    private struct State {
        var nextOffset: Int64
        /// Bumped when a write fails and `nextOffset` is re-read from the log.
        var epoch: UInt64 = 0
        /// Entries in the log since its start (compaction weighs this against the live count).
        var entriesInLog: Int
        var isCompacting = false
    }

    let log: StorageLog
    private let logger: Logger
    private let state: Mutex<State>
    /// The log is compacted once it holds at least this many entries and twice the live ones.
    let compactionThresholdEntries: Int
    /// Segment size of the internal logs: storage is reclaimed only in whole segments below the
    /// log start, and compaction keeps the live part small (as for the group offsets log).
    static let segmentBytes = 16 << 20

    /// Opens (creating) the log and reads every entry back, in order, as the concatenated
    /// buffers the reads returned (decode them with the record type's `decodeAll`).
    static func open(
        storage: StorageEngine,
        name: String,
        compactionThresholdEntries: Int,
        logger: Logger
    ) async throws -> (InternalLogWriter, [ByteBuffer]) {
        let log = try await storage.openLog(
            named: name,
            create: true,
            options: [("segment.bytes", String(segmentBytes))]
        )
        do {
            let recovered = try log.state()
            var chunks: [ByteBuffer] = []
            var offset = recovered.startOffset
            while offset < recovered.endOffset {
                let chunk = try await log.read(
                    from: offset,
                    limit: recovered.endOffset,
                    maxBytes: 1 << 20,
                    minimumOneEntry: true
                )
                guard chunk.entryCount > 0 else { break }
                chunks.append(chunk.bytes)
                offset = chunk.nextOffset
            }
            let writer = InternalLogWriter(
                log: log,
                nextOffset: recovered.endOffset,
                entriesInLog: Int(recovered.endOffset - recovered.startOffset),
                compactionThresholdEntries: compactionThresholdEntries,
                logger: logger
            )
            return (writer, chunks)
        } catch {
            await log.close()
            throw error
        }
    }

    private init(log: StorageLog, nextOffset: Int64, entriesInLog: Int, compactionThresholdEntries: Int, logger: Logger)
    {
        self.log = log
        self.logger = logger
        self.compactionThresholdEntries = max(1, compactionThresholdEntries)
        self.state = Mutex(State(nextOffset: nextOffset, entriesInLog: entriesInLog))
    }

    /// Submits `entries` as consecutive log entries, then a sync; does not wait.
    func submit(_ entries: [ByteBuffer]) -> PendingOffsetsWrite {
        state.withLock { state in
            let pending = PendingOffsetsWrite(completions: entries.count + 1, epoch: state.epoch)
            for entry in entries {
                let offset = state.nextOffset
                state.nextOffset += 1
                state.entriesInLog += 1
                log.submitAppend(firstOffset: offset, lastOffset: offset, maxTimestamp: -1, parts: [entry]) {
                    pending.completed($0)
                }
            }
            log.submitSync { pending.completed($0) }
            return pending
        }
    }

    /// Waits for a submitted write; on failure re-reads where the log ends (once per failure).
    func finish(_ pending: PendingOffsetsWrite) async -> Result<Void, StorageError> {
        let result = await pending.wait()
        if case .failure(let error) = result {
            state.withLock { state in
                guard state.epoch == pending.epoch else { return }
                state.epoch += 1
                if let end = try? log.state().endOffset { state.nextOffset = end }
            }
            logger.error("writing an internal log failed", metadata: ["log": "\(log.name)", "error": "\(error)"])
        }
        return result
    }

    /// Writes `entries` and waits until they are durable.
    func write(_ entries: [ByteBuffer]) async -> Result<Void, StorageError> {
        await finish(submit(entries))
    }

    /// Whether the log has grown well past `liveCount` entries and no compaction runs.
    func isCompactionDue(liveCount: Int) -> Bool {
        state.withLock { state in
            !state.isCompacting && state.entriesInLog >= compactionThresholdEntries
                && state.entriesInLog >= 2 * liveCount
        }
    }

    /// Starts a compaction: the caller passes the live entries, which are written again (under the
    /// caller's lock when its order matters); nil when one runs already.
    func beginCompaction(live: [ByteBuffer]) -> (pending: PendingOffsetsWrite, start: Int64)? {
        let start: Int64? = state.withLock { state in
            guard !state.isCompacting else { return nil }
            state.isCompacting = true
            return state.nextOffset
        }
        guard let start else { return nil }
        let pending = submit(live)
        state.withLock { $0.entriesInLog = live.count }
        return (pending, start)
    }

    /// Finishes a compaction: once the rewritten entries are durable, everything before them goes.
    func finishCompaction(_ compaction: (pending: PendingOffsetsWrite, start: Int64)) async {
        if case .success = await finish(compaction.pending) {
            do {
                try await log.deleteBefore(compaction.start)
            } catch {
                // The rewritten entries are durable; replaying the longer log gives the same state.
                logger.warning(
                    "could not delete compacted entries",
                    metadata: ["log": "\(log.name)", "error": "\(error)"]
                )
            }
        }
        state.withLock { $0.isCompacting = false }
    }

    func close() async {
        await log.close()
    }
}
