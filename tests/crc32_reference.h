/* CRC-32 as zlib's crc32 and PNG (IEEE 802.3, reflected), computed bit by
 * bit: written independently of the library's table-driven one, for tests
 * that check checksums or forge files past them. */
#ifndef MLP_TEST_CRC32_REFERENCE_H
#define MLP_TEST_CRC32_REFERENCE_H

#include <stddef.h>
#include <stdint.h>

static inline uint32_t crc32_reference(const unsigned char *p, size_t n)
{
    uint32_t crc = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

#endif
