/*
 * kstore.h — the Fjord storage ABI, version 2.
 *
 * This header is the specification. The broker core talks to storage only through the two tables
 * declared here; backends (Backends/memory, Backends/file, Backends/uring, …) implement them. The
 * shape follows SQLite's VFS: every table starts with (abi_version, struct_size), tables only grow
 * at the end, and every member says since which ABI version it exists.
 *
 * Vocabulary
 *   log       An append-only sequence of *entries* with dense int64 offsets, e.g. one Kafka
 *             partition. Logs have names; the backend maps names to storage.
 *   entry     One opaque byte string appended in one call (for Fjord: one Kafka RecordBatch v2).
 *             An entry covers the offsets [first_offset, last_offset]; the next entry starts at
 *             last_offset + 1. The backend never parses entry bytes: it stores them verbatim and
 *             returns them verbatim (append_checked_batch lets it rely on one checksum in them).
 *   start     The log start offset: the first offset that can be read.
 *   end       The log end offset: the offset the next entry must start at (last offset + 1).
 *
 * The ABI is protocol-free: it knows logs, offsets, timestamps and bytes, never Kafka requests.
 *
 * Versioning rules
 *   - KSTORE_ABI_VERSION is bumped by every layout change. Tables only grow at the end.
 *   - The host calls a table member only if the table's abi_version is at least the member's
 *     "since" version, the member's offset lies inside struct_size, and the pointer is non-NULL.
 *   - Members marked REQUIRED must be non-NULL. Every OPTIONAL member documents the host fallback.
 *   - Structs that the host passes for the backend to fill (kstore_log_state, kstore_read_result)
 *     begin with struct_size set by the host; a backend fills only the fields that fit.
 *
 * Threading
 *   - A backend table is immutable and may be used from any thread.
 *   - Instance members (open_log, delete_log, list_logs, control, last_error) may be called
 *     concurrently from any threads.
 *   - Log members may be called from any thread. The host never runs two *mutating* calls
 *     (append, truncate_to, delete_before, enforce_retention, close) on the same log at the same
 *     time, and issues appends in offset order. read, state, find_offset_by_time and sync may run
 *     concurrently with each other and with one mutating call on the same log.
 *   - Without KSTORE_CAP_NONBLOCKING the host assumes any call may block on I/O and never makes it
 *     from an event-loop thread.
 *
 * Completions
 *   - append and sync take (callback, context). If the member returns a status other than
 *     KSTORE_OK, the request was rejected, nothing changed, and the callback is never called.
 *     If it returns KSTORE_OK the callback is called exactly once, with the final status — either
 *     before the member returns (a synchronous backend) or later on a backend thread.
 *   - An append or sync rejected with KSTORE_ERR_BUSY (a bounded queue is full) is backpressure,
 *     not a failure: the host calls it again later, and makes no later append or sync on that
 *     log until it is accepted, so order is kept.
 *   - A callback must return quickly and must not call any member of the same instance; the host
 *     hops back to its own executor inside it.
 *   - For one log, append callbacks are called in the order the appends were made, and a sync's
 *     callback comes after the callbacks of every append accepted before that sync.
 *   - The message of an asynchronous failure can be read with last_error after the callback
 *     (outside it); with concurrent failures it may describe another one.
 *
 * Buffers and ownership
 *   - A backend never keeps a pointer to caller memory after the call returns. append copies or
 *     writes the iovec contents before returning; read writes into the caller's buffer before
 *     returning.
 *   - Handles (kstore_instance, kstore_log) are opaque, allocated by the backend and released by
 *     exactly one close call. Names and option strings are copied if the backend keeps them.
 *
 * Errors
 *   - Status codes form the closed list below; each says whether retrying can succeed. errno never
 *     crosses the ABI. After a failure the backend records a human-readable message that
 *     last_error returns (diagnostic only: with concurrent calls it may describe another failure).
 */
#ifndef KSTORE_H
#define KSTORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KSTORE_ABI_VERSION 2u

/* ---------------------------------------------------------------------------------------------
 * Status codes (since 1). Retryable means: the same call may succeed later without the host
 * changing anything but time or free space. Not retryable means the host must change the request
 * or give up on the log.
 * ------------------------------------------------------------------------------------------- */
typedef int32_t kstore_status;

/* Success. */
#define KSTORE_OK 0
/* No log of that name (open_log without KSTORE_OPEN_CREATE, delete_log). Not retryable. */
#define KSTORE_ERR_NOT_FOUND 1
/* The offset lies outside [start, end] (read), or is not an entry boundary (truncate_to).
 * Not retryable. */
#define KSTORE_ERR_OUT_OF_RANGE 2
/* Stored data failed a checksum or is structurally damaged in a way recovery must not silently
 * repair (acknowledged data would be lost). Not retryable: data loss. */
#define KSTORE_ERR_CORRUPT 3
/* The device or quota is full. Retryable once space is freed. The log is unchanged by the call
 * that failed (see append for the state after a failed append). */
#define KSTORE_ERR_NO_SPACE 4
/* An I/O error (EIO, a failed fsync, …). Not retryable on this handle: the log is failed and
 * every later mutating call on it returns KSTORE_ERR_IO until it is closed and reopened, which
 * runs recovery. */
#define KSTORE_ERR_IO 5
/* The member, option or control code is not supported by this backend. Not retryable. */
#define KSTORE_ERR_UNSUPPORTED 6
/* Temporarily unable: a queue is full, or a resource is locked by someone else (for example the
 * data directory is locked by another process). Retryable. */
#define KSTORE_ERR_BUSY 7
/* A caller error: bad option value, bad log name, offsets that do not continue the log, a NULL
 * where a pointer is required. Not retryable. */
#define KSTORE_ERR_INVALID_ARGUMENT 8
/* open_log with KSTORE_OPEN_EXCLUSIVE found an existing log. Not retryable. */
#define KSTORE_ERR_EXISTS 9
/* Memory allocation failed. Retryable. */
#define KSTORE_ERR_NO_MEMORY 10

/* The last status code defined by this ABI version. A backend never returns a larger code. */
#define KSTORE_STATUS_MAX KSTORE_ERR_NO_MEMORY

/* ---------------------------------------------------------------------------------------------
 * Capability bits (since 1), in kstore_backend.capabilities.
 * ------------------------------------------------------------------------------------------- */

/* A sync completion means every entry appended before the sync is on stable storage and
 * survives a crash or power loss; logs survive close and reopen. Without it, sync completes
 * when earlier appends are readable and data lives only as long as the instance (memory). */
#define KSTORE_CAP_DURABLE (1u << 0)
/* No member blocks the calling thread on I/O (it may briefly take a mutex or copy memory), so
 * the host may call members from an event-loop thread. Without it the host calls members from
 * dedicated storage threads. */
#define KSTORE_CAP_NONBLOCKING (1u << 1)
/* One sync covers every log of the instance (a shared write-ahead log). The host may then issue
 * one sync for many logs; it still works correctly if it syncs each log. */
#define KSTORE_CAP_SHARED_SYNC (1u << 2)

/* ---------------------------------------------------------------------------------------------
 * Flags for open_log (since 1).
 * ------------------------------------------------------------------------------------------- */

/* Create the log if it does not exist (an empty log with start = end = 0). */
#define KSTORE_OPEN_CREATE (1u << 0)
/* With KSTORE_OPEN_CREATE: fail with KSTORE_ERR_EXISTS if the log exists. */
#define KSTORE_OPEN_EXCLUSIVE (1u << 1)

/* Log names are 1..KSTORE_LOG_NAME_MAX bytes from [A-Za-z0-9._-] and not "." or "..";
 * anything else is KSTORE_ERR_INVALID_ARGUMENT. This keeps names safe as file names. */
#define KSTORE_LOG_NAME_MAX 255

/* ---------------------------------------------------------------------------------------------
 * Plain data types (since 1).
 * ------------------------------------------------------------------------------------------- */

/* A key/value option. Keys and values are NUL-terminated UTF-8; both are copied if kept.
 * Instance options understood by the built-in backends:
 *   "path"                 data directory (durable backends; required by them)
 * Log options (open_log):
 *   "segment.bytes"        roll a new segment when the active one reaches this size (decimal)
 *   "segment.ms"           roll a new segment when the active one is this old (decimal ms)
 * A backend ignores options it does not know, and answers KSTORE_ERR_INVALID_ARGUMENT for a
 * known option with a bad value. Every backend validates the log options above (positive
 * decimals), even one without segments that then ignores them, so all backends accept and
 * refuse alike. */
typedef struct kstore_option {
    const char *key;
    const char *value;
} kstore_option;

/* A piece of an entry for a gathered append. Same layout as POSIX struct iovec, but const. */
typedef struct kstore_iovec {
    const void *base;
    size_t len;
} kstore_iovec;

/* What a log holds. The host sets struct_size = sizeof(kstore_log_state) before the call. */
typedef struct kstore_log_state {
    uint32_t struct_size;
    uint32_t reserved; /* zero */
    /* First readable offset. */
    int64_t start_offset;
    /* Offset the next append must start at. Entries below it are readable. */
    int64_t end_offset;
    /* Every entry below this offset is on stable storage (DURABLE backends). For a backend
     * without KSTORE_CAP_DURABLE this equals end_offset. After open it equals end_offset. */
    int64_t durable_end_offset;
    /* Largest max_timestamp among entries in [start, end); -1 if there are none. */
    int64_t max_timestamp;
    /* Bytes the log's entries occupy (entry bytes only, excluding backend framing and indexes). */
    uint64_t byte_count;
    /* Number of entries in [start, end) (entries only partly below start count). */
    uint64_t entry_count;
} kstore_log_state;

/* What read returned. The host sets struct_size = sizeof(kstore_read_result) before the call. */
typedef struct kstore_read_result {
    uint32_t struct_size;
    /* Whole entries written to the buffer. */
    uint32_t entry_count;
    /* Bytes written to the buffer: the concatenation of those entries. */
    uint64_t byte_count;
    /* The offset after the last entry written (its last_offset + 1); the requested offset when
     * no entry was written. */
    int64_t next_offset;
    /* When entry_count is 0 because the first entry is larger than the buffer: that entry's size,
     * so the caller can read again with a buffer that fits it. Otherwise 0. */
    uint64_t first_entry_bytes;
} kstore_read_result;

/* Completion of append or sync. `context` is the pointer the host passed; `status` is KSTORE_OK
 * or an error code. Called exactly once per accepted request; see "Completions" above. */
typedef void (*kstore_completion)(void *context, kstore_status status);

/* Called by list_logs once per log, with a NUL-terminated name valid only during the call. */
typedef void (*kstore_list_callback)(void *context, const char *name);

typedef struct kstore_backend kstore_backend;
typedef struct kstore_log_methods kstore_log_methods;

/* An open backend instance. Backends embed this as the first member of their own struct. */
typedef struct kstore_instance {
    const kstore_backend *backend;
} kstore_instance;

/* An open log. Backends embed this as the first member of their own struct, so a shim can wrap
 * a log by providing its own methods table (as an sqlite3_file carries its pMethods). */
typedef struct kstore_log {
    const kstore_log_methods *methods;
} kstore_log;

/* ---------------------------------------------------------------------------------------------
 * The log table (since 1): one log, for example one Kafka partition.
 * ------------------------------------------------------------------------------------------- */
struct kstore_log_methods {
    /* KSTORE_ABI_VERSION the backend was built with, and sizeof(kstore_log_methods) there. */
    uint32_t abi_version;
    uint32_t struct_size;

    /* REQUIRED, since 1. Releases the log. The host calls it exactly once, after every
     * completion for this log has been delivered and no other call on it is running. Appended
     * entries stay in the log (DURABLE backends: only synced ones are guaranteed). */
    void (*close)(kstore_log *log);

    /* REQUIRED, since 1. Appends one entry covering [first_offset, last_offset].
     *   - first_offset must equal the log's current end (including appends accepted but not yet
     *     completed), and last_offset >= first_offset; otherwise KSTORE_ERR_INVALID_ARGUMENT.
     *   - max_timestamp is the entry's largest timestamp in ms, or -1 (none); it feeds state,
     *     find_offset_by_time and time retention. Below -1: KSTORE_ERR_INVALID_ARGUMENT.
     *   - The entry's bytes are the concatenation of iov[0..iov_count). iov_count >= 1 and the
     *     total length >= 1. The backend copies or writes them before returning.
     * On KSTORE_OK the completion reports when the entry is readable (not durable: see sync).
     * State after failure: if the completion reports an error, that entry and every later entry
     * on this log whose completion has not yet been delivered fail with an error too, and the
     * log's end returns to the failed entry's first_offset, as if they had never been appended.
     * After KSTORE_ERR_NO_SPACE the host may append again from that offset; after KSTORE_ERR_IO
     * the log is failed (see the status code). */
    kstore_status (*append)(kstore_log *log, int64_t first_offset, int64_t last_offset, int64_t max_timestamp,
                            const kstore_iovec *iov, uint32_t iov_count, kstore_completion completion, void *context);

    /* REQUIRED, since 1. Copies whole entries into buf, in offset order, starting with the entry
     * that contains `offset`, followed by the entries after it, while they fit in `capacity`
     * bytes. Entries whose first offset is >= end_offset_limit are not returned (the host passes
     * its high watermark; INT64_MAX means the log's end). No gaps, no duplicates.
     *   - start <= offset <= end; otherwise KSTORE_ERR_OUT_OF_RANGE.
     *   - offset == end, or offset >= end_offset_limit: KSTORE_OK with no entries.
     *   - buf may be NULL only when capacity is 0.
     *   - If the first entry is larger than capacity: KSTORE_OK with entry_count 0 and
     *     first_entry_bytes set, so the host can retry with a larger buffer.
     * Finding the first entry must not scan from the start of the log (use an index).
     * Only entries whose append completed are returned. The host learns entry boundaries from
     * the entries themselves (they are self-delimiting for it); the backend adds no framing. */
    kstore_status (*read)(kstore_log *log, int64_t offset, int64_t end_offset_limit, void *buf, uint64_t capacity,
                          kstore_read_result *result);

    /* REQUIRED, since 1. Completes when every entry whose append was accepted before this call
     * is readable and, for DURABLE backends, on stable storage. On failure (KSTORE_ERR_IO) the
     * entries it covered are not known to be durable and the log is failed. */
    kstore_status (*sync)(kstore_log *log, kstore_completion completion, void *context);

    /* REQUIRED, since 1. Fills *state (see kstore_log_state). After open it describes the
     * recovered log: a durable backend has already verified and, for a torn tail, truncated it.
     * Never blocks on I/O, with or without KSTORE_CAP_NONBLOCKING: backends keep this in memory. */
    kstore_status (*state)(kstore_log *log, kstore_log_state *state);

    /* OPTIONAL, since 1. Removes every entry whose first offset is >= offset; `offset` must be an
     * entry boundary in [start, end]; otherwise KSTORE_ERR_OUT_OF_RANGE. Not durable until the
     * next sync. Host fallback when absent: the host cannot roll back a log and treats an append
     * failure as fatal for the log. */
    kstore_status (*truncate_to)(kstore_log *log, int64_t offset);

    /* OPTIONAL, since 1. Advances the log start offset to `offset` (start <= offset <= end; a
     * smaller offset is a no-op, a larger one KSTORE_ERR_OUT_OF_RANGE). Entries lying wholly below
     * it may be freed; storage may be reclaimed in whole segments only. Reads below the new start
     * answer KSTORE_ERR_OUT_OF_RANGE. On DURABLE backends the new start is durable no later than
     * the next completed sync. Host fallback: the host keeps the start offset itself and no
     * storage is reclaimed. */
    kstore_status (*delete_before)(kstore_log *log, int64_t offset);

    /* OPTIONAL, since 1. Retention: deletes whole storage units (segments; the memory backend's
     * unit is an entry) from the start of the log while either
     *   - byte_count exceeds retain_bytes (ignored when negative), or
     *   - every entry of the oldest unit (entries below start included) has a max_timestamp
     *     below retain_after_timestamp (ignored when negative),
     * never deleting the unit that holds the last entry unless it is wholly expired. An entry
     * whose max_timestamp is -1 never expires by time. The new log start offset — the larger of
     * the current start and the first offset of the oldest remaining unit (or end when none
     * remains) — is stored in *new_start_offset; the start never moves backwards. On DURABLE
     * backends the new start is durable no later than the next completed sync. Host fallback: retention is not enforced
     * and the host logs a warning. */
    kstore_status (*enforce_retention)(kstore_log *log, int64_t retain_bytes, int64_t retain_after_timestamp,
                                       int64_t *new_start_offset);

    /* OPTIONAL, since 1. Stores in *offset the first offset of the first entry (from start) whose
     * max_timestamp is >= timestamp — or start, if that entry begins below start — or -1 if there
     * is none. O(log n) through a time index.
     * Host fallback: the host scans entries with read. */
    kstore_status (*find_offset_by_time)(kstore_log *log, int64_t timestamp, int64_t *offset);

    /* OPTIONAL, since 1. Backend-specific operations on a log; unknown ops answer
     * KSTORE_ERR_UNSUPPORTED. Host fallback: KSTORE_ERR_UNSUPPORTED. */
    kstore_status (*control)(kstore_log *log, int32_t op, void *argument);

    /* OPTIONAL, since 2. append, with the same arguments and contract, for an entry the host
     * knows to be a Kafka RecordBatch of magic 2 (at least 61 bytes, byte 16 is 2) whose crc field
     * it has checked: the big-endian uint32 at bytes [17, 21) is the CRC-32C (Castagnoli) of the
     * entry's bytes [21, end). A backend that checksums what it stores may rely on that checksum
     * for those bytes instead of computing its own (bytes [0, 17), which the host rewrites, are not
     * covered by it). An entry that is not shaped so is appended as by append. Why: the host has
     * just computed that CRC to validate the batch; a second pass over every byte costs as much.
     * Host fallback when absent: append. */
    kstore_status (*append_checked_batch)(kstore_log *log, int64_t first_offset, int64_t last_offset,
                                          int64_t max_timestamp, const kstore_iovec *iov, uint32_t iov_count,
                                          kstore_completion completion, void *context);
};

/* Layout of a RecordBatch for append_checked_batch: its crc field and the first byte it covers. */
#define KSTORE_BATCH_MAGIC_AT  16u
#define KSTORE_BATCH_CRC_AT    17u
#define KSTORE_BATCH_CRC_FROM  21u
#define KSTORE_BATCH_BYTES_MIN 61u

/* ---------------------------------------------------------------------------------------------
 * The backend table (since 1). Each backend exports one function returning a pointer to its
 * static, const table: built-ins by their own name (kstore_memory_backend, …), and a backend
 * built as a shared library as `kstore_backend_entry` (KSTORE_BACKEND_ENTRY_SYMBOL).
 * ------------------------------------------------------------------------------------------- */
struct kstore_backend {
    /* KSTORE_ABI_VERSION the backend was built with, and sizeof(kstore_backend) there. */
    uint32_t abi_version;
    uint32_t struct_size;
    /* REQUIRED. Short name used on the command line ("memory", "file", "uring"). */
    const char *name;
    /* REQUIRED. One line for humans. */
    const char *description;
    /* KSTORE_CAP_* bits. */
    uint32_t capabilities;
    uint32_t reserved; /* zero */

    /* REQUIRED, since 1. Opens an instance with options (see kstore_option). Durable backends
     * recover every log here or lazily in open_log, refuse a data directory another process has
     * locked (KSTORE_ERR_BUSY), and report a missing or unwritable one (KSTORE_ERR_NOT_FOUND,
     * KSTORE_ERR_IO, …). On failure *instance is NULL and, if error_message is not NULL, up to
     * error_capacity bytes of a NUL-terminated reason are written there. */
    kstore_status (*open)(const kstore_option *options, uint32_t option_count, kstore_instance **instance,
                          char *error_message, size_t error_capacity);

    /* REQUIRED, since 1. Closes an instance after every log of it was closed. */
    void (*close)(kstore_instance *instance);

    /* REQUIRED, since 1. Copies the most recent failure's message (NUL-terminated, truncated to
     * capacity) into buf and returns its full length; 0 and "" if there was none. */
    size_t (*last_error)(kstore_instance *instance, char *buf, size_t capacity);

    /* REQUIRED, since 1. Opens the log `name` (see KSTORE_LOG_NAME_MAX) with KSTORE_OPEN_* flags
     * and log options. KSTORE_OPEN_EXCLUSIVE without KSTORE_OPEN_CREATE, or an unknown flag bit,
     * is KSTORE_ERR_INVALID_ARGUMENT. A log is open at most once at a time: opening an open log answers
     * KSTORE_ERR_BUSY. Durable backends run recovery before answering; finding acknowledged data
     * damaged answers KSTORE_ERR_CORRUPT with a message naming the file and position. */
    kstore_status (*open_log)(kstore_instance *instance, const char *name, uint32_t flags, const kstore_option *options,
                              uint32_t option_count, kstore_log **log);

    /* REQUIRED, since 1. Deletes a log that is not open (KSTORE_ERR_BUSY if it is); durable
     * before returning on DURABLE backends. */
    kstore_status (*delete_log)(kstore_instance *instance, const char *name);

    /* REQUIRED, since 1. Calls callback once per existing log, in no particular order. */
    kstore_status (*list_logs)(kstore_instance *instance, kstore_list_callback callback, void *context);

    /* OPTIONAL, since 1. Backend-specific operations on the instance; unknown ops answer
     * KSTORE_ERR_UNSUPPORTED. Host fallback: KSTORE_ERR_UNSUPPORTED. */
    kstore_status (*control)(kstore_instance *instance, int32_t op, void *argument);
};

/* The entry symbol a backend built as a shared library exports (loaded with --backend-path). */
#define KSTORE_BACKEND_ENTRY_SYMBOL "kstore_backend_entry"
typedef const kstore_backend *(*kstore_backend_entry_fn)(void);

/* Returns a static, NUL-terminated name for a status code ("KSTORE_ERR_IO"); "KSTORE_UNKNOWN"
 * for codes outside the list. Implemented once in Backends/kit/kstore_abi.c, shared by host and backends. */
const char *kstore_status_name(kstore_status status);

/* Whether retrying the same call can succeed (see the status list). */
int kstore_status_is_retryable(kstore_status status);

/* Helpers for backends, implemented once in Backends/kit/kstore_abi.c (not members of the tables).
 *
 * Whether `name` is a valid log name: 1..KSTORE_LOG_NAME_MAX bytes of [A-Za-z0-9._-], not "." or
 * "..". */
int kstore_log_name_is_valid(const char *name);

/* Parses a strictly positive decimal that fits an int64, with nothing after it. Returns 1 and
 * stores the value in *value_out (if not NULL), or returns 0. */
int kstore_parse_positive_decimal(const char *text, int64_t *value_out);

/* Checks open_log's arguments the way every backend must (see open_log): log_out not NULL (then
 * sets *log_out = NULL), a valid name, known flags (EXCLUSIVE needs CREATE), an options array when
 * option_count > 0, no NULL key or value, and positive decimals for segment.bytes and segment.ms.
 * Returns KSTORE_OK, or KSTORE_ERR_INVALID_ARGUMENT with a message in message[capacity]. */
kstore_status kstore_check_open_log_arguments(const char *name, uint32_t flags, const kstore_option *options,
                                              uint32_t option_count, kstore_log **log_out, char *message,
                                              size_t capacity);

/* last_error's copy: writes at most capacity - 1 bytes of message and a NUL into buf (when buf is
 * not NULL and capacity > 0) and returns length, the message's full length. */
size_t kstore_copy_error(const char *message, size_t length, char *buf, size_t capacity);

/* ---------------------------------------------------------------------------------------------
 * Control ops defined by this header (since 1). A control op is an argument of the `control`
 * members, not table layout, so the ops below are valid for every backend of ABI version 1: a
 * backend that does not know one answers KSTORE_ERR_UNSUPPORTED and the host uses the documented
 * fallback. Codes KSTORE_CONTROL_RESERVED_MIN..KSTORE_CONTROL_RESERVED_MAX ('KS' followed by a
 * 16-bit number) are reserved for ops defined here; a backend's own ops lie outside that range
 * (kstore_uring.h uses 0x5552xxxx, the file backend 0x4649xxxx, the kit 0x4B49xxxx).
 * ------------------------------------------------------------------------------------------- */
#define KSTORE_CONTROL_RESERVED_MIN 0x4B530000
#define KSTORE_CONTROL_RESERVED_MAX 0x4B53FFFF

/* Instance control op (kstore_backend.control), since 1: the backend reports its own figures —
 * counters and gauges it keeps anyway (syncs issued, bytes staged, descriptors held) — so that
 * the host can export them without knowing the backend. argument: const kstore_stats_visitor *.
 *
 * The backend calls visitor->callback once per figure, on the calling thread, before it returns
 * KSTORE_OK. Self-describing: each call names the figure, says whether it is a counter or a gauge,
 * and gives a one-line help text, so a third-party backend's figures appear in the host's metrics
 * (Fjord: `fjord_storage_backend_<name>` with a `backend` label) without the host knowing them.
 *   - Never blocks on I/O, with or without KSTORE_CAP_NONBLOCKING: figures are read from memory
 *     (a backend may briefly take its own locks). May run concurrently with every other member.
 *   - The callback must not call the instance (as for completions) and must not keep the
 *     kstore_stat pointer or its strings after it returns.
 *   - Names: 1..KSTORE_STAT_NAME_MAX bytes of [a-z0-9_], starting with a letter, in Prometheus
 *     style: units spelled out last (`_bytes`, `_seconds`), counters ending in `_total`. Each name
 *     at most once per call, and the same names on every call of an instance. A counter never
 *     decreases during the life of the instance; a gauge may go either way.
 *   - visitor->struct_size is at least sizeof(kstore_stats_visitor) and callback is not NULL;
 *     otherwise KSTORE_ERR_INVALID_ARGUMENT.
 * Names with one meaning for every backend (use them for that meaning; add any others):
 *   appends_total, append_bytes_total     appends accepted and their entry bytes
 *   syncs_total                           physical syncs issued to stable storage (fdatasync
 *                                         calls or group-commit rounds), not sync requests
 *   synced_bytes_total                    bytes those syncs made durable: synced_bytes_total /
 *                                         syncs_total is the group-commit factor
 *   busy_rejections_total                 appends or syncs answered KSTORE_ERR_BUSY
 *   staging_bytes, staging_capacity_bytes bytes buffered but not yet written, and the bound
 *   open_descriptors                      file descriptors the instance holds now
 *   stored_bytes, logs                    bytes of entries held, logs that exist
 *   recovery_seconds                      how long open (recovery) took
 * Host fallback when the op is unsupported: the host measures what it can itself (append and sync
 * counts, bytes and latencies, BUSY waits) and reports no backend figures. */
#define KSTORE_CONTROL_STATS 0x4B530001

/* kstore_stat.kind values. */
#define KSTORE_STAT_COUNTER 1u
#define KSTORE_STAT_GAUGE   2u

/* The longest figure name, in bytes. */
#define KSTORE_STAT_NAME_MAX 63

/* One figure, valid only during the callback. */
typedef struct kstore_stat {
    /* sizeof(kstore_stat) as the backend was built: fields beyond it do not exist. */
    uint32_t struct_size;
    /* KSTORE_STAT_COUNTER or KSTORE_STAT_GAUGE. */
    uint32_t kind;
    /* The name (see KSTORE_CONTROL_STATS), NUL-terminated. */
    const char *name;
    /* One line for humans, NUL-terminated, or NULL. */
    const char *help;
    double value;
} kstore_stat;

typedef void (*kstore_stat_callback)(void *context, const kstore_stat *stat);

/* The argument of KSTORE_CONTROL_STATS, filled by the host. */
typedef struct kstore_stats_visitor {
    uint32_t struct_size; /* sizeof(kstore_stats_visitor) */
    uint32_t reserved;    /* zero */
    kstore_stat_callback callback;
    void *context; /* passed to every callback */
} kstore_stats_visitor;

/* Helpers for backends answering KSTORE_CONTROL_STATS, implemented once in
 * Backends/kit/kstore_abi.c.
 *
 * Whether `visitor` can be used (not NULL, large enough, a callback). */
int kstore_stats_visitor_is_valid(const kstore_stats_visitor *visitor);

/* Reports one figure through `visitor` (which must be valid). */
void kstore_stats_report(const kstore_stats_visitor *visitor, uint32_t kind, const char *name, const char *help,
                         double value);

/* ---------------------------------------------------------------------------------------------
 * Layout checks. The Swift host mirrors these structs through the Clang importer; the asserts
 * pin the layout so a change here cannot go unnoticed (bump KSTORE_ABI_VERSION with it).
 * ------------------------------------------------------------------------------------------- */
#if defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L
#define KSTORE_STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)
#elif defined(__cplusplus)
#define KSTORE_STATIC_ASSERT(cond, msg) static_assert(cond, msg)
#else
#define KSTORE_STATIC_ASSERT(cond, msg)
#endif

#if UINTPTR_MAX == 0xFFFFFFFFFFFFFFFFu
KSTORE_STATIC_ASSERT(sizeof(kstore_option) == 16, "kstore_option layout");
KSTORE_STATIC_ASSERT(sizeof(kstore_iovec) == 16, "kstore_iovec layout");
KSTORE_STATIC_ASSERT(sizeof(kstore_log_state) == 56, "kstore_log_state layout");
KSTORE_STATIC_ASSERT(sizeof(kstore_read_result) == 32, "kstore_read_result layout");
KSTORE_STATIC_ASSERT(offsetof(kstore_log_methods, close) == 8, "kstore_log_methods layout");
KSTORE_STATIC_ASSERT(offsetof(kstore_log_methods, control) == 8 + 9 * 8, "kstore_log_methods layout");
KSTORE_STATIC_ASSERT(offsetof(kstore_log_methods, append_checked_batch) == 8 + 10 * 8, "kstore_log_methods layout");
KSTORE_STATIC_ASSERT(sizeof(kstore_log_methods) == 8 + 11 * 8, "kstore_log_methods layout");
KSTORE_STATIC_ASSERT(offsetof(kstore_backend, open) == 32, "kstore_backend layout");
KSTORE_STATIC_ASSERT(sizeof(kstore_backend) == 32 + 7 * 8, "kstore_backend layout");
KSTORE_STATIC_ASSERT(sizeof(kstore_stat) == 32, "kstore_stat layout");
KSTORE_STATIC_ASSERT(sizeof(kstore_stats_visitor) == 24, "kstore_stats_visitor layout");
#endif

#ifdef __cplusplus
}
#endif

#endif /* KSTORE_H */
