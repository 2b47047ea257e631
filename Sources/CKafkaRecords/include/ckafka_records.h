/*
 * CKafkaRecords — the C half of the KafkaRecords module: the compression
 * codecs Kafka record batches use (gzip, snappy, lz4, zstd).
 *
 * Everything exported is prefixed `fjord_`; everything else in the .c files
 * is `static`. Swift is the only caller; no function keeps a pointer it was
 * given after it returns.
 */
#ifndef CKAFKA_RECORDS_H
#define CKAFKA_RECORDS_H

#include <stddef.h>
#include <stdint.h>

/* CRC-32C lives in its own target (Backends/crc32c), shared with the storage backends. */
#include "fjord_crc32c.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Compression codecs                                                        */
/* ------------------------------------------------------------------------ */

/* Codec ids as in the RecordBatch attributes (bits 0-2). */
enum {
    FJORD_CODEC_NONE = 0,
    FJORD_CODEC_GZIP = 1,
    FJORD_CODEC_SNAPPY = 2,
    FJORD_CODEC_LZ4 = 3,
    FJORD_CODEC_ZSTD = 4,
};

/* Status codes returned by fjord_decompress / fjord_compress. */
enum {
    FJORD_CODEC_OK = 0,
    /* The input is not a valid stream of this codec (garbage, truncated, trailing bytes). */
    FJORD_CODEC_ERROR_CORRUPT = -1,
    /* The output would be larger than the caller's limit. */
    FJORD_CODEC_ERROR_LIMIT = -2,
    /* malloc/realloc failed, or a codec library could not allocate its context. */
    FJORD_CODEC_ERROR_NO_MEMORY = -3,
    /* The codec id is not one of FJORD_CODEC_GZIP..FJORD_CODEC_ZSTD. */
    FJORD_CODEC_ERROR_UNSUPPORTED = -4,
};

/*
 * An output buffer owned by C: `data` was allocated with malloc and holds
 * `length` valid bytes. The caller releases it with fjord_codec_output_free
 * (also after a failure: the function may have allocated before failing).
 * `detail` is NULL or a static, NUL-terminated string that says why a call
 * failed (from the codec library where it has one).
 */
typedef struct fjord_codec_output {
    uint8_t *data;
    size_t length;
    size_t capacity;
    const char *detail;
} fjord_codec_output;

/*
 * Decompresses `input` (`input_length` bytes) of `codec` into a new buffer in
 * `*output` (which must be zero-initialised). Never writes or allocates more
 * than `limit` + 1 bytes of output: a stream that inflates beyond `limit`
 * fails with FJORD_CODEC_ERROR_LIMIT.
 *
 * gzip: zlib inflate with gzip/zlib header auto-detection; concatenated gzip
 *       members are accepted.
 * snappy: xerial framing (magic 0x82 "SNAPPY" 0x00, version, compat, then
 *       blocks of big-endian int32 length + raw snappy), as the Java client
 *       writes it, or one raw snappy block, as librdkafka may send.
 * lz4:  the LZ4 frame format (one or more concatenated frames).
 * zstd: one or more zstd frames, with or without a content size.
 * Any bytes after the last complete frame/stream are an error.
 */
int fjord_decompress(int codec, const uint8_t *input, size_t input_length, size_t limit,
                     fjord_codec_output *output);

/*
 * Compresses `input` with `codec` into a new buffer in `*output` (which must
 * be zero-initialised): gzip (level 1-9, 0 = default 6), snappy xerial-framed
 * in 32 KiB blocks like the Java client, lz4 frame with independent 64 KiB
 * blocks like the Java client, zstd (level 1-22, 0 = default 3).
 */
int fjord_compress(int codec, const uint8_t *input, size_t input_length, int level,
                   fjord_codec_output *output);

/* Releases `output->data` and resets the struct to zero. Safe to call twice. */
void fjord_codec_output_free(fjord_codec_output *output);

#ifdef __cplusplus
}
#endif

#endif /* CKAFKA_RECORDS_H */
