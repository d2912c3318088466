"""contenders.py - the downloaders and mounts the bench runs, as data, per origin.

Why a table: the bench compares aibrix_download and aibrix_runtime's mount with the tools
people already use, on the same origin, files and connection budget. Adding a peer or a
setting is one more entry here; run and report never change.

Each Contender has
  name      the row label; the one with baseline=True is what the ratio column divides by
  needs     {command: Debian package} the bench installs when the command is missing
  describe  the command as documented, a format string over ctx.describe_vars() (conns,
            chunk_mib, aria2_s, aria2_j)
  prepare   ctx -> None: write input lists once per session (optional)
  argv      ctx, outdir -> (argv, env overrides)
  files_at  ctx, outdir, stdout -> the directory that must hold the model's files
  serve     ctx, cache_dir, log_path -> a started mounts.Server (optional): the contender is
            a mount; outdir is then the mount's root, argv reads the files through it, and
            the row's RSS and CPU are the daemon's (VmHWM and utime+stime from /proc)
  files     ctx -> the model files it must deliver (default: all of them)
  one_stream  one connection whatever it is told (curl): run in fewer rounds (--single-runs)

ctx is run.Session: .model (hforigin.Model), .origin (hforigin.Origin or s3origin.S3Origin),
.conns, .chunk (bytes), .work (scratch dir), .aibrix and .runtime (binaries), .mnt, .s3mnt.
HF_CONTENDERS run against the HF origin, S3_CONTENDERS against the S3 one.
"""

import os

import mounts
import s3origin

MiB = 1 << 20
READER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reader.py")


class Contender:
    def __init__(self, name, needs, describe, argv, files_at, prepare=None, baseline=False,
                 serve=None, files=None, one_stream=False):
        self.name, self.needs, self.describe = name, needs, describe
        self.argv, self.files_at, self.prepare = argv, files_at, prepare
        self.baseline, self.serve = baseline, serve
        self.files = files or (lambda ctx: sorted(ctx.model.files))
        self.is_runtime = False  # aibrix_runtime serves it (its RSS counts for the goal)
        self.one_stream = one_stream  # one connection whatever it is told (see --single-runs)


def _list_path(ctx, name):
    return os.path.join(ctx.work, "%s.list" % name)


def _in_outdir(ctx, outdir, stdout):
    return outdir


# ---- curl: one process, one connection, every file in turn ---------------------------------

def _curl_prepare(ctx):
    # --config lists url/output pairs; curl runs them one after another on one reused
    # connection. Output paths are relative and resolved against the run's directory.
    with open(_list_path(ctx, "curl"), "w") as f:
        for rel in sorted(ctx.model.files):
            f.write('url = "%s"\noutput = "%s"\n' % (ctx.origin.file_url(rel), rel))


def _curl_argv(ctx, outdir):
    os.makedirs(outdir, exist_ok=True)
    return (["sh", "-c", 'cd "$1" && exec curl -sS --fail --create-dirs --config "$2"', "curl",
             outdir, _list_path(ctx, "curl")], {})


# ---- aria2c: -x16 -s16 -k8M, files overlapping ------------------------------------------------

def aria2_split(ctx, conns):
    """-s (and -x) per file: aria2c takes at most 16 connections to one server."""
    return max(1, min(16, conns))


def aria2_jobs(ctx, conns):
    """-j that keeps aria2c at `conns` connections in total: aria2c never splits a file into
    pieces smaller than -k, so a file of S bytes gets min(-s, ceil(S / k)) connections and
    -j files run at once."""
    per_file = max(1, min(aria2_split(ctx, conns), -(-ctx.model.largest_file // ctx.chunk)))
    return max(1, conns // per_file)


def _aria2_prepare(ctx):
    with open(_list_path(ctx, "aria2c"), "w") as f:
        for rel in sorted(ctx.model.files):
            f.write("%s\n  out=%s\n" % (ctx.origin.file_url(rel), rel))


def _aria2_argv_with(jobs_of, split_of=lambda ctx: 16):
    def argv(ctx, outdir):
        s = split_of(ctx)
        return (["aria2c", "-x%d" % s, "-s%d" % s, "-k%dM" % (ctx.chunk // MiB),
                 "-j%d" % jobs_of(ctx),
                 "--file-allocation=none", "--console-log-level=error", "--summary-interval=0",
                 "--download-result=hide", "-d", outdir, "-i", _list_path(ctx, "aria2c")], {})
    return argv


# ---- aibrix_download (either origin: the origin knows its URI and environment) ----------------

def _aibrix_argv(ctx, outdir):
    env = dict(ctx.origin.client_env(), DOWNLOADER_NUM_THREADS=str(ctx.conns),
               DOWNLOADER_PART_CHUNKSIZE=str(ctx.chunk))
    return ([ctx.aibrix, "--model-uri", ctx.origin.model_uri(), "--local-dir", outdir], env)


def _aibrix_files_at(ctx, outdir, stdout):
    lines = stdout.strip().splitlines()
    return lines[-1] if lines else outdir  # the model directory is the last line of stdout


# ---- aws s3 cp --recursive, max_concurrent_requests = connections ----------------------------

def _aws_argv(ctx, outdir):
    cfg = s3origin.aws_config(os.path.join(ctx.work, "aws-config-%d" % ctx.conns), ctx.conns,
                              ctx.chunk)
    return ([s3origin.AWS, "--endpoint-url", ctx.origin.base_url, "s3", "cp", "--recursive",
             "--only-show-errors", "s3://%s/%s/" % (ctx.origin.bucket, ctx.origin.prefix),
             outdir], dict(ctx.origin.client_env(), AWS_CONFIG_FILE=cfg))


# ---- mounts: a daemon serves the files, reader.py reads them front to back -------------------

def _shown_files(ctx):
    """What a mount must serve: the runtime lists no dot-files (.gitattributes)."""
    return [rel for rel in sorted(ctx.model.files)
            if not any(part.startswith(".") for part in rel.split("/"))]


def _reader_argv(ctx, root):
    return (["/usr/bin/python3", READER, "seq"] + [os.path.join(root, rel)
                                                   for rel in _shown_files(ctx)], {})


def _mount(name, describe, serve, needs=None):
    return Contender(name, needs or {}, describe, _reader_argv, _in_outdir, serve=serve,
                     files=_shown_files)


def _runtime_mount(uri, endpoint, prefetch):
    c = _mount("mount seq, prefetch=%s" % prefetch,
               "`aibrix_runtime --mount-point MNT --cache-dir EMPTY_DIR --model bench=%s,"
               "prefetch=%s` with %s at the origin, DOWNLOADER_NUM_THREADS={conns}, "
               "DOWNLOADER_PART_CHUNKSIZE={chunk_mib} MiB; " % (uri, prefetch, endpoint)
               + READ_SEQ,
               lambda ctx, cache, log_path: mounts.Runtime(ctx, cache, prefetch, log_path))
    c.is_runtime = True
    return c


READ_SEQ = ("then `reader.py seq` over every file the mount lists, one after another (1 MiB "
            "read()s, like `dd bs=1M`), timed from the first read once the mount is listed")

HF_CONTENDERS = [
    Contender("curl", {"curl": "curl"},
              "`curl -sS --fail --create-dirs --config LIST` (url/output pairs, one file "
              "after another on one connection)",
              _curl_argv, _in_outdir, prepare=_curl_prepare, one_stream=True),
    Contender("aria2c", {"aria2c": "aria2"},
              "`aria2c -x{aria2_s} -s{aria2_s} -k{chunk_mib}M -j{aria2_j} "
              "--file-allocation=none -i LIST`: -j chosen so that the files together use "
              "{conns} connections, as many as aibrix_download (aria2c splits a file into at "
              "most size/-k pieces, and into at most 16)",
              _aria2_argv_with(lambda ctx: aria2_jobs(ctx, ctx.conns),
                               lambda ctx: aria2_split(ctx, ctx.conns)), _in_outdir,
              prepare=_aria2_prepare, baseline=True),
    Contender("aria2c -j5", {"aria2c": "aria2"},
              "the same with aria2c's default -j5, as people run it: up to 5 files at "
              "once, so more connections than aibrix_download gets (see the table)",
              _aria2_argv_with(lambda ctx: 5), _in_outdir, prepare=_aria2_prepare),
    Contender("aria2c -j16", {"aria2c": "aria2"},
              "the same with -j16: up to 16 files at once, each with its own "
              "connections, so far more connections than the others (see the table): an "
              "upper bound, not a like-for-like row",
              _aria2_argv_with(lambda ctx: 16), _in_outdir, prepare=_aria2_prepare),
    Contender("aibrix_download", {},
              "`aibrix_download --model-uri hf://ORG/NAME --local-dir DIR` with "
              "HF_ENDPOINT at the origin, DOWNLOADER_NUM_THREADS={conns}, "
              "DOWNLOADER_PART_CHUNKSIZE={chunk_mib} MiB",
              _aibrix_argv, _aibrix_files_at),
]

# the HF mount read like the S3 rows; only the connections sweep runs it (the mount suite,
# mountbench.py, has the full set of mount rows)
HF_MOUNT = _runtime_mount("hf://ORG/NAME", "HF_ENDPOINT", "none")

S3_CONTENDERS = [
    Contender("aws s3 cp", {}, "`aws s3 cp --recursive s3://BUCKET/PREFIX/ DIR` (AWS CLI v2, "
              "`/usr/bin/aws --endpoint-url` at the origin) with a config file of its own: "
              "`s3 = max_concurrent_requests = {conns}`, `multipart_chunksize` and "
              "`multipart_threshold` {chunk_mib} MB", _aws_argv, _in_outdir, baseline=True),
    Contender("aibrix_download", {},
              "`aibrix_download --model-uri s3://BUCKET/PREFIX --local-dir DIR` with "
              "AWS_ENDPOINT_URL_S3 at the origin (path-style), DOWNLOADER_NUM_THREADS={conns}, "
              "DOWNLOADER_PART_CHUNKSIZE={chunk_mib} MiB",
              _aibrix_argv, _aibrix_files_at),
    _mount("s3fs mount",
           "`s3fs BUCKET:/PREFIX MNT -f -o ro,url=ORIGIN,use_path_request_style,"
           "use_cache=EMPTY_DIR` (s3fs-fuse's defaults otherwise: parallel_count 5, "
           "multipart_size 10 MB); " + READ_SEQ,
           lambda ctx, cache, log_path: mounts.S3fs(ctx, cache, log_path), {"s3fs": "s3fs"}),
    _runtime_mount("s3://BUCKET/PREFIX", "AWS_ENDPOINT_URL_S3", "none"),
    _runtime_mount("s3://BUCKET/PREFIX", "AWS_ENDPOINT_URL_S3", "open"),
]


def named(table, name):
    return next(c for c in table if c.name == name)


# s3fs with the sweep's connection count as its parallel_count (the s3 suite runs its default)
S3FS_SWEEP = _mount("s3fs mount",
                    "the s3 suite's s3fs with `-o parallel_count={conns}`; " + READ_SEQ,
                    lambda ctx, cache, log_path: mounts.S3fs(ctx, cache, log_path,
                                                             parallel_count=ctx.conns),
                    {"s3fs": "s3fs"})

# The connections sweep: (origin, contender) pairs whose connection count is a knob; curl
# (one connection, whatever it is told) is measured once as a reference.
SWEEP = [("hf", named(HF_CONTENDERS, "curl")), ("hf", named(HF_CONTENDERS, "aria2c")),
         ("hf", named(HF_CONTENDERS, "aibrix_download")), ("hf", HF_MOUNT),
         ("s3", named(S3_CONTENDERS, "aws s3 cp")),
         ("s3", named(S3_CONTENDERS, "aibrix_download")),
         ("s3", named(S3_CONTENDERS, "mount seq, prefetch=none")), ("s3", S3FS_SWEEP)]
SWEEP_FIXED = {"curl"}  # connection count is not a knob: run at 1 only
