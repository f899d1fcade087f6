/* Why a run stopped before its end: one list of the reasons, with their
 * values (part of the archive format: append only), their names (the
 * Erlang atoms) and what a partial profile's title says. */
#ifndef EFL_STOP_H
#define EFL_STOP_H

#define EFL_STOP_REASONS(X)                                             \
    X(EFL_STOP_NONE, none, "")                                          \
    X(EFL_STOP_MAX_EVENTS, max_events, "max_events reached")            \
    X(EFL_STOP_MAX_BYTES, max_bytes, "max_bytes reached")               \
    X(EFL_STOP_TIMEOUT, timeout, "timeout")                             \
    X(EFL_STOP_STOPPED, stopped, "eflambe:stop()")

enum efl_stop_reason {
#define EFL_STOP_ENUM(code, name, text) code,
    EFL_STOP_REASONS(EFL_STOP_ENUM)
#undef EFL_STOP_ENUM
    EFL_STOP_END
};

/* The reason's name ("none" for an unknown value). */
static inline const char *efl_stop_reason_name(unsigned reason)
{
    static const char *names[] = {
#define EFL_STOP_NAME(code, name, text) #name,
        EFL_STOP_REASONS(EFL_STOP_NAME)
#undef EFL_STOP_NAME
    };
    return reason < EFL_STOP_END ? names[reason] : "none";
}

/* What a title says of it ("?" for an unknown value). */
static inline const char *efl_stop_reason_text(unsigned reason)
{
    static const char *texts[] = {
#define EFL_STOP_TEXT(code, name, text) text,
        EFL_STOP_REASONS(EFL_STOP_TEXT)
#undef EFL_STOP_TEXT
    };
    return reason < EFL_STOP_END ? texts[reason] : "?";
}

#endif
