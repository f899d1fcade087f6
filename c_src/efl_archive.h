/* The trace archive: a zstd skippable frame holding the header and metadata,
 * then zstd frames of varint records (doc/archive-format.adoc). The writer
 * runs on the flusher thread; the reader serves the folder and the CLI.
 * Neither depends on erl_nif.h. */
#ifndef EFL_ARCHIVE_H
#define EFL_ARCHIVE_H

#include <stddef.h>
#include <stdint.h>

#include "efl_event.h"
#include "efl_status.h"
#include "efl_stop.h"

/* 2.0 added the events of followed calls (EFL_EV_FOLLOW_*): kinds a 1.x
 * reader cannot skip. A 1.x archive has none of them. 2.1: a followed
 * call may name its caller itself: a process spawned for it afterwards
 * (erpc's), which a 2.0 reader leaves unfollowed. 3.0: RECEIVE events
 * (a wait told from a wait for a scheduler), which a 2.x reader cannot
 * skip. */
#define EFL_ARCHIVE_MAJOR 3
#define EFL_ARCHIVE_MINOR 1

/* Record tags. Event records are EFL_REC_EVENT + kind. */
enum efl_record_tag {
    EFL_REC_SYMBOL = 0x01,
    EFL_REC_PROCESS = 0x02,
    EFL_REC_RING = 0x03,
    EFL_REC_DROPS = 0x04,
    EFL_REC_END = 0x05,
    EFL_REC_STOPPED = 0x06,
    EFL_REC_PASS = 0x07,
    EFL_REC_EVENT = 0x10
};

/* Turns raw VM values into text. Writes at most cap bytes, returns the
 * length written. Called on the writer's thread only. */
struct efl_namer {
    void *ctx;
    size_t (*atom)(void *ctx, uint32_t raw, char *buf, size_t cap);
    size_t (*pid)(void *ctx, uint64_t raw, char *buf, size_t cap);
};

struct efl_archive_writer;

/* Creates the archive: a new file (O_EXCL, never through a link), mode
 * 0600. meta: "key=value\n" lines stored in the header. */
efl_status efl_archive_writer_open(struct efl_archive_writer **w, const char *path,
                                   const char *meta, const struct efl_namer *namer);
/* Appends events drained from one ring (oldest first). */
efl_status efl_archive_writer_events(struct efl_archive_writer *w, uint32_t ring,
                                     const struct efl_event *ev, size_t n);
/* Records that `count` more events of that ring were dropped. */
efl_status efl_archive_writer_drops(struct efl_archive_writer *w, uint32_t ring, uint64_t count);
/* Record bytes written since the current frame began. */
size_t efl_archive_writer_frame_bytes(const struct efl_archive_writer *w);
/* Ends the current zstd frame so a reader can use everything written so far. */
efl_status efl_archive_writer_end_frame(struct efl_archive_writer *w);
/* Hands over the modules (raw atoms) the events named so far, in the order
 * first seen: the caller frees the array. */
void efl_archive_writer_take_modules(struct efl_archive_writer *w, uint32_t **raw, size_t *n);
/* Hands over the processes (raw pids) events came from so far, in the
 * order first seen: the caller frees the array. The writer takes no more
 * processes after. */
void efl_archive_writer_take_pids(struct efl_archive_writer *w, uint64_t **raw, size_t *n);
/* Writes the end record and closes the file. Frees w whatever the result. */
efl_status efl_archive_writer_close(struct efl_archive_writer *w, uint64_t *bytes_written);

/* The flusher began a drain pass at ts (ns): every event recorded before
 * it follows in this pass or the next (readers merge up to there). */
efl_status efl_archive_writer_pass(struct efl_archive_writer *w, uint64_t ts);

/* Records that recording stopped early, and why. */
efl_status efl_archive_writer_stopped(struct efl_archive_writer *w, unsigned reason);
/* Archive bytes written so far (the frame being built not counted). */
uint64_t efl_archive_writer_bytes(const struct efl_archive_writer *w);

/* Appends the site table (efl_sites' serialized form) to a closed archive,
 * after its END record, where older readers skip it. */
efl_status efl_archive_append_sites(const char *path, const void *table, size_t len);

/* Closes without the end record (an aborted run). Frees w. */
void efl_archive_writer_abort(struct efl_archive_writer *w);

/* A decoded event: pid, mod and fun are archive ids (0 = none); for a
 * spawn, mod is the new process's id; for a loss, mod is how many events
 * were lost and pid may be 0 (several processes); for IN and OUT of
 * version 3, cpu. */
struct efl_record {
    uint64_t ts;
    uint64_t cpu;   /* IN, OUT (version 3): the thread's CPU time, ns; else 0 */
    uint32_t pid;
    uint32_t mod;
    uint32_t fun;
    uint8_t kind;
    uint8_t arity;
};

/* Callbacks return EFL_OK to go on; any other status stops the read and is
 * returned. Symbol and process ids are dense, starting at 1. Any may be NULL. */
struct efl_archive_visitor {
    void *ctx;
    efl_status (*meta)(void *ctx, const char *line, size_t len);
    efl_status (*symbol)(void *ctx, uint32_t id, const char *s, size_t len);
    efl_status (*process)(void *ctx, uint32_t id, const char *s, size_t len);
    efl_status (*event)(void *ctx, uint32_t ring, const struct efl_record *r);
    efl_status (*drops)(void *ctx, uint32_t ring, uint64_t count);
    efl_status (*pass)(void *ctx, uint64_t ts);
    /* The site table (efl_sites' serialized form), before anything else. */
    efl_status (*sites)(void *ctx, const void *data, size_t len);
    /* The header's version, before its metadata lines. */
    efl_status (*version)(void *ctx, unsigned major, unsigned minor);
};

struct efl_archive_summary {
    unsigned major, minor;
    uint64_t frames;          /* complete zstd frames read */
    uint64_t events;          /* event records read */
    uint64_t drops;           /* sum of drop records */
    int ended;                /* the end record was read */
    int truncated;            /* the file stops before the end record */
    uint64_t declared_events; /* from the end record */
    unsigned stopped;         /* enum efl_stop_reason */
};

/* Reads everything up to the last complete frame. A file cut off mid-write
 * is not an error: summary->truncated says so. */
efl_status efl_archive_read_file(const char *path, const struct efl_archive_visitor *v,
                                 struct efl_archive_summary *summary);
efl_status efl_archive_read_mem(const void *data, size_t len, const struct efl_archive_visitor *v,
                                struct efl_archive_summary *summary);
/* Reads the header only: version and metadata. */
efl_status efl_archive_read_header(const char *path, const struct efl_archive_visitor *v,
                                   struct efl_archive_summary *summary);

#endif
