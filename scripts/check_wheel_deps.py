"""Checks a repaired wheel's shared-library dependencies (run with the tools venv's Python,
which has auditwheel and pyelftools):

    python scripts/check_wheel_deps.py dist/tformer-...-manylinux_2_28_x86_64.whl [--expect-tag manylinux_2_28]

* `auditwheel show`: the symbol versions allow the expected tag (manylinux_2_28: glibc 2.28,
  built with cmake/glibc-2.28.cmake), and every library
  outside the manylinux policy is one that a pip dependency of the wheel provides:
  libscipy_openblas.so (scipy-openblas32) and cuBLAS (nvidia-cublas, the [cuda] extra,
  pinned to the major version libtformer_cuda.so links).
  These are excluded from `auditwheel repair` on purpose, so `auditwheel show` gives the
  overall tag linux_x86_64 for exactly these and nothing else.
* libgomp (the OpenMP runtime) is vendored in tformer.libs/.
* No RPATH of a packaged library names a directory of the build machine.
Prints, for each .so in the wheel (vendored ones included), the newest GLIBC, GLIBCXX and
CXXABI version it needs, then a one-line summary; exits non-zero naming the first problem.
"""
import argparse
import email.parser
import io
import json
import re
import subprocess
import sys
import zipfile

from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile
from elftools.elf.gnuversions import GNUVerNeedSection
from packaging.requirements import Requirement


def fail(message):
    print(f"FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def version_key(version):
    return [int(part) for part in re.findall(r"\d+", version)]


def newest_needed(elf):
    """{'GLIBC': '2.27', 'GLIBCXX': ..., 'CXXABI': ...}: the newest version of each that the
    library's version-needed section names (what its loader will ask the system for)."""
    newest = {}
    for section in elf.iter_sections():
        if isinstance(section, GNUVerNeedSection):
            for _, auxiliaries in section.iter_versions():
                for aux in auxiliaries:
                    prefix, _, number = aux.name.partition("_")
                    if prefix in ("GLIBC", "GLIBCXX", "CXXABI") and re.fullmatch(r"[\d.]+", number):
                        if prefix not in newest or version_key(number) > version_key(newest[prefix]):
                            newest[prefix] = number
    return newest


def main(wheel, expect_tag):
    show = json.loads(subprocess.run([sys.executable, "-m", "auditwheel", "show", "--json", wheel],
                                     capture_output=True, text=True, check=True).stdout)
    # The symbols may allow an older glibc than the tag promises (then both tags are right).
    allowed = re.fullmatch(r"manylinux_2_(\d+)_x86_64", show["sym_tag"])
    if not allowed or int(allowed.group(1)) > int(expect_tag.rsplit("_", 1)[1]):
        fail(f"symbol versions allow only {show['sym_tag']}, not {expect_tag}_x86_64")
    if f"{expect_tag}_x86_64" not in wheel.rsplit("/", 1)[-1]:
        fail(f"{wheel} is not tagged {expect_tag}_x86_64")

    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        metadata_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = email.parser.Parser().parsestr(z.read(metadata_name).decode())
        rpaths = {}
        for name in names:
            if name.endswith(".so") or ".so." in name:
                elf = ELFFile(io.BytesIO(z.read(name)))
                newest = newest_needed(elf)
                print(f"  {name}: " + ", ".join(f"{k}_{v}" for k, v in sorted(newest.items())))
                for section in elf.iter_sections():
                    if isinstance(section, DynamicSection):
                        for tag in section.iter_tags():
                            if tag.entry.d_tag in ("DT_RPATH", "DT_RUNPATH"):
                                rpaths[name] = getattr(tag, "rpath", None) or tag.runpath
    requirements = [Requirement(r) for r in metadata.get_all("Requires-Dist") or []]

    for lib in show["external_libs"]:
        cublas = re.fullmatch(r"libcublas(Lt)?\.so\.(\d+)", lib)
        if lib == "libscipy_openblas.so":
            wanted = [r for r in requirements if r.name == "scipy-openblas32" and not r.marker]
        elif cublas:  # the [cuda] extra must pin the cuBLAS major the backend was linked with
            major = int(cublas.group(2))
            wanted = [r for r in requirements if r.name.startswith("nvidia-cublas") and r.marker
                      and r.marker.evaluate({"extra": "cuda"}) and f"{major}.0" in r.specifier
                      and f"{major}.99" in r.specifier and f"{major + 1}.0" not in r.specifier
                      and f"{major - 1}.99" not in r.specifier]
        else:
            fail(f"{lib} is neither vendored, nor allowed by the manylinux policy, nor a pip dependency")
        if not wanted:
            fail(f"{lib} is left to a pip dependency that the wheel does not declare (or pins to another "
                 f"version): {[str(r) for r in requirements]}")
    if not any(re.fullmatch(r"tformer\.libs/libgomp-[0-9a-f]+\.so[.0-9]*", n) for n in names):
        fail("libgomp is not vendored in tformer.libs/")
    for name, rpath in rpaths.items():
        bad = [d for d in rpath.split(":") if d and not d.startswith("$ORIGIN")]
        if bad:
            fail(f"{name} has RPATH entries of the build machine: {bad}")

    print(f"ok: {wheel.split('/')[-1]}: symbols allow {show['sym_tag']} (tagged {expect_tag}); outside the policy only "
          f"{sorted(show['external_libs'])}, all pip dependencies; libgomp vendored; RPATHs relative")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Checks a repaired tformer wheel's shared-library dependencies.")
    parser.add_argument("wheel")
    parser.add_argument("--expect-tag", default="manylinux_2_28",
                        help="the manylinux tag the symbol versions must allow (default: manylinux_2_28)")
    args = parser.parse_args()
    main(args.wheel, args.expect_tag)
