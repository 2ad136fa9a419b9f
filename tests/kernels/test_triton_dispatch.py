"""Which backend ``reduce_loss`` uses, and the Triton backend's loud refusals.

This module runs in the test process's Triton mode (interpreted on machines without CUDA: it sets
``TRITON_INTERPRET=1`` below, before Triton is first imported). What needs a process in another
mode (Triton compiled on a CPU machine, Triton missing, the two imported under different
settings) runs in subprocesses.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings

import pytest
import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"  # before triton is first imported (by the kernel modules)
pytest.importorskip("triton")

from torch.autograd import forward_ad  # noqa: E402

from losslines.kernels import AUTO_ORDER, backend_names, resolve_backend  # noqa: E402
from losslines.losses import reduce_loss  # noqa: E402
from losslines.kernels.triton_backend import triton_available, triton_mode  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def run_python(code: str, **env_changes: str | None) -> str:
    """Run ``code`` in a fresh interpreter (warnings are errors); its stdout, or fail with stderr."""
    env = dict(os.environ)
    env.pop("TRITON_INTERPRET", None)
    for key, value in env_changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    proc = subprocess.run([sys.executable, "-W", "error", "-c", textwrap.dedent(code)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_triton_is_registered_and_first_for_auto():
    assert AUTO_ORDER == ["triton", "torch"]
    assert backend_names() == ("auto", "torch", "triton")


@pytest.mark.skipif(DEVICE != "cpu", reason="the interpreter path exists on CPU-only machines")
def test_cpu_auto_uses_torch_even_where_the_interpreter_could_run():
    logits = torch.randn(4, 3)
    assert triton_mode() == "interpreted" and triton_available(logits)
    assert resolve_backend("auto", logits).name == "torch"
    assert resolve_backend("triton", logits).name == "triton"


@pytest.mark.skipif(DEVICE != "cuda", reason="needs CUDA")
@pytest.mark.gpu
def test_cuda_auto_uses_the_compiled_kernel():
    assert triton_mode() == "compiled"
    assert resolve_backend("auto", torch.randn(4, 3, device="cuda")).name == "triton"
    assert resolve_backend("auto", torch.randn(4, 3, device="cuda", dtype=torch.float64)).name == "torch"


def test_logits_the_kernels_do_not_take_fall_back_under_auto_and_fail_when_forced():
    float64 = torch.randn(4, 3, dtype=torch.float64, device=DEVICE)
    needs_grad = torch.randn(4, 3, device=DEVICE, requires_grad=True)
    for logits in (float64, needs_grad):
        assert resolve_backend("auto", logits).name == "torch"
        with pytest.raises(ValueError, match="not available .* it needs the triton package and float32/float16/bfloat16"):
            resolve_backend("triton", logits)
    with torch.no_grad():
        assert resolve_backend("triton", needs_grad).name == "triton"
    # the torch backend keeps gradients flowing where the kernels have none
    reduce_loss(needs_grad, torch.tensor([0, 1, 2, 0], device=DEVICE)).sample_loss.sum().backward()
    assert needs_grad.grad is not None


def test_forward_mode_dual_logits_go_to_the_reference():
    with forward_ad.dual_level():
        dual = forward_ad.unpack_dual(torch.randn(4, 3, device=DEVICE))  # a plain tensor
        assert resolve_backend("triton", dual.primal).name == "triton"
        with warnings.catch_warnings():  # torch's own deprecation warning on the first make_dual
            warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)
            made = forward_ad.make_dual(torch.randn(4, 3, device=DEVICE), torch.ones(4, 3, device=DEVICE))
        assert not triton_available(made) and resolve_backend("auto", made).name == "torch"


def test_a_compiled_process_refuses_cpu_logits_and_the_kernels_compile_without_a_gpu(tmp_path):
    # no TRITON_INTERPRET: importing and CPU dispatch never import triton; forcing it is an error
    # naming the fix; the kernels compile for an sm_90 GPU (Triton's compiler needs no GPU) — the
    # compiled path's only check on CPU-only machines
    out = run_python("""
        import sys, torch
        from losslines.losses import reduce_loss
        red = reduce_loss(torch.randn(6, 3), torch.tensor([0, 1, 2, 0, 1, 2]), lines=2)
        assert "triton" not in sys.modules, "CPU dispatch imported triton"
        try:
            reduce_loss(torch.randn(6, 3), torch.tensor([0, 1, 2, 0, 1, 2]), backend="triton")
        except ValueError as err:
            assert "TRITON_INTERPRET=1 set before triton is first imported" in str(err), err
        else:
            raise AssertionError("forced triton on CPU without the interpreter did not fail")

        import triton
        from triton.backends.compiler import GPUTarget
        from triton.compiler import ASTSource
        from losslines.kernels.triton_cross_entropy import cross_entropy_kernel
        from losslines.kernels.triton_mse import mse_kernel
        common = {"loss_ptr": "*fp32", "psum_ptr": "*fp32", "pcorrect_ptr": "*i32", "n": "i32", "C": "i32",
                  "blocks_per_line": "i32", "stride_zr": "i32", "stride_zc": "i32"}
        builds = [
            (cross_entropy_kernel, {"z_ptr": "*bf16", "t_ptr": "*i64", **common, "stride_t": "i32"},
             {"BLOCK_R": 4, "BLOCK_C": 1024}),
            (mse_kernel, {"z_ptr": "*fp32", "y_ptr": "*i64", **common, "stride_yr": "i32", "stride_yc": "i32"},
             {"ONE_HOT": True, "BLOCK_R": 256, "BLOCK_C": 16}),
            (mse_kernel, {"z_ptr": "*fp16", "y_ptr": "*fp32", **common, "stride_yr": "i32", "stride_yc": "i32"},
             {"ONE_HOT": False, "BLOCK_R": 64, "BLOCK_C": 64}),
        ]
        for kernel, signature, constants in builds:
            signature.update({name: "constexpr" for name in constants})
            compiled = triton.compile(ASTSource(kernel, signature, constexprs=constants),
                                      target=GPUTarget("cuda", 90, 32))
            assert compiled.asm["cubin"], kernel
        print("ok")
    """, TRITON_CACHE_DIR=str(tmp_path))  # a fresh cache: really compile
    assert out.strip() == "ok"


def test_triton_imported_before_the_interpreter_was_requested_is_a_loud_error():
    out = run_python("""
        import os, torch, triton
        os.environ["TRITON_INTERPRET"] = "1"  # too late: triton's library is already compiled-mode
        from losslines.losses import reduce_loss
        try:
            reduce_loss(torch.randn(6, 3), torch.tensor([0, 1, 2, 0, 1, 2]), backend="triton")
        except RuntimeError as err:
            assert "before either is first imported" in str(err), err
            print("ok")
    """)
    assert out.strip() == "ok"


def test_without_triton_the_package_imports_and_auto_uses_torch():
    out = run_python("""
        import sys, torch
        sys.modules["triton"] = None  # import triton -> ImportError
        from losslines.kernels import resolve_backend
        from losslines.losses import reduce_loss
        assert resolve_backend("auto", torch.randn(2, 3)).name == "torch"
        try:
            resolve_backend("triton", torch.randn(2, 3))
        except ValueError as err:
            assert "it needs the triton package" in str(err), err
            print("ok")
    """, TRITON_INTERPRET="1")
    assert out.strip() == "ok"
