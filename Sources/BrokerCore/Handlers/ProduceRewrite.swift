import KafkaMessages
import KafkaRecords
import NIOCore

/// The produce path of topics that rewrite batches before storing them: `compression.type` other
/// than `producer` (recompression when the producer's codec differs) and
/// `message.timestamp.type=LogAppendTime`. Every other topic stores the producer's bytes as sent
/// and never comes here.
extension Broker {
    /// The uncompressed bytes one Produce request may have the broker recompress, over all its
    /// batches: with the per-batch inflation bound, what bounds the CPU and memory a request costs
    /// on the transport's thread. Batches beyond it are refused like a batch that inflates too far.
    static let recompressedBytesPerRequestMax = decompressedBatchBytesMax

    /// Validates a batch for a rewriting topic and returns what to store: a new batch, or the
    /// producer's bytes when their codec is already the topic's and the topic keeps CreateTime.
    func rewrite(
        _ records: ByteBuffer,
        for settings: TopicSettings,
        _ policy: RecordBatchValidationPolicy,
        budget: inout Int,
        sink: AppendSink
    ) throws(RecordBatchError) -> (ValidatedBatch, ByteBuffer) {
        var policy = policy
        policy.maxDecompressedBytes = min(policy.maxDecompressedBytes, max(budget, 0))
        if settings.logAppendTime {
            // Kafka checks record timestamps against the topic's bounds only for CreateTime.
            policy.timestampBeforeMaxMs = .max
            policy.timestampAfterMaxMs = .max
        }
        let rewrite = settings.batchRewrite(nowMs: policy.nowMs)
        let result = try RecordBatchValidator.validate(records, policy: policy, rewrite: rewrite)
        budget -= result.recompressedByteCount
        if let appendTime = rewrite.logAppendTimeMs { sink.noteLogAppendTime(appendTime) }
        return (result.validated, result.bytes ?? records)
    }
}

extension Broker {
    /// Up-converts a Produce v0-2 message set to one v2 batch, as Kafka's `LogValidator` does: offsets
    /// are the broker's, CRCs recomputed, the producer's codec kept for `compression.type=producer` and
    /// the topic's applied otherwise; a LogAppendTime topic then stamps it like any rewritten batch.
    /// The inflated bytes count against the request's recompression budget.
    func upConvert(
        _ records: ByteBuffer,
        for settings: TopicSettings,
        _ policy: RecordBatchValidationPolicy,
        budget: inout Int,
        sink: AppendSink
    ) throws(RecordBatchError) -> (ValidatedBatch, ByteBuffer) {
        let target = settings.batchRewrite(nowMs: policy.nowMs)
        let converted = try LegacyRecordsConverter.upConvert(
            records,
            compression: target.compression,
            compressionLevel: target.compressionLevel,
            maxMessageBytes: policy.maxBatchBytes,
            maxDecompressedBytes: min(policy.maxDecompressedBytes, max(budget, 0))
        )
        budget -= converted.decompressedByteCount
        if settings.logAppendTime {
            return try rewrite(converted.batch, for: settings, policy, budget: &budget, sink: sink)
        }
        return (try RecordBatchValidator.validateProduceRecords(converted.batch, policy: policy), converted.batch)
    }
}

extension TopicSettings {
    /// The rewrite this topic asks for, with Kafka's levels mapped onto the C libraries':
    /// `compression.gzip.level` -1 is zlib's default; `compression.lz4.level` 9 (Kafka's default)
    /// is lz4's fast mode, as Kafka's Lz4BlockOutputStream uses it, other levels LZ4HC.
    func batchRewrite(nowMs: Int64) -> BatchRewrite {
        let codec: CompressionCodec?
        var level: Int32 = 0
        switch compression {
        case .producer: codec = nil
        case .uncompressed: codec = CompressionCodec.none
        case .gzip:
            codec = .gzip
            level = gzipLevel == -1 ? 0 : gzipLevel
        case .snappy: codec = .snappy
        case .lz4:
            codec = .lz4
            level = lz4Level == 9 ? 0 : lz4Level
        case .zstd:
            codec = .zstd
            level = zstdLevel == 0 ? 3 : zstdLevel
        }
        return BatchRewrite(compression: codec, compressionLevel: level, logAppendTimeMs: logAppendTime ? nowMs : nil)
    }
}

extension AppendSink {
    /// The slot's response carries these record errors (`record_errors`).
    func noteRecordErrors(_ errors: [RecordBatchError.RecordError]) {
        (collector as? ProduceCollector)?.note(slot: slot) { $0.recordErrors = errors }
    }

    /// The slot's response carries this `log_append_time_ms` if the batch is appended.
    func noteLogAppendTime(_ timeMs: Int64) {
        (collector as? ProduceCollector)?.note(slot: slot) { $0.logAppendTimeMs = timeMs }
    }
}
