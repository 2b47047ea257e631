/* read (kstore.h): the part holding the offset is found by bisection over the log's parts, the
 * entry by bisection over that part's fine index (memory or index file); runs of adjacent frames
 * are copied from the read cache where it holds them (the tail, uring_cache.c), else read with one
 * preadv each (headers to scratch, payloads straight into the caller's buffer), and every frame is
 * checked against its index entry either way. Only entries whose append completed are returned.
 * Invariants and lock order: uring_internal.h. */
#include "uring_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

/* Reads gather runs of adjacent frames into one preadv of at most this many iovecs. */
#define UR_READ_IOVECS_MAX 192

/* Checks a frame read into header + destination against its index entry. */
static kstore_status ur_check_read(ur_log *log, const ur_part *part, const ur_entry *entry,
                                   const ur_frame_header *header, const uint8_t *destination) {
    /* The payload's size is checked before the checksums read that many bytes of destination. */
    if (header->magic != UR_FRAME_MAGIC || header->payload_bytes != entry->payload_bytes ||
        header->generation != part->segment->generation || header->log_id != log->id ||
        header->first_offset != entry->first_offset || !ur_frame_valid(header, destination)) {
        kstore_kit_error_set(&log->instance->errors,
                             "read of log '%s' at offset %lld: the frame in wal-%016" PRIx64
                             ".log at position %u is damaged "
                             "(checksum or header mismatch)",
                             log->name, (long long)entry->first_offset, part->segment->generation, entry->position);
        return KSTORE_ERR_CORRUPT;
    }
    return KSTORE_OK;
}

/* Copies one entry's payload into destination and checks its frame. */
static kstore_status ur_read_entry(ur_log *log, const ur_part *part, const ur_entry *entry, uint8_t *destination) {
    ur_instance *instance = log->instance;
    ur_frame_header header;
    size_t wanted = sizeof(header) + entry->payload_bytes;
    size_t done = 0;
    while (done < wanted) {
        ssize_t got;
        if (done < sizeof(header)) {
            struct iovec rest[2] = {{(uint8_t *)&header + done, sizeof(header) - done},
                                    {destination, entry->payload_bytes}};
            got = preadv(part->segment->fd, rest, 2, (off_t)(entry->position + done));
        } else {
            size_t into = done - sizeof(header);
            got = pread(part->segment->fd, destination + into, entry->payload_bytes - into,
                        (off_t)(entry->position + done));
        }
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) {
            int error = got < 0 ? errno : EIO;
            kstore_kit_error_set(
                &instance->errors, "read of log '%s' at offset %lld: reading wal-%016" PRIx64 ".log at position %u: %s",
                log->name, (long long)entry->first_offset, part->segment->generation, entry->position, strerror(error));
            return KSTORE_ERR_IO;
        }
        done += (size_t)got;
    }
    return ur_check_read(log, part, entry, &header, destination);
}

/* Copies the longest prefix of a run the read cache holds into destination and checks its frames
 * (after letting go of the cache's lock). Returns how many entries it copied; *status tells whether
 * they are good. */
static size_t ur_read_cached(ur_log *log, const ur_part *part, const ur_entry *run, size_t count, uint8_t *destination,
                             kstore_status *status) {
    ur_read_cache *cache = &log->instance->cache;
    *status = KSTORE_OK;
    if (cache->bytes_max == 0) return 0;
    ur_frame_header headers[UR_READ_IOVECS_MAX / 3];
    size_t served = 0, hint = 0, offset = 0;
    pthread_rwlock_rdlock(&cache->lock);
    for (; served < count && served < UR_READ_IOVECS_MAX / 3; served++) {
        const uint8_t *frame = ur_cache_find(cache, part->segment->generation, run[served].position,
                                             UR_FRAME_HEADER_BYTES + run[served].payload_bytes, &hint);
        if (frame == NULL) break;
        memcpy(&headers[served], frame, sizeof(headers[served]));
        memcpy(destination + offset, frame + UR_FRAME_HEADER_BYTES, run[served].payload_bytes);
        offset += run[served].payload_bytes;
    }
    pthread_rwlock_unlock(&cache->lock);
    offset = 0;
    for (size_t index = 0; index < served && *status == KSTORE_OK; index++) {
        *status = ur_check_read(log, part, &run[index], &headers[index], destination + offset);
        offset += run[index].payload_bytes;
    }
    if (served > 0) atomic_fetch_add_explicit(&cache->hits, served, memory_order_relaxed);
    return served;
}

/* Reads a run of entries whose frames are adjacent in the segment: what the read cache holds from
 * memory, the rest with one preadv (headers and padding to scratch, payloads straight into the
 * caller's buffer). */
static kstore_status ur_read_run(ur_log *log, const ur_part *part, const ur_entry *run, size_t count,
                                 uint8_t *destination) {
    kstore_status cached_status = KSTORE_OK;
    size_t cached = ur_read_cached(log, part, run, count, destination, &cached_status);
    if (cached_status != KSTORE_OK || cached == count) return cached_status;
    for (size_t index = 0; index < cached; index++) destination += run[index].payload_bytes;
    run += cached;
    count -= cached;
    atomic_fetch_add_explicit(&log->instance->cache.misses, count, memory_order_relaxed);
    if (count == 1) return ur_read_entry(log, part, &run[0], destination);
    ur_frame_header headers[UR_READ_IOVECS_MAX / 3];
    uint8_t padding[UR_FRAME_ALIGN_BYTES];
    struct iovec vectors[UR_READ_IOVECS_MAX];
    size_t vector_count = 0, total = 0, written = 0;
    for (size_t index = 0; index < count; index++) {
        uint64_t frame = ur_frame_bytes(run[index].payload_bytes);
        vectors[vector_count++] = (struct iovec){&headers[index], UR_FRAME_HEADER_BYTES};
        vectors[vector_count++] = (struct iovec){destination + written, run[index].payload_bytes};
        size_t pad = (size_t)(frame - UR_FRAME_HEADER_BYTES - run[index].payload_bytes);
        if (pad > 0) vectors[vector_count++] = (struct iovec){padding, pad};
        written += run[index].payload_bytes;
        total += (size_t)frame;
    }
    ssize_t got;
    do {
        got = preadv(part->segment->fd, vectors, (int)vector_count, (off_t)run[0].position);
    } while (got < 0 && errno == EINTR);
    if (got != (ssize_t)total) {
        /* Short or failed: read entry by entry, which retries and reports precisely. */
        size_t offset = 0;
        for (size_t index = 0; index < count; index++) {
            kstore_status status = ur_read_entry(log, part, &run[index], destination + offset);
            if (status != KSTORE_OK) return status;
            offset += run[index].payload_bytes;
        }
        return KSTORE_OK;
    }
    size_t offset = 0;
    for (size_t index = 0; index < count; index++) {
        kstore_status status = ur_check_read(log, part, &run[index], &headers[index], destination + offset);
        if (status != KSTORE_OK) return status;
        offset += run[index].payload_bytes;
    }
    return KSTORE_OK;
}

/* A read in progress: what was copied so far, and whether it stops. */
typedef struct ur_read_state {
    ur_log *log;
    uint8_t *destination;
    uint64_t capacity;
    int64_t limit; /* entries starting at or past it are not returned */
    uint32_t entry_count;
    uint64_t byte_count;
    int64_t next_offset;
    uint64_t first_entry_bytes;
    bool done;
} ur_read_state;

/* Copies the entries of one block of a part's index while they fit (and start below the limit);
 * runs of adjacent frames are read together. */
static kstore_status ur_read_block(ur_read_state *state, const ur_part *part, const ur_entry *block, size_t count) {
    size_t run_start = 0, run_length = 0;
    uint64_t run_bytes = 0;
    for (size_t k = 0; k <= count; k++) {
        const ur_entry *entry = k < count ? &block[k] : NULL;
        bool take = entry != NULL;
        if (take && (entry->first_offset >= state->limit || state->entry_count + run_length >= UINT32_MAX)) {
            take = false;
            state->done = true;
        }
        if (take && entry->payload_bytes > state->capacity - state->byte_count - run_bytes) {
            if (state->entry_count + run_length == 0) state->first_entry_bytes = entry->payload_bytes;
            take = false;
            state->done = true;
        }
        bool adjacent = take && run_length > 0 && run_length < UR_READ_IOVECS_MAX / 3 &&
                        entry->position == block[k - 1].position + ur_frame_bytes(block[k - 1].payload_bytes);
        if (run_length > 0 && !adjacent) {
            kstore_status status =
                ur_read_run(state->log, part, &block[run_start], run_length, state->destination + state->byte_count);
            if (status != KSTORE_OK) {
                state->done = true;
                return status;
            }
            state->byte_count += run_bytes;
            state->entry_count += (uint32_t)run_length;
            state->next_offset = block[run_start + run_length - 1].last_offset + 1;
            run_length = 0;
            run_bytes = 0;
        }
        if (!take) break;
        if (run_length == 0) run_start = k;
        run_length++;
        run_bytes += entry->payload_bytes;
    }
    return KSTORE_OK;
}

/* Copies entries from entry `entry_index` of part `part_index` on, part after part, until the
 * read is done. */
static kstore_status ur_read_entries(ur_read_state *state, size_t part_index, size_t entry_index) {
    ur_log *log = state->log;
    ur_entry block[64];
    for (size_t first = part_index; !state->done && part_index < log->part_count; part_index++) {
        const ur_part *part = &log->parts[part_index];
        if (part_index != first) entry_index = part->begin;
        while (!state->done && entry_index < part->end) {
            size_t count = part->end - entry_index < 64 ? part->end - entry_index : 64;
            if (!ur_part_entries(part, entry_index, count, block)) {
                kstore_kit_error_set(&log->instance->errors,
                                     "read from log '%s': reading the index of wal-%016" PRIx64 ": %s", log->name,
                                     part->segment->generation, strerror(errno));
                /* Stop: a later part must not be read after this one's entries were skipped. */
                state->done = true;
                return KSTORE_ERR_IO;
            }
            kstore_status status = ur_read_block(state, part, block, count);
            if (status != KSTORE_OK) return status;
            entry_index += count;
        }
    }
    return KSTORE_OK;
}

kstore_status ur_log_read(kstore_log *handle, int64_t offset, int64_t end_offset_limit, void *buf, uint64_t capacity,
                          kstore_read_result *result) {
    if (handle == NULL) return KSTORE_ERR_INVALID_ARGUMENT;
    ur_log *log = (ur_log *)handle;
    if (result == NULL || (buf == NULL && capacity > 0)) {
        kstore_kit_error_set(&log->instance->errors, "read from log '%s': %s is NULL", log->name,
                             result == NULL ? "result" : "buf");
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    ur_read_state state = {.log = log, .destination = buf, .capacity = capacity, .next_offset = offset};
    kstore_status status = KSTORE_OK;

    /* Reads hold the log's read lock while they copy (page-cached, recently written data, see
     * the report on NONBLOCKING): parts cannot be dropped or their segments deleted meanwhile. */
    pthread_rwlock_rdlock(&log->lock);
    if (offset < log->start_offset || offset > log->end_offset) {
        int64_t start_offset = log->start_offset, end_offset = log->end_offset;
        pthread_rwlock_unlock(&log->lock);
        kstore_kit_error_set(&log->instance->errors, "read from log '%s': offset %lld outside [%lld, %lld]", log->name,
                             (long long)offset, (long long)start_offset, (long long)end_offset);
        return KSTORE_ERR_OUT_OF_RANGE;
    }
    /* Only entries whose append completed are returned. */
    state.limit = ur_min64(end_offset_limit, atomic_load(&log->readable_end));
    if (offset < state.limit && log->part_count > 0) {
        size_t part_index = ur_log_find_part(log, offset);
        size_t entry_index = 0;
        if (!ur_part_find(&log->parts[part_index], offset, &entry_index)) {
            kstore_kit_error_set(&log->instance->errors,
                                 "read from log '%s': reading the index of wal-%016" PRIx64 ": %s", log->name,
                                 log->parts[part_index].segment->generation, strerror(errno));
            status = KSTORE_ERR_IO;
        } else {
            status = ur_read_entries(&state, part_index, entry_index);
        }
    }
    pthread_rwlock_unlock(&log->lock);
    if (status != KSTORE_OK) return status;
    if (UR_FITS(result, kstore_read_result, entry_count)) result->entry_count = state.entry_count;
    if (UR_FITS(result, kstore_read_result, byte_count)) result->byte_count = state.byte_count;
    if (UR_FITS(result, kstore_read_result, next_offset)) result->next_offset = state.next_offset;
    if (UR_FITS(result, kstore_read_result, first_entry_bytes)) result->first_entry_bytes = state.first_entry_bytes;
    return KSTORE_OK;
}
