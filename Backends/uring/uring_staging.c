/* Staging: frames are encoded into chunks of contiguous bytes of one segment (each chunk becomes
 * one write of the I/O thread), the cursor moves through the segments, and sync requests wait for
 * the sequence they cover. append, catalog changes and the I/O thread's marks all stage through
 * ur_reserve (room, or why not) and ur_commit (the frame, without failing). Callers hold wal_lock
 * unless said otherwise. Formats: docs/storage-formats.md ("uring backend"); invariants and lock order:
 * uring_internal.h. */
#include "uring_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The first segment's size; each next one doubles up to uring.segment.bytes. Direct writes take at
 * least a block each (a lightly loaded WAL writes a block per sync), so they start larger: a young
 * instance then rolls (and prepares segments) about as often as a buffered one. */
#define UR_SEGMENT_BYTES_FIRST        ((uint64_t)64 * 1024)
#define UR_SEGMENT_BYTES_FIRST_DIRECT ((uint64_t)1024 * 1024)

static uint64_t ur_capacity_for(const ur_instance *instance, uint64_t generation) {
    uint64_t first = instance->direct ? UR_SEGMENT_BYTES_FIRST_DIRECT : UR_SEGMENT_BYTES_FIRST;
    uint64_t capacity = first < instance->segment_bytes ? first : instance->segment_bytes;
    for (uint64_t step = 1; step < generation && capacity < instance->segment_bytes; step++) capacity *= 2;
    return capacity < instance->segment_bytes ? capacity : instance->segment_bytes;
}

/* The last bytes of every segment take catalog frames only, so a catalog change (a checkpoint
 * before deleting segments, above all) fits even when the next segment cannot be created because
 * the disk is full: 1/8 of the segment, at most 4 MiB. */
uint64_t ur_catalog_reserve(uint64_t capacity) {
    return capacity / 8 < (uint64_t)4 * 1024 * 1024 ? capacity / 8 : (uint64_t)4 * 1024 * 1024;
}

static ur_segment *ur_segment_after(ur_instance *instance, const ur_segment *segment) {
    for (size_t index = 0; index < instance->segment_count; index++) {
        if (instance->segments[index] == segment) {
            return index + 1 < instance->segment_count ? instance->segments[index + 1] : NULL;
        }
    }
    return NULL;
}

/* Appends a segment in state PREPARING with the next generation and wakes the maintenance thread,
 * which creates its file. */
ur_segment *ur_segment_add(ur_instance *instance) {
    if (!ur_grow((void **)&instance->segments, &instance->segment_capacity, instance->segment_count + 1,
                 sizeof(ur_segment *), 8)) {
        return NULL;
    }
    ur_segment *segment = calloc(1, sizeof(ur_segment));
    if (segment == NULL) return NULL;
    uint64_t last = instance->segment_count > 0 ? instance->segments[instance->segment_count - 1]->generation : 0;
    segment->generation = last + 1 > instance->generation_floor ? last + 1 : instance->generation_floor;
    segment->capacity = ur_capacity_for(instance, segment->generation);
    segment->fd = -1;
    segment->wfd = -1;
    segment->idx_fd = -1;
    segment->state = UR_SEGMENT_PREPARING;
    instance->segments[instance->segment_count++] = segment;
    pthread_cond_signal(&instance->maintenance_wake);
    return segment;
}

void ur_wake_io(ur_instance *instance) {
    uint64_t one = 1;
    while (write(instance->event_fd, &one, sizeof(one)) < 0 && errno == EINTR) {
    }
}

/* The capacity of a standard chunk (the ones kept for reuse): uring.write.bytes, aligned. */
static size_t ur_chunk_standard_capacity(const ur_instance *instance) {
    return (size_t)ur_align_up(instance->write_bytes, instance->write_align);
}

static ur_chunk *ur_chunk_take(ur_instance *instance, size_t capacity) {
    ur_chunk **link = &instance->free_chunks;
    while (*link != NULL) {
        if ((*link)->capacity >= capacity) {
            ur_chunk *chunk = *link;
            *link = chunk->next;
            chunk->next = NULL;
            return chunk;
        }
        link = &(*link)->next;
    }
    ur_chunk *chunk = calloc(1, sizeof(ur_chunk));
    if (chunk == NULL) return NULL;
    /* Room after the frames for a pad frame: up to the alignment, and one more when the gap is
     * shorter than a frame header. */
    size_t slack = instance->direct ? 2 * (size_t)instance->write_align : 0;
    chunk->allocated = capacity + slack;
    chunk->bytes = ur_aligned_alloc(instance, chunk->allocated);
    if (chunk->bytes == NULL) {
        free(chunk);
        return NULL;
    }
    chunk->capacity = capacity;
    instance->staging_bytes += capacity;
    return chunk;
}

/* Keeps chunks of the standard size for reuse, up to the staging bound; frees the others. */
void ur_chunk_release(ur_instance *instance, ur_chunk *chunk) {
    chunk->used = 0;
    chunk->written = 0;
    chunk->pending_count = 0;
    chunk->error = 0;
    chunk->injected = false;
    chunk->segment = NULL;
    size_t kept = 0;
    for (ur_chunk *free_chunk = instance->free_chunks; free_chunk != NULL; free_chunk = free_chunk->next) kept++;
    if (chunk->capacity == ur_chunk_standard_capacity(instance) && kept < 4) {
        chunk->next = instance->free_chunks;
        instance->free_chunks = chunk;
        return;
    }
    instance->staging_bytes -= chunk->capacity;
    ur_chunk_free(instance, chunk);
}

void ur_chunk_free(const ur_instance *instance, ur_chunk *chunk) {
    free(chunk->pending);
    ur_aligned_free(instance, chunk->bytes, chunk->allocated);
    free(chunk);
}

/* Gives a chunk back to staging that the read cache held (it was not counted in staging_bytes). */
void ur_chunk_reclaim(ur_instance *instance, ur_chunk *chunk) {
    instance->staging_bytes += chunk->capacity;
    ur_chunk_release(instance, chunk);
}

/* Frees the chunks kept for reuse. */
void ur_chunks_free_idle(ur_instance *instance) {
    while (instance->free_chunks != NULL) {
        ur_chunk *chunk = instance->free_chunks;
        instance->free_chunks = chunk->next;
        instance->staging_bytes -= chunk->capacity;
        ur_chunk_free(instance, chunk);
    }
}

void ur_maybe_seal(ur_instance *instance, ur_segment *segment) {
    if (segment == NULL || segment == instance->cursor_segment || segment->sealed) return;
    if (instance->chunk_head != NULL && instance->chunk_head->segment->generation <= segment->generation) return;
    segment->sealed = true;
    segment->sealing = true;
    pthread_cond_signal(&instance->maintenance_wake);
}

ur_pad ur_pad_for(const ur_instance *instance, const ur_segment *segment, uint64_t end) {
    ur_pad pad = {0, end, end};
    if (!instance->direct) return pad;
    uint64_t align = instance->write_align;
    uint64_t aligned = ur_align_up(end, align);
    if (aligned == end) return pad;
    if (aligned - end < UR_FRAME_HEADER_BYTES) aligned += align;
    if (aligned <= segment->capacity) {
        pad.frame_bytes = aligned - end;
        pad.write_end = pad.cursor = aligned;
        return pad;
    }
    /* No pad frame fits before the segment's end: zeros to the alignment, and the segment is full
     * (recovery continues in the next segment, whose first frame carries the next sequence). */
    pad.write_end = ur_align_up(end, align);
    pad.cursor = pad.write_end > segment->capacity ? pad.write_end : segment->capacity;
    return pad;
}

/* Closes an open chunk: it takes no more frames; in direct mode it gets its pad (a frame with the
 * next sequence), and the cursor moves past it if it was at the chunk's end. */
void ur_chunk_close(ur_instance *instance, ur_chunk *chunk) {
    if (chunk->state != UR_CHUNK_OPEN) return;
    chunk->state = UR_CHUNK_CLOSED;
    uint64_t end = chunk->position + chunk->used;
    ur_pad pad = ur_pad_for(instance, chunk->segment, end);
    bool at_cursor = instance->cursor_segment == chunk->segment && instance->cursor_position == end;
    if (pad.frame_bytes > 0) {
        uint64_t sequence = instance->next_sequence++;
        ur_pad_frame_encode(chunk->bytes + chunk->used, pad.frame_bytes, chunk->segment->generation, sequence,
                            instance->durable_sequence);
        chunk->last_sequence = sequence;
        instance->stats.pad_bytes += pad.frame_bytes;
    } else if (pad.write_end > end) {
        memset(chunk->bytes + chunk->used, 0, (size_t)(pad.write_end - end));
    }
    chunk->used = (size_t)(pad.write_end - chunk->position);
    if (at_cursor) instance->cursor_position = pad.cursor;
}

/* Finds room for a frame without changing the WAL: in the open tail chunk, or in a new chunk after
 * it (once padded) or at the start of the next segment. */
kstore_status ur_reserve(ur_instance *instance, uint64_t frame_bytes, bool catalog, ur_reservation *reservation,
                         const char **reason) {
    if (instance->failed_status != KSTORE_OK) {
        *reason = "the write-ahead log failed earlier; reopen the instance";
        return instance->failed_status;
    }
    if (instance->rewinding) {
        *reason = "the write-ahead log is rolling back a failed write; retry";
        return KSTORE_ERR_BUSY;
    }
    ur_segment *segment = instance->cursor_segment;
    uint64_t position = instance->cursor_position;
    uint64_t limit = catalog ? segment->capacity : segment->capacity - ur_catalog_reserve(segment->capacity);
    /* Data frames never go into a sealed segment (its index was written): after a rewind into
     * one, only catalog frames do. */
    bool closed_to_data = !catalog && segment->sealed;
    ur_chunk *tail = instance->chunk_tail;
    bool tail_open = tail != NULL && tail->state == UR_CHUNK_OPEN && tail->segment == segment &&
                     tail->position + tail->used == position;
    if (tail_open && !closed_to_data && position + frame_bytes <= limit && tail->capacity - tail->used >= frame_bytes) {
        if (!ur_grow((void **)&tail->pending, &tail->pending_capacity, tail->pending_count + 1, sizeof(ur_pending),
                     64)) {
            *reason = "out of memory";
            return KSTORE_ERR_NO_MEMORY;
        }
        *reservation = (ur_reservation){segment, position, tail, false};
        return KSTORE_OK;
    }
    /* A new chunk starts where the open tail ends once padded (ur_commit closes it). */
    if (tail_open) position = ur_pad_for(instance, segment, position).cursor;
    if (position + frame_bytes > limit || closed_to_data) {
        ur_segment *next = ur_segment_after(instance, segment);
        if (next == NULL) next = ur_segment_add(instance);
        if (next == NULL) {
            *reason = "out of memory";
            return KSTORE_ERR_NO_MEMORY;
        }
        segment = next;
        position = 0;
        /* An entry larger than a young segment: that segment grows (a write past its
         * preallocated end extends the file). */
        uint64_t needed = ur_align_up(frame_bytes + frame_bytes / 7 + UR_FRAME_ALIGN_BYTES,
                                      instance->write_align > 4096 ? instance->write_align : 4096);
        if (!catalog && segment->capacity - ur_catalog_reserve(segment->capacity) < frame_bytes) {
            segment->capacity = needed > segment->capacity ? needed : segment->capacity;
        }
    }
    if (segment != instance->cursor_segment && segment->state == UR_SEGMENT_FAILED) {
        instance->maintenance_poke = true;
        pthread_cond_signal(&instance->maintenance_wake);
        *reason = "no space for the next write-ahead-log segment";
        return kstore_kit_status_for_errno(segment->prepare_error);
    }
    size_t capacity = frame_bytes > instance->write_bytes ? (size_t)frame_bytes : (size_t)instance->write_bytes;
    capacity = (size_t)ur_align_up(capacity, instance->write_align);
    bool fits_free = false;
    for (ur_chunk *free_chunk = instance->free_chunks; free_chunk != NULL; free_chunk = free_chunk->next) {
        if (free_chunk->capacity >= capacity) fits_free = true;
    }
    if (!fits_free && instance->staging_bytes + capacity > instance->staging_bytes_max) {
        /* Idle chunks kept for reuse count toward the bound but hold nothing: free them first, or
         * a frame larger than the standard chunk would wait for room that never comes. */
        ur_chunks_free_idle(instance);
    }
    if (!fits_free && instance->staging_bytes > 0 && instance->staging_bytes + capacity > instance->staging_bytes_max) {
        instance->stats.busy_rejections++;
        *reason = "the staging buffers are full (uring.staging.bytes); retry";
        return KSTORE_ERR_BUSY;
    }
    ur_chunk *chunk = ur_chunk_take(instance, capacity);
    if (chunk == NULL || !ur_grow((void **)&chunk->pending, &chunk->pending_capacity, 1, sizeof(ur_pending), 64)) {
        if (chunk != NULL) ur_chunk_release(instance, chunk);
        *reason = "out of memory";
        return KSTORE_ERR_NO_MEMORY;
    }
    chunk->segment = segment;
    chunk->position = position;
    chunk->state = UR_CHUNK_OPEN;
    *reservation = (ur_reservation){segment, position, chunk, true};
    return KSTORE_OK;
}

/* Writes a reserved frame into staging and advances the cursor. Returns whether the I/O thread
 * must be woken (the caller writes the eventfd after dropping the lock). */
bool ur_commit(ur_instance *instance, const ur_reservation *reservation, const ur_frame *frame,
               uint64_t *sequence_out) {
    ur_chunk *chunk = reservation->chunk;
    bool closed_tail = false;
    if (reservation->new_chunk) {
        if (instance->chunk_tail != NULL && instance->chunk_tail->state == UR_CHUNK_OPEN) {
            /* Padded now, so its pad takes the sequence before the new chunk's frames. */
            ur_chunk_close(instance, instance->chunk_tail);
            closed_tail = true;
        }
        chunk->first_sequence = instance->next_sequence;
        chunk->generation = reservation->segment->generation;
        chunk->next = NULL;
        if (instance->chunk_tail != NULL) {
            instance->chunk_tail->next = chunk;
        } else {
            instance->chunk_head = chunk;
        }
        instance->chunk_tail = chunk;
    }
    if (reservation->segment != instance->cursor_segment) {
        /* Rolled: keep one prepared segment ahead of the one being written. */
        ur_segment *left = instance->cursor_segment;
        left->roll_position = instance->cursor_position;
        instance->cursor_segment = reservation->segment;
        /* Its last write may have been delivered already: then it is sealed now. */
        ur_maybe_seal(instance, left);
        if (ur_segment_after(instance, reservation->segment) == NULL) (void)ur_segment_add(instance);
    }
    uint64_t frame_bytes = ur_frame_bytes(frame->payload_bytes);
    uint64_t sequence = instance->next_sequence++;
    ur_frame_header header = {
        .magic = UR_FRAME_MAGIC,
        .crc = 0,
        .payload_bytes = (uint32_t)frame->payload_bytes,
        .kind = frame->kind,
        .flags = frame->flags,
        .generation = reservation->segment->generation,
        .log_id = frame->log_id,
        .first_offset = frame->first_offset,
        .last_offset = frame->last_offset,
        .max_timestamp = frame->max_timestamp,
        .sequence = sequence,
        .durable_sequence = instance->durable_sequence,
    };
    ur_frame_encode(chunk->bytes + chunk->used, &header, frame->payload_crc, frame->iov, frame->iov_count);
    if (ur_frame_is_catalog(frame->kind)) reservation->segment->has_catalog = true;
    ur_log *log = frame->log;
    chunk->pending[chunk->pending_count++] = (ur_pending){
        .log = log,
        .completion = frame->completion,
        .context = frame->context,
        .first_offset = frame->first_offset,
        .end_offset = frame->last_offset + 1,
        .truncate_generation = log != NULL ? atomic_load(&log->truncate_generation) : 0,
        .chunk_offset = (uint32_t)chunk->used,
        .kind = frame->kind,
    };
    chunk->used += frame_bytes;
    chunk->last_sequence = sequence;
    instance->cursor_position = reservation->position + frame_bytes;
    if (log != NULL) {
        log->last_sequence = sequence;
        if (frame->kind == UR_FRAME_DATA) atomic_fetch_add_explicit(&log->undelivered, 1, memory_order_relaxed);
    }
    if (frame->kind == UR_FRAME_DATA) instance->stats.appends++;
    if (sequence_out != NULL) *sequence_out = sequence;
    /* Once per burst: a waiting I/O thread writes the open tail at once only when none of our writes
     * is in flight (ur_io_submit_writes); otherwise the next write's completion wakes it, and the
     * appends of the burst go in one write. A chunk that just filled up goes if a write slot is free. */
    bool wake = instance->io_waiting && (instance->writes_in_flight == 0 ||
                                         (closed_tail && instance->writes_in_flight < instance->writes_inflight_max));
    if (wake) instance->io_waiting = false;
    return wake;
}

/* Stages a catalog frame (no completion): CREATE carries the name. */
kstore_status ur_stage_catalog(ur_instance *instance, uint16_t kind, ur_log *log, uint64_t log_id, int64_t offset,
                               const char *name, bool *wake, const char **reason) {
    kstore_iovec iov = {name, name != NULL ? strlen(name) : 0};
    uint32_t iov_count = name != NULL ? 1 : 0;
    uint32_t payload_crc = fjord_crc32c(0, iov.base, iov.len);
    ur_reservation reservation;
    kstore_status status = ur_reserve(instance, ur_frame_bytes(iov.len), true, &reservation, reason);
    if (status != KSTORE_OK) return status;
    ur_frame frame = {
        .kind = kind,
        .log = log,
        .log_id = log_id,
        .first_offset = offset,
        .last_offset = offset,
        .max_timestamp = -1,
        .payload_crc = payload_crc,
        .iov = &iov,
        .iov_count = iov_count,
        .payload_bytes = iov.len,
    };
    bool woke = ur_commit(instance, &reservation, &frame, NULL);
    *wake = *wake || woke;
    return KSTORE_OK;
}

/* Queues a sync request; false when out of memory. */
bool ur_add_sync(ur_instance *instance, uint64_t target, ur_log *log, kstore_completion completion, void *context,
                 bool *wake) {
    if (!ur_grow((void **)&instance->syncs, &instance->sync_capacity, instance->sync_count + 1, sizeof(ur_sync_request),
                 64)) {
        return false;
    }
    instance->syncs[instance->sync_count++] = (ur_sync_request){target, log, completion, context};
    instance->stats.syncs++;
    if (instance->io_waiting && !instance->fsync_in_flight) {
        instance->io_waiting = false;
        *wake = true;
    }
    return true;
}

/* A waiter for an internal sync (delete_log, close). */
typedef struct ur_waiter {
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    bool done;
    kstore_status status;
} ur_waiter;

static void ur_waiter_done(void *context, kstore_status status) {
    ur_waiter *waiter = context;
    pthread_mutex_lock(&waiter->mutex);
    waiter->done = true;
    waiter->status = status;
    pthread_cond_signal(&waiter->cond);
    pthread_mutex_unlock(&waiter->mutex);
}

/* Waits until everything staged so far is durable (blocking: delete_log and close only). Caller
 * holds no lock. */
kstore_status ur_wait_durable(ur_instance *instance) {
    ur_waiter waiter = {.done = false, .status = KSTORE_OK};
    pthread_mutex_init(&waiter.mutex, NULL);
    pthread_cond_init(&waiter.cond, NULL);
    bool wake = false;
    pthread_mutex_lock(&instance->wal_lock);
    kstore_status status = instance->failed_status;
    bool queued = false;
    if (status == KSTORE_OK) {
        uint64_t target = instance->next_sequence - 1;
        if (target <= instance->durable_sequence) {
            waiter.done = true;
        } else if (ur_add_sync(instance, target, NULL, ur_waiter_done, &waiter, &wake)) {
            queued = true;
        } else {
            status = KSTORE_ERR_NO_MEMORY;
        }
    }
    pthread_mutex_unlock(&instance->wal_lock);
    if (wake) ur_wake_io(instance);
    if (queued) {
        pthread_mutex_lock(&waiter.mutex);
        while (!waiter.done) pthread_cond_wait(&waiter.cond, &waiter.mutex);
        pthread_mutex_unlock(&waiter.mutex);
        status = waiter.status;
    }
    pthread_mutex_destroy(&waiter.mutex);
    pthread_cond_destroy(&waiter.cond);
    return status;
}
