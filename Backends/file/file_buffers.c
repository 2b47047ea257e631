/* Buffered access to the backend's files: a window over a file for reads (frame headers, payloads,
 * CRC passes, index records) and a buffered sequential writer for index files being rebuilt. Both
 * go through the kit's system-call wrappers, so a fault hook sees every read and write.
 */
#include "file_internal.h"

#include "fjord_crc32c.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

bool fl_reader_init(fl_reader *reader, fl_instance *instance, size_t capacity) {
    memset(reader, 0, sizeof(*reader));
    reader->instance = instance;
    reader->fd = -1;
    reader->buffer = malloc(capacity);
    reader->capacity = capacity;
    return reader->buffer != NULL;
}

void fl_reader_free(fl_reader *reader) {
    free(reader->buffer);
    reader->buffer = NULL;
}

void fl_reader_reset(fl_reader *reader, int fd, uint64_t limit) {
    reader->fd = fd;
    reader->limit = limit;
    reader->window_position = 0;
    reader->window_bytes = 0;
    reader->error = 0;
}

const uint8_t *fl_reader_fill(fl_reader *reader, uint64_t position, size_t length) {
    uint64_t available = reader->limit - position;
    size_t want = available < reader->capacity ? (size_t)available : reader->capacity;
    ssize_t got = kstore_kit_pread_full(&reader->instance->io, reader->fd, reader->buffer, want, position);
    if (got < 0) {
        reader->error = errno;
        reader->window_bytes = 0;
        return NULL;
    }
    reader->window_position = position;
    reader->window_bytes = (size_t)got;
    if ((size_t)got < length) return NULL;
    return reader->buffer;
}

/* Copies [position, position + length) into `destination`; large ranges bypass the window. */
bool fl_reader_copy(fl_reader *reader, uint64_t position, uint64_t length, uint8_t *destination) {
    if (position > reader->limit || length > reader->limit - position) return false;
    if (length <= reader->capacity / 2) {
        const uint8_t *bytes = fl_reader_get(reader, position, (size_t)length);
        if (bytes == NULL) return false;
        memcpy(destination, bytes, (size_t)length);
        return true;
    }
    uint64_t done = 0;
    /* What the window already holds. */
    if (position >= reader->window_position && position - reader->window_position < reader->window_bytes) {
        size_t held = reader->window_bytes - (size_t)(position - reader->window_position);
        done = held < length ? held : length;
        memcpy(destination, reader->buffer + (position - reader->window_position), (size_t)done);
    }
    if (done < length) {
        ssize_t got = kstore_kit_pread_full(&reader->instance->io, reader->fd, destination + done,
                                            (size_t)(length - done), position + done);
        if (got < 0) {
            reader->error = errno;
            return false;
        }
        if ((uint64_t)got < length - done) return false;
    }
    return true;
}

/* CRC-32C of [position, position + length), continuing from `crc`, streamed through the window. */
bool fl_reader_crc(fl_reader *reader, uint64_t position, uint64_t length, uint32_t *crc) {
    while (length > 0) {
        size_t chunk = length < reader->capacity ? (size_t)length : reader->capacity;
        const uint8_t *bytes = fl_reader_get(reader, position, chunk);
        if (bytes == NULL) return false;
        *crc = fjord_crc32c(*crc, bytes, chunk);
        position += chunk;
        length -= chunk;
    }
    return true;
}

bool fl_writer_init(fl_writer *writer, fl_instance *instance, int fd, uint64_t position) {
    memset(writer, 0, sizeof(*writer));
    writer->instance = instance;
    writer->fd = fd;
    writer->position = position;
    writer->buffer = malloc(FL_WRITER_BYTES);
    return writer->buffer != NULL;
}

void fl_writer_flush(fl_writer *writer) {
    if (writer->used > 0 && writer->error == 0) {
        writer->error =
            kstore_kit_pwrite_all(&writer->instance->io, writer->fd, writer->buffer, writer->used, writer->position);
        writer->position += writer->used;
    }
    writer->used = 0;
}

void fl_writer_put(fl_writer *writer, const uint8_t *bytes, size_t length) {
    if (writer->used + length > FL_WRITER_BYTES) fl_writer_flush(writer);
    memcpy(writer->buffer + writer->used, bytes, length);
    writer->used += length;
}

void fl_writer_free(fl_writer *writer) {
    free(writer->buffer);
    writer->buffer = NULL;
}
