internal import CKStore

/// One figure a backend reports about itself (kstore.h KSTORE_CONTROL_STATS).
public struct BackendStatistic: Sendable, Hashable {
    public enum Kind: Sendable, Hashable {
        /// Never decreases during the life of the instance.
        case counter
        case gauge
    }

    /// [a-z][a-z0-9_]*, at most KSTORE_STAT_NAME_MAX bytes, Prometheus style (`syncs_total`).
    public var name: String
    public var kind: Kind
    /// One line for humans (empty when the backend gave none).
    public var help: String
    public var value: Double

    public init(name: String, kind: Kind, help: String, value: Double) {
        self.name = name
        self.kind = kind
        self.help = help
        self.value = value
    }

    /// kstore.h's KSTORE_CONTROL_STATS, for callers that test the op itself (the conformance suite).
    public static let controlOp: Int32 = KSTORE_CONTROL_STATS

    /// kstore.h's naming rule for figures; a figure that breaks it is dropped by the host.
    public static func isValidName(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard let first = bytes.first, bytes.count <= Int(KSTORE_STAT_NAME_MAX),
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(first)
        else { return false }
        return bytes.allSatisfy { byte in
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte)
                || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
                || byte == UInt8(ascii: "_")
        }
    }
}

/// What `backendStatistics` collects during the control call.
private struct StatisticsCollection {
    var figures: [BackendStatistic] = []
    /// Names that broke kstore.h's rules (or came twice): dropped, reported once by the caller.
    var rejected: [String] = []
}

extension StorageEngine {
    /// The backend's own figures (kstore.h KSTORE_CONTROL_STATS), in the order it reported them;
    /// nil when the backend does not implement the op (the host's own measurements, through a
    /// `StorageObserver`, are then all there is) or the engine is closed. Figures whose names break
    /// kstore.h's rules are dropped and logged. Runs on the calling thread: the op never blocks.
    public func backendStatistics() -> [BackendStatistic]? {
        guard let control = self.context.backend.table.control else { return nil }
        guard (try? self.enter("statistics")) != nil else { return nil }
        defer { self.leave() }
        var collection = StatisticsCollection()
        let status = withUnsafeMutablePointer(to: &collection) { collection in
            var visitor = kstore_stats_visitor(
                struct_size: UInt32(MemoryLayout<kstore_stats_visitor>.size),
                reserved: 0,
                callback: { context, stat in
                    // The backend calls back during the control call, so `context` (the collection
                    // on the caller's stack) is alive; the stat and its strings are valid only now.
                    guard let context, let stat, let cName = stat.pointee.name else { return }
                    let collection = context.assumingMemoryBound(to: StatisticsCollection.self)
                    let name = String(cString: cName)
                    let kind: BackendStatistic.Kind? =
                        switch stat.pointee.kind {
                        case KSTORE_STAT_COUNTER: .counter
                        case KSTORE_STAT_GAUGE: .gauge
                        default: nil
                        }
                    guard let kind, BackendStatistic.isValidName(name),
                        !collection.pointee.figures.contains(where: { $0.name == name })
                    else {
                        collection.pointee.rejected.append(name)
                        return
                    }
                    let help = stat.pointee.help.map { String(cString: $0) } ?? ""
                    collection.pointee.figures.append(
                        BackendStatistic(name: name, kind: kind, help: help, value: stat.pointee.value)
                    )
                },
                context: UnsafeMutableRawPointer(collection)
            )
            return withUnsafeMutablePointer(to: &visitor) { visitor in
                control(self.context.instance.pointer, KSTORE_CONTROL_STATS, visitor)
            }
        }
        guard status == KSTORE_OK else {
            if status != KSTORE_ERR_UNSUPPORTED {
                self.context.logger.warning(
                    "the backend's statistics op failed",
                    metadata: ["storage.status": "\(StorageError.Code(status: status).statusName)"]
                )
            }
            return nil
        }
        if !collection.rejected.isEmpty {
            self.context.noteRejectedStatistics(collection.rejected)
        }
        return collection.figures
    }
}
