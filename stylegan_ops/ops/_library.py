"""torch.library registration shared by the ops.

Every op exists twice: the native op (schema in csrc/stylegan_ops.cpp; device kernels and autograd
in C++) and the Triton op (``triton_kernel`` below, in stylegan_ops/ops/<op>.py). Both take their
fake kernels from Python. The native op's C++ autograd calls ``<op>_backward_composite``
under ``create_graph=True``, a kernel registered here; the Triton op's autograd is registered here.
"""

import torch

from stylegan_ops import _extension

# Holds the Python kernels of native schemas; alive as long as the module.
_NATIVE_IMPLS = torch.library.Library("stylegan_ops", "IMPL")
# Holds the Triton ops' schemas and kernels.
_TRITON_OPS = torch.library.Library("stylegan_ops", "FRAGMENT")


def triton_kernel(name):
    """Decorator: the annotated function becomes op ``stylegan_ops::<name>``, its schema read from
    the annotations, the function its CPU (the interpreter) and CUDA kernel.

    ``torch.library.define`` and ``impl`` rather than ``torch.library.custom_op``, whose wrappers
    (aliasing checks of every output, a torch.compile guard around the kernel) cost 16 us more a
    call of noise_adain_lrelu's backward op (five outputs) and up to 3 us more a forward call on
    this project's CPU (benchmarks/triton_launch_cpu_cost.py, one thread, three alternating runs).
    Neither is needed here: the kernels return fresh tensors, and Dynamo runs the graphs it compiles
    with its tracing off, so it never traces into a kernel.
    """

    def define(fn):
        _TRITON_OPS.define(torch.library.infer_schema(fn, mutates_args=(), op_name=name))
        for dispatch_key in ("CPU", "CUDA"):
            _TRITON_OPS.impl(name, fn, dispatch_key)
        return fn

    return define


def register(name, *, fake_forward, fake_backward, backward_composite, autograd_backward, setup_context):
    """Everything of op ``name`` that is registered from Python: the Triton op's, and the native op's
    when the extension is loaded."""
    _register_triton(name, fake_forward=fake_forward, fake_backward=fake_backward, autograd_backward=autograd_backward,
                    setup_context=setup_context)
    if _extension.is_loaded():
        _register_native(name, fake_forward=fake_forward, fake_backward=fake_backward,
                        backward_composite=backward_composite)


def _register_native(name, *, fake_forward, fake_backward, backward_composite):
    """Fake kernels of ``stylegan_ops::<name>`` and ``<name>_backward``, and ``backward_composite`` (the
    backward in differentiable PyTorch ops) as the CompositeImplicitAutograd kernel of ``<name>_backward_composite``."""
    torch.library.register_fake(f"stylegan_ops::{name}")(fake_forward)
    torch.library.register_fake(f"stylegan_ops::{name}_backward")(fake_backward)
    _NATIVE_IMPLS.impl(f"{name}_backward_composite", backward_composite, "CompositeImplicitAutograd")


def _register_triton(name, *, fake_forward, fake_backward, autograd_backward, setup_context):
    """Fake kernels of ``stylegan_ops::<name>_triton`` and ``<name>_triton_backward``, and the forward's
    autograd kernel, whose backward formula (``autograd_backward(backward_op)``) calls the backward op.

    The autograd kernel is the pattern of the native ops' C++ ones (csrc/autograd/): the op run
    below autograd inside an autograd.Function, which saves what backward needs. It replaces the
    function ``torch.library.register_autograd`` generates, which rebuilds the argument list from
    the op's schema on every call that records a graph (``torch._library.utils.fill_defaults``:
    ``schema.arguments`` is a fresh list of pybind objects each time it is read): about 30 us (10%)
    less a forward+backward of noise_adain_lrelu's Triton op on this project's CPU
    (``benchmarks/triton_launch_cpu_cost.py --against-register-autograd``). The forward takes ctx
    and calls setup_context itself, as the generated one does: a Function with a setup_context
    staticmethod binds its arguments to forward's signature (inspect.signature) on every apply,
    which costs as much, and gains nothing here: inside an op's autograd kernel such a Function
    fails under torch.func.grad as well ("could not find kernel for HigherOrderOperator
    custom_function_call at dispatch key AutogradCPU"; README's torch.func section)."""
    forward_name, backward_name = f"{name}_triton", f"{name}_triton_backward"
    torch.library.register_fake(f"stylegan_ops::{forward_name}")(fake_forward)
    torch.library.register_fake(f"stylegan_ops::{backward_name}")(fake_backward)
    forward_op = getattr(torch.ops.stylegan_ops, forward_name).default

    def below_autograd(*args):
        with torch._C._AutoDispatchBelowAutograd():
            return forward_op(*args)

    def forward(ctx, *args):
        output = below_autograd(*args)
        setup_context(ctx, args, output)
        return output

    function = type(f"{forward_name}_autograd", (torch.autograd.Function,), {
        "forward": staticmethod(forward),
        "backward": staticmethod(autograd_backward(getattr(torch.ops.stylegan_ops, backward_name))),
    })

    def autograd_kernel(*args):
        if torch.is_grad_enabled() and torch._C._any_requires_grad(*args):
            return function.apply(*args)
        return below_autograd(*args)

    _TRITON_OPS.impl(forward_name, autograd_kernel, "Autograd")
