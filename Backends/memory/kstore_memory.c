/* The in-memory storage backend (kstore.h, ABI version 1): not durable, non-blocking; the fast test
 * backend and the protocol-overhead baseline.
 *
 * Layout
 *   instance  a mutex-protected array of logs sorted by name (binary search), plus the kit's error
 *             slot for last_error. Logs live as long as the instance: closing a log keeps its
 *             entries, delete_log frees them.
 *   log       entry bytes are copied into large chunks (geometrically growing from
 *             MEM_CHUNK_BYTES_MIN to MEM_CHUNK_BYTES_MAX; an entry larger than that gets a chunk of
 *             its own), so an append costs no malloc in the common case. An offset index (one
 *             mem_entry per entry, in offset order) is searched by binary search: reads never scan
 *             from the start of the log. Each index record carries a running maximum of the
 *             entries' max timestamps so find_offset_by_time is a binary search too.
 *   shared    argument checks, result copies, the error slot and list_logs's name list come from
 *             the kit (Backends/kit), so every backend accepts, refuses and reports alike.
 *   locking   one rwlock per log (writer-preferring so a stream of readers cannot starve appends):
 *             append, truncate_to, delete_before and enforce_retention take it exclusively; read,
 *             state, find_offset_by_time and sync take it shared. Completions are called after the
 *             lock is released, before append/sync return.
 *   figures   KSTORE_CONTROL_STATS sums per-log counters kept under the log's lock, so appends pay
 *             no shared atomic; a deleted log's counts move to the instance (under its mutex) so
 *             the counters never go back.
 */
#include "kstore_memory.h"

#include "kstore_kit.h"

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* The first chunk of a log is small so that thousands of small logs stay cheap; later chunks double
 * up to the maximum, which bounds the space lost at a chunk's tail to one entry. */
#define MEM_CHUNK_BYTES_MIN ((size_t)4 * 1024)
#define MEM_CHUNK_BYTES_MAX ((size_t)1024 * 1024)
/* Initial capacity of a log's offset index, in entries. */
#define MEM_INDEX_ENTRIES_MIN ((size_t)64)

typedef struct mem_instance mem_instance;

/* One entry of the offset index. */
typedef struct mem_entry {
    int64_t first_offset;
    int64_t last_offset;
    int64_t max_timestamp;
    /* The largest max_timestamp of the entries from the index's first live entry up to and including
     * this one (-1 if none has a timestamp). Non-decreasing, so find_offset_by_time can bisect it. */
    int64_t running_max_timestamp;
    /* Where the entry's bytes live, inside one chunk. */
    const uint8_t *bytes;
    uint64_t byte_count;
} mem_entry;

/* A block of entry bytes. Entries never straddle chunks. */
typedef struct mem_chunk {
    uint8_t *bytes;
    size_t capacity_bytes;
    size_t used_bytes;
    /* First offset of the first entry stored here and last offset of the last one; a chunk always
     * holds at least one entry. */
    int64_t first_offset;
    int64_t last_offset;
} mem_chunk;

typedef struct mem_log {
    kstore_log base; /* first member: the handle the host holds */
    mem_instance *instance;
    char *name;
    /* Whether a handle is out; protected by the instance mutex. */
    bool open;

    pthread_rwlock_t lock;
    /* Everything below is protected by `lock`. */
    int64_t start_offset;
    int64_t end_offset;
    /* Bytes of the live entries, entries[entry_begin, entry_end). */
    uint64_t byte_count;
    mem_entry *entries;
    size_t entry_begin;
    size_t entry_end;
    size_t entry_capacity;
    mem_chunk *chunks;
    size_t chunk_begin;
    size_t chunk_end;
    size_t chunk_capacity;
    /* Capacity of the next chunk to allocate. */
    size_t next_chunk_bytes;
    /* Appends accepted and their bytes, since the log was created (KSTORE_CONTROL_STATS). */
    uint64_t append_count;
    uint64_t append_bytes;
} mem_log;

struct mem_instance {
    kstore_instance base; /* first member: the handle the host holds */
    pthread_mutex_t mutex;
    /* Every log of the instance, sorted by name; protected by `mutex`. */
    mem_log **logs;
    size_t log_count;
    size_t log_capacity;
    /* Appends of deleted logs, so the instance's counters never decrease; protected by `mutex`. */
    uint64_t deleted_append_count;
    uint64_t deleted_append_bytes;

    kstore_kit_error errors;
};

static const kstore_log_methods mem_log_methods;
static const kstore_backend mem_backend;

/* MARK: - Helpers */

static int64_t mem_max_int64(int64_t a, int64_t b) { return a > b ? a : b; }

/* Index of the live entry containing `offset`: the last one whose first_offset <= offset.
 * Precondition: the log has live entries and entries[entry_begin].first_offset <= offset. */
static size_t mem_find_entry(const mem_log *log, int64_t offset) {
    size_t low = log->entry_begin, high = log->entry_end; /* answer in [low, high) */
    while (high - low > 1) {
        size_t middle = low + (high - low) / 2;
        if (log->entries[middle].first_offset <= offset) {
            low = middle;
        } else {
            high = middle;
        }
    }
    return low;
}

/* Index of the first live entry whose last_offset >= offset, or entry_end if none. */
static size_t mem_first_entry_ending_at_or_after(const mem_log *log, int64_t offset) {
    size_t low = log->entry_begin, high = log->entry_end;
    while (low < high) {
        size_t middle = low + (high - low) / 2;
        if (log->entries[middle].last_offset < offset) {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    return low;
}

/* Makes room for one more index record without changing the log; false when out of memory. */
static bool mem_reserve_entry(mem_log *log) {
    if (log->entry_end < log->entry_capacity) return true;
    if (log->entry_begin > 0) {
        /* Reuse the slots freed by delete_before before growing. */
        size_t live = log->entry_end - log->entry_begin;
        memmove(log->entries, log->entries + log->entry_begin, live * sizeof(mem_entry));
        log->entry_begin = 0;
        log->entry_end = live;
        if (live < log->entry_capacity) return true;
    }
    size_t capacity = log->entry_capacity == 0 ? MEM_INDEX_ENTRIES_MIN : log->entry_capacity * 2;
    if (capacity > SIZE_MAX / sizeof(mem_entry)) return false;
    mem_entry *entries = realloc(log->entries, capacity * sizeof(mem_entry));
    if (entries == NULL) return false;
    log->entries = entries;
    log->entry_capacity = capacity;
    return true;
}

/* Returns the chunk that will receive `byte_count` more bytes, allocating a new one if the last
 * chunk is too full; NULL when out of memory (the log is unchanged). */
static mem_chunk *mem_reserve_bytes(mem_log *log, size_t byte_count, int64_t first_offset) {
    if (log->chunk_end > log->chunk_begin) {
        mem_chunk *tail = &log->chunks[log->chunk_end - 1];
        if (tail->capacity_bytes - tail->used_bytes >= byte_count) return tail;
    }
    if (log->chunk_end == log->chunk_capacity) {
        if (log->chunk_begin > 0) {
            size_t live = log->chunk_end - log->chunk_begin;
            memmove(log->chunks, log->chunks + log->chunk_begin, live * sizeof(mem_chunk));
            log->chunk_begin = 0;
            log->chunk_end = live;
        }
        if (log->chunk_end == log->chunk_capacity) {
            size_t capacity = log->chunk_capacity == 0 ? 8 : log->chunk_capacity * 2;
            if (capacity > SIZE_MAX / sizeof(mem_chunk)) return NULL;
            mem_chunk *chunks = realloc(log->chunks, capacity * sizeof(mem_chunk));
            if (chunks == NULL) return NULL;
            log->chunks = chunks;
            log->chunk_capacity = capacity;
        }
    }
    size_t capacity_bytes = log->next_chunk_bytes;
    if (capacity_bytes < byte_count) capacity_bytes = byte_count;
    uint8_t *bytes = malloc(capacity_bytes);
    if (bytes == NULL) return NULL;
    if (log->next_chunk_bytes < MEM_CHUNK_BYTES_MAX) log->next_chunk_bytes *= 2;
    mem_chunk *chunk = &log->chunks[log->chunk_end++];
    chunk->bytes = bytes;
    chunk->capacity_bytes = capacity_bytes;
    chunk->used_bytes = 0;
    chunk->first_offset = first_offset;
    chunk->last_offset = first_offset;
    return chunk;
}

/* Recomputes running_max_timestamp after entries were dropped from the front of the index. Stops
 * as soon as a recomputed value equals the stored one: from there on both running maxima agree. */
static void mem_repair_running_max(mem_log *log) {
    int64_t running = -1;
    for (size_t index = log->entry_begin; index < log->entry_end; index++) {
        mem_entry *entry = &log->entries[index];
        int64_t value = mem_max_int64(running, entry->max_timestamp);
        if (value == entry->running_max_timestamp) break;
        entry->running_max_timestamp = value;
        running = value;
    }
}

/* Moves the start offset to `offset` (start <= offset <= end): drops the index records of entries
 * lying wholly below it and frees the chunks that held only such entries. */
static void mem_advance_start(mem_log *log, int64_t offset) {
    if (offset <= log->start_offset) return;
    log->start_offset = offset;
    size_t keep = mem_first_entry_ending_at_or_after(log, offset);
    if (keep == log->entry_begin) return;
    for (size_t index = log->entry_begin; index < keep; index++) {
        log->byte_count -= log->entries[index].byte_count;
    }
    log->entry_begin = keep;
    mem_repair_running_max(log);

    while (log->chunk_end > log->chunk_begin && log->chunks[log->chunk_begin].last_offset < offset) {
        free(log->chunks[log->chunk_begin].bytes);
        log->chunk_begin++;
    }
    if (log->chunk_begin == log->chunk_end) log->chunk_begin = log->chunk_end = 0;

    /* Give back index memory once most of it is dead. Failing to shrink is harmless. */
    size_t live = log->entry_end - log->entry_begin;
    if (log->entry_begin >= live) {
        memmove(log->entries, log->entries + log->entry_begin, live * sizeof(mem_entry));
        log->entry_begin = 0;
        log->entry_end = live;
        if (log->entry_capacity > MEM_INDEX_ENTRIES_MIN && live < log->entry_capacity / 4) {
            size_t capacity = log->entry_capacity / 2;
            mem_entry *entries = realloc(log->entries, capacity * sizeof(mem_entry));
            if (entries != NULL) {
                log->entries = entries;
                log->entry_capacity = capacity;
            }
        }
    }
}

static void mem_free_log(mem_log *log) {
    for (size_t index = log->chunk_begin; index < log->chunk_end; index++) free(log->chunks[index].bytes);
    free(log->chunks);
    free(log->entries);
    pthread_rwlock_destroy(&log->lock);
    free(log->name);
    free(log);
}

/* MARK: - Log members */

static void mem_log_close(kstore_log *handle) {
    if (handle == NULL) return;
    mem_log *log = (mem_log *)handle;
    pthread_mutex_lock(&log->instance->mutex);
    log->open = false;
    pthread_mutex_unlock(&log->instance->mutex);
}

static kstore_status mem_log_append(kstore_log *handle, int64_t first_offset, int64_t last_offset,
                                    int64_t max_timestamp, const kstore_iovec *iov, uint32_t iov_count,
                                    kstore_completion completion, void *context) {
    if (handle == NULL) return KSTORE_ERR_INVALID_ARGUMENT;
    mem_log *log = (mem_log *)handle;
    mem_instance *instance = log->instance;
    const kstore_kit_append append = {first_offset, last_offset, max_timestamp, iov, iov_count, completion};
    uint64_t checked_bytes = 0;
    kstore_status invalid = kstore_kit_check_append(&append, SIZE_MAX, log->name, &instance->errors, &checked_bytes);
    if (invalid != KSTORE_OK) return invalid;
    size_t total_bytes = (size_t)checked_bytes;

    pthread_rwlock_wrlock(&log->lock);
    if (first_offset != log->end_offset) {
        int64_t end_offset = log->end_offset;
        pthread_rwlock_unlock(&log->lock);
        kstore_kit_error_set(&instance->errors,
                             "append to log '%s': first_offset %lld does not continue the log (end %lld)", log->name,
                             (long long)first_offset, (long long)end_offset);
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    mem_chunk *chunk = NULL;
    if (!mem_reserve_entry(log) || (chunk = mem_reserve_bytes(log, total_bytes, first_offset)) == NULL) {
        pthread_rwlock_unlock(&log->lock);
        kstore_kit_error_set(&instance->errors, "append to log '%s': out of memory for %zu bytes", log->name,
                             total_bytes);
        return KSTORE_ERR_NO_MEMORY;
    }
    uint8_t *destination = chunk->bytes + chunk->used_bytes;
    size_t position = 0;
    for (uint32_t index = 0; index < iov_count; index++) {
        if (iov[index].len == 0) continue;
        memcpy(destination + position, iov[index].base, iov[index].len);
        position += iov[index].len;
    }
    chunk->used_bytes += total_bytes;
    chunk->last_offset = last_offset;

    int64_t running = max_timestamp;
    if (log->entry_end > log->entry_begin) {
        running = mem_max_int64(running, log->entries[log->entry_end - 1].running_max_timestamp);
    }
    log->entries[log->entry_end++] = (mem_entry){
        .first_offset = first_offset,
        .last_offset = last_offset,
        .max_timestamp = max_timestamp,
        .running_max_timestamp = running,
        .bytes = destination,
        .byte_count = total_bytes,
    };
    log->byte_count += total_bytes;
    log->end_offset = last_offset + 1;
    log->append_count++;
    log->append_bytes += total_bytes;
    pthread_rwlock_unlock(&log->lock);

    /* Synchronous backend: the entry is readable now (kstore.h "Completions"). */
    completion(context, KSTORE_OK);
    return KSTORE_OK;
}

static kstore_status mem_log_read(kstore_log *handle, int64_t offset, int64_t end_offset_limit, void *buf,
                                  uint64_t capacity, kstore_read_result *result) {
    if (handle == NULL) return KSTORE_ERR_INVALID_ARGUMENT;
    mem_log *log = (mem_log *)handle;
    kstore_status invalid = kstore_kit_check_read(buf, capacity, result, log->name, &log->instance->errors);
    if (invalid != KSTORE_OK) return invalid;

    uint32_t entry_count = 0;
    uint64_t byte_count = 0;
    int64_t next_offset = offset;
    uint64_t first_entry_bytes = 0;

    pthread_rwlock_rdlock(&log->lock);
    kstore_status outside =
        kstore_kit_check_read_offset(offset, log->start_offset, log->end_offset, log->name, &log->instance->errors);
    if (outside != KSTORE_OK) {
        pthread_rwlock_unlock(&log->lock);
        return outside;
    }
    if (offset < log->end_offset && offset < end_offset_limit) {
        uint8_t *destination = buf;
        /* Copy runs of entries that are adjacent in one chunk with a single memcpy. */
        const uint8_t *run_bytes = NULL;
        uint64_t run_count = 0;
        for (size_t index = mem_find_entry(log, offset); index < log->entry_end; index++) {
            const mem_entry *entry = &log->entries[index];
            if (entry->first_offset >= end_offset_limit || entry_count == UINT32_MAX) break;
            if (entry->byte_count > capacity - byte_count) {
                if (entry_count == 0) first_entry_bytes = entry->byte_count;
                break;
            }
            if (run_bytes != NULL && run_bytes + run_count != entry->bytes) {
                memcpy(destination + byte_count - run_count, run_bytes, run_count);
                run_bytes = NULL;
                run_count = 0;
            }
            if (run_bytes == NULL) run_bytes = entry->bytes;
            run_count += entry->byte_count;
            byte_count += entry->byte_count;
            entry_count++;
            next_offset = entry->last_offset + 1;
        }
        if (run_bytes != NULL) memcpy(destination + byte_count - run_count, run_bytes, run_count);
    }
    pthread_rwlock_unlock(&log->lock);

    kstore_read_result values = {.entry_count = entry_count,
                                 .byte_count = byte_count,
                                 .next_offset = next_offset,
                                 .first_entry_bytes = first_entry_bytes};
    kstore_kit_put_read_result(result, &values);
    return KSTORE_OK;
}

static kstore_status mem_log_sync(kstore_log *handle, kstore_completion completion, void *context) {
    if (handle == NULL) return KSTORE_ERR_INVALID_ARGUMENT;
    mem_log *log = (mem_log *)handle;
    kstore_status invalid =
        kstore_kit_require(completion != NULL, "sync", "completion", log->name, &log->instance->errors);
    if (invalid != KSTORE_OK) return invalid;
    /* Appends complete before they return, so every accepted append is already readable; taking
     * the lock orders this sync after an append running concurrently on another thread. */
    pthread_rwlock_rdlock(&log->lock);
    pthread_rwlock_unlock(&log->lock);
    completion(context, KSTORE_OK);
    return KSTORE_OK;
}

static kstore_status mem_log_state(kstore_log *handle, kstore_log_state *state) {
    if (handle == NULL) return KSTORE_ERR_INVALID_ARGUMENT;
    mem_log *log = (mem_log *)handle;
    kstore_status invalid = kstore_kit_require(state != NULL, "state", "state", log->name, &log->instance->errors);
    if (invalid != KSTORE_OK) return invalid;
    kstore_log_state values = {.struct_size = sizeof(kstore_log_state)};
    pthread_rwlock_rdlock(&log->lock);
    values.start_offset = log->start_offset;
    values.end_offset = log->end_offset;
    /* Not durable: what is readable is all there is (kstore.h durable_end_offset). */
    values.durable_end_offset = log->end_offset;
    values.max_timestamp =
        log->entry_end > log->entry_begin ? log->entries[log->entry_end - 1].running_max_timestamp : -1;
    values.byte_count = log->byte_count;
    values.entry_count = log->entry_end - log->entry_begin;
    pthread_rwlock_unlock(&log->lock);
    kstore_kit_put_state(state, &values);
    return KSTORE_OK;
}

static kstore_status mem_log_truncate_to(kstore_log *handle, int64_t offset) {
    if (handle == NULL) return KSTORE_ERR_INVALID_ARGUMENT;
    mem_log *log = (mem_log *)handle;
    pthread_rwlock_wrlock(&log->lock);
    if (offset == log->end_offset) {
        pthread_rwlock_unlock(&log->lock);
        return KSTORE_OK;
    }
    size_t index = 0;
    bool boundary = false;
    if (offset >= log->start_offset && offset < log->end_offset) {
        index = mem_find_entry(log, offset);
        boundary = log->entries[index].first_offset == offset;
    }
    if (!boundary) {
        int64_t start_offset = log->start_offset, end_offset = log->end_offset;
        pthread_rwlock_unlock(&log->lock);
        kstore_kit_error_set(&log->instance->errors,
                             "truncate_to of log '%s': %lld is not an entry boundary in [%lld, %lld]", log->name,
                             (long long)offset, (long long)start_offset, (long long)end_offset);
        return KSTORE_ERR_OUT_OF_RANGE;
    }
    for (size_t removed = index; removed < log->entry_end; removed++) {
        log->byte_count -= log->entries[removed].byte_count;
    }
    const uint8_t *first_removed_bytes = log->entries[index].bytes;
    log->entry_end = index;
    log->end_offset = offset;

    while (log->chunk_end > log->chunk_begin && log->chunks[log->chunk_end - 1].first_offset >= offset) {
        free(log->chunks[log->chunk_end - 1].bytes);
        log->chunk_end--;
    }
    if (log->chunk_end > log->chunk_begin) {
        mem_chunk *tail = &log->chunks[log->chunk_end - 1];
        if (tail->last_offset >= offset) {
            tail->used_bytes = (size_t)(first_removed_bytes - tail->bytes);
            tail->last_offset = offset - 1;
        }
    } else {
        log->chunk_begin = log->chunk_end = 0;
    }
    pthread_rwlock_unlock(&log->lock);
    return KSTORE_OK;
}

static kstore_status mem_log_delete_before(kstore_log *handle, int64_t offset) {
    if (handle == NULL) return KSTORE_ERR_INVALID_ARGUMENT;
    mem_log *log = (mem_log *)handle;
    pthread_rwlock_wrlock(&log->lock);
    if (offset > log->end_offset) {
        int64_t end_offset = log->end_offset;
        pthread_rwlock_unlock(&log->lock);
        kstore_kit_error_set(&log->instance->errors, "delete_before of log '%s': %lld is beyond the end %lld",
                             log->name, (long long)offset, (long long)end_offset);
        return KSTORE_ERR_OUT_OF_RANGE;
    }
    mem_advance_start(log, offset);
    pthread_rwlock_unlock(&log->lock);
    return KSTORE_OK;
}

static kstore_status mem_log_enforce_retention(kstore_log *handle, int64_t retain_bytes, int64_t retain_after_timestamp,
                                               int64_t *new_start_offset) {
    if (handle == NULL) return KSTORE_ERR_INVALID_ARGUMENT;
    mem_log *log = (mem_log *)handle;
    kstore_status invalid = kstore_kit_require(new_start_offset != NULL, "enforce_retention", "new_start_offset",
                                               log->name, &log->instance->errors);
    if (invalid != KSTORE_OK) return invalid;
    pthread_rwlock_wrlock(&log->lock);
    /* The unit is one entry. Walk from the oldest entry while it must go. */
    uint64_t remaining_bytes = log->byte_count;
    size_t index = log->entry_begin;
    while (index < log->entry_end) {
        const mem_entry *entry = &log->entries[index];
        /* An entry without timestamps (-1) never expires by time (kstore.h, enforce_retention). */
        bool expired =
            retain_after_timestamp >= 0 && entry->max_timestamp >= 0 && entry->max_timestamp < retain_after_timestamp;
        bool over_size = retain_bytes >= 0 && remaining_bytes > (uint64_t)retain_bytes;
        bool is_last = index + 1 == log->entry_end;
        /* The entry holding the last offset goes only when it is wholly expired. */
        if (!(expired || (over_size && !is_last))) break;
        remaining_bytes -= entry->byte_count;
        index++;
    }
    int64_t start_offset = index < log->entry_end ? log->entries[index].first_offset : log->end_offset;
    /* The oldest remaining entry may begin below the start (delete_before inside it): never move
     * the start backwards. */
    start_offset = mem_max_int64(start_offset, log->start_offset);
    mem_advance_start(log, start_offset);
    *new_start_offset = log->start_offset;
    pthread_rwlock_unlock(&log->lock);
    return KSTORE_OK;
}

static kstore_status mem_log_find_offset_by_time(kstore_log *handle, int64_t timestamp, int64_t *offset) {
    if (handle == NULL) return KSTORE_ERR_INVALID_ARGUMENT;
    mem_log *log = (mem_log *)handle;
    kstore_status invalid =
        kstore_kit_require(offset != NULL, "find_offset_by_time", "offset", log->name, &log->instance->errors);
    if (invalid != KSTORE_OK) return invalid;
    pthread_rwlock_rdlock(&log->lock);
    /* First live entry whose running max timestamp reaches `timestamp`: that entry's own max
     * timestamp is the first to reach it. */
    size_t low = log->entry_begin, high = log->entry_end;
    while (low < high) {
        size_t middle = low + (high - low) / 2;
        if (log->entries[middle].running_max_timestamp < timestamp) {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    /* An entry partly below the start is reported from the start: offsets below it are gone. */
    *offset = low < log->entry_end ? mem_max_int64(log->entries[low].first_offset, log->start_offset) : -1;
    pthread_rwlock_unlock(&log->lock);
    return KSTORE_OK;
}

static kstore_status mem_log_control(kstore_log *handle, int32_t op, void *argument) {
    if (handle == NULL) return KSTORE_ERR_INVALID_ARGUMENT;
    mem_log *log = (mem_log *)handle;
    kstore_kit_error_set(&log->instance->errors, "control of log '%s': op %d is not supported by the memory backend",
                         log->name, (int)op);
    return KSTORE_ERR_UNSUPPORTED;
}

static const kstore_log_methods mem_log_methods = {
    .abi_version = KSTORE_ABI_VERSION,
    .struct_size = sizeof(kstore_log_methods),
    .close = mem_log_close,
    .append = mem_log_append,
    .read = mem_log_read,
    .sync = mem_log_sync,
    .state = mem_log_state,
    .truncate_to = mem_log_truncate_to,
    .delete_before = mem_log_delete_before,
    .enforce_retention = mem_log_enforce_retention,
    .find_offset_by_time = mem_log_find_offset_by_time,
    .control = mem_log_control,
};

/* MARK: - Instance members */

static kstore_status mem_open(const kstore_option *options, uint32_t option_count, kstore_instance **instance,
                              char *error_message, size_t error_capacity) {
    if (instance == NULL) {
        kstore_kit_message(error_message, error_capacity, "memory backend: instance pointer is NULL");
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    *instance = NULL;
    /* The memory backend knows no instance option ("path" and others are ignored); the parser still
     * refuses a NULL array, key or value. */
    kstore_status status =
        kstore_kit_parse_options("memory backend", options, option_count, NULL, 0, error_message, error_capacity);
    if (status != KSTORE_OK) return status;
    mem_instance *created = calloc(1, sizeof(mem_instance));
    if (created == NULL) {
        kstore_kit_message(error_message, error_capacity, "memory backend: out of memory");
        return KSTORE_ERR_NO_MEMORY;
    }
    created->base.backend = &mem_backend;
    pthread_mutex_init(&created->mutex, NULL);
    kstore_kit_error_init(&created->errors);
    *instance = &created->base;
    return KSTORE_OK;
}

static void mem_close(kstore_instance *handle) {
    if (handle == NULL) return;
    mem_instance *instance = (mem_instance *)handle;
    for (size_t index = 0; index < instance->log_count; index++) mem_free_log(instance->logs[index]);
    free(instance->logs);
    pthread_mutex_destroy(&instance->mutex);
    kstore_kit_error_destroy(&instance->errors);
    free(instance);
}

static size_t mem_last_error(kstore_instance *handle, char *buf, size_t capacity) {
    return kstore_kit_error_copy(handle == NULL ? NULL : &((mem_instance *)handle)->errors, buf, capacity);
}

/* Position of `name` in the sorted log array, or where it would be inserted; *found says which.
 * Caller holds the instance mutex. */
static size_t mem_find_log(const mem_instance *instance, const char *name, bool *found) {
    size_t low = 0, high = instance->log_count;
    while (low < high) {
        size_t middle = low + (high - low) / 2;
        int order = strcmp(instance->logs[middle]->name, name);
        if (order == 0) {
            *found = true;
            return middle;
        }
        if (order < 0) {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    *found = false;
    return low;
}

static mem_log *mem_new_log(mem_instance *instance, const char *name) {
    mem_log *log = calloc(1, sizeof(mem_log));
    if (log == NULL) return NULL;
    log->name = strdup(name);
    if (log->name == NULL) {
        free(log);
        return NULL;
    }
    pthread_rwlockattr_t attributes;
    pthread_rwlockattr_init(&attributes);
    pthread_rwlockattr_setkind_np(&attributes, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    int failed = pthread_rwlock_init(&log->lock, &attributes);
    pthread_rwlockattr_destroy(&attributes);
    if (failed != 0) {
        free(log->name);
        free(log);
        return NULL;
    }
    log->instance = instance;
    log->next_chunk_bytes = MEM_CHUNK_BYTES_MIN;
    return log;
}

static kstore_status mem_open_log(kstore_instance *handle, const char *name, uint32_t flags,
                                  const kstore_option *options, uint32_t option_count, kstore_log **log_out) {
    if (handle == NULL) return KSTORE_ERR_INVALID_ARGUMENT;
    mem_instance *instance = (mem_instance *)handle;
    char message[512];
    kstore_status invalid =
        kstore_check_open_log_arguments(name, flags, options, option_count, log_out, message, sizeof(message));
    if (invalid != KSTORE_OK) {
        kstore_kit_error_set(&instance->errors, "%s", message);
        return invalid;
    }
    pthread_mutex_lock(&instance->mutex);
    bool found = false;
    size_t position = mem_find_log(instance, name, &found);
    mem_log *log = found ? instance->logs[position] : NULL;
    kstore_status admitted = kstore_kit_open_log_admit(name, flags, found, found && log->open, &instance->errors);
    if (admitted != KSTORE_OK) {
        pthread_mutex_unlock(&instance->mutex);
        return admitted;
    }
    if (!found) {
        if (instance->log_count == instance->log_capacity) {
            size_t capacity = instance->log_capacity == 0 ? 16 : instance->log_capacity * 2;
            mem_log **logs =
                capacity <= SIZE_MAX / sizeof(mem_log *) ? realloc(instance->logs, capacity * sizeof(mem_log *)) : NULL;
            if (logs == NULL) {
                pthread_mutex_unlock(&instance->mutex);
                kstore_kit_error_set(&instance->errors, "open_log '%s': out of memory", name);
                return KSTORE_ERR_NO_MEMORY;
            }
            instance->logs = logs;
            instance->log_capacity = capacity;
        }
        log = mem_new_log(instance, name);
        if (log == NULL) {
            pthread_mutex_unlock(&instance->mutex);
            kstore_kit_error_set(&instance->errors, "open_log '%s': out of memory", name);
            return KSTORE_ERR_NO_MEMORY;
        }
        memmove(instance->logs + position + 1, instance->logs + position,
                (instance->log_count - position) * sizeof(mem_log *));
        instance->logs[position] = log;
        instance->log_count++;
    }
    /* Set on every open: a shim may have replaced the pointer on an earlier handle. */
    log->base.methods = &mem_log_methods;
    log->open = true;
    pthread_mutex_unlock(&instance->mutex);
    *log_out = &log->base;
    return KSTORE_OK;
}

static kstore_status mem_delete_log(kstore_instance *handle, const char *name) {
    if (handle == NULL) return KSTORE_ERR_INVALID_ARGUMENT;
    mem_instance *instance = (mem_instance *)handle;
    if (!kstore_log_name_is_valid(name)) {
        kstore_kit_error_set(&instance->errors, "delete_log: invalid log name");
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    pthread_mutex_lock(&instance->mutex);
    bool found = false;
    size_t position = mem_find_log(instance, name, &found);
    if (!found) {
        pthread_mutex_unlock(&instance->mutex);
        kstore_kit_error_set(&instance->errors, "delete_log '%s': no such log", name);
        return KSTORE_ERR_NOT_FOUND;
    }
    mem_log *log = instance->logs[position];
    if (log->open) {
        pthread_mutex_unlock(&instance->mutex);
        kstore_kit_error_set(&instance->errors, "delete_log '%s': the log is open", name);
        return KSTORE_ERR_BUSY;
    }
    memmove(instance->logs + position, instance->logs + position + 1,
            (instance->log_count - position - 1) * sizeof(mem_log *));
    instance->log_count--;
    /* No handle is out, so nothing appends to the log while its counts move. */
    instance->deleted_append_count += log->append_count;
    instance->deleted_append_bytes += log->append_bytes;
    pthread_mutex_unlock(&instance->mutex);
    mem_free_log(log);
    return KSTORE_OK;
}

static kstore_status mem_list_logs(kstore_instance *handle, kstore_list_callback callback, void *context) {
    if (handle == NULL) return KSTORE_ERR_INVALID_ARGUMENT;
    mem_instance *instance = (mem_instance *)handle;
    if (callback == NULL) {
        kstore_kit_error_set(&instance->errors, "list_logs: callback is NULL");
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    /* Copy the names so the callback runs without the instance mutex held. */
    kstore_kit_names names = {0};
    bool failed = false;
    pthread_mutex_lock(&instance->mutex);
    for (size_t index = 0; !failed && index < instance->log_count; index++) {
        failed = !kstore_kit_names_add(&names, instance->logs[index]->name);
    }
    pthread_mutex_unlock(&instance->mutex);
    return kstore_kit_names_finish(&names, !failed, callback, context, &instance->errors);
}

/* KSTORE_CONTROL_STATS: the instance's figures, summed over its logs. */
static kstore_status mem_report_stats(mem_instance *instance, const kstore_stats_visitor *visitor) {
    if (!kstore_stats_visitor_is_valid(visitor)) {
        kstore_kit_error_set(&instance->errors, "control KSTORE_CONTROL_STATS: invalid visitor");
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    uint64_t entries = 0, stored_bytes = 0, allocated_bytes = 0;
    pthread_mutex_lock(&instance->mutex);
    uint64_t append_count = instance->deleted_append_count, append_bytes = instance->deleted_append_bytes;
    size_t log_count = instance->log_count;
    for (size_t index = 0; index < instance->log_count; index++) {
        mem_log *log = instance->logs[index];
        pthread_rwlock_rdlock(&log->lock);
        entries += log->entry_end - log->entry_begin;
        stored_bytes += log->byte_count;
        for (size_t chunk = log->chunk_begin; chunk < log->chunk_end; chunk++) {
            allocated_bytes += log->chunks[chunk].capacity_bytes;
        }
        append_count += log->append_count;
        append_bytes += log->append_bytes;
        pthread_rwlock_unlock(&log->lock);
    }
    pthread_mutex_unlock(&instance->mutex);
    /* Reported after the locks are released: the callback is the host's code. */
    kstore_stats_report(visitor, KSTORE_STAT_GAUGE, "logs", "Logs that exist", (double)log_count);
    kstore_stats_report(visitor, KSTORE_STAT_GAUGE, "entries", "Entries held", (double)entries);
    kstore_stats_report(visitor, KSTORE_STAT_GAUGE, "stored_bytes", "Bytes of entries held", (double)stored_bytes);
    kstore_stats_report(visitor, KSTORE_STAT_GAUGE, "allocated_bytes", "Bytes of chunks allocated for entries",
                        (double)allocated_bytes);
    kstore_stats_report(visitor, KSTORE_STAT_COUNTER, "appends_total", "Appends accepted", (double)append_count);
    kstore_stats_report(visitor, KSTORE_STAT_COUNTER, "append_bytes_total", "Entry bytes appended",
                        (double)append_bytes);
    return KSTORE_OK;
}

static kstore_status mem_control(kstore_instance *handle, int32_t op, void *argument) {
    if (handle == NULL) return KSTORE_ERR_INVALID_ARGUMENT;
    mem_instance *instance = (mem_instance *)handle;
    if (op == KSTORE_CONTROL_STATS) return mem_report_stats(instance, argument);
    kstore_kit_error_set(&instance->errors, "control: op %d is not supported by the memory backend", (int)op);
    return KSTORE_ERR_UNSUPPORTED;
}

static const kstore_backend mem_backend = {
    .abi_version = KSTORE_ABI_VERSION,
    .struct_size = sizeof(kstore_backend),
    .name = "memory",
    .description = "In-memory logs: fast, not durable (data lives as long as the instance)",
    .capabilities = KSTORE_CAP_NONBLOCKING,
    .reserved = 0,
    .open = mem_open,
    .close = mem_close,
    .last_error = mem_last_error,
    .open_log = mem_open_log,
    .delete_log = mem_delete_log,
    .list_logs = mem_list_logs,
    .control = mem_control,
};

const kstore_backend *kstore_memory_backend(void) { return &mem_backend; }
