"""``keep_freed_memory``: glibc's mallopt settings for the compute commands."""

import platform
import subprocess
import sys

import pytest

from aiida_lmlp.potential.allocator import keep_freed_memory

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
needs_glibc = pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's: needs Linux with glibc")


def _in_fresh_interpreter(setup: str) -> list[str]:
    """Run ``setup``, then allocate 64 MB and print whether it lies in the heap (below sbrk's end).

    A fresh interpreter, so this test process keeps its allocator as it was.
    """
    script = (
        "import ctypes, ctypes.util\n"
        f"{setup}\n"
        "libc = ctypes.CDLL(ctypes.util.find_library('c'))\n"
        "libc.malloc.restype = ctypes.c_void_p\n"
        "libc.sbrk.restype = ctypes.c_void_p\n"
        "block = libc.malloc(64 << 20)\n"
        "print(block + (64 << 20) <= libc.sbrk(0))\n"
    )
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split()


@needs_glibc
def test_by_default_a_large_block_is_mapped_outside_the_heap():
    # glibc's mmap threshold is at most 32 MB: 64 MB comes from the kernel, fresh on every call
    assert _in_fresh_interpreter("pass") == ["False"]


@needs_glibc
def test_with_the_setting_a_large_block_comes_from_the_heap():
    setup = "from aiida_lmlp.potential.allocator import keep_freed_memory\nprint(keep_freed_memory(256 << 20))"
    assert _in_fresh_interpreter(setup) == ["True", "True"]


def test_it_is_a_no_op_answering_false_without_glibc(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    assert keep_freed_memory() is False
