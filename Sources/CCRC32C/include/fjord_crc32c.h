/*
 * CRC-32C (Castagnoli) for Fjord: the checksum of Kafka RecordBatch v2 and of the durable storage
 * backends' frames. One implementation, shared by the KafkaRecords module (CKafkaRecords) and the
 * C backends, which may not depend on Swift modules. Exported symbols are prefixed `fjord_`.
 */
#ifndef FJORD_CRC32C_H
#define FJORD_CRC32C_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Reflected polynomial 0x82F63B78. */

/*
 * CRC-32C of `length` bytes at `bytes`, continuing from `seed` (the result of
 * a previous call, or 0 to start). Pre- and post-inversion are applied, so
 * `fjord_crc32c(fjord_crc32c(0, a, n), b, m)` equals the CRC of a followed by
 * b. Uses the CPU's crc32 instruction when available (chosen once, at load
 * time), the portable slicing-by-8 table otherwise. `bytes` may be NULL when
 * `length` is 0.
 */
uint32_t fjord_crc32c(uint32_t seed, const void *bytes, size_t length);

/* The portable (table-driven, slicing-by-8) implementation, always available. */
uint32_t fjord_crc32c_portable(uint32_t seed, const void *bytes, size_t length);

/*
 * The hardware implementation (SSE4.2 `crc32`). Only call it when
 * fjord_crc32c_hardware_available() returns non-zero.
 */
uint32_t fjord_crc32c_hardware(uint32_t seed, const void *bytes, size_t length);

/* Non-zero when this CPU has the crc32 instruction and fjord_crc32c uses it. */
int fjord_crc32c_hardware_available(void);

#ifdef __cplusplus
}
#endif
#endif
