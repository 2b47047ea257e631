/* One WAL frame (docs/storage-formats.md, "uring backend"): a 72-byte header, the payload and zero padding
 * to 8 bytes, checked by a CRC-32C over the payload and then header bytes [8, 72) (a checked batch's
 * frame: over its first 21 bytes, its own CRC covering the rest). Encoding for
 * staging; the checked reads recovery scans segments with. Invariants: uring_internal.h. */
#include "uring_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void ur_frame_encode(uint8_t *destination, ur_frame_header *header, uint32_t payload_crc, const kstore_iovec *iov,
                     uint32_t iov_count) {
    header->crc = ur_frame_crc(payload_crc, header);
    memcpy(destination, header, sizeof(*header));
    size_t copied = UR_FRAME_HEADER_BYTES;
    for (uint32_t index = 0; index < iov_count; index++) {
        if (iov[index].len == 0) continue;
        memcpy(destination + copied, iov[index].base, iov[index].len);
        copied += iov[index].len;
    }
    /* Zero the padding: persisted bytes are never left uninitialized (STYLE.md rule 15). */
    memset(destination + copied, 0, ur_frame_bytes(header->payload_bytes) - copied);
}

bool ur_frame_valid(const ur_frame_header *header, const uint8_t *payload) {
    bool batch = (header->flags & UR_FRAME_FLAG_BATCH_CRC) != 0;
    if (batch && (header->kind != UR_FRAME_DATA || header->payload_bytes < KSTORE_BATCH_BYTES_MIN)) return false;
    uint32_t covered = batch ? KSTORE_BATCH_CRC_FROM : header->payload_bytes;
    if (ur_frame_crc(fjord_crc32c(0, payload, covered), header) != header->crc) return false;
    if (!batch) return true;
    const uint8_t *field = payload + KSTORE_BATCH_CRC_AT;
    uint32_t stored = (uint32_t)field[0] << 24 | (uint32_t)field[1] << 16 | (uint32_t)field[2] << 8 | field[3];
    return fjord_crc32c(0, payload + KSTORE_BATCH_CRC_FROM, header->payload_bytes - KSTORE_BATCH_CRC_FROM) == stored;
}

/* Pad frames are at most a little more than twice the largest alignment: their payload's CRC is
 * taken over this many zeros. */
static const uint8_t ur_pad_zeros[2 * UR_DIRECT_ALIGN_MAX];

void ur_pad_frame_encode(uint8_t *destination, uint64_t frame_bytes, uint64_t generation, uint64_t sequence,
                         uint64_t durable_sequence) {
    uint64_t payload_bytes = frame_bytes - UR_FRAME_HEADER_BYTES;
    ur_frame_header header = {
        .magic = UR_FRAME_MAGIC,
        .payload_bytes = (uint32_t)payload_bytes,
        .kind = UR_FRAME_MARK,
        .generation = generation,
        .log_id = 0,
        .first_offset = 0,
        .last_offset = 0,
        .max_timestamp = -1,
        .sequence = sequence,
        .durable_sequence = durable_sequence,
    };
    header.crc = ur_frame_crc(fjord_crc32c(0, ur_pad_zeros, (size_t)payload_bytes), &header);
    memcpy(destination, &header, sizeof(header));
    memset(destination + UR_FRAME_HEADER_BYTES, 0, (size_t)payload_bytes);
}

/* Whether a header read at position can start a frame of `generation` that ends inside the file
 * (its magic is checked by the callers, which treat a wrong one differently). */
static bool ur_frame_header_fits(const ur_frame_header *header, uint64_t generation, uint64_t position,
                                 uint64_t file_bytes) {
    return header->generation == generation && (header->flags & ~UR_FRAME_FLAGS_KNOWN) == 0 &&
           header->kind >= UR_FRAME_DATA && header->kind <= UR_FRAME_MARK &&
           position + ur_frame_bytes(header->payload_bytes) <= file_bytes;
}

/* Bytes [position, position + count) of the file, or NULL past its end or on a read error (errno
 * set then; 0 past the end). */
const uint8_t *ur_scan_get(ur_scan *scan, uint64_t position, size_t count) {
    if (position + count > scan->file_bytes) {
        errno = 0;
        return NULL;
    }
    if (position >= scan->buffer_position && position + count <= scan->buffer_position + scan->buffer_length) {
        return scan->buffer + (position - scan->buffer_position);
    }
    size_t want = count > UR_SCAN_BYTES ? count : UR_SCAN_BYTES;
    if (want > scan->file_bytes - position) want = (size_t)(scan->file_bytes - position);
    if (want > scan->capacity) {
        uint8_t *grown = realloc(scan->buffer, want);
        if (grown == NULL) {
            errno = ENOMEM;
            return NULL;
        }
        scan->buffer = grown;
        scan->capacity = want;
    }
    ssize_t got = ur_pread_all(scan->fd, scan->buffer, want, position);
    if (got < 0) return NULL;
    scan->bytes_read += (uint64_t)got;
    scan->buffer_position = position;
    scan->buffer_length = (size_t)got;
    if ((size_t)got < count) {
        errno = EIO;
        return NULL;
    }
    return scan->buffer;
}

/* Whether a complete, checksummed frame of `generation` starts at position. */
bool ur_scan_frame(ur_scan *scan, uint64_t position, uint64_t generation, ur_frame_header *header_out,
                   const uint8_t **payload_out) {
    const uint8_t *bytes = ur_scan_get(scan, position, UR_FRAME_HEADER_BYTES);
    if (bytes == NULL) return false;
    ur_frame_header header;
    memcpy(&header, bytes, sizeof(header));
    if (header.magic != UR_FRAME_MAGIC || !ur_frame_header_fits(&header, generation, position, scan->file_bytes)) {
        return false;
    }
    const uint8_t *payload = ur_scan_get(scan, position + UR_FRAME_HEADER_BYTES, header.payload_bytes);
    if (payload == NULL && header.payload_bytes > 0) return false;
    if (!ur_frame_valid(&header, payload)) return false;
    *header_out = header;
    if (payload_out != NULL) *payload_out = payload;
    return true;
}

/* Reads the header at position (false if there is none) and whether the whole frame is valid for
 * generation. Used on the few magic-looking positions after the end of the WAL. */
bool ur_check_frame_at(int fd, uint64_t file_bytes, uint64_t position, uint64_t generation, ur_frame_header *header,
                       bool *valid) {
    *valid = false;
    if (position + UR_FRAME_HEADER_BYTES > file_bytes) return false;
    if (ur_pread_all(fd, header, sizeof(*header), position) != (ssize_t)sizeof(*header)) return false;
    if (header->magic != UR_FRAME_MAGIC) return false;
    if (!ur_frame_header_fits(header, generation, position, file_bytes)) return true;
    uint8_t *payload = malloc(header->payload_bytes > 0 ? header->payload_bytes : 1);
    if (payload == NULL) return true;
    if (ur_pread_all(fd, payload, header->payload_bytes, position + UR_FRAME_HEADER_BYTES) ==
        (ssize_t)header->payload_bytes) {
        *valid = ur_frame_valid(header, payload);
    }
    free(payload);
    return true;
}
