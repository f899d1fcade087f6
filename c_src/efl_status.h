/* Status codes shared by the C library (ring, archive, folder, writers).
 * Library functions return an efl_status and propagate failures with the two
 * macros below; the NIF turns a status into {error, {Atom, Detail}}. */
#ifndef EFL_STATUS_H
#define EFL_STATUS_H

#define EFL_STATUS_LIST(X)                                              \
    X(EFL_OK, ok, "no error")                                           \
    X(EFL_ERR_NOMEM, enomem, "out of memory")                           \
    X(EFL_ERR_IO, io_error, "cannot read or write the file")           \
    X(EFL_ERR_EMPTY, empty_archive, "the file is empty")                \
    X(EFL_ERR_NOT_ARCHIVE, not_an_archive, "not an eflambe trace archive") \
    X(EFL_ERR_VERSION, unsupported_version,                             \
      "archive written by a newer major version of eflambe")            \
    X(EFL_ERR_CORRUPT, corrupt_archive, "the archive is damaged")       \
    X(EFL_ERR_ZSTD, zstd_error, "zstd failed")                          \
    X(EFL_ERR_LIMIT, limit_exceeded, "a size limit was exceeded")       \
    X(EFL_ERR_ARG, bad_argument, "bad argument")

typedef enum {
#define EFL_STATUS_ENUM(code, atom, text) code,
    EFL_STATUS_LIST(EFL_STATUS_ENUM)
#undef EFL_STATUS_ENUM
} efl_status;

/* Short snake_case name, used as the Erlang error atom. */
const char *efl_status_atom(efl_status s);
/* One-line English description, used by the CLI. */
const char *efl_status_text(efl_status s);

#define EFL_RETURN_ERROR_IF(cond, err)                                  \
    do {                                                                \
        if (cond)                                                       \
            return (err);                                               \
    } while (0)

#define EFL_FORWARD_IF_ERROR(expr)                                      \
    do {                                                                \
        efl_status efl_status_ = (expr);                                \
        if (efl_status_ != EFL_OK)                                      \
            return efl_status_;                                         \
    } while (0)

#endif
