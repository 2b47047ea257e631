/* The uring backend's figures: KSTORE_URING_CONTROL_STATS (its own struct, kstore_uring.h) and
 * kstore.h's KSTORE_CONTROL_STATS, which reports the same counters under kstore.h's names so that the
 * host exports them without knowing this backend. Both read one snapshot taken under the locks that
 * guard the figures; the visitor is called after they are released (it is the host's code).
 */
#include "uring_internal.h"

#include <string.h>

/* KSTORE_URING_CONTROL_STATS: the counters, and the gauges read now. */
kstore_status ur_control_stats(ur_instance *instance, kstore_uring_stats *stats) {
    if (stats == NULL || stats->struct_size < 8) {
        kstore_kit_error_set(&instance->errors, "control STATS: argument is NULL or its struct_size is too small");
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    uint64_t index_bytes = 0;
    pthread_mutex_lock(&instance->catalog_lock);
    for (size_t index = 0; index < instance->log_count; index++) {
        ur_log *log = instance->logs[index];
        pthread_rwlock_rdlock(&log->lock);
        for (size_t k = 0; k < log->part_count; k++) {
            index_bytes += log->parts[k].entry_capacity * sizeof(ur_entry);
        }
        pthread_rwlock_unlock(&log->lock);
    }
    pthread_mutex_unlock(&instance->catalog_lock);
    pthread_mutex_lock(&instance->wal_lock);
    kstore_uring_stats copy = instance->stats;
    copy.segments = instance->segment_count;
    copy.staging_bytes = instance->staging_bytes;
    copy.staging_bytes_max = instance->staging_bytes_max;
    copy.index_memory_bytes = index_bytes;
    copy.active_generation = instance->cursor_segment != NULL ? instance->cursor_segment->generation : 0;
    copy.direct = instance->direct ? 1 : 0;
    copy.write_align_bytes = instance->write_align;
    pthread_mutex_unlock(&instance->wal_lock);
    pthread_rwlock_rdlock(&instance->cache.lock);
    copy.read_cache_bytes = instance->cache.bytes;
    pthread_rwlock_unlock(&instance->cache.lock);
    copy.read_cache_hits = atomic_load(&instance->cache.hits);
    copy.read_cache_misses = atomic_load(&instance->cache.misses);
    size_t size = stats->struct_size < sizeof(copy) ? stats->struct_size : sizeof(copy);
    copy.struct_size = stats->struct_size;
    memcpy(stats, &copy, size);
    return KSTORE_OK;
}

static void ur_counter(const kstore_stats_visitor *visitor, const char *name, uint64_t value, const char *help) {
    kstore_stats_report(visitor, KSTORE_STAT_COUNTER, name, help, (double)value);
}

static void ur_gauge(const kstore_stats_visitor *visitor, const char *name, double value, const char *help) {
    kstore_stats_report(visitor, KSTORE_STAT_GAUGE, name, help, value);
}

/* The names are those the host's mapping of KSTORE_URING_CONTROL_STATS used before this op
 * existed, so dashboards did not change when it went. */
kstore_status ur_report_stats(ur_instance *instance, const kstore_stats_visitor *visitor) {
    if (!kstore_stats_visitor_is_valid(visitor)) {
        kstore_kit_error_set(&instance->errors, "control KSTORE_CONTROL_STATS: invalid visitor");
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    kstore_uring_stats stats = {.struct_size = sizeof(stats)};
    kstore_status status = ur_control_stats(instance, &stats);
    if (status != KSTORE_OK) return status;
    const kstore_stats_visitor *v = visitor;
    ur_counter(v, "appends_total", stats.appends, "Appends accepted");
    ur_counter(v, "sync_requests_total", stats.syncs, "Sync requests accepted (the host's and internal ones)");
    ur_counter(v, "syncs_total", stats.fsyncs, "fdatasync rounds issued (group commits)");
    /* Every WAL byte written is covered by the next fdatasync round, so the bytes written stand in
     * for the bytes synced (ahead by what was written since the last round). */
    ur_counter(v, "synced_bytes_total", stats.bytes_written, "WAL bytes made durable by fdatasync rounds");
    ur_counter(v, "writes_total", stats.writes, "WAL writes submitted");
    ur_counter(v, "written_bytes_total", stats.bytes_written, "WAL bytes written (frames and padding)");
    ur_gauge(v, "direct_writes", (double)stats.direct,
             "1 when the WAL is written with O_DIRECT (uring.direct), else 0");
    ur_counter(v, "pad_bytes_total", stats.pad_bytes,
               "Bytes of pad frames written (direct mode), included in written_bytes_total");
    ur_gauge(v, "writes_in_flight_max", (double)stats.writes_in_flight_max, "The most WAL writes in flight at once");
    ur_gauge(v, "segments", (double)stats.segments, "WAL segment files in use, the prepared spare included");
    ur_counter(v, "segments_created_total", stats.segments_created, "WAL segment files created");
    ur_counter(v, "segments_deleted_total", stats.segments_deleted, "WAL segment files deleted");
    ur_counter(v, "segments_recycled_total", stats.segments_recycled, "WAL segments made from a retired file");
    ur_gauge(v, "staging_bytes", (double)stats.staging_bytes, "Staging buffer bytes allocated now");
    ur_gauge(v, "staging_capacity_bytes", (double)stats.staging_bytes_max, "The staging bound (uring.staging.bytes)");
    ur_gauge(v, "index_memory_bytes", (double)stats.index_memory_bytes, "Memory of the active segment's fine index");
    ur_counter(v, "busy_rejections_total", stats.busy_rejections, "Appends answered BUSY because staging was full");
    ur_gauge(v, "recovery_seconds", (double)stats.recovery_ns / 1e9, "How long recovery took at open");
    ur_gauge(v, "recovery_scanned_bytes", (double)stats.recovery_bytes, "WAL bytes recovery scanned at open");
    ur_gauge(v, "recovery_frames", (double)stats.recovery_frames, "Frames recovery replayed at open");
    ur_gauge(v, "recovery_replay_bytes", (double)stats.recovery_replay_bytes, "Bytes of valid frames replayed at open");
    ur_gauge(v, "recovery_replay_seconds", (double)stats.recovery_replay_ns / 1e9,
             "Time recovery spent replaying them");
    return KSTORE_OK;
}
