/*
 * CRC-32C (Castagnoli) for RecordBatch v2, whose `crc` field covers every
 * byte from `attributes` to the end of the batch (KIP-98). The broker checks
 * it on every produced batch, so the hot path uses the SSE4.2 crc32
 * instruction; the slicing-by-8 table is the portable fallback and the
 * reference the hardware path is tested against.
 */
#include "ckafka_records.h"

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
              crc_table[4][(v >> 24) & 0xffu] ^ crc_table[3][(v >> 32) & 0xffu] ^
              crc_table[2][(v >> 40) & 0xffu] ^ crc_table[1][(v >> 48) & 0xffu] ^ crc_table[0][v >> 56];
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
