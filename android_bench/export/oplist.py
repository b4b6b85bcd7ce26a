"""The operator list of a ``.tflite`` file as the runtime sees it, and where its TRANSPOSE ops come from.

The interpreter is opened WITHOUT the default XNNPACK delegate: with it, delegated ops are collapsed into
one DELEGATE node and a stray layout transpose would hide inside it.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from etf.common import EtfError
from etf.quiet import captured
from supernet.heads import UPSAMPLE_PERM

#: Role of a TRANSPOSE that TopFormer's attention needs: moving the heads axis in front of the tokens.
ROLE_HEADS = "attention-heads"
#: Role of the TRANSPOSE that puts the labels head's upsampled copies in place (``supernet.heads.nearest_up``).
ROLE_LABEL_UPSAMPLE = "label-upsample"
#: Role of any other TRANSPOSE: a layout change the converter left in (unwanted).
ROLE_LAYOUT = "layout"
#: Role of a TRANSPOSE that reads the model input or writes the model output (unwanted: phones want NHWC).
ROLE_BOUNDARY = "boundary"

_HEAD_PERMS = {(0, 2, 1, 3), (0, 2, 3, 1)}


@dataclass(frozen=True)
class TfliteOp:
    """One operator of a .tflite graph: its builtin name, tensor shapes, and permutation if a TRANSPOSE."""

    index: int
    name: str
    input_shapes: tuple[tuple[int, ...], ...]
    output_shapes: tuple[tuple[int, ...], ...]
    reads_model_input: bool
    writes_model_output: bool
    perm: tuple[int, ...] | None = None


def _load(path: str | Path, **options) -> tuple[object, int]:
    """A LiteRT interpreter of the .tflite at ``path`` with tensors allocated (its default delegate applied unless
    ``options`` say otherwise), and how many ops the file itself lists; a file LiteRT cannot load is one line."""
    from ai_edge_litert.interpreter import Interpreter

    try:
        with captured("LiteRT interpreter creation", tail=False):
            interp = Interpreter(model_path=str(path), **options)
            n_file = len(interp._get_ops_details())
            interp.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise EtfError(f"LiteRT cannot load {path}: {str(exc).splitlines()[0] if str(exc) else exc!r}") from None
    return interp, n_file


def tflite_ops(path: str | Path) -> list[TfliteOp]:
    """Every operator of the .tflite at ``path`` in execution order (builtin resolver, no delegate)."""
    from ai_edge_litert.interpreter import OpResolverType

    interp, _ = _load(path, experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    shapes = {d["index"]: tuple(int(s) for s in d["shape"]) for d in interp.get_tensor_details()}
    model_in = {d["index"] for d in interp.get_input_details()}
    model_out = {d["index"] for d in interp.get_output_details()}
    ops = []
    for op in interp._get_ops_details():  # the only API that lists ops; stable across ai-edge-litert 1.x-2.x
        ins = [int(i) for i in op["inputs"] if i >= 0]
        outs = [int(i) for i in op["outputs"]]
        perm = None
        if op["op_name"] == "TRANSPOSE" and len(ins) == 2:
            perm = tuple(int(p) for p in interp.get_tensor(ins[1]))
        ops.append(TfliteOp(int(op["index"]), op["op_name"], tuple(shapes.get(i, ()) for i in ins),
                            tuple(shapes.get(i, ()) for i in outs), bool(model_in & set(ins)),
                            bool(model_out & set(outs)), perm))
    return ops


def op_counts(ops: list[TfliteOp]) -> dict[str, int]:
    """How many ops of each builtin kind, most frequent first."""
    return dict(Counter(op.name for op in ops).most_common())


def transpose_role(op: TfliteOp, heads: set[int] | None = None) -> str:
    """Why a TRANSPOSE is there: ``boundary`` (touches the model input/output), ``attention-heads`` (a rank-4
    permute that moves a heads axis of size in ``heads`` next to the batch: the head split of q/k/v or the
    head merge of the attention output), ``label-upsample`` (the labels head's rank-6 placement of its copies),
    or ``layout`` (anything else: a stray NCHW<->NHWC change)."""
    if op.reads_model_input or op.writes_model_output:
        return ROLE_BOUNDARY
    shape = op.input_shapes[0] if op.input_shapes else ()
    if op.perm == UPSAMPLE_PERM and len(shape) == 6:
        return ROLE_LABEL_UPSAMPLE
    if op.perm in _HEAD_PERMS and len(shape) == 4 and shape[0] == 1:
        split_axis, merge_axis = shape[2], shape[1]  # (1, N, heads, d) -> split; (1, heads, N, d) -> merge
        if heads is None or split_axis in heads or (op.perm == (0, 2, 1, 3) and merge_axis in heads):
            return ROLE_HEADS
    return ROLE_LAYOUT


def transposes(ops: list[TfliteOp], heads: set[int] | None = None) -> list[dict]:
    """Every TRANSPOSE with its permutation, input shape and role (see :func:`transpose_role`)."""
    return [{"index": op.index, "perm": list(op.perm or ()), "input_shape": list(op.input_shapes[0]),
             "role": transpose_role(op, heads)} for op in ops if op.name == "TRANSPOSE"]


@dataclass(frozen=True)
class Delegation:
    """How LiteRT's default CPU delegate (XNNPACK) takes a file: how many delegated parts the graph is cut into
    and which ops run outside them (in TFLite's own kernels). One part and nothing outside is the fast case:
    every op outside a part costs a hand-off, and an int8 op outside also runs without XNNPACK's kernels."""

    ops: int
    parts: int
    outside: dict[str, int]

    def describe(self) -> str:
        if not self.outside:
            return f"all {self.ops} ops in {self.parts} XNNPACK part{'s' if self.parts != 1 else ''}"
        rest = ", ".join(f"{name} x{n}" for name, n in self.outside.items())
        return f"{self.parts} XNNPACK parts; outside them: {rest}"

    def to_dict(self) -> dict:
        return {"ops": self.ops, "parts": self.parts, "outside": self.outside}


def delegation(path: str | Path) -> Delegation:
    """:class:`Delegation` of the .tflite at ``path`` with LiteRT's default delegate, as an app would run it.

    The interpreter lists the file's ops, then one DELEGATE node per delegated part; an op runs outside the
    delegate when a tensor the executed graph needs (a model output, an input of a part or of another op outside)
    has no producer among the parts."""
    interp, n_file = _load(path, num_threads=1)
    details = interp._get_ops_details()
    file_ops, parts = details[:n_file], [d for d in details[n_file:] if d["op_name"] == "DELEGATE"]
    producer = {int(t): op for op in file_ops for t in op["outputs"]}
    from_parts = {int(t) for part in parts for t in part["outputs"]}
    needed = [int(d["index"]) for d in interp.get_output_details()]
    needed += [int(t) for part in parts for t in part["inputs"] if t >= 0]
    outside: dict[int, str] = {}
    while needed:
        t = needed.pop()
        op = producer.get(t)
        if op is None or t in from_parts or int(op["index"]) in outside:
            continue  # model input, constant, made by a part, or already found
        outside[int(op["index"])] = op["op_name"]
        needed += [int(i) for i in op["inputs"] if i >= 0]
    return Delegation(ops=n_file, parts=len(parts), outside=dict(Counter(outside.values()).most_common()))
