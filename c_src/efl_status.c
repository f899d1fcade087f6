/* Names and texts of the status codes (efl_status.h). */
#include "efl_status.h"

const char *efl_status_atom(efl_status s)
{
    switch (s) {
#define EFL_STATUS_CASE(code, atom, text) case code: return #atom;
        EFL_STATUS_LIST(EFL_STATUS_CASE)
#undef EFL_STATUS_CASE
    }
    return "unknown_error";
}

const char *efl_status_text(efl_status s)
{
    switch (s) {
#define EFL_STATUS_CASE(code, atom, text) case code: return text;
        EFL_STATUS_LIST(EFL_STATUS_CASE)
#undef EFL_STATUS_CASE
    }
    return "unknown error";
}
