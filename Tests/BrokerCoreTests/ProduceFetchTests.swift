import NIOCore
import Testing

@testable import BrokerCore
@testable import KafkaMessages
@testable import KafkaRecords

@Suite("Produce, Fetch and ListOffsets on the memory backend")
struct ProduceFetchTests {
    /// ListOffsets right after a produce equals the acked count: one source of truth for the high watermark.
    @Test func highWatermarkEqualsAckedCountImmediately() async throws {
        let test = try await TestBroker.start()
        try await test.createTopic("hwm", partitions: 3)
        var acked = [Int64](repeating: 0, count: 3)
        for round in 0..<20 {
            let partition = Int32(round % 3)
            let (error, base) = try await test.produce("hwm", partition: partition, batch: makeBatch(count: 7))
            #expect(error == 0)
            #expect(base == acked[Int(partition)])
            acked[Int(partition)] += 7
            let latest = try await test.listOffset("hwm", partition: partition, timestamp: -1)
            #expect(latest.offset == acked[Int(partition)])
        }
        for partition in 0..<3 {
            let earliest = try await test.listOffset("hwm", partition: Int32(partition), timestamp: -2)
            #expect(earliest.offset == 0)
        }
    }

    /// The stored batch is the producer's bytes with only baseOffset and leader epoch rewritten.
    @Test func fetchReturnsTheProducersBytesVerbatim() async throws {
        let test = try await TestBroker.start()
        try await test.createTopic("verbatim")
        _ = try await test.produce("verbatim", batch: makeBatch(count: 3))
        let batch = makeBatch(count: 5, prefix: "second")
        _ = try await test.produce("verbatim", batch: batch)
        let data = try await test.fetch("verbatim", offset: 3)
        let stored = try #require(data.records)
        #expect(stored.readableBytes == batch.readableBytes)
        #expect(stored.getInteger(at: stored.readerIndex, as: Int64.self) == 3)
        #expect(stored.getInteger(at: stored.readerIndex + 12, as: Int32.self) == 0)
        #expect(
            stored.getSlice(at: stored.readerIndex + 16, length: stored.readableBytes - 16)
                == batch.getSlice(at: batch.readerIndex + 16, length: batch.readableBytes - 16)
        )
    }

    /// Exactly-once count at the post-mortems' scales: every message once, in order, no duplicates.
    @Test(arguments: [10, 50_000])
    func exactlyOnceCount(messages: Int) async throws {
        let test = try await TestBroker.start()
        try await test.createTopic("once")
        let perBatch = 100
        var produced = 0
        while produced < messages {
            let count = min(perBatch, messages - produced)
            var builder = RecordBatchBuilder()
            for i in produced..<(produced + count) {
                builder.append(key: nil, value: ByteBuffer(string: "v\(i)"), timestamp: Int64(i))
            }
            let (error, base) = try await test.produce("once", batch: builder.build(), acks: 1)
            #expect(error == 0)
            #expect(base == Int64(produced))
            produced += count
        }
        let records = try await test.consumeAll("once")
        #expect(records.count == messages)
        #expect(records.map(\.0) == (0..<Int64(messages)).map { $0 })
        #expect(records.map { value($0.1) } == (0..<messages).map { "v\($0)" })
    }

    /// A fetch from the middle of a 5,000-batch partition starts at the batch holding the offset.
    @Test func fetchFromTheMiddleOfALargePartition() async throws {
        let test = try await TestBroker.start()
        try await test.createTopic("middle")
        for i in 0..<5_000 {
            _ = try await test.produce("middle", batch: makeBatch(count: 1, prefix: "n\(i)-"), acks: 1)
        }
        let records = try await test.consumeAll("middle", from: 2_500)
        #expect(records.count == 2_500)
        #expect(records.first?.0 == 2_500)
        #expect(records.first.map { value($0.1) } == "n2500-0")
    }

    /// Fetch honours partition max bytes but returns a first batch larger than it (KIP-74).
    @Test func firstBatchIsReturnedEvenWhenLargerThanMaxBytes() async throws {
        let test = try await TestBroker.start()
        try await test.createTopic("kip74")
        _ = try await test.produce("kip74", batch: makeBatch(count: 200))
        _ = try await test.produce("kip74", batch: makeBatch(count: 200))
        let data = try await test.fetch("kip74", offset: 0, partitionMaxBytes: 10)
        let batches = RecordBatchReader.batches(in: try #require(data.records))
        #expect(batches.count == 1)
    }

    /// Empty partitions carry zero-length records (not null), sessionless fields and LSO = HWM.
    @Test func emptyFetchHasZeroLengthRecords() async throws {
        let test = try await TestBroker.start()
        try await test.createTopic("empty")
        let data = try await test.fetch("empty", offset: 0)
        #expect(data.errorCode == 0)
        #expect(data.records?.readableBytes == 0)
        #expect(data.highWatermark == 0)
        #expect(data.lastStableOffset == 0)
        #expect(data.preferredReadReplica == -1)
    }

    /// Offsets outside [log start, log end] answer OFFSET_OUT_OF_RANGE; unknown partitions UNKNOWN_TOPIC_OR_PARTITION.
    @Test func outOfRangeAndUnknownPartition() async throws {
        let test = try await TestBroker.start()
        try await test.createTopic("range")
        _ = try await test.produce("range", batch: makeBatch(count: 2))
        #expect(try await test.fetch("range", offset: 3).errorCode == ErrorCode.offsetOutOfRange.rawValue)
        #expect(try await test.fetch("range", offset: -1).errorCode == ErrorCode.offsetOutOfRange.rawValue)
        #expect(try await test.fetch("range", offset: 2).errorCode == 0)
        #expect(
            try await test.fetch("range", partition: 5, offset: 0).errorCode
                == ErrorCode.unknownTopicOrPartition.rawValue
        )
        #expect(try await test.fetch("nope", offset: 0).errorCode == ErrorCode.unknownTopicOrPartition.rawValue)
    }

    /// A long poll on an empty partition returns the data produced while it waits.
    @Test func longPollWakesOnProduce() async throws {
        let test = try await TestBroker.start()
        try await test.createTopic("poll")
        // MaxWaitMs is 90 s, so the fetch returns within the 30 s watchdog only if the produce
        // wakes it (a liveness check with seconds of slack, not a timing assertion).
        let result = try await withThrowingTaskGroup(of: FetchResponse.PartitionData?.self) { group in
            group.addTask { try await test.fetch("poll", offset: 0, maxWaitMs: 90_000) }
            group.addTask {
                try await Task.sleep(for: .seconds(30))
                return nil
            }
            try await Task.sleep(for: .milliseconds(50))
            _ = try await test.produce("poll", batch: makeBatch(count: 4), acks: 1)
            let first = try await group.next()!
            group.cancelAll()
            return first
        }
        let data = try #require(result, "the long poll was not woken by the produce")
        #expect(data.highWatermark == 4)
        #expect(RecordBatchReader.batches(in: try #require(data.records)).count == 1)
    }

    /// A long poll with no data returns empty when MaxWaitMs expires.
    @Test func longPollTimesOutEmpty() async throws {
        let test = try await TestBroker.start()
        try await test.createTopic("idle")
        let data = try await test.fetch("idle", offset: 0, maxWaitMs: 20)
        #expect(data.errorCode == 0)
        #expect(data.records?.readableBytes == 0)
    }

    /// ListOffsets by timestamp finds the first record at or after it, inside batches; -3 finds the max.
    @Test func listOffsetsByTimestamp() async throws {
        let test = try await TestBroker.start()
        try await test.createTopic("times")
        // Timestamps 1000, 1010, …, 1490 in five batches of ten.
        for b in 0..<5 {
            _ = try await test.produce(
                "times",
                batch: makeBatch(count: 10, timestamp: 1000 + Int64(b) * 100, timestampStep: 10)
            )
        }
        for (query, expected) in [(Int64(0), Int64(0)), (1000, 0), (1001, 1), (1255, 26), (1490, 49), (1491, -1)] {
            let answer = try await test.listOffset("times", timestamp: query)
            #expect(answer.offset == expected, "timestamp \(query)")
            if expected >= 0 { #expect(answer.timestamp == 1000 + expected * 10) }
        }
        let max = try await test.listOffset("times", timestamp: -3)
        #expect(max.offset == 49)
        #expect(max.timestamp == 1490)
    }

    /// Produce validates batches: corrupt CRC, too large, bad record count, no records.
    @Test func produceRejectsInvalidBatches() async throws {
        let test = try await TestBroker.start()
        try await test.createTopic("invalid", configs: ["max.message.bytes": "1000"])
        var corrupt = makeBatch(count: 3)
        let last = corrupt.writerIndex - 1
        corrupt.setInteger(corrupt.getInteger(at: last, as: UInt8.self)! ^ 0xFF, at: last)
        #expect(try await test.produce("invalid", batch: corrupt).errorCode == ErrorCode.corruptMessage.rawValue)
        #expect(
            try await test.produce("invalid", batch: makeBatch(count: 200)).errorCode
                == ErrorCode.messageTooLarge.rawValue
        )
        #expect(try await test.produce("invalid", batch: ByteBuffer()).errorCode == ErrorCode.invalidRecord.rawValue)
        #expect(try await test.listOffset("invalid", timestamp: -1).offset == 0)
        #expect(try await test.produce("invalid", batch: makeBatch(count: 3)) == (0, 0))
    }

    /// acks must be -1, 0 or 1; acks=0 has no response.
    @Test func acksHandling() async throws {
        let test = try await TestBroker.start()
        try await test.createTopic("acks")
        #expect(
            try await test.produce("acks", batch: makeBatch(count: 1), acks: 2).errorCode
                == ErrorCode.invalidRequiredAcks.rawValue
        )
        let frame = TestBroker.frame(
            ProduceRequest(
                acks: 0,
                timeoutMs: 1000,
                topicData: [.init(name: "acks", partitionData: [.init(index: 0, records: makeBatch(count: 2))])]
            ),
            version: 9,
            correlationId: 1
        )
        guard case .noResponse = await test.send(frame: frame) else {
            Issue.record("acks=0 must not be answered")
            return
        }
        #expect(try await test.listOffset("acks", timestamp: -1).offset == 2)
        let failing = TestBroker.frame(
            ProduceRequest(
                acks: 0,
                timeoutMs: 1000,
                topicData: [.init(name: "acks", partitionData: [.init(index: 9, records: makeBatch(count: 2))])]
            ),
            version: 9,
            correlationId: 2
        )
        guard case .close = await test.send(frame: failing) else {
            Issue.record("a failed acks=0 produce closes the connection")
            return
        }
    }

    /// Every codec's batches are accepted and read back.
    @Test(arguments: [CompressionCodec.gzip, .snappy, .lz4, .zstd])
    func compressedBatches(codec: CompressionCodec) async throws {
        let test = try await TestBroker.start()
        try await test.createTopic("codec")
        #expect(try await test.produce("codec", batch: makeBatch(count: 300, compression: codec)) == (0, 0))
        let records = try await test.consumeAll("codec")
        #expect(records.map { value($0.1) } == (0..<300).map { "m\($0)" })
    }

    /// Pipelined produces on one connection get offsets in their arrival order.
    @Test func pipelinedProducesKeepConnectionOrder() async throws {
        let test = try await TestBroker.start()
        try await test.createTopic("order")
        let connection = test.newConnection()
        let frames = (0..<20).map { i in
            TestBroker.frame(
                ProduceRequest(
                    acks: 1,
                    timeoutMs: 1000,
                    topicData: [
                        .init(
                            name: "order",
                            partitionData: [.init(index: 0, records: makeBatch(count: 1, prefix: "p\(i)-"))]
                        )
                    ]
                ),
                version: 9,
                correlationId: Int32(i)
            )
        }
        // Pipelined: every request is handed to the core before any answer is awaited.
        var replies: [RequestReply] = []
        for frame in frames { replies.append(await test.dispatch(frame: frame, on: connection)) }
        var outcomes: [Int: RequestOutcome] = [:]
        for (i, reply) in replies.enumerated() { outcomes[i] = await TestBroker.outcome(of: reply) }
        for i in 0..<20 {
            let response = try TestBroker.decode(
                outcomes[i]!,
                for: ProduceRequest.self,
                version: 9,
                correlationId: Int32(i)
            )
            #expect(response.responses[0].partitionResponses[0].baseOffset == Int64(i))
        }
    }
}

@Suite("Retention")
struct RetentionTests {
    /// retention.bytes deletes the oldest storage units; the log start, ListOffsets earliest and
    /// Fetch's out-of-range bound follow it.
    @Test func retentionBytesAdvancesTheLogStart() async throws {
        let test = try await TestBroker.start()
        let batch = makeBatch(count: 10)
        try await test.createTopic(
            "bytes",
            configs: ["retention.bytes": String(batch.readableBytes * 3), "retention.ms": "-1"]
        )
        for _ in 0..<10 { _ = try await test.produce("bytes", batch: batch) }
        await test.broker.applyRetention()
        #expect(try await test.listOffset("bytes", timestamp: -2).offset == 70)
        #expect(try await test.listOffset("bytes", timestamp: -1).offset == 100)
        #expect(try await test.fetch("bytes", offset: 0).errorCode == ErrorCode.offsetOutOfRange.rawValue)
        #expect(try await test.consumeAll("bytes", from: 70).count == 30)
    }

    /// retention.ms deletes batches whose newest record is older than the broker clock minus it.
    @Test func retentionMsDeletesExpiredBatches() async throws {
        let test = try await TestBroker.start { $0.clock = { 1_700_000_100_000 } }
        try await test.createTopic("time", configs: ["retention.ms": "50000"])
        _ = try await test.produce("time", batch: makeBatch(count: 5, timestamp: 1_700_000_000_000))
        _ = try await test.produce("time", batch: makeBatch(count: 5, timestamp: 1_700_000_090_000))
        await test.broker.applyRetention()
        #expect(try await test.listOffset("time", timestamp: -2).offset == 5)
        #expect(try await test.listOffset("time", timestamp: -1).offset == 10)
    }

    /// Topics without retention limits keep everything.
    @Test func unlimitedRetentionKeepsEverything() async throws {
        let test = try await TestBroker.start { $0.retentionMs = -1 }
        try await test.createTopic("forever")
        _ = try await test.produce("forever", batch: makeBatch(count: 5, timestamp: 1))
        await test.broker.applyRetention()
        #expect(try await test.listOffset("forever", timestamp: -2).offset == 0)
    }
}
