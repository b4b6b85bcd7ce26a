"""The memo of torch.export's CompositeImplicitAutograd scan: same set as torch's scan, and a newly
registered op is seen (the memo key follows the dispatcher, so it is never stale)."""
import torch
import torch._export.utils as export_utils
import torch.export.exported_program as exported_program

from android_bench.export.cia_memo import memoize_cia_scan


def test_the_memo_returns_torchs_set_and_sees_an_op_registered_after_it_was_filled():
    assert memoize_cia_scan()
    memo = exported_program._collect_all_valid_cia_ops
    assert memo is export_utils._collect_all_valid_cia_ops
    scan = memo.__wrapped__
    first = memo()
    assert first == scan() and len(first) > 100
    first.clear()  # callers get their own copy
    assert memo() == scan()

    lib = torch.library.Library("etf_cia_memo_test", "DEF")
    lib.define("twice(Tensor x) -> Tensor")
    lib.impl("twice", lambda x: x * 2, "CompositeImplicitAutograd")
    op = torch.ops.etf_cia_memo_test.twice.default
    assert op in scan()
    assert op in memo()
    assert memoize_cia_scan()  # installing again keeps the one memo
    assert exported_program._collect_all_valid_cia_ops is memo
