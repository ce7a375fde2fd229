"""Checks a repaired wheel's shared-library dependencies (run with the tools venv's Python,
which has auditwheel and pyelftools):

    python scripts/check_wheel_deps.py dist/tformer-...-manylinux_2_34_x86_64.whl

* `auditwheel show`: the symbol versions allow a manylinux_2_* tag, and every library
  outside the manylinux policy is one that a pip dependency of the wheel provides:
  libscipy_openblas.so (scipy-openblas32) and cuBLAS (nvidia-cublas, the [cuda] extra,
  pinned to the major version libtformer_cuda.so links).
  These are excluded from `auditwheel repair` on purpose, so `auditwheel show` gives the
  overall tag linux_x86_64 for exactly these and nothing else.
* libgomp (the OpenMP runtime) is vendored in tformer.libs/.
* No RPATH of a packaged library names a directory of the build machine.
Prints a one-line summary; exits non-zero naming the first problem.
"""
import email.parser
import io
import json
import re
import subprocess
import sys
import zipfile

from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile
from packaging.requirements import Requirement


def fail(message):
    print(f"FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def main(wheel):
    show = json.loads(subprocess.run([sys.executable, "-m", "auditwheel", "show", "--json", wheel],
                                     capture_output=True, text=True, check=True).stdout)
    if not re.fullmatch(r"manylinux_2_\d+_x86_64", show["sym_tag"]):
        fail(f"symbol versions allow only {show['sym_tag']}")

    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        metadata_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = email.parser.Parser().parsestr(z.read(metadata_name).decode())
        rpaths = {}
        for name in names:
            if name.endswith(".so") or ".so." in name:
                elf = ELFFile(io.BytesIO(z.read(name)))
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

    print(f"ok: {wheel.split('/')[-1]}: symbols allow {show['sym_tag']}; outside the policy only "
          f"{sorted(show['external_libs'])}, all pip dependencies; libgomp vendored; RPATHs relative")


if __name__ == "__main__":
    main(sys.argv[1])
