/* The trace archive's layout, shared by its writer (efl_archive_write.c)
 * and its reader (efl_archive_read.c): the constants and limits of
 * doc/archive-format.adoc, and which fields an event record carries. */
#ifndef EFL_ARCHIVE_FORMAT_H
#define EFL_ARCHIVE_FORMAT_H

#include <stdint.h>

#include "efl_event.h"

#define HEADER_MAGIC 0x184D2A5Eu   /* a zstd skippable frame */
#define HEADER_TAG "EFLAMBE"       /* 8 bytes with its NUL */
#define HEADER_MAX (1u << 20)
/* The site table, appended after the END record: a skippable frame holding
 * a zstd frame of the table, then a locator giving its offset (so a reader
 * finds it before streaming the events). */
#define SITES_MAGIC 0x184D2A5Fu
#define SITES_TAG "EFLSITES"
#define LOCATOR_TAG "EFLSITE@"
#define LOCATOR_BYTES 24
#define SITES_MAX (64u << 20)
/* Frame size bounds what a reader holds in memory at once. */
#define FRAME_RECORD_BYTES (1u << 20)
#define FRAME_DECODED_MAX (64u << 20)
#define COMPRESS_CHUNK (128u << 10)
#define NAME_MAX_BYTES 1024
#define RING_MAX 65535u
/* Keeps symbol ids small enough for the folder's 64-bit frame keys. */
#define IDS_MAX (1u << 24)

/* From version 3, IN and OUT carry the thread's CPU time, not a function. */
static inline int has_cpu(unsigned kind, unsigned major)
{
    return major >= 3 && (kind == EFL_EV_IN || kind == EFL_EV_OUT);
}

static inline int has_mfa(unsigned kind, unsigned major)
{
    return kind != EFL_EV_GC_START && kind != EFL_EV_GC_END && kind != EFL_EV_LOST &&
           kind != EFL_EV_FOLLOW_END && kind != EFL_EV_RECEIVE && !efl_event_names_process(kind) &&
           !has_cpu(kind, major);
}

static inline void put_le32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static inline uint32_t get_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline void put_le64(unsigned char *p, uint64_t v)
{
    put_le32(p, (uint32_t)v);
    put_le32(p + 4, (uint32_t)(v >> 32));
}

static inline uint64_t get_le64(const unsigned char *p)
{
    return get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}

#endif
