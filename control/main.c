/* main.c - aibrix_runtime: one process serving the HTTP control plane, the metrics exporter and
 * the FUSE model filesystem (SPEC §1).
 *
 * Start-up order: the HTTP listener first (so /healthz answers at once), then the FUSE mount
 * (so the mount point exists early), then the named mounts of --model / AIBRIX_MODELS, listed
 * on a thread of their own while /ready says "not ready". Signals are taken by sigwait on the
 * main thread; SIGTERM/SIGINT stop intake, finish in-flight requests, unmount and exit 0,
 * within 10 s even when readers are blocked on a stalled origin. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <unistd.h>

#include "../common/env.h"
#include "../common/log.h"
#include "../fs/fs.h"
#include "runtime.h"
#include "server.h"
#include "version.h"

#define SHUTDOWN_BUDGET_S 10

static void usage(FILE *out)
{
    fprintf(out, "usage: aibrix_runtime [--host 0.0.0.0] [--port 8080] [--mount-point DIR]\n"
                 "                      [--cache-dir DIR] [--cache-max-bytes N]\n"
                 "                      [--model NAME=URI[,opt=val...]]... [--api-key-file FILE]\n"
                 "                      [--log-level debug|info|warn|error] [--version] [--help]\n"
                 "\n"
                 "Mount options: allow_file_suffix=a;b  allow_patterns=p;q  ignore_patterns=p;q\n"
                 "               prefetch=all|open|none (default all)\n"
                 "Environment: AIBRIX_MODELS=\"name=uri;name2=uri2\", INFERENCE_ENGINE, "
                 "INFERENCE_ENGINE_ENDPOINT,\n"
                 "             DOWNLOADER_*, HF_*, AWS_*, TOS_* (see the man page and docs/).\n");
}

static void default_cache_dir(char *out, size_t outlen)
{
    const char *xdg = cm_env_str("XDG_CACHE_HOME");
    const char *home = cm_env_str("HOME");
    if (geteuid() == 0)
        snprintf(out, outlen, "/var/cache/aibrix");
    else if (xdg)
        snprintf(out, outlen, "%s/aibrix", xdg);
    else
        snprintf(out, outlen, "%s/.cache/aibrix", home ? home : "/tmp");
}

/* AIBRIX_MODELS: "name=uri[,opts];name2=uri2". A ';' also separates the items of a list
 * option (allow_file_suffix=json;safetensors), so a segment starts a new model only when it
 * has a '=' before any ','. */
static int split_models_env(const char *env, struct rt_config *cfg)
{
    char *copy = strdup(env), *save = NULL;
    if (!copy)
        return -ENOMEM;
    char cur[8192] = "";
    for (char *seg = strtok_r(copy, ";", &save); seg; seg = strtok_r(NULL, ";", &save)) {
        char *eq = strchr(seg, '='), *comma = strchr(seg, ',');
        bool starts = eq && (!comma || eq < comma);
        if (starts && cur[0]) {
            if (rt_config_add_model(cfg, cur) != 0)
                break;
            cur[0] = '\0';
        }
        if (cur[0])
            strncat(cur, ";", sizeof cur - strlen(cur) - 1);
        strncat(cur, seg, sizeof cur - strlen(cur) - 1);
    }
    int rc = cur[0] ? rt_config_add_model(cfg, cur) : 0;
    free(copy);
    return rc;
}

static int parse_args(int argc, char **argv, struct rt_config *cfg)
{
    enum { O_HOST = 256, O_PORT, O_MNT, O_CACHE, O_MAX, O_MODEL, O_KEY, O_LOG, O_VERSION };
    static const struct option longopts[] = {
        {"host", required_argument, NULL, O_HOST},
        {"port", required_argument, NULL, O_PORT},
        {"mount-point", required_argument, NULL, O_MNT},
        {"cache-dir", required_argument, NULL, O_CACHE},
        {"cache-max-bytes", required_argument, NULL, O_MAX},
        {"model", required_argument, NULL, O_MODEL},
        {"api-key-file", required_argument, NULL, O_KEY},
        {"log-level", required_argument, NULL, O_LOG},
        {"version", no_argument, NULL, O_VERSION},
        {"help", no_argument, NULL, 'h'},
        {0, 0, 0, 0},
    };
    int c;
    uint64_t v;
    enum cm_log_level level;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case O_HOST:
            cfg->host = optarg;
            break;
        case O_PORT:
            if (cm_parse_u64(optarg, &v) != 0 || v == 0 || v > 65535) {
                fprintf(stderr, "aibrix_runtime: --port must be 1-65535\n");
                return 2;
            }
            cfg->port = (unsigned)v;
            break;
        case O_MNT:
            cfg->mount_point = optarg;
            break;
        case O_CACHE:
            snprintf(cfg->cache_dir, sizeof cfg->cache_dir, "%s", optarg);
            break;
        case O_MAX:
            if (cm_parse_size(optarg, &cfg->cache_max_bytes) != 0) {
                fprintf(stderr, "aibrix_runtime: --cache-max-bytes must be a size (bytes, or "
                                "with K/M/G/T)\n");
                return 2;
            }
            break;
        case O_MODEL:
            if (rt_config_add_model(cfg, optarg) != 0)
                return 2;
            break;
        case O_KEY:
            cfg->api_key_file = optarg;
            break;
        case O_LOG:
            if (cm_log_parse_level(optarg, &level) != 0) {
                fprintf(stderr, "aibrix_runtime: --log-level is debug, info, warn or error\n");
                return 2;
            }
            cm_log_set_level(level);
            break;
        case O_VERSION:
            printf("aibrix_runtime %s (%s)\n", AIBRIX_VERSION, AIBRIX_GIT_DESCRIBE);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "aibrix_runtime: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    const char *env = cm_env_str("AIBRIX_MODELS");
    if (env && split_models_env(env, cfg) != 0)
        return 2;
    if (cfg->nmodels && !cfg->mount_point) {
        fprintf(stderr, "aibrix_runtime: --model and AIBRIX_MODELS need --mount-point\n");
        return 2;
    }
    return -1;
}

/* Many files under prefetch=all hold two descriptors each: allow as many as we may. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* If shutdown overruns its budget, detach the mount and leave anyway. */
static void *watchdog(void *arg)
{
    const char *mp = arg;
    sleep(SHUTDOWN_BUDGET_S - 1);
    cm_error("runtime", "shutdown took longer than %d s; detaching the mount and exiting",
             SHUTDOWN_BUDGET_S);
    if (mp)
        umount2(mp, MNT_DETACH);
    _exit(0);
}

int main(int argc, char **argv)
{
    struct rt_config cfg = {.host = "0.0.0.0", .port = 8080};
    enum cm_log_level level;
    char err[1024];

    if (cm_log_parse_level(cm_env_str("AIBRIX_LOG_LEVEL"), &level) == 0)
        cm_log_set_level(level);
    default_cache_dir(cfg.cache_dir, sizeof cfg.cache_dir);
    int code = parse_args(argc, argv, &cfg);
    if (code >= 0) {
        rt_config_free(&cfg);
        return code;
    }

    /* every thread inherits this mask; only sigwait below sees the signals */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();

    struct runtime *rt = rt_start(&cfg, err, sizeof err);
    if (!rt) {
        fprintf(stderr, "aibrix_runtime: %s\n", err);
        rt_config_free(&cfg);
        return 1;
    }
    int sig = 0;
    do {
        sigwait(&sigs, &sig);
    } while (sig == SIGHUP);
    cm_info("runtime", "signal %d: shutting down", sig);
    pthread_t wd;
    if (pthread_create(&wd, NULL, watchdog, (void *)cfg.mount_point) == 0)
        pthread_detach(wd);
    rt_stop(rt);
    rt_config_free(&cfg);
    cm_info("runtime", "bye");
    return 0;
}
