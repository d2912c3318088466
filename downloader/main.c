/* main.c - aibrix_download, the drop-in for `python -m aibrix.downloader` (SPEC §1).
 *
 * Parses arguments and --download-extra-config, lists the source, filters, downloads with
 * dl_download, and prints the model directory as the last line of stdout. Everything else
 * goes to stderr. Exit status: 0 done, 2 bad arguments, 3 not found / access denied, 4 gave
 * up after retries, 5 integrity failure. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/env.h"
#include "../common/fsutil.h"
#include "../common/log.h"
#include "../common/names.h"
#include "../common/uri.h"
#include "download.h"
#include "fetch.h"
#include "source.h"
#include "version.h"

#define EXIT_USAGE 2

struct options {
    const char *model_uri;
    const char *local_dir;
    const char *model_name;
    bool progress_bar;
    const char *allow_suffix; /* --allow-file-suffix */
    /* --download-extra-config */
    char *ak, *sk, *endpoint, *region, *hf_endpoint, *hf_token, *hf_revision;
    uint64_t num_threads, chunk_size;
    struct cm_strlist extra_suffix;
    bool have_extra_suffix;
    int force; /* -1 unset */
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: aibrix_download --model-uri URI [--local-dir DIR] [--model-name NAME]\n"
            "                       [--enable-progress-bar] [--download-extra-config JSON]\n"
            "                       [--allow-file-suffix LIST] [--version] [--help]\n"
            "\n"
            "URI: hf://org/name[@rev], huggingface://org/name, org/name, s3://bucket/prefix,\n"
            "     tos://bucket/prefix, file:///dir\n"
            "Files land in DIR/NAME/...; DIR defaults to $DOWNLOADER_LOCAL_DIR or "
            "/tmp/aibrix/models/.\n"
            "The model directory is printed as the last line of stdout.\n"
            "Exit status: 0 done, 2 bad arguments, 3 not found or access denied,\n"
            "             4 gave up after retries, 5 integrity check failed.\n");
}

static char *json_str(const cJSON *v)
{
    return cJSON_IsString(v) && v->valuestring ? strdup(v->valuestring) : NULL;
}

/* --download-extra-config: AIBrix's keys; an unknown key or a wrong type is a usage error. */
static int parse_extra(const char *text, struct options *o, char *err, size_t errlen)
{
    static const char *const string_keys[] = {"ak",          "sk",       "endpoint",
                                              "region",      "hf_endpoint", "hf_token",
                                              "hf_revision"};
    char **string_dst[] = {&o->ak,          &o->sk,       &o->endpoint,   &o->region,
                           &o->hf_endpoint, &o->hf_token, &o->hf_revision};
    /* accepted for compatibility with the Python downloader, which tunes boto3 with them */
    static const char *const ignored_keys[] = {"max_io_queue", "io_chunksize", "part_threshold"};
    cJSON *root = cJSON_Parse(text);
    int rc = 0;
    if (!cJSON_IsObject(root)) {
        snprintf(err, errlen, "--download-extra-config is not a JSON object");
        cJSON_Delete(root);
        return -EINVAL;
    }
    for (const cJSON *it = root->child; it && rc == 0; it = it->next) {
        const char *k = it->string;
        bool known = false;
        for (size_t i = 0; i < sizeof string_keys / sizeof *string_keys; i++) {
            if (strcmp(k, string_keys[i]) != 0)
                continue;
            known = true;
            if (!cJSON_IsString(it)) {
                snprintf(err, errlen, "download_extra_config.%s must be a string", k);
                rc = -EINVAL;
            } else {
                free(*string_dst[i]);
                *string_dst[i] = json_str(it);
            }
        }
        for (size_t i = 0; i < sizeof ignored_keys / sizeof *ignored_keys; i++)
            known |= strcmp(k, ignored_keys[i]) == 0;
        if (known)
            continue;
        if (strcmp(k, "num_threads") == 0 || strcmp(k, "part_chunksize") == 0) {
            if (!cJSON_IsNumber(it) || it->valuedouble < 1 || it->valuedouble > 1e15) {
                snprintf(err, errlen, "download_extra_config.%s must be a positive integer", k);
                rc = -EINVAL;
            } else if (k[0] == 'n') {
                o->num_threads = (uint64_t)it->valuedouble;
            } else {
                o->chunk_size = (uint64_t)it->valuedouble;
            }
        } else if (strcmp(k, "force_download") == 0) {
            if (!cJSON_IsBool(it)) {
                snprintf(err, errlen, "download_extra_config.force_download must be a boolean");
                rc = -EINVAL;
            }
            o->force = cJSON_IsTrue(it);
        } else if (strcmp(k, "allow_file_suffix") == 0) {
            o->have_extra_suffix = true;
            if (cJSON_IsString(it)) {
                cm_strlist_split(&o->extra_suffix, it->valuestring);
            } else if (cJSON_IsArray(it)) {
                for (const cJSON *s = it->child; s && rc == 0; s = s->next) {
                    if (!cJSON_IsString(s)) {
                        snprintf(err, errlen, "download_extra_config.allow_file_suffix must "
                                              "be a list of strings");
                        rc = -EINVAL;
                    } else {
                        cm_strlist_split(&o->extra_suffix, s->valuestring);
                    }
                }
            } else {
                snprintf(err, errlen, "download_extra_config.allow_file_suffix must be a list");
                rc = -EINVAL;
            }
        } else {
            snprintf(err, errlen, "unknown key '%.64s' in --download-extra-config", k);
            rc = -EINVAL;
        }
    }
    cJSON_Delete(root);
    return rc;
}

static int parse_args(int argc, char **argv, struct options *o)
{
    enum { OPT_URI = 256, OPT_DIR, OPT_NAME, OPT_BAR, OPT_EXTRA, OPT_SUFFIX, OPT_VERSION };
    static const struct option longopts[] = {
        {"model-uri", required_argument, NULL, OPT_URI},
        {"local-dir", required_argument, NULL, OPT_DIR},
        {"model-name", required_argument, NULL, OPT_NAME},
        {"enable-progress-bar", no_argument, NULL, OPT_BAR},
        {"download-extra-config", required_argument, NULL, OPT_EXTRA},
        {"allow-file-suffix", required_argument, NULL, OPT_SUFFIX},
        {"version", no_argument, NULL, OPT_VERSION},
        {"help", no_argument, NULL, 'h'},
        {0, 0, 0, 0},
    };
    char err[512];
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case OPT_URI:
            o->model_uri = optarg;
            break;
        case OPT_DIR:
            o->local_dir = optarg;
            break;
        case OPT_NAME:
            o->model_name = optarg;
            break;
        case OPT_BAR:
            o->progress_bar = true;
            break;
        case OPT_EXTRA:
            if (parse_extra(optarg, o, err, sizeof err) != 0) {
                fprintf(stderr, "aibrix_download: %s\n", err);
                return EXIT_USAGE;
            }
            break;
        case OPT_SUFFIX:
            o->allow_suffix = optarg;
            break;
        case OPT_VERSION:
            printf("aibrix_download %s (%s)\n", AIBRIX_VERSION, AIBRIX_GIT_DESCRIBE);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "aibrix_download: unexpected argument '%s'\n", argv[optind]);
        return EXIT_USAGE;
    }
    if (!o->model_uri) {
        fprintf(stderr, "aibrix_download: --model-uri is required\n");
        usage(stderr);
        return EXIT_USAGE;
    }
    return -1; /* go on */
}

/* The model name becomes a directory under local-dir: it must stay inside it. */
static bool model_name_ok(const char *name)
{
    return cm_name_check(name, strlen(name)) == NULL;
}

static void free_options(struct options *o)
{
    free(o->ak), free(o->sk), free(o->endpoint), free(o->region);
    free(o->hf_endpoint), free(o->hf_token), free(o->hf_revision);
    cm_strlist_free(&o->extra_suffix);
}

/* Keep only the files the suffix list allows; say what was left out. */
static void apply_filter(struct dl_listing *l, const struct cm_strlist *suffixes)
{
    size_t dropped = 0;
    for (size_t i = 0; i < l->n;) {
        if (cm_suffix_match(suffixes, l->entries[i].path)) {
            i++;
            continue;
        }
        dl_listing_remove(l, i);
        dropped++;
    }
    if (dropped)
        cm_info("download", "allow_file_suffix left out %zu files", dropped);
}

static int run(struct options *o)
{
    char err[2048], name[512], dir[PATH_MAX];
    struct cm_uri uri;
    struct stat sb;

    if (cm_uri_parse(o->model_uri, &uri, err, sizeof err) != 0) {
        /* a bare path that exists locally is a local directory (SPEC §2) */
        if (o->model_uri[0] == '/' && stat(o->model_uri, &sb) == 0) {
            snprintf(err, sizeof err, "file://%s", o->model_uri);
            if (cm_uri_parse(err, &uri, err, sizeof err) != 0) {
                fprintf(stderr, "aibrix_download: %s\n", err);
                return EXIT_USAGE;
            }
        } else {
            fprintf(stderr, "aibrix_download: %s\n", err);
            return EXIT_USAGE;
        }
    } else if (uri.bare && stat(o->model_uri, &sb) == 0) {
        char abs[PATH_MAX + 8];
        if (!realpath(o->model_uri, dir)) {
            fprintf(stderr, "aibrix_download: %s: %s\n", o->model_uri, strerror(errno));
            return EXIT_USAGE;
        }
        snprintf(abs, sizeof abs, "file://%s", dir);
        if (cm_uri_parse(abs, &uri, err, sizeof err) != 0) {
            fprintf(stderr, "aibrix_download: %s\n", err);
            return EXIT_USAGE;
        }
    }
    if (o->model_name) {
        snprintf(name, sizeof name, "%s", o->model_name);
    } else if (cm_uri_default_name(&uri, name, sizeof name) != 0) {
        fprintf(stderr, "aibrix_download: cannot derive a model name from '%s'; use "
                        "--model-name\n", o->model_uri);
        return EXIT_USAGE;
    }
    if (!model_name_ok(name)) {
        fprintf(stderr, "aibrix_download: invalid model name '%s'\n", name);
        return EXIT_USAGE;
    }
    const char *local = o->local_dir ? o->local_dir : cm_env_str("DOWNLOADER_LOCAL_DIR");
    if (!local)
        local = "/tmp/aibrix/models/";
    size_t llen = strlen(local);
    snprintf(dir, sizeof dir, "%.*s/%s", (int)(llen > 1 && local[llen - 1] == '/' ? llen - 1 : llen),
             local, name);

    /* suffix filter: flag, then extra config, then env */
    struct cm_strlist suffixes = {0};
    if (o->allow_suffix)
        cm_strlist_split(&suffixes, o->allow_suffix);
    else if (o->have_extra_suffix)
        for (size_t i = 0; i < o->extra_suffix.n; i++)
            cm_strlist_add(&suffixes, o->extra_suffix.items[i]);
    else if (cm_env_str("DOWNLOADER_ALLOW_FILE_SUFFIX"))
        cm_strlist_split(&suffixes, cm_env_str("DOWNLOADER_ALLOW_FILE_SUFFIX"));

    struct dl_source_config cfg = {
        .uri = &uri,
        .hf_endpoint = o->hf_endpoint,
        .hf_token = o->hf_token,
        .hf_revision = o->hf_revision,
        .ak = o->ak,
        .sk = o->sk,
        .endpoint = o->endpoint,
        .region = o->region,
    };
    cm_log_add_secret(o->sk);
    cm_log_add_secret(o->hf_token);
    uint64_t threads = o->num_threads ? o->num_threads : cm_env_u64("DOWNLOADER_NUM_THREADS", 16);
    struct dl_download_opts dopts = {
        .chunk_size = o->chunk_size ? o->chunk_size
                                    : cm_env_size("DOWNLOADER_PART_CHUNKSIZE", 8u << 20),
        .force = o->force >= 0 ? o->force : cm_env_bool("DOWNLOADER_FORCE_DOWNLOAD", false),
        .progress_bar = o->progress_bar || isatty(STDERR_FILENO),
    };
    if (threads == 0 || threads > 1024 || dopts.chunk_size < 64 * 1024) {
        fprintf(stderr, "aibrix_download: num_threads must be 1-1024 and part_chunksize at "
                        "least 64 KiB\n");
        cm_strlist_free(&suffixes);
        return EXIT_USAGE;
    }

    int code = 0;
    struct dl_http *http = dl_http_new();
    struct dl_source *src = http ? dl_source_open(&cfg, http, err, sizeof err) : NULL;
    struct dl_http_conn *conn = src ? dl_http_conn_new(http) : NULL;
    struct dl_listing l = {0};
    struct dl_fetch *f = NULL;
    enum dl_status st = DL_ERR_INVALID;
    if (!src) {
        fprintf(stderr, "aibrix_download: %s\n", http ? err : "cannot start HTTP client");
        code = EXIT_USAGE;
        goto out;
    }
    if (!conn || (st = src->ops->list(src, conn, &l, err, sizeof err)) != DL_OK) {
        fprintf(stderr, "aibrix_download: cannot list %s: %s\n", o->model_uri, err);
        code = dl_status_exit_code(st);
        goto out;
    }
    apply_filter(&l, &suffixes);
    cm_info("download", "%s: %zu files to %s", o->model_uri, l.n, dir);
    if (cm_mkdirs(dir, 0755) != 0) {
        fprintf(stderr, "aibrix_download: cannot create %s: %s\n", dir, strerror(errno));
        code = dl_status_exit_code(DL_ERR_LOCAL);
        goto out;
    }
    f = dl_fetch_new(http, (unsigned)threads);
    if (!f) {
        code = dl_status_exit_code(DL_ERR_LOCAL);
        goto out;
    }
    struct dl_progress progress = {0};
    st = dl_download(src, f, &l, dir, &dopts, &progress, err, sizeof err);
    if (st != DL_OK) {
        fprintf(stderr, "aibrix_download: %s\n", err);
        code = dl_status_exit_code(st);
        goto out;
    }
    cm_info("download", "done: %llu files (%llu up to date), %llu bytes fetched",
            (unsigned long long)atomic_load(&progress.files_done),
            (unsigned long long)atomic_load(&progress.files_skipped),
            (unsigned long long)atomic_load(&progress.bytes_done));
    printf("%s\n", dir);
out:
    dl_fetch_free(f);
    dl_listing_free(&l);
    dl_http_conn_free(conn);
    dl_source_close(src);
    dl_http_free(http);
    cm_strlist_free(&suffixes);
    return code;
}

int main(int argc, char **argv)
{
    struct options o = {.force = -1};
    enum cm_log_level level;
    if (cm_log_parse_level(cm_env_str("AIBRIX_LOG_LEVEL"), &level) == 0)
        cm_log_set_level(level);
    int code = parse_args(argc, argv, &o);
    if (code < 0)
        code = run(&o);
    free_options(&o);
    fflush(stdout);
    return code;
}
