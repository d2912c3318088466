/* status.c - the outcome table: one row per dl_status, with its name, exit code and errno. */
#include "status.h"

#include <errno.h>

static const struct {
    const char *name;
    int exit_code;
    int err;
} table[] = {
    [DL_OK] = {"ok", 0, 0},
    [DL_ERR_NOTFOUND] = {"not_found", 3, ENOENT},
    [DL_ERR_ACCESS] = {"access_denied", 3, EACCES},
    [DL_ERR_TRANSIENT] = {"transient", 4, EIO},
    [DL_ERR_INTEGRITY] = {"integrity", 5, EIO},
    [DL_ERR_STALE] = {"stale", 4, ESTALE},
    [DL_ERR_INVALID] = {"invalid", 2, EIO},
    [DL_ERR_LOCAL] = {"local_io", 4, EIO},
    [DL_ERR_CANCELLED] = {"cancelled", 4, EINTR},
};

const char *dl_status_name(enum dl_status s)
{
    return table[s].name;
}

int dl_status_exit_code(enum dl_status s)
{
    return table[s].exit_code;
}

int dl_status_errno(enum dl_status s)
{
    return table[s].err;
}
