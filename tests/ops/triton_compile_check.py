"""Compile the Triton kernels for a CUDA target, no GPU needed, exactly as the launcher
configures them, and report what the compiler made of them (one JSON line per kernel).

The interpreter that runs ``triton_cases.py`` on CPU never compiles, so errors only the
compiler raises (non-constexpr globals, loop-carried type changes, ...) and codegen
choices (a fused multiply-add would round distances differently from the torch backend)
are checked here. Run by ``test_triton.py`` in a child process without ``TRITON_INTERPRET``:

    python tests/ops/triton_compile_check.py [ARCH]     # ARCH: 90 (H100/H200) by default
"""

from __future__ import annotations

import json
import sys

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from act_zoo.ops import _torch, _triton
from act_zoo.ops import _triton_kernels as K

F, I64, INT = "*fp32", "*i64", "i32"
SIGNATURES = {
    "fps_register_kernel": {"planes_ptr": F, "out_ptr": I64, "N": INT, "n": INT},
    "fps_blocked_kernel": {"planes_ptr": F, "mind_ptr": F, "out_ptr": I64, "N": INT, "n": INT},
    "knn_kernel": {"ref_ptr": F, "query_ptr": F, "d2_ptr": F, "idx_ptr": I64, "N": INT, "M": INT, "k": INT},
    "nearest_kernel": {"a_ptr": F, "b_ptr": F, "out_ptr": I64, "R": INT, "C": INT},
}
CONFIGS = [  # the launches the ops make by default, one per kernel / register budget
    _triton.fps_config(2048),
    _triton.fps_config(100_000),
    _triton.knn_config(32),
    _triton.knn_config(64),
    _triton.nearest_config(),
]
OPTIONS = ("num_warps", "enable_fp_fusion")


def main() -> None:
    target = GPUTarget("cuda", int(sys.argv[1]) if len(sys.argv) > 1 else 90, 32)
    # a control: with fusion allowed the compiler does contract, so counting would see it
    control = [(name, {**meta, "enable_fp_fusion": True}) for name, meta in CONFIGS[:1]]
    for name, meta in CONFIGS + control:
        fn = getattr(K, name)
        consts = {k: v for k, v in meta.items() if k not in OPTIONS}
        if "SKIP" in fn.arg_names:
            consts["SKIP"] = _torch._FPS_SKIP_MAG2
        signature = {**SIGNATURES[name], **{k: "constexpr" for k in consts}}
        options = {k: meta[k] for k in OPTIONS}
        compiled = triton.compile(ASTSource(fn, signature, consts), target=target, options=options)
        ptx = compiled.asm["ptx"]
        print(json.dumps({"kernel": name, "meta": meta, "arch": target.arch,
                          "fma_f32": ptx.count("fma.rn.f32"), "ptx_lines": ptx.count("\n")}), flush=True)


if __name__ == "__main__":
    main()
