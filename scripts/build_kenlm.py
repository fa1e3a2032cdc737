"""KenLM's programs lmplz, filter and build_binary, built once from the kenlm 0.3.0 source distribution on PyPI
and cached, for generate_lm (which finds them there) and the tests:

    python scripts/build_kenlm.py [--bin-dir DIR] [--install-deps] [--force] [--check] [-j N] [--sdist FILE]

No Debian package or wheel ships the three programs, but PyPI's kenlm==0.3.0 sdist holds their C++ source. With
working binaries in the cache this only checks them; otherwise it checks the build's dependencies (a C++
compiler, cmake, make, Boost program_options, system, thread and unit_test_framework, zlib, bzip2 and liblzma
headers; --install-deps installs the missing ones with apt-get), downloads the sdist with pip and checks its
sha256, builds the three programs in a temporary directory, runs them on a tiny corpus as generate_lm does,
and moves them into the cache with one rename, so an interrupted build leaves the cache as it was. The cache
is --bin-dir, else $COQUI_STT_KENLM_BIN, else ~/.cache/coqui-stt-torch/kenlm-0.3.0/bin. The programs link
Boost, zlib, bzip2 and liblzma: keep the apt packages installed to run them.

Standard library only. The directory is printed alone on stdout; what happens, and a failure as one line,
on stderr. Exit status: 0 ready, 1 failed, 2 build dependencies missing, 3 (--check) not built.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import fcntl
import glob
import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator

KENLM_VERSION = "0.3.0"
SDIST = f"kenlm-{KENLM_VERSION}.tar.gz"
SDIST_SHA256 = "c4628bb9fb63c8a6f9240035b8b037385cfc404cb72e933cf48878291edac1e8"  # PyPI's
# KENLM_MAX_ORDER is compiled in: 6 allows Coqui's order-5 models and one more
CMAKE_FLAGS = ["-DCMAKE_BUILD_TYPE=Release", "-DKENLM_MAX_ORDER=6"]
PROGRAMS = ("lmplz", "build_binary", "filter")
ENV_VAR = "COQUI_STT_KENLM_BIN"  # decoding/kenlm_tools.py looks in the same places
DEFAULT_BIN_DIR = os.path.join("~", ".cache", "coqui-stt-torch", f"kenlm-{KENLM_VERSION}", "bin")
# what each program's --help prints (each exits 1 after it)
HELP_BANNERS = {"lmplz": "Builds unpruned language models", "build_binary": "Usage:", "filter": "Usage:"}
LIB_DIRS = ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib"]
INCLUDE_DIRS = ["/usr/include", "/usr/local/include"]
# each Debian package, and what shows it is installed: a command, a header, or a library to link
DEPENDENCIES: list[tuple[str, list[tuple[str, str]]]] = [
    ("g++", [("cmd", "g++")]),
    ("make", [("cmd", "make")]),
    ("cmake", [("cmd", "cmake")]),
    ("libboost-program-options-dev", [("header", "boost/program_options.hpp"), ("lib", "libboost_program_options")]),
    ("libboost-system-dev", [("header", "boost/system/error_code.hpp"), ("lib", "libboost_system")]),
    ("libboost-thread-dev", [("header", "boost/thread.hpp"), ("lib", "libboost_thread")]),
    # KenLM's CMakeLists asks for unit_test_framework even when no test is built
    ("libboost-test-dev", [("header", "boost/test/unit_test.hpp"), ("lib", "libboost_unit_test_framework")]),
    ("zlib1g-dev", [("header", "zlib.h"), ("lib", "libz")]),
    ("libbz2-dev", [("header", "bzlib.h"), ("lib", "libbz2")]),
    ("liblzma-dev", [("header", "lzma.h"), ("lib", "liblzma")]),
]
SMOKE_CORPUS = "the cat sat on the mat\nthe dog sat on the log\na cat and a dog sat\nthe mat and the log\n"


class BuildError(Exception):
    """A failed step, told in one line."""


class MissingDependencies(BuildError):
    def __init__(self, packages: list[str]):
        super().__init__(
            f"missing build dependencies: install them with `{install_command(packages)}`, or rerun with --install-deps"
        )


def log(message: str) -> None:
    print(f"build_kenlm: {message}", file=sys.stderr, flush=True)


def _present(kind: str, name: str) -> bool:
    if kind == "cmd":
        return shutil.which(name) is not None
    if kind == "header":
        return any(os.path.isfile(os.path.join(d, name)) for d in INCLUDE_DIRS)
    # the unversioned shared library (from the -dev package) or a static one: what the linker needs
    return any(glob.glob(os.path.join(d, f"{name}.{ext}")) for d in LIB_DIRS for ext in ("so", "a"))


def missing_packages() -> list[str]:
    return [package for package, probes in DEPENDENCIES if not all(_present(k, n) for k, n in probes)]


def install_command(packages: list[str]) -> str:
    return "apt-get update && apt-get install -y --no-install-recommends " + " ".join(packages)


def install_packages(packages: list[str]) -> None:
    if shutil.which("apt-get") is None:
        raise BuildError(f"--install-deps needs apt-get; install the equivalents of {' '.join(packages)}")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    if sudo and shutil.which("sudo") is None:
        raise BuildError(f"--install-deps needs root or sudo; as root, run `{install_command(packages)}`")
    log(f"installing {' '.join(packages)} with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", *packages]):
        done = subprocess.run(sudo + command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if done.returncode != 0:
            raise BuildError(f"{shlex.join(sudo + command)} failed: {last_line(done.stdout)}")


def last_line(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def check_binaries(bin_dir: str) -> str | None:
    """None when the three programs are in bin_dir and run; otherwise what is wrong, in one line."""
    for program in PROGRAMS:
        path = os.path.join(bin_dir, program)
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            return f"{path} is missing or not executable"
        try:
            done = subprocess.run([path, "--help"], capture_output=True, text=True, errors="replace", timeout=60)
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"{path} does not run ({e})"
        if HELP_BANNERS[program] not in done.stdout + done.stderr:
            return f"{path} does not run: {last_line(done.stdout + done.stderr)}"
    return None


def run_logged(command: list[str], cwd: str, log_path: str, what: str) -> None:
    log(what)
    with open(log_path, "w") as out:
        done = subprocess.run(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        with open(log_path, errors="replace") as f:
            raise BuildError(f"{shlex.join(command)} failed: {last_line(f.read())} (the whole output: {log_path})")


def smoke_test(bin_dir: str, work: str) -> None:
    """generate_lm's pipeline on a tiny corpus: lmplz, filter single, build_binary -a 255 -q 8 -v trie."""
    os.makedirs(work, exist_ok=True)
    corpus, arpa, filtered, binary = (os.path.join(work, n) for n in ("c.txt", "c.arpa", "f.arpa", "c.binary"))
    with open(corpus, "w", encoding="utf-8") as f:
        f.write(SMOKE_CORPUS)
    program = lambda name: os.path.join(bin_dir, name)
    steps = [
        ([program("lmplz"), "--order", "3", "--temp_prefix", work, "--memory", "64M", "--text", corpus,
          "--arpa", arpa, "--discount_fallback"], None),
        ([program("filter"), "single", f"model:{arpa}", filtered], b"the\ncat\nsat\nmat"),
        ([program("build_binary"), "-a", "255", "-q", "8", "-v", "trie", filtered, binary], None),
    ]  # fmt: skip
    for command, stdin in steps:
        done = subprocess.run(command, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if done.returncode != 0:
            output = done.stdout.decode(errors="replace")
            raise BuildError(f"the new {os.path.basename(command[0])} failed: {last_line(output)}")
    with open(binary, "rb") as f:
        if not f.read(64).startswith(b"mmap lm http://kheafield.com/code format version 5"):
            raise BuildError("the new build_binary wrote no KenLM binary")


def sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_sdist(work: str, sdist: str | None) -> str:
    if sdist is None:
        pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", "kenlm",
               "--disable-pip-version-check", "-d", work, f"kenlm=={KENLM_VERSION}"]  # fmt: skip
        run_logged(pip, work, os.path.join(work, "pip-download.log"), f"downloading {SDIST} with pip")
        sdist = os.path.join(work, SDIST)
        if not os.path.isfile(sdist):
            raise BuildError(f"pip download wrote no {SDIST} into {work}")
    actual = sha256(sdist)
    if actual != SDIST_SHA256:
        raise BuildError(f"{sdist}: sha256 {actual}, not PyPI's {SDIST_SHA256}")
    return sdist


def build(bin_dir: str, jobs: int, sdist: str | None, keep: bool) -> None:
    parent = os.path.dirname(bin_dir)
    os.makedirs(parent, exist_ok=True)
    for leftover in glob.glob(os.path.join(parent, f".{os.path.basename(bin_dir)}.*-*")):  # a killed build's
        shutil.rmtree(leftover, ignore_errors=True)
    work = tempfile.mkdtemp(prefix="kenlm-build-")
    started = time.monotonic()
    failed = True
    try:
        sdist = fetch_sdist(work, sdist)
        with tarfile.open(sdist) as tar:
            tar.extractall(work, filter="data")
        source = os.path.join(work, f"kenlm-{KENLM_VERSION}")
        build_dir = os.path.join(source, "build")
        os.makedirs(build_dir)
        # KenLM's exceptions hold __FILE__: mapping the temporary source path away makes builds bit-identical
        prefix_map = f"-DCMAKE_CXX_FLAGS=-ffile-prefix-map={source}=kenlm-{KENLM_VERSION}"
        run_logged(["cmake", *CMAKE_FLAGS, prefix_map, ".."], build_dir, os.path.join(work, "cmake.log"), "configuring")
        run_logged(["make", f"-j{jobs}", *PROGRAMS], build_dir, os.path.join(work, "make.log"),
                   f"compiling with {jobs} job(s) (about 2 minutes on two cores)")  # fmt: skip
        built = os.path.join(build_dir, "bin")
        problem = check_binaries(built)
        if problem:
            raise BuildError(f"the build's programs do not work: {problem}")
        smoke_test(built, os.path.join(work, "smoke"))
        log("the new programs built a quantised trie from a tiny corpus")
        staging = tempfile.mkdtemp(prefix=f".{os.path.basename(bin_dir)}.staging-", dir=parent)
        try:
            for program in PROGRAMS:
                shutil.copy2(os.path.join(built, program), os.path.join(staging, program))
            info = {"kenlm": KENLM_VERSION, "sdist_sha256": SDIST_SHA256, "cmake_flags": CMAKE_FLAGS,
                    "built_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                    "build_seconds": round(time.monotonic() - started, 1)}  # fmt: skip
            with open(os.path.join(staging, "build-info.json"), "w") as f:
                json.dump(info, f, indent=1)
            os.chmod(staging, 0o755)
            publish(staging, bin_dir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)  # gone already once published
        failed = False
    finally:
        if keep or failed:  # a failed build's logs stay for its error line to point at
            log(f"the build directory is kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def publish(staging: str, bin_dir: str) -> None:
    """Rename staging to bin_dir; a broken bin_dir already there is first renamed aside, then removed."""
    stale = None
    if os.path.lexists(bin_dir):
        stale = tempfile.mkdtemp(prefix=f".{os.path.basename(bin_dir)}.stale-", dir=os.path.dirname(bin_dir))
        os.rename(bin_dir, os.path.join(stale, "old"))
    os.rename(staging, bin_dir)
    if stale:
        shutil.rmtree(stale, ignore_errors=True)


@contextlib.contextmanager
def build_lock(bin_dir: str) -> Iterator[None]:
    """One build of a cache at a time, across processes (a CI job's parallel test workers)."""
    parent = os.path.dirname(bin_dir)
    os.makedirs(parent, exist_ok=True)
    with open(os.path.join(parent, f".{os.path.basename(bin_dir)}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def resolve_bin_dir(argument: str | None) -> str:
    return os.path.abspath(os.path.expanduser(argument or os.environ.get(ENV_VAR) or DEFAULT_BIN_DIR))


def ensure_kenlm_bins(bin_dir: str | None = None, install_deps: bool = False, force: bool = False,
                      jobs: int | None = None, sdist: str | None = None, keep: bool = False) -> str:  # fmt: skip
    """The directory of working lmplz, filter and build_binary, built first if need be."""
    target = resolve_bin_dir(bin_dir)
    if not force and check_binaries(target) is None:
        return target
    with build_lock(target):
        if not force and check_binaries(target) is None:  # another process built them while this one waited
            return target
        missing = missing_packages()
        if missing and install_deps:
            install_packages(missing)
            missing = missing_packages()
        if missing:
            raise MissingDependencies(missing)
        build(target, jobs or len(os.sched_getaffinity(0)), sdist, keep)
    problem = check_binaries(target)
    if problem:
        raise BuildError(problem)
    return target


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build and cache KenLM's lmplz, filter and build_binary.")
    parser.add_argument("--bin-dir", help=f"where the programs go (default: ${ENV_VAR}, else {DEFAULT_BIN_DIR})")
    parser.add_argument("--install-deps", action="store_true", help="install missing build dependencies with apt-get")
    parser.add_argument("--force", action="store_true", help="rebuild even if working programs are cached")
    parser.add_argument("--check", action="store_true", help="build nothing: exit 0 if the cached programs run, else 3")
    parser.add_argument("--jobs", "-j", type=int, default=None, help="make's parallel jobs (default: the usable CPUs)")
    parser.add_argument("--sdist", help=f"a local {SDIST} instead of pip's download (its sha256 is checked)")
    parser.add_argument("--keep-build", action="store_true", help="keep the temporary build directory")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)  # a CI timeout unwinds as Ctrl-C does, removing the temporaries
    target = resolve_bin_dir(args.bin_dir)
    if args.check:
        problem = check_binaries(target)
        if problem:
            log(problem)
            return 3
        print(target)
        return 0
    started = time.monotonic()
    was_ready = not args.force and check_binaries(target) is None
    try:
        ensure_kenlm_bins(args.bin_dir, args.install_deps, args.force, args.jobs, args.sdist, args.keep_build)
    except MissingDependencies as e:
        log(str(e))
        return 2
    except BuildError as e:
        log(str(e))
        return 1
    except OSError as e:
        log(f"{e.filename or 'failed'}: {e.strerror or e}")
        return 1
    except KeyboardInterrupt:
        log("interrupted; the cache is as it was")
        return 130
    done = "the cached programs work" if was_ready else f"built in {time.monotonic() - started:.0f} s"
    log(f"{done}: {', '.join(PROGRAMS)} in {target}")
    print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
