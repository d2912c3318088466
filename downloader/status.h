/* status.h - the outcome classes every layer of the downloader speaks.
 *
 * An origin's answer is reduced to one of these as early as possible (HTTP layer, source),
 * so the CLI maps them to exit codes and the mount to errnos from one table each. */
#ifndef DL_STATUS_H
#define DL_STATUS_H

enum dl_status {
    DL_OK = 0,
    DL_ERR_NOTFOUND,  /* repo, revision, bucket or key does not exist */
    DL_ERR_ACCESS,    /* gated, unauthorized, forbidden, bad credentials */
    DL_ERR_TRANSIENT, /* network or server failure, still failing after every retry */
    DL_ERR_INTEGRITY, /* bytes do not match the published digest (twice) */
    DL_ERR_STALE,     /* the object changed on the origin since it was listed */
    DL_ERR_INVALID,   /* bad argument or configuration, or a malformed origin answer */
    DL_ERR_LOCAL,     /* local filesystem failure (disk full, permissions) */
    DL_ERR_CANCELLED, /* shutdown asked us to stop */
};

/* Short lowercase name for logs and metrics labels ("not_found", "transient", ...). */
const char *dl_status_name(enum dl_status s);
/* aibrix_download exit status (SPEC §1): 0 ok, 2 bad arguments, 3 not found or access
 * denied, 4 gave up after retries, 5 integrity. Local failures and stale objects exit 4. */
int dl_status_exit_code(enum dl_status s);
/* The errno a mount returns for it (SPEC §4): ENOENT, EACCES, EIO, ESTALE, ... */
int dl_status_errno(enum dl_status s);

#endif
