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
int fjord_decompress(int codec, const uint8_t *input, size_t input_length, size_t limit, fjord_codec_output *output);

/*
 * Compresses `input` with `codec` into a new buffer in `*output` (which must
 * be zero-initialised): gzip (level 1-9, 0 = default 6), snappy xerial-framed
 * in 32 KiB blocks like the Java client, lz4 frame with independent 64 KiB
 * blocks like the Java client, zstd (level 1-22, 0 = default 3).
 */
int fjord_compress(int codec, const uint8_t *input, size_t input_length, int level, fjord_codec_output *output);

/* ------------------------------------------------------------------------ */
/* Message formats v0 and v1 (magic 0 and 1, before Kafka 0.11)             */
/* ------------------------------------------------------------------------ */

/* CRC-32 (IEEE 802.3, zlib's crc32) of `length` bytes: the checksum of a magic 0/1 message. */
uint32_t fjord_crc32_ieee(const uint8_t *data, size_t length);

/*
 * Decompresses an lz4 frame written for a magic 0 message. Kafka before 0.10 computed the
 * frame descriptor's header checksum (HC) over the magic number as well as the descriptor, and
 * Kafka ignores HC when it reads magic 0 messages: the frame is decompressed with its HC
 * recomputed the standard way (on a copy), so either checksum is accepted. Otherwise as
 * fjord_decompress with FJORD_CODEC_LZ4.
 */
int fjord_lz4_decompress_magic0(const uint8_t *input, size_t input_length, size_t limit, fjord_codec_output *output);

/*
 * Compresses like fjord_compress with FJORD_CODEC_LZ4 and then writes the frame's header
 * checksum the way Kafka writes it for magic 0 messages (over the magic number and the
 * descriptor), which is what readers of magic 0 lz4 messages of that era verify.
 */
int fjord_lz4_compress_magic0(const uint8_t *input, size_t input_length, int level, fjord_codec_output *output);

/* Releases `output->data` and resets the struct to zero. Safe to call twice. */
void fjord_codec_output_free(fjord_codec_output *output);

#ifdef __cplusplus
}
#endif

#endif /* CKAFKA_RECORDS_H */
