/* The offset index and the time index of a segment (Kafka's OffsetIndex and TimeIndex): sparse,
 * derived data that recovery rebuilds from the frames.
 *
 * Invariants: offset index entry k marks a frame that starts a new block of at least
 * index.interval.bytes of frames (the first block, at position 0, is not recorded) and carries the
 * largest timestamp of the block that ends there, so a search can skip whole blocks. A time index
 * entry is written when the running maximum timestamp rises and the frame lies at least an interval
 * after the previous entry's frame (the first rise always), and once more when the segment is
 * sealed or closed if the maximum rose since: every unrecorded rise lies within one interval after
 * a recorded one, which bounds the scan of a lookup.
 */
#include "file_internal.h"

#include <string.h>

void fl_builder_start(fl_builder *builder, uint64_t interval_bytes) {
    memset(builder, 0, sizeof(*builder));
    builder->interval_bytes = interval_bytes;
    builder->block_max_timestamp = -1;
    builder->time_timestamp = -1;
    builder->max_offset = -1;
}

/* Adds the frame at `position` to the segment's statistics and index state. Says whether an offset
 * index entry and a time index entry must be written for it (the counts are already advanced). */
void fl_builder_add(fl_segment *segment, fl_builder *builder, const fl_frame *frame, uint64_t position, fl_emit *emit) {
    uint32_t ordinal = (uint32_t)segment->entry_count;
    uint32_t relative_offset = (uint32_t)(frame->first_offset - segment->base_offset);
    emit->index = false;
    emit->time = false;
    if (ordinal > 0 && position - builder->marker_position >= builder->interval_bytes) {
        emit->index = true;
        emit->index_record = (fl_index_record){
            .relative_offset = relative_offset,
            .ordinal = ordinal,
            .position = position,
            .block_max_timestamp = builder->block_max_timestamp,
            .untimed_before = (uint32_t)segment->untimed_count,
        };
        segment->index_count++;
        builder->marker_position = position;
        builder->block_max_timestamp = -1;
    }
    builder->block_max_timestamp = fl_max64(builder->block_max_timestamp, frame->max_timestamp);
    if (frame->max_timestamp > segment->max_timestamp) {
        segment->max_timestamp = frame->max_timestamp;
        builder->max_offset = frame->first_offset;
        builder->max_ordinal = ordinal;
        builder->max_position = position;
        if (segment->time_count == 0 || position - builder->time_position >= builder->interval_bytes) {
            emit->time = true;
            emit->time_record = (fl_time_record){
                .timestamp = frame->max_timestamp,
                .relative_offset = relative_offset,
                .ordinal = ordinal,
                .position = position,
            };
            segment->time_count++;
            builder->time_position = position;
            builder->time_timestamp = frame->max_timestamp;
        }
    }
    if (frame->max_timestamp < 0) segment->untimed_count++;
    segment->entry_count++;
    segment->size_bytes = position + FL_FRAME_HEADER_BYTES + frame->payload_bytes;
    segment->end_offset = frame->last_offset + 1;
}

/* The time index entry that records the segment's final maximum, if the last rise was not recorded
 * (written when the segment is sealed or the log closed, as Kafka does on roll). */
bool fl_builder_final_time(fl_segment *segment, fl_builder *builder, fl_time_record *time) {
    if (segment->max_timestamp < 0 || segment->max_timestamp <= builder->time_timestamp) return false;
    *time = (fl_time_record){
        .timestamp = segment->max_timestamp,
        .relative_offset = (uint32_t)(builder->max_offset - segment->base_offset),
        .ordinal = builder->max_ordinal,
        .position = builder->max_position,
    };
    segment->time_count++;
    builder->time_position = builder->max_position;
    builder->time_timestamp = segment->max_timestamp;
    return true;
}

bool fl_index_read(fl_log *log, int fd, uint64_t index, fl_index_record *record) {
    uint8_t bytes[FL_INDEX_ENTRY_BYTES];
    ssize_t got = kstore_kit_pread_full(&log->instance->io, fd, bytes, sizeof(bytes),
                                        FL_INDEX_HEADER_BYTES + index * FL_INDEX_ENTRY_BYTES);
    return got == (ssize_t)sizeof(bytes) && fl_index_decode(bytes, record);
}

bool fl_time_read(fl_log *log, int fd, uint64_t index, fl_time_record *record) {
    uint8_t bytes[FL_TIME_ENTRY_BYTES];
    ssize_t got = kstore_kit_pread_full(&log->instance->io, fd, bytes, sizeof(bytes), index * FL_TIME_ENTRY_BYTES);
    return got == (ssize_t)sizeof(bytes) && fl_time_decode(bytes, record);
}

/* Number of index records (of `record_bytes`, after `header_bytes`) whose frame lies below
 * `position`; false when an entry is damaged. */
bool fl_count_records_below(fl_log *log, int fd, uint64_t count, bool time_index, uint64_t position, uint64_t *below) {
    uint64_t low = 0, high = count;
    while (low < high) {
        uint64_t middle = low + (high - low) / 2;
        uint64_t at = 0;
        if (time_index) {
            fl_time_record record;
            if (!fl_time_read(log, fd, middle, &record)) return false;
            at = record.position;
        } else {
            fl_index_record record;
            if (!fl_index_read(log, fd, middle, &record)) return false;
            at = record.position;
        }
        if (at < position) {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    *below = low;
    return true;
}
