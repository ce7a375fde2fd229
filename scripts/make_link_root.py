"""Makes the "link root" of the manylinux_2_28 wheels: the libraries that cmake/glibc-2.28.cmake
links against instead of this machine's, so that the wheel's .so files need nothing newer than
glibc 2.28 and what the manylinux_2_28 policy allows of libstdc++ (docs/PACKAGING.md):

    python scripts/make_link_root.py OUT_DIR --zig ZIG --libgomp-wheel SCIKIT_LEARN_WHEEL

Run it with the Python that has auditwheel (for its policy and pyelftools). OUT_DIR gets
* libc/libm/libdl/libpthread/librt .so: glibc 2.28's interface, the stubs that zig makes
  for its x86_64-linux-gnu.2.28 target (symbols only, no code), and its libc_nonshared.a;
* libstdc++.so.6: a stub of this machine's libstdc++ with only the symbol versions the
  policy allows (GLIBCXX <= 3.4.24, CXXABI <= 1.3.11); what the code needs beyond them is
  linked statically from gcc's libstdc++.a (as RHEL's gcc-toolset does);
* vendor/libgomp.so.1: GCC's OpenMP runtime as scikit-learn ships it (built on glibc 2.17),
  taken from its wheel; auditwheel vendors it into the wheel as before;
* glibc_compat.o: `__libc_single_threaded`, which libstdc++ 12's headers read (glibc >= 2.32
  exports it), defined as 0, i.e. "maybe several threads": the atomic path, always correct.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

import auditwheel
from elftools.elf.elffile import ELFFile
from elftools.elf.gnuversions import GNUVerDefSection, GNUVerSymSection

GLIBC_LIBS = ["libc.so.6", "libm.so.6", "libdl.so.2", "libpthread.so.0", "librt.so.1"]
# glibc 2.28 keeps atexit, pthread_atfork, stat & co. in libc_nonshared.a, not libc.so.6;
# zig builds it for the target next to the stubs. Its libld.so.2 is the dynamic loader's
# stub (__tls_get_addr), soname ld-linux-x86-64.so.2.
NONSHARED = "libc_nonshared.a"
LOADER = "libld.so.2"


def policy_versions(name="manylinux_2_28"):
    """{'GLIBCXX': {'3.4', ...}, 'CXXABI': {...}, ...}: the symbol versions a policy allows."""
    path = os.path.join(os.path.dirname(auditwheel.__file__), "policy", "manylinux-policy.json")
    with open(path) as f:
        policy = next(p for p in json.load(f) if p["name"] == name)
    return {k: set(v) for k, v in policy["symbol_versions"]["x86_64"].items()}


def glibc_stubs(zig, out):
    """zig writes glibc 2.28's stub libraries when it links for that target: link an empty
    library with a cache of our own and copy them from it."""
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "empty.c")
        with open(src, "w") as f:
            f.write("int tformer_link_root_probe(void) { return 0; }\n")
        env = dict(os.environ, ZIG_GLOBAL_CACHE_DIR=os.path.join(tmp, "cache"),
                   ZIG_LOCAL_CACHE_DIR=os.path.join(tmp, "cache"))
        subprocess.run([zig, "cc", "-target", "x86_64-linux-gnu.2.28", "-shared", "-o",
                        os.path.join(tmp, "probe.so"), src], check=True, env=env)
        found = {}
        for dirpath, _, files in os.walk(os.path.join(tmp, "cache")):
            for lib in GLIBC_LIBS + [NONSHARED, LOADER]:
                if lib in files:
                    found[lib] = os.path.join(dirpath, lib)
        missing = [lib for lib in GLIBC_LIBS + [NONSHARED, LOADER] if lib not in found]
        if missing:
            sys.exit(f"zig made no glibc 2.28 stub for {missing} (zig {zig})")
        for lib, path in found.items():
            shutil.copy(path, os.path.join(out, lib))
            if lib in GLIBC_LIBS and lib != "libc.so.6":
                link(lib, os.path.join(out, lib.split(".so")[0] + ".so"))
    # -lc: like the system's libc.so, a linker script naming both halves.
    with open(os.path.join(out, "libc.so"), "w") as f:
        f.write(f"GROUP ( {out}/libc.so.6 {out}/{NONSHARED} AS_NEEDED ( {out}/{LOADER} ) )\n")


def link(target, name):
    if os.path.lexists(name):
        os.remove(name)
    os.symlink(target, name)


def allowed(version, policy):
    prefix, _, rest = version.partition("_")
    return prefix in ("GLIBCXX", "CXXABI") and rest in policy.get(prefix, ())


def libstdcxx_stub(out, policy, cxx):
    """A libstdc++.so.6 with this machine's symbols at the versions the policy allows."""
    real = subprocess.run([cxx, "-print-file-name=libstdc++.so.6"], capture_output=True, text=True,
                          check=True).stdout.strip()
    with open(os.path.realpath(real), "rb") as f:
        elf = ELFFile(f)
        dynsym = elf.get_section_by_name(".dynsym")
        versym = next(s for s in elf.iter_sections() if isinstance(s, GNUVerSymSection))
        verdef = next(s for s in elf.iter_sections() if isinstance(s, GNUVerDefSection))
        names = {}
        for vd, aux in verdef.iter_versions():
            names[vd["vd_ndx"]] = next(aux).name
        nodes = [names[i] for i in sorted(names) if i > 1 and allowed(names[i], policy)]
        asm = []
        for i, sym in enumerate(dynsym.iter_symbols()):
            if sym["st_shndx"] in ("SHN_UNDEF", "SHN_ABS") or not sym.name:  # ABS: the version names
                continue
            ndx = versym.get_symbol(i)["ndx"]
            hidden = isinstance(ndx, int) and ndx & 0x8000
            ver = names.get(ndx & 0x7FFF if isinstance(ndx, int) else -1)
            if ver is None or not allowed(ver, policy):
                continue
            kind = sym["st_info"]["type"]
            label = f"_tformer_stub_{i}"
            if kind == "STT_OBJECT":
                asm += [".data", f".type {label}, @object", f".size {label}, {max(sym['st_size'], 1)}",
                        f"{label}: .zero {max(sym['st_size'], 1)}"]
            elif kind in ("STT_FUNC", "STT_GNU_IFUNC", "STT_NOTYPE"):
                asm += [".text", f".type {label}, @function", f"{label}: ret"]
            else:
                continue
            bind = ".weak" if sym["st_info"]["bind"] == "STB_WEAK" else ".globl"
            asm += [f"{bind} {label}", f".symver {label}, {sym.name}{'@' if hidden else '@@'}{ver}"]
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "stub.s"), "w") as f:
            f.write("\n".join(asm) + "\n")
        with open(os.path.join(tmp, "stub.map"), "w") as f:
            f.write("".join(f"{n} {{ }};\n" for n in nodes))  # (the labels stay: a link-only stub)
        subprocess.run([cxx, "-shared", "-nostdlib", "-o", os.path.join(out, "libstdc++.so.6"),
                        "-Wl,-soname,libstdc++.so.6", f"-Wl,--version-script={tmp}/stub.map",
                        os.path.join(tmp, "stub.s")], check=True)
    link("libstdc++.so.6", os.path.join(out, "libstdc++.so"))


def libgomp(out, wheel):
    """scikit-learn's vendored libgomp, under its own name again."""
    # In vendor/ alone: auditwheel repair finds it there (LD_LIBRARY_PATH), not the stubs.
    os.makedirs(os.path.join(out, "vendor"), exist_ok=True)
    with zipfile.ZipFile(wheel) as z:
        name = next((n for n in z.namelist() if "/libgomp" in n and ".so" in n), None)
        if name is None:
            sys.exit(f"{wheel} has no vendored libgomp")
        with open(os.path.join(out, "vendor", "libgomp.so.1"), "wb") as f:
            f.write(z.read(name))
    subprocess.run(["patchelf", "--set-soname", "libgomp.so.1", os.path.join(out, "vendor", "libgomp.so.1")],
                   check=True)
    link("vendor/libgomp.so.1", os.path.join(out, "libgomp.so.1"))
    link("vendor/libgomp.so.1", os.path.join(out, "libgomp.so"))


def glibc_compat(out, cc):
    src = os.path.join(out, "glibc_compat.c")
    with open(src, "w") as f:
        f.write("/* glibc >= 2.32 exports it; libstdc++ 12's headers read it. 0: maybe several threads. */\n"
                "__attribute__((visibility(\"hidden\"))) char __libc_single_threaded = 0;\n")
    subprocess.run([cc, "-O2", "-fPIC", "-c", src, "-o", os.path.join(out, "glibc_compat.o")], check=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out")
    parser.add_argument("--zig", required=True, help="the zig binary (the ziglang wheel's)")
    parser.add_argument("--libgomp-wheel", required=True, help="a scikit-learn manylinux wheel")
    parser.add_argument("--cxx", default=os.environ.get("CXX", "g++"))
    parser.add_argument("--cc", default=os.environ.get("CC", "gcc"))
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    out = os.path.abspath(args.out)
    glibc_stubs(args.zig, out)
    libstdcxx_stub(out, policy_versions(), args.cxx)
    libgomp(out, args.libgomp_wheel)
    glibc_compat(out, args.cc)
    static = subprocess.run([args.cxx, "-print-file-name=libstdc++.a"], capture_output=True, text=True,
                            check=True).stdout.strip()
    link(static, os.path.join(out, "libstdc++_static.a"))
    print(f"link root for manylinux_2_28 in {out}")


if __name__ == "__main__":
    main()
