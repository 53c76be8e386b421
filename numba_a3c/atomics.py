"""Atomic integer operations for nopython code.

Numba has no CPU atomics of its own; these two intrinsics emit LLVM's ``atomicrmw add`` and
``cmpxchg`` on an element of an int64 array. They are what keeps the shared global step counter T
exact when many worker threads increment it without a lock.
"""

from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


def _element_pointer(context, builder, arr_type, arr_value, index_type, index_value):
    ary = context.make_array(arr_type)(context, builder, arr_value)
    index = context.cast(builder, index_value, index_type, types.intp)
    return cgutils.get_item_pointer(context, builder, arr_type, ary, [index], wraparound=False)


@intrinsic
def atomic_add(typingctx, arr, index, value):
    """``old = arr[index]; arr[index] += value`` as one atomic operation; returns ``old``.

    ``arr`` must be a C-contiguous int64 array; ``index`` any integer; ``value`` is cast to int64.
    """
    if not (isinstance(arr, types.Array) and arr.dtype == types.int64 and isinstance(index, types.Integer)
            and isinstance(value, types.Integer)):
        return None
    sig = types.int64(arr, index, value)

    def codegen(context, builder, signature, args):
        arr_t, index_t, value_t = signature.args
        ptr = _element_pointer(context, builder, arr_t, args[0], index_t, args[1])
        val = context.cast(builder, args[2], value_t, types.int64)
        return builder.atomic_rmw("add", ptr, val, "seq_cst")

    return sig, codegen


@intrinsic
def atomic_cas(typingctx, arr, index, expected, new):
    """If ``arr[index] == expected`` set it to ``new``, atomically; returns the value found.

    The swap happened exactly when the returned value equals ``expected``.
    """
    if not (isinstance(arr, types.Array) and arr.dtype == types.int64 and isinstance(index, types.Integer)
            and isinstance(expected, types.Integer) and isinstance(new, types.Integer)):
        return None
    sig = types.int64(arr, index, expected, new)

    def codegen(context, builder, signature, args):
        arr_t, index_t, exp_t, new_t = signature.args
        ptr = _element_pointer(context, builder, arr_t, args[0], index_t, args[1])
        exp = context.cast(builder, args[2], exp_t, types.int64)
        val = context.cast(builder, args[3], new_t, types.int64)
        pair = builder.cmpxchg(ptr, exp, val, "seq_cst", "seq_cst")
        return builder.extract_value(pair, 0)

    return sig, codegen
