/* Finding frames (Kafka's OffsetIndex.lookup and TimeIndex.lookup, then a bounded scan) and reading
 * entries. Every path verifies what it reads: frame headers are decoded and checked, payloads are
 * checked against their CRC on the way out (STYLE 11), and an index entry that points somewhere
 * wrong makes the lookup fall back to a scan and marks the log's indexes for a rebuild.
 *
 * Callers hold the log's `lock` (shared is enough): the segment array and the published sizes do
 * not change under them.
 */
#include "file_internal.h"

#include "fjord_crc32c.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* Index of the segment that holds `offset`: the last whose base is <= offset. Caller holds `lock`. */
size_t fl_find_segment(const fl_log *log, int64_t offset) {
    size_t low = 0, high = log->segment_count;
    while (high - low > 1) {
        size_t middle = low + (high - low) / 2;
        if (log->segments[middle].base_offset <= offset) {
            low = middle;
        } else {
            high = middle;
        }
    }
    return low;
}

/* CORRUPT with a message naming the segment file and the byte position. */
__attribute__((format(printf, 4, 5))) kstore_status fl_frame_error(fl_log *log, int64_t base_offset, uint64_t position,
                                                                   const char *format, ...) {
    char what[512];
    va_list arguments;
    va_start(arguments, format);
    if (vsnprintf(what, sizeof(what), format, arguments) < 0) what[0] = '\0';
    va_end(arguments);
    kstore_kit_error_set(&log->instance->errors, "log '%s': %s/%020lld.log position %llu: %s", log->name, log->path,
                         (long long)base_offset, (unsigned long long)position, what);
    return KSTORE_ERR_CORRUPT;
}

/* Reads and decodes the frame header at `position` of a segment. */
kstore_status fl_read_header(fl_log *log, const fl_segment *segment, fl_reader *reader, uint64_t position,
                             fl_frame *frame) {
    const uint8_t *bytes = fl_reader_get(reader, position, FL_FRAME_HEADER_BYTES);
    if (bytes == NULL) {
        if (reader->error != 0) {
            return kstore_kit_error_errno(&log->instance->errors, reader->error,
                                          "log '%s': reading %s/%020lld.log at position %llu failed", log->name,
                                          log->path, (long long)segment->base_offset, (unsigned long long)position);
        }
        return fl_frame_error(log, segment->base_offset, position, "frame header extends past the end of the data");
    }
    if (!fl_frame_decode(bytes, frame)) {
        return fl_frame_error(log, segment->base_offset, position, "bad frame header");
    }
    frame->header_crc = fjord_crc32c(0, bytes + 8, FL_FRAME_HEADER_BYTES - 8);
    if (position + FL_FRAME_HEADER_BYTES + frame->payload_bytes > reader->limit) {
        return fl_frame_error(log, segment->base_offset, position, "frame of %u bytes extends past the end of the data",
                              frame->payload_bytes);
    }
    return KSTORE_OK;
}

/* Finds the frame of `segment` containing `offset` (base <= offset < end): through the offset index,
 * then a scan of at most one index interval. A damaged index entry falls back to a scan from the
 * segment's start and marks the log's indexes for a rebuild. Reader: over the segment's log file. */
kstore_status fl_locate(fl_log *log, const fl_segment *segment, fl_files *files, fl_reader *reader, int64_t offset,
                        fl_place *place) {
    uint64_t position = 0, ordinal = 0;
    int64_t expected = segment->base_offset;
    bool from_index = false;
    if (offset > segment->base_offset && segment->index_count > 0) {
        int fd = fl_files_index(log, files);
        if (fd >= 0) {
            uint64_t low = 0, high = segment->index_count;
            bool damaged = false;
            fl_index_record record;
            while (low < high) {
                uint64_t middle = low + (high - low) / 2;
                if (!fl_index_read(log, fd, middle, &record)) {
                    damaged = true;
                    break;
                }
                if (segment->base_offset + (int64_t)record.relative_offset <= offset) {
                    low = middle + 1;
                } else {
                    high = middle;
                }
            }
            if (!damaged && low > 0) {
                if (fl_index_read(log, fd, low - 1, &record) && record.position < segment->size_bytes &&
                    record.ordinal < segment->entry_count) {
                    position = record.position;
                    ordinal = record.ordinal;
                    expected = segment->base_offset + (int64_t)record.relative_offset;
                    from_index = true;
                } else {
                    damaged = true;
                }
            }
            if (damaged) atomic_store(&log->index_suspect, 1);
        }
    }
    for (;;) {
        fl_frame frame;
        kstore_status status = KSTORE_OK;
        bool consistent = position < segment->size_bytes;
        if (consistent) {
            status = fl_read_header(log, segment, reader, position, &frame);
            consistent = status == KSTORE_OK && frame.first_offset == expected;
        }
        if (!consistent) {
            if (from_index) {
                /* The index pointed somewhere wrong: distrust it and scan from the start. */
                atomic_store(&log->index_suspect, 1);
                position = 0;
                ordinal = 0;
                expected = segment->base_offset;
                from_index = false;
                continue;
            }
            if (status != KSTORE_OK) return status;
            if (position >= segment->size_bytes) {
                return fl_frame_error(log, segment->base_offset, position, "offset %lld is missing from the segment",
                                      (long long)offset);
            }
            return fl_frame_error(log, segment->base_offset, position,
                                  "frame holds offset %lld where %lld was expected", (long long)frame.first_offset,
                                  (long long)expected);
        }
        if (frame.last_offset >= offset) {
            place->position = position;
            place->ordinal = ordinal;
            place->frame = frame;
            return KSTORE_OK;
        }
        position += FL_FRAME_HEADER_BYTES + frame.payload_bytes;
        ordinal++;
        expected = frame.last_offset + 1;
    }
}

/* Scans frame headers in [position, end_position) of `segment` (see fl_search). */
static kstore_status fl_scan_headers(fl_log *log, const fl_segment *segment, fl_reader *reader, uint64_t position,
                                     uint64_t end_position, fl_search *search) {
    while (position < end_position) {
        fl_frame frame;
        kstore_status status = fl_read_header(log, segment, reader, position, &frame);
        if (status != KSTORE_OK) return status;
        search->max_timestamp = fl_max64(search->max_timestamp, frame.max_timestamp);
        if (search->searching && frame.max_timestamp >= search->threshold) {
            search->found = true;
            search->frame = frame;
            return KSTORE_OK;
        }
        position += FL_FRAME_HEADER_BYTES + frame.payload_bytes;
    }
    return KSTORE_OK;
}

/* Offset index entry k through the index reader, if it decodes and points inside the segment. */
static bool fl_record_at(fl_reader *index_reader, const fl_segment *segment, uint64_t k, fl_index_record *record) {
    const uint8_t *bytes =
        fl_reader_get(index_reader, FL_INDEX_HEADER_BYTES + k * FL_INDEX_ENTRY_BYTES, FL_INDEX_ENTRY_BYTES);
    return bytes != NULL && fl_index_decode(bytes, record) && record->position < segment->size_bytes;
}

/* fl_walk through the offset index: the partial block from `position`, then whole blocks by their
 * recorded maxima, then (searching) the one block whose maximum reaches the threshold. *damaged:
 * an entry did not add up (the caller scans instead). */
static kstore_status fl_walk_blocks(fl_log *log, const fl_segment *segment, fl_reader *index_reader, fl_reader *reader,
                                    uint64_t position, fl_search *search, bool *damaged) {
    uint64_t count = segment->index_count;
    fl_index_record record;
    /* k: the first marker after `position`. */
    uint64_t low = 0, high = count;
    while (low < high) {
        uint64_t middle = low + (high - low) / 2;
        if (!fl_record_at(index_reader, segment, middle, &record)) {
            *damaged = true;
            return KSTORE_OK;
        }
        if (record.position <= position) {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    uint64_t k = low;
    fl_index_record previous;
    if (k < count && !fl_record_at(index_reader, segment, k, &previous)) {
        *damaged = true;
        return KSTORE_OK;
    }
    uint64_t partial_end = k < count ? previous.position : segment->size_bytes;
    kstore_status status = fl_scan_headers(log, segment, reader, position, partial_end, search);
    for (uint64_t j = k + 1; status == KSTORE_OK && !search->found && j < count; j++) {
        if (!fl_record_at(index_reader, segment, j, &record) || record.position <= previous.position) {
            *damaged = true;
            return KSTORE_OK;
        }
        search->max_timestamp = fl_max64(search->max_timestamp, record.block_max_timestamp);
        if (search->searching && record.block_max_timestamp >= search->threshold) {
            fl_search block = {.searching = true, .threshold = search->threshold, .max_timestamp = -1};
            status = fl_scan_headers(log, segment, reader, previous.position, record.position, &block);
            search->found = block.found;
            search->frame = block.frame;
            if (status == KSTORE_OK && !block.found) *damaged = true; /* the block maximum lied */
            return status;
        }
        previous = record;
    }
    if (status == KSTORE_OK && !search->found && k < count) {
        status = fl_scan_headers(log, segment, reader, previous.position, segment->size_bytes, search);
    }
    return status;
}

/* From the frame at `position` to the segment's end: the largest max_timestamp, and (when
 * searching) the first frame whose max_timestamp >= threshold. Whole index blocks are skipped by
 * their recorded maxima, so only the partial first block and one more block are scanned. */
kstore_status fl_walk(fl_log *log, const fl_segment *segment, fl_files *files, fl_reader *reader, uint64_t position,
                      fl_search *search) {
    search->max_timestamp = -1;
    search->found = false;
    uint64_t count = segment->index_count;
    int fd = count > 0 ? fl_files_index(log, files) : -1;
    if (fd < 0) return fl_scan_headers(log, segment, reader, position, segment->size_bytes, search);
    fl_reader index_reader;
    if (!fl_reader_init(&index_reader, log->instance, FL_READ_WINDOW_BYTES)) {
        kstore_kit_error_set(&log->instance->errors, "log '%s': out of memory", log->name);
        return KSTORE_ERR_NO_MEMORY;
    }
    fl_reader_reset(&index_reader, fd, FL_INDEX_HEADER_BYTES + count * FL_INDEX_ENTRY_BYTES);
    bool damaged = false;
    kstore_status status = fl_walk_blocks(log, segment, &index_reader, reader, position, search, &damaged);
    fl_reader_free(&index_reader);
    if (damaged && status == KSTORE_OK) {
        atomic_store(&log->index_suspect, 1);
        search->max_timestamp = -1;
        search->found = false;
        return fl_scan_headers(log, segment, reader, position, segment->size_bytes, search);
    }
    return status;
}

/* The first frame of `segment` whose max_timestamp >= timestamp through the time index, or a walk
 * of the offset index blocks when the time index is missing or does not add up (the segment's max
 * timestamp must reach the timestamp). */
static kstore_status fl_time_lookup(fl_log *log, const fl_segment *segment, fl_files *files, fl_reader *reader,
                                    int64_t timestamp, fl_search *search) {
    *search = (fl_search){.searching = true, .threshold = timestamp, .max_timestamp = -1};
    uint64_t count = segment->time_count;
    int fd = count > 0 ? fl_files_time(log, files) : -1;
    if (fd >= 0) {
        uint64_t low = 0, high = count;
        bool damaged = false;
        fl_time_record record, next;
        while (low < high) {
            uint64_t middle = low + (high - low) / 2;
            if (!fl_time_read(log, fd, middle, &record)) {
                damaged = true;
                break;
            }
            if (record.timestamp < timestamp) {
                low = middle + 1;
            } else {
                high = middle;
            }
        }
        /* Entry `low` (if any) is the first recorded rise to >= timestamp; the answer lies after entry
         * low - 1 and at or before entry low, within one index interval of entry low - 1. */
        bool has_next = !damaged && low < count && fl_time_read(log, fd, low, &next) &&
                        next.position < segment->size_bytes && next.timestamp >= timestamp;
        if (!damaged && low < count && !has_next) damaged = true;
        if (!damaged && low > 0) {
            if (!fl_time_read(log, fd, low - 1, &record) || record.position >= segment->size_bytes) {
                damaged = true;
            } else {
                uint64_t bound = has_next ? next.position : segment->size_bytes;
                kstore_status status = fl_scan_headers(log, segment, reader, record.position, bound, search);
                if (status != KSTORE_OK) return status;
            }
        }
        if (!damaged && !search->found && has_next) {
            kstore_status status = fl_read_header(log, segment, reader, next.position, &search->frame);
            if (status != KSTORE_OK) return status;
            if (search->frame.first_offset == segment->base_offset + (int64_t)next.relative_offset &&
                search->frame.max_timestamp >= timestamp) {
                search->found = true;
            } else {
                damaged = true;
            }
        }
        if (search->found) return KSTORE_OK;
        atomic_store(&log->index_suspect, 1);
    }
    /* No usable time index: walk the offset index blocks from the segment's start. */
    return fl_walk(log, segment, files, reader, 0, search);
}

/* find_offset_by_time for a timestamp >= 0 that some entry reaches: the first entry (from the start)
 * whose max_timestamp >= timestamp, reported from the start if it begins below it; -1 if none. */
kstore_status fl_find_by_time(fl_log *log, int64_t timestamp, int64_t *offset) {
    fl_reader reader;
    if (!fl_reader_init(&reader, log->instance, FL_READ_WINDOW_BYTES)) {
        kstore_kit_error_set(&log->instance->errors, "find_offset_by_time of log '%s': out of memory", log->name);
        return KSTORE_ERR_NO_MEMORY;
    }
    kstore_status status = KSTORE_OK;
    *offset = -1;
    for (size_t index = 0; index < log->segment_count; index++) {
        const fl_segment *segment = &log->segments[index];
        int64_t live_max = index == 0 ? log->first_live_max_timestamp : segment->max_timestamp;
        if (live_max < timestamp) continue;
        fl_files files;
        status = fl_files_open(log, segment, &files);
        if (status != KSTORE_OK) break;
        fl_reader_reset(&reader, files.fds.log_fd, segment->size_bytes);
        fl_search search;
        status = fl_time_lookup(log, segment, &files, &reader, timestamp, &search);
        if (status == KSTORE_OK && search.found && search.frame.last_offset < log->start_offset) {
            /* The first such entry lies below the start: search from the entry holding the start. */
            fl_place place;
            status = fl_locate(log, segment, &files, &reader, log->start_offset, &place);
            if (status == KSTORE_OK) {
                search = (fl_search){.searching = true, .threshold = timestamp, .max_timestamp = -1};
                status = fl_walk(log, segment, &files, &reader, place.position, &search);
            }
        }
        fl_files_close(log, &files);
        if (status == KSTORE_OK && search.found) *offset = fl_max64(search.frame.first_offset, log->start_offset);
        if (status != KSTORE_OK || search.found) break;
    }
    fl_reader_free(&reader);
    return status;
}

/* Recomputes the entries of segments[0] lying wholly below the start, their bytes, and the largest
 * timestamp of the rest (kstore_log_state counts only entries in [start, end)). */
/* Recomputes the entries of segments[0] lying wholly below the start, their bytes, and the largest
 * timestamp of the rest (kstore_log_state counts only entries in [start, end)). */
kstore_status fl_compute_dead(fl_log *log) {
    fl_segment *segment = &log->segments[0];
    log->dead_count = 0;
    log->dead_bytes = 0;
    log->first_live_max_timestamp = segment->max_timestamp;
    if (log->start_offset <= segment->base_offset || segment->entry_count == 0) return KSTORE_OK;
    if (log->start_offset >= segment->end_offset) {
        log->dead_count = segment->entry_count;
        log->dead_bytes = fl_payload_bytes(segment);
        log->first_live_max_timestamp = -1;
        return KSTORE_OK;
    }
    fl_files files;
    kstore_status status = fl_files_open(log, segment, &files);
    if (status != KSTORE_OK) return status;
    fl_reader reader;
    if (!fl_reader_init(&reader, log->instance, FL_READ_WINDOW_BYTES)) {
        fl_files_close(log, &files);
        kstore_kit_error_set(&log->instance->errors, "log '%s': out of memory", log->name);
        return KSTORE_ERR_NO_MEMORY;
    }
    fl_reader_reset(&reader, files.fds.log_fd, segment->size_bytes);
    fl_place place;
    status = fl_locate(log, segment, &files, &reader, log->start_offset, &place);
    if (status == KSTORE_OK) {
        log->dead_count = place.ordinal;
        log->dead_bytes = place.position - place.ordinal * FL_FRAME_HEADER_BYTES;
        fl_search search = {.searching = false, .max_timestamp = -1};
        status = fl_walk(log, segment, &files, &reader, place.position, &search);
        log->first_live_max_timestamp = search.max_timestamp;
    }
    fl_reader_free(&reader);
    fl_files_close(log, &files);
    return status;
}

/* A read's place in the log: the segment, its files, the window over its .log, the next frame. */
typedef struct fl_cursor {
    size_t segment_index;
    const fl_segment *segment;
    fl_files files;
    fl_reader reader;
    uint64_t position;
    int64_t expected;
} fl_cursor;

/* Moves the cursor to the first frame of the next segment; *ended when there is none to read. */
static kstore_status fl_cursor_next_segment(fl_log *log, fl_cursor *cursor, bool *ended) {
    fl_files_close(log, &cursor->files);
    *ended = true;
    cursor->segment_index++;
    if (cursor->segment_index == log->segment_count) return KSTORE_OK;
    cursor->segment = &log->segments[cursor->segment_index];
    if (cursor->segment->entry_count == 0) return KSTORE_OK;
    if (cursor->segment->base_offset != cursor->expected) {
        return fl_frame_error(log, cursor->segment->base_offset, 0, "segment begins at offset %lld, not %lld",
                              (long long)cursor->segment->base_offset, (long long)cursor->expected);
    }
    kstore_status status = fl_files_open(log, cursor->segment, &cursor->files);
    if (status != KSTORE_OK) return status;
    fl_reader_reset(&cursor->reader, cursor->files.fds.log_fd, cursor->segment->size_bytes);
    cursor->position = 0;
    *ended = false;
    return KSTORE_OK;
}

/* Copies the frame at the cursor after the entries already in `values`, if it is to be read and
 * fits; *stop when the read ends before it. */
static kstore_status fl_copy_frame(fl_log *log, fl_cursor *cursor, int64_t end_offset_limit, uint8_t *destination,
                                   uint64_t capacity, kstore_read_result *values, bool *stop) {
    const fl_segment *segment = cursor->segment;
    uint64_t position = cursor->position;
    fl_frame frame;
    kstore_status status = fl_read_header(log, segment, &cursor->reader, position, &frame);
    if (status != KSTORE_OK) return status;
    if (frame.first_offset != cursor->expected) {
        return fl_frame_error(log, segment->base_offset, position, "frame holds offset %lld where %lld was expected",
                              (long long)frame.first_offset, (long long)cursor->expected);
    }
    *stop = frame.first_offset >= end_offset_limit || values->entry_count == UINT32_MAX;
    if (!*stop && frame.payload_bytes > capacity - values->byte_count) {
        if (values->entry_count == 0) values->first_entry_bytes = frame.payload_bytes;
        *stop = true;
    }
    if (*stop) return KSTORE_OK;
    uint8_t *target = destination + values->byte_count;
    if (!fl_reader_copy(&cursor->reader, position + FL_FRAME_HEADER_BYTES, frame.payload_bytes, target)) {
        return kstore_kit_error_errno(&log->instance->errors, cursor->reader.error != 0 ? cursor->reader.error : EIO,
                                      "read from log '%s': reading %s/%020lld.log at position %llu failed", log->name,
                                      log->path, (long long)segment->base_offset, (unsigned long long)position);
    }
    /* STYLE 11: check the frame again on its way out. */
    if (fjord_crc32c(frame.header_crc, target, frame.payload_bytes) != frame.crc) {
        return fl_frame_error(log, segment->base_offset, position, "frame checksum mismatch on read");
    }
    values->byte_count += frame.payload_bytes;
    values->entry_count++;
    values->next_offset = frame.last_offset + 1;
    cursor->expected = values->next_offset;
    cursor->position += FL_FRAME_HEADER_BYTES + frame.payload_bytes;
    return KSTORE_OK;
}

/* read (kstore.h) for start <= offset < min(end, end_offset_limit): whole entries from the one
 * holding `offset`, while they fit; `values` (next_offset preset to offset) receives the counts. */
kstore_status fl_read_entries(fl_log *log, int64_t offset, int64_t end_offset_limit, uint8_t *destination,
                              uint64_t capacity, kstore_read_result *values) {
    fl_cursor cursor = {.segment_index = 0};
    if (!fl_reader_init(&cursor.reader, log->instance, FL_READ_WINDOW_BYTES)) {
        kstore_kit_error_set(&log->instance->errors, "read from log '%s': out of memory", log->name);
        return KSTORE_ERR_NO_MEMORY;
    }
    cursor.segment_index = fl_find_segment(log, offset);
    cursor.segment = &log->segments[cursor.segment_index];
    kstore_status status = fl_files_open(log, cursor.segment, &cursor.files);
    fl_place place = {0};
    if (status == KSTORE_OK) {
        fl_reader_reset(&cursor.reader, cursor.files.fds.log_fd, cursor.segment->size_bytes);
        status = fl_locate(log, cursor.segment, &cursor.files, &cursor.reader, offset, &place);
    }
    cursor.position = place.position;
    cursor.expected = place.frame.first_offset;
    bool stop = false;
    while (status == KSTORE_OK && !stop) {
        if (cursor.position >= cursor.segment->size_bytes) {
            status = fl_cursor_next_segment(log, &cursor, &stop);
        } else {
            status = fl_copy_frame(log, &cursor, end_offset_limit, destination, capacity, values, &stop);
        }
    }
    fl_files_close(log, &cursor.files);
    fl_reader_free(&cursor.reader);
    return status;
}

/* Whether an entry begins at `offset` (start <= offset < end). */
kstore_status fl_is_boundary(fl_log *log, int64_t offset, bool *boundary) {
    const fl_segment *segment = &log->segments[fl_find_segment(log, offset)];
    if (segment->base_offset == offset) {
        *boundary = true;
        return KSTORE_OK;
    }
    fl_reader reader;
    if (!fl_reader_init(&reader, log->instance, FL_READ_WINDOW_BYTES)) {
        kstore_kit_error_set(&log->instance->errors, "log '%s': out of memory", log->name);
        return KSTORE_ERR_NO_MEMORY;
    }
    fl_files files;
    fl_place place = {0};
    kstore_status status = fl_files_open(log, segment, &files);
    if (status == KSTORE_OK) {
        fl_reader_reset(&reader, files.fds.log_fd, segment->size_bytes);
        status = fl_locate(log, segment, &files, &reader, offset, &place);
        fl_files_close(log, &files);
    }
    fl_reader_free(&reader);
    *boundary = status == KSTORE_OK && place.frame.first_offset == offset;
    return status;
}
