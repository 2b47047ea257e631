/*
 * Compression codecs for RecordBatch v2 payloads. The broker inflates every
 * compressed batch a producer sends to validate its records (DESIGN.md §4), so
 * each decompressor is bounded by the caller's limit and treats any malformed
 * input — garbage, truncation, trailing bytes — as an error, never a crash.
 *
 * Formats follow what real clients put on the wire: Kafka's Java client and
 * kafka-python frame snappy the xerial way, librdkafka may send raw snappy;
 * lz4 is the standard frame format (KIP-57); gzip is a gzip member stream.
 */
#include "ckafka_records.h"

#include <limits.h>
#include <lz4frame.h>
#include <snappy-c.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

/* The first allocation when nothing better is known; doubles from there. */
#define INITIAL_OUTPUT_CAPACITY ((size_t)64 * 1024)

/* xerial snappy-java block stream: 8 magic bytes, then int32 version, int32 compat (big-endian). */
static const uint8_t xerial_magic[8] = {0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0};
#define XERIAL_HEADER_BYTES 16
/* snappy-java's default block size, which the Java client uses. */
#define XERIAL_BLOCK_BYTES ((size_t)32 * 1024)

static int fail(fjord_codec_output *output, int status, const char *detail) {
    output->detail = detail;
    return status;
}

/* Makes room for at least `capacity` bytes in total. */
static int output_reserve(fjord_codec_output *output, size_t capacity) {
    if (capacity == 0) {
        capacity = 1; /* never hand a NULL destination to a codec library */
    }
    if (capacity <= output->capacity && output->data != NULL) {
        return FJORD_CODEC_OK;
    }
    uint8_t *grown = realloc(output->data, capacity);
    if (grown == NULL) {
        return fail(output, FJORD_CODEC_ERROR_NO_MEMORY, "out of memory");
    }
    output->data = grown;
    output->capacity = capacity;
    return FJORD_CODEC_OK;
}

/*
 * Grows a full output buffer for a streaming decoder: doubling, but never past
 * limit + 1 bytes. One byte beyond the limit is enough to learn that a stream
 * exceeds it, so a decompression bomb costs at most limit + 1 bytes.
 */
static int output_grow_bounded(fjord_codec_output *output, size_t limit) {
    size_t ceiling = limit == SIZE_MAX ? SIZE_MAX : limit + 1;
    if (output->capacity >= ceiling) {
        return fail(output, FJORD_CODEC_ERROR_LIMIT, "decompressed size exceeds the limit");
    }
    size_t wanted = output->capacity < INITIAL_OUTPUT_CAPACITY / 2 ? INITIAL_OUTPUT_CAPACITY : output->capacity * 2;
    if (wanted > ceiling || wanted < output->capacity) {
        wanted = ceiling;
    }
    return output_reserve(output, wanted);
}

/* An opening allocation for a stream decoder: a guess from the input size, within the bound. */
static int output_start(fjord_codec_output *output, size_t input_length, size_t limit) {
    size_t guess = input_length <= SIZE_MAX / 4 ? input_length * 4 : SIZE_MAX;
    if (guess < INITIAL_OUTPUT_CAPACITY) {
        guess = INITIAL_OUTPUT_CAPACITY;
    }
    size_t ceiling = limit == SIZE_MAX ? SIZE_MAX : limit + 1;
    if (guess > ceiling) {
        guess = ceiling;
    }
    return output_reserve(output, guess);
}

static int check_limit(fjord_codec_output *output, size_t limit) {
    if (output->length > limit) {
        return fail(output, FJORD_CODEC_ERROR_LIMIT, "decompressed size exceeds the limit");
    }
    return FJORD_CODEC_OK;
}

/* ---------------------------------------------------------------- gzip -- */

static int gzip_decompress(const uint8_t *input, size_t input_length, size_t limit, fjord_codec_output *output) {
    if (input_length > UINT_MAX) {
        return fail(output, FJORD_CODEC_ERROR_CORRUPT, "gzip input too large");
    }
    z_stream stream;
    memset(&stream, 0, sizeof stream);
    /* 15 + 32: maximum window, and detect a gzip or zlib header automatically. */
    if (inflateInit2(&stream, 15 + 32) != Z_OK) {
        return fail(output, FJORD_CODEC_ERROR_NO_MEMORY, "inflateInit2 failed");
    }
    int status = output_start(output, input_length, limit);
    stream.next_in = (Bytef *)(uintptr_t)input;
    stream.avail_in = (uInt)input_length;
    while (status == FJORD_CODEC_OK) {
        if (output->length == output->capacity) {
            status = output_grow_bounded(output, limit);
            if (status != FJORD_CODEC_OK) {
                break;
            }
        }
        size_t space = output->capacity - output->length;
        uInt available = space > UINT_MAX ? UINT_MAX : (uInt)space;
        stream.next_out = output->data + output->length;
        stream.avail_out = available;
        int result = inflate(&stream, Z_NO_FLUSH);
        output->length += available - stream.avail_out;
        status = check_limit(output, limit);
        if (status != FJORD_CODEC_OK) {
            break;
        }
        if (result == Z_STREAM_END) {
            if (stream.avail_in == 0) {
                break;
            }
            /* Another gzip member may follow (as gzip(1) and Java's GZIPInputStream allow). */
            if (stream.avail_in >= 2 && stream.next_in[0] == 0x1f && stream.next_in[1] == 0x8b) {
                if (inflateReset(&stream) != Z_OK) {
                    status = fail(output, FJORD_CODEC_ERROR_CORRUPT, "inflateReset failed");
                }
                continue;
            }
            status = fail(output, FJORD_CODEC_ERROR_CORRUPT, "trailing bytes after the gzip stream");
        } else if (result == Z_OK) {
            continue;
        } else if (result == Z_BUF_ERROR) {
            /* No progress was possible: either the output is full (grow and retry) or the input ended early. */
            if (stream.avail_out == 0) {
                continue;
            }
            status = fail(output, FJORD_CODEC_ERROR_CORRUPT, "truncated gzip stream");
        } else if (result == Z_MEM_ERROR) {
            status = fail(output, FJORD_CODEC_ERROR_NO_MEMORY, "inflate: out of memory");
        } else {
            status = fail(output, FJORD_CODEC_ERROR_CORRUPT, "invalid gzip data");
        }
    }
    inflateEnd(&stream);
    return status;
}

static int gzip_compress(const uint8_t *input, size_t input_length, int level, fjord_codec_output *output) {
    if (input_length > UINT_MAX) {
        return fail(output, FJORD_CODEC_ERROR_UNSUPPORTED, "gzip input too large");
    }
    z_stream stream;
    memset(&stream, 0, sizeof stream);
    int zlevel = level == 0 ? Z_DEFAULT_COMPRESSION : level;
    /* 15 + 16: maximum window with a gzip wrapper, which is what Kafka's clients expect. */
    if (deflateInit2(&stream, zlevel, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
        return fail(output, FJORD_CODEC_ERROR_NO_MEMORY, "deflateInit2 failed");
    }
    int status = output_reserve(output, deflateBound(&stream, (uLong)input_length) + 32);
    stream.next_in = (Bytef *)(uintptr_t)input;
    stream.avail_in = (uInt)input_length;
    while (status == FJORD_CODEC_OK) {
        if (output->length == output->capacity) {
            status = output_reserve(output, output->capacity * 2);
            if (status != FJORD_CODEC_OK) {
                break;
            }
        }
        size_t space = output->capacity - output->length;
        uInt available = space > UINT_MAX ? UINT_MAX : (uInt)space;
        stream.next_out = output->data + output->length;
        stream.avail_out = available;
        int result = deflate(&stream, Z_FINISH);
        output->length += available - stream.avail_out;
        if (result == Z_STREAM_END) {
            break;
        }
        if (result != Z_OK && result != Z_BUF_ERROR) {
            status = fail(output, FJORD_CODEC_ERROR_NO_MEMORY, "deflate failed");
        }
    }
    deflateEnd(&stream);
    return status;
}

/* -------------------------------------------------------------- snappy -- */

/* Appends one raw snappy block to the output, checking its declared size against the limit first. */
static int snappy_append_block(const uint8_t *block, size_t block_length, size_t limit, fjord_codec_output *output) {
    size_t uncompressed_length = 0;
    if (snappy_uncompressed_length((const char *)block, block_length, &uncompressed_length) != SNAPPY_OK) {
        return fail(output, FJORD_CODEC_ERROR_CORRUPT, "invalid snappy block header");
    }
    if (uncompressed_length > limit - output->length) {
        return fail(output, FJORD_CODEC_ERROR_LIMIT, "decompressed size exceeds the limit");
    }
    size_t needed = output->length + uncompressed_length;
    if (needed > output->capacity) {
        size_t doubled = output->capacity * 2;
        int status = output_reserve(output, doubled > needed && doubled <= limit ? doubled : needed);
        if (status != FJORD_CODEC_OK) {
            return status;
        }
    } else if (output->data == NULL) {
        int status = output_reserve(output, 1);
        if (status != FJORD_CODEC_OK) {
            return status;
        }
    }
    size_t produced = uncompressed_length;
    if (snappy_uncompress((const char *)block, block_length, (char *)output->data + output->length, &produced) !=
            SNAPPY_OK ||
        produced != uncompressed_length) {
        return fail(output, FJORD_CODEC_ERROR_CORRUPT, "invalid snappy data");
    }
    output->length += produced;
    return FJORD_CODEC_OK;
}

static int is_xerial_stream(const uint8_t *input, size_t input_length) {
    return input_length >= XERIAL_HEADER_BYTES && memcmp(input, xerial_magic, sizeof xerial_magic) == 0;
}

static int snappy_decompress(const uint8_t *input, size_t input_length, size_t limit, fjord_codec_output *output) {
    if (!is_xerial_stream(input, input_length)) {
        return snappy_append_block(input, input_length, limit, output);
    }
    /*
     * The version and compat words are not checked: some producers write them
     * little-endian, and there has only ever been one block layout.
     */
    int status = output_reserve(output, 0);
    size_t position = XERIAL_HEADER_BYTES;
    while (status == FJORD_CODEC_OK && position < input_length) {
        if (input_length - position < 4) {
            return fail(output, FJORD_CODEC_ERROR_CORRUPT, "truncated xerial snappy block length");
        }
        const uint8_t *p = input + position;
        uint32_t block_length = ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
        position += 4;
        if (block_length > INT32_MAX || block_length > input_length - position) {
            return fail(output, FJORD_CODEC_ERROR_CORRUPT, "xerial snappy block length exceeds the input");
        }
        status = snappy_append_block(input + position, block_length, limit, output);
        position += block_length;
    }
    return status;
}

static int snappy_compress_xerial(const uint8_t *input, size_t input_length, fjord_codec_output *output) {
    size_t block_count = input_length / XERIAL_BLOCK_BYTES + 1;
    size_t bound = XERIAL_HEADER_BYTES + block_count * (4 + snappy_max_compressed_length(XERIAL_BLOCK_BYTES));
    int status = output_reserve(output, bound);
    if (status != FJORD_CODEC_OK) {
        return status;
    }
    memcpy(output->data, xerial_magic, sizeof xerial_magic);
    /* version 1, compat 1, big-endian: what snappy-java writes. */
    static const uint8_t version_and_compat[8] = {0, 0, 0, 1, 0, 0, 0, 1};
    memcpy(output->data + sizeof xerial_magic, version_and_compat, sizeof version_and_compat);
    output->length = XERIAL_HEADER_BYTES;
    for (size_t position = 0; position < input_length; position += XERIAL_BLOCK_BYTES) {
        size_t chunk = input_length - position < XERIAL_BLOCK_BYTES ? input_length - position : XERIAL_BLOCK_BYTES;
        size_t compressed = output->capacity - output->length - 4;
        if (snappy_compress((const char *)input + position, chunk, (char *)output->data + output->length + 4,
                            &compressed) != SNAPPY_OK) {
            return fail(output, FJORD_CODEC_ERROR_NO_MEMORY, "snappy_compress failed");
        }
        uint8_t *p = output->data + output->length;
        p[0] = (uint8_t)(compressed >> 24);
        p[1] = (uint8_t)(compressed >> 16);
        p[2] = (uint8_t)(compressed >> 8);
        p[3] = (uint8_t)compressed;
        output->length += 4 + compressed;
    }
    return FJORD_CODEC_OK;
}

/* ----------------------------------------------------------------- lz4 -- */

static int lz4_decompress(const uint8_t *input, size_t input_length, size_t limit, fjord_codec_output *output) {
    LZ4F_dctx *context = NULL;
    if (LZ4F_isError(LZ4F_createDecompressionContext(&context, LZ4F_VERSION))) {
        return fail(output, FJORD_CODEC_ERROR_NO_MEMORY, "LZ4F_createDecompressionContext failed");
    }
    int status = output_start(output, input_length, limit);
    size_t position = 0;
    int frame_complete = 0;
    while (status == FJORD_CODEC_OK) {
        if (frame_complete && position == input_length) {
            break;
        }
        if (output->length == output->capacity) {
            status = output_grow_bounded(output, limit);
            if (status != FJORD_CODEC_OK) {
                break;
            }
        }
        size_t produced = output->capacity - output->length;
        size_t consumed = input_length - position;
        size_t hint =
            LZ4F_decompress(context, output->data + output->length, &produced, input + position, &consumed, NULL);
        if (LZ4F_isError(hint)) {
            status = fail(output, FJORD_CODEC_ERROR_CORRUPT, LZ4F_getErrorName(hint));
            break;
        }
        position += consumed;
        output->length += produced;
        status = check_limit(output, limit);
        /* 0 means a frame just ended; a next frame may follow (the context resets itself). */
        frame_complete = hint == 0;
        if (!frame_complete && consumed == 0 && produced == 0 && position == input_length) {
            status = fail(output, FJORD_CODEC_ERROR_CORRUPT, "truncated lz4 frame");
        }
    }
    LZ4F_freeDecompressionContext(context);
    return status;
}

static int lz4_compress(const uint8_t *input, size_t input_length, int level, fjord_codec_output *output) {
    LZ4F_preferences_t preferences;
    memset(&preferences, 0, sizeof preferences);
    /* What Kafka's Java client writes: independent 64 KiB blocks, no content size. */
    preferences.frameInfo.blockSizeID = LZ4F_max64KB;
    preferences.frameInfo.blockMode = LZ4F_blockIndependent;
    preferences.compressionLevel = level;
    int status = output_reserve(output, LZ4F_compressFrameBound(input_length, &preferences));
    if (status != FJORD_CODEC_OK) {
        return status;
    }
    size_t written = LZ4F_compressFrame(output->data, output->capacity, input, input_length, &preferences);
    if (LZ4F_isError(written)) {
        return fail(output, FJORD_CODEC_ERROR_NO_MEMORY, LZ4F_getErrorName(written));
    }
    output->length = written;
    return FJORD_CODEC_OK;
}

/* ---------------------------------------------------------------- zstd -- */

static int zstd_decompress(const uint8_t *input, size_t input_length, size_t limit, fjord_codec_output *output) {
    ZSTD_DStream *stream = ZSTD_createDStream();
    if (stream == NULL) {
        return fail(output, FJORD_CODEC_ERROR_NO_MEMORY, "ZSTD_createDStream failed");
    }
    int status;
    unsigned long long content_size = ZSTD_getFrameContentSize(input, input_length);
    if (content_size != ZSTD_CONTENTSIZE_UNKNOWN && content_size != ZSTD_CONTENTSIZE_ERROR) {
        /* The producer told us the size; reject a bomb before allocating, else allocate exactly once. */
        if (content_size > limit) {
            ZSTD_freeDStream(stream);
            return fail(output, FJORD_CODEC_ERROR_LIMIT, "decompressed size exceeds the limit");
        }
        status = output_reserve(output, (size_t)content_size);
    } else {
        status = output_start(output, input_length, limit);
    }
    ZSTD_inBuffer source = {input, input_length, 0};
    int frame_complete = 0;
    while (status == FJORD_CODEC_OK) {
        if (frame_complete && source.pos == source.size) {
            break;
        }
        if (output->length == output->capacity) {
            status = output_grow_bounded(output, limit);
            if (status != FJORD_CODEC_OK) {
                break;
            }
        }
        ZSTD_outBuffer destination = {output->data + output->length, output->capacity - output->length, 0};
        size_t hint = ZSTD_decompressStream(stream, &destination, &source);
        if (ZSTD_isError(hint)) {
            status = fail(output, FJORD_CODEC_ERROR_CORRUPT, ZSTD_getErrorName(hint));
            break;
        }
        output->length += destination.pos;
        status = check_limit(output, limit);
        frame_complete = hint == 0;
        if (!frame_complete && source.pos == source.size && destination.pos < destination.size) {
            status = fail(output, FJORD_CODEC_ERROR_CORRUPT, "truncated zstd frame");
        }
    }
    ZSTD_freeDStream(stream);
    return status;
}

static int zstd_compress(const uint8_t *input, size_t input_length, int level, fjord_codec_output *output) {
    int status = output_reserve(output, ZSTD_compressBound(input_length));
    if (status != FJORD_CODEC_OK) {
        return status;
    }
    size_t written = ZSTD_compress(output->data, output->capacity, input, input_length, level);
    if (ZSTD_isError(written)) {
        return fail(output, FJORD_CODEC_ERROR_NO_MEMORY, ZSTD_getErrorName(written));
    }
    output->length = written;
    return FJORD_CODEC_OK;
}

/* ------------------------------------------------------------- exported -- */

int fjord_decompress(int codec, const uint8_t *input, size_t input_length, size_t limit, fjord_codec_output *output) {
    static const uint8_t empty = 0;
    if (input == NULL) {
        input = &empty; /* zero-length input: every codec reports it as corrupt */
        input_length = 0;
    }
    switch (codec) {
    case FJORD_CODEC_GZIP: return gzip_decompress(input, input_length, limit, output);
    case FJORD_CODEC_SNAPPY: return snappy_decompress(input, input_length, limit, output);
    case FJORD_CODEC_LZ4: return lz4_decompress(input, input_length, limit, output);
    case FJORD_CODEC_ZSTD: return zstd_decompress(input, input_length, limit, output);
    default: return fail(output, FJORD_CODEC_ERROR_UNSUPPORTED, "unsupported compression codec");
    }
}

int fjord_compress(int codec, const uint8_t *input, size_t input_length, int level, fjord_codec_output *output) {
    static const uint8_t empty = 0;
    if (input == NULL) {
        input = &empty;
        input_length = 0;
    }
    switch (codec) {
    case FJORD_CODEC_GZIP: return gzip_compress(input, input_length, level, output);
    case FJORD_CODEC_SNAPPY: return snappy_compress_xerial(input, input_length, output);
    case FJORD_CODEC_LZ4: return lz4_compress(input, input_length, level, output);
    case FJORD_CODEC_ZSTD: return zstd_compress(input, input_length, level, output);
    default: return fail(output, FJORD_CODEC_ERROR_UNSUPPORTED, "unsupported compression codec");
    }
}

/* ------------------------------------------------------ magic 0 and 1 -- */

uint32_t fjord_crc32_ieee(const uint8_t *data, size_t length) {
    uLong crc = crc32(0L, Z_NULL, 0);
    while (length > 0) {
        uInt chunk = length > UINT_MAX ? UINT_MAX : (uInt)length;
        crc = crc32(crc, data, chunk);
        data += chunk;
        length -= chunk;
    }
    return (uint32_t)crc;
}

/* XXH32 (seed 0) of a few bytes: the lz4 frame descriptor's header checksum. liblz4 does not
 * export its copy. */
#define XXH_PRIME1 2654435761U
#define XXH_PRIME2 2246822519U
#define XXH_PRIME3 3266489917U
#define XXH_PRIME4 668265263U
#define XXH_PRIME5 374761393U

static uint32_t xxh_rotl(uint32_t value, int bits) { return (value << bits) | (value >> (32 - bits)); }

static uint32_t xxh_read32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static uint32_t xxh32(const uint8_t *input, size_t length) {
    const uint8_t *p = input;
    const uint8_t *end = input + length;
    uint32_t h;
    if (length >= 16) {
        uint32_t v1 = XXH_PRIME1 + XXH_PRIME2, v2 = XXH_PRIME2, v3 = 0, v4 = 0U - XXH_PRIME1;
        while (end - p >= 16) {
            v1 = xxh_rotl(v1 + xxh_read32(p) * XXH_PRIME2, 13) * XXH_PRIME1;
            v2 = xxh_rotl(v2 + xxh_read32(p + 4) * XXH_PRIME2, 13) * XXH_PRIME1;
            v3 = xxh_rotl(v3 + xxh_read32(p + 8) * XXH_PRIME2, 13) * XXH_PRIME1;
            v4 = xxh_rotl(v4 + xxh_read32(p + 12) * XXH_PRIME2, 13) * XXH_PRIME1;
            p += 16;
        }
        h = xxh_rotl(v1, 1) + xxh_rotl(v2, 7) + xxh_rotl(v3, 12) + xxh_rotl(v4, 18);
    } else {
        h = XXH_PRIME5;
    }
    h += (uint32_t)length;
    while (end - p >= 4) {
        h = xxh_rotl(h + xxh_read32(p) * XXH_PRIME3, 17) * XXH_PRIME4;
        p += 4;
    }
    while (p < end) {
        h = xxh_rotl(h + (*p) * XXH_PRIME5, 11) * XXH_PRIME1;
        p++;
    }
    h ^= h >> 15;
    h *= XXH_PRIME2;
    h ^= h >> 13;
    h *= XXH_PRIME3;
    h ^= h >> 16;
    return h;
}

#define LZ4_FRAME_MAGIC_BYTES 4

/* The length of the frame descriptor after the magic number, without HC: FLG, BD, and the
 * optional content size and dictionary id FLG announces; 0 when the input is too short. */
static size_t lz4_descriptor_length(const uint8_t *frame, size_t length) {
    if (length < LZ4_FRAME_MAGIC_BYTES + 3) {
        return 0;
    }
    uint8_t flags = frame[LZ4_FRAME_MAGIC_BYTES];
    size_t descriptor = 2 + ((flags & 0x08) ? 8 : 0) + ((flags & 0x01) ? 4 : 0);
    return LZ4_FRAME_MAGIC_BYTES + descriptor + 1 <= length ? descriptor : 0;
}

int fjord_lz4_decompress_magic0(const uint8_t *input, size_t input_length, size_t limit, fjord_codec_output *output) {
    size_t descriptor = input == NULL ? 0 : lz4_descriptor_length(input, input_length);
    if (descriptor == 0) {
        return fjord_decompress(FJORD_CODEC_LZ4, input, input_length, limit, output);
    }
    uint8_t *copy = malloc(input_length);
    if (copy == NULL) {
        return fail(output, FJORD_CODEC_ERROR_NO_MEMORY, "out of memory");
    }
    memcpy(copy, input, input_length);
    uint32_t hash = xxh32(copy + LZ4_FRAME_MAGIC_BYTES, descriptor);
    copy[LZ4_FRAME_MAGIC_BYTES + descriptor] = (uint8_t)((hash >> 8) & 0xFF);
    int status = lz4_decompress(copy, input_length, limit, output);
    free(copy);
    return status;
}

int fjord_lz4_compress_magic0(const uint8_t *input, size_t input_length, int level, fjord_codec_output *output) {
    int status = fjord_compress(FJORD_CODEC_LZ4, input, input_length, level, output);
    if (status != FJORD_CODEC_OK) {
        return status;
    }
    size_t descriptor = lz4_descriptor_length(output->data, output->length);
    if (descriptor == 0) {
        return fail(output, FJORD_CODEC_ERROR_CORRUPT, "lz4 frame without a descriptor");
    }
    /* Kafka's KafkaLZ4BlockOutputStream(useBrokenFlagDescriptorChecksum = true). */
    uint32_t hash = xxh32(output->data, LZ4_FRAME_MAGIC_BYTES + descriptor);
    output->data[LZ4_FRAME_MAGIC_BYTES + descriptor] = (uint8_t)((hash >> 8) & 0xFF);
    return FJORD_CODEC_OK;
}

void fjord_codec_output_free(fjord_codec_output *output) {
    free(output->data);
    memset(output, 0, sizeof *output);
}
