/* Verifying segments for recovery: rebuilding a segment from its frames (every frame's header,
 * CRC and offset continuity checked, both indexes rewritten), searching for a valid frame after a
 * bad one (is it a torn tail or damage in the middle?), and trusting a segment of a cleanly closed
 * log from its summary.
 *
 * Invariant: torn writes do not produce valid checksums, so a frame with a valid CRC whose offsets do
 * not continue the log is damage (CORRUPT) at once, never a tail to cut.
 */
#include "file_internal.h"

#include "fjord_crc32c.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* MARK: - Rebuilding */

/* Verifies the frame at `position` of a file of `file_size` bytes: *frame on success; verify->bad
 * (with the reason) for a frame that is cut short or damaged; an error status only for a failed
 * read. */
static kstore_status fl_verify_frame(fl_log *log, int64_t base_offset, fl_reader *reader, uint64_t position,
                                     uint64_t file_size, fl_frame *frame, fl_verify *verify) {
    if (file_size - position < FL_FRAME_HEADER_BYTES) {
        verify->bad = true;
        snprintf(verify->reason, sizeof(verify->reason), "partial frame header (%llu bytes)",
                 (unsigned long long)(file_size - position));
        return KSTORE_OK;
    }
    const uint8_t *bytes = fl_reader_get(reader, position, FL_FRAME_HEADER_BYTES);
    bool read_ok = bytes != NULL;
    if (read_ok && !fl_frame_decode(bytes, frame)) {
        verify->bad = true;
        snprintf(verify->reason, sizeof(verify->reason), "bad frame header");
        return KSTORE_OK;
    }
    if (read_ok && frame->payload_bytes > file_size - position - FL_FRAME_HEADER_BYTES) {
        verify->bad = true;
        snprintf(verify->reason, sizeof(verify->reason), "frame of %u bytes extends past the end of the file",
                 frame->payload_bytes);
        return KSTORE_OK;
    }
    /* One CRC pass over header and payload when the window holds the whole frame. */
    uint32_t crc = 0;
    if (read_ok) {
        uint64_t frame_bytes = FL_FRAME_HEADER_BYTES + (uint64_t)frame->payload_bytes;
        if (frame_bytes <= reader->capacity) {
            const uint8_t *whole = fl_reader_get(reader, position, (size_t)frame_bytes);
            read_ok = whole != NULL;
            if (read_ok) crc = fjord_crc32c(0, whole + 8, (size_t)frame_bytes - 8);
        } else {
            crc = fjord_crc32c(0, bytes + 8, FL_FRAME_HEADER_BYTES - 8);
            read_ok = fl_reader_crc(reader, position + FL_FRAME_HEADER_BYTES, frame->payload_bytes, &crc);
        }
    }
    if (!read_ok) {
        return kstore_kit_error_errno(&log->instance->errors, reader->error != 0 ? reader->error : EIO,
                                      "log '%s': reading %s/%020lld.log at position %llu failed", log->name, log->path,
                                      (long long)base_offset, (unsigned long long)position);
    }
    if (crc != frame->crc) {
        verify->bad = true;
        snprintf(verify->reason, sizeof(verify->reason), "frame checksum mismatch");
    }
    return KSTORE_OK;
}

/* Verifies every frame of a segment file in [0, file_size) — header, CRC and offset continuity —
 * with large sequential reads, and rebuilds its offset and time indexes from scratch (the index
 * files are truncated). Fills the segment's statistics and *builder for the frames up to the first
 * bad one, which verify reports. */
kstore_status fl_verify_segment(fl_log *log, fl_segment *segment, fl_builder *builder, const fl_fds *fds,
                                uint64_t file_size, fl_reader *reader, fl_verify *verify) {
    fl_instance *instance = log->instance;
    int64_t base_offset = segment->base_offset;
    *segment = (fl_segment){.base_offset = base_offset, .end_offset = base_offset, .max_timestamp = -1};
    fl_builder_start(builder, log->index_interval_bytes);
    memset(verify, 0, sizeof(*verify));
    if (kstore_kit_ftruncate(&instance->io, fds->index_fd, 0) != 0 ||
        kstore_kit_ftruncate(&instance->io, fds->time_fd, 0) != 0) {
        return kstore_kit_error_errno(&instance->errors, errno,
                                      "log '%s': truncating the indexes of %s/%020lld.log failed", log->name, log->path,
                                      (long long)base_offset);
    }
    fl_writer index_writer, time_writer;
    bool writers = fl_writer_init(&index_writer, instance, fds->index_fd, FL_INDEX_HEADER_BYTES);
    writers = fl_writer_init(&time_writer, instance, fds->time_fd, 0) && writers;
    if (!writers) {
        fl_writer_free(&index_writer);
        fl_writer_free(&time_writer);
        kstore_kit_error_set(&instance->errors, "log '%s': out of memory", log->name);
        return KSTORE_ERR_NO_MEMORY;
    }
    fl_reader_reset(reader, fds->log_fd, file_size);
    kstore_status status = KSTORE_OK;
    uint64_t position = 0;
    int64_t expected = base_offset;
    while (position < file_size) {
        fl_frame frame;
        status = fl_verify_frame(log, base_offset, reader, position, file_size, &frame, verify);
        if (status != KSTORE_OK || verify->bad) break;
        if (frame.first_offset != expected || frame.first_offset - base_offset > (int64_t)UINT32_MAX) {
            status = fl_frame_error(log, base_offset, position,
                                    "a valid frame holds offsets [%lld, %lld] where offset %lld was expected",
                                    (long long)frame.first_offset, (long long)frame.last_offset, (long long)expected);
            break;
        }
        fl_emit emit;
        fl_builder_add(segment, builder, &frame, position, &emit);
        uint8_t encoded[FL_INDEX_ENTRY_BYTES];
        if (emit.index) {
            fl_index_encode(encoded, &emit.index_record);
            fl_writer_put(&index_writer, encoded, sizeof(encoded));
        }
        if (emit.time) {
            fl_time_encode(encoded, &emit.time_record);
            fl_writer_put(&time_writer, encoded, sizeof(encoded));
        }
        log->recovery.verified_frames++;
        log->recovery.verified_bytes += FL_FRAME_HEADER_BYTES + frame.payload_bytes;
        position += FL_FRAME_HEADER_BYTES + frame.payload_bytes;
        expected = frame.last_offset + 1;
    }
    verify->valid_bytes = position;
    fl_writer_flush(&index_writer);
    fl_writer_flush(&time_writer);
    int error = index_writer.error != 0 ? index_writer.error : time_writer.error;
    fl_writer_free(&index_writer);
    fl_writer_free(&time_writer);
    if (status == KSTORE_OK && error != 0) {
        status =
            kstore_kit_error_errno(&instance->errors, error, "log '%s': writing the indexes of %s/%020lld.log failed",
                                   log->name, log->path, (long long)base_offset);
    }
    return status;
}

/* MARK: - Searching for a valid frame */

/* Whether a frame with a valid header and checksum starts at `position`. */
bool fl_valid_frame_at(fl_reader *reader, uint64_t position, uint64_t file_size) {
    if (file_size - position < FL_FRAME_HEADER_BYTES) return false;
    const uint8_t *bytes = fl_reader_get(reader, position, FL_FRAME_HEADER_BYTES);
    fl_frame frame;
    if (bytes == NULL || !fl_frame_decode(bytes, &frame)) return false;
    if (frame.payload_bytes > file_size - position - FL_FRAME_HEADER_BYTES) return false;
    uint32_t crc = fjord_crc32c(0, bytes + 8, FL_FRAME_HEADER_BYTES - 8);
    return fl_reader_crc(reader, position + FL_FRAME_HEADER_BYTES, frame.payload_bytes, &crc) && crc == frame.crc;
}

/* Searches [from, file_size) for any valid frame (after a bad one: is the bad frame a torn tail or
 * damage in the middle?). -1: none; otherwise its position. */
int64_t fl_find_valid_frame(fl_reader *reader, int fd, uint64_t from, uint64_t file_size) {
    static const uint8_t magic[4] = {'F', 'J', 'F', 'R'};
    fl_reader_reset(reader, fd, file_size);
    uint64_t position = from;
    while (position < file_size && file_size - position >= FL_FRAME_HEADER_BYTES) {
        size_t chunk = file_size - position < reader->capacity ? (size_t)(file_size - position) : reader->capacity;
        const uint8_t *bytes = fl_reader_get(reader, position, chunk);
        if (bytes == NULL) return -1;
        const uint8_t *hit = memmem(bytes, chunk, magic, sizeof(magic));
        if (hit == NULL) {
            if (chunk <= sizeof(magic)) break;
            position += chunk - (sizeof(magic) - 1); /* a magic split by the window boundary */
            continue;
        }
        uint64_t candidate = position + (uint64_t)(hit - bytes);
        if (fl_valid_frame_at(reader, candidate, file_size)) return (int64_t)candidate;
        position = candidate + 1;
    }
    return -1;
}

/* MARK: - Trusting a cleanly closed segment */

/* Reads the summary header and checks it against the files' sizes: the segment as the summary
 * describes it, with its index and time entry counts. */
static bool fl_load_summary(fl_log *log, const fl_fds *fds, uint64_t file_size, int64_t next_base, fl_segment *loaded) {
    uint64_t index_size = 0, time_size = 0;
    if (fds->index_fd < 0 || fds->time_fd < 0 || kstore_kit_file_size(fds->index_fd, &index_size) != 0 ||
        kstore_kit_file_size(fds->time_fd, &time_size) != 0) {
        return false;
    }
    uint8_t header[FL_INDEX_HEADER_BYTES];
    if (kstore_kit_pread_full(&log->instance->io, fds->index_fd, header, sizeof(header), 0) !=
            (ssize_t)sizeof(header) ||
        !fl_summary_decode(header, loaded)) {
        return false;
    }
    int64_t base = loaded->base_offset;
    uint64_t count = loaded->entry_count;
    if (loaded->size_bytes != file_size || (index_size - FL_INDEX_HEADER_BYTES) % FL_INDEX_ENTRY_BYTES != 0 ||
        time_size % FL_TIME_ENTRY_BYTES != 0 || count > file_size / (FL_FRAME_HEADER_BYTES + 1) ||
        (count == 0) != (file_size == 0) || (count == 0) != (loaded->end_offset == base) || loaded->end_offset < base ||
        (uint64_t)(loaded->end_offset - base) < count || loaded->untimed_count > count || loaded->max_timestamp < -1 ||
        (next_base >= 0 && loaded->end_offset != next_base)) {
        return false;
    }
    loaded->index_count = (index_size - FL_INDEX_HEADER_BYTES) / FL_INDEX_ENTRY_BYTES;
    loaded->time_count = time_size / FL_TIME_ENTRY_BYTES;
    return true;
}

/* Checks every frame after the last index entry (position, ordinal, expected offset) of the last
 * segment: whole, valid, continuing the offsets up to the summary's end. */
static bool fl_trust_tail(fl_log *log, const fl_segment *loaded, int log_fd, fl_reader *reader, uint64_t position,
                          uint64_t ordinal, int64_t expected) {
    uint64_t file_size = loaded->size_bytes;
    fl_reader_reset(reader, log_fd, file_size);
    while (position < file_size) {
        if (!fl_valid_frame_at(reader, position, file_size)) return false;
        const uint8_t *bytes = fl_reader_get(reader, position, FL_FRAME_HEADER_BYTES);
        fl_frame frame;
        if (bytes == NULL || !fl_frame_decode(bytes, &frame) || frame.first_offset != expected) return false;
        log->recovery.verified_frames++;
        log->recovery.verified_bytes += FL_FRAME_HEADER_BYTES + frame.payload_bytes;
        position += FL_FRAME_HEADER_BYTES + frame.payload_bytes;
        ordinal++;
        expected = frame.last_offset + 1;
    }
    return ordinal == loaded->entry_count && expected == loaded->end_offset;
}

/* Loads a segment from its summary (clean shutdown) if the summary, the file sizes and the last
 * index entries agree; for the last segment also verifies the frames after its last index entry.
 * Leases the index files into `files` (the caller releases them). */
bool fl_trust_segment(fl_log *log, fl_segment *segment, fl_files *files, uint64_t file_size, int64_t next_base,
                      bool last, fl_reader *reader) {
    if (fl_files_indexes(log, files, false) != KSTORE_OK) return false;
    const fl_fds *fds = &files->fds;
    fl_segment loaded = {.base_offset = segment->base_offset};
    if (!fl_load_summary(log, fds, file_size, next_base, &loaded)) return false;
    int64_t base = loaded.base_offset;
    uint64_t position = 0, ordinal = 0;
    int64_t expected = base;
    if (loaded.index_count > 0) {
        fl_index_record record;
        if (loaded.index_count > loaded.entry_count ||
            !fl_index_read(log, fds->index_fd, loaded.index_count - 1, &record) || record.position >= file_size ||
            record.ordinal >= loaded.entry_count || base + (int64_t)record.relative_offset >= loaded.end_offset ||
            record.untimed_before > loaded.untimed_count) {
            return false;
        }
        position = record.position;
        ordinal = record.ordinal;
        expected = base + (int64_t)record.relative_offset;
    }
    if (loaded.max_timestamp < 0) {
        if (loaded.time_count != 0) return false;
    } else {
        fl_time_record time;
        if (loaded.time_count == 0 || !fl_time_read(log, fds->time_fd, loaded.time_count - 1, &time) ||
            time.timestamp != loaded.max_timestamp || time.position >= file_size) {
            return false;
        }
    }
    if (last && !fl_trust_tail(log, &loaded, fds->log_fd, reader, position, ordinal, expected)) return false;
    *segment = loaded;
    return true;
}

/* MARK: - Restoring the active segment's index state */

/* Restores the index state of the segment that becomes (or stays) active from its index files,
 * with scans of at most an index interval: the last marker and its block's maximum, the last time
 * entry and any unrecorded rise after it. With `recount` the segment's max timestamp and untimed
 * count are recomputed too (after a truncation); otherwise they are checked against the summary.
 * segment->size_bytes, entry_count, index_count and time_count must be right. False: the indexes
 * do not add up (the caller rebuilds them). */
bool fl_restore_builder(fl_log *log, fl_segment *segment, const fl_fds *fds, bool recount, fl_reader *reader) {
    fl_builder builder;
    fl_builder_start(&builder, log->index_interval_bytes);
    fl_reader_reset(reader, fds->log_fd, segment->size_bytes);
    uint64_t untimed = 0;
    uint64_t position = 0, ordinal = 0;
    int64_t expected = segment->base_offset;
    if (segment->index_count > 0) {
        fl_index_record record;
        if (!fl_index_read(log, fds->index_fd, segment->index_count - 1, &record) ||
            record.position >= segment->size_bytes || record.ordinal >= segment->entry_count) {
            return false;
        }
        builder.marker_position = record.position;
        untimed = record.untimed_before;
        position = record.position;
        ordinal = record.ordinal;
        expected = segment->base_offset + (int64_t)record.relative_offset;
    }
    while (position < segment->size_bytes) {
        fl_frame frame;
        if (fl_read_header(log, segment, reader, position, &frame) != KSTORE_OK || frame.first_offset != expected) {
            return false;
        }
        builder.block_max_timestamp = fl_max64(builder.block_max_timestamp, frame.max_timestamp);
        if (frame.max_timestamp < 0) untimed++;
        position += FL_FRAME_HEADER_BYTES + frame.payload_bytes;
        ordinal++;
        expected = frame.last_offset + 1;
    }
    if (ordinal != segment->entry_count || expected != segment->end_offset) return false;

    int64_t max_timestamp = -1;
    if (segment->time_count > 0) {
        fl_time_record time;
        if (!fl_time_read(log, fds->time_fd, segment->time_count - 1, &time) || time.position >= segment->size_bytes) {
            return false;
        }
        builder.time_position = time.position;
        builder.time_timestamp = time.timestamp;
        max_timestamp = time.timestamp;
        builder.max_offset = segment->base_offset + (int64_t)time.relative_offset;
        builder.max_ordinal = time.ordinal;
        builder.max_position = time.position;
        /* Rises after the last time entry that were not recorded lie within one interval of it. */
        position = time.position;
        ordinal = time.ordinal;
        while (position < segment->size_bytes && position - time.position < builder.interval_bytes) {
            fl_frame frame;
            if (fl_read_header(log, segment, reader, position, &frame) != KSTORE_OK) return false;
            if (position == time.position &&
                (frame.first_offset != builder.max_offset || frame.max_timestamp != time.timestamp)) {
                return false;
            }
            if (frame.max_timestamp > max_timestamp) {
                max_timestamp = frame.max_timestamp;
                builder.max_offset = frame.first_offset;
                builder.max_ordinal = (uint32_t)ordinal;
                builder.max_position = position;
            }
            position += FL_FRAME_HEADER_BYTES + frame.payload_bytes;
            ordinal++;
        }
    }
    if (recount) {
        segment->max_timestamp = max_timestamp;
        segment->untimed_count = untimed;
    } else if (segment->max_timestamp != max_timestamp || segment->untimed_count != untimed) {
        return false;
    }
    log->builder = builder;
    return true;
}
