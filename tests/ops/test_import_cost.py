"""What ``import seqtorch`` costs: it must not import ``torch._dynamo`` (1.3 s here, more than seqtorch's own
import), which torch.compile loads when a program first compiles. The dispatch marks its one compile-time
constant (``dispatch._cpp_available``) as ``torch.compiler.assume_constant_result`` does, without that
decorator's import; the test of the mark keeps the two equivalent."""

import subprocess
import sys

import torch

from seqtorch.ops import dispatch


def test_import_seqtorch_leaves_dynamo_unloaded():
    code = "import sys, seqtorch; print('torch._dynamo' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "False", result.stdout + result.stderr


def test_the_mark_is_the_one_torch_compiler_sets():
    def probe():
        return True

    marked = torch.compiler.assume_constant_result(probe)
    set_by_torch = {k: v for k, v in vars(marked).items()}
    assert set_by_torch == {"_dynamo_marked_constant": True}
    assert vars(dispatch._cpp_available).get("_dynamo_marked_constant") is True
