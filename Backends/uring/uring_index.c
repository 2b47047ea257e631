/* A log's index (Kafka's OffsetIndex and TimeIndex in one): one ur_part per WAL segment the log
 * has live entries in (offset range, bytes, count, max timestamp), and the fine index of 40-byte
 * ur_entry records — in memory for the segment being written, in wal-<generation>.idx once the
 * segment is sealed (docs/storage-formats.md, "uring backend"). Index files are derived data: recovery
 * rebuilds them at every open. Callers hold log->lock (shared for reads, exclusive for changes).
 * Invariants and lock order: uring_internal.h. */
#include "uring_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define UR_INDEX_MAGIC        0x31584449464A4Full /* the bytes "OJFIDX1\0" */
#define UR_INDEX_HEADER_BYTES 64u

/* Copies entries [index, index + count) of a part into out; false (errno set) if the index file
 * cannot be read. */
bool ur_part_entries(const ur_part *part, size_t index, size_t count, ur_entry *out) {
    if (count == 0) return true;
    if (part->entries != NULL) {
        memcpy(out, part->entries + index, count * sizeof(ur_entry));
        return true;
    }
    size_t bytes = count * sizeof(ur_entry);
    ssize_t got = ur_pread_all(part->segment->idx_fd, out, bytes, part->idx_position + index * sizeof(ur_entry));
    if (got < 0) return false;
    if ((size_t)got != bytes) {
        errno = EIO;
        return false;
    }
    return true;
}

/* Index of the last entry in [begin, end) whose first_offset <= offset (begin if none). */
bool ur_part_find(const ur_part *part, int64_t offset, size_t *found) {
    size_t low = part->begin, high = part->end; /* answer in [low, high) */
    while (high - low > 1) {
        size_t middle = low + (high - low) / 2;
        ur_entry entry;
        if (!ur_part_entries(part, middle, 1, &entry)) return false;
        if (entry.first_offset <= offset) {
            low = middle;
        } else {
            high = middle;
        }
    }
    *found = low;
    return true;
}

/* Index of the first entry in [begin, end) whose last_offset >= offset (end if none). */
static bool ur_part_first_ending_at_or_after(const ur_part *part, int64_t offset, size_t *found) {
    size_t low = part->begin, high = part->end;
    while (low < high) {
        size_t middle = low + (high - low) / 2;
        ur_entry entry;
        if (!ur_part_entries(part, middle, 1, &entry)) return false;
        if (entry.last_offset < offset) {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    *found = low;
    return true;
}

/* Index of the first live entry whose max_timestamp >= timestamp (end if none); false (errno set)
 * if the index file cannot be read. */
bool ur_part_find_timestamp(const ur_part *part, int64_t timestamp, size_t *found) {
    ur_entry entry;
    /* The running maximum is taken from the part's array index 0; it can be bisected over
     * [begin, end) when nothing before begin reached the timestamp, else scan (one segment). */
    bool bisect = part->begin == 0;
    if (!bisect) {
        if (!ur_part_entries(part, part->begin - 1, 1, &entry)) return false;
        bisect = entry.running_max_timestamp < timestamp;
    }
    if (bisect) {
        size_t low = part->begin, high = part->end;
        while (low < high) {
            size_t middle = low + (high - low) / 2;
            if (!ur_part_entries(part, middle, 1, &entry)) return false;
            if (entry.running_max_timestamp < timestamp) {
                low = middle + 1;
            } else {
                high = middle;
            }
        }
        *found = low;
        return true;
    }
    *found = part->end;
    for (size_t index = part->begin; index < part->end; index++) {
        if (!ur_part_entries(part, index, 1, &entry)) return false;
        if (entry.max_timestamp >= timestamp) {
            *found = index;
            return true;
        }
    }
    return true;
}

/* Recomputes the cached fields of a part from its live entries (O(entries of one segment)). */
static bool ur_part_recompute(ur_part *part) {
    part->byte_count = 0;
    part->max_timestamp = -1;
    part->untimed_count = 0;
    ur_entry block[256];
    for (size_t index = part->begin; index < part->end;) {
        size_t count = part->end - index < 256 ? part->end - index : 256;
        if (!ur_part_entries(part, index, count, block)) return false;
        for (size_t k = 0; k < count; k++) {
            part->byte_count += block[k].payload_bytes;
            part->max_timestamp = ur_max64(part->max_timestamp, block[k].max_timestamp);
            if (block[k].max_timestamp < 0) part->untimed_count++;
            if (index + k == part->begin) part->first_offset = block[k].first_offset;
            if (index + k + 1 == part->end) part->last_offset = block[k].last_offset;
        }
        index += count;
    }
    return true;
}

void ur_log_remove_parts(ur_log *log, size_t from, size_t to) {
    for (size_t index = from; index < to; index++) free(log->parts[index].entries);
    /* memmove with a NULL array is undefined even for zero bytes (UBSan reports it). */
    if (to < log->part_count) memmove(log->parts + from, log->parts + to, (log->part_count - to) * sizeof(ur_part));
    log->part_count -= to - from;
}

/* Makes room for one more entry of `segment` at the end of the log's index. */
bool ur_log_reserve_entry(ur_log *log, ur_segment *segment) {
    ur_part *last = log->part_count > 0 ? &log->parts[log->part_count - 1] : NULL;
    if (last != NULL && last->segment == segment) {
        /* The part of the segment being written always keeps its entries in memory. */
        return ur_grow((void **)&last->entries, &last->entry_capacity, last->end + 1, sizeof(ur_entry), 16);
    }
    if (!ur_grow((void **)&log->parts, &log->part_capacity, log->part_count + 1, sizeof(ur_part), 4)) return false;
    ur_part *part = &log->parts[log->part_count];
    memset(part, 0, sizeof(*part));
    part->segment = segment;
    part->max_timestamp = -1;
    part->entries = malloc(16 * sizeof(ur_entry));
    if (part->entries == NULL) return false;
    part->entry_capacity = 16;
    log->part_count++;
    return true;
}

/* Adds an entry after ur_log_reserve_entry succeeded for its segment. */
void ur_log_add_entry(ur_log *log, ur_segment *segment, int64_t first_offset, int64_t last_offset,
                      int64_t max_timestamp, uint32_t position, uint32_t payload_bytes) {
    ur_part *part = &log->parts[log->part_count - 1];
    (void)segment;
    int64_t running = part->end > 0 ? part->entries[part->end - 1].running_max_timestamp : -1;
    part->entries[part->end] = (ur_entry){
        .first_offset = first_offset,
        .last_offset = last_offset,
        .max_timestamp = max_timestamp,
        .running_max_timestamp = ur_max64(running, max_timestamp),
        .position = position,
        .payload_bytes = payload_bytes,
    };
    if (part->end == part->begin) part->first_offset = first_offset;
    part->end++;
    part->last_offset = last_offset;
    part->byte_count += payload_bytes;
    part->max_timestamp = ur_max64(part->max_timestamp, max_timestamp);
    if (max_timestamp < 0) part->untimed_count++;
}

/* Drops a part whose reservation was not used (an append that failed after reserving). */
void ur_log_unreserve(ur_log *log) {
    if (log->part_count > 0 && log->parts[log->part_count - 1].end == log->parts[log->part_count - 1].begin) {
        ur_log_remove_parts(log, log->part_count - 1, log->part_count);
    }
}

/* Removes every entry whose last_offset >= offset (for an entry boundary that is every entry from
 * it on; for offset == start also the entry straddling the start). */
bool ur_log_cut(ur_log *log, int64_t offset) {
    while (log->part_count > 0) {
        ur_part *part = &log->parts[log->part_count - 1];
        if (part->first_offset >= offset || part->begin == part->end) {
            ur_log_remove_parts(log, log->part_count - 1, log->part_count);
            continue;
        }
        if (part->last_offset < offset) break;
        size_t keep = 0;
        if (!ur_part_first_ending_at_or_after(part, offset, &keep)) return false;
        part->end = keep;
        if (part->end == part->begin) {
            ur_log_remove_parts(log, log->part_count - 1, log->part_count);
            continue;
        }
        if (!ur_part_recompute(part)) return false;
        break;
    }
    return true;
}

/* Moves the start to offset (>= start): drops entries lying wholly below it. */
bool ur_log_advance_start(ur_log *log, int64_t offset) {
    if (offset <= log->start_offset) return true;
    log->start_offset = offset;
    size_t drop = 0;
    while (drop < log->part_count && log->parts[drop].last_offset < offset) drop++;
    ur_log_remove_parts(log, 0, drop);
    if (log->part_count > 0 && log->parts[0].first_offset < offset) {
        ur_part *part = &log->parts[0];
        size_t keep = 0;
        if (!ur_part_first_ending_at_or_after(part, offset, &keep)) return false;
        if (keep != part->begin) {
            part->begin = keep;
            if (!ur_part_recompute(part)) return false;
        }
    }
    return true;
}

void ur_log_totals(const ur_log *log, uint64_t *byte_count, uint64_t *entry_count, int64_t *max_timestamp) {
    uint64_t bytes = 0, entries = 0;
    int64_t maximum = -1;
    for (size_t index = 0; index < log->part_count; index++) {
        bytes += log->parts[index].byte_count;
        entries += log->parts[index].end - log->parts[index].begin;
        maximum = ur_max64(maximum, log->parts[index].max_timestamp);
    }
    *byte_count = bytes;
    *entry_count = entries;
    *max_timestamp = maximum;
}

/* Index of the part holding offset: the last part whose first_offset <= offset. */
size_t ur_log_find_part(const ur_log *log, int64_t offset) {
    size_t low = 0, high = log->part_count;
    while (high - low > 1) {
        size_t middle = low + (high - low) / 2;
        if (log->parts[middle].first_offset <= offset) {
            low = middle;
        } else {
            high = middle;
        }
    }
    return low;
}

/* Writes the fine index of every log's part in `segment` to wal-<generation>.idx and frees the
 * in-memory entries. The caller holds catalog_lock (or runs recovery). On failure the entries stay
 * in memory. */
bool ur_write_index_of(ur_instance *instance, ur_segment *segment, ur_log **logs, size_t log_count) {
    char name[64];
    ur_segment_name(name, sizeof(name), segment->generation, "idx");
    /* Pass 1: gather the entries. */
    size_t total = 0;
    for (size_t index = 0; index < log_count; index++) {
        ur_log *log = logs[index];
        pthread_rwlock_rdlock(&log->lock);
        for (size_t k = 0; k < log->part_count; k++) {
            if (log->parts[k].segment == segment && log->parts[k].entries != NULL) total += log->parts[k].end;
        }
        pthread_rwlock_unlock(&log->lock);
    }
    size_t bytes = UR_INDEX_HEADER_BYTES + total * sizeof(ur_entry);
    uint8_t *buffer = calloc(1, bytes);
    uint64_t *positions = calloc(log_count + 1, sizeof(uint64_t));
    bool ok = buffer != NULL && positions != NULL;
    size_t used = UR_INDEX_HEADER_BYTES;
    for (size_t index = 0; ok && index < log_count; index++) {
        ur_log *log = logs[index];
        pthread_rwlock_rdlock(&log->lock);
        positions[index] = UINT64_MAX;
        for (size_t k = 0; k < log->part_count; k++) {
            ur_part *part = &log->parts[k];
            if (part->segment != segment || part->entries == NULL) continue;
            size_t count = part->end;
            if (used + count * sizeof(ur_entry) > bytes) count = (bytes - used) / sizeof(ur_entry);
            positions[index] = used;
            memcpy(buffer + used, part->entries, count * sizeof(ur_entry));
            used += count * sizeof(ur_entry);
        }
        pthread_rwlock_unlock(&log->lock);
    }
    int fd = -1;
    if (ok) {
        uint64_t header[4] = {UR_INDEX_MAGIC, segment->generation, total, 0};
        memcpy(buffer, header, sizeof(header));
        do {
            fd = openat(instance->directory.root_fd, name, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        } while (fd < 0 && errno == EINTR);
        /* Derived data, rebuilt by recovery at every open: no fsync needed. */
        ok = fd >= 0 && kstore_kit_pwrite_all(&instance->io, fd, buffer, used, 0) == 0;
    }
    if (ok) {
        /* Published before any part switches to the file: a reader that finds a part's entries
         * gone (under the log's read lock, after the write lock below) reads idx_fd, which must
         * be the file by then, not -1. */
        segment->idx_fd = fd;
        /* Pass 2: switch the parts to the file. Sealed segments get no new entries, and
         * truncation or a new start only shrink [begin, end), so the copied positions hold. */
        for (size_t index = 0; index < log_count; index++) {
            if (positions[index] == UINT64_MAX) continue;
            ur_log *log = logs[index];
            pthread_rwlock_wrlock(&log->lock);
            for (size_t k = 0; k < log->part_count; k++) {
                ur_part *part = &log->parts[k];
                if (part->segment != segment || part->entries == NULL) continue;
                part->idx_position = positions[index];
                free(part->entries);
                part->entries = NULL;
                part->entry_capacity = 0;
            }
            pthread_rwlock_unlock(&log->lock);
        }
    } else if (fd >= 0) {
        close(fd);
    }
    free(buffer);
    free(positions);
    return ok;
}
