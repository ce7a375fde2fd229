"""tformer.build_info(), and that the CPU path never loads a CUDA library."""

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap

import tformer

CUDA_LIBRARIES = ("libcuda.so", "libcudart", "libcublas", "libnvrtc", "libtformer_cuda")


def run_python(code, env=None):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=300, env=env)


def test_import_and_cpu_work_load_no_cuda_library():
    # A fresh interpreter: this one may have asked for CUDA already.
    proc = run_python("""
        import json, tformer
        def mapped():
            with open("/proc/self/maps") as f:
                return sorted({l.split()[-1] for l in f if len(l.split()) >= 6})
        after_import = mapped()
        cfg = tformer.TransformerConfig(src_vocab_size=30, tgt_vocab_size=30, d_model=16, encoder_layers=1,
                                        decoder_layers=1, encoder_heads=2, decoder_heads=2,
                                        encoder_ffn_dim=32, decoder_ffn_dim=32)
        model = tformer.Transformer(cfg, seed=0)
        model.forward([[4, 5, 1]], [[1, 7]])
        model.generate([[4, 5, 1]], beam_size=2, max_length=5)
        print(json.dumps({"import": after_import, "cpu_work": mapped()}))
    """)
    assert proc.returncode == 0, proc.stderr
    maps = json.loads(proc.stdout)
    for stage, files in maps.items():
        assert any("_core" in os.path.basename(f) for f in files), f"{stage}: _core not mapped?"
        loaded = [f for f in files if any(name in os.path.basename(f) for name in CUDA_LIBRARIES)]
        assert loaded == [], f"{stage} loaded CUDA libraries: {loaded}"


def test_build_info_reports_blas_and_threads():
    info = tformer.build_info()
    assert "OpenBLAS" in info["blas"]
    assert info["blas_threads"] == info["num_threads"] == tformer.get_num_threads() >= 1
    assert info["blas_library"] and os.path.isfile(info["blas_library"])
    with open("/proc/self/maps", encoding="utf-8") as f:
        assert info["blas_library"] in f.read(), "build_info names a BLAS that is not loaded"


def test_build_info_threads_follow_set_num_threads():
    original = tformer.get_num_threads()
    try:
        tformer.set_num_threads(1)
        assert tformer.build_info()["blas_threads"] == 1
    finally:
        tformer.set_num_threads(original)


def test_build_info_cuda_build():
    info = tformer.build_info()
    built = info["cuda_build"]
    package_dir = os.path.dirname(tformer._core.__file__)
    has_library = os.path.exists(os.path.join(package_dir, "libtformer_cuda.so"))
    assert info["cuda"] is has_library
    if not info["cuda"]:
        assert built is None
        return
    assert built["library"] == os.path.join(package_dir, "libtformer_cuda.so")
    major = int(built["cuda_version"].split(".")[0])
    assert major >= 12 and built["cublas_version"].split(".")[0] == str(major)
    assert built["archs"] and all(a.startswith(("sm_", "compute_")) for a in built["archs"])
    assert any(a.startswith("compute_") for a in built["archs"]), "no PTX for newer GPUs"
    cuobjdump = shutil.which("cuobjdump")  # the CUDA toolkit's; there on build machines and CI
    if cuobjdump:
        listed = subprocess.run([cuobjdump, "--list-elf", "--list-ptx", built["library"]], capture_output=True,
                                text=True, check=True).stdout
        in_library = set(re.findall(r"\.(sm_\d+)\.(?:cubin|ptx)", listed))
        machine_code = {a for a in built["archs"] if a.startswith("sm_")}
        assert in_library == machine_code | {a.replace("compute_", "sm_") for a in built["archs"]
                                             if a.startswith("compute_")}, listed
