/* The file backend's answer to KSTORE_CONTROL_STATS (kstore.h): what the instance counted since it
 * was opened, and the descriptor cache's figures read now.
 *
 * Counting is relaxed atomic adds on paths that do the work anyway (an append's pwritev, a sync's
 * fdatasync), so the produce path pays an uncontended add per call and takes no extra lock. The
 * names are kstore.h's shared ones where they mean the same (appends_total, syncs_total,
 * synced_bytes_total, open_descriptors) and the uring backend's otherwise (sync_requests_total,
 * written_bytes_total), so one dashboard reads both.
 *
 * synced_bytes_total follows the descriptor cache's rule for `written`/`synced` (file_descriptor_cache.c,
 * point 1): a sync samples the log's written bytes before its fdatasync and credits only those,
 * so a write still in flight during the sync is credited by a later one, never by this one.
 */
#include "file_internal.h"

void fl_stats_note_synced(fl_log *log, uint64_t written) {
    uint64_t synced = atomic_load(&log->synced_bytes);
    /* Concurrent syncs of one log (kstore.h allows them): each credits only what it raised. */
    while (synced < written && !atomic_compare_exchange_weak(&log->synced_bytes, &synced, written)) {
    }
    if (synced < written) fl_count(&log->instance->stats.synced_bytes, written - synced);
}

static double fl_figure(_Atomic uint64_t *figure) { return (double)atomic_load_explicit(figure, memory_order_relaxed); }

static void fl_report_descriptors(fl_instance *instance, const kstore_stats_visitor *visitor) {
    kstore_file_descriptor_info info = {.struct_size = sizeof(info)};
    fl_cache_info(&instance->cache, &info);
    kstore_stats_report(visitor, KSTORE_STAT_GAUGE, "open_descriptors",
                        "Segment and index file descriptors the descriptor cache holds open now",
                        (double)info.open_count);
    kstore_stats_report(visitor, KSTORE_STAT_GAUGE, "open_descriptors_limit",
                        "The descriptor cache's bound (file.open.files.max)", (double)info.limit);
    kstore_stats_report(visitor, KSTORE_STAT_GAUGE, "open_descriptors_peak", "The most descriptors open at once",
                        (double)info.peak_open_count);
    kstore_stats_report(visitor, KSTORE_STAT_COUNTER, "descriptor_opens_total",
                        "Files the descriptor cache opened (misses, reopens after an eviction included)",
                        (double)info.open_calls);
    kstore_stats_report(visitor, KSTORE_STAT_COUNTER, "descriptor_hits_total",
                        "Leases answered from a descriptor that was open", (double)info.hits);
    kstore_stats_report(visitor, KSTORE_STAT_COUNTER, "descriptor_evictions_total",
                        "Idle descriptors closed to stay within the bound", (double)info.evictions);
    kstore_stats_report(visitor, KSTORE_STAT_COUNTER, "descriptor_eviction_syncs_total",
                        "Evictions that needed an fdatasync first", (double)info.eviction_syncs);
    kstore_stats_report(visitor, KSTORE_STAT_COUNTER, "descriptor_exhausted_retries_total",
                        "Opens retried after EMFILE or ENFILE", (double)info.exhausted_retries);
}

kstore_status fl_report_stats(fl_instance *instance, const kstore_stats_visitor *visitor) {
    if (!kstore_stats_visitor_is_valid(visitor)) {
        kstore_kit_error_set(&instance->errors, "control KSTORE_CONTROL_STATS: invalid visitor");
        return KSTORE_ERR_INVALID_ARGUMENT;
    }
    fl_stats *stats = &instance->stats;
    kstore_stats_report(visitor, KSTORE_STAT_COUNTER, "appends_total", "Appends accepted", fl_figure(&stats->appends));
    kstore_stats_report(visitor, KSTORE_STAT_COUNTER, "append_bytes_total", "Entry bytes appended",
                        fl_figure(&stats->append_bytes));
    kstore_stats_report(visitor, KSTORE_STAT_COUNTER, "written_bytes_total",
                        "Segment bytes written (frame headers and entries)", fl_figure(&stats->written_bytes));
    kstore_stats_report(visitor, KSTORE_STAT_COUNTER, "sync_requests_total", "Sync requests accepted",
                        fl_figure(&stats->sync_requests));
    kstore_stats_report(visitor, KSTORE_STAT_COUNTER, "syncs_total",
                        "fdatasync calls on segment files (syncs, rolls, closes and evictions)",
                        fl_figure(&stats->syncs));
    kstore_stats_report(visitor, KSTORE_STAT_COUNTER, "synced_bytes_total",
                        "Segment bytes made durable by completed syncs", fl_figure(&stats->synced_bytes));
    kstore_stats_report(visitor, KSTORE_STAT_COUNTER, "recovered_logs_total", "Logs opened (and recovered)",
                        fl_figure(&stats->recovered_logs));
    kstore_stats_report(visitor, KSTORE_STAT_COUNTER, "recovery_seconds_total",
                        "Time spent recovering logs as they were opened", fl_figure(&stats->recovery_ns) / 1e9);
    fl_report_descriptors(instance, visitor);
    return KSTORE_OK;
}
