// swift-tools-version:6.1
// Fjord — a Kafka-compatible broker whose protocol core talks to storage through a C ABI.
// Module layering (dependencies point down only) is described in ../shared/STYLE.md and README.md.
import PackageDescription

/// Strict Swift 6 in every target: language mode 6 (complete concurrency checking) plus upcoming
/// features that make costs visible (`any` for existentials).
let swiftSettings: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
]

/// C backends: warnings are errors; `-D_GNU_SOURCE` for pwritev/fdatasync/O_DIRECT declarations.
let cSettings: [CSetting] = [
    .unsafeFlags(["-Wall", "-Wextra", "-Werror", "-Wno-unused-parameter", "-std=gnu11"]),
    .define("_GNU_SOURCE"),
]

let package = Package(
    name: "Fjord",
    products: [
        .executable(name: "fjord", targets: ["fjord"]),
        .executable(name: "fjord-codegen", targets: ["fjord-codegen"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
        // The metrics API the core records through (handles made once, no lookups per request); which
        // backend collects them is the executable's choice. Small: one module, no dependencies.
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        // Prometheus text exposition for GET /metrics, as a swift-metrics backend: replaces writing the
        // format by hand. Brings swift-atomics (small).
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        // Services with ordered graceful shutdown on SIGTERM/SIGINT (ServiceGroup, UnixSignals):
        // replaces the hand-written signal watcher and shutdown sequence. Brings swift-async-algorithms.
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        // The provider hierarchy for settings (command line > FJORD_ environment > server.properties >
        // default) and where each value came from. Brings swift-system and swift-collections (its
        // DequeModule); Yams is resolved but not built (the YAML trait is off).
        .package(url: "https://github.com/apple/swift-configuration.git", from: "1.4.0"),
    ],
    targets: [
        // MARK: Storage ABI and backends (C)
        // The ABI: kstore.h and its own helpers (kstore_status_name, …), whose source lives with the kit
        // so the host and every backend get them through CKStore alone.
        .target(
            name: "CKStore",
            path: "Backends",
            exclude: ["memory", "file", "faulty", "uring", "kit/include"],
            sources: ["kit/kstore_abi.c"],
            publicHeadersPath: "include",
            cSettings: cSettings
        ),
        // The C every backend shares: error slot, options, data directory, syscalls with one fault hook.
        .target(
            name: "KStoreKit",
            dependencies: ["CKStore"],
            path: "Backends/kit",
            exclude: ["kstore_abi.c"],
            cSettings: cSettings
        ),
        .target(
            name: "KStoreMemory",
            dependencies: ["CKStore", "KStoreKit"],
            path: "Backends/memory",
            cSettings: cSettings
        ),
        // Plain files: segments, sparse indexes, pwrite + fdatasync, CRC-checked recovery.
        .target(
            name: "KStoreFile",
            dependencies: ["CKStore", "KStoreKit", "CCRC32C"],
            path: "Backends/file",
            cSettings: cSettings
        ),
        // Test-only shim: seeded error injection (ABI-level and, through the kit's fault hook, I/O-level)
        // and a crash model over any backend table.
        .target(
            name: "KStoreFaulty",
            dependencies: ["CKStore", "KStoreKit"],
            path: "Backends/faulty",
            cSettings: cSettings
        ),
        // CRC-32C with the CPU's crc32 instruction: shared by KafkaRecords and the durable backends,
        // which may depend on C targets only.
        .target(name: "CCRC32C", cSettings: cSettings),
        // liburing through pkg-config (Debian: liburing-dev); only the uring backend uses it.
        .systemLibrary(
            name: "CLibURing",
            path: "Backends/uring/liburing",
            pkgConfig: "liburing",
            providers: [.apt(["liburing-dev"])]
        ),
        // The io_uring write-ahead-log backend (Linux only).
        .target(
            name: "KStoreURing",
            dependencies: ["CKStore", "KStoreKit", "CCRC32C", "CLibURing"],
            path: "Backends/uring",
            exclude: ["liburing"],
            sources: [
                "kstore_uring.c", "uring_cache.c", "uring_catalog.c", "uring_direct.c", "uring_frame.c",
                "uring_index.c",
                "uring_io.c", "uring_log.c", "uring_maintenance.c", "uring_read.c", "uring_recovery.c",
                "uring_staging.c",
                "uring_statistics.c", "uring_support.c",
            ],
            cSettings: cSettings
        ),

        // MARK: Protocol
        .target(
            name: "KafkaWire",
            dependencies: [.product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: swiftSettings
        ),
        .target(name: "KafkaMessages", dependencies: ["KafkaWire"], swiftSettings: swiftSettings),
        // CRC-32C and the batch codecs; needs zlib1g-dev, libsnappy-dev, liblz4-dev, libzstd-dev.
        .target(
            name: "CKafkaRecords",
            dependencies: ["CCRC32C"],
            cSettings: cSettings,
            linkerSettings: [
                .linkedLibrary("z"), .linkedLibrary("snappy"), .linkedLibrary("lz4"), .linkedLibrary("zstd"),
            ]
        ),
        .target(
            name: "KafkaRecords",
            dependencies: ["CKafkaRecords", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: swiftSettings
        ),

        // MARK: Codec generator (Kafka JSON → Swift)
        .target(name: "KafkaCodegen", swiftSettings: swiftSettings),
        .executableTarget(name: "fjord-codegen", dependencies: ["KafkaCodegen"], swiftSettings: swiftSettings),

        // MARK: Storage host, broker core, server, executable
        .target(
            name: "StorageHost",
            dependencies: [
                "CKStore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // The registry of the backends linked into the binary: the host knows no backend by name.
        .target(
            name: "StorageBackends",
            dependencies: ["StorageHost", "CKStore", "KStoreMemory", "KStoreFile", "KStoreURing"],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "BrokerCore",
            dependencies: [
                "KafkaMessages", "KafkaRecords", "StorageHost",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "BrokerServer",
            dependencies: [
                "BrokerCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // Operating the broker: the Prometheus exporter, the HTTP listener for /metrics and /health,
        // the storage observer, JSON logs.
        .target(
            name: "FjordOperations",
            dependencies: [
                "BrokerCore", "BrokerServer", "StorageHost",
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // The broker's settings: server.properties, FJORD_ environment variables and flags resolved
        // through swift-configuration, with the source of every value.
        .target(
            name: "FjordConfiguration",
            dependencies: [
                "BrokerCore", "BrokerServer",
                .product(name: "Configuration", package: "swift-configuration"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "fjord",
            dependencies: [
                "BrokerServer", "BrokerCore", "StorageHost", "StorageBackends", "FjordOperations",
                "FjordConfiguration",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),

        // MARK: Benchmarks
        .executableTarget(
            name: "fjord-storage-bench",
            dependencies: [
                "StorageHost", "StorageBackends",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ],
            path: "Benchmarks/StorageBench",
            swiftSettings: swiftSettings
        ),

        // MARK: Tests
        .testTarget(name: "KafkaWireTests", dependencies: ["KafkaWire"], swiftSettings: swiftSettings),
        .testTarget(
            name: "KafkaMessagesTests",
            dependencies: ["KafkaMessages", "KafkaCodegen"],
            exclude: ["capture_first_frame.py", "capture_proxy.py"],
            resources: [.copy("Golden")],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "KafkaRecordsTests",
            dependencies: ["KafkaRecords"],
            exclude: ["make_golden_batches.py"],
            resources: [.copy("Golden")],
            swiftSettings: swiftSettings
        ),
        // The storage tests, laid out like the code: what they share (a plain target; SwiftPM has no
        // test-support kind), every backend through the ABI, crashes and the faulty shim, the kit, and
        // each durable backend's own behaviour.
        .target(
            name: "StorageTestSupport",
            dependencies: [
                "StorageHost", "StorageBackends", "CKStore", "KStoreFile", "KStoreFaulty",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Tests/StorageTestSupport",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "StorageConformanceTests",
            dependencies: [
                "StorageTestSupport", "StorageHost", "StorageBackends", "CKStore",
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "StorageCrashTests",
            dependencies: [
                "StorageTestSupport", "StorageHost", "StorageBackends", "CKStore", "KStoreFaulty",
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "KStoreKitTests",
            dependencies: ["StorageTestSupport", "CKStore", "KStoreKit"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "FileBackendTests",
            dependencies: [
                "StorageTestSupport", "StorageHost", "StorageBackends", "CKStore", "KStoreKit", "KStoreFile",
                "KStoreFaulty", .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "URingBackendTests",
            dependencies: [
                "StorageTestSupport", "StorageHost", "StorageBackends", "CKStore", "KStoreFaulty", "KStoreURing",
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "BrokerCoreTests",
            dependencies: [
                "BrokerCore", "KafkaMessages", "KafkaRecords", "StorageHost", "StorageBackends", "CKStore",
                "KStoreFaulty",
                .product(name: "MetricsTestKit", package: "swift-metrics"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "FjordConfigurationTests",
            dependencies: ["FjordConfiguration", "BrokerCore"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "FjordOperationsTests",
            dependencies: [
                "FjordOperations", "StorageHost",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "BrokerServerTests",
            dependencies: [
                "BrokerServer", "BrokerCore",
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOTestUtils", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
    ]
)
