/* The I/O thread: it owns the io_uring ring, turns staged chunks into writes (up to
 * uring.writes.inflight in flight), delivers appends in WAL order when their write is done, runs
 * the group commit — one fdatasync per written segment file covering every sync request waiting —
 * writes a MARK frame after each, and rolls the WAL back after a failed write. Completions are
 * called outside every lock. Invariants and lock order: uring_internal.h. */
#include "uring_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define UR_TAG_EVENT     ((uintptr_t)8)
#define UR_TAG_FSYNC_BIT ((uintptr_t)1)

/* A completion to call outside the locks. */
typedef struct ur_callback {
    kstore_completion completion;
    void *context;
    kstore_status status;
} ur_callback;

typedef struct ur_callbacks {
    ur_callback *items;
    size_t count;
    size_t capacity;
} ur_callbacks;

/* A log field update the I/O thread makes outside wal_lock, under the log's read lock. */
typedef struct ur_update {
    ur_log *log;
    int64_t end_offset;
    uint64_t truncate_generation;
    bool durable;
} ur_update;

typedef struct ur_io_state {
    ur_callbacks callbacks;
    /* Of callbacks: completions of sync requests (instance->sync_callbacks_queued). */
    uint64_t sync_callbacks;
    ur_update *updates;
    size_t update_count;
    size_t update_capacity;
    /* Counts flushes: a log's updates within one pass are merged (ur_log.update_pass). */
    uint64_t pass;
    /* Chunks whose write completed, taken off the WAL under wal_lock; their appends are completed
     * outside it (ur_io_complete_chunks), so appenders do not wait for that. */
    ur_chunk *written_head;
    ur_chunk *written_tail;
    /* Chunks delivered in this pass, in WAL order, for the read cache (ur_io_flush). */
    ur_chunk *delivered_head;
    ur_chunk *delivered_tail;
    /* Chunks the read cache gave back, returned to staging under wal_lock. */
    ur_chunk *reclaim;
    uint64_t event_value;
    bool event_armed;
} ur_io_state;

static bool ur_callbacks_add(ur_callbacks *callbacks, kstore_completion completion, void *context,
                             kstore_status status) {
    if (completion == NULL) return true;
    if (!ur_grow((void **)&callbacks->items, &callbacks->capacity, callbacks->count + 1, sizeof(ur_callback), 64)) {
        /* Out of memory while completing: call it right away rather than lose it. The callers
         * hold no lock that a completion could need (it must not call into the instance). */
        completion(context, status);
        return false;
    }
    callbacks->items[callbacks->count++] = (ur_callback){completion, context, status};
    return true;
}

static void ur_callbacks_run(ur_callbacks *callbacks) {
    for (size_t index = 0; index < callbacks->count; index++) {
        callbacks->items[index].completion(callbacks->items[index].context, callbacks->items[index].status);
    }
    callbacks->count = 0;
}

/* Queues a log's readable (or durable) end for ur_io_flush, merged with the log's earlier update of
 * the same kind in this pass: one lock of the log per pass, not one per append. */
static void ur_io_update(ur_io_state *io, ur_log *log, int64_t end_offset, uint64_t truncate_generation, bool durable) {
    int kind = durable ? 1 : 0;
    if (log->update_pass[kind] == io->pass) {
        ur_update *update = &io->updates[log->update_index[kind]];
        if (update->truncate_generation == truncate_generation) {
            if (end_offset > update->end_offset) update->end_offset = end_offset;
            return;
        }
    }
    if (!ur_grow((void **)&io->updates, &io->update_capacity, io->update_count + 1, sizeof(ur_update), 256)) {
        return; /* Out of memory: the state lags (readable/durable_end), data is still correct. */
    }
    log->update_pass[kind] = io->pass;
    log->update_index[kind] = io->update_count;
    io->updates[io->update_count++] = (ur_update){log, end_offset, truncate_generation, durable};
}

/* Hands the chunks delivered in this pass to the read cache, applies readable/durable end updates,
 * then calls the completions — all outside wal_lock, in WAL order. */
static void ur_io_flush(ur_instance *instance, ur_io_state *io) {
    if (io->delivered_head != NULL) {
        ur_cache_add(&instance->cache, io->delivered_head, &io->reclaim);
        io->delivered_head = io->delivered_tail = NULL;
    }
    for (size_t index = 0; index < io->update_count; index++) {
        ur_update *update = &io->updates[index];
        pthread_rwlock_rdlock(&update->log->lock);
        if (atomic_load(&update->log->truncate_generation) == update->truncate_generation) {
            _Atomic int64_t *field = update->durable ? &update->log->durable_end : &update->log->readable_end;
            int64_t end = ur_min64(update->end_offset, update->log->end_offset);
            if (atomic_load(field) < end) atomic_store(field, end);
        }
        pthread_rwlock_unlock(&update->log->lock);
    }
    io->update_count = 0;
    io->pass++;
    ur_callbacks_run(&io->callbacks);
    if (io->sync_callbacks > 0) {
        atomic_fetch_sub_explicit(&instance->sync_callbacks_queued, io->sync_callbacks, memory_order_release);
        io->sync_callbacks = 0;
    }
}

/* Gives the chunks the read cache let go back to staging. Caller holds wal_lock. */
static void ur_io_reclaim(ur_instance *instance, ur_io_state *io) {
    while (io->reclaim != NULL) {
        ur_chunk *chunk = io->reclaim;
        io->reclaim = chunk->next;
        chunk->next = NULL;
        ur_chunk_reclaim(instance, chunk);
    }
}

/* Whether the open tail chunk is written now rather than left to take more frames: when none of
 * our writes is in flight (the disk would have nothing of ours to do), or when a sync waits for
 * its frames and no fdatasync is in flight (the next group commit needs them). Otherwise the
 * completion of the write in flight comes back for it, with every frame staged meanwhile: a round
 * goes in few writes however many appends make it. Caller holds wal_lock. */
static bool ur_io_tail_due(const ur_instance *instance, const ur_chunk *chunk) {
    if (instance->writes_in_flight == 0 || instance->stopping) return true;
    if (instance->fsync_in_flight) return false;
    for (size_t index = 0; index < instance->sync_count; index++) {
        if (instance->syncs[index].target_sequence >= chunk->first_sequence) return true;
    }
    return false;
}

static struct io_uring_sqe *ur_io_sqe(ur_instance *instance) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(&instance->ring);
    if (sqe == NULL) {
        io_uring_submit(&instance->ring);
        sqe = io_uring_get_sqe(&instance->ring);
    }
    return sqe;
}

/* Asks the kit's fault hook (tests; NULL in production) about the write a chunk is about to get, as
 * the syscall wrappers do for pwrite: a fault settles the chunk with that errno instead of being
 * submitted, after writing the leading bytes the hook lets land (a torn write; whole aligned blocks
 * in direct mode). Returns whether the chunk settled. Caller holds wal_lock. */
static bool ur_io_write_faulted(ur_instance *instance, ur_chunk *chunk) {
    uint64_t landed = 0;
    int wfd = ur_segment_wfd(chunk->segment);
    int fault = kstore_kit_fault_check(&instance->io, KSTORE_KIT_IO_WRITE, wfd, chunk->position + chunk->written,
                                       chunk->used - chunk->written, &landed);
    if (fault == 0) return false;
    landed = landed / instance->write_align * instance->write_align;
    if (landed > 0) {
        ssize_t done =
            pwrite(wfd, chunk->bytes + chunk->written, (size_t)landed, (off_t)(chunk->position + chunk->written));
        if (done > 0) chunk->written += (size_t)done;
    }
    chunk->injected = true;
    chunk->error = fault;
    chunk->state = UR_CHUNK_DONE;
    return true;
}

/* Submits staged chunks in WAL order while fewer than writes_inflight_max are in flight. Returns
 * whether a chunk settled without a CQE to come (an injected failure, a segment that could not be
 * created): the caller must then go round again instead of waiting. Caller holds wal_lock. */
static bool ur_io_submit_writes(ur_instance *instance) {
    if (instance->rewinding || instance->failed_status != KSTORE_OK) return false;
    bool settled = false;
    for (ur_chunk *chunk = instance->chunk_head; chunk != NULL; chunk = chunk->next) {
        if (chunk->state == UR_CHUNK_IN_FLIGHT || chunk->state == UR_CHUNK_DONE) continue;
        if (instance->writes_in_flight >= instance->writes_inflight_max) break;
        if (chunk->state == UR_CHUNK_OPEN) {
            if (chunk->used == 0 || !ur_io_tail_due(instance, chunk)) break;
            ur_chunk_close(instance, chunk);
        }
        if (chunk->segment->state == UR_SEGMENT_FAILED) {
            /* The segment could not be created (no space): its frames fail and roll back. */
            chunk->error = chunk->segment->prepare_error != 0 ? chunk->segment->prepare_error : ENOSPC;
            chunk->state = UR_CHUNK_DONE;
            settled = true;
            break;
        }
        if (chunk->segment->state != UR_SEGMENT_READY) {
            atomic_store(&chunk->segment->hurry, true);
            break;
        }
        if (ur_io_write_faulted(instance, chunk)) {
            settled = true;
            continue;
        }
        struct io_uring_sqe *sqe = ur_io_sqe(instance);
        if (sqe == NULL) break;
        io_uring_prep_write(sqe, ur_segment_wfd(chunk->segment), chunk->bytes + chunk->written,
                            (unsigned)(chunk->used - chunk->written), chunk->position + chunk->written);
        io_uring_sqe_set_data(sqe, chunk);
        chunk->state = UR_CHUNK_IN_FLIGHT;
        instance->writes_in_flight++;
        instance->stats.writes++;
        if (instance->writes_in_flight > instance->stats.writes_in_flight_max) {
            instance->stats.writes_in_flight_max = instance->writes_in_flight;
        }
    }
    return settled;
}

/* Completes the sync requests whose target is durable, in request order. Caller holds wal_lock. */
static void ur_io_complete_syncs(ur_instance *instance, ur_io_state *io, kstore_status status) {
    size_t kept = 0;
    for (size_t index = 0; index < instance->sync_count; index++) {
        ur_sync_request *request = &instance->syncs[index];
        if (status != KSTORE_OK || request->target_sequence <= instance->durable_sequence) {
            ur_callbacks_add(&io->callbacks, request->completion, request->context, status);
            io->sync_callbacks++;
            atomic_fetch_add_explicit(&instance->sync_callbacks_queued, 1, memory_order_relaxed);
        } else {
            instance->syncs[kept++] = *request;
        }
    }
    instance->sync_count = kept;
}

static void ur_io_fsync_done(ur_instance *instance, ur_io_state *io);

/* Issues one group-commit round when a sync request waits for frames that are all written.
 * Caller holds wal_lock. */
static void ur_io_maybe_fsync(ur_instance *instance, ur_io_state *io) {
    if (instance->fsync_in_flight || instance->sync_count == 0 || instance->failed_status != KSTORE_OK) return;
    uint64_t min_target = UINT64_MAX;
    for (size_t index = 0; index < instance->sync_count; index++) {
        if (instance->syncs[index].target_sequence < min_target) min_target = instance->syncs[index].target_sequence;
    }
    if (min_target > instance->written_sequence) return;
    uint64_t covered = instance->written_sequence;
    size_t dirty = 0;
    for (size_t index = 0; index < instance->segment_count; index++) dirty += instance->segments[index]->dirty;
    if (dirty == 0) {
        /* Everything written is already covered by an earlier fdatasync. */
        if (covered > instance->durable_sequence) instance->durable_sequence = covered;
        pthread_cond_broadcast(&instance->wal_changed);
        ur_io_complete_syncs(instance, io, KSTORE_OK);
        return;
    }
    instance->fsync_in_flight = true;
    instance->fsync_error = 0;
    instance->fsync_covered_sequence = covered;
    instance->stats.fsyncs++;
    uint64_t ignored = 0;
    int fault = kstore_kit_fault_check(&instance->io, KSTORE_KIT_IO_SYNC, -1, 0, 0, &ignored);
    if (fault != 0) {
        /* A fault hook (tests) fails the round as a failed fdatasync would. */
        instance->fsync_error = fault;
        instance->fsync_parts_left = 0;
    } else {
        instance->fsync_parts_left = 0;
        for (size_t index = 0; index < instance->segment_count; index++) {
            ur_segment *segment = instance->segments[index];
            if (!segment->dirty) continue;
            struct io_uring_sqe *sqe = ur_io_sqe(instance);
            if (sqe == NULL) {
                instance->fsync_error = EAGAIN;
                continue;
            }
            io_uring_prep_fsync(sqe, ur_segment_wfd(segment), IORING_FSYNC_DATASYNC);
            io_uring_sqe_set_data(sqe, (void *)((uintptr_t)segment | UR_TAG_FSYNC_BIT));
            segment->dirty = false;
            segment->fsyncs_in_flight++;
            instance->fsync_parts_left++;
        }
    }
    /* The logs written so far are the ones this round makes durable. */
    ur_log **swap = instance->fsync_logs;
    size_t swap_capacity = instance->fsync_log_capacity;
    instance->fsync_logs = instance->dirty_logs;
    instance->fsync_log_capacity = instance->dirty_capacity;
    instance->fsync_log_count = instance->dirty_count;
    instance->dirty_logs = swap;
    instance->dirty_capacity = swap_capacity;
    instance->dirty_count = 0;
    for (size_t index = 0; index < instance->fsync_log_count; index++) {
        ur_log *log = instance->fsync_logs[index];
        log->in_dirty_list = false;
        log->fsync_end = log->written_end;
        log->fsync_truncate_generation = log->written_truncate_generation;
    }
    /* An injected failure (or no SQE) has no CQE to wait for. */
    if (instance->fsync_parts_left == 0) ur_io_fsync_done(instance, io);
}

static void ur_fail_wal(ur_instance *instance, const char *what, int error) {
    if (instance->failed_status == KSTORE_OK) {
        instance->failed_status = KSTORE_ERR_IO;
        kstore_kit_error_set(
            &instance->errors,
            "%s in data directory %s failed: %s; the write-ahead log is failed until the instance is reopened", what,
            instance->directory.path, strerror(error));
    }
    pthread_cond_broadcast(&instance->wal_changed);
}

/* A round of fdatasyncs finished. Caller holds wal_lock. */
static void ur_io_fsync_done(ur_instance *instance, ur_io_state *io) {
    instance->fsync_in_flight = false;
    if (instance->fsync_error != 0) {
        ur_fail_wal(instance, "fdatasync of the write-ahead log", instance->fsync_error);
        instance->fsync_log_count = 0;
        ur_io_complete_syncs(instance, io, KSTORE_ERR_IO);
        return;
    }
    if (instance->fsync_covered_sequence > instance->durable_sequence) {
        instance->durable_sequence = instance->fsync_covered_sequence;
    }
    for (size_t index = 0; index < instance->fsync_log_count; index++) {
        ur_log *log = instance->fsync_logs[index];
        ur_io_update(io, log, log->fsync_end, log->fsync_truncate_generation, true);
    }
    instance->fsync_log_count = 0;
    /* The durable mark (best effort: without room it is simply not written). */
    ur_reservation reservation;
    const char *reason = NULL;
    if (ur_reserve(instance, ur_frame_bytes(0), true, &reservation, &reason) == KSTORE_OK) {
        ur_frame mark = {.kind = UR_FRAME_MARK, .max_timestamp = -1};
        (void)ur_commit(instance, &reservation, &mark, NULL);
    }
    pthread_cond_broadcast(&instance->wal_changed);
    ur_io_complete_syncs(instance, io, KSTORE_OK);
}

/* Appends chunk to the list [*head, *tail]. */
static void ur_chunk_list_append(ur_chunk **head, ur_chunk **tail, ur_chunk *chunk) {
    chunk->next = NULL;
    if (*tail != NULL) {
        (*tail)->next = chunk;
    } else {
        *head = chunk;
    }
    *tail = chunk;
}

/* Takes the chunks at the head whose write completed off the WAL, in WAL order: what the group
 * commit and sealing need, in O(1) per chunk. Their appends are completed by ur_io_complete_chunks
 * after wal_lock is let go. Caller holds wal_lock. */
static void ur_io_deliver(ur_instance *instance, ur_io_state *io) {
    while (instance->chunk_head != NULL && instance->chunk_head->state == UR_CHUNK_DONE &&
           instance->chunk_head->error == 0) {
        ur_chunk *chunk = instance->chunk_head;
        instance->written_sequence = chunk->last_sequence;
        instance->stats.bytes_written += chunk->used;
        chunk->segment->dirty = true;
        ur_segment *segment = chunk->segment;
        instance->chunk_head = chunk->next;
        if (instance->chunk_head == NULL) instance->chunk_tail = NULL;
        /* It leaves staging: the read cache may keep it, or it comes back (ur_io_reclaim). */
        instance->staging_bytes -= chunk->capacity;
        chunk->segment = NULL;
        ur_chunk_list_append(&io->written_head, &io->written_tail, chunk);
        ur_maybe_seal(instance, segment);
    }
}

/* Completes the appends of the chunks ur_io_deliver took off the WAL, in WAL order: their logs'
 * readable ends, the logs the next fdatasync covers, and their callbacks (run by ur_io_flush).
 * I/O thread, no lock held: the fields it touches are the I/O thread's. */
static void ur_io_complete_chunks(ur_instance *instance, ur_io_state *io) {
    while (io->written_head != NULL) {
        ur_chunk *chunk = io->written_head;
        io->written_head = chunk->next;
        if (io->written_head == NULL) io->written_tail = NULL;
        for (size_t index = 0; index < chunk->pending_count; index++) {
            ur_pending *pending = &chunk->pending[index];
            if (pending->kind != UR_FRAME_DATA || pending->log == NULL) continue;
            ur_log *log = pending->log;
            atomic_fetch_sub_explicit(&log->undelivered, 1, memory_order_relaxed);
            ur_io_update(io, log, pending->end_offset, pending->truncate_generation, false);
            log->written_end = pending->end_offset;
            log->written_truncate_generation = pending->truncate_generation;
            if (!log->in_dirty_list && ur_grow((void **)&instance->dirty_logs, &instance->dirty_capacity,
                                               instance->dirty_count + 1, sizeof(ur_log *), 64)) {
                log->in_dirty_list = true;
                instance->dirty_logs[instance->dirty_count++] = log;
            }
            ur_callbacks_add(&io->callbacks, pending->completion, pending->context, KSTORE_OK);
        }
        if (instance->cache.bytes_max > 0) {
            /* Kept for reads of the tail: ur_io_flush hands it to the read cache. */
            ur_chunk_list_append(&io->delivered_head, &io->delivered_tail, chunk);
        } else {
            chunk->next = io->reclaim;
            io->reclaim = chunk;
        }
    }
}

/* One affected log of a rollback and the first offset that failed on it. */
typedef struct ur_rollback {
    ur_log *log;
    int64_t first_offset;
} ur_rollback;

/* A rewind in progress (ur_io_rewind). */
typedef struct ur_rewind {
    ur_chunk *list; /* the dropped chunks: the failed one and every later one */
    int error;      /* errno of the failed write */
    /* What the dropped appends fail with; becomes KSTORE_ERR_IO if the rewind itself fails. */
    kstore_status status;
    /* Where the cursor returns to, and the sequence staging continues from. */
    ur_segment *segment;
    uint64_t position;
    uint64_t sequence;
    uint64_t restaged_last; /* sequence of the last catalog frame staged again */
    ur_rollback *rollbacks;
    size_t rollback_count;
    size_t rollback_capacity;
} ur_rewind;

/* Takes the chunks off the WAL and finds where the cursor returns to. Caller holds wal_lock. */
static void ur_rewind_begin(ur_instance *instance, ur_rewind *rewind) {
    ur_chunk *list = instance->chunk_head;
    instance->chunk_head = instance->chunk_tail = NULL;
    rewind->list = list;
    rewind->error = list->error != 0 ? list->error : EIO;
    rewind->status =
        instance->failed_status != KSTORE_OK ? instance->failed_status : kstore_kit_status_for_errno(rewind->error);
    if (rewind->status == KSTORE_ERR_NO_MEMORY) rewind->status = KSTORE_ERR_IO;
    rewind->segment = list->segment;
    rewind->position = list->position;
    rewind->sequence = list->first_sequence;
    if (rewind->segment->state == UR_SEGMENT_FAILED && rewind->position == 0) {
        /* Back to where the previous segment was left; catalog frames fit in its reserve. */
        for (size_t index = 1; index < instance->segment_count; index++) {
            if (instance->segments[index] == rewind->segment) {
                rewind->segment = instance->segments[index - 1];
                rewind->position = rewind->segment->roll_position;
            }
        }
    }
}

/* Zeroes whatever later chunks wrote (they succeeded, but follow the failed one). Caller holds no
 * lock. */
static void ur_rewind_zero_later_writes(ur_instance *instance, ur_rewind *rewind) {
    for (ur_chunk *chunk = rewind->list; chunk != NULL && rewind->status == KSTORE_ERR_NO_SPACE; chunk = chunk->next) {
        if (chunk->written == 0) continue;
        /* Direct mode zeroes whole aligned blocks (a short write may have reached into the next). */
        size_t count = (size_t)ur_align_up(chunk->written, instance->write_align);
        if (count > chunk->used) count = chunk->used;
        if (ur_write_segment_zeros(&instance->io, chunk->segment, chunk->position, count) != 0 ||
            kstore_kit_fdatasync(&instance->io, ur_segment_wfd(chunk->segment)) != 0) {
            int zero_error = errno;
            pthread_mutex_lock(&instance->wal_lock);
            ur_fail_wal(instance, "zeroing a rolled-back write", zero_error);
            pthread_mutex_unlock(&instance->wal_lock);
            rewind->status = KSTORE_ERR_IO;
        }
    }
}

/* One dropped frame: an append fails (and its log is rolled back later), a catalog frame is staged
 * again. Caller holds wal_lock. */
static void ur_rewind_frame(ur_instance *instance, ur_io_state *io, ur_rewind *rewind, const ur_chunk *chunk,
                            const ur_pending *pending) {
    ur_log *log = pending->log;
    if (log != NULL && log->last_sequence >= rewind->sequence) log->last_sequence = rewind->sequence - 1;
    if (pending->kind == UR_FRAME_DATA) {
        if (log != NULL) {
            atomic_fetch_sub_explicit(&log->undelivered, 1, memory_order_relaxed);
            bool seen = false;
            for (size_t k = 0; k < rewind->rollback_count; k++) seen = seen || rewind->rollbacks[k].log == log;
            if (!seen && ur_grow((void **)&rewind->rollbacks, &rewind->rollback_capacity, rewind->rollback_count + 1,
                                 sizeof(ur_rollback), 16)) {
                rewind->rollbacks[rewind->rollback_count++] = (ur_rollback){log, pending->first_offset};
                atomic_store(&log->rollback_pending, true);
                instance->rewind_status = rewind->status;
            }
        }
        ur_callbacks_add(&io->callbacks, pending->completion, pending->context, rewind->status);
        return;
    }
    if (rewind->status == KSTORE_ERR_IO) return;
    ur_frame_header header;
    memcpy(&header, chunk->bytes + pending->chunk_offset, sizeof(header));
    kstore_iovec payload = {chunk->bytes + pending->chunk_offset + UR_FRAME_HEADER_BYTES, header.payload_bytes};
    ur_reservation reservation;
    const char *reason = NULL;
    if (ur_reserve(instance, ur_frame_bytes(header.payload_bytes), true, &reservation, &reason) != KSTORE_OK) {
        ur_fail_wal(instance, "staging catalog records again after a failed write", ENOMEM);
        rewind->status = KSTORE_ERR_IO;
        return;
    }
    ur_frame frame = {
        .kind = header.kind,
        .log = log,
        .log_id = header.log_id,
        .first_offset = header.first_offset,
        .last_offset = header.last_offset,
        .max_timestamp = header.max_timestamp,
        .payload_crc = fjord_crc32c(0, payload.base, payload.len),
        .iov = &payload,
        .iov_count = payload.len > 0 ? 1 : 0,
        .payload_bytes = payload.len,
    };
    ur_commit(instance, &reservation, &frame, &rewind->restaged_last);
}

/* Returns each rolled-back log's end to its first failed offset. Caller holds no lock. */
static void ur_rewind_logs(const ur_rewind *rewind) {
    for (size_t index = 0; index < rewind->rollback_count; index++) {
        ur_log *log = rewind->rollbacks[index].log;
        pthread_rwlock_wrlock(&log->lock);
        if (log->end_offset > rewind->rollbacks[index].first_offset) {
            log->stale_end = log->end_offset;
            log->stale_status = rewind->status;
            (void)ur_log_cut(log, rewind->rollbacks[index].first_offset);
            log->end_offset = rewind->rollbacks[index].first_offset;
        }
        atomic_store(&log->rollback_pending, false);
        pthread_rwlock_unlock(&log->lock);
    }
}

/* Rolls the WAL back to the chunk at the head, which failed (kstore.h append "state after failure"):
 * every frame from it on fails, logs' ends return to their first failed offset, bytes written after
 * the failure are zeroed so recovery never sees them, and catalog frames are staged again. Runs on
 * the I/O thread once no write is in flight; takes and drops wal_lock itself. */
static void ur_io_rewind(ur_instance *instance, ur_io_state *io) {
    ur_rewind rewind = {0};
    pthread_mutex_lock(&instance->wal_lock);
    ur_rewind_begin(instance, &rewind);
    pthread_mutex_unlock(&instance->wal_lock);

    ur_rewind_zero_later_writes(instance, &rewind);

    pthread_mutex_lock(&instance->wal_lock);
    if (rewind.status == KSTORE_ERR_IO) ur_fail_wal(instance, "a write to the write-ahead log", rewind.error);
    instance->cursor_segment = rewind.segment;
    instance->cursor_position = rewind.position;
    instance->next_sequence = rewind.sequence;
    /* Everything in the dropped chunks failed; catalog frames are kept by staging them again. */
    instance->rewinding = false;
    rewind.restaged_last = rewind.sequence - 1;
    for (ur_chunk *chunk = rewind.list; chunk != NULL; chunk = chunk->next) {
        for (size_t index = 0; index < chunk->pending_count; index++) {
            ur_rewind_frame(instance, io, &rewind, chunk, &chunk->pending[index]);
        }
    }
    for (size_t index = 0; index < instance->sync_count; index++) {
        if (instance->syncs[index].target_sequence >= rewind.sequence) {
            instance->syncs[index].target_sequence = rewind.restaged_last;
        }
    }
    if (instance->failed_status != KSTORE_OK) ur_io_complete_syncs(instance, io, KSTORE_ERR_IO);
    /* Free the dropped chunks (the re-staged frames were copied). */
    while (rewind.list != NULL) {
        ur_chunk *next = rewind.list->next;
        ur_chunk_release(instance, rewind.list);
        rewind.list = next;
    }
    pthread_mutex_unlock(&instance->wal_lock);

    ur_rewind_logs(&rewind);
    free(rewind.rollbacks);
    kstore_kit_error_set(&instance->errors,
                         "a write to the write-ahead log in %s failed: %s; the appends from it on were rolled back",
                         instance->directory.path, strerror(rewind.error));
}

/* Keeps a read of the eventfd in the ring, so a wake-up from another thread completes a wait. */
static void ur_io_arm_event(ur_instance *instance, ur_io_state *io) {
    if (io->event_armed) return;
    struct io_uring_sqe *sqe = ur_io_sqe(instance);
    if (sqe != NULL) {
        io_uring_prep_read(sqe, instance->event_fd, &io->event_value, sizeof(io->event_value), 0);
        io_uring_sqe_set_data(sqe, (void *)UR_TAG_EVENT);
        io->event_armed = true;
    }
}

/* Whether the WAL must be rolled back now: the head chunk failed, or the WAL failed with chunks
 * staged; either way once no write is in flight. Caller holds wal_lock. */
static bool ur_io_must_rewind(ur_instance *instance) {
    bool rewind = false;
    if (instance->chunk_head != NULL && instance->chunk_head->state == UR_CHUNK_DONE &&
        instance->chunk_head->error != 0) {
        instance->rewinding = true;
        rewind = instance->writes_in_flight == 0;
    } else if (instance->failed_status != KSTORE_OK && instance->chunk_head != NULL) {
        /* The WAL failed (fdatasync): fail every staged frame once the writes settle. */
        instance->rewinding = true;
        rewind = instance->writes_in_flight == 0;
    }
    return rewind;
}

/* A write's CQE. Caller holds wal_lock. */
static void ur_io_write_done(ur_instance *instance, ur_chunk *chunk, int32_t result) {
    instance->writes_in_flight--;
    if (result == -EINTR || result == -EAGAIN) {
        chunk->state = UR_CHUNK_CLOSED;
    } else if (result < 0) {
        chunk->error = -result;
        chunk->state = UR_CHUNK_DONE;
    } else if (result == 0) {
        chunk->error = ENOSPC;
        chunk->state = UR_CHUNK_DONE;
    } else {
        chunk->written += (size_t)result;
        /* A short write is resubmitted for the rest; a direct one from an aligned position (the
         * partial block is written again). */
        if (chunk->written < chunk->used && instance->direct) {
            chunk->written = chunk->written / instance->write_align * instance->write_align;
        }
        chunk->state = chunk->written < chunk->used ? UR_CHUNK_CLOSED : UR_CHUNK_DONE;
    }
}

/* Submits what is queued, waits for at least one completion, and handles every completion there is;
 * then delivers the chunks whose writes are done. */
static void ur_io_wait(ur_instance *instance, ur_io_state *io) {
    int submitted = io_uring_submit_and_wait(&instance->ring, 1);
    if (submitted < 0 && submitted != -EINTR && submitted != -EAGAIN && submitted != -EBUSY) {
        pthread_mutex_lock(&instance->wal_lock);
        ur_fail_wal(instance, "io_uring_submit_and_wait", -submitted);
        pthread_mutex_unlock(&instance->wal_lock);
    }
    pthread_mutex_lock(&instance->wal_lock);
    instance->io_waiting = false;
    struct io_uring_cqe *cqe;
    unsigned head;
    unsigned seen = 0;
    io_uring_for_each_cqe(&instance->ring, head, cqe) {
        seen++;
        uintptr_t data = (uintptr_t)io_uring_cqe_get_data(cqe);
        if (data == UR_TAG_EVENT) {
            io->event_armed = false;
        } else if ((data & UR_TAG_FSYNC_BIT) != 0) {
            ur_segment *segment = (ur_segment *)(data & ~UR_TAG_FSYNC_BIT);
            segment->fsyncs_in_flight--;
            if (cqe->res < 0) instance->fsync_error = -cqe->res;
            if (--instance->fsync_parts_left == 0) ur_io_fsync_done(instance, io);
        } else {
            ur_io_write_done(instance, (ur_chunk *)data, cqe->res);
        }
    }
    io_uring_cq_advance(&instance->ring, seen);
    ur_io_deliver(instance, io);
    pthread_mutex_unlock(&instance->wal_lock);
    ur_io_complete_chunks(instance, io);
}

void *ur_io_main(void *argument) {
    ur_instance *instance = argument;
    ur_io_state io;
    memset(&io, 0, sizeof(io));
    io.pass = 1; /* a log's update_pass starts at 0: no update of it in this pass yet */
    for (;;) {
        ur_io_arm_event(instance, &io);
        pthread_mutex_lock(&instance->wal_lock);
        ur_io_reclaim(instance, &io);
        if (ur_io_must_rewind(instance)) {
            pthread_mutex_unlock(&instance->wal_lock);
            ur_io_rewind(instance, &io);
            ur_io_flush(instance, &io);
            continue;
        }
        bool settled = ur_io_submit_writes(instance);
        ur_io_maybe_fsync(instance, &io);
        if (instance->failed_status != KSTORE_OK && instance->sync_count > 0) {
            ur_io_complete_syncs(instance, &io, KSTORE_ERR_IO);
        }
        bool idle = instance->chunk_head == NULL && !instance->fsync_in_flight && instance->sync_count == 0 &&
                    instance->writes_in_flight == 0;
        bool exit_now = instance->stopping && idle;
        /* Completions are delivered only after the next writes and fdatasync were submitted, so
         * the disk works while the host runs its callbacks (thousands per group commit). A sync's
         * callback still follows its appends': it comes from a later fdatasync completion. */
        bool deliver = io.callbacks.count > 0 || io.update_count > 0 || io.delivered_head != NULL || settled;
        if (!exit_now && !deliver) instance->io_waiting = true;
        pthread_mutex_unlock(&instance->wal_lock);
        if (deliver) {
            io_uring_submit(&instance->ring);
            ur_io_flush(instance, &io);
            continue;
        }
        if (exit_now) break;
        ur_io_wait(instance, &io);
    }
    pthread_mutex_lock(&instance->wal_lock);
    ur_io_reclaim(instance, &io);
    pthread_mutex_unlock(&instance->wal_lock);
    free(io.callbacks.items);
    free(io.updates);
    return NULL;
}
