/* creds_probe.c - test tool: resolve S3 credentials through dl_creds from this process's
 * environment and print what was found, never the secret key. Driven by
 * tests/integration/test_creds.py.
 *
 *   creds_probe [-d] [-n N] [-j THREADS] [-a AK -s SK [-t TOKEN]]
 *     -d  debug logging
 *     -n  call dl_creds_get N times (default 1), one output line per call
 *     -j  do that from THREADS threads at once, sharing one provider (default 1)
 *     -a/-s/-t  explicit credentials passed to dl_creds_new
 *
 * Prints "provider=<name> access_key=<ak> session_token_len=<n> expires=<unix>" per call;
 * on failure prints the error (with rc=<negative errno> when dl_creds_get failed) on stderr
 * and exits 3. */
#include "../../common/log.h"
#include "../../downloader/creds.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_THREADS 64

struct worker {
    pthread_t thread;
    struct dl_creds_provider *provider;
    long calls;
    int rc;
    char err[1024];
};

static void *work(void *arg)
{
    struct worker *w = arg;
    for (long i = 0; i < w->calls && w->rc == 0; i++) {
        struct dl_aws_creds c;
        w->rc = dl_creds_get(w->provider, &c, w->err, sizeof w->err);
        if (w->rc == 0)
            printf("provider=%s access_key=%s session_token_len=%zu expires=%lld\n", c.provider,
                   c.access_key, strlen(c.session_token), (long long)c.expires);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    const char *ak = NULL, *sk = NULL, *token = NULL;
    long calls = 1, threads = 1;
    int opt;
    while ((opt = getopt(argc, argv, "dn:j:a:s:t:")) != -1) {
        switch (opt) {
        case 'd':
            cm_log_set_level(CM_LOG_DEBUG);
            break;
        case 'n':
            calls = strtol(optarg, NULL, 10);
            break;
        case 'j':
            threads = strtol(optarg, NULL, 10);
            break;
        case 'a':
            ak = optarg;
            break;
        case 's':
            sk = optarg;
            break;
        case 't':
            token = optarg;
            break;
        default:
            threads = 0;
            break;
        }
    }
    if (threads < 1 || threads > MAX_THREADS || calls < 1) {
        fprintf(stderr, "usage: creds_probe [-d] [-n N] [-j THREADS] [-a AK -s SK [-t TOKEN]]\n");
        return 2;
    }

    char err[1024] = "";
    struct dl_creds_provider *p = dl_creds_new(ak, sk, token, err, sizeof err);
    if (!p) {
        fprintf(stderr, "creds_probe: %s\n", err);
        return 3;
    }
    struct worker w[MAX_THREADS] = {0};
    int status = 0;
    for (long i = 0; i < threads; i++) {
        w[i].provider = p;
        w[i].calls = calls;
        if (pthread_create(&w[i].thread, NULL, work, &w[i]) != 0) {
            fprintf(stderr, "creds_probe: pthread_create failed\n");
            threads = i;
            status = 3;
        }
    }
    for (long i = 0; i < threads; i++) {
        pthread_join(w[i].thread, NULL);
        if (w[i].rc < 0) {
            fprintf(stderr, "creds_probe: rc=%d (%s): %s\n", w[i].rc, strerror(-w[i].rc), w[i].err);
            status = 3;
        }
    }
    dl_creds_free(p);
    return status;
}
