"""contenders.py - the downloaders the bench runs, as data.

Why a table: the bench compares aibrix_download with the tools people already use, on the
same origin, files and connection budget. Adding a peer (rclone, s3fs, aws s3 cp, another
aria2c setting) or a connection sweep is one more entry here; run and report never change.

Each Contender has
  name      the row label; the one with baseline=True is what the ratio column divides by
  needs     {command: Debian package} the bench installs when the command is missing
  describe  the command as documented, a format string over ctx.describe_vars() (conns,
            chunk_mib, aria2_j)
  prepare   ctx -> None: write input lists once per session (optional)
  argv      ctx, outdir -> (argv, env overrides)
  files_at  ctx, outdir, stdout -> the directory that must hold the model's files

ctx is run.Session: .model (hforigin.Model), .origin (hforigin.Origin), .conns, .chunk
(bytes), .work (scratch dir), .aibrix (path of the binary).
"""

import os

MiB = 1 << 20


class Contender:
    def __init__(self, name, needs, describe, argv, files_at, prepare=None, baseline=False):
        self.name, self.needs, self.describe = name, needs, describe
        self.argv, self.files_at, self.prepare = argv, files_at, prepare
        self.baseline = baseline


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

def aria2_jobs(ctx, conns):
    """-j that keeps aria2c at `conns` connections in total: aria2c never splits a file into
    pieces smaller than -k, so a file of S bytes gets min(-s, ceil(S / k)) connections and
    -j files run at once."""
    per_file = max(1, min(16, -(-ctx.model.largest_file // ctx.chunk)))
    return max(1, conns // per_file)


def _aria2_prepare(ctx):
    with open(_list_path(ctx, "aria2c"), "w") as f:
        for rel in sorted(ctx.model.files):
            f.write("%s\n  out=%s\n" % (ctx.origin.file_url(rel), rel))


def _aria2_argv_with(jobs_of):
    def argv(ctx, outdir):
        return (["aria2c", "-x16", "-s16", "-k%dM" % (ctx.chunk // MiB), "-j%d" % jobs_of(ctx),
                 "--file-allocation=none", "--console-log-level=error", "--summary-interval=0",
                 "--download-result=hide", "-d", outdir, "-i", _list_path(ctx, "aria2c")], {})
    return argv


# ---- aibrix_download ---------------------------------------------------------------------------

def _aibrix_argv(ctx, outdir):
    env = {
        "HF_ENDPOINT": ctx.origin.base_url,
        "DOWNLOADER_NUM_THREADS": str(ctx.conns),
        "DOWNLOADER_PART_CHUNKSIZE": str(ctx.chunk),
        # no token from the environment or ~/.cache/huggingface may reach the origin
        "HF_TOKEN": "", "HUGGING_FACE_HUB_TOKEN": "",
        "HF_HOME": os.path.join(ctx.work, "hf-home"),
    }
    return ([ctx.aibrix, "--model-uri", "hf://%s" % ctx.model.repo, "--local-dir", outdir], env)


def _aibrix_files_at(ctx, outdir, stdout):
    lines = stdout.strip().splitlines()
    return lines[-1] if lines else outdir  # the model directory is the last line of stdout


CONTENDERS = [
    Contender("curl", {"curl": "curl"},
              "`curl -sS --fail --create-dirs --config LIST` (url/output pairs, one file "
              "after another on one connection)",
              _curl_argv, _in_outdir, prepare=_curl_prepare),
    Contender("aria2c", {"aria2c": "aria2"},
              "`aria2c -x16 -s16 -k{chunk_mib}M -j{aria2_j} --file-allocation=none -i LIST`: "
              "-j chosen so that the files together use {conns} connections, as many as "
              "aibrix_download (aria2c splits a file into at most size/-k pieces)",
              _aria2_argv_with(lambda ctx: aria2_jobs(ctx, ctx.conns)), _in_outdir,
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
