/*
 * CRC-32C (Castagnoli) for RecordBatch v2, whose `crc` field covers every
 * byte from `attributes` to the end of the batch (KIP-98). The broker checks
 * it on every produced batch, so the hot path uses the SSE4.2 crc32
 * instruction; the slicing-by-8 table is the portable fallback and the
 * reference the hardware path is tested against.
 */
#include "fjord_crc32c.h"

#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <nmmintrin.h>
#define FJORD_CRC32C_X86 1
#else
#define FJORD_CRC32C_X86 0
#endif

/* Reflected form of the Castagnoli polynomial 0x1EDC6F41. */
#define CRC32C_POLYNOMIAL 0x82F63B78u

/* crc_table[k][b]: the CRC of byte b followed by k zero bytes (slicing-by-8). */
static uint32_t crc_table[8][256];
static int hardware_available;

/*
 * The crc32 instruction has a latency of three cycles but issues every cycle,
 * so the hardware path runs three independent streams over three adjacent
 * blocks and then merges them: a CRC register is linear over GF(2), so
 * crc(A || B) = shift(crc(A), |B|) ^ crc0(B), where shift appends |B| zero
 * bytes. These tables apply that shift for the two block sizes, one byte of
 * the register at a time (the method of Mark Adler's crc32c.c).
 */
#define CRC32C_LONG_BLOCK_BYTES  8192
#define CRC32C_SHORT_BLOCK_BYTES 256
static uint32_t crc_shift_long[4][256];
static uint32_t crc_shift_short[4][256];

/* The product of a 32x32 GF(2) matrix (one column per word) and a vector. */
static uint32_t gf2_matrix_times(const uint32_t *matrix, uint32_t vector) {
    uint32_t sum = 0;
    for (int column = 0; vector != 0; column++, vector >>= 1) {
        if (vector & 1u) {
            sum ^= matrix[column];
        }
    }
    return sum;
}

static void gf2_matrix_square(uint32_t *square, const uint32_t *matrix) {
    for (int column = 0; column < 32; column++) {
        square[column] = gf2_matrix_times(matrix, matrix[column]);
    }
}

/* Fills `shift` so that crc_shift(shift, crc) is crc followed by `byte_count` zero bytes (a power of two). */
static void crc32c_build_shift_table(uint32_t shift[4][256], size_t byte_count) {
    uint32_t odd[32];
    uint32_t even[32];
    /* The operator for one zero bit: shift right, folding the polynomial in when bit 0 falls out. */
    odd[0] = CRC32C_POLYNOMIAL;
    for (int column = 1; column < 32; column++) {
        odd[column] = 1u << (column - 1);
    }
    gf2_matrix_square(even, odd); /* two zero bits */
    gf2_matrix_square(odd, even); /* four zero bits */
    gf2_matrix_square(even, odd); /* one zero byte */
    const uint32_t *result = even;
    for (size_t bytes = 1; bytes < byte_count; bytes <<= 1) {
        if (result == even) {
            gf2_matrix_square(odd, even);
            result = odd;
        } else {
            gf2_matrix_square(even, odd);
            result = even;
        }
    }
    for (uint32_t byte = 0; byte < 256; byte++) {
        for (int k = 0; k < 4; k++) {
            shift[k][byte] = gf2_matrix_times(result, byte << (8 * k));
        }
    }
}

static inline uint32_t crc_shift(uint32_t shift[4][256], uint32_t crc) {
    return shift[0][crc & 0xffu] ^ shift[1][(crc >> 8) & 0xffu] ^ shift[2][(crc >> 16) & 0xffu] ^ shift[3][crc >> 24];
}

static uint64_t load_le64(const uint8_t *p) {
    uint64_t value;
    memcpy(&value, p, sizeof value);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    value = __builtin_bswap64(value);
#endif
    return value;
}

/*
 * Runs at load time, before any Swift code can call in, so the table and the
 * dispatch flag are written exactly once and only read afterwards.
 */
__attribute__((constructor)) static void crc32c_initialize(void) {
    for (uint32_t byte = 0; byte < 256; byte++) {
        uint32_t crc = byte;
        for (int bit = 0; bit < 8; bit++) {
            crc = (crc & 1u) ? (crc >> 1) ^ CRC32C_POLYNOMIAL : crc >> 1;
        }
        crc_table[0][byte] = crc;
    }
    for (int k = 1; k < 8; k++) {
        for (int byte = 0; byte < 256; byte++) {
            uint32_t previous = crc_table[k - 1][byte];
            crc_table[k][byte] = (previous >> 8) ^ crc_table[0][previous & 0xffu];
        }
    }
    crc32c_build_shift_table(crc_shift_long, CRC32C_LONG_BLOCK_BYTES);
    crc32c_build_shift_table(crc_shift_short, CRC32C_SHORT_BLOCK_BYTES);
#if FJORD_CRC32C_X86
    /* Constructors may run before the compiler's own CPU probe; ask it to probe now. */
    __builtin_cpu_init();
    hardware_available = __builtin_cpu_supports("sse4.2") ? 1 : 0;
#else
    hardware_available = 0;
#endif
}

uint32_t fjord_crc32c_portable(uint32_t seed, const void *bytes, size_t length) {
    const uint8_t *p = bytes;
    uint32_t crc = ~seed;
    /* Bytes until p is 8-aligned, so the 8-byte loads below are aligned. */
    while (length > 0 && ((uintptr_t)p & 7u) != 0) {
        crc = (crc >> 8) ^ crc_table[0][(crc ^ *p++) & 0xffu];
        length--;
    }
    while (length >= 8) {
        uint64_t v = load_le64(p) ^ crc;
        crc = crc_table[7][v & 0xffu] ^ crc_table[6][(v >> 8) & 0xffu] ^ crc_table[5][(v >> 16) & 0xffu] ^
              crc_table[4][(v >> 24) & 0xffu] ^ crc_table[3][(v >> 32) & 0xffu] ^ crc_table[2][(v >> 40) & 0xffu] ^
              crc_table[1][(v >> 48) & 0xffu] ^ crc_table[0][v >> 56];
        p += 8;
        length -= 8;
    }
    while (length > 0) {
        crc = (crc >> 8) ^ crc_table[0][(crc ^ *p++) & 0xffu];
        length--;
    }
    return ~crc;
}

#if FJORD_CRC32C_X86
__attribute__((target("sse4.2"))) static uint32_t crc32c_sse42(uint32_t seed, const uint8_t *p, size_t length) {
    uint32_t crc32 = ~seed;
    while (length > 0 && ((uintptr_t)p & 7u) != 0) {
        crc32 = _mm_crc32_u8(crc32, *p++);
        length--;
    }
#if defined(__x86_64__)
    uint64_t crc64 = crc32;
    /* Three interleaved streams over adjacent blocks, merged with the shift tables (see above). */
    while (length >= 3 * CRC32C_LONG_BLOCK_BYTES) {
        uint64_t crc1 = 0;
        uint64_t crc2 = 0;
        const uint8_t *block_end = p + CRC32C_LONG_BLOCK_BYTES;
        do {
            uint64_t v0, v1, v2;
            memcpy(&v0, p, 8);
            memcpy(&v1, p + CRC32C_LONG_BLOCK_BYTES, 8);
            memcpy(&v2, p + 2 * CRC32C_LONG_BLOCK_BYTES, 8);
            crc64 = _mm_crc32_u64(crc64, v0);
            crc1 = _mm_crc32_u64(crc1, v1);
            crc2 = _mm_crc32_u64(crc2, v2);
            p += 8;
        } while (p < block_end);
        crc64 = crc_shift(crc_shift_long, (uint32_t)crc64) ^ (uint32_t)crc1;
        crc64 = crc_shift(crc_shift_long, (uint32_t)crc64) ^ (uint32_t)crc2;
        p += 2 * CRC32C_LONG_BLOCK_BYTES;
        length -= 3 * CRC32C_LONG_BLOCK_BYTES;
    }
    while (length >= 3 * CRC32C_SHORT_BLOCK_BYTES) {
        uint64_t crc1 = 0;
        uint64_t crc2 = 0;
        const uint8_t *block_end = p + CRC32C_SHORT_BLOCK_BYTES;
        do {
            uint64_t v0, v1, v2;
            memcpy(&v0, p, 8);
            memcpy(&v1, p + CRC32C_SHORT_BLOCK_BYTES, 8);
            memcpy(&v2, p + 2 * CRC32C_SHORT_BLOCK_BYTES, 8);
            crc64 = _mm_crc32_u64(crc64, v0);
            crc1 = _mm_crc32_u64(crc1, v1);
            crc2 = _mm_crc32_u64(crc2, v2);
            p += 8;
        } while (p < block_end);
        crc64 = crc_shift(crc_shift_short, (uint32_t)crc64) ^ (uint32_t)crc1;
        crc64 = crc_shift(crc_shift_short, (uint32_t)crc64) ^ (uint32_t)crc2;
        p += 2 * CRC32C_SHORT_BLOCK_BYTES;
        length -= 3 * CRC32C_SHORT_BLOCK_BYTES;
    }
    while (length >= 8) {
        uint64_t v;
        memcpy(&v, p, sizeof v);
        crc64 = _mm_crc32_u64(crc64, v);
        p += 8;
        length -= 8;
    }
    crc32 = (uint32_t)crc64;
#endif
    while (length >= 4) {
        uint32_t v;
        memcpy(&v, p, sizeof v);
        crc32 = _mm_crc32_u32(crc32, v);
        p += 4;
        length -= 4;
    }
    while (length > 0) {
        crc32 = _mm_crc32_u8(crc32, *p++);
        length--;
    }
    return ~crc32;
}
#endif

uint32_t fjord_crc32c_hardware(uint32_t seed, const void *bytes, size_t length) {
#if FJORD_CRC32C_X86
    if (hardware_available) {
        return crc32c_sse42(seed, bytes, length);
    }
#endif
    /* Callers check fjord_crc32c_hardware_available() first; stay correct if they did not. */
    return fjord_crc32c_portable(seed, bytes, length);
}

int fjord_crc32c_hardware_available(void) { return hardware_available; }

uint32_t fjord_crc32c(uint32_t seed, const void *bytes, size_t length) {
#if FJORD_CRC32C_X86
    if (hardware_available) {
        return crc32c_sse42(seed, bytes, length);
    }
#endif
    return fjord_crc32c_portable(seed, bytes, length);
}
