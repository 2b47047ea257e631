/* The file backend's on-disk format: frames, offset and time index records, the summary header and
 * the start-offset (meta) record, all little-endian (docs/storage-formats.md, "file backend").
 *
 * Invariants the rest of the backend relies on: a frame's CRC-32C covers header bytes [8, 40) and
 * the payload, so a frame is verified without understanding Kafka; every index, time and summary
 * record and the meta record end in a CRC-32C of the bytes before it, so a damaged record is noticed
 * (and the index rebuilt) instead of trusted; reserved fields are written as zero and checked.
 */
#include "file_internal.h"

#include "fjord_crc32c.h"

#include <stdio.h>
#include <string.h>

void fl_segment_name(char *buffer, int64_t base_offset, const char *suffix) {
    snprintf(buffer, FL_FILE_NAME_BYTES, "%020lld%s", (long long)base_offset, suffix);
}

/* Parses "%020lld.log"; false for anything else. */
bool fl_parse_segment_name(const char *name, int64_t *base_offset) {
    if (strlen(name) != 24 || strcmp(name + 20, ".log") != 0) return false;
    int64_t value = 0;
    for (int index = 0; index < 20; index++) {
        char c = name[index];
        if (c < '0' || c > '9') return false;
        if (value > (INT64_MAX - (c - '0')) / 10) return false;
        value = value * 10 + (c - '0');
    }
    *base_offset = value;
    return true;
}

/* Fills the 40-byte header; the CRC field covers [8, 40) and the payload, added by the caller. */
void fl_frame_encode(uint8_t *header, uint32_t payload_bytes, int64_t first_offset, int64_t last_offset,
                     int64_t max_timestamp) {
    fl_put32(header, FL_FRAME_MAGIC);
    fl_put32(header + 4, 0);
    fl_put32(header + 8, payload_bytes);
    fl_put32(header + 12, 0);
    fl_put64(header + 16, (uint64_t)first_offset);
    fl_put64(header + 24, (uint64_t)last_offset);
    fl_put64(header + 32, (uint64_t)max_timestamp);
}

/* Decodes a header and checks what can be checked without the payload. */
bool fl_frame_decode(const uint8_t *header, fl_frame *frame) {
    if (fl_get32(header) != FL_FRAME_MAGIC || fl_get32(header + 12) != 0) return false;
    frame->crc = fl_get32(header + 4);
    frame->payload_bytes = fl_get32(header + 8);
    frame->first_offset = (int64_t)fl_get64(header + 16);
    frame->last_offset = (int64_t)fl_get64(header + 24);
    frame->max_timestamp = (int64_t)fl_get64(header + 32);
    frame->header_crc = 0;
    return frame->payload_bytes >= 1 && frame->first_offset >= 0 && frame->last_offset >= frame->first_offset &&
           frame->last_offset < INT64_MAX && frame->max_timestamp >= -1;
}

void fl_index_encode(uint8_t *bytes, const fl_index_record *record) {
    fl_put32(bytes, record->relative_offset);
    fl_put32(bytes + 4, record->ordinal);
    fl_put64(bytes + 8, record->position);
    fl_put64(bytes + 16, (uint64_t)record->block_max_timestamp);
    fl_put32(bytes + 24, record->untimed_before);
    fl_put32(bytes + 28, fjord_crc32c(0, bytes, 28));
}

bool fl_index_decode(const uint8_t *bytes, fl_index_record *record) {
    if (fl_get32(bytes + 28) != fjord_crc32c(0, bytes, 28)) return false;
    record->relative_offset = fl_get32(bytes);
    record->ordinal = fl_get32(bytes + 4);
    record->position = fl_get64(bytes + 8);
    record->block_max_timestamp = (int64_t)fl_get64(bytes + 16);
    record->untimed_before = fl_get32(bytes + 24);
    return true;
}

void fl_time_encode(uint8_t *bytes, const fl_time_record *record) {
    fl_put64(bytes, (uint64_t)record->timestamp);
    fl_put32(bytes + 8, record->relative_offset);
    fl_put32(bytes + 12, record->ordinal);
    fl_put64(bytes + 16, record->position);
    fl_put32(bytes + 24, 0);
    fl_put32(bytes + 28, fjord_crc32c(0, bytes, 28));
}

bool fl_time_decode(const uint8_t *bytes, fl_time_record *record) {
    if (fl_get32(bytes + 28) != fjord_crc32c(0, bytes, 28) || fl_get32(bytes + 24) != 0) return false;
    record->timestamp = (int64_t)fl_get64(bytes);
    record->relative_offset = fl_get32(bytes + 8);
    record->ordinal = fl_get32(bytes + 12);
    record->position = fl_get64(bytes + 16);
    return true;
}

/* The summary header of a segment's offset index. */
void fl_summary_encode(uint8_t *bytes, const fl_segment *segment) {
    memset(bytes, 0, FL_INDEX_HEADER_BYTES);
    fl_put32(bytes, FL_INDEX_MAGIC);
    fl_put32(bytes + 4, FL_INDEX_VERSION);
    fl_put32(bytes + 8, FL_SUMMARY_VALID);
    fl_put64(bytes + 16, (uint64_t)segment->created_ms);
    fl_put64(bytes + 24, segment->size_bytes);
    fl_put64(bytes + 32, (uint64_t)segment->end_offset);
    fl_put64(bytes + 40, segment->entry_count);
    fl_put64(bytes + 48, (uint64_t)segment->max_timestamp);
    fl_put32(bytes + 56, (uint32_t)segment->untimed_count);
    fl_put32(bytes + 60, fjord_crc32c(0, bytes, 60));
}

bool fl_summary_decode(const uint8_t *bytes, fl_segment *segment) {
    if (fl_get32(bytes) != FL_INDEX_MAGIC || fl_get32(bytes + 4) != FL_INDEX_VERSION ||
        fl_get32(bytes + 8) != FL_SUMMARY_VALID || fl_get32(bytes + 60) != fjord_crc32c(0, bytes, 60)) {
        return false;
    }
    segment->created_ms = (int64_t)fl_get64(bytes + 16);
    segment->size_bytes = fl_get64(bytes + 24);
    segment->end_offset = (int64_t)fl_get64(bytes + 32);
    segment->entry_count = fl_get64(bytes + 40);
    segment->max_timestamp = (int64_t)fl_get64(bytes + 48);
    segment->untimed_count = fl_get32(bytes + 56);
    return true;
}

/* The meta record: magic, version, the log start offset, zero padding, CRC-32C of [0, 28). */
void fl_meta_encode(uint8_t *bytes, int64_t start_offset) {
    memset(bytes, 0, FL_META_BYTES);
    fl_put32(bytes, FL_META_MAGIC);
    fl_put32(bytes + 4, FL_META_VERSION);
    fl_put64(bytes + 8, (uint64_t)start_offset);
    fl_put32(bytes + 28, fjord_crc32c(0, bytes, 28));
}

bool fl_meta_decode(const uint8_t *bytes, int64_t *start_offset) {
    if (fl_get32(bytes) != FL_META_MAGIC || fl_get32(bytes + 4) != FL_META_VERSION ||
        fl_get32(bytes + 28) != fjord_crc32c(0, bytes, 28) || (int64_t)fl_get64(bytes + 8) < 0) {
        return false;
    }
    *start_offset = (int64_t)fl_get64(bytes + 8);
    return true;
}
